"""Reading and writing event files: CSV, Parquet, HDF5, NPZ (dispatch on the file extension).

The schema of each format is documented in ``docs/data.md``. In short:

* CSV / Parquet: a long table, one row per sample, columns ``event`` (optional: without it the
  file is one event named after the file), ``time_s`` (seconds), one column per channel, and
  optional ``quench`` (1 on the quench sample, else 0). A CSV channel header may carry its unit
  in square brackets, ``U_res [V]``; Parquet keeps units in the field metadata key ``unit``.
* HDF5: one group per event holding 1-D datasets ``time_s`` and one per channel (attribute
  ``unit``); the group attribute ``quench_index`` marks the quench. Root attributes ``events``
  and ``channels`` fix the order (otherwise: group order, and the first group's datasets).
* NPZ: 1-D arrays ``event`` (optional), ``time_s``, one per channel, optional ``quench``, and
  optional string arrays ``channel_names`` / ``channel_units``.

Every reader ends in :func:`qlstm.data.events.build_event_set`, so all formats refuse and
repair the same things. Every writer goes through :func:`qlstm.io.atomic_path`.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qlstm.data.events import DEFAULT_UNITS, EventSet, build_event_set
from qlstm.errors import QlstmError
from qlstm.io import atomic_path

FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".npz": "npz",
}
RESERVED = ("event", "time_s", "quench", "anomaly")
#: Names of the NPZ arrays that describe the channels rather than hold one.
NPZ_META = ("channel_names", "channel_units")
_UNIT_RE = re.compile(r"^\s*(?P<name>.*?)\s*\[(?P<unit>[^\]]*)\]\s*$")


def file_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise QlstmError(
            f"{path}: unknown file extension {suffix or '(none)'!r}; use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


# ====================================================================== reading
def load_events(
    path: Path | str,
    channels: Sequence[str] | None = None,
    fill_gaps: bool = False,
    min_length: int = 2,
) -> EventSet:
    """Read, check and (with ``fill_gaps``) repair the events of one file.

    ``channels`` selects and orders channels (default: all, in file order); ``min_length`` is the
    shortest series accepted (pass ``L + k`` to refuse events too short to window).
    """
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise QlstmError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise QlstmError(f"{path}: empty file")
    reader = {"csv": _read_csv, "parquet": _read_parquet, "hdf5": _read_hdf5, "npz": _read_npz}[kind]
    raw, names, units = reader(path, None if channels is None else tuple(channels))
    es = build_event_set(
        str(path), raw, names, units, fill=fill_gaps, min_length=min_length, meta={"format": kind}
    )
    return _with_anomalies(path, kind, es)


def _anomaly_runs(path: Path, name: str, t: np.ndarray, flag: np.ndarray) -> list[tuple[float, float]]:
    """Runs of ``anomaly == 1`` rows of one event -> ``(first time_s, last time_s)`` windows."""
    if not np.isin(flag, (0, 1)).all():
        raise QlstmError(f"{path}: event {name!r}: column anomaly must hold only 0 and 1")
    edges = np.diff(np.concatenate([[0], flag.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(float(t[a]), float(t[b])) for a, b in zip(starts, ends, strict=True)]


def _with_anomalies(path: Path, kind: str, es: EventSet) -> EventSet:
    """Attach the anomaly windows a file carries (column/array ``anomaly``, HDF5 attribute
    ``anomaly_windows``) to its events; a file without them is returned unchanged."""
    from dataclasses import replace

    found: dict[str, list[tuple[float, float]]] = {}
    if kind == "hdf5":
        import h5py

        with h5py.File(path, "r") as f:
            for e in es.events:
                g = f[e.name] if e.name in f and isinstance(f[e.name], h5py.Group) else f
                if "anomaly_windows" in g.attrs:
                    w = np.asarray(g.attrs["anomaly_windows"], dtype=np.float64).reshape(-1, 2)
                    found[e.name] = [(float(a), float(b)) for a, b in w]
    else:
        if kind == "npz":
            with np.load(path, allow_pickle=False) as z:
                cols = {k: z[k] for k in ("event", "time_s", "anomaly") if k in z.files}
        else:
            import pyarrow.parquet as pq

            if kind == "csv":
                with open(path, newline="", encoding="utf-8", errors="replace") as fh:
                    header = [_split_unit(h)[0] for h in next(csv.reader(fh), [])]
            else:
                header = pq.read_schema(path).names
            if "anomaly" not in header:
                return es
            use = [c for c in ("event", "time_s", "anomaly") if c in header]
            if kind == "csv":
                import pyarrow as pa
                import pyarrow.csv as pcsv

                table = pcsv.read_csv(
                    path,
                    read_options=pcsv.ReadOptions(column_names=header, skip_rows=1),
                    convert_options=pcsv.ConvertOptions(
                        include_columns=use, column_types={"event": pa.string()}
                    ),
                )
            else:
                table = pq.read_table(path, columns=use)
            if table.column("anomaly").null_count:
                raise QlstmError(f"{path}: column anomaly has empty cells")
            cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in use}
        if "anomaly" not in cols:
            return es
        flag = _numeric(path, "anomaly", cols["anomaly"])
        t = cols["time_s"].astype(np.float64)
        ev = cols["event"].astype(str) if "event" in cols else np.full(len(t), es.events[0].name)
        for e in es.events:
            rows = np.flatnonzero(ev == e.name)
            found[e.name] = _anomaly_runs(path, e.name, t[rows], flag[rows])
    if not found:
        return es
    events = tuple(replace(e, anomalies=tuple(found.get(e.name, ()))) for e in es.events)
    return EventSet(events, es.channel_names, es.units, es.dt, es.source, dict(es.meta))


def _select(path: Path, available: list[str], wanted: tuple[str, ...] | None) -> list[str]:
    if wanted is None:
        if not available:
            raise QlstmError(f"{path}: no channel column (only {', '.join(RESERVED)} found)")
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
    return a.astype(np.float64)


def _group_long(
    path: Path,
    event: np.ndarray | tuple[np.ndarray, list[str]] | None,
    time: np.ndarray,
    cols: list[np.ndarray],
    quench: np.ndarray | None,
) -> list[tuple[str, np.ndarray, np.ndarray, int | None]]:
    """Split long-format columns into events (in order of first appearance, rows kept in file order).

    ``event`` is the event column, or ``(codes, labels)`` of a dictionary-encoded one.
    """
    if len(time) == 0:
        raise QlstmError(f"{path}: empty file (a header but no data rows)")
    x = np.stack(cols, axis=1) if cols else np.empty((len(time), 0))
    if event is None:
        groups = [(path.stem, np.arange(len(time)))]
    else:
        if isinstance(event, tuple):
            inverse, labels = event
        else:
            uniq, inverse = np.unique(np.asarray(event).astype(str), return_inverse=True)
            labels = [str(u) for u in uniq]
        inverse = np.asarray(inverse, dtype=np.int64).ravel()
        first = np.full(len(labels), len(inverse))
        np.minimum.at(first, inverse, np.arange(len(inverse)))
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(labels)))
        rows = np.split(order, bounds[:-1])
        groups = [(labels[g], rows[g]) for g in np.argsort(first) if first[g] < len(inverse)]
    raw = []
    for name, idx in groups:
        q = None
        if quench is not None:
            qv = quench[idx]
            if not np.isin(qv, (0, 1)).all():
                raise QlstmError(f"{path}: event {name!r}: column quench must hold only 0 and 1")
            ones = np.flatnonzero(qv)
            if len(ones) > 1:
                raise QlstmError(f"{path}: event {name!r}: {len(ones)} samples marked quench=1; at most one")
            q = int(ones[0]) if len(ones) else None
        raw.append((name, time[idx], x[idx], q))
    return raw


def _split_unit(header: str) -> tuple[str, str]:
    m = _UNIT_RE.match(header)
    return (m["name"], m["unit"]) if m else (header.strip(), "")


def _read_table(path: Path, table, units_of, wanted):
    """Shared CSV/Parquet logic on a pyarrow table whose column ``names`` are channel names."""
    names = table.column_names
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise QlstmError(f"{path}: duplicated column(s) {', '.join(dup)}")
    if table.num_rows == 0:
        raise QlstmError(f"{path}: empty file (a header but no data rows)")
    if "time_s" not in names:
        raise QlstmError(f"{path}: missing column time_s (columns: {', '.join(names) or 'none'})")
    available = [n for n in names if n not in RESERVED]
    chosen = _select(path, available, wanted)

    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    event = None
    if "event" in names:
        if table.column("event").null_count:
            raise QlstmError(f"{path}: column event has empty cells")
        import pyarrow as pa
        import pyarrow.compute as pc

        enc = pc.cast(table.column("event"), pa.string()).combine_chunks().dictionary_encode()
        event = (enc.indices.to_numpy(zero_copy_only=False), [str(v) for v in enc.dictionary.to_pylist()])
    quench = None
    if "quench" in names:
        if table.column("quench").null_count:
            raise QlstmError(f"{path}: column quench has empty cells")
        quench = _numeric(path, "quench", col("quench"))
    raw = _group_long(
        path,
        event,
        _numeric(path, "time_s", col("time_s")),
        [_numeric(path, c, col(c)) for c in chosen],
        quench,
    )
    units = tuple(units_of.get(c) or DEFAULT_UNITS.get(c, "") for c in chosen)
    return raw, tuple(chosen), units


def _read_csv(path: Path, wanted):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    if not any(h.strip() for h in header):
        raise QlstmError(f"{path}: empty file (no header line)")
    renamed = [_split_unit(h)[0] for h in header]
    units = dict(_split_unit(h) for h in header)
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=renamed, skip_rows=1),
            convert_options=pcsv.ConvertOptions(column_types={"event": pa.string()}),
        )
    except pa.ArrowInvalid as exc:
        raise QlstmError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None
    return _read_table(path, table, units, wanted)


def _read_parquet(path: Path, wanted):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise QlstmError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    units = {}
    for f in table.schema:
        md = f.metadata or {}
        if b"unit" in md:
            units[f.name] = md[b"unit"].decode()
    return _read_table(path, table, units, wanted)


def _read_npz(path: Path, wanted):
    if not zipfile.is_zipfile(path):
        raise QlstmError(f"{path}: not a readable NPZ file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise QlstmError(f"{path}: NPZ holds object arrays, refused ({exc})") from None
    except Exception as exc:  # BadZipFile, OSError, EOFError ...
        raise QlstmError(f"{path}: not a readable NPZ file ({type(exc).__name__}: {exc})") from None
    if "time_s" not in arrays:
        raise QlstmError(f"{path}: missing array time_s (arrays: {', '.join(arrays) or 'none'})")
    if "channel_names" in arrays:
        available = [str(c) for c in arrays["channel_names"]]
        absent = [c for c in available if c not in arrays]
        if absent:
            raise QlstmError(f"{path}: missing column(s) {', '.join(absent)} listed in channel_names")
    else:
        available = [k for k in arrays if k not in RESERVED and k not in NPZ_META]
    unit_list = [str(u) for u in arrays.get("channel_units", [])]
    units = dict(zip(available, unit_list, strict=False))
    chosen = _select(path, available, wanted)
    n = len(arrays["time_s"])
    for k in ("time_s", "event", "quench", *chosen):
        if k in arrays and arrays[k].shape != (n,):
            raise QlstmError(f"{path}: array {k} has shape {arrays[k].shape}, expected ({n},) like time_s")
    quench = _numeric(path, "quench", arrays["quench"]) if "quench" in arrays else None
    raw = _group_long(
        path,
        arrays.get("event"),
        _numeric(path, "time_s", arrays["time_s"]),
        [_numeric(path, c, arrays[c]) for c in chosen],
        quench,
    )
    return raw, tuple(chosen), tuple(units.get(c) or DEFAULT_UNITS.get(c, "") for c in chosen)


def _read_hdf5(path: Path, wanted):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise QlstmError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:

        def strings(v) -> list[str]:
            return [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(v)]

        if "time_s" in f and isinstance(f["time_s"], h5py.Dataset):
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
        if "channels" in f.attrs:
            available = strings(f.attrs["channels"])
        else:
            available = [
                k for k in groups[0][1] if k not in RESERVED and isinstance(groups[0][1][k], h5py.Dataset)
            ]
        chosen = _select(path, available, wanted)
        raw, units = [], {}
        for name, g in groups:
            for k in ("time_s", *chosen):
                if k not in g:
                    raise QlstmError(f"{path}: event {name!r}: missing column (dataset) {k}")
            t = _numeric(path, f"{name}/time_s", g["time_s"][()]).ravel()
            cols = []
            for c in chosen:
                a = _numeric(path, f"{name}/{c}", g[c][()]).ravel()
                if a.shape != t.shape:
                    raise QlstmError(
                        f"{path}: event {name!r}: dataset {c} has {a.size} values, time_s {t.size}"
                    )
                cols.append(a)
                if "unit" in g[c].attrs:
                    units.setdefault(c, strings(g[c].attrs["unit"])[0])
            q = g.attrs.get("quench_index")
            q = None if q is None or int(q) < 0 else int(q)
            if q is not None and q >= len(t):
                raise QlstmError(f"{path}: event {name!r}: quench_index {q} beyond its {len(t)} samples")
            raw.append((name, t, np.stack(cols, axis=1), q))
    return raw, tuple(chosen), tuple(units.get(c) or DEFAULT_UNITS.get(c, "") for c in chosen)


# ====================================================================== writing
def save_events(es: EventSet, path: Path | str) -> Path:
    """Write ``es`` to ``path`` in the format of its extension, atomically (all or nothing)."""
    path = Path(path)
    kind = file_format(path)
    for ch in es.channel_names:
        if ch in RESERVED or ch in NPZ_META or not ch or "/" in ch:
            raise QlstmError(f"{path}: channel name {ch!r} cannot be written (reserved or contains '/')")
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
