"""``qlstm hls``: complete hls4ml projects per target, model and width; test bench; bad input.

The FPGA part does not change the C simulation, so each model x width is compiled once (in a
session cache) and only the project is generated per target; the generated ``firmware/`` is
checked (in ``generate``) to be the one that was compiled.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qlstm import description
from qlstm.cli import main
from qlstm.hls import csim as csim_mod
from qlstm.hls.csim import build_csim
from qlstm.hls.project import METADATA, TB_INPUTS, TB_OUTPUTS
from qlstm.hls.targets import TARGETS
from qlstm.hls.verify import check_project_types
from qlstm.hls_config import HlsConfig
from qlstm.runs import read_estimates
from qlstm.testing import random_model, random_windows

MODELS = {
    "lstm": (("lstm",), (6,)),
    "lstm-lstm": (("lstm", "lstm"), (6, 4)),
    "gru": (("gru",), (6,)),
}
BITS = (8, 16)


@pytest.fixture(scope="session")
def hls_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlstm-hls-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QLSTM_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def qruns(tmp_path_factory, hls_cache):
    """(model, bits) -> quantized run folder + a .npy of windows; made once per session."""
    base = tmp_path_factory.mktemp("qruns")
    made: dict[tuple[str, int], tuple[Path, Path]] = {}

    def get(model: str, bits: int) -> tuple[Path, Path]:
        if (model, bits) not in made:
            cells, units = MODELS[model]
            desc, w = random_model(cells, units, history=5, horizon=2, bits=bits, seed=bits)
            run = base / f"{model}-{bits}"
            description.save(run, desc, w)
            xs = base / f"{model}-{bits}-x.npy"
            np.save(xs, random_windows(desc, 40, seed=4))
            made[(model, bits)] = (run, xs)
        return made[(model, bits)]

    return get


def _hls(*args: str) -> int:
    return main(["hls", *map(str, args)])


@pytest.mark.slow
@pytest.mark.parametrize("bits", BITS, ids=[f"{b}bit" for b in BITS])
@pytest.mark.parametrize("model", list(MODELS), ids=list(MODELS))
def test_project_per_target_compiles_and_simulates(qruns, hls_cache, tmp_path, model, bits, capsys):
    run, xs = qruns(model, bits)
    desc, _ = description.load(run)
    keys = set()
    for name, target in TARGETS.items():
        out = tmp_path / name
        assert _hls(run, "--target", name, "--out", out, "--tb-inputs", xs, "--tb-count", 25, "--csim") == 0
        meta = json.loads((out / METADATA).read_text())
        assert meta["target"]["part"] == target.part and meta["target"]["clock_ns"] == target.clock_ns
        tcl = (out / "project.tcl").read_text()
        assert f'set part "{target.part}"' in tcl
        assert float(re.search(r"set clock_period (\S+)", tcl).group(1)) == target.clock_ns
        assert "create_clock -period $clock_period" in (out / "build_prj.tcl").read_text()
        check_project_types(out, desc)
        x_tb = np.loadtxt(out / TB_INPUTS, ndmin=2)
        y_tb = np.loadtxt(out / TB_OUTPUTS, ndmin=2)
        assert x_tb.shape == (25, 5) and y_tb.shape == (25, 2)
        # tb inputs lie on the input grid and are exact float32; expected outputs are the C sim's
        np.testing.assert_array_equal(desc.quantization.input.quantize(x_tb), x_tb)
        np.testing.assert_array_equal(x_tb.astype(np.float32).astype(np.float64), x_tb)
        np.testing.assert_array_equal(desc.quantization.dense.result.quantize(y_tb), y_tb)
        pred = np.load(out / "csim_predictions.npy")
        assert pred.shape == (40, 2) and np.all(np.isfinite(pred))
        assert np.unique(pred.round(12), axis=0).shape[0] > 1  # not a constant output
        keys.add(meta["csim"]["cache_key"])
        # estimate.json: this model's ESTIMATES for the report, at this target and clock too
        est = read_estimates(out)
        assert est.model_fingerprint == desc.fingerprint()
        own = est.at(name, target.clock_mhz)
        assert own is not None and own.rf1.part == target.part and own.rf1.config.reuse_factor == 1
        assert len(own.candidates) == 2 * len(meta["valid_reuse_factors"])
    assert len(keys) == 1  # one compiled C simulation served every target
    entries = [p for p in (hls_cache / "csim").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) >= 1


@pytest.mark.slow
def test_stream_io_resource_strategy_and_vitis(qruns, tmp_path):
    """The other implementation options generate, compile and give the same numbers."""
    run, xs = qruns("lstm-lstm", 16)
    base = tmp_path / "base"
    assert _hls(run, "--target", "ku060", "--out", base, "--tb-inputs", xs, "--csim") == 0
    ref = np.load(base / "csim_predictions.npy")
    for name, extra in {
        "stream": ["--io", "stream"],
        "resource": ["--strategy", "resource", "--reuse", "2"],
        "vitis": ["--backend", "vitis"],
    }.items():
        out = tmp_path / name
        assert _hls(run, "--target", "ku060", "--out", out, "--tb-inputs", xs, "--csim", *extra) == 0, name
        np.testing.assert_array_equal(np.load(out / "csim_predictions.npy"), ref, err_msg=name)
        meta = json.loads((out / METADATA).read_text())
        assert meta["csim"]["cache_key"] != json.loads((base / METADATA).read_text())["csim"]["cache_key"]
        if name == "stream":  # firmware_sim models io_parallel; the comparison says what it simulated
            assert meta["csim"]["quantized_simulated_with"].endswith("io_parallel (the project is io_stream)")
    # hls4ml's trace works through streams too and sees the same layer outputs (cache hits)
    desc, w = description.load(run)
    x = np.load(xs)[:6]
    ref = build_csim(desc, w).trace(x)
    streamed = build_csim(desc, w, HlsConfig(io_type="io_stream")).trace(x)
    assert set(streamed) == set(ref) == {"rnn0", "rnn1", "head"}
    for name in ref:
        np.testing.assert_array_equal(streamed[name], ref[name], err_msg=name)


@pytest.mark.slow
def test_pipeline_heldout_windows_and_vivado_style_testbench(tmp_path, hls_cache):
    """train -> quantize (16 bits) -> hls --csim on the held-out split; then the project's own
    test bench, compiled with g++ as Vivado's csim_design would, reproduces tb_output_predictions."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "train:\n  history: 6\n  horizon: 2\n"
        "  data: {source: sine, sine_samples: 800, sine_t_max: 16.0, test_fraction: 0.3, val_fraction: 0.15}\n"
        "  model: {cell: lstm, layers: [5], dropout: 0.0}\n"
        "  training: {epochs: 2, batch_size: 64, lr: 0.01, lr_schedule: cosine, patience: 5, seed: 0}\n"
    )
    run, qrun, prj = tmp_path / "run", tmp_path / "qrun", tmp_path / "prj"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--no-progress", "--threads", "1"]) == 0
    assert main(["quantize", str(run), "--out", str(qrun), "--bits", "16", "--no-progress"]) == 0
    assert (
        _hls(qrun, "--target", "zynq7045", "--out", prj, "--csim", "--csim-windows", 100, "--tb-count", 30)
        == 0
    )
    meta = json.loads((prj / METADATA).read_text())
    assert meta["testbench"]["source"].startswith("test split of")
    c = meta["csim"]
    assert c["windows"] == 100 < c["of_windows"] and c["rmse"] > 0
    assert np.load(prj / "csim_predictions.npy").shape == (100, 2)
    # the criterion: C-sim RMSE within 5 % of the quantized model's, on the same windows
    assert abs(c["rmse_ratio_to_quantized"] - 1.0) < 0.05
    x = np.loadtxt(prj / TB_INPUTS, ndmin=2)
    assert x.shape == (30, 6)

    proc = subprocess.run(
        [
            "g++",
            "-O1",
            "-std=c++14",
            "-Ifirmware/ap_types",
            "-Ifirmware",
            '-DWEIGHTS_DIR="firmware/weights"',  # Vivado copies them next to its csim build
            "qlstm_test.cpp",
            "firmware/qlstm.cpp",
            "-o",
            "tb",
        ],
        cwd=prj,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_tb = subprocess.run(["./tb"], cwd=prj, capture_output=True, text=True)
    assert run_tb.returncode == 0, run_tb.stderr[-3000:]
    got = (prj / "tb_data" / "csim_results.log").read_text().split()
    expected = np.loadtxt(prj / TB_OUTPUTS, ndmin=2)
    # the test bench prints float(result) with C++'s default 6 significant digits (%g)
    assert got == [format(float(np.float32(v)), "g") for v in expected.ravel()]


# ====================================================================== bad input
def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture()
def small_run(tmp_path):
    desc, w = random_model(("lstm",), (4,), history=4, horizon=1, bits=8)
    run = tmp_path / "qrun"
    description.save(run, desc, w)
    xs = tmp_path / "x.npy"
    np.save(xs, random_windows(desc, 5))
    return run, xs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "virtex2"], "unknown target 'virtex2'; choose one of zynq7020"),
        (["--part", "zynq-7020", "--resources", "1,2,3,4"], "malformed part string 'zynq-7020'"),
        (["--part", "xc7a100tcsg324-1"], "--part needs --resources"),
        (["--part", "xc7a100tcsg324-1", "--resources", "1,2,x,4"], "expected four integers"),
        (["--target", "ku060", "--resources", "1,2,3,4"], "--resources is only for --part"),
        (["--clock-ns", "0"], "--clock-ns must be > 0"),
        (["--clock-ns", "-5"], "--clock-ns must be > 0"),
        (["--clock-ns", "nan"], "--clock-ns must be > 0"),
        (["--reuse", "3"], "reuse factor 3 does not fit .* valid values for this model: 1, 2, 4$"),
        (["--reuse", "0"], "reuse factor must be an integer >= 1"),
        (["--tb-count", "0"], "--tb-count must be an integer >= 1"),
        (["--csim", "--csim-windows", "0"], "--csim-windows must be an integer >= 1"),
    ],
    ids=[
        "unknown-target",
        "malformed-part",
        "part-without-resources",
        "bad-resources",
        "resources-with-target",
        "clock-zero",
        "clock-negative",
        "clock-nan",
        "reuse-invalid",
        "reuse-zero",
        "tb-count-zero",
        "csim-windows-zero",
    ],
)
def test_bad_options_one_line_no_output(small_run, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    run, xs = small_run
    out = tmp_path / "prj"
    assert _hls(run, "--out", out, "--tb-inputs", xs, *args) == 2
    assert re.search(message, _error_line(capsys))
    assert not out.exists()
    assert not (tmp_path / "cache").exists()  # refused before any compile


def test_output_folder_holding_something_else(small_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    run, xs = small_run
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    assert _hls(run, "--out", out, "--tb-inputs", xs) == 2
    assert "not empty" in _error_line(capsys)
    assert _hls(run, "--out", out, "--tb-inputs", xs, "--overwrite") == 2
    assert "holds something other than a qlstm hls project" in _error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("what", ["missing", "corrupt", "shape"], ids=["missing", "corrupt", "wrong-shape"])
def test_bad_tb_inputs(small_run, tmp_path, monkeypatch, capsys, what):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    run, _ = small_run
    xs = tmp_path / "bad.npy"
    if what == "corrupt":
        xs.write_bytes(b"\x93NUMPY garbage")
    elif what == "shape":
        np.save(xs, np.zeros((3, 5, 1)))
    assert _hls(run, "--out", tmp_path / "prj", "--tb-inputs", xs) == 2
    assert "--tb-inputs" in _error_line(capsys)
    assert not (tmp_path / "prj").exists()


def test_float_run_and_missing_heldout_are_refused(small_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    run, _ = small_run
    desc, w = description.load(run)
    float_run = tmp_path / "float"
    description.save(float_run, desc.with_quantization(None), w)
    assert _hls(float_run, "--out", tmp_path / "p1") == 2
    assert "not a quantized run" in _error_line(capsys)
    assert _hls(run, "--out", tmp_path / "p2") == 2  # no parent.json, no --tb-inputs
    assert "pass --tb-inputs" in _error_line(capsys)


def test_missing_gxx_one_line_exit_3(small_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(csim_mod.shutil, "which", lambda name: None)
    run, xs = small_run
    assert _hls(run, "--out", tmp_path / "prj", "--tb-inputs", xs) == 3
    assert "g++ not found" in _error_line(capsys)
    assert not (tmp_path / "prj").exists()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["hls", "--help"])
    text = capsys.readouterr().out
    for opt in (
        "--target",
        "--part",
        "--resources",
        "--clock-ns",
        "--reuse",
        "--strategy",
        "--backend",
        "--io",
        "--out",
        "--tb-inputs",
        "--tb-count",
        "--csim",
        "--csim-windows",
        "--overwrite",
        "--static",
    ):
        assert opt in text
