"""Loaders and writers: round trips in every format, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from qlstm.data import MAX_GAP_SAMPLES, Event, EventSet, SyntheticConfig, generate, load_events, save_events
from qlstm.errors import QlstmError

EXTS = ["csv", "parquet", "h5", "hdf5", "npz"]


def _assert_same(a: EventSet, b: EventSet) -> None:
    assert b.names == a.names
    assert b.channel_names == a.channel_names and b.units == a.units
    assert b.dt == pytest.approx(a.dt, rel=1e-12)
    for x, y in zip(a.events, b.events, strict=True):
        np.testing.assert_array_equal(y.t, x.t)
        np.testing.assert_array_equal(y.x, x.x)
        assert y.quench_index == x.quench_index


def _es(events, channels=("U_res",), units=("V",), dt=0.4) -> EventSet:
    return EventSet(tuple(events), channels, units, dt, "test")


def _ev(name, n=50, c=1, dt=0.4, q=None, seed=0) -> Event:
    rng = np.random.default_rng(seed)
    return Event(name, 100.0 + np.arange(n) * dt, rng.normal(size=(n, c)), q)


@pytest.mark.parametrize("ext", EXTS)
def test_round_trip_synthetic_two_channels(tmp_path, ext):
    es = generate(SyntheticConfig.short(n_events=3, channels=("U_res", "I")))
    path = save_events(es, tmp_path / f"events.{ext}")
    back = load_events(path)
    _assert_same(es, back)
    assert back.source == str(path)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


@pytest.mark.parametrize("ext", EXTS)
def test_round_trip_mixed_quench_and_units(tmp_path, ext):
    """Events of different lengths, one without a quench marker, a unit-less third channel."""
    es = _es(
        [
            Event("run 1", np.arange(30) * 0.4, np.arange(90.0).reshape(30, 3), 29),
            _ev("2", n=40, c=3, seed=1),
        ],
        channels=("U_res", "I", "T_he"),
        units=("V", "A", ""),
    )
    back = load_events(save_events(es, tmp_path / f"x.{ext}"))
    _assert_same(es, back)
    sub = load_events(tmp_path / f"x.{ext}", channels=["T_he", "U_res"])
    assert sub.channel_names == ("T_he", "U_res")
    np.testing.assert_array_equal(sub.events[1].x, es.events[1].x[:, [2, 0]])


def test_csv_single_event_without_event_column_and_unit_header(tmp_path):
    p = tmp_path / "magnet_A.csv"
    p.write_text("time_s,U_res [mV],I\n0.0,1.5,10\n0.4,1.25,11\n0.8,1.0,12\n")
    es = load_events(p)
    assert es.names == ("magnet_A",) and es.channel_names == ("U_res", "I") and es.units == ("mV", "A")
    assert es.dt == 0.4 and es.events[0].quench_index is None
    np.testing.assert_array_equal(es.events[0].x, [[1.5, 10], [1.25, 11], [1.0, 12]])


def test_csv_events_interleaved_rows_grouped_in_order_of_appearance(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("event,time_s,U_res,quench\nb,0,1,0\na,0,5,0\nb,0.4,2,1\na,0.4,6,0\nb,0.8,3,0\na,0.8,7,0\n")
    es = load_events(p)
    assert es.names == ("b", "a")
    np.testing.assert_array_equal(es.events[0].x[:, 0], [1, 2, 3])
    assert es.events[0].quench_index == 1 and es.events[1].quench_index is None


def test_hdf5_single_event_at_root(tmp_path):
    p = tmp_path / "one.h5"
    with h5py.File(p, "w") as f:
        f["time_s"] = np.arange(10) * 0.4
        f["U_res"] = np.arange(10.0)
    es = load_events(p)
    assert es.names == ("one",) and es.units == ("V",)  # the default unit of U_res


# ---------------------------------------------------------------- bad input, every format
def _bad_event(kind: str) -> Event:
    n = 40
    t = np.arange(n) * 0.4
    x = np.linspace(0, 1, n)[:, None]
    if kind == "nan":
        x = x.copy()
        x[7, 0] = np.nan
    elif kind == "inf":
        x = x.copy()
        x[8, 0] = -np.inf
    elif kind == "duplicated":
        t = t.copy()
        t[5] = t[4]
    elif kind == "decreasing":
        t = t.copy()
        t[5] = t[3]
    elif kind == "irregular":
        t = t.copy()
        t[5:] += 0.1  # one step of 0.5 s: 25 % off the 0.4 s grid
    elif kind == "gap":
        keep = np.r_[0:10, 13:n]
        t, x = t[keep], x[keep]
    elif kind == "long-gap":
        keep = np.r_[0:5, 6 + MAX_GAP_SAMPLES : n + MAX_GAP_SAMPLES]
        t = np.arange(n + MAX_GAP_SAMPLES) * 0.4
        x = np.linspace(0, 1, n + MAX_GAP_SAMPLES)[:, None]
        t, x = t[keep], x[keep]
    return Event("ev7", t, x, None)


BAD = [
    ("nan", "event 'ev7': channel U_res holds nan at sample 7"),
    ("inf", "event 'ev7': channel U_res holds -inf at sample 8"),
    ("duplicated", "event 'ev7': duplicated timestamp at sample 5"),
    ("decreasing", "event 'ev7': timestamps decrease at sample 5"),
    ("irregular", "event 'ev7': irregular sampling at sample 5"),
    ("gap", "event 'ev7': gap of 3 missing sample(s) before sample 10 (t=5.2 s)"),
]


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("kind, message", BAD, ids=[b[0] for b in BAD])
def test_bad_series_refused_naming_file_event_problem(tmp_path, ext, kind, message):
    es = _es([_ev("ok", n=40), _bad_event(kind)])
    path = save_events(es, tmp_path / f"bad.{ext}")
    with pytest.raises(QlstmError) as exc:
        load_events(path)
    text = str(exc.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("ext", EXTS)
def test_gap_filled_on_request(tmp_path, ext):
    ev = _bad_event("gap")
    es = _es([ev])
    path = save_events(es, tmp_path / f"gap.{ext}")
    with pytest.raises(QlstmError, match="--fill-gaps"):
        load_events(path)
    filled = load_events(path, fill_gaps=True).events[0]
    assert len(filled) == 40 and filled.filled == 3
    np.testing.assert_allclose(filled.t, np.arange(40) * 0.4, rtol=0, atol=1e-12)
    np.testing.assert_allclose(filled.x[:, 0], np.linspace(0, 1, 40), rtol=0, atol=1e-12)  # linear data
    np.testing.assert_array_equal(filled.x[[9, 13], 0], ev.x[[9, 10], 0])  # recorded samples kept exactly


def test_gap_fill_moves_the_quench_index(tmp_path):
    ev = _bad_event("gap")
    ev = Event(ev.name, ev.t, ev.x, quench_index=len(ev) - 1)
    path = save_events(_es([ev]), tmp_path / "q.npz")
    assert load_events(path, fill_gaps=True).events[0].quench_index == 39


def test_gap_longer_than_maximum_refused_even_with_fill(tmp_path):
    path = save_events(_es([_bad_event("long-gap")]), tmp_path / "long.csv")
    with pytest.raises(QlstmError, match=f"gap of {MAX_GAP_SAMPLES + 1} missing sample"):
        load_events(path)
    with pytest.raises(QlstmError, match=f"longer than the {MAX_GAP_SAMPLES} samples"):
        load_events(path, fill_gaps=True)


@pytest.mark.parametrize("ext", EXTS)
def test_too_short_series_refused(tmp_path, ext):
    path = save_events(_es([_ev("long", n=40), _ev("tiny", n=10)]), tmp_path / f"s.{ext}")
    assert len(load_events(path, min_length=10).events[1]) == 10
    with pytest.raises(QlstmError, match=r"event 'tiny' has 10 sample\(s\), fewer than the minimum 17"):
        load_events(path, min_length=17)


def test_events_with_different_steps_refused(tmp_path):
    path = save_events(_es([_ev("a", dt=0.4), _ev("b", dt=0.4), _ev("c", dt=1.0)]), tmp_path / "dt.parquet")
    with pytest.raises(QlstmError, match="event 'c' is sampled every 1 s, other events every 0.4 s"):
        load_events(path)


def test_jitter_within_tolerance_accepted(tmp_path):
    t = np.arange(50) * 0.4 + np.random.default_rng(0).uniform(-0.001, 0.001, 50)  # +-1 ms on 400 ms
    es = load_events(
        save_events(_es([Event("j", t, np.zeros((50, 1)) + np.arange(50)[:, None])]), tmp_path / "j.npz")
    )
    assert es.dt == pytest.approx(0.4, abs=2e-3)


@pytest.mark.parametrize("ext", EXTS)
def test_missing_channel_refused(tmp_path, ext):
    path = save_events(_es([_ev("a")]), tmp_path / f"m.{ext}")
    with pytest.raises(QlstmError, match=r"missing column\(s\) I \(channels in file: U_res\)"):
        load_events(path, channels=["U_res", "I"])


@pytest.mark.parametrize("ext", ["csv", "parquet", "npz"])
def test_missing_time_column_refused(tmp_path, ext):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = tmp_path / f"nt.{ext}"
    if ext == "npz":
        np.savez(path, U_res=np.zeros(5))
    else:
        table = pa.table({"event": ["a"] * 5, "U_res": np.zeros(5)})
        (pcsv.write_csv if ext == "csv" else pq.write_table)(table, path)
    with pytest.raises(QlstmError, match="no time column"):
        load_events(path)


def test_hdf5_event_missing_dataset_refused(tmp_path):
    path = save_events(_es([_ev("a"), _ev("b")]), tmp_path / "m.h5")
    with h5py.File(path, "a") as f:
        del f["b/U_res"]
    with pytest.raises(QlstmError, match=r"event 'b': missing column \(dataset\) U_res"):
        load_events(path)


@pytest.mark.parametrize("ext", EXTS)
def test_empty_file_refused(tmp_path, ext):
    path = tmp_path / f"empty.{ext}"
    path.write_bytes(b"")
    with pytest.raises(QlstmError, match=f"{path}: empty file"):
        load_events(path)


@pytest.mark.parametrize(
    "content, match",
    [
        ("event,time_s,U_res\n", "empty file"),
        ("\n\n", "empty file"),
        ("time_s,U_res\n0,1\n0.4,abc\n", "column U_res is not numeric"),
        ("time_s,U_res\n0,1\n0.4,\n0.8,2\n", "channel U_res holds nan at sample 1"),
        ("event,time_s,U_res,quench\na,0,1,1\na,0.4,1,1\n", "2 samples marked quench=1"),
        ("event,time_s,U_res,quench\na,0,1,2\na,0.4,1,0\n", "only 0 and 1"),
        ("event,time_s,quench\na,0,0\n", "no channel column"),
        ("event,time_s,U_res\na,0,1\n", r"1 sample\(s\), fewer than the minimum 2"),
        ("time_s,U_res [V],U_res [mV]\n0,1,2\n0.4,1,2\n", "duplicated column\\(s\\) U_res"),
    ],
    ids=[
        "header-only",
        "blank",
        "not-numeric",
        "empty-cell",
        "two-quenches",
        "quench-not-01",
        "no-channel",
        "one-sample",
        "duplicated-column",
    ],
)
def test_bad_csv_content(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(QlstmError, match=match):
        load_events(path)


@pytest.mark.parametrize("ext", ["parquet", "h5", "npz"])
def test_corrupt_binary_refused(tmp_path, ext):
    path = tmp_path / f"corrupt.{ext}"
    path.write_bytes(b"this is not a binary container at all" * 10)
    with pytest.raises(QlstmError, match=f"{path}: not a readable"):
        load_events(path)


def test_unknown_extension_refused_on_load_and_save(tmp_path):
    path = tmp_path / "x.xls"
    path.write_text("time_s,U_res\n0,1\n")
    with pytest.raises(QlstmError, match=r"unknown file extension '\.xls'"):
        load_events(path)
    with pytest.raises(QlstmError, match="unknown file extension"):
        save_events(_es([_ev("a")]), tmp_path / "out.xlsx")
    assert not (tmp_path / "out.xlsx").exists()


def test_missing_file_refused(tmp_path):
    with pytest.raises(QlstmError, match="file not found"):
        load_events(tmp_path / "nope.csv")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import qlstm.data.formats as formats

    def broken(es, tmp):
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setitem(formats.__dict__, "_write_npz", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_events(_es([_ev("a")]), tmp_path / "out.npz")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_names_refused(tmp_path):
    with pytest.raises(QlstmError, match="channel name 'time_s'"):
        save_events(_es([_ev("a")], channels=("time_s",)), tmp_path / "x.csv")
    with pytest.raises(QlstmError, match="cannot be an HDF5 group name"):
        save_events(_es([_ev("a/b")]), tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []
