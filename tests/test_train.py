"""qlstm.train: model layout, determinism, training, run folder, CLI errors and the L x k grid."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from qlstm import description
from qlstm.cli import main
from qlstm.description import Architecture, RecurrentLayer
from qlstm.errors import QlstmError
from qlstm.runs import open_float_run
from qlstm.testing import random_weights
from qlstm.train import backend
from qlstm.train.config import load_config
from qlstm.train.dataset import WindowSet, prepare
from qlstm.train.model import Predictor, from_weights, predict_array, to_weights
from qlstm.train.trainer import fit, lstsq_head, train_run

#: a sine run small enough to train in about a second
TINY = {
    "history": 8,
    "horizon": 2,
    "data": {"source": "sine", "sine_samples": 1500, "sine_t_max": 15.0},
    "model": {"layers": [8]},
    "training": {"epochs": 3, "batch_size": 64, "lr": 0.01},
}


def write_yaml(path: Path, data: dict) -> Path:
    """A qlstm config file holding ``data`` as its ``train:`` section."""
    path.write_text(yaml.safe_dump({"train": data}))
    return path


def windows(x: np.ndarray, y: np.ndarray) -> WindowSet:
    """Windows of one event, starting at consecutive samples."""
    return WindowSet(x, y, 1, np.zeros(len(x), dtype=np.int64), np.arange(len(x)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    train_run(load_config(None, TINY), out)
    return out


# ------------------------------------------------------------------ model and layout
ARCHS = {
    "lstm1": Architecture(1, 16, 4, (RecurrentLayer("lstm", 12),)),
    "gru1": Architecture(1, 5, 1, (RecurrentLayer("gru", 7),)),
    "lstm2-2ch": Architecture(2, 6, 3, (RecurrentLayer("lstm", 5), RecurrentLayer("lstm", 4)), dropout=0.2),
    "gru-lstm": Architecture(1, 3, 2, (RecurrentLayer("gru", 3), RecurrentLayer("lstm", 6))),
}


@pytest.mark.parametrize("arch", ARCHS.values(), ids=ARCHS.keys())
def test_shapes_and_parameter_count(arch):
    torch.manual_seed(0)
    model = Predictor(arch)
    assert sum(p.numel() for p in model.parameters()) == arch.n_parameters()
    w = to_weights(model)
    assert {k: v.shape for k, v in w.items()} == arch.weight_shapes()
    y = model.eval()(torch.rand(5, arch.history, arch.input_channels))
    assert tuple(y.shape) == (5, arch.horizon)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_forward(arch: Architecture, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The description's documented layout and gate order (LSTM i,f,g,o; GRU r,z,n), in NumPy."""
    seq = x.astype(np.float64)
    for i, layer in enumerate(arch.layers):
        wi, wh = w[f"rnn{i}.weight_ih"], w[f"rnn{i}.weight_hh"]
        bi, bh = w[f"rnn{i}.bias_ih"], w[f"rnn{i}.bias_hh"]
        n, H = seq.shape[0], layer.units
        h, c, outs = np.zeros((n, H)), np.zeros((n, H)), []
        for t in range(seq.shape[1]):
            a, b = seq[:, t] @ wi.T + bi, h @ wh.T + bh
            if layer.cell == "lstm":
                g = a + b
                ig, fg = _sigmoid(g[:, :H]), _sigmoid(g[:, H : 2 * H])
                cand, og = np.tanh(g[:, 2 * H : 3 * H]), _sigmoid(g[:, 3 * H :])
                c = fg * c + ig * cand
                h = og * np.tanh(c)
            else:
                r = _sigmoid(a[:, :H] + b[:, :H])
                z = _sigmoid(a[:, H : 2 * H] + b[:, H : 2 * H])
                nn_ = np.tanh(a[:, 2 * H :] + r * b[:, 2 * H :])
                h = (1 - z) * nn_ + z * h
            outs.append(h)
        seq = np.stack(outs, axis=1)
    return seq[:, -1] @ w["head.weight"].T + w["head.bias"]


@pytest.mark.parametrize("arch", ARCHS.values(), ids=ARCHS.keys())
def test_weights_follow_the_description_layout(arch):
    """from_weights + predict_array compute exactly the documented equations (float64)."""
    rng = np.random.default_rng(1)
    w = random_weights(arch, init="normal", scale=0.5, seed=rng)
    w = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}  # exact in float32
    x = rng.random((7, arch.history, arch.input_channels))
    got = predict_array(from_weights(arch, w), x)
    np.testing.assert_allclose(got, reference_forward(arch, w, x), rtol=0, atol=1e-12)
    back = to_weights(from_weights(arch, w))
    for k in w:
        np.testing.assert_array_equal(back[k], w[k])


def test_from_weights_refuses_wrong_shapes():
    arch = ARCHS["lstm1"]
    w = {k: np.zeros(s) for k, s in arch.weight_shapes().items()}
    w["rnn0.weight_hh"] = np.zeros((48, 11))
    with pytest.raises(QlstmError, match="rnn0.weight_hh has shape"):
        from_weights(arch, w)


# ------------------------------------------------------------------ training
def _tiny_windows(seed: int = 0) -> tuple[WindowSet, WindowSet]:
    rng = np.random.default_rng(seed)
    t = np.arange(1200) * 0.05
    z = (0.5 + 0.4 * np.sin(t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    idx = np.arange(0, z.size - 7)
    x = np.stack([z[i : i + 6] for i in idx])[:, :, None]
    y = np.stack([z[i + 6 : i + 7] for i in idx])
    return windows(x[:900], y[:900]), windows(x[900:], y[900:])


def test_loss_decreases_on_a_tiny_set():
    torch.manual_seed(0)
    cfg = load_config(
        None,
        {
            "history": 6,
            "model": {"layers": [6]},
            "training": {"epochs": 6, "lr": 0.01, "batch_size": 32, "head_init": "random"},
        },
    )
    train, val = _tiny_windows()
    res = fit(Predictor(cfg.architecture()), train, val, cfg.training)
    tr = [h["train_mse"] for h in res.history]
    va = [h["val_mse"] for h in res.history]
    assert tr[-1] < 0.2 * tr[0]
    assert min(va) < 0.2 * va[0]
    assert res.best_epoch == 1 + int(np.argmin(va))


def test_same_seed_gives_identical_weights(tmp_path, tiny_run):
    train_run(load_config(None, TINY), tmp_path / "again")
    _, w1 = description.load(tiny_run)
    _, w2 = description.load(tmp_path / "again")
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k], err_msg=k)
    other = load_config(None, {**TINY, "training": {**TINY["training"], "seed": 1}})
    train_run(other, tmp_path / "seed1")
    _, w3 = description.load(tmp_path / "seed1")
    assert not np.array_equal(w1["rnn0.weight_hh"], w3["rnn0.weight_hh"])


def test_run_folder_is_complete_and_reloads_to_identical_predictions(tiny_run):
    files = {p.name for p in tiny_run.iterdir()}
    assert files == {
        "model.json",
        "weights.npz",
        "checkpoint.pt",
        "config.yaml",
        "metrics.json",
        "training_curve.png",
        "data.json",
        "windows.npz",
    }
    cfg = load_config(tiny_run / "config.yaml")
    assert cfg == load_config(None, TINY)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    data = json.loads((tiny_run / "data.json").read_text())
    assert data["L"] == 8 and data["k"] == 2 and data["split"]["test"] == ["sine[test]"]
    # predictions of the reloaded run reproduce the metrics computed at the end of training
    prep = prepare(cfg, None)
    # windows.npz holds the very windows training cut, bit for bit, with their event and start
    held = open_float_run(tiny_run).heldout()
    for name in ("train", "val", "test"):
        a, b = getattr(held, name), getattr(prep, name)
        for field in ("x", "y", "event", "start"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")
        assert a.x.dtype == np.float32 and a.y.dtype == np.float32
    assert held.events["test"] == ("sine[test]",) and held.trace is None  # the sine has no quench
    y = backend.predict(tiny_run, prep.test.x)
    rmse = np.sqrt(np.mean((y - prep.test.y.astype(np.float64)) ** 2, axis=0))
    np.testing.assert_array_equal(rmse, metrics["test"]["model"]["rmse_per_step"])
    assert metrics["test"]["windows"] == len(prep.test)
    # the checkpoint holds the same numbers as weights.npz
    ckpt = backend.load_checkpoint(tiny_run)
    _, w = description.load(tiny_run)
    for k in w:
        np.testing.assert_array_equal(ckpt[k], w[k])


def test_metrics_report_baselines_and_verdict(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())["test"]
    for name in ("model", "persistence", "linear_ar"):
        assert len(m[name]["rmse_per_step"]) == 2 and len(m[name]["mae_per_step"]) == 2
    # a sine obeys an exact linear recursion: AR is (near) perfect and must be reported as unbeaten
    assert m["linear_ar"]["rmse"] < 1e-6
    assert m["beats_linear_ar"] is False
    assert (
        "does NOT beat the linear AR baseline"
        in json.loads((tiny_run / "metrics.json").read_text())["verdict"]
    )


def test_same_run_again_is_kept_not_retrained(tmp_path, tiny_run, capsys):
    cfg = write_yaml(tmp_path / "tiny.yaml", TINY)
    before = (tiny_run / "weights.npz").stat().st_mtime_ns
    assert main(["train", "--config", str(cfg), "--out", str(tiny_run), "--no-progress"]) == 0
    assert (tiny_run / "weights.npz").stat().st_mtime_ns == before
    assert "does NOT beat the linear AR baseline" in capsys.readouterr().out


def test_synthetic_file_source(tmp_path):
    """--data FILE: a recording saved by qlstm.data is windowed, split by event and recorded."""
    from qlstm.data import SyntheticConfig, generate, save_events

    es = generate(SyntheticConfig(n_events=4, duration_s=600.0, seed=3))
    path = tmp_path / "events.npz"
    save_events(es, path)
    cfg = load_config(None, {"history": 4, "horizon": 3, "model": {"layers": [4]}, "training": {"epochs": 1}})
    m = train_run(cfg, tmp_path / "run", path)
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["source"] == "file" and len(data["sha256"]) == 64
    assert Path(data["path"]) == path.resolve()
    assert sorted(data["split"]["train"] + data["split"]["val"] + data["split"]["test"]) == sorted(es.names)
    assert len(data["split"]["test"]) == 1 and len(data["split"]["val"]) == 1
    assert len(m["test"]["model"]["rmse_per_step"]) == 3
    desc, _ = description.load(tmp_path / "run")
    assert desc.normalisation.channel_names == ("U_res",) and desc.data["sha256"] == data["sha256"]


# ------------------------------------------------------------------ CLI bad inputs
def _fails(capsys, argv: list[str], *phrases: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("qlstm ")
    assert "Traceback" not in err
    for p in phrases:
        assert p in lines[0], lines[0]
    return lines[0]


BAD_CONFIGS = {
    "unknown-top-key": ({**TINY, "histroy": 8}, "unknown key(s) histroy"),
    "unknown-nested-key": ({**TINY, "training": {"epoch": 3}}, "unknown key(s) epoch"),
    "L-zero": ({**TINY, "history": 0}, "history L=0 outside 1-128"),
    "L-too-long": ({**TINY, "history": 129}, "history L=129 outside 1-128"),
    "k-too-long": ({**TINY, "horizon": 33}, "horizon k=33 outside 1-32"),
    "bad-cell": ({**TINY, "model": {"cell": "rnn"}}, "model.cell"),
    "wrong-type": ({**TINY, "training": {"lr": "fast"}}, "training.lr: expected a number"),
}


@pytest.mark.parametrize("cfg,phrase", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_one_error_line(tmp_path, capsys, cfg, phrase):
    path = write_yaml(tmp_path / "c.yaml", cfg)
    _fails(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "run")], str(path), phrase)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "opt,value,phrase",
    [("--history", "0", "--history 0: outside 1-128"), ("--horizon", "64", "--horizon 64: outside 1-32")],
    ids=["history-0", "horizon-64"],
)
def test_L_or_k_out_of_range_on_the_command_line(tmp_path, capsys, opt, value, phrase):
    _fails(capsys, ["train", opt, value, "--out", str(tmp_path / "run")], phrase)
    assert not (tmp_path / "run").exists()


def test_L_plus_k_longer_than_the_events(tmp_path, capsys):
    cfg = write_yaml(
        tmp_path / "c.yaml",
        {**TINY, "history": 128, "horizon": 32, "data": {**TINY["data"], "sine_samples": 300}},
    )
    _fails(
        capsys,
        ["train", "--config", str(cfg), "--out", str(tmp_path / "run")],
        "fewer than history + horizon = 160",
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name,content,phrase",
    [
        ("garbage.csv", "this,is\nnot,a recording\n", "garbage.csv"),
        ("empty.npz", "", "empty.npz"),
        ("missing.h5", None, "file not found"),
    ],
    ids=["csv-garbage", "npz-empty", "missing-file"],
)
def test_invalid_data_file(tmp_path, capsys, name, content, phrase):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    _fails(capsys, ["train", "--data", str(path), "--out", str(tmp_path / "run")], phrase)
    assert not (tmp_path / "run").exists()


def test_folder_holding_a_different_run_is_refused(tmp_path, tiny_run, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    other = write_yaml(tmp_path / "other.yaml", {**TINY, "training": {**TINY["training"], "seed": 5}})
    before = (run / "weights.npz").read_bytes()
    _fails(
        capsys,
        ["train", "--config", str(other), "--out", str(run), "--no-progress"],
        "different run",
        "--overwrite",
    )
    assert (run / "weights.npz").read_bytes() == before
    # an unrelated non-empty folder is refused too
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    _fails(capsys, ["train", "--config", str(other), "--out", str(tmp_path / "notes")], "not a qlstm run")
    # --overwrite replaces it
    assert main(["train", "--config", str(other), "--out", str(run), "--overwrite", "--no-progress"]) == 0
    assert (run / "weights.npz").read_bytes() != before
    assert load_config(run / "config.yaml").training.seed == 5


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-tensors"])
def test_corrupt_checkpoint_is_refused_when_loaded(tmp_path, tiny_run, capsys, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ck = run / "checkpoint.pt"
    if damage == "truncate":
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif damage == "garbage":
        ck.write_bytes(b"\x00not a checkpoint" * 10)
    else:
        torch.save({"w": torch.zeros(3)}, ck)
    with pytest.raises(QlstmError, match="corrupt checkpoint"):
        backend.load_model(run)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 8, 1)))
    _fails(capsys, ["predict", str(run), "--inputs", str(x)], "checkpoint.pt", "corrupt checkpoint")


def test_checkpoint_disagreeing_with_weights_is_refused(tmp_path, tiny_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["head.bias"] = state["head.bias"] + 1.0
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(QlstmError, match="corrupt checkpoint .head.bias differs"):
        backend.load_model(run)


def test_truncated_weights_are_refused(tmp_path, tiny_run, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    w = run / "weights.npz"
    w.write_bytes(w.read_bytes()[:100])
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 8, 1)))
    _fails(capsys, ["predict", str(run), "--inputs", str(x)], "weights.npz", "corrupt or truncated")


# ------------------------------------------------------------------ grid
@pytest.mark.slow
def test_grid_on_a_tiny_grid(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "tiny.yaml", {**TINY, "training": {**TINY["training"], "epochs": 1}})
    out = tmp_path / "grid"
    argv = [
        "train",
        "--grid",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--grid-history",
        "2,8",
        "--grid-horizon",
        "1,3",
        "--jobs",
        "2",
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert [(int(r["L"]), int(r["k"])) for r in rows] == [(2, 1), (2, 3), (8, 1), (8, 3)]
    for r in rows:
        m = json.loads((out / "runs" / f"L{r['L']}_k{r['k']}" / "metrics.json").read_text())
        assert float(r["rmse"]) == m["test"]["model"]["rmse"]
    assert (out / "grid_rmse.png").stat().st_size > 1000
    capsys.readouterr()
    # a second call resumes: every cell is kept, nothing retrained
    stamp = (out / "runs" / "L2_k1" / "weights.npz").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs" / "L2_k1" / "weights.npz").stat().st_mtime_ns == stamp
    # a different grid into the same folder is refused
    _fails(capsys, [*argv[:-2], "--jobs", "1", "--seed", "4"], "already holds something other than this grid")


def test_grid_refuses_out_of_range_lists(tmp_path, capsys):
    _fails(
        capsys,
        ["train", "--grid", "--out", str(tmp_path / "g"), "--grid-horizon", "1,40"],
        "--grid-horizon",
        "[40]",
    )
    assert not (tmp_path / "g").exists()


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    names = {p.name for p in root.glob("*.yaml")}
    assert {"paper.yaml", "compact.yaml", "sine.yaml"} <= names
    paper = load_config(root / "paper.yaml")
    assert paper.history == 16 and paper.model.layers == (128,)
    assert max(load_config(root / "compact.yaml").model.layers) <= 32
    sine = load_config(root / "sine.yaml")
    assert (sine.history, sine.horizon, sine.model.layers, sine.data.source) == (20, 1, (16,), "sine")


@pytest.mark.slow
def test_sine_config_reaches_test_mse_below_1e4(tmp_path):
    """configs/sine.yaml: sin(pi t), window 20, LSTM(16) -> Dense(1): test MSE < 1e-4 (sine units)."""
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "sine.yaml")
    m = train_run(cfg, tmp_path / "sine")
    assert m["raw_units"]["model_mse"] < 1e-4
    assert m["test"]["model"]["mse"] <= m["raw_units"]["model_mse"]  # normalised range 1 < raw range 2


@pytest.mark.parametrize(
    "arch", [ARCHS["lstm1"], ARCHS["lstm2-2ch"], ARCHS["gru1"]], ids=["lstm1", "lstm2-2ch", "gru1"]
)
def test_training_standardisation_folds_exactly_into_the_saved_weights(arch):
    """A model trained on standardised data equals the plain model of its folded weights (float64
    arithmetic; the only difference is rounding the folded weights to float32)."""
    torch.manual_seed(3)
    c = arch.input_channels
    rng = np.random.default_rng(4)
    model = Predictor(
        arch,
        in_shift=rng.random(c) * 0.3,
        in_scale=1.0 / (0.02 + rng.random(c) * 0.05),
        out_shift=0.15,
        out_scale=0.02,
    ).eval()
    x = 0.1 + 0.05 * rng.random((9, arch.history, c))
    folded = to_weights(model)
    assert folded["rnn0.weight_ih"].shape == arch.weight_shapes()["rnn0.weight_ih"]
    np.testing.assert_allclose(
        predict_array(from_weights(arch, folded), x), predict_array(model, x), rtol=0, atol=1e-6
    )
    plain = Predictor(arch)
    assert not plain.standardised and to_weights(plain)["rnn0.weight_ih"].dtype == np.float64


def test_lstsq_head_is_the_least_squares_readout():
    """lstsq_head reaches the least-squares optimum of the head (checked against a float64 fit
    of the same features), and training starts from it as epoch 0."""
    torch.manual_seed(0)
    arch = Architecture(1, 6, 2, (RecurrentLayer("lstm", 5),))
    train, val = _tiny_windows()
    train = windows(train.x, np.concatenate([train.y, train.y**2], axis=1))
    model = Predictor(arch)
    random_head = float(np.mean((predict_array(model, train.x) - train.y) ** 2))
    mse = lstsq_head(model, train)
    with torch.no_grad():
        h, _ = model.double().rnns[0](torch.from_numpy(train.x).double())
    a = np.c_[h[:, -1, :].numpy(), np.ones(len(train))]
    coef, *_ = np.linalg.lstsq(a, train.y.astype(np.float64), rcond=None)
    optimum = float(np.mean((a @ coef - train.y) ** 2))
    ours = float(np.mean((predict_array(model, train.x) - train.y) ** 2))
    assert optimum <= ours <= optimum * (1 + 1e-3) and ours < 0.1 * random_head
    assert abs(mse - ours) <= 1e-3 * ours
    cfg = load_config(
        None,
        {
            "history": 6,
            "horizon": 2,
            "model": {"layers": [5]},
            "training": {"epochs": 1, "head_init": "lstsq"},
        },
    )
    val = windows(val.x, np.concatenate([val.y, val.y**2], axis=1))
    res = fit(Predictor(arch), train, val, cfg.training)
    assert res.history[0]["epoch"] == 0 and res.history[0]["lr"] == 0.0
