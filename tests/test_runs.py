"""qlstm/runs.py: the one reader of run folders; windows.npz round trip; old or corrupt folders
refused with one line; the one Metrics schema and the one backend comparison."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qlstm import runs
from qlstm.cli import main
from qlstm.errors import QlstmError

TINY = {
    "history": 4,
    "horizon": 2,
    "data": {"source": "sine", "sine_samples": 600, "sine_t_max": 12.0},
    "model": {"layers": [4]},
    "training": {"epochs": 1, "batch_size": 64},
}


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    from qlstm.train.config import load_config
    from qlstm.train.trainer import train_run

    out = tmp_path_factory.mktemp("runs") / "float"
    train_run(load_config(None, TINY), out)
    return out


def test_heldout_round_trip_and_typed_metrics(float_run, tmp_path):
    run = runs.open_float_run(float_run)
    held = run.heldout()
    held.save(tmp_path / "w.npz")
    again = runs.HeldOut.load(tmp_path / "w.npz")
    for name in runs.SPLITS:
        a, b = getattr(held, name), getattr(again, name)
        for field in ("x", "y", "event", "start"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert again.events == held.events and again.event_lengths == held.event_lengths
    m = run.metrics
    assert m.model.windows == len(held.test) and len(m.model.rmse_per_step) == 2
    assert m.model == runs.Metrics.from_dict(m.raw["test"]["model"], "x")


def test_old_run_without_windows_is_refused_with_one_line(float_run, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(float_run, old)
    (old / runs.WINDOWS_FILE).unlink()
    assert main(["quantize", str(old), "--out", str(tmp_path / "q"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no windows.npz" in err and "re-train" in err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("what", ["corrupt", "foreign"])
def test_corrupt_or_foreign_windows_file(tmp_path, what):
    path = tmp_path / runs.WINDOWS_FILE
    if what == "corrupt":
        path.write_bytes(b"PK\x03\x04 not a zip")
    else:
        np.savez(path, x=np.zeros(3))
    with pytest.raises(QlstmError, match="windows.npz") as exc:
        runs.HeldOut.load(path)
    assert "\n" not in str(exc.value)


def test_metrics_and_compare():
    y = np.array([[0.0, 1.0], [2.0, 3.0]])
    p = y + np.array([[0.5, 0.0], [0.0, -1.0]])
    m = runs.rmse_metrics(p, y)
    assert m.rmse_per_step == (pytest.approx(np.sqrt(0.125)), pytest.approx(np.sqrt(0.5)))
    assert m.mae == pytest.approx(0.375) and m.max_abs_error == 1.0 and m.windows == 2
    assert runs.Metrics.from_dict(m.to_dict(), "m") == m
    with pytest.raises(QlstmError, match="lack"):
        runs.Metrics.from_dict({"rmse": 1.0}, "m")
    with pytest.raises(QlstmError, match="must both be"):
        runs.rmse_metrics(p[:, :1], y)
    agree = runs.compare(p, p.copy(), 0.25)
    assert agree.bit_exact and agree.equal == 4 and agree.max_diff_lsb == 0.0
