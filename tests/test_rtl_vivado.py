"""The folder of ``qlstm rtl`` for a Vivado user (issue #16, trial defects 9 and OOC): the
self-checking testbench's vectors (firmware_sim's outputs as raw hex), the testbench itself run in
Verilator (PASS, and FAIL on one corrupted word), and ``build_vivado.tcl``'s out-of-context mode
checked as text (no Vivado here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from rtl_models import policy_model, windows

from qlstm import description
from qlstm.cli import main
from qlstm.firmware_sim.simulate import Firmware


@pytest.fixture
def lstm4(tmp_path):
    """A 4-cell LSTM at 8 bits, saved as a quantized run."""
    desc, weights = policy_model(("lstm",), (4,), 8, history=4, horizon=2)
    description.save(tmp_path / "q", desc, weights)
    return tmp_path / "q", desc, weights


def _words(path) -> list[int]:
    return [int(w, 16) for w in path.read_text().split()]


def _packed(ym: np.ndarray, width: int) -> list[int]:
    """(N, k) signed mantissas -> one integer per window, output 0 in the low bits."""
    mask = (1 << width) - 1
    return [sum((int(v) & mask) << (j * width) for j, v in enumerate(row)) for row in ym]


def test_folder_has_the_vectors_and_an_out_of_context_build_script(lstm4, tmp_path, capsys):
    run, desc, weights = lstm4
    x = windows(desc, 25, seed=3)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "rtl"
    argv = ["rtl", str(run), "--part", "xc7k325tffg900-2", "--clock-ns", "3.3", "--out", str(out),
            "--inputs", str(tmp_path / "x.npy")]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        f"testbench vectors: --inputs {tmp_path / 'x.npy'} (25 windows)" in printed and "assumed" in printed
    )
    q = desc.quantization
    # inputs and expected outputs: exact integers (raw bits of the ap_fixed types), one hex word a line
    assert _words(out / "tb/tb_inputs.hex") == _packed(q.input.to_int(x).reshape(25, -1), q.input.width)
    ref = Firmware(desc, weights).run(x).y_m
    assert _words(out / "tb/tb_expected.hex") == _packed(ref, q.output.width)
    tb = (out / "tb/tb_qlstm.v").read_text()
    assert "y !== y_exp" in tb and "$fatal(1" in tb and "tb: PASS" in tb and "tb: FAIL" in tb
    assert "verilator" not in tb.lower()  # nothing Verilator-only: xsim and Icarus read it too
    assert (out / "tb/run_xsim.sh").stat().st_mode & 0o100
    # build_vivado.tcl: the part, out-of-context synthesis, reports; every file it names exists, and
    # it names every source and ROM of src/
    tcl = (out / "build_vivado.tcl").read_text()
    assert (
        "set part xc7k325tffg900-2" in tcl
        and "synth_design -mode out_of_context -top $top -part $part" in tcl
    )
    assert "set mode ooc\n" in tcl and "set top qlstm_top" in tcl
    for rpt in ("ooc_utilization.rpt", "ooc_timing_summary.rpt"):
        assert f"$here/reports/{rpt}" in tcl
    assert "read_xdc $here/constraints/qlstm.xdc" in tcl
    named = re.findall(r"^\s+(src/\S+) \\$", tcl, re.M)
    assert named and all((out / f).is_file() for f in named)
    on_disk = {f"src/{p.name}" for p in (out / "src").iterdir() if p.suffix in (".v", ".mem")}
    assert set(named) == on_disk and any(f.endswith(".mem") for f in named)
    xdc = (out / "constraints/qlstm.xdc").read_text()
    assert "create_clock -period 3.3 -name clk [get_ports clk]" in xdc


@pytest.mark.slow
@pytest.mark.parametrize("alarm", [None, "instant"])
def test_self_checking_testbench_passes_and_fails_on_one_corrupted_word(lstm4, tmp_path, alarm):
    """The generated testbench, as a Vivado user runs it (no plusargs, from src/), in Verilator;
    with the alarm it also checks score, counter and alarm bit of every window of the stream."""
    from qlstm.rtl import sim

    run, desc, _ = lstm4
    out = tmp_path / "rtl"
    extra = [] if alarm is None else ["--alarm", alarm]
    assert main(["rtl", str(run), "--target", "zynq7045", "--out", str(out), "--windows", "30", *extra]) == 0
    binary = sim.build(out)
    cycles = json.loads((out / "rtl.json").read_text())["cycles_by_construction"]

    def tb():
        return subprocess.run([str(binary)], cwd=out / "src", capture_output=True, text=True, timeout=120)

    r = tb()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"tb: PASS 30 windows, 0 mismatches; cycles start->done {cycles}-{cycles}" in r.stdout
    outs = [ln.split() for ln in (out / "tb/tb_outputs.txt").read_text().splitlines()]
    exp = out / "tb/tb_expected.hex"
    lines = [ln.split() for ln in exp.read_text().splitlines()]
    assert [int(o[0]) for o in outs] == [cycles] * 30
    assert [int(o[1], 16) for o in outs] == [int(e[0], 16) for e in lines]  # y, as written
    if alarm is not None:  # score, counter, alarm as written; scores and counters not all zero
        assert [(int(o[3], 16), int(o[4]), int(o[5])) for o in outs] == [
            (int(e[1], 16), int(e[2], 16), int(e[3])) for e in lines
        ]
        assert any(int(e[1], 16) for e in lines) and any(int(e[2], 16) for e in lines)
    # one flipped bit in one expected word: the check must see it
    bad = [list(e) for e in lines]
    bad[17][-1 if alarm else 0] = f"{int(bad[17][-1 if alarm else 0], 16) ^ 1:x}"
    exp.write_text("".join(" ".join(e) + "\n" for e in bad))
    r = tb()
    assert r.returncode != 0
    assert "tb: window 17:" in r.stdout and "tb: FAIL 30 windows, 1 mismatches" in r.stdout
    # one expected word missing: a failure too, not a shorter pass
    exp.write_text("".join(" ".join(e) + "\n" for e in lines[:-1]))
    r = tb()
    assert r.returncode != 0 and "tb: FAIL 30 windows" in r.stdout


HOLD_LOCK = """
import fcntl, sys, time
fh = open(sys.argv[1], "a")
fcntl.flock(fh, fcntl.LOCK_SH)
print("locked", flush=True)
time.sleep(60)
"""


def test_predict_cache_keeps_the_most_recently_used_builds(tmp_path, monkeypatch):
    """``qlstm predict --backend rtl``'s cache: ``$QLSTM_RTL_CACHE_MAX`` builds, least recently
    used evicted, a cached build reused without building (Verilator's compile is stubbed: this
    tests the cache, test_rtl_tools.py the simulation)."""
    from qlstm.errors import QlstmError
    from qlstm.rtl import backend, sim

    builds = []

    def fake_build(folder, **kw):
        builds.append(folder)
        b = folder / "sim" / "obj_dir" / "Vtb_qlstm"
        b.parent.mkdir(parents=True)
        b.write_text("stub")
        return b

    monkeypatch.setattr(sim, "build", fake_build)
    monkeypatch.setattr(sim, "verilator_env", lambda: None)
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("QLSTM_RTL_CACHE_MAX", "2")
    runs = []
    for seed in range(3):
        desc, weights = policy_model(("gru",), (2,), 6, history=3, horizon=1, seed=seed)
        description.save(tmp_path / f"q{seed}", desc, weights)
        runs.append(tmp_path / f"q{seed}")

    def use(run):
        with backend.compiled(run) as got:
            return got

    a, res, _ = use(runs[0])
    b, _, _ = use(runs[1])
    assert res is not None and len(builds) == 2 and a.is_dir() and b.is_dir()
    again, res, _ = use(runs[0])  # reused: no build, and now the most recently used
    assert again == a and res is None and len(builds) == 2
    c, _, _ = use(runs[2])  # a third build evicts the least recently used (b)
    assert len(builds) == 3 and a.is_dir() and c.is_dir() and not b.exists()
    builds_left = sorted(p.name for p in (tmp_path / "cache" / "rtl").iterdir() if p.is_dir())
    assert builds_left == sorted([a.name, c.name])
    # a build in use in another process (its shared lock held) is not evicted: b is rebuilt, and
    # a, the least recently used (evicted without the lock, as b was above), stays
    held = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(backend._lock_path(a))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert held.stdout.readline().strip() == "locked"
        b2, _, _ = use(runs[1])
        assert b2 == b and len(builds) == 4 and a.is_dir() and b.is_dir() and c.is_dir()
    finally:
        held.kill()
        held.wait()
    a2, res, _ = use(runs[0])  # a is still cached and reused
    assert a2 == a and res is None
    monkeypatch.setenv("QLSTM_RTL_CACHE_MAX", "0")
    with pytest.raises(QlstmError, match="QLSTM_RTL_CACHE_MAX='0': must be an integer >= 1"):
        use(runs[1])
