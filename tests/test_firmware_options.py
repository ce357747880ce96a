"""Project options that reach the generated C++ (issue #14, fault 6, case B9): firmware_sim models
each one exactly or refuses it in one line; the csim backend compiles the project's own options.
Oracle: the hls4ml C simulation compiled with that option; exact equality of the outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from qlstm.cli import main
from qlstm.description import save
from qlstm.errors import QlstmError
from qlstm.firmware_sim.kernels import summation_order
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import FixedType
from qlstm.hls_config import HlsConfig
from qlstm.testing import random_model, uniform_quantization

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the C simulation needs g++")


pytestmark = pytest.mark.usefixtures("module_csim_cache")  # a private compile cache (conftest)


def _saturating_model(rounded: bool):
    """LSTM(4) -> GRU(4) -> Dense(2) whose saturating accumulators' partial sums leave the range,
    so the order of the sums shows; ``rounded``: products are also rounded one by one."""
    acc = (
        FixedType(9, 2, True, "AP_RND_CONV", "AP_SAT")
        if rounded
        else FixedType(14, 2, True, "AP_TRN", "AP_SAT")
    )
    q = uniform_quantization(2, width=8, integer=2, accum=acc)
    desc, w = random_model(
        ("lstm", "gru"), (4, 4), history=5, horizon=2, quantization=q, init="uniform", scale=1.9, seed=4
    )
    x = np.random.default_rng(5).uniform(-1.9, 1.9, size=(400, 5, 1))
    return desc, w, x


def test_summation_order_of_the_resource_kernels():
    assert summation_order("p", 4, "latency", 2) is None
    assert summation_order("p", 4, "resource", 1) is None
    assert summation_order("p", 4, "resource", 2).tolist() == [0, 2, 1, 3]  # rf_leq_nin
    assert summation_order("p", 6, "resource", 3).tolist() == [0, 3, 1, 4, 2, 5]
    assert summation_order("p", 4, "resource", 8) is None  # rf_gt_nin_rem0: input order
    with pytest.raises(QlstmError, match="rf_gt_nin"):
        summation_order("p", 4, "resource", 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"io_type": "io_stream"}, "io_parallel only"),
        ({"backend": "Quartus"}, "unknown backend"),
        ({"reuse_factor": 0}, "reuse factor"),
        ({"strategy": "resource", "reuse_factor": 3}, "does not divide"),
    ],
)
def test_unmodelled_options_are_refused_in_one_line(kwargs, message):
    desc, w, _ = _saturating_model(False)
    with pytest.raises(QlstmError, match=message) as exc:
        Firmware(desc, w, HlsConfig(**kwargs))
    assert "\n" not in str(exc.value)


@pytest.mark.slow
@needs_gxx
@pytest.mark.parametrize("rounded", [False, True], ids=["exact-products", "rounded-products"])
@pytest.mark.parametrize(
    "opts",
    [
        {"strategy": "resource", "reuse_factor": 2},
        {"strategy": "resource", "reuse_factor": 4},
        {"strategy": "latency", "reuse_factor": 2},
        {"strategy": "resource", "reuse_factor": 2, "static": False},
        {"strategy": "resource", "reuse_factor": 2, "backend": "Vitis"},
    ],
    ids=["resource-2", "resource-4", "latency-2", "resource-2-nonstatic", "resource-2-vitis"],
)
def test_each_option_is_bit_exact_with_its_c_simulation(opts, rounded):
    from qlstm.hls.csim import build_csim

    desc, w, x = _saturating_model(rounded)
    cs = build_csim(desc, w, HlsConfig(**opts)).predict(x)
    fw = Firmware(desc, w, HlsConfig(**opts))
    assert_array_equal(fw.predict(x), cs)
    assert_array_equal(fw.run(x, trace=True, record=True).y, cs)  # traced path too
    if opts == {"strategy": "resource", "reuse_factor": 2}:
        # the option matters here: the latency firmware computes something else
        assert np.any(Firmware(desc, w).predict(x) != cs)


@pytest.mark.slow
@needs_gxx
def test_predict_and_check_use_the_projects_options(tmp_path, capsys):
    from qlstm.hls.csim import build_csim
    from qlstm.hls.project import generate
    from qlstm.hls.targets import get_target

    desc, w, x = _saturating_model(False)
    save(tmp_path / "qrun", desc, w)
    np.save(tmp_path / "x.npy", x)
    opts = HlsConfig(strategy="resource", reuse_factor=2)
    generate(tmp_path / "qrun", tmp_path / "prj", get_target("zynq7020"), opts, tb_inputs=tmp_path / "x.npy")
    expected = build_csim(desc, w, opts).predict(x)
    assert np.any(build_csim(desc, w).predict(x) != expected)
    for backend in ("csim", "firmware"):
        out = tmp_path / f"{backend}.npy"
        args = ["predict", str(tmp_path / "qrun"), "--backend", backend, "--inputs", str(tmp_path / "x.npy")]
        assert main([*args, "--hls-project", str(tmp_path / "prj"), "--out", str(out)]) == 0
        assert_array_equal(np.load(out), expected)
    # the quantized model does not simulate a project: refused in one line
    args = ["predict", str(tmp_path / "qrun"), "--backend", "quant", "--inputs", str(tmp_path / "x.npy")]
    assert main([*args, "--hls-project", str(tmp_path / "prj")]) != 0
    assert "--hls-project applies to the csim and firmware backends" in capsys.readouterr().err
    # the firmware check simulates the project's options too
    check = ["firmware", "check", str(tmp_path / "qrun"), "--inputs", str(tmp_path / "x.npy")]
    assert main([*check, "--hls-project", str(tmp_path / "prj")]) == 0
    assert "resource, reuse factor 2" in capsys.readouterr().out
    # a project of another model (architecture or types) is refused
    desc2, w2 = random_model(
        ("lstm", "gru"), (6, 4), history=5, horizon=2, quantization=desc.quantization, init="uniform"
    )
    save(tmp_path / "other", desc2, w2)
    other = ["predict", str(tmp_path / "other"), "--backend", "csim", "--inputs", str(tmp_path / "x.npy")]
    assert main([*other, "--hls-project", str(tmp_path / "prj")]) != 0
    assert "generated from another model" in capsys.readouterr().err
    # the same model with other weights (a retrained copy) takes the project's options
    desc3, w3 = random_model(
        ("lstm", "gru"), (4, 4), history=5, horizon=2, quantization=desc.quantization, init="uniform", seed=8
    )
    save(tmp_path / "copy", desc3, w3)
    out = tmp_path / "copy.npy"
    args = ["predict", str(tmp_path / "copy"), "--backend", "csim", "--inputs", str(tmp_path / "x.npy")]
    assert main([*args, "--hls-project", str(tmp_path / "prj"), "--out", str(out)]) == 0
    assert_array_equal(np.load(out), build_csim(desc3, w3, opts).predict(x))


@pytest.mark.slow
@needs_gxx
def test_csim_in_parallel_processes_equals_one_process():
    from qlstm.hls.csim import PARALLEL_MIN, build_csim

    desc, w, _ = _saturating_model(False)
    x = np.random.default_rng(9).uniform(-1.9, 1.9, size=(2 * PARALLEL_MIN + 37, 5, 1))
    cs = build_csim(desc, w)
    assert_array_equal(cs.predict(x, workers=2), cs.predict(x))


@pytest.mark.slow
@needs_gxx
def test_csim_workers_are_capped_at_the_cores_this_process_may_use(monkeypatch, caplog):
    """`qlstm --threads 8` on fewer cores: the C simulation starts no more processes than cores,
    says so in one log line, and the outputs are those of one process."""
    import logging

    import qlstm.hls.csim as csim
    import qlstm.threads

    desc, w, x = _saturating_model(False)
    cs = csim.build_csim(desc, w)
    monkeypatch.setattr(csim, "PARALLEL_MIN", 1)
    monkeypatch.setattr(qlstm.threads, "available_cores", lambda: 1)
    with caplog.at_level(logging.WARNING, logger=csim.__name__):
        y = cs.predict(x[:20], workers=8)
    assert "8 workers requested, capped at the 1 cores" in caplog.text
    assert_array_equal(y, cs.predict(x[:20]))


@pytest.mark.slow
@needs_gxx
def test_hls_csim_compares_with_the_projects_own_options(tmp_path, capsys):
    """`qlstm hls --strategy resource --reuse 2 --csim`: the C simulation is compared with
    firmware_sim of the same options (exact, 0 LSB), not of the default latency/reuse-1 options."""
    import json

    from qlstm.runs import HLS_PROJECT_FILE

    desc, w, x = _saturating_model(False)
    save(tmp_path / "qrun", desc, w)
    np.save(tmp_path / "x.npy", x)
    opts = HlsConfig(strategy="resource", reuse_factor=2)
    # the premise: on these windows the default options give other numbers
    assert np.any(Firmware(desc, w).predict(x) != Firmware(desc, w, opts).predict(x))
    args = ["hls", str(tmp_path / "qrun"), "--target", "zynq7020", "--out", str(tmp_path / "prj")]
    args += ["--tb-inputs", str(tmp_path / "x.npy"), "--strategy", "resource", "--reuse", "2", "--csim"]
    assert main(args) == 0
    out = capsys.readouterr().out
    c = json.loads((tmp_path / "prj" / HLS_PROJECT_FILE).read_text())["csim"]
    assert c["identical_to_quantized"] is True and c["max_abs_diff_to_quantized_lsb"] == 0
    assert c["quantized_simulated_with"] == "firmware_sim, resource strategy, reuse factor 2"
    assert "(firmware_sim, resource strategy, reuse factor 2) on the same windows: identical" in out
    assert_array_equal(np.load(tmp_path / "prj" / "csim_predictions.npy"), Firmware(desc, w, opts).predict(x))


@pytest.mark.parametrize("chunk", [0, -4, 2.5])
def test_chunk_below_one_is_refused_not_turned_into_one(chunk):
    """Firmware.run(chunk=0) used to simulate one window at a time silently."""
    desc, w = random_model(("lstm",), (2,), history=3, horizon=1)
    x = np.zeros((4, 3, 1))
    with pytest.raises(QlstmError, match=f"chunk {chunk!r}: .* integer >= 1"):
        Firmware(desc, w).run(x, chunk=chunk)
    assert Firmware(desc, w).predict(x, chunk=1).shape == (4, 1)
