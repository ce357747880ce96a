"""The ``anomaly`` 0/1 column is read in the loader's single pass (item 2 of the wave-2 fixes,
case B20 kind): windows per event in loaded seconds, gap filling keeps them aligned (a filled
sample is anomalous only if the recorded samples on both sides are), one read of the file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from qlstm.data import load_events, textfile
from qlstm.errors import QlstmError

DT = 0.4


def _table(flags: dict[str, list[int]], drop: dict[str, list[int]] | None = None, interleave=False):
    """Columns event, time_s, U_res, anomaly (NumPy arrays)."""
    rows = [
        (ev, round(k * DT, 6), float(np.sin(k / 3.0)), a)
        for ev, f in flags.items()
        for k, a in enumerate(f)
        if not (drop and k in drop.get(ev, []))
    ]
    if interleave:  # the events' rows alternate (not contiguous), each event in time order
        rows.sort(key=lambda r: r[1])
    ev, t, u, a = zip(*rows, strict=True)
    return {"event": np.array(ev), "time_s": np.array(t), "U_res": np.array(u), "anomaly": np.array(a)}


def _write(cols: dict[str, np.ndarray], path) -> None:
    if path.suffix == ".npz":
        np.savez(path, **cols)
        return
    table = pa.table(cols)
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


FLAGS = {"a": [0, 0, 1, 1, 1, 0, 0, 1, 0, 0], "b": [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]}


@pytest.mark.parametrize("ext", ["csv", "parquet", "npz"])
@pytest.mark.parametrize("interleave", [False, True], ids=["contiguous", "interleaved"])
def test_windows_per_event(tmp_path, ext, interleave):
    path = tmp_path / f"r.{ext}"
    _write(_table(FLAGS, interleave=interleave), path)
    es = load_events(path)
    got = {e.name: e.anomalies for e in es.events}
    assert got == {"a": ((0.8, 1.6), (2.8, 2.8)), "b": ((0.0, 0.4), (3.2, 3.6))}
    for e in es.events:
        np.testing.assert_array_equal(e.anomaly_mask(), np.array(FLAGS[e.name], dtype=bool))


@pytest.mark.parametrize("ext", ["csv", "parquet", "npz"])
def test_gap_filling_keeps_flags_aligned(tmp_path, ext):
    """Gaps inside a run (filled as anomalous), at its edges and in normal data (filled normal)."""
    flags = {"a": [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0], "b": [1, 1, 1, 0, 0, 0, 0, 0, 0, 1]}
    drop = {"a": [3, 4, 7, 9], "b": [1, 4, 8]}
    flags = {k: v + [0] * 20 for k, v in flags.items()}  # most steps regular: dt is found
    path = tmp_path / f"g.{ext}"
    _write(_table(flags, drop), path)
    es = load_events(path, fill_gaps=True)
    want = {
        # a: 3,4 dropped between anomalous 2 and 5 -> anomalous; 7 between 6 (1) and 8 (0) -> 0
        "a": [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0],
        # b: 1 between 0 (1) and 2 (1) -> 1; 8 between 7 (0) and 9 (1) -> 0
        "b": [1, 1, 1, 0, 0, 0, 0, 0, 0, 1],
    }
    for e in es.events:
        assert e.filled == len(drop[e.name])
        np.testing.assert_array_equal(e.anomaly_mask(), np.array(want[e.name] + [0] * 20, dtype=bool))


def test_text_file_is_read_once(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    _write(_table(FLAGS), path)
    calls = []
    real = textfile.batches
    monkeypatch.setattr(textfile, "batches", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert load_events(path).events[0].anomalies
    assert len(calls) == 1


@pytest.mark.parametrize("ext", ["csv", "parquet", "npz"])
def test_bad_flags_refused(tmp_path, ext):
    cols = _table(FLAGS)
    cols["anomaly"][3] = 2
    path = tmp_path / f"r.{ext}"
    _write(cols, path)
    with pytest.raises(QlstmError, match="column anomaly must hold only 0 and 1"):
        load_events(path)
