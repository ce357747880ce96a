"""qlstm quantize: PTQ policy, Brevitas bridge, QAT, run folders, CLI and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qlstm import description
from qlstm.cli import main
from qlstm.description import Architecture, RecurrentLayer
from qlstm.errors import QlstmError
from qlstm.firmware_sim import backend
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import FixedType
from qlstm.float_reference import float_predict
from qlstm.quantize import core
from qlstm.quantize.brevitas_bridge import quantizer, read_type
from qlstm.quantize.model import profile, quantized_weights
from qlstm.quantize.policy import QatConfig, QuantizeConfig, choose_types
from qlstm.testing import random_weights

TINY = """\
train:
  history: 6
  horizon: 2
  data:
    max_train_windows: 600
    max_eval_windows: 300
  model:
    cell: lstm
    layers: [6]
  training:
    epochs: 2
    batch_size: 64
"""


@pytest.fixture(scope="module")
def float_run(tmp_path_factory) -> Path:
    from qlstm.data import SyntheticConfig, generate, save_events
    from qlstm.train.config import load_config
    from qlstm.train.trainer import train_run

    root = tmp_path_factory.mktemp("quant")
    (root / "tiny.yaml").write_text(TINY)
    save_events(generate(SyntheticConfig(n_events=4, duration_s=900.0, seed=0)), root / "events.npz")
    run = root / "float"
    train_run(load_config(root / "tiny.yaml"), run, root / "events.npz")
    return run


@pytest.fixture(scope="module")
def windows(float_run) -> core.Windows:
    desc, _ = core.load_float_run(float_run)
    return core.run_windows(float_run, desc)


def _random_model(cell: str = "lstm", seed: int = 0):
    rng = np.random.default_rng(seed)
    arch = Architecture(1, 5, 1, (RecurrentLayer(cell, 6), RecurrentLayer(cell, 4)))
    w = random_weights(arch, init="normal", scale=0.7, seed=rng)
    return arch, w, rng


# ---------------------------------------------------------------------------------- PTQ policy
@pytest.mark.parametrize("bits", [6, 8, 12, 16], ids=lambda b: f"{b}b")
def test_ptq_covers_profiled_range_with_fewest_integer_bits_and_weights_on_grid(bits):
    arch, w, rng = _random_model(seed=bits)
    prof = profile(arch, w, rng.uniform(0, 1, (300, 5, 1)))
    cfg = QuantizeConfig(bits=bits)
    q = choose_types(arch, prof, cfg, "ptq")
    for name, t in q.points().items():
        if name.endswith(".table"):
            continue
        role = name.split(".")[-1]
        headroom = cfg.accum_headroom if role == "accum" else cfg.headroom
        if role in ("weight", "recurrent_weight", "bias", "recurrent_bias"):
            headroom = 0  # ranges known exactly
        m = prof.max_abs[name]
        if role == "state":  # capped at hls4ml's tanh input range [-4, 4)
            m = min(m, 3.9)
            assert t.integer <= 3
        assert t.max_value >= m, name
        fewer = FixedType(t.width, t.integer - headroom - 1)
        assert fewer.max_value < m, f"{name}: {t} is not the narrowest cover of {m}"
        if role == "accum":
            assert t.overflow == "AP_WRAP" and t.rounding == "AP_TRN"
        elif name in ("input", "head.result"):
            assert t.width == min(bits + 4, 32)
        else:
            assert t.width == bits
    # accumulators hold every product exactly while they fit in 32 bits
    for lq, data_t in zip(q.layers, (q.input, q.layers[0].state), strict=True):
        if lq.accum.width < 32:
            assert lq.accum.frac >= data_t.frac + lq.weight.frac
            assert lq.accum.frac >= lq.state.frac + lq.recurrent_weight.frac
    qw = quantized_weights(q, w)
    description.check_weights(description.ModelDescription(arch, _norm(), q), qw)  # raises if off grid
    assert max(np.max(np.abs(qw[k] - w[k])) for k in w) <= max(t.lsb for t in q.points().values()) / 2


def test_profile_refuses_an_empty_training_split():
    arch, w, _ = _random_model()
    with pytest.raises(QlstmError, match="no windows to profile the float model on"):
        profile(arch, w, np.zeros((0, 5, 1)))


def _norm():
    return description.Normalisation((0.0,), (1.0,), ("U_res",))


def test_per_role_and_per_layer_widths():
    arch, w, rng = _random_model()
    prof = profile(arch, w, rng.uniform(0, 1, (50, 5, 1)))
    from qlstm.config import from_mapping

    cfg = from_mapping(
        QuantizeConfig, {"bits": 8, "state_bits": 12, "accum_bits": 20, "layers": [{"weight_bits": 6}, {}]}
    )
    q = choose_types(arch, prof, cfg, "ptq")
    assert [lq.weight.width for lq in q.layers] == [6, 8]
    assert {lq.state.width for lq in q.layers} == {12}
    assert {lq.accum.width for lq in q.layers} | {q.dense.accum.width} == {20}
    assert q.input.width == 12 and q.dense.result.width == 12


def test_state_integer_bits_ptq_profiled_qat_one_and_override():
    arch, w, rng = _random_model()
    prof = profile(arch, w, rng.uniform(0, 1, (50, 5, 1)) * 4.0)
    assert max(prof.max_abs[f"rnn{i}.state"] for i in range(2)) > 1.0  # PTQ needs more than 1 bit
    ptq = choose_types(arch, prof, QuantizeConfig(bits=8), "ptq")
    qat = choose_types(arch, prof, QuantizeConfig(bits=8), "qat")
    forced = choose_types(arch, prof, QuantizeConfig(bits=8, state_integer_bits=2), "ptq")
    assert max(lq.state.integer for lq in ptq.layers) > 1
    assert [lq.state.integer for lq in qat.layers] == [1, 1]
    assert [lq.state.integer for lq in forced.layers] == [2, 2]
    # only the state types differ
    assert [lq.weight for lq in ptq.layers] == [lq.weight for lq in qat.layers]
    with pytest.raises(QlstmError, match="state_integer_bits=4: outside 1-3"):
        QuantizeConfig(state_integer_bits=4)


# ---------------------------------------------------------------------------------- Brevitas
@pytest.mark.parametrize(
    "t",
    [
        FixedType(6, 2, True, "AP_RND_CONV", "AP_SAT"),
        FixedType(8, -3, True, "AP_RND_CONV", "AP_SAT_SYM"),
        FixedType(16, 6, True, "AP_TRN", "AP_WRAP"),
        FixedType(12, 1, True, "AP_TRN_ZERO", "AP_SAT"),
    ],
    ids=str,
)
def test_brevitas_quantizer_round_trip_and_values(t):
    q = quantizer(t)
    assert read_type(q, t) == t
    x = torch.linspace(2 * t.min_value - 0.3, 2 * t.max_value + 0.3, 997, dtype=torch.float64)
    got = q(x).detach().numpy()
    want = replace(t, overflow="AP_SAT" if t.overflow == "AP_WRAP" else t.overflow).quantize(x.numpy())
    np.testing.assert_array_equal(got, want)


def test_brevitas_refuses_modes_it_cannot_train():
    from qlstm.errors import QlstmError

    with pytest.raises(QlstmError, match="AP_RND_INF has no Brevitas"):
        quantizer(FixedType(8, 2, True, "AP_RND_INF", "AP_SAT"))


# ---------------------------------------------------------------------------------- QAT
def test_qat_lowers_the_loss_and_returns_types_read_from_brevitas():
    from qlstm.quantize.qat import fine_tune

    torch.manual_seed(0)
    arch, w, rng = _random_model(seed=1)
    x = rng.uniform(0, 1, (400, 5, 1))
    y = x[:, -1, :1] * 0.8 + 0.1  # a learnable target the random model does not fit
    prof = profile(arch, w, x)
    q0 = choose_types(arch, prof, QuantizeConfig(bits=6), "qat")
    res = fine_tune(
        arch, w, q0, (x[:300], y[:300]), (x[300:], y[300:]), QatConfig(epochs=3, batch_size=50, lr=1e-2)
    )
    vals = [h["val_mse"] for h in res.history]
    assert min(vals[1:]) < 0.7 * vals[0], vals
    # the result is a consistent quantized model: weights on the learned grids, firmware forward
    description.check_weights(description.ModelDescription(arch, _norm(), res.quant), res.weights)
    fw = Firmware(description.ModelDescription(arch, _norm(), res.quant), res.weights).predict(x[300:])
    assert np.mean((fw - y[300:]) ** 2) < vals[0]
    assert res.kept == "qat" and res.ptq_val_mse is None  # no PTQ model to compare with


def test_qat_keeps_the_ptq_model_when_it_is_better_on_validation():
    """QAT starts with h and c in [-1, 1); a model whose cell state grows beyond that (forget and
    input gates open) loses to PTQ at 16 bits, and QAT then returns the PTQ model unchanged."""
    from qlstm.quantize.qat import fine_tune

    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    arch = Architecture(1, 5, 1, (RecurrentLayer("lstm", 6),))
    w = random_weights(arch, init="normal", scale=0.3, seed=rng)
    w["rnn0.bias_ih"][:18] += np.repeat([4.0, 4.0, 2.0], 6)  # i, f open, g ~ 1: c grows ~1 per step
    x = rng.uniform(0, 1, (400, 5, 1))
    y = float_predict(arch, w, x)  # the float model's own output: float is exact
    prof = profile(arch, w, x)
    assert prof.max_abs["rnn0.state"] > 3
    cfg = QuantizeConfig(bits=16)
    start, ptq = choose_types(arch, prof, cfg, "qat"), choose_types(arch, prof, cfg, "ptq")
    assert start.layers[0].state.integer == 1 and ptq.layers[0].state.integer == 3
    res = fine_tune(
        arch, w, start, (x[:300], y[:300]), (x[300:], y[300:]), QatConfig(epochs=1, batch_size=100, lr=1e-4),
        ptq=ptq,
    )  # fmt: skip
    assert res.kept == "ptq" and res.quant == replace(ptq, method="qat")  # a QAT run that kept PTQ
    assert res.ptq_val_mse < min(h["val_mse"] for h in res.history)
    for k, v in quantized_weights(ptq, w).items():
        np.testing.assert_array_equal(res.weights[k], v)


# ---------------------------------------------------------------------------------- run folders
def test_ptq_run_folder_round_trip(float_run, windows, tmp_path):
    out = tmp_path / "q8"
    metrics = core.quantize_run(float_run, out, QuantizeConfig(bits=8), win=windows)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "model.json",
            "weights.npz",
            "checkpoint.pt",
            "parent.json",
            "data.json",
            "config.yaml",
            "metrics.json",
        ]
    )
    desc, qw = description.load(out)  # checks every weight is on its grid
    assert desc.quantization is not None and desc.quantization.bits == 8
    parent = json.loads((out / "parent.json").read_text())
    assert Path(parent["path"]) == float_run.resolve()
    pred = backend.predict(out, windows.test[0])
    rmse = float(np.sqrt(np.mean((pred - windows.test[1]) ** 2)))
    assert rmse == pytest.approx(metrics["test"]["rmse"], rel=1e-12)
    assert len(metrics["test"]["rmse_per_step"]) == 2
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["types"]["rnn0.state"] == desc.quantization.layers[0].state.describe()
    assert saved["test"]["rmse"] == metrics["test"]["rmse"]
    # the saved config reproduces the run
    metrics2 = core.quantize_run(float_run, tmp_path / "again", QuantizeConfig(bits=8), win=windows)
    assert metrics2["test"] == metrics["test"]


def test_cli_ptq_qat_and_sweep(float_run, tmp_path, capsys):
    cfg = tmp_path / "q.yaml"
    cfg.write_text("quantize:\n  state_bits: 10\n  qat:\n    epochs: 1\n    batch_size: 128\n")
    assert main(["quantize", str(float_run), "--bits", "8", "--method", "qat", "--config", str(cfg),
                 "--out", str(tmp_path / "qat8"), "--no-progress"]) == 0  # fmt: skip
    desc, _ = description.load(tmp_path / "qat8")
    assert desc.quantization.method == "qat" and desc.quantization.layers[0].state.width == 10
    assert main(["quantize", str(float_run), "--sweep", "6,10", "--method", "ptq", "--out", str(tmp_path / "sw"),
                 "--type", "rnn0.state=ap_fixed<8,2>"]) == 2  # fmt: skip
    assert (
        main(
            ["quantize", str(float_run), "--sweep", "6,10", "--method", "ptq", "--out", str(tmp_path / "sw")]
        )
        == 0
    )
    rows = (tmp_path / "sw" / "sweep.csv").read_text().splitlines()
    assert rows[0] == "bits,float_rmse,ptq_rmse" and len(rows) == 3
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 1000
    assert (tmp_path / "sw" / "ptq_6" / "model.json").is_file()


BAD = [
    (["--bits", "1"], "bits=1: bit width outside 2-32"),
    (["--bits", "33"], "bits=33: bit width outside 2-32"),
    (["--bits", "8", "--state-bits", "40"], "state_bits=40: bit width outside 2-32"),
    (["--bits", "8", "--type", "rnn0.state=ap_fixed<8,9>"], "integer bits 9 are larger than the width 8"),
    (["--bits", "8", "--rounding", "AP_ROUND"], "unknown rounding mode 'AP_ROUND'"),
    (["--bits", "8", "--overflow", "AP_CLAMP"], "unknown overflow mode 'AP_CLAMP'"),
    (["--bits", "8", "--type", "rnn7.state=ap_fixed<8,2>"], "unknown quantization point 'rnn7.state'"),
    (["--bits", "8", "--table-size", "1000"], "must be a power of two"),
    (["--sweep", "6,x"], "expected comma-separated integers"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_options_one_line_nothing_written(float_run, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["quantize", str(float_run), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qlstm quantize: error:") and message in err and "\n" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_run_folders(float_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (empty, "no model.json"),
        (tmp_path / "missing", "run folder not found"),
    ]
    nomodel = tmp_path / "noweights"
    nomodel.mkdir()
    (nomodel / "model.json").write_text((float_run / "model.json").read_text())
    cases.append((nomodel, "no weights.npz; the run holds no trained model"))
    for run, message in cases:
        assert main(["quantize", str(run), "--bits", "8", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not (tmp_path / "o").exists()
    # a quantized run is not a float parent; an occupied --out is refused without --overwrite
    core.quantize_run(float_run, tmp_path / "q", QuantizeConfig(bits=6))
    assert main(["quantize", str(tmp_path / "q"), "--bits", "8", "--out", str(tmp_path / "o")]) == 2
    assert "already a quantized run" in capsys.readouterr().err
    before = (tmp_path / "q" / "model.json").read_text()
    assert main(["quantize", str(float_run), "--bits", "8", "--out", str(tmp_path / "q")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "q" / "model.json").read_text() == before


@pytest.mark.parametrize("form", ["ptq", "calibration", "sweep"])
def test_truncated_checkpoint_is_refused_as_predict_refuses_it(float_run, tmp_path, capsys, form):
    """A new user's trial: PTQ quantized a run whose checkpoint.pt was cut in half, which
    `qlstm predict --backend float` refuses; both now give the same line (one check,
    qlstm.train.backend.check_checkpoint), before any work and with nothing written."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(float_run, run)
    ck = run / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).uniform(0, 1, (20, 6, 1)))
    assert main(["predict", str(run), "--backend", "float", "--inputs", str(x)]) == 2
    predict_err = capsys.readouterr().err.strip()
    extra = {"ptq": [], "calibration": ["--calibration", str(x)], "sweep": ["--sweep", "6,8"]}[form]
    out = tmp_path / "q"
    assert main(["quantize", str(run), "--out", str(out), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{ck}: corrupt checkpoint (" in err
    assert err.split(": error: ", 1)[1] == predict_err.split(": error: ", 1)[1]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run", "x.npy"]


def test_backend_refuses_float_runs_and_bad_shapes(float_run, tmp_path):
    from qlstm.errors import QlstmError

    with pytest.raises(QlstmError, match="not a quantized run"):
        backend.predict(float_run, np.zeros((2, 6, 1)))
    core.quantize_run(float_run, tmp_path / "q", QuantizeConfig(bits=6))
    with pytest.raises(QlstmError, match=r"expected \(N, L=6, C=1\)"):
        backend.predict(tmp_path / "q", np.zeros((2, 5, 1)))


def test_type_override_star_sets_every_point_but_the_tables():
    """`--type '*=ap_fixed<16,6>'` is hls4ml's model-wide default precision: every point except
    the tables (their table_t keeps its own default); a named point overrides it."""
    from qlstm.fixedpoint import FixedType
    from qlstm.quantize.core import apply_type_overrides
    from qlstm.testing import uniform_quantization

    q = uniform_quantization(2, width=8, integer=3, head=("relu", "sigmoid"))
    got = apply_type_overrides(q, {"*": "ap_fixed<16,6>", "rnn0.state": "ap_fixed<12,3>"})
    t16 = FixedType(16, 6)
    before, after = q.points(), got.points()
    assert set(after) == set(before) and any(k.endswith(".table") for k in after)
    for name, t in after.items():
        want = (
            before[name] if name.endswith(".table") else (FixedType(12, 3) if name == "rnn0.state" else t16)
        )
        assert t == want, name
