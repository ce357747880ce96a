"""Text recordings as loggers and spreadsheets write them: detect the dialect, then let pyarrow parse.

:func:`sniff` reads the first 256 KiB and decides (the rules are in ``docs/data.md``):

* encoding (:func:`qlstm.io.decode_text`): a byte-order mark selects UTF-8 (Excel's "CSV UTF-8"),
  UTF-16 (Excel's "Unicode text") or UTF-32 and is dropped; UTF-16/32 without a mark is found by
  its NUL bytes; otherwise UTF-8, or Windows-1252 if the head is not valid UTF-8; bytes that do not
  decode (in the head or later in the file) are refused in one line naming their byte offset;
  header names lose surrounding blanks and quotes and a stray mark;
* line ends: LF, CRLF or CR (pyarrow accepts all three);
* delimiter: tab, semicolon, comma, ``|`` or runs of blanks, among those that split the last line
  into >= 2 fields and the line above it into as many, the one whose data fields are most often
  numbers (so ``0,4   1,5`` is two blank-separated decimal-comma numbers, not three comma fields),
  ties in that order of preference, and that has a header line; a delimiter closing every data
  line (``a,b,``), or the header only, is ignored;
* decimal comma (``1,5``) with a semicolon, tab or blank delimiter;
* the header: the last line of that many fields none of which is a number (data lines hold
  numbers); lines above it (comments ``#``, metadata ``Logger: ...``, blank lines) are skipped.

Refused: a file with no header line (data on the first line), one column only, a header with
another number of fields than the data; quoted fields spanning lines are not supported.
:func:`batches` then streams the data through :func:`pyarrow.csv.open_csv`
(256 KiB blocks: pyarrow's working memory grows with the block size; figures in docs/data.md).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from qlstm.errors import QlstmError
from qlstm.io import decode_text, find_decode_error

HEAD_BYTES = 256 * 1024
DELIMITERS = ("\t", ";", ",", "|", " ")
COMMENT_PREFIXES = ("#", "%", "//", "!")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(nan|inf|NaN|Inf|NAN|INF)$")
_DEC_COMMA = re.compile(r"^[-+]?\d+,\d+([eE][-+]?\d+)?$")
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Dialect:
    encoding: str
    delimiter: str  # " " means runs of blanks
    decimal: str
    skip_rows: int  # physical lines before the header
    header: tuple[str, ...]
    trailing: bool  # every line ends with the delimiter


def _fields(line: str, delim: str, n: int | None = None) -> list[str]:
    if delim == " ":
        f = line.split()
        if n is not None and len(f) > n:  # a blank-aligned header with blanks inside names
            f = re.split(r"\t| {2,}", line.strip())
        return f
    return next(csv.reader([line], delimiter=delim), [])


def _is_number(s: str, decimal: str) -> bool:
    s = s.strip()
    return bool(_NUMBER.match(s) or (decimal == "," and _DEC_COMMA.match(s)))


def sniff(path: Path) -> Dialect:
    """Detect encoding, delimiter, decimal mark and header line of a text recording."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        at_end = not fh.read(1)
    decoded, encoding = decode_text(path, head, final=at_end, legacy=True)
    lines = _NEWLINE.split(decoded)
    if not at_end:
        lines = lines[:-1]  # possibly cut in the middle
    elif lines and lines[-1] == "":
        lines = lines[:-1]
    if not any(line.strip() for line in lines):
        raise QlstmError(f"{path}: empty file (no header line)")
    content = [
        i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith(COMMENT_PREFIXES)
    ]
    tail = content[-50:]
    candidates = []  # (score, preference, delimiter, field count, data rows)
    for pref, delim in enumerate(DELIMITERS):
        rows = [_fields(lines[i], delim) for i in tail]
        n = len(rows[-1])
        run = 0  # lines from the bottom with the last line's field count
        while run < len(rows) and len(rows[-1 - run]) == n:
            run += 1
        if n >= 2 and run >= min(2, len(rows)):
            rows = rows[len(rows) - run :]
            candidates.append((-_numeric_share(rows, delim), pref, delim, n, rows))
    if not candidates:
        raise QlstmError(
            f"{path}: no delimiter (tab ; , | or blanks) splits the last lines into the same number of "
            "columns (at least 2: time and one channel)"
        )
    # the delimiter whose data fields are numbers (under a decimal point, or a decimal comma when
    # the delimiter is not a comma): a decimal comma in blank-aligned columns also splits every
    # line into as many fields on commas, but those fields are not numbers; ties: preference order
    candidates.sort(key=lambda c: (c[0], c[1]))
    first_error: QlstmError | None = None
    for _, _, delim, n, rows in candidates:
        try:
            return _dialect(path, encoding, lines, content, delim, n, rows)
        except QlstmError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _numeric_share(rows: list[list[str]], delim: str) -> float:
    """The share of data fields that are numbers (or empty: a missing value) under a decimal
    point, or under a decimal comma when ``delim`` is not a comma; the better of the two."""
    cells = [c.strip() for r in rows for c in r]
    cells = [c for c in cells if c] or [""]
    best = 0.0
    for decimal in "." if delim == "," else ".,":
        best = max(best, sum(_is_number(c, decimal) for c in cells) / len(cells))
    return best


def _dialect(
    path: Path, encoding: str, lines: list[str], content: list[int], delim: str, n: int, rows: list[list[str]]
) -> Dialect:
    """The dialect for delimiter ``delim`` splitting the data ``rows`` into ``n`` fields: decimal
    mark, trailing delimiter and header line; raises QlstmError if no header line fits."""
    trailing = delim != " " and all(r[-1].strip() == "" for r in rows)
    n -= trailing
    decimal = "."
    if delim != ",":
        cells = [c for r in rows for c in r[:n]]
        if any(_DEC_COMMA.match(c.strip()) for c in cells):
            decimal = ","

    # the header: the last line of n fields none of which is a number (data lines hold numbers)
    def header_fields(i: int) -> list[str]:
        f = _fields(lines[i], delim, n)
        return f[:-1] if len(f) == n + 1 and not f[-1].strip() else f  # a trailing delimiter

    heads = [
        k
        for k, i in enumerate(content)
        if len(f := header_fields(i)) == n
        and not any(_is_number(c, decimal) for c in f)
        and any(c.strip() for c in f)
    ]
    if not heads:
        raise QlstmError(
            f"{path}: no header line of {n} column names above the data (delimiter {_name(delim)}); "
            "qlstm needs column names"
        )
    first = heads[-1] + 1
    if first == len(content):
        raise QlstmError(f"{path}: empty file (a header but no data rows)")
    h = content[first - 1]
    header = header_fields(h)
    return Dialect(encoding, delim, decimal, h, tuple(_column_name(c) for c in header), bool(trailing))


def _column_name(field: str) -> str:
    """A header field as a column name: surrounding blanks, a byte-order mark left over (a file
    saved with two) and quotes around it (blank-aligned columns: no CSV parser removes them) dropped."""
    name = field.strip().lstrip("\ufeff").strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name


def _name(delim: str) -> str:
    return {"\t": "tab", " ": "blanks", ";": "semicolon", ",": "comma", "|": "bar"}[delim]


class _Blanks(io.RawIOBase):
    """A binary stream with runs of blanks turned into one tab (and leading blanks removed),
    so pyarrow's single-character delimiter can parse blank-aligned columns; text in another
    ``encoding`` than UTF-8 (UTF-16: bytes, not characters, would be replaced) comes out as UTF-8."""

    _run = re.compile(rb"[ \t]+")
    _lead = re.compile(rb"(?m)^\t|\t(?=\r?$)")

    def __init__(self, fh, encoding: str = "utf-8") -> None:
        self.fh, self.rest, self.out = fh, b"", b""
        utf8 = encoding in ("utf-8", "utf-8-sig")
        self.decoder = None if utf8 else codecs.getincrementaldecoder(encoding)()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.fh.close()
        super().close()

    def _fill(self) -> None:
        while not self.out:
            raw = self.fh.read(1 << 20)
            chunk = raw if self.decoder is None else self.decoder.decode(raw, final=not raw).encode()
            if not raw:
                data, self.rest = self.rest, b""
                if not data:
                    return
            else:
                data = self.rest + chunk
                cut = data.rfind(b"\n") + 1  # transform whole lines only
                if cut == 0:
                    self.rest = data
                    continue
                data, self.rest = data[:cut], data[cut:]
            self.out = self._lead.sub(b"", self._run.sub(b"\t", data))

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self.out))
        b[:n] = self.out[:n]
        self.out = self.out[n:]
        return n


def batches(path: Path, d: Dialect, column_names: list[str], column_types: dict, include: list[str]):
    """Stream ``path`` as pyarrow RecordBatches of the ``include`` columns."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = list(column_names) + (["__trailing__"] if d.trailing else [])
    read = pcsv.ReadOptions(
        column_names=names, skip_rows=d.skip_rows + 1, block_size=1 << 18,
        # a UTF-8 mark is on the header line, which is skipped; "utf-8" is not transcoded
        encoding="utf-8" if d.encoding == "utf-8-sig" or d.delimiter == " " else d.encoding,
        use_threads=False,
    )  # fmt: skip
    parse = pcsv.ParseOptions(delimiter="\t" if d.delimiter == " " else d.delimiter)
    conv = pcsv.ConvertOptions(
        column_types=column_types, include_columns=include, decimal_point=d.decimal,
        strings_can_be_null=False,
    )  # fmt: skip
    # blank-aligned columns: a UTF-8 stream with every run of blanks turned into one tab
    blanks = d.delimiter == " "
    source = io.BufferedReader(_Blanks(open(path, "rb"), d.encoding), 1 << 20) if blanks else str(path)  # noqa: SIM115
    try:
        reader = pcsv.open_csv(source, read_options=read, parse_options=parse, convert_options=conv)
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
    except UnicodeDecodeError:  # raised by pyarrow's transcoding of a file that is not UTF-8
        raise find_decode_error(path, d.encoding) or QlstmError(f"{path}: not {d.encoding} text") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        msg = str(exc).splitlines()[0]
        if "invalid UTF8" in msg and (err := find_decode_error(path, d.encoding)):
            raise err from None
        m = re.match(
            r"In CSV column #(\d+): Row #(\d+): CSV conversion error to \w+: invalid value '(.*)'", msg
        )
        if m and int(m[1]) < len(names):
            raise QlstmError(
                f"{path}: column {names[int(m[1])]} is not numeric (line {int(m[2]) + d.skip_rows}: {m[3]!r})"
            ) from None
        raise QlstmError(f"{path}: not a readable text recording: {msg}") from None
    finally:
        if not isinstance(source, str):
            source.close()
