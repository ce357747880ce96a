"""Text encodings as Excel and loggers write them (case B10 and its kind): every byte-order mark,
UTF-16/32, a Windows-1252 unit in the header load exactly as the plain UTF-8 file; bytes that do
not decode are one error line naming the file, the byte offset and the encoding, in every text
reader (recordings, YAML configs, label files, run-folder JSON)."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qlstm.cli import main
from qlstm.config import read_yaml
from qlstm.data import load_events
from qlstm.data.textfile import HEAD_BYTES
from qlstm.detect.labels import read_labels_file
from qlstm.errors import QlstmError
from qlstm.io import find_decode_error, read_text, text_encoding
from qlstm.runs import read_json


def _rows(header=("event", "time_s", "U_res [V]"), n=200, names=("1", "2")) -> list[list[str]]:
    """The B10 recording: 2 events x ``n`` samples (fixed seed), as fields."""
    rng = np.random.default_rng(0)
    rows = [list(header)]
    t = np.arange(n) * 0.4
    for name in names:
        u = 1e-3 * np.sin(t / 7) + 1e-4 * rng.standard_normal(n)
        rows += [[name, f"{ti:.1f}", f"{ui:.6e}"] for ti, ui in zip(t, u, strict=True)]
    return rows


def _text(rows, sep=",", newline="\r\n") -> str:
    return newline.join(sep.join(r) for r in rows) + newline


def _same(a, b) -> None:
    assert a.names == b.names and a.channel_names == b.channel_names and a.units == b.units and a.dt == b.dt
    for x, y in zip(a.events, b.events, strict=True):
        assert x.t.dtype == y.t.dtype and x.x.dtype == y.x.dtype
        np.testing.assert_array_equal(x.t, y.t)
        np.testing.assert_array_equal(x.x, y.x)


def _plain(tmp_path, unit="V"):
    path = tmp_path / f"plain_{unit}.csv"
    path.write_bytes(_text(_rows(header=("event", "time_s", f"U_res [{unit}]"))).encode("utf-8"))
    return load_events(path)


def _header(unit):
    return ("event", "time_s", f"U_res [{unit}]")


# (name, file suffix, unit in the header, bytes of the file)
VARIANTS = [
    ("utf8-bom-excel-csv-utf8", ".csv", "V", codecs.BOM_UTF8 + _text(_rows()).encode()),
    ("utf8-two-boms", ".csv", "V", 2 * codecs.BOM_UTF8 + _text(_rows()).encode()),
    ("utf8-bom-semicolon-decimal-comma", ".csv", "V",
     codecs.BOM_UTF8 + _text([[c.replace(".", ",") for c in r] for r in _rows()], ";").encode()),
    ("utf8-bom-on-a-comment-line", ".csv", "V", codecs.BOM_UTF8 + ("# logger 7\r\n" + _text(_rows())).encode()),
    ("utf16le-bom-tab-excel-unicode-text", ".txt", "V", _text(_rows(), "\t").encode("utf-16")),
    ("utf16be-bom-tab", ".txt", "V", codecs.BOM_UTF16_BE + _text(_rows(), "\t").encode("utf-16-be")),
    ("utf16le-no-bom-tab", ".tsv", "V", _text(_rows(), "\t").encode("utf-16-le")),
    ("utf16be-no-bom-tab", ".tsv", "V", _text(_rows(), "\t").encode("utf-16-be")),
    ("utf32le-bom-tab", ".txt", "V", codecs.BOM_UTF32_LE + _text(_rows(), "\t").encode("utf-32-le")),
    ("utf16le-bom-blank-aligned", ".dat", "V", _text(_rows(), "   ").encode("utf-16")),
    ("utf8-bom-blank-aligned", ".dat", "V", codecs.BOM_UTF8 + _text(_rows(), "   ").encode()),
    ("utf16le-bom-tab-micro", ".txt", "µV", _text(_rows(_header("µV")), "\t").encode("utf-16")),
    ("utf8-bom-micro", ".csv", "µV", codecs.BOM_UTF8 + _text(_rows(_header("µV"))).encode()),
    ("cp1252-micro", ".csv", "µV", _text(_rows(_header("µV"))).encode("cp1252")),
    ("cp1252-degree-semicolon", ".csv", "°C", _text(_rows(_header("°C")), ";").encode("cp1252")),
    ("cp1252-micro-blank-aligned", ".dat", "µV", _text(_rows(_header("µV")), "   ").encode("cp1252")),
    ("quoted-header-bom", ".csv", "V",
     codecs.BOM_UTF8 + _text([['"event"', '"time_s"', '"U_res [V]"'], *_rows()[1:]]).encode()),
    ("blanks-in-header", ".csv", "V", _text([[" event ", " time_s", "U_res [V] "], *_rows()[1:]]).encode()),
    ("quoted-header-blank-aligned", ".dat", "V",
     _text([['"event"', '"time_s"', '"U_res [V]"'], *_rows()[1:]], "   ").encode()),
]  # fmt: skip


@pytest.mark.parametrize("name, suffix, unit, data", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_encodings_load_as_plain(tmp_path, name, suffix, unit, data):
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    es = load_events(path)
    _same(_plain(tmp_path, unit), es)
    assert es.names == ("1", "2") and es.channel_names == ("U_res",) and es.units == (unit,)
    assert [len(e) for e in es.events] == [200, 200]


def test_b10_variants_through_cli(tmp_path, capsys):
    """The case's commands: bom.csv inspects as plain.csv (2 events, channel U_res [V])."""
    for name, encoding in (("plain.csv", "utf-8"), ("bom.csv", "utf-8-sig")):
        (tmp_path / name).write_bytes(_text(_rows()).encode(encoding))
    outs = []
    for name in ("plain.csv", "bom.csv"):
        assert main(["data", "inspect", str(tmp_path / name), "--channels", "U_res"]) == 0
        outs.append(capsys.readouterr().out.replace(name, "X"))
    assert outs[0] == outs[1] and "events:   2" in outs[1] and "channels: U_res [V]" in outs[1]


@pytest.mark.parametrize("kind", ["parquet", "npz"])
def test_bom_glued_to_a_column_name_in_other_formats(tmp_path, kind):
    """A B10 CSV converted by a reader that kept the mark: '\\ufeffevent' is still the event column."""
    rows = _rows()[1:]
    cols = {
        "\ufeffevent": np.array([r[0] for r in rows]),
        "time_s": np.array([float(r[1]) for r in rows]),
        "U_res": np.array([float(r[2]) for r in rows]),
    }
    path = tmp_path / f"bom.{kind}"
    if kind == "parquet":
        pq.write_table(pa.table(cols), path)
    else:
        np.savez(path, **cols)
    es = load_events(path)
    assert es.names == ("1", "2") and es.channel_names == ("U_res",)
    np.testing.assert_array_equal(es.events[1].x[:, 0], cols["U_res"][200:])


def _big(names=("1", "2")) -> list[list[str]]:
    """Enough rows that the second event starts beyond the sniffed head."""
    rows = _rows(n=12000, names=names)
    assert len(_text(rows[:12001]).encode()) > HEAD_BYTES
    return rows


@pytest.mark.parametrize(
    "name, data, bad, encoding",
    [
        # a byte Windows-1252 leaves undefined, in the header (the sniffed head)
        ("cp1252-undefined-in-header", _text(_rows(_header("V\x81"))).encode("latin-1"), b"\x81",
         "UTF-8 or Windows-1252"),
        # NUL padding (a logger's preallocated file cut by a power loss)
        ("nul-padding", _text(_rows()).encode() + bytes(512), b"\x00", "NUL byte"),
        # after a UTF-8 mark the text must be UTF-8 (the offset counts the mark)
        ("utf8-bom-then-latin1", codecs.BOM_UTF8 + _text(_rows(_header("µV"))).encode("latin-1"), b"\xb5",
         "in UTF-8:"),
        # beyond the head: a UTF-8 head, then a Windows-1252 event name (pyarrow's UTF-8 check)
        ("utf8-head-then-cp1252", _text(_big(("1", "Prüfung"))).encode("cp1252"), b"\xfc", "in UTF-8:"),
        ("utf8-bom-head-then-cp1252", codecs.BOM_UTF8 + _text(_big(("1", "Prüfung"))).encode("cp1252"),
         b"\xfc", "in UTF-8:"),
        # beyond the head: a Windows-1252 file with an undefined byte (pyarrow's transcoding)
        ("cp1252-head-then-undefined", _text(_big(("µ", "B\x81"))).encode("latin-1"), b"\x81",
         "UTF-8 or Windows-1252"),
        # the same through the blank-aligned stream (qlstm transcodes it, not pyarrow)
        ("cp1252-blank-aligned-then-undefined", _text(_big(("µ", "B\x81")), "   ").encode("latin-1"), b"\x81",
         "UTF-8 or Windows-1252"),
        # beyond the head: a lone UTF-16 surrogate
        ("utf16-lone-surrogate", _text(_big(("1", "B\ud800")), "\t").encode("utf-16", "surrogatepass"),
         "\ud800".encode("utf-16-le", "surrogatepass"), "UTF-16"),
    ],
)  # fmt: skip
def test_undecodable_bytes_one_line_with_offset(tmp_path, capsys, name, data, bad, encoding):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data)
    offset = data.index(bad)
    with pytest.raises(QlstmError) as exc:
        load_events(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: not a text file") and f"at byte offset {offset} " in msg, msg
    assert encoding in msg and "\n" not in msg
    assert main(["data", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"qlstm data: error: {msg}"


def test_cli_refusal_is_one_line_without_traceback(tmp_path):
    path = tmp_path / "undefined.csv"
    path.write_bytes(_text(_rows(_header("V\x81"))).encode("latin-1"))
    out = subprocess.run(
        [sys.executable, "-m", "qlstm.cli", "data", "inspect", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(path) in lines[0] and "byte offset 21" in lines[0] and "0x81" in lines[0]


# ---------------------------------------------------------------------- the shared decoder
@pytest.mark.parametrize(
    "head, encoding",
    [
        (codecs.BOM_UTF8 + b"ab", "utf-8-sig"),
        (codecs.BOM_UTF16_LE + b"a\x00", "utf-16"),
        (codecs.BOM_UTF16_BE + b"\x00a", "utf-16"),
        (codecs.BOM_UTF32_LE + b"a\x00\x00\x00", "utf-32"),
        (codecs.BOM_UTF32_BE + b"\x00\x00\x00a", "utf-32"),
        (b"a\x00b\x00", "utf-16-le"),
        (b"\x00a\x00b", "utf-16-be"),
        (b"a\x00\x00\x00", "utf-32-le"),
        (b"\x00\x00\x00a", "utf-32-be"),
        (b"abcd", "utf-8"),
        (b"\xb5V", "utf-8"),
    ],
)
def test_text_encoding(head, encoding):
    assert text_encoding(head) == encoding


TEXT = "µV °C é€ " * 20


@pytest.mark.parametrize(
    "encoding, mark, codec, bad",
    [
        ("utf-8", b"", "utf-8", b"\xff"),
        ("utf-8-sig", codecs.BOM_UTF8, "utf-8", b"\xff"),
        ("utf-16", codecs.BOM_UTF16_LE, "utf-16-le", "\udc80".encode("utf-16-le", "surrogatepass")),
        ("utf-16-be", b"", "utf-16-be", "\udc80".encode("utf-16-be", "surrogatepass")),
        ("utf-32", codecs.BOM_UTF32_BE, "utf-32-be", (0xDC80).to_bytes(4, "big")),
    ],
)
def test_find_decode_error_across_blocks(tmp_path, encoding, mark, codec, bad):
    """The offset of the first bad byte, whatever the block size (characters cut by blocks)."""
    good = mark + TEXT.encode(codec)
    path = tmp_path / "t.txt"
    path.write_bytes(good + bad + "tail".encode(codec))
    for block in (1, 3, 7, 1 << 20):
        err = find_decode_error(path, encoding, block=block)
        assert f"at byte offset {len(good)} " in str(err), (block, err)
    (tmp_path / "ok.txt").write_bytes(good)
    assert find_decode_error(tmp_path / "ok.txt", encoding, block=3) is None


# ---------------------------------------------------------------------- the other text readers
YAML = "format: 1\nunits: µV  # the unit of U_res\nlist: [a, b]\n"


@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + YAML.encode(),
        YAML.encode("utf-16"),
        codecs.BOM_UTF16_BE + YAML.encode("utf-16-be"),
        YAML.encode("utf-16-le"),
    ],
    ids=["utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le-no-bom"],
)
def test_yaml_config_with_a_mark_reads_as_plain(tmp_path, data):
    (tmp_path / "plain.yaml").write_text(YAML, encoding="utf-8")
    (tmp_path / "c.yaml").write_bytes(data)
    assert read_yaml(tmp_path / "c.yaml") == read_yaml(tmp_path / "plain.yaml") == {
        "format": 1, "units": "µV", "list": ["a", "b"]
    }  # fmt: skip


def test_yaml_config_not_utf8_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    data = "seed: 3\n# U_res in µV\n".encode("cp1252")
    path.write_bytes(data)
    offset = data.index("µ".encode("cp1252"))
    with pytest.raises(
        QlstmError, match=rf"c\.yaml: not a text file in UTF-8: byte 0xB5 at byte offset {offset} "
    ):
        read_yaml(path)
    assert main(["data", "generate", "--out", str(tmp_path / "x.csv"), "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "byte offset" in err and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "cp1252"])
def test_labels_csv_from_excel(tmp_path, encoding):
    path = tmp_path / "labels.csv"
    path.write_bytes('event,start_s, end_s\r\n"Prüfung 1",1.5,2.5\r\n2,0,1\r\n'.encode(encoding))
    assert read_labels_file(path) == {"Prüfung 1": [(1.5, 2.5)], "2": [(0.0, 1.0)]}


def test_labels_and_run_json_with_a_mark(tmp_path):
    windows = {"1": [[1.0, 2.0]]}
    (tmp_path / "labels.json").write_bytes(codecs.BOM_UTF8 + json.dumps(windows).encode())
    assert read_labels_file(tmp_path / "labels.json") == {"1": [(1.0, 2.0)]}
    (tmp_path / "metrics.json").write_bytes(json.dumps({"rmse": 0.5}).encode("utf-16"))
    assert read_json(tmp_path / "metrics.json") == {"rmse": 0.5}


def test_read_text_refuses_with_offset(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(codecs.BOM_UTF16_LE + '{"a": 1}'.encode("utf-16-le") + b"\x00\xdc")
    with pytest.raises(
        QlstmError, match=r"x\.json: not a text file in UTF-16: bytes 0x00 0xDC at byte offset 18 "
    ):
        read_text(path)
    path.write_bytes("U [µV]".encode("cp1252"))
    assert read_text(path, legacy=True) == "U [µV]"
    with pytest.raises(QlstmError, match=r"not a text file in UTF-8: byte 0xB5 at byte offset 3 "):
        read_text(path)
    path.write_bytes(b"U [\x81V]")
    with pytest.raises(QlstmError, match=r"in UTF-8 or Windows-1252: byte 0x81 at byte offset 3 "):
        read_text(path, legacy=True)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_importer_normalisation_file_with_a_mark(tmp_path, suffix):
    from qlstm.importers.common import read_normalisation

    spec = {"lo": [0.5], "hi": [2.0], "channel_names": ["U_res"], "units": ["µV"]}
    text = json.dumps(spec, ensure_ascii=False)  # JSON is YAML too
    path = tmp_path / f"norm{suffix}"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    norm = read_normalisation(str(path), 1)
    assert norm.lo == (0.5,) and norm.channel_names == ("U_res",) and norm.units == ("µV",)
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(QlstmError, match=r"not a text file in UTF-8: byte 0xB5 at byte offset \d+ "):
        read_normalisation(str(path), 1)
