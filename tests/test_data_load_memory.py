"""Loading long tables in a small multiple of the samples (case B20): the loaded events are
bit-identical to what was written, in every format and row layout, and the loader's traced
memory grows by about the loaded float64 arrays per added sample (no per-sample copies of the
event names or float64 copies of the 0/1 columns). Peak RSS per format: benchmarks/bench_loaders.py."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from qlstm.data import Event, EventSet, SyntheticConfig, formats, generate, load_events, save_events

FORMATS = ["npz", "csv", "parquet", "h5"]


def _assert_bit_identical(got: EventSet, want: EventSet) -> None:
    assert got.names == want.names
    assert got.channel_names == want.channel_names and got.units == want.units
    assert got.dt == want.dt
    for g, w in zip(got.events, want.events, strict=True):
        for a, b in ((g.t, w.t), (g.x, w.x)):
            assert a.dtype == np.float64 and a.shape == b.shape
            assert a.tobytes() == np.ascontiguousarray(b, dtype=np.float64).tobytes()
        assert g.quench_index == w.quench_index
        assert g.anomalies == w.anomalies


@pytest.mark.parametrize("ext", FORMATS)
def test_synthetic_events_load_bit_identical(tmp_path, ext):
    """Generated events (quench on the last sample, an anomaly window each) in two channels."""
    es = generate(SyntheticConfig(n_events=3, duration_s=2000.0, seed=4, channels=("U_res", "I")))
    _assert_bit_identical(load_events(save_events(es, tmp_path / f"e.{ext}")), es)


def _many_events(n_events: int = 300, n: int = 40) -> EventSet:
    """More than 256 events (event codes outgrow one byte), some without quench or anomalies."""
    rng = np.random.default_rng(7)
    events = []
    for i in range(n_events):
        t = 1000.0 + np.arange(n) * 0.4
        q = None if i % 3 == 0 else int(rng.integers(n))
        anomalies = ((float(t[5]), float(t[9])), (float(t[-3]), float(t[-1]))) if i % 4 == 1 else ()
        events.append(Event(f"ev{i:03d}", t, rng.normal(size=(n, 2)), q, anomalies=anomalies))
    return EventSet(tuple(events), ("U_res", "I"), ("V", "A"), 0.4, "many")


def _write_interleaved(es: EventSet, path) -> None:
    """``es`` as written by save_events, then its rows sorted by time: events interleaved."""
    save_events(es, path)
    if path.suffix == ".npz":
        with np.load(path) as z:
            cols = {k: z[k] for k in z.files}
        order = np.argsort(cols["time_s"], kind="stable")
        np.savez(path, **{k: v if k.startswith("channel_") else v[order] for k, v in cols.items()})
        return
    table = pcsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)
    table = table.take(pa.array(np.argsort(table["time_s"].to_numpy(), kind="stable")))
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


@pytest.mark.parametrize("ext", FORMATS)
def test_many_events_in_small_blocks_load_bit_identical(tmp_path, ext, monkeypatch):
    """300 events, read in blocks of 1,000 rows (Parquet, NPZ): labels first seen in later blocks
    widen the event codes mid-file; events keep the order of their first row."""
    monkeypatch.setattr(formats, "BLOCK_ROWS", 1000)
    es = _many_events()
    _assert_bit_identical(load_events(save_events(es, tmp_path / f"m.{ext}")), es)


@pytest.mark.parametrize("ext", ["npz", "csv", "parquet"])
def test_interleaved_rows_load_bit_identical(tmp_path, ext, monkeypatch):
    """Rows of all events interleaved (allowed): the same events as the contiguous file."""
    monkeypatch.setattr(formats, "BLOCK_ROWS", 1000)
    es = _many_events()
    path = tmp_path / f"i.{ext}"
    _write_interleaved(es, path)
    _assert_bit_identical(load_events(path), es)


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """The same 3 1/3 h events (30,000 samples), 8 and 24 of them, in every format:
    {ext: [(path, sample bytes)]}."""
    folder = tmp_path_factory.mktemp("sizes")
    files: dict[str, list] = {ext: [] for ext in FORMATS}
    for n_events in (8, 24):
        es = generate(SyntheticConfig(n_events=n_events, duration_s=12000.0, seed=1))
        for ext in FORMATS:
            path = save_events(es, folder / f"e{n_events}.{ext}")
            files[ext].append((path, 16 * es.n_samples))  # time + one channel as float64
    return files


def _traced_peak(path) -> int:
    load_events(path)  # imports and caches before tracing
    tracemalloc.start()
    try:
        load_events(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("ext", FORMATS)
def test_loader_memory_is_a_small_multiple_of_the_samples(two_sizes, ext):
    """Peak traced memory (NumPy and Python; pyarrow's buffers are not traced: RSS in
    benchmarks/bench_loaders.py) of loading 720,000 samples, and its growth per added sample
    from 8 to 24 events, are at most 1.5 x the float64 time + value: the loaded arrays are
    1.0 x; measured 1.1-1.3 x and 1.0-1.2 x (2026-12-01). The code before used up to 2.7 x and
    1.9 x (float64 quench flags, int32 event codes, NPZ strings sorted in 64 Ki-row blocks),
    the B20 code ~13 x (every per-sample event name copied and sorted)."""
    (small, b_small), (big, b_big) = two_sizes[ext]
    peak_small, peak_big = _traced_peak(small), _traced_peak(big)
    assert peak_big / b_big <= 1.5, f"{ext}: peak {peak_big / b_big:.2f} x the samples' float64 bytes"
    growth = (peak_big - peak_small) / (b_big - b_small)
    assert growth <= 1.5, f"{ext}: {growth:.2f} x the added samples' float64 bytes"
