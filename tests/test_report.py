"""The run report: every section present, figures consistent with the runs' metrics.json,
a self-contained HTML, bad input refused with one line and nothing written."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from qlstm import description
from qlstm import runs as run_files
from qlstm.cli import main
from qlstm.description import DenseQuant, Quantization, RecurrentQuant, TableSpec
from qlstm.fixedpoint import FixedType

SECTIONS = (
    "## Data",
    "## Accuracy: float vs PTQ vs QAT vs firmware",
    "## Predicted vs true before a quench",
    "## Latency and resources per target (ESTIMATES)",
    "## Comparison with the paper (Table 6) and with the hls4ml RNN results",
    "## Bit-exactness: firmware_sim vs the hls4ml C simulation",
)


def fake_quantized_run(float_run: Path, out: Path, bits: int, method: str, rmse: list[float]) -> Path:
    """A quantized run folder as quantize/ writes it: weights on their grids, parent.json,
    metrics.json through qlstm.runs (the report only reads these files)."""
    desc, weights = description.load(float_run)
    w = FixedType(bits, 2, rounding="AP_RND", overflow="AP_SAT")
    acc = FixedType(min(2 * bits, 32), 8)
    layers = tuple(
        RecurrentQuant(w, w, w, w, acc, FixedType(bits, 2), TableSpec(1024, FixedType(bits, 1, False)))
        for _ in desc.architecture.layers
    )
    q = Quantization(FixedType(bits, 1), layers, DenseQuant(w, w, acc, FixedType(bits, 2)), method, bits)
    description.save(out, desc.with_quantization(q), {k: w.quantize(v) for k, v in weights.items()})
    run_files.write_parent(out, float_run, desc.fingerprint())
    test = run_files.Metrics(
        float(np.sqrt(np.mean(np.square(rmse)))), tuple(rmse), 0.0, (0.0,) * len(rmse), 0.0, 0.0, 10
    )
    run_files.write_json(out / "metrics.json", {"method": method, "bits": bits, "test": test.to_dict(),
                                           "float_test": test.to_dict(), "eval_backend": "firmware"})  # fmt: skip
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    data = root / "events.npz"
    assert main(["data", "generate", "--short", "--out", str(data)]) == 0
    cfg = root / "cfg.yaml"
    cfg.write_text(
        "train:\n  history: 4\n  horizon: 2\n  model: {layers: [4]}\n  training: {epochs: 1}\n"
        "  data: {max_train_windows: 2000, max_eval_windows: 500}\n"
    )
    float_run = root / "float"
    args = ["train", "--data", str(data), "--config", str(cfg), "--out", str(float_run), "--no-progress"]
    assert main([*args, "--threads", "1"]) == 0
    qat = fake_quantized_run(float_run, root / "qat8", 8, "qat", [0.011, 0.013])
    ptq = fake_quantized_run(float_run, root / "ptq8", 8, "ptq", [0.021, 0.023])
    sweep = root / "sweep.csv"
    sweep.write_text(
        "method,bits,rmse\nfloat,8,0.01\nptq,8,0.021\nqat,8,0.012\nptq,16,0.0105\nqat,16,0.0101\n"
    )
    return {
        "root": root,
        "float": float_run,
        "qat": qat,
        "ptq": ptq,
        "sweep": sweep,
        "hls": hls_estimates(qat, root),
    }


def hls_estimates(qrun: Path, root: Path) -> Path:
    """An hls project folder holding only the estimate.json that `qlstm hls` writes for ``qrun``
    (zynq7045 at 200 MHz), from the hls step's own writer (tests/test_hls_project.py checks
    `qlstm hls` writes it; tests/test_pipeline.py that `qlstm run`'s report renders it)."""
    from dataclasses import replace

    from qlstm.hls.estimate.summary import write_summary
    from qlstm.hls.targets import get_target

    prj = root / "hls_prj"
    prj.mkdir()
    desc, weights = description.load(qrun)
    write_summary(prj, desc, weights, replace(get_target("zynq7045"), clock_ns=5.0))
    return prj


@pytest.mark.slow  # compiles the hls4ml C simulation for the bit-exactness section
def test_report_sections_and_figures(runs, tmp_path):
    out = tmp_path / "rep"
    rtl_dir, det_dir = fixture_artifacts(tmp_path / "steps", runs["qat"])
    argv = [
        "report",
        str(runs["qat"]),
        "--out",
        str(out),
        "--also",
        str(runs["ptq"]),
        "--sweep",
        str(runs["sweep"]),
        *("--rtl", str(rtl_dir), "--detect", str(det_dir), "--hls", str(runs["hls"])),
    ]
    # the report renders the hls step's estimate.json: it never runs the estimator
    import qlstm.hls.estimate.search as search
    import qlstm.hls.estimate.summary as summary

    def refuse(*a, **k):
        raise AssertionError("the report ran the estimator")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("estimate", "candidates", "search_budget"):
            mp.setattr(search, name, refuse)
        mp.setattr(summary, "summarise", refuse)
        assert main(argv) == 0
    md = (out / "report.md").read_text()
    for s in SECTIONS:
        assert s in md, s
    assert "## RTL (da4ml, Verilator, Yosys)" in md and "47-47 cycles" in md and "section omitted" not in md
    assert "| float model | 100 % (4/4) |" in md and (out / "figures" / "detect_roc.png").is_file()
    assert json.loads((out / "summary.json").read_text())["rtl"]["lut"] == 1234
    # figures consistent with metrics.json: the float run's RMSE per step and the quantized runs'
    fm = json.loads((runs["float"] / "metrics.json").read_text())
    for key, name in (("model", "float"), ("persistence", "persistence"), ("linear_ar", "linear AR")):
        vals = fm["test"][key]["rmse_per_step"]
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2:4] == [f"{v:.4g}" for v in vals]
        assert cells[1] == f"{np.sqrt(np.mean(np.square(vals))):.4g}" == f"{fm['test'][key]['rmse']:.4g}"
    assert re.search(r"\| QAT 8-bit \| [^|]+ \| 0\.011 \| 0\.013 \|", md)
    assert re.search(r"\| PTQ 8-bit \| [^|]+ \| 0\.021 \| 0\.023 \|", md)
    assert "| ptq | 0.021 | 0.0105 |" in md  # the sweep table, bits 8 and 16
    # paper Table 6 rows and the estimate labels
    for label in (
        "932 us",
        "82.7 us",
        "15.96 us",
        "1.5-1.7 us",
        "### Latency targets",
        "<= 2.5 us",
        "<= 1 us",
    ):
        assert label in md
    lat = md.split("## Latency and resources")[1].split("## Comparison")[0]
    assert "ESTIMATE" in lat
    # the estimate section's figures are estimate.json's: RF 1 and the fastest fitting candidate
    est = run_files.read_estimates(runs["hls"])
    te = est.at("zynq7045", 200.0)
    fastest = min((e for e in te.candidates if e.fits and e.synthesisable), key=lambda e: e.latency_us)
    row = next(line for line in lat.splitlines() if line.startswith("| zynq7045 @ 200 MHz |"))
    assert f"| {te.rf1.latency_us:.3f} us, {100 * te.rf1.peak_utilisation:.0f} % peak |" in row
    assert (
        f"| {fastest.latency_us:.3f} us (RF {fastest.config.reuse_factor}, {fastest.config.strategy}) |"
        in row
    )
    assert f"{fastest.usage['dsp']:,} / {fastest.usage['lut']:,}" in row
    assert f"Our estimator gives {est.khoda.latency_us:.3f} us ({est.khoda.latency_cycles} cycles)" in md
    summary = json.loads((out / "summary.json").read_text())
    z = next(r for r in summary["latency"] if r["target"] == "zynq7045" and r["clock_mhz"] == 200.0)
    assert z["rf1"] == te.rf1.raw and z["fastest_fitting"] == fastest.raw
    # the same verdict as the estimator's own budget search on the model
    from qlstm.hls.estimate import search_budget
    from qlstm.hls.targets import get_target

    desc, weights = description.load(runs["qat"])
    ref = search_budget(desc, get_target("zynq7045"), 5.0, 1.0, weights)
    assert z["verdict"] == ref.verdict
    assert (z["chosen"] is None) == (ref.chosen is None)
    if ref.chosen is not None:
        assert z["chosen"] == ref.chosen.to_dict()
    assert summary["rmse_per_step"]["QAT 8-bit"] == [0.011, 0.013]
    assert summary["rmse"]["float"] == fm["test"]["model"]["rmse"]  # as metrics.json states it
    for fig in re.findall(r"\(figures/([\w.]+)\)", md):
        assert (out / "figures" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_html_is_self_contained(runs, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(runs["qat"]), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(imgs) >= 2
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in imgs)
    assert "src='figures" not in html and "<script" not in html
    assert html.count("section omitted") == 2  # no rtl/ or detect/ folder given: omitted with a note
    # no hls project given: the estimate sections say so in one line each and name the command
    assert html.count("Not available: no hls project was given.") == 2 and "qlstm hls " in html
    assert "does not run the estimator" in html and "Latency targets" not in html
    # no firmware folder given: no quench figure, and the report did not run the backends
    assert "Not available: no trace_predictions.npz" in html and "trace_quench" not in html
    for s in SECTIONS:
        assert s.removeprefix("## ").split(" (")[0] in html


def test_report_refuses_float_run(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(runs["float"]), "--out", str(out)]) == 2
    assert "not a quantized run" in capsys.readouterr().err
    assert not out.exists()


def test_report_refuses_missing_parent(runs, tmp_path, capsys):
    q = tmp_path / "q"
    desc, w = description.load(runs["qat"])
    description.save(q, desc, w)
    assert main(["report", str(q), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "parent.json: not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_report_refuses_existing_folder(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["report", str(runs["qat"]), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "x"


def test_bad_sweep_csv(runs, tmp_path, capsys):
    bad = tmp_path / "sweep.csv"
    bad.write_text("foo,bar\n1,2\n")
    assert main(["report", str(runs["qat"]), "--out", str(tmp_path / "r"), "--sweep", str(bad)]) == 2
    assert "no bits/width column" in capsys.readouterr().err


def test_estimate_cli(runs, tmp_path, capsys):
    js = tmp_path / "e.json"
    argv = [
        "report",
        "estimate",
        str(runs["qat"]),
        "--target",
        "zynq7045",
        "--clock-ns",
        "5",
        "--json",
        str(js),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "estimated latency" in text and "ESTIMATE" in text
    d = json.loads(js.read_text())
    assert d["kind"] == "estimate" and d["clock_ns"] == 5.0
    assert main([*argv[:-2], "--budget-us", "0.001"]) == 0
    assert "NO configuration meets 0.001 us" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "match"),
    [(["--target", "virtex9"], "unknown target"), (["--part", "xc7a35tcsg324-1"], "--part needs --resources"),
     (["--target", "zynq7020", "--reuse", "7"], "reuse factor 7 does not fit"),
     (["--target", "zynq7020", "--clock-ns", "-1"], "must be > 0")],
    ids=["target", "part-capacity", "reuse", "clock"],
)  # fmt: skip
def test_estimate_cli_bad_input(runs, capsys, extra, match):
    assert main(["report", "estimate", str(runs["qat"]), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_compare_outputs_counts_lsb():
    a = np.array([[0.5, 0.25], [0.125, 0.0]])
    b = a.copy()
    b[1, 1] = 2 * 2.0**-6
    r = run_files.compare(a, b, 2.0**-6)
    assert r.to_dict() == {
        "windows": 2,
        "outputs": 4,
        "equal": 3,
        "max_diff_lsb": 2.0,
        "bit_exact": False,
    }


RTL_JSON = {
    "format": "qlstm-rtl/1", "target": "zynq7045", "part": "xc7z045ffg900-2", "clock_ns": 5.0,
    "pipeline": 8.0, "stages_per_step": 11, "cycles_by_construction": 47, "cycles_per_step": 11,
    "cycles_min": 47, "cycles_max": 47, "ii": 48, "latency_us": 0.235, "bit_exact": True, "windows": 20,
    "mismatches": 0, "sim_seconds": {"build": 8.0, "run": 0.1}, "lut": 1234, "ff": 567, "dsp": 2, "bram18": 4,
    "carry": 89, "logic_depth": 17, "resources_source": "after Yosys 0.70 synth_xilinx -family xc7, not placed",
    "capacity": {"lut": 218600, "ff": 437200, "dsp": 900, "bram_18k": 1090},
    "utilisation": {"lut": 0.0056, "ff": 0.0013, "dsp": 0.0022, "bram18": 0.0037}, "fits": True,
    "synth_seconds": 30.0, "windows_source": "--inputs X.npy (20 windows)",
}  # fmt: skip


def _scores(rate, fa, lead, auc):
    return {"detection_rate": rate, "false_alarms_per_day": fa, "median_lead_time_s": lead, "precursors": 4,
            "detected": round(4 * rate), "auc": auc, "threshold": 0.5}  # fmt: skip


def fixture_artifacts(root: Path, qrun: Path) -> tuple[Path, Path]:
    """An rtl folder (of quantized run ``qrun``: its fingerprint and weights hash) and a detect
    folder as the rtl and detect steps write them (hand-made)."""
    from qlstm.io import weights_sha256

    rtl, det = root / "rtl", root / "detect"
    rtl.mkdir(parents=True)
    det.mkdir(parents=True)
    desc, weights = description.load(qrun)
    model = {"model_fingerprint": desc.fingerprint(), "weights_sha256": weights_sha256(weights)}
    (rtl / "rtl.json").write_text(json.dumps({**RTL_JSON, **model}))
    d = {"format": "qlstm-detection/1", "backend": "firmware", "labelled": True, "target_false_alarms_per_day": 1.0,
         "evaluation_events": ["e3", "e4", "e5"], **_scores(0.75, 0.8, 123.4, 0.91),
         "float": _scores(1.0, 0.5, 150.0, 0.95),
         "baselines": {"persistence": _scores(0.5, 1.0, 60.0, 0.7), "voltage_threshold": _scores(0.25, 0.9, 5.0, 0.6)}}  # fmt: skip
    (det / "detection.json").write_text(json.dumps(d))
    from matplotlib import pyplot as plt

    for name in ("roc", "timelines"):
        fig = plt.figure(figsize=(1, 1))
        fig.savefig(det / f"{name}.png")
        plt.close(fig)
    return rtl, det


def test_rtl_and_detection_sections_from_artifacts(runs, tmp_path):
    """The report renders the rtl and detect steps' files (read through qlstm.runs), every RTL
    figure labelled measured / synthesised not placed / assumed, beside the hls4ml estimate."""
    from qlstm.report.evidence import load_inputs
    from qlstm.report.render import Figure, Table, to_markdown
    from qlstm.report.sections import section_detection, section_rtl

    rtl_dir, det_dir = fixture_artifacts(tmp_path, runs["qat"])
    rtl = run_files.read_rtl(rtl_dir)
    assert (rtl.cycles_max, rtl.lut, rtl.logic_depth, rtl.synth_family, rtl.fits) == (
        47,
        1234,
        17,
        "xc7",
        True,
    )
    inp = load_inputs(runs["qat"])
    inp.hls_dir, inp.estimates = runs["hls"], run_files.read_estimates(runs["hls"])
    blocks = section_rtl(inp, rtl, budget_us=0.2)
    md = to_markdown(blocks)
    assert "MEASURED in RTL simulation" in md and "NOT placed" in md and "ASSUMED clock" in md
    assert "on 20 windows (--inputs X.npy (20 windows))" in md and "held-out" not in md  # what was simulated
    assert "47-47 cycles = 0.235 us" in md and "**bit-exact**" in md and "**MISSED**" in md  # 0.235 > 0.2
    assert "logic depth" in md.lower() and "17 cells" in md
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.rows[0][1] == "1,234 of 218,600 (0.6 %)"
    assert table.rows[1][0].startswith("hls4ml: ESTIMATE") and "estimate" in table.rows[1][5]
    rf1 = inp.estimates.at("zynq7045", 200.0).rf1  # the rtl's target and clock, from estimate.json
    assert table.rows[1][1:] == (
        f"{rf1.usage['lut']:,}", f"{rf1.usage['ff']:,}", f"{rf1.usage['dsp']:,}", f"{rf1.usage['bram_18k']}",
        f"{rf1.latency_us:.3f} us (estimate)",
    )  # fmt: skip

    det = run_files.read_detection(det_dir)
    blocks = section_detection(det)
    md = to_markdown(blocks)
    assert "| deployed model (firmware backend, quantized) | 75 % (3/4) | 0.80 | 123.4 | 0.910 |" in md
    assert "| float model | 100 % (4/4) | 0.50 | 150.0 | 0.950 |" in md
    assert "| voltage_threshold | 25 % (1/4) | 0.90 | 5.0 | 0.600 |" in md
    assert sorted(b.name for b in blocks if isinstance(b, Figure)) == [
        "detect_roc.png",
        "detect_timelines.png",
    ]


@pytest.mark.parametrize(
    ("own", "report", "want", "not_want"),
    [
        (0.6, 1.0, ["RTL budget 0.6 us", "cutoff 8 among 2 tried): **met**", "its own budget, 1 us (report.budget_us / qlstm report --budget-us), not this one"], ["Budget 1 us"]),
        (0.2, 1.0, ["RTL budget 0.2 us", "**MISSED**", "not this one"], ["**met**"]),
        (0.6, 0.6, ["RTL budget 0.6 us", "**met**", "use the same budget (report.budget_us"], ["not this one"]),
        (None, 1.0, ["no budget of its own", "report's budget, 1 us (report.budget_us / qlstm report --budget-us): **met**"], ["RTL budget"]),
    ],
    ids=["own-met", "own-missed", "same-budget", "no-own-budget"],
)  # fmt: skip
def test_rtl_section_states_the_rtls_own_budget_verdict(runs, tmp_path, own, report, want, not_want):
    """rtl.json's own budget (rtl.budget_us / qlstm rtl --budget-us) and its budget_met are what
    the RTL section states, with the budget the report's verdicts use (a new user's trial: "Budget
    1 us: met" under an RTL built for 0.6 us). Latency 0.235 us (measured) in the fixture."""
    from qlstm.report.evidence import load_inputs
    from qlstm.report.render import to_markdown
    from qlstm.report.sections import section_rtl

    rtl_dir, _ = fixture_artifacts(tmp_path, runs["qat"])
    m = json.loads((rtl_dir / "rtl.json").read_text())
    if own is not None:  # as rtl.api.RtlResult.summary writes them
        m.update(budget_us=own, budget_met=m["latency_us"] <= own, budget_source="measured cycles (cycles_max) x assumed clock",
                 candidates=[{"cutoff": 4.0, "chosen": False}, {"cutoff": 8.0, "chosen": True}])  # fmt: skip
    (rtl_dir / "rtl.json").write_text(json.dumps(m))
    rtl = run_files.read_rtl(rtl_dir)
    assert (rtl.budget_us, rtl.budget_met) == (own, None if own is None else own >= 0.235)
    md = to_markdown(section_rtl(load_inputs(runs["qat"]), rtl, budget_us=report))
    for text in want:
        assert text in md, (text, md)
    for text in not_want:
        assert text not in md, (text, md)


def test_report_without_rtl_and_detection_omits_them_with_a_note(runs):
    from qlstm.report.evidence import load_inputs
    from qlstm.report.render import to_markdown
    from qlstm.report.sections import section_detection, section_rtl

    md = to_markdown(section_rtl(load_inputs(runs["qat"]), None, 1.0) + section_detection(None))
    assert md.count("section omitted") == 2 and "rtl/rtl.json" in md and "detect/detection.json" in md


def test_estimates_of_an_older_project_or_another_model(runs, tmp_path, capsys):
    """An hls project without estimate.json (older qlstm) is named in one line with the command
    that writes it; an estimate.json of another model is refused; a corrupt one too."""
    from qlstm.report.evidence import load_inputs
    from qlstm.report.render import to_markdown
    from qlstm.report.sections import section_comparison, section_latency

    old = tmp_path / "old_prj"
    old.mkdir()
    inp = load_inputs(runs["qat"])
    inp.hls_dir = old
    blocks, records = section_latency(inp, 1.0)
    md = to_markdown(blocks + section_comparison(inp, records))
    assert records == [] and md.count(f"Not available: no estimate.json in {old}") == 2
    assert f"`qlstm hls {runs['qat']} --target zynq7045 --out PRJ` writes it" in md
    out = tmp_path / "rep"
    assert main(["report", str(runs["ptq"]), "--out", str(out), "--hls", str(runs["hls"])]) == 2
    err = capsys.readouterr().err
    assert "estimates of another model" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    (old / "estimate.json").write_text('{"format": "qlstm-estimate/1", "targets": []}')
    assert main(["report", str(runs["qat"]), "--out", str(out), "--hls", str(old)]) == 2
    err = capsys.readouterr().err
    assert "estimate.json: missing or bad field" in err and len(err.strip().splitlines()) == 1


def test_report_refuses_the_rtl_of_another_model(runs, tmp_path, capsys):
    """An RTL folder names its model (rtl.json's fingerprint and weights hash; an older rtl.json
    its model/ folder): the report of another quantized run refuses it in one line, writes nothing
    (a new user's trial of issue #16 got "RTL of this quantized model ... bit-exact" for a GRU's RTL)."""
    rtl_dir, _ = fixture_artifacts(tmp_path / "steps", runs["qat"])
    out = tmp_path / "rep"
    for folder in (rtl_dir, _older_rtl_folder(tmp_path / "old", runs["qat"])):
        assert main(["report", str(runs["ptq"]), "--out", str(out), "--rtl", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert "RTL of another model than" in err and len(err.splitlines()) == 1 and not out.exists()
    bare = tmp_path / "bare"  # neither: cannot tell
    bare.mkdir()
    (bare / "rtl.json").write_text(json.dumps(RTL_JSON))
    assert main(["report", str(runs["qat"]), "--out", str(out), "--rtl", str(bare)]) == 2
    assert "names no model" in capsys.readouterr().err and not out.exists()
    inp_rtl = run_files.read_rtl(_older_rtl_folder(tmp_path / "old2", runs["qat"]))
    run_files.check_rtl_model(inp_rtl, *description.load(runs["qat"]), runs["qat"])  # its own model: accepted


def _older_rtl_folder(root: Path, qrun: Path) -> Path:
    """An rtl.json without the model fields (before 2026-12-01) beside the model/ it implements."""
    root.mkdir(parents=True)
    (root / "rtl.json").write_text(json.dumps(RTL_JSON))
    description.save(root / "model", *description.load(qrun))
    return root


@pytest.mark.parametrize("name", ["rtl.json", "detection.json"])
def test_rtl_and_detection_readers_refuse_bad_files(tmp_path, name):
    from qlstm.errors import QlstmError

    read = run_files.read_rtl if name == "rtl.json" else run_files.read_detection
    with pytest.raises(QlstmError, match="not found"):
        read(tmp_path)
    (tmp_path / name).write_text("{not json")
    with pytest.raises(QlstmError, match="not valid JSON"):
        read(tmp_path)
    (tmp_path / name).write_text('{"format": "other"}')
    with pytest.raises(QlstmError, match="not a qlstm"):
        read(tmp_path)
