"""qlstm predict: backend dispatch, input validation, the float backend and --data scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qlstm import predict as P
from qlstm.cli import main
from qlstm.errors import QlstmError
from qlstm.train import backend
from qlstm.train.config import load_config
from qlstm.train.dataset import sine_events
from qlstm.train.trainer import train_run

TINY = {
    "history": 8,
    "horizon": 2,
    "data": {"source": "sine", "sine_samples": 1500, "sine_t_max": 15.0},
    "model": {"layers": [8]},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.01},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pred") / "run"
    train_run(load_config(None, TINY), out)
    return out


def _err_line(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("qlstm predict: error: "), err
    return err[0]


def test_float_backend_round_trip_through_the_cli(tmp_path, run, capsys):
    x = np.random.default_rng(0).random((33, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    assert (
        main(
            [
                "predict",
                str(run),
                "--backend",
                "float",
                "--inputs",
                str(tmp_path / "x.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "33 x 2" in capsys.readouterr().out
    y = np.load(out)
    assert y.dtype == np.float64 and y.shape == (33, 2)
    np.testing.assert_array_equal(y, backend.predict(run, x))
    np.testing.assert_array_equal(y, P.run_backend("float", run, x.astype(np.float64)))


@pytest.mark.parametrize(
    "shape,phrase",
    [
        ((4, 7, 1), "shape (4, 7, 1), expected (N, L=8, C=1)"),
        ((4, 8, 2), "C=1"),
        ((8, 1), "shape (8, 1)"),
        ((0, 8, 1), "no windows"),
    ],
    ids=["wrong-L", "wrong-C", "2d", "empty"],
)
def test_inputs_of_the_wrong_shape(tmp_path, run, capsys, shape, phrase):
    np.save(tmp_path / "x.npy", np.zeros(shape))
    line = _err_line(
        capsys, ["predict", str(run), "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")]
    )
    assert phrase in line and "x.npy" in line
    assert not (tmp_path / "y.npy").exists()


def test_inputs_that_are_not_a_numeric_npy(tmp_path, run, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "not a readable .npy" in _err_line(
        capsys, ["predict", str(run), "--inputs", str(tmp_path / "obj.npy")]
    )
    (tmp_path / "text.npy").write_text("0.1 0.2 0.3\n0.4 0.5 0.6\n")  # a text file named .npy
    line = _err_line(capsys, ["predict", str(run), "--inputs", str(tmp_path / "text.npy")])
    assert "not a NumPy .npy file" in line and "pickled" not in line
    x = np.zeros((2, 8, 1))
    x[1, 3, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    assert "NaN or inf" in _err_line(capsys, ["predict", str(run), "--inputs", str(tmp_path / "nan.npy")])
    assert "file not found" in _err_line(
        capsys, ["predict", str(run), "--inputs", str(tmp_path / "none.npy")]
    )


def test_not_a_run_folder(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 1)))
    assert "not a qlstm run folder" in _err_line(
        capsys, ["predict", str(tmp_path), "--inputs", str(tmp_path / "x.npy")]
    )


def test_backend_whose_module_is_missing(monkeypatch, run):
    monkeypatch.setitem(P.BACKENDS, "csim", "qlstm.no_such_stage.backend:predict")
    with pytest.raises(QlstmError, match="backend 'csim' is not available: qlstm.no_such_stage.backend"):
        P.get_backend("csim")
    monkeypatch.setitem(P.BACKENDS, "csim", "qlstm.train.model:no_such_function")
    with pytest.raises(QlstmError, match="has no no_such_function"):
        P.get_backend("csim")
    with pytest.raises(QlstmError, match="unknown backend 'gpu'"):
        P.get_backend("gpu")


def test_backend_returning_the_wrong_shape_is_a_bug_not_a_user_error(monkeypatch, run):
    import types

    fake = types.ModuleType("fake_backend")
    fake.predict = lambda run_dir, x: np.zeros((x.shape[0], 3))
    monkeypatch.setitem(__import__("sys").modules, "fake_backend", fake)
    monkeypatch.setitem(P.BACKENDS, "quant", "fake_backend:predict")
    with pytest.raises(RuntimeError, match="returned shape"):
        P.run_backend("quant", run, np.zeros((4, 8, 1)))


def test_out_must_be_npy(tmp_path, run, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 1)))
    assert "must end in .npy" in _err_line(
        capsys, ["predict", str(run), "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.txt")]
    )


def test_data_file_is_windowed_normalised_and_scored(tmp_path, run, capsys):
    from qlstm.data import make_windows, save_events
    from qlstm.description import load

    es = sine_events(400, 4.0)
    path = tmp_path / "sine.npz"
    save_events(es, path)
    out, mpath = tmp_path / "y.npy", tmp_path / "m.json"
    assert main(["predict", str(run), "--data", str(path), "--out", str(out), "--metrics", str(mpath)]) == 0
    text = capsys.readouterr().out
    desc, _ = load(run)
    w = make_windows(es, desc.normalisation, history=8, horizon=2)
    y = np.load(out)
    np.testing.assert_array_equal(y, backend.predict(run, w.x))
    m = json.loads(mpath.read_text())
    assert m["windows"] == len(w) == 400 - 10 + 1
    rmse = np.sqrt(np.mean((y - w.y.astype(np.float64)) ** 2, axis=0))
    np.testing.assert_allclose(m["model"]["rmse_per_step"], rmse, rtol=1e-12)
    assert f"{m['model']['rmse']:11.6f}" in text
    # --max-windows raises the stride
    assert (
        main(["predict", str(run), "--data", str(path), "--max-windows", "50", "--metrics", str(mpath)]) == 0
    )
    assert json.loads(mpath.read_text())["windows"] <= 50


def test_data_file_with_the_wrong_channels(tmp_path, run, capsys):
    from qlstm.data import SyntheticConfig, generate, save_events

    path = tmp_path / "syn.npz"
    save_events(generate(SyntheticConfig(n_events=1, duration_s=200.0)), path)
    line = _err_line(capsys, ["predict", str(run), "--data", str(path)])
    assert "sin" in line


def test_float_trace_ends_in_the_prediction(run):
    x = np.random.default_rng(2).random((5, 8, 1))
    tr = backend.trace(run, x)
    assert tr["rnn0"].shape == (5, 8, 8)
    np.testing.assert_array_equal(tr["head"], backend.predict(run, x))


#: Packages the firmware backend of `qlstm predict` must not load (start-up time: the whole
#: process is compared with the C simulation's, firmware_sim/README.md): PyTorch and Brevitas
#: (training, quantization), the data readers, units, plots, the hls/export tool chains, and
#: numba below the compiled step's size (``simulate.COMPILED_MIN_UPDATES``), hashlib (loads OpenSSL).
HEAVY = (
    "torch", "brevitas", "pandas", "pyarrow", "h5py", "pint", "matplotlib", "yaml", "scipy",
    "numba", "hls4ml", "onnx", "onnxruntime", "qonnx", "optuna", "dask", "tqdm", "hashlib",
)  # fmt: skip


def test_firmware_backend_imports_no_heavy_package(tmp_path):
    """A whole `qlstm predict --backend firmware` process (a fresh interpreter) computes the
    simulation's outputs without importing any package of :data:`HEAVY`."""
    import subprocess
    import sys

    from qlstm.description import save
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.testing import random_model, uniform_quantization

    q = uniform_quantization(1, width=8, integer=3)
    desc, w = random_model(("lstm",), (16,), history=16, horizon=4, quantization=q, seed=2)
    save(tmp_path / "qrun", desc, w)
    x = np.random.default_rng(3).uniform(0.0, 1.0, size=(500, 16, 1))
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys; from qlstm.cli import main; "
        f"rc = main(['predict', {str(tmp_path / 'qrun')!r}, '--backend', 'firmware', "
        f"'--inputs', {str(tmp_path / 'x.npy')!r}, '--out', {str(tmp_path / 'y.npy')!r}]); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), Firmware(desc, w).predict(x))
