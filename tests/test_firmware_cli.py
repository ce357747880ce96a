"""``qlstm firmware check`` / ``trace`` and the ``firmware`` predict backend: outputs, and one-line
errors with no partial files for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from qlstm.cli import main
from qlstm.description import save
from qlstm.errors import QlstmError
from qlstm.firmware_sim import backend
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import FixedType
from qlstm.testing import random_model, uniform_quantization


@pytest.fixture
def qrun(tmp_path):
    q = uniform_quantization(
        2, width=8, integer=2, rounding="AP_RND", overflow="AP_SAT",
        accum=FixedType(10, 4, True, "AP_RND", "AP_SAT"),
    )  # fmt: skip
    desc, w = random_model(
        ("lstm", "gru"), (4, 3), history=6, horizon=2, quantization=q, init="uniform", scale=1.5
    )
    save(tmp_path / "qrun", desc, w)
    x = np.random.default_rng(0).uniform(-1, 2, size=(30, 6, 1))
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "qrun", tmp_path / "x.npy", desc, w, x


def test_check_prints_every_tensor_and_overflows(qrun, capsys):
    run_dir, xp, desc, w, _ = qrun
    assert main(["firmware", "check", str(run_dir), "--inputs", str(xp)]) == 0
    out = capsys.readouterr().out
    for name in Firmware(desc, w).trace_names():
        assert f"\n{name} " in out
    assert "ap_fixed<8,2,AP_RND,AP_SAT>" in out
    assert "overflow:\n" in out and "rnn0.c" in out  # the 8-bit cell state saturates on these inputs


def test_check_fail_on_overflow_sets_status(qrun, capsys):
    run_dir, xp, *_ = qrun
    assert main(["firmware", "check", str(run_dir), "--inputs", str(xp), "--fail-on-overflow"]) == 1


def test_check_on_a_recording_reports_rmse(qrun, tmp_path, capsys):
    from qlstm.data import Event, EventSet, save_events

    run_dir, *_ = qrun
    t = np.arange(200) * 0.4
    es = EventSet(
        events=(Event("e0", t, (0.5 + 0.3 * np.sin(t))[:, None], None),),
        channel_names=("ch0",),
        units=("V",),
        dt=0.4,
        source="test",
    )
    path = tmp_path / "rec.npz"
    save_events(es, path)
    assert main(["firmware", "check", str(run_dir), "--data", str(path), "--stride", "5"]) == 0
    out = capsys.readouterr().out
    assert "RMSE vs targets (normalised): firmware" in out
    assert "39 windows" in out  # (200 - 6 - 2) // 5 + 1


def test_trace_writes_every_tensor(qrun, tmp_path, capsys):
    run_dir, xp, desc, w, x = qrun
    out = tmp_path / "trace.npz"
    assert main(["firmware", "trace", str(run_dir), "--inputs", str(xp), "--out", str(out)]) == 0
    with np.load(out) as z:
        types = json.loads(str(z["__types__"]))
        assert set(types) == set(Firmware(desc, w).trace_names())
        assert z["rnn0.gates"].shape == (30, 6, 16)
        assert z["rnn1.h"].shape == (30, 6, 3)
        assert_array_equal(z["head"], backend.predict(run_dir, x))
        assert_array_equal(z["rnn0.c"], backend.trace(run_dir, x)["rnn0.c"])


def test_bad_inputs_are_one_line_errors_without_output(qrun, tmp_path, capsys):
    run_dir, xp, *_ = qrun
    out = tmp_path / "t.npz"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 5, 1)))
    assert main(["firmware", "trace", str(run_dir), "--inputs", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.npy" in err and "(N, L=6, C=1)" in err
    assert not out.exists() and not list(tmp_path.glob(".t.tmp*"))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    assert main(["firmware", "check", str(run_dir), "--inputs", str(junk)]) == 2
    assert "junk.npy" in capsys.readouterr().err
    assert main(["firmware", "check", str(tmp_path / "nowhere"), "--inputs", str(xp)]) == 2
    assert "model.json" in capsys.readouterr().err


def test_float_run_is_refused(tmp_path, capsys):
    desc, w = random_model(("lstm",), (2,), history=3, quantization=uniform_quantization(1), init="uniform")
    save(tmp_path / "frun", desc.with_quantization(None), w)
    with pytest.raises(QlstmError, match="not a quantized run"):
        backend.predict(tmp_path / "frun", np.zeros((1, 3, 1)))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 1)))
    assert main(["firmware", "check", str(tmp_path / "frun"), "--inputs", str(tmp_path / "x.npy")]) == 2
    assert "not a quantized run" in capsys.readouterr().err
