"""Reading and writing event files: text (CSV ...), Parquet, HDF5, NPZ (dispatch on the extension).

The schema of each format is documented in ``docs/data.md``. In short:

* text (``.csv .txt .dat .tsv``) / Parquet: a long table, one row per sample, columns ``event``
  (optional: without it the file is one event named after the file), a time column (``time_s``,
  ``time``, ``timestamp`` ...: :mod:`qlstm.data.timecol`), one column per channel, and optional
  ``quench`` (1 on the quench sample, else 0). A channel header may carry its unit:
  ``U_res [V]``, ``U_res (mV)``, ``U_res / mV`` (:mod:`qlstm.data.units`); Parquet may also keep
  units in the field metadata key ``unit``. Text dialects are detected by
  :mod:`qlstm.data.textfile`.
* HDF5: one group per event holding 1-D datasets ``time_s`` and one per channel (attribute
  ``unit``); the group attribute ``quench_index`` marks the quench. Root attributes ``events``
  and ``channels`` fix the order (otherwise: group order, and the first group's datasets).
* NPZ: 1-D arrays ``event`` (optional), ``time_s``, one per channel, optional ``quench``, and
  optional string arrays ``channel_names`` / ``channel_units``.

Every reader ends in :func:`qlstm.data.events.build_event_set`, so all formats refuse and
repair the same things. Long tables are read in blocks (text, Parquet, the NPZ arrays but its
time column) into one array per column: float64 time and channels, int8 quench/anomaly flags,
event codes of one byte per row up to 256 events; events that are contiguous rows are views of
those arrays, so the peak memory stays a small multiple of the samples (measured in
``docs/data.md``). Every writer goes through :func:`qlstm.io.atomic_path`.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qlstm.data import timecol
from qlstm.data.events import DEFAULT_UNITS, EventSet, build_event_set, repair_dst_fallback
from qlstm.data.units import split_header
from qlstm.errors import QlstmError
from qlstm.io import atomic_path

FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".npz": "npz",
}
RESERVED = ("event", "time_s", "quench", "anomaly")
#: Names of the event column (compared case-insensitively).
EVENT_NAMES = ("event", "event_id", "event_name")
#: Names of the NPZ arrays that describe the channels rather than hold one.
NPZ_META = ("channel_names", "channel_units")
#: Rows per block when a long table is read in blocks.
BLOCK_ROWS = 1 << 16


def file_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise QlstmError(
            f"{path}: unknown file extension {suffix or '(none)'!r}; use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


@dataclass(frozen=True)
class TimeOptions:
    """How to read the time column: its name, its unit, and whether to repair a DST fall-back."""

    column: str | None = None
    unit: str | None = None
    repair_dst: bool = False


# ====================================================================== reading
def load_events(
    path: Path | str,
    channels: Sequence[str] | None = None,
    fill_gaps: bool = False,
    min_length: int = 2,
    time_column: str | None = None,
    time_unit: str | None = None,
    repair_dst: bool = False,
) -> EventSet:
    """Read, check and (with ``fill_gaps``/``repair_dst``) repair the events of one file.

    ``channels`` selects and orders channels (default: all, in file order); ``min_length`` is the
    shortest series accepted (pass ``L + k`` to refuse events too short to window).
    ``time_column`` names the time column (default: found by name, :data:`timecol.TIME_NAMES`),
    ``time_unit`` its unit (s ms us ns min h; default: from the header/encoding, else seconds);
    ``repair_dst`` moves the hour a local-time clock repeats at the end of daylight saving.
    Raises :class:`QlstmError` with one line naming the file and the problem.
    """
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise QlstmError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise QlstmError(f"{path}: empty file")
    if time_unit is not None:
        timecol.unit_seconds(time_unit, f"{path}: --time-unit")
    opts = TimeOptions(time_column, time_unit, repair_dst)
    reader = {"csv": _read_text, "parquet": _read_parquet, "hdf5": _read_hdf5, "npz": _read_npz}[kind]
    raw, names, units, flags = reader(path, None if channels is None else tuple(channels), opts)
    es = build_event_set(
        str(path),
        raw,
        names,
        units,
        fill=fill_gaps,
        min_length=min_length,
        meta={"format": kind},
        repair_dst=repair_dst,
    )
    return _with_anomalies(path, kind, es, raw, flags, repair_dst)


def _anomaly_runs(t: np.ndarray, flag: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Runs of 1 in the per-sample ``flag`` -> ``(first time_s, last time_s)`` windows of ``t``."""
    edges = np.diff(np.concatenate([[0], flag.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return tuple((float(t[a]), float(t[b])) for a, b in zip(starts, ends, strict=True))


def _grid_flags(t_rows: np.ndarray, flag: np.ndarray, t: np.ndarray, dt: float) -> np.ndarray:
    """The row flags of an event on its gap-filled grid ``t``: a recorded sample keeps its flag,
    a filled one is anomalous only if the recorded samples on both sides of the gap are."""
    pos = np.rint((t_rows - t[0]) / dt).astype(np.int64)  # grid index of each recorded row
    g = np.arange(len(t))
    prev = np.clip(np.searchsorted(pos, g, side="right") - 1, 0, len(pos) - 1)
    nxt = np.minimum(prev + 1, len(pos) - 1)
    return np.where(pos[prev] == g, flag[prev], flag[prev] & flag[nxt])


def _with_anomalies(path: Path, kind: str, es: EventSet, raw, flags, repair_dst: bool) -> EventSet:
    """Attach the anomaly windows a file carries to its events: the per-row ``anomaly`` flags read
    with the other columns (``flags``: event name -> int8 array in ``raw`` row order, or None), or
    HDF5's ``anomaly_windows`` attribute; a file without them is returned unchanged."""
    from dataclasses import replace

    found: dict[str, tuple[tuple[float, float], ...]] = {}
    if kind == "hdf5":
        import h5py

        with h5py.File(path, "r") as f:
            for e in es.events:
                g = f[e.name] if e.name in f and isinstance(f[e.name], h5py.Group) else f
                if "anomaly_windows" in g.attrs:
                    w = np.asarray(g.attrs["anomaly_windows"], dtype=np.float64).reshape(-1, 2)
                    found[e.name] = tuple((float(a), float(b)) for a, b in w)
    elif flags is not None:
        rows_t = {name: t for name, t, _, _ in raw}
        for e in es.events:
            flag = flags[e.name]
            if len(flag) != len(e.t):  # gaps were filled: map the rows onto the regular grid
                t_rows = rows_t[e.name]
                if repair_dst:
                    t_rows = repair_dst_fallback(str(path), e.name, t_rows)
                flag = _grid_flags(t_rows, flag, e.t, es.dt)
            found[e.name] = _anomaly_runs(e.t, flag)
    if not found:
        return es
    events = tuple(replace(e, anomalies=found.get(e.name, ())) for e in es.events)
    return EventSet(events, es.channel_names, es.units, es.dt, es.source, dict(es.meta))


def _select(path: Path, available: list[str], wanted: tuple[str, ...] | None) -> list[str]:
    if wanted is None:
        if not available:
            raise QlstmError(f"{path}: no channel column (only event, time and quench columns found)")
        return available
    if not wanted:
        raise QlstmError(f"{path}: no channel selected (channels in file: {', '.join(available) or 'none'})")
    missing = [c for c in wanted if c not in available]
    if missing:
        raise QlstmError(
            f"{path}: missing column(s) {', '.join(missing)} (channels in file: {', '.join(available) or 'none'})"
        )
    return list(wanted)


def _numeric(path: Path, name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "fiub":
        raise QlstmError(f"{path}: column {name} is not numeric (dtype {a.dtype})")
    return a.astype(np.float64, copy=False)


@dataclass
class _Layout:
    """Which source column plays which part: bare names, units, time column, channels."""

    source: list[str]  # column names as in the file
    bare: list[str]  # with the unit split off
    units: dict[str, str]  # bare name -> unit from the header
    time: str  # source name of the time column
    event: str | None
    quench: str | None
    anomaly: str | None  # per-sample 0/1 anomaly labels
    channels: list[str]  # chosen channels, bare names
    channel_source: list[str]  # their source names
    ignore: set[str] = field(default_factory=set)

    @property
    def time_unit(self) -> str:
        return self.units.get(self.bare[self.source.index(self.time)], "")


def _layout(path: Path, source: list[str], wanted, opts: TimeOptions, ignore=()) -> _Layout:
    pairs = [split_header(c) for c in source]
    bare = [p[0] for p in pairs]
    dup = sorted({n for n in bare if bare.count(n) > 1})
    if dup:
        raise QlstmError(f"{path}: duplicated column(s) {', '.join(dup)}")
    units = {b: u for b, u in pairs if u}
    considered = [b for b, s in zip(bare, source, strict=True) if s not in ignore]
    tname = timecol.find_time_column(considered, opts.column, str(path), units)
    lower = {b.lower(): b for b in considered if b != tname}
    found = [lower[e] for e in EVENT_NAMES if e in lower]
    if len(found) > 1:
        raise QlstmError(f"{path}: several event columns ({', '.join(found)}); keep one")
    event = found[0] if found else None
    quench = lower.get("quench")
    anomaly = lower.get("anomaly")
    reserved = {tname, event, quench, anomaly}
    available = [b for b in considered if b not in reserved]
    chosen = _select(path, available, wanted)
    src = dict(zip(bare, source, strict=True))
    return _Layout(
        source=source,
        bare=bare,
        units=units,
        time=src[tname],
        event=None if event is None else src[event],
        quench=None if quench is None else src[quench],
        anomaly=None if anomaly is None else src[anomaly],
        channels=chosen,
        channel_source=[src[c] for c in chosen],
        ignore=set(ignore),
    )


class _LongTable:
    """Columns of a long table gathered block by block into preallocated arrays: event codes
    (the narrowest unsigned integer holding the labels seen so far, in order of first
    appearance: one byte per row up to 256 events), raw time values, channel values (float64,
    (N, C)), quench flags (int8: 0, 1, or 2 for any other value). ``capacity`` is the expected
    row count (exact for Parquet and NPZ, the line count for text); the arrays grow if it was
    too small and are trimmed (as views)."""

    def __init__(self, path: Path, lay: _Layout, capacity: int) -> None:
        self.path, self.lay = path, lay
        self.cap = max(int(capacity), 1)
        self.labels: dict[str, int] = {}
        self.codes = np.empty(self.cap, dtype=np.uint8) if lay.event is not None else None
        self.t: np.ndarray | None = None
        self.time_is_datetime: bool | None = None
        self.x = np.empty((self.cap, len(lay.channels)), dtype=np.float64)
        self.quench = np.empty(self.cap, dtype=np.int8) if lay.quench is not None else None
        self.anomaly = np.empty(self.cap, dtype=np.int8) if lay.anomaly is not None else None
        self.n = 0

    def _reserve(self, k: int) -> None:
        if self.n + k <= self.cap:
            return
        self.cap = max(2 * self.cap, self.n + k)
        for name in ("codes", "t", "x", "quench", "anomaly"):
            a = getattr(self, name)
            if a is not None:
                b = np.empty((self.cap, *a.shape[1:]), dtype=a.dtype)
                b[: self.n] = a[: self.n]
                setattr(self, name, b)

    def add_labels(self, values: np.ndarray, at: int) -> None:
        """Event labels of rows ``at ..`` (a 1-D NumPy block of str/bytes/numbers). Only the first
        label of each run of equal labels is looked up (one per event when its rows are
        contiguous), so the block's strings are compared once, not copied and sorted."""
        heads = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
        uniq, first, inv = np.unique(values[heads], return_index=True, return_inverse=True)
        lut = np.empty(len(uniq), dtype=np.int64)
        for j in np.argsort(first, kind="stable"):
            v = uniq[j]
            key = v.decode() if isinstance(v, bytes) else str(v)
            lut[j] = self.labels.setdefault(key, len(self.labels))
        self._put_codes(at, lut, np.repeat(inv.ravel(), np.diff(np.append(heads, len(values)))))

    def _put_codes(self, at: int, lut: np.ndarray, inv: np.ndarray) -> None:
        """Rows ``at ..`` get the codes ``lut[inv]``; the code array is widened (one copy) when
        the labels outgrow its type (256 events for uint8, 65,536 for uint16)."""
        need = np.min_scalar_type(max(len(self.labels) - 1, 0))
        if need.itemsize > self.codes.dtype.itemsize:
            self.codes = self.codes.astype(need)
        self.codes[at : at + len(inv)] = lut.astype(self.codes.dtype)[inv]

    def flag_codes(self, name: str, a: np.ndarray) -> np.ndarray:
        """A block of the quench column as int8 codes: 0 and 1 as they are, 2 for any other value
        (NaN included), refused per event by :meth:`events` (one byte per row, not eight)."""
        a = _numeric(self.path, name, a)
        out = np.full(len(a), 2, dtype=np.int8)
        out[a == 0] = 0
        out[a == 1] = 1
        return out

    def add_arrow(self, batch) -> None:
        """One pyarrow RecordBatch holding the layout's columns."""
        import pyarrow as pa
        import pyarrow.compute as pc

        lay, k, n = self.lay, batch.num_rows, self.n
        self._reserve(k)
        if lay.event is not None:
            col = batch.column(lay.event)
            if col.null_count:
                raise QlstmError(f"{self.path}: column event has empty cells")
            if pa.types.is_dictionary(col.type):
                col = pc.cast(col, col.type.value_type)
            enc = pc.cast(col, pa.string()).dictionary_encode()
            lut = np.array(
                [self.labels.setdefault(str(v), len(self.labels)) for v in enc.dictionary.to_pylist()],
                dtype=np.int64,
            )
            self._put_codes(n, lut, enc.indices.to_numpy(zero_copy_only=False))
        t = batch.column(lay.time)
        if t.null_count:
            raise QlstmError(f"{self.path}: time column {lay.time!r} has empty cells")
        self._add_time(t, n)
        for c, name in enumerate(lay.channel_source):
            self.x[n : n + k, c] = self._values(batch.column(name), name)
        if lay.quench is not None:
            q = batch.column(lay.quench)
            if q.null_count:
                raise QlstmError(f"{self.path}: column quench has empty cells")
            self.quench[n : n + k] = self.flag_codes("quench", q.to_numpy(zero_copy_only=False))
        if lay.anomaly is not None:
            a = batch.column(lay.anomaly)
            if a.null_count:
                raise QlstmError(f"{self.path}: column anomaly has empty cells")
            self.anomaly[n : n + k] = self.flags01(a.to_numpy(zero_copy_only=False))
        self.n += k

    def flags01(self, a: np.ndarray) -> np.ndarray:
        """The anomaly column's values as int8 0/1; anything else is refused."""
        a = _numeric(self.path, "anomaly", a)
        if not np.isin(a, (0, 1)).all():
            raise QlstmError(f"{self.path}: column anomaly must hold only 0 and 1")
        return a.astype(np.int8)

    def _values(self, col, name: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        if col.null_count:  # empty cells: NaN, refused with their position by check_values
            col = pc.fill_null(pc.cast(col, pa.float64()), float("nan"))
        return _numeric(self.path, name, col.to_numpy(zero_copy_only=False))

    def _add_time(self, values, at: int) -> None:
        ns = timecol._datetime_ns(values, f"time column {self.lay.time!r}", str(self.path))
        is_dt = ns is not None
        if self.time_is_datetime is None:
            self.time_is_datetime = is_dt
        elif self.time_is_datetime != is_dt:
            raise QlstmError(f"{self.path}: time column {self.lay.time!r} mixes date-times and numbers")
        a = ns if is_dt else np.asarray(values)
        if self.t is None:
            self.t = np.empty(self.cap, dtype=a.dtype)
        elif a.dtype != self.t.dtype:
            raise QlstmError(
                f"{self.path}: time column {self.lay.time!r} changes type ({self.t.dtype}, {a.dtype})"
            )
        self.t[at : at + len(a)] = a

    def events(self, opts: TimeOptions):
        """``[(name, t, x, quench_index)]`` of :func:`build_event_set` (events in order of first
        row), channel names, units, and the anomaly flags per event (int8, row order) or None."""
        path, lay, n = self.path, self.lay, self.n
        if n == 0:
            raise QlstmError(f"{path}: empty file (a header but no data rows)")
        raw_t = self.t[:n]
        if self.time_is_datetime:
            t = raw_t.astype(np.float64)
            t *= 1e-9  # in place: one float64 copy of the column, not two
        else:
            t = timecol.to_seconds(
                raw_t, lay.bare[lay.source.index(lay.time)], lay.time_unit, opts.unit, str(path)
            )
        self.t = raw_t = None
        x = self.x[:n]
        quench = self.quench[:n] if self.quench is not None else None
        anomaly = self.anomaly[:n] if self.anomaly is not None else None
        self.x = self.quench = self.anomaly = None  # the views above hold the arrays
        flags: dict[str, np.ndarray] | None = None if anomaly is None else {}
        if lay.event is None:
            bounds = [0, n]
            labels = [path.stem]
        else:
            codes = self.codes[:n]
            self.codes = None
            labels = list(self.labels)
            change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
            if len(change) + 1 == len(labels):  # every event one contiguous run: views
                bounds = [0, *change.tolist(), n]
            else:  # rows of events interleaved: every column put in event order, one at a time
                order = np.argsort(codes, kind="stable")
                bounds = [0, *np.cumsum(np.bincount(codes, minlength=len(labels))).tolist()]
                del codes
                t = t[order]
                x = x[order]
                quench = None if quench is None else quench[order]
                anomaly = None if anomaly is None else anomaly[order]
                del order
        raw = []
        for g, name in enumerate(labels):
            idx = slice(bounds[g], bounds[g + 1])
            q = None
            if quench is not None:
                qv = quench[idx]
                if (qv > 1).any():  # flag code 2: a value other than 0 and 1
                    raise QlstmError(f"{path}: event {name!r}: column quench must hold only 0 and 1")
                ones = np.flatnonzero(qv)
                if len(ones) > 1:
                    raise QlstmError(
                        f"{path}: event {name!r}: {len(ones)} samples marked quench=1; at most one"
                    )
                q = int(ones[0]) if len(ones) else None
            raw.append((name, t[idx], x[idx], q))
            if flags is not None:
                flags[name] = anomaly[idx]
        units = tuple(lay.units.get(c) or DEFAULT_UNITS.get(c, "") for c in lay.channels)
        return raw, tuple(lay.channels), units, flags


def _count_lines(path: Path, encoding: str) -> int:
    """Line ends in a text file (an upper bound of its data rows), read in 1 MiB blocks."""
    nl = "\n".encode(encoding)[-2:] if encoding == "utf-16" else b"\n"
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(nl)
            last = block
    if encoding != "utf-16" and n and not last.endswith(b"\n"):
        n += 1
    return n + 1


def _read_text(path: Path, wanted, opts: TimeOptions):
    import pyarrow as pa

    from qlstm.data import textfile

    d = textfile.sniff(path)
    names = list(d.header)
    if not any(names):
        raise QlstmError(f"{path}: empty file (no header line)")
    names = [n or f"column_{i}" for i, n in enumerate(names)]
    lay = _layout(path, names, wanted, opts)
    types = {c: pa.float64() for c in lay.channel_source}
    if lay.event is not None:
        types[lay.event] = pa.string()
    if lay.quench is not None:
        types[lay.quench] = pa.float64()
    if lay.anomaly is not None:
        types[lay.anomaly] = pa.float64()
    include = [
        c for c in (lay.event, lay.time, *lay.channel_source, lay.quench, lay.anomaly) if c is not None
    ]
    table = _LongTable(path, lay, capacity=_count_lines(path, d.encoding) - d.skip_rows)
    for batch in textfile.batches(path, d, names, types, include):
        table.add_arrow(batch)
    return table.events(opts)


def _read_parquet(path: Path, wanted, opts: TimeOptions):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # buffered reads without pre-buffering: a row group's column chunks are not held whole
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        schema = pf.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise QlstmError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    meta_units = {}
    for f in schema:
        md = f.metadata or {}
        if b"unit" in md:
            meta_units[split_header(f.name)[0]] = md[b"unit"].decode()
    ignore = {n for n in schema.names if n.startswith("__index_level_")}
    pandas_md = (schema.metadata or {}).get(b"pandas")
    if pandas_md:
        with contextlib.suppress(ValueError, AttributeError):
            ignore |= {c for c in json.loads(pandas_md).get("index_columns", []) if isinstance(c, str)}
    lay = _layout(path, list(schema.names), wanted, opts, ignore)
    lay.units = {**lay.units, **meta_units}
    columns = [
        c for c in (lay.event, lay.time, *lay.channel_source, lay.quench, lay.anomaly) if c is not None
    ]
    table = _LongTable(path, lay, capacity=pf.metadata.num_rows)
    try:
        for batch in pf.iter_batches(batch_size=BLOCK_ROWS, columns=columns, use_threads=False):
            table.add_arrow(batch)
    except (pa.ArrowInvalid, OSError) as exc:
        raise QlstmError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    return table.events(opts)


def _npz_chunks(zf: zipfile.ZipFile, name: str, rows: int, check=None):
    """Blocks of ``rows`` elements of the 1-D array ``name`` of an NPZ, read without loading it
    whole; ``check(shape, dtype)`` (optional) is called with its header before anything is read."""
    from numpy.lib import format as npformat

    with zf.open(name + ".npy") as fh:
        version = npformat.read_magic(fh)
        read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if check is not None:
            check(shape, dtype)
        if dtype.hasobject:
            raise QlstmError(f"{zf.filename}: NPZ array {name} holds objects (pickled), refused")
        n = int(np.prod(shape))
        # at most 256 KiB a block (NumPy's own read size): zipfile holds a few copies of each
        rows = max(1, min(rows, (1 << 18) // max(dtype.itemsize, 1)))
        for start in range(0, n, rows):
            k = min(rows, n - start)
            buf = fh.read(k * dtype.itemsize)
            if len(buf) != k * dtype.itemsize:
                raise QlstmError(f"{zf.filename}: NPZ array {name} is truncated")
            yield np.frombuffer(buf, dtype=dtype)


def _read_npz(path: Path, wanted, opts: TimeOptions):
    if not zipfile.is_zipfile(path):
        raise QlstmError(f"{path}: not a readable NPZ file (not a zip archive)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # BadZipFile, OSError, EOFError ...
        raise QlstmError(f"{path}: not a readable NPZ file ({type(exc).__name__}: {exc})") from None
    with z:
        try:
            return _read_npz_open(path, z, wanted, opts)
        except QlstmError:
            raise
        except ValueError as exc:
            raise QlstmError(f"{path}: NPZ holds object arrays, refused ({exc})") from None
        except Exception as exc:  # BadZipFile, zlib.error, EOFError ...
            raise QlstmError(f"{path}: not a readable NPZ file ({type(exc).__name__}: {exc})") from None


def _read_npz_open(path: Path, z, wanted, opts: TimeOptions):
    files = list(z.files)
    meta = {k: z[k] for k in NPZ_META if k in files}
    data_names = [k for k in files if k not in NPZ_META]
    if "channel_names" in meta:
        listed = [str(c) for c in meta["channel_names"]]
        absent = [c for c in listed if c not in files]
        if absent:
            raise QlstmError(f"{path}: missing column(s) {', '.join(absent)} listed in channel_names")
        # the other arrays (event, time, quench) and the listed channels, in listed order
        data_names = [k for k in data_names if k not in listed] + listed
    lay = _layout(path, data_names, wanted, opts)
    if "channel_units" in meta:
        chans = [str(c) for c in meta["channel_names"]] if "channel_names" in meta else lay.channels
        for c, u in zip(chans, (str(u) for u in meta["channel_units"]), strict=False):
            if u:
                lay.units[split_header(c)[0]] = u
    t = z[lay.time]
    if t.ndim != 1:
        raise QlstmError(f"{path}: array {lay.time} has shape {t.shape}, expected (N,)")
    n = t.shape[0]
    # the time column is read whole once (NumPy reads a member in blocks) and used as it is
    table = _LongTable(path, lay, capacity=1)
    table._add_time(t[:0], 0)  # the time encoding (datetime or numbers) from the dtype
    ns = timecol._datetime_ns(t, f"time column {lay.time!r}", str(path))
    table.t = t if ns is None else ns
    del t, ns
    # channels, per-row flags and event labels streamed in blocks into their final arrays (float64
    # (N, C), int8 flags, narrow event codes): no whole-column copy beside them
    table.x = np.empty((n, len(lay.channel_source)), dtype=np.float64)
    table.quench = np.empty(n, dtype=np.int8) if lay.quench is not None else None
    table.anomaly = np.empty(n, dtype=np.int8) if lay.anomaly is not None else None
    columns = [(name, c) for c, name in enumerate(lay.channel_source)]
    columns += [(name, kind) for name, kind in ((lay.quench, "quench"), (lay.anomaly, "anomaly")) if name]
    with zipfile.ZipFile(path) as zf:
        for name, part in columns:

            def check(shape, dtype, name=name, part=part):
                if dtype.hasobject:  # refused as np.load refuses the other arrays (-> _read_npz)
                    raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
                if shape != (n,):
                    raise QlstmError(
                        f"{path}: array {name} has shape {shape}, expected ({n},) like {lay.time}"
                    )
                if not isinstance(part, str):
                    _numeric(path, name, np.empty(0, dtype))

            at = 0
            for block in _npz_chunks(zf, name, BLOCK_ROWS, check):
                k = len(block)
                if part == "quench":
                    table.quench[at : at + k] = table.flag_codes("quench", block)
                elif part == "anomaly":
                    table.anomaly[at : at + k] = table.flags01(block)
                else:
                    table.x[at : at + k, part] = block
                at += k
        if lay.event is not None:
            table.codes = np.empty(n, dtype=np.uint8)
            count = 0
            for block in _npz_chunks(zf, lay.event, BLOCK_ROWS):
                if count + len(block) > n:
                    raise QlstmError(f"{path}: array {lay.event} has more values than {lay.time} ({n})")
                table.add_labels(block, count)
                count += len(block)
            if count != n:
                raise QlstmError(
                    f"{path}: array {lay.event} has {count} values, expected {n} like {lay.time}"
                )
    table.n = table.cap = n
    return table.events(opts)


def _read_hdf5(path: Path, wanted, opts: TimeOptions):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise QlstmError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:

        def strings(v) -> list[str]:
            return [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(v)]

        def datasets(g) -> list[str]:
            return [k for k in g if isinstance(g[k], h5py.Dataset)]

        root_names = datasets(f)
        try:
            root_pairs = [split_header(k) for k in root_names]
            root_time = timecol.find_time_column(
                [b for b, _ in root_pairs], opts.column, "", {b: u for b, u in root_pairs if u}
            )
        except QlstmError:
            root_time = None
        if root_time is not None and "events" not in f.attrs:
            groups = [(path.stem, f)]
        else:
            order = strings(f.attrs["events"]) if "events" in f.attrs else list(f.keys())
            groups = []
            for g in order:
                if g not in f or not isinstance(f[g], h5py.Group):
                    raise QlstmError(f"{path}: event group {g!r} is missing")
                groups.append((g, f[g]))
        if not groups:
            raise QlstmError(f"{path}: empty file (no event groups)")
        names = datasets(groups[0][1])
        if "channels" in f.attrs:
            listed = strings(f.attrs["channels"])
            names = [k for k in names if k not in listed] + listed
        lay = _layout(path, names, wanted, opts)
        raw_t, raw = [], []
        for name, g in groups:
            for k in (lay.time, *lay.channel_source):
                if k not in g:
                    raise QlstmError(f"{path}: event {name!r}: missing column (dataset) {k}")
            tr = g[lay.time][()].ravel()
            cols = []
            for c, k in zip(lay.channels, lay.channel_source, strict=True):
                a = _numeric(path, f"{name}/{k}", g[k][()]).ravel()
                if a.shape != tr.shape:
                    raise QlstmError(
                        f"{path}: event {name!r}: dataset {k} has {a.size} values, {lay.time} {tr.size}"
                    )
                cols.append(a)
                if "unit" in g[k].attrs:
                    lay.units.setdefault(c, strings(g[k].attrs["unit"])[0])
            q = g.attrs.get("quench_index")
            q = None if q is None or int(q) < 0 else int(q)
            if q is not None and q >= len(tr):
                raise QlstmError(f"{path}: event {name!r}: quench_index {q} beyond its {len(tr)} samples")
            raw_t.append(tr)
            raw.append((name, np.stack(cols, axis=1), q))
    tname = lay.bare[lay.source.index(lay.time)]
    out = []
    for (name, x, q), tr in zip(raw, raw_t, strict=True):
        t = timecol.to_seconds(tr, tname, lay.time_unit, opts.unit, f"{path}: event {name!r}")
        out.append((name, t, x, q))
    units = tuple(lay.units.get(c) or DEFAULT_UNITS.get(c, "") for c in lay.channels)
    return out, tuple(lay.channels), units, None


# ====================================================================== writing
def save_events(es: EventSet, path: Path | str) -> Path:
    """Write ``es`` to ``path`` in the format of its extension, atomically (all or nothing)."""
    path = Path(path)
    kind = file_format(path)
    for ch in es.channel_names:
        taken = ch.lower() in {*RESERVED, *EVENT_NAMES, *timecol.TIME_NAMES} or ch in NPZ_META
        if taken or not ch or "/" in ch:
            raise QlstmError(
                f"{path}: channel name {ch!r} cannot be written (an event/time/quench column name, "
                "or contains '/')"
            )
    if kind == "hdf5":
        for e in es.events:
            if not e.name or "/" in e.name or e.name.startswith("."):
                raise QlstmError(f"{path}: event name {e.name!r} cannot be an HDF5 group name")
    writer = {"csv": _write_csv, "parquet": _write_parquet, "hdf5": _write_hdf5, "npz": _write_npz}[kind]
    with atomic_path(path) as tmp:
        writer(es, tmp)
    return path


def _long_columns(es: EventSet) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {
        "event": np.repeat(np.array(es.names, dtype=str), [len(e) for e in es.events]),
        "time_s": np.concatenate([e.t for e in es.events]),
    }
    for c, ch in enumerate(es.channel_names):
        cols[ch] = np.concatenate([e.x[:, c] for e in es.events])
    if any(e.quench_index is not None for e in es.events):
        q = []
        for e in es.events:
            a = np.zeros(len(e), dtype=np.int8)
            if e.quench_index is not None:
                a[e.quench_index] = 1
            q.append(a)
        cols["quench"] = np.concatenate(q)
    if any(e.anomalies for e in es.events):  # anomaly windows as a 0/1 column (docs/data.md)
        cols["anomaly"] = np.concatenate([e.anomaly_mask().astype(np.int8) for e in es.events])
    return cols


def _arrow_table(es: EventSet, unit_in_name: bool):
    import pyarrow as pa

    cols = _long_columns(es)
    units = dict(zip(es.channel_names, es.units, strict=True))
    fields, arrays = [], []
    for k, v in cols.items():
        name, md = k, None
        if k in units and units[k]:
            if unit_in_name:
                name = f"{k} [{units[k]}]"
            else:
                md = {"unit": units[k]}
        arr = pa.array(v)
        fields.append(pa.field(name, arr.type, metadata=md))
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _write_csv(es: EventSet, tmp: Path) -> None:
    import pyarrow.csv as pcsv

    pcsv.write_csv(_arrow_table(es, unit_in_name=True), tmp)


def _write_parquet(es: EventSet, tmp: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_arrow_table(es, unit_in_name=False), tmp)


def _write_npz(es: EventSet, tmp: Path) -> None:
    cols = _long_columns(es)
    cols["channel_names"] = np.array(es.channel_names, dtype=str)
    cols["channel_units"] = np.array(es.units, dtype=str)
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **cols)


def _write_hdf5(es: EventSet, tmp: Path) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = "qlstm-events/1"
        f.attrs["events"] = list(es.names)
        f.attrs["channels"] = list(es.channel_names)
        f.attrs["dt_s"] = es.dt
        f.attrs["source"] = es.source
        for e in es.events:
            g = f.create_group(e.name)
            g.create_dataset("time_s", data=e.t)
            for c, ch in enumerate(es.channel_names):
                d = g.create_dataset(ch, data=e.x[:, c])
                d.attrs["unit"] = es.units[c]
            if e.quench_index is not None:
                g.attrs["quench_index"] = e.quench_index
            if e.anomalies:
                g.attrs["anomaly_windows"] = np.asarray(e.anomalies, dtype=np.float64)


def load_for_model(path: Path | str, desc, min_length: int = 2, **time_options) -> EventSet:
    """A recording to run a trained model on: its channels, converted to the run's units.

    Loads the description's channels (``desc.normalisation.channel_names``), converts each from
    the recording's unit to the run's (:func:`qlstm.data.units.to_run_units`: SI prefixes and
    any pint conversion; incompatible units are refused naming both), and refuses a sampling
    step other than the training data's (``desc.data["dt"]``, when recorded) by more than
    :data:`~qlstm.data.events.SAMPLING_TOLERANCE`: the network learnt dynamics at that step.
    """
    from qlstm.data.events import SAMPLING_TOLERANCE
    from qlstm.data.units import to_run_units

    norm = desc.normalisation
    es = load_events(path, channels=list(norm.channel_names), min_length=min_length, **time_options)
    es = to_run_units(es, tuple(norm.units), str(path))
    dt = (desc.data or {}).get("dt")
    if dt and abs(es.dt - float(dt)) > SAMPLING_TOLERANCE * float(dt):
        raise QlstmError(
            f"{path}: sampled every {es.dt:.6g} s, the run was trained on data sampled every {float(dt):.6g} s"
        )
    return es
