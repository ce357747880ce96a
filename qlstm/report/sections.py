"""The report's sections: blocks (headings, tables, paragraphs, figures) from the typed inputs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qlstm import runs
from qlstm.hls.estimate.search import choose
from qlstm.hls.estimate.summary import REPORT_TARGETS
from qlstm.report.evidence import Inputs, read_sweep
from qlstm.report.figures import _plot_per_step, _plot_sweep, _plot_trace
from qlstm.report.render import Block, Figure, Heading, Para, Table

log = logging.getLogger(__name__)


#: Wielgosz, Skoczeń, Mertik, NIM A 867 (2017) 40, Table 6: their LSTM (128 cells, L = 16) on FPGA.
PAPER_TABLE6 = (
    ("zynq7020", 142.0, 932.0, "Zynq 7020"),
    ("ku060", 200.0, 82.7, "XCKU060"),
    ("zynq7045", 100.0, 15.96, "XC7Z045"),
)


def estimates_missing(inp: Inputs) -> str:
    """The one line the estimate sections show when the hls step's ``estimate.json`` is absent."""
    where = (
        "no hls project was given"
        if inp.hls_dir is None
        else f"no {runs.ESTIMATE_FILE} in {inp.hls_dir} (a project written before qlstm stored its estimates)"
    )
    return (
        f"Not available: {where}. `qlstm hls {inp.qrun} --target zynq7045 --out PRJ` writes it "
        "(so does the hls step of `qlstm run`); `qlstm report ... --hls PRJ` renders it. The report "
        "does not run the estimator."
    )


def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "n/a" if v is None else format(v, spec)


def section_data(inp: Inputs) -> list[Block]:
    """The data table (source, channels, sampling, events and windows per split) from the float
    run's ``data.json`` and ``windows.npz``."""
    d = inp.data_info
    split = d.get("split", {})
    rows = [
        ("source", str(d.get("source", "?")) + (f" ({d['path']})" if d.get("path") else "")),
        ("sha256", str(d.get("sha256", "n/a"))[:16] + ("..." if d.get("sha256") else "")),
        ("channels", ", ".join(d.get("channels", []))),
        ("sampling", f"{d['dt']:g} s" if "dt" in d else "n/a"),
        ("events train / val / test", " / ".join(str(len(split.get(k, []))) for k in ("train", "val", "test"))),
        ("history L, horizon k", f"{d.get('L')}, {d.get('k')}"),
        ("windows train / val / test", " / ".join(str(d.get("windows", {}).get(k, "?")) for k in ("train", "val", "test"))),
    ]  # fmt: skip
    blocks: list[Block] = [Heading("Data"), Table(("item", "value"), tuple(rows))]
    lengths = inp.heldout.event_lengths["test"]
    if lengths:
        blocks.append(
            Para(
                f"Test events: {len(lengths)}, {min(lengths)}-{max(lengths)} samples each, "
                f"{inp.heldout.quenches} with a quench marker. The synthetic data is modelled on Wielgosz et al. "
                "(2017); it is not CERN data."
            )
        )
    return blocks


def section_accuracy(inp: Inputs) -> tuple[list[Block], dict[str, runs.Metrics]]:
    """Test RMSE over all steps and per step ahead of float, baselines, each quantized run and
    firmware_sim, all as the runs' ``metrics.json`` state them (normalised units; nothing is
    recomputed); the sweep table from its CSV. Returns the blocks and the metrics per row."""
    fm = inp.fmetrics
    models: dict[str, runs.Metrics] = {
        "float": fm.model,
        "persistence": fm.persistence,
        "linear AR": fm.linear_ar,
    }
    for path in [inp.qrun, *inp.others]:
        qm = runs.QuantRun(Path(path)).metrics
        models[f"{qm.method.upper()} {qm.bits}-bit"] = qm.test
    fw_windows = None
    if inp.qmetrics.raw.get("eval_backend") == "firmware":  # quantize measured with firmware_sim
        models[f"firmware_sim {inp.desc.quantization.bits}-bit"] = inp.qmetrics.test
        fw_windows = inp.qmetrics.test.windows
    series = {name: list(m.rmse_per_step) for name, m in models.items()}
    k = inp.desc.architecture.horizon
    header = ("model", "RMSE (all k)", *(f"k={j + 1}" for j in range(min(k, 8))))
    rows = []
    for name, m in models.items():
        rows.append((name, f"{m.rmse:.4g}", *(f"{v:.4g}" for v in m.rmse_per_step[:8])))
    blocks: list[Block] = [
        Heading("Accuracy: float vs PTQ vs QAT vs firmware"),
        Para(
            "Test RMSE in normalised units, per step ahead (first 8 shown), on the held-out events. "
            "Float and baselines from the float run's `metrics.json`, quantized runs from theirs"
            + (
                f"; firmware_sim is the deployed run's own test metrics (quantize evaluates with it) on "
                f"the same {fw_windows:,} test windows. "
                if fw_windows is not None
                else " (the deployed run was evaluated with another backend: no firmware_sim row). "
            )
            + f"Float: {inp.fmetrics.verdict or 'no verdict in metrics.json'}."
        ),
        Table(header, tuple(rows)),
    ]
    if series:
        blocks.append(Figure("rmse_per_step.png", _plot_per_step(series), "Test RMSE per step ahead."))
    if inp.sweep_csv is not None:
        sweep = read_sweep(inp.sweep_csv)
        bits = sorted({r["bits"] for r in sweep})
        methods = sorted({r["method"] for r in sweep})
        table = {(r["method"], r["bits"]): r["rmse"] for r in sweep}
        blocks += [
            Heading("Accuracy per bit width", 3),
            Para(f"From `{inp.sweep_csv}`: test RMSE per bit width."),
            Table(("method", *map(str, bits)), tuple((m, *(_fmt(table.get((m, b)), ".4g") for b in bits)) for m in methods)),
            Figure("rmse_vs_bits.png", _plot_sweep(sweep), "Test RMSE against bit width."),
        ]  # fmt: skip
    else:
        blocks.append(Para("No quantize sweep CSV was found or given (`--sweep`): no per-bit-width table."))
    return blocks, models


def section_trace(inp: Inputs) -> list[Block]:
    """The 1-step-ahead predictions before a quench (the paper's Fig. 11) on the quench trace
    that training stored in ``windows.npz``."""
    blocks: list[Block] = [Heading("Predicted vs true before a quench (cf. the paper's Fig. 11)")]
    tr = inp.heldout.trace
    if tr is None:
        return [*blocks, Para("Not available: no test event has a quench marker (or it comes too early).")]
    if inp.trace_predictions is None:
        return [
            *blocks,
            Para(
                f"Not available: no {runs.TRACE_PREDICTIONS_FILE} (the firmware step of `qlstm run` writes it; "
                "`qlstm report ... --firmware RUN/firmware` renders it). The report does not run the backends."
            ),
        ]
    preds = {name: y[:, 0] for name, y in inp.trace_predictions.items()}
    return [
        *blocks,
        Figure(
            "trace_quench.png",
            _plot_trace(tr.t, tr.truth, preds, 0.0),
            f"Event {tr.event}: the last {len(tr.t)} samples up to the quench, true normalised voltage and "
            "1-step-ahead predictions.",
        ),
    ]


def section_latency(inp: Inputs, budget_us: float) -> tuple[list[Block], list[dict[str, Any]]]:
    """Latency and resources per target (ESTIMATES from the hls step's ``estimate.json``) at
    reuse factor 1 and the fastest fitting configuration, with the budget's verdict per target
    (:func:`qlstm.hls.estimate.search.choose` over the stored candidates; microseconds)."""
    head = Heading("Latency and resources per target (ESTIMATES)")
    est = inp.estimates
    if est is None:
        return [head, Para(estimates_missing(inp))], []
    rows, records = [], []
    for name, mhz in REPORT_TARGETS:
        te = est.at(name, mhz)
        if te is None:
            rows.append((f"{name} @ {mhz:g} MHz", f"n/a (not in {runs.ESTIMATE_FILE})", "n/a", "n/a", "n/a"))
            continue
        full = te.rf1
        res = choose(te.candidates, budget_us, name)
        fit = [e for e in te.candidates if e.fits and e.synthesisable]
        fastest = min(fit, key=lambda e: e.latency_us) if fit else None
        rec = {"target": name, "clock_mhz": mhz, "rf1": full.raw, "verdict": res.verdict,
               "chosen": None if res.chosen is None else res.chosen.raw,
               "fastest_fitting": None if fastest is None else fastest.raw}  # fmt: skip
        records.append(rec)
        f = fastest
        rows.append(
            (
                f"{name} @ {mhz:g} MHz",
                f"{full.latency_us:.3f} us, {100 * full.peak_utilisation:.0f} % peak",
                "none fits"
                if f is None
                else f"{f.latency_us:.3f} us (RF {f.config.reuse_factor}, {f.config.strategy})",
                "n/a"
                if f is None
                else f"{f.usage['dsp']:,} / {f.usage['lut']:,} / {f.usage['ff']:,} / {f.usage['bram_18k']}",
                res.verdict.split(" (estimate)")[0] if res.chosen is None else "meets budget",
            )
        )
    blocks: list[Block] = [
        head,
        Para(
            f"Every figure in this section is an ESTIMATE that the hls step stored in `{est.path}` "
            "(`hls/estimate`, docs/estimator.md: a "
            "model of hls4ml's scheduling checked on four published 16-bit hls4ml LSTM/GRU builds: layer "
            "latency +0.3 to +6.2 %, DSP within 9 %, BRAM exact, LUT within 40 %, FF up to 4x low). "
            "Static LSTM/GRU, io_parallel. "
            f"Budget: {budget_us:g} us."
        ),
        Table(
            (
                "target",
                "estimate at RF 1",
                "fastest fitting (estimate)",
                "DSP / LUT / FF / BRAM18 (estimate)",
                "budget verdict",
            ),
            tuple(rows),
        ),  # fmt: skip
        Para("\n".join(f"- {r['target']} @ {r['clock_mhz']:g} MHz: {r['verdict']}" for r in records)),
    ]
    return blocks, records


def section_comparison(inp: Inputs, records: list[dict[str, Any]]) -> list[Block]:
    """The paper's Table 6 (measured) beside this model's fastest fitting ESTIMATE per platform,
    and the estimator on the hls4ml RNN paper's LSTM(20) against its published band (both from
    the hls step's ``estimate.json``)."""
    head = Heading("Comparison with the paper (Table 6) and with the hls4ml RNN results")
    est = inp.estimates
    if est is None:
        return [head, Para(estimates_missing(inp))]
    rows = []
    for name, mhz, paper_us, label in PAPER_TABLE6:
        te = est.at(name, mhz)
        fit = [] if te is None else [e for e in te.candidates if e.fits and e.synthesisable]
        f = min(fit, key=lambda e: e.latency_us) if fit else None
        ours = (
            f"n/a (not in {runs.ESTIMATE_FILE})"
            if te is None
            else "does not fit (estimate)"
            if f is None
            else f"{f.latency_us:.3f} us (estimate, RF {f.config.reuse_factor})"
        )
        ratio = "n/a" if f is None else f"{paper_us / f.latency_us:.0f}x"
        rows.append((f"{label} @ {mhz:g} MHz", f"{paper_us:g} us (measured, paper)", ours, ratio))
    k_est = est.khoda
    targets = section_targets(inp)
    lo, hi = est.khoda_band_us
    return [
        head,
        Para(
            "Wielgosz et al., NIM A 867 (2017) 40, Table 6 measured their 128-cell LSTM (L = 16) on three "
            "FPGAs; beside each, the fastest configuration of THIS run's model that fits the part at the "
            "same clock (an estimate, not a measurement, and a different model size unless this run "
            "uses the `paper` configuration)."
        ),
        Table(("platform", "paper", "this model (estimate)", "paper / estimate"), tuple(rows)),
        Para(
            f"hls4ml RNN paper (Khoda et al., MLST 4 (2023) 025004): LSTM(20), 20 steps x 6 features, "
            f"200 MHz, lowest reuse factor: about {lo}-{hi} us after synthesis. Our estimator gives "
            f"{k_est.latency_us:.3f} us ({k_est.latency_cycles} cycles) for it, "
            f"{100 * (k_est.latency_us - lo) / lo:+.1f} % from the band's lower edge."
        ),
        *targets,
    ]


def section_targets(inp: Inputs) -> list[Block]:
    """The project's latency targets (issue 8), as estimates from ``estimate.json``: the `paper`
    architecture with this run's fixed-point types on zynq7045 at 200 MHz (<= 2.5 us), and this
    run's model (<= 1 us)."""
    est = inp.estimates
    assert est is not None
    a = inp.desc.architecture
    here = est.at("zynq7045", 200.0)
    rows = []
    for name, te, budget in (
        (f"paper: {est.paper_architecture}", est.paper_model, 2.5),
        (f"this run: {'+'.join(str(x.units) for x in a.layers)} cells, L = {a.history}", here, 1.0),
    ):
        if te is None:
            rows.append((name, f"<= {budget:g} us", "n/a", f"not in {runs.ESTIMATE_FILE}"))
            continue
        res = choose(te.candidates, budget, te.target)
        rows.append((name, f"<= {budget:g} us", "met" if res.chosen is not None else "MISSED", res.verdict))
    return [
        Heading("Latency targets (ESTIMATES, zynq7045 at 200 MHz)", 3),
        Table(("model", "target", "estimate", "verdict"), tuple(rows)),
        Para(
            "A missed target is reported, not tuned away: the recurrence makes the L steps sequential, "
            "so the floor is L x (cycles per step), and a large model only fits at a reuse factor that "
            "adds R - 1 cycles to every step."
        ),
    ]


def section_bitexact(check: dict[str, Any]) -> list[Block]:
    """firmware_sim against the C simulation, as the firmware step's ``firmware_check.json`` says
    (outputs compared exactly; differences in LSBs of the output type)."""
    blocks: list[Block] = [Heading("Bit-exactness: firmware_sim vs the hls4ml C simulation")]
    if not check.get("available", False):
        return [*blocks, Para(f"Not available: {check.get('reason', 'unknown')}.")]
    verdict = "BIT-EXACT" if check["bit_exact"] else "NOT bit-exact"
    blocks.append(
        Para(
            f"**{verdict}**: {check['equal']:,} of {check['outputs']:,} outputs identical on "
            f"{check['windows']:,} test windows; largest difference {check['max_diff_lsb']:g} LSB of the "
            "output type."
        )
    )
    return blocks


def section_rtl(inp: Inputs, rtl: runs.RtlSummary | None, budget_us: float) -> list[Block]:
    """The rtl step's figures (``rtl.json``, read through :func:`qlstm.runs.read_rtl`): cycles
    MEASURED in Verilator simulation, resources after Yosys synthesis (NOT placed), logic depth,
    the clock ASSUMED; beside hls4ml's ESTIMATE for the same model, target and clock at RF 1."""
    head: list[Block] = [Heading("RTL (da4ml, Verilator, Yosys): measured cycles, synthesised resources")]
    if rtl is None:
        return [
            *head,
            Para("Not available: this run has no rtl step output (`rtl/rtl.json`); section omitted."),
        ]
    clock = rtl.clock_ns
    paras = [
        f"RTL of this quantized model for {rtl.target or rtl.part} ({rtl.part}) at an ASSUMED clock of "
        f"{clock:g} ns ({1000 / clock:g} MHz; no place and route was run). da4ml latency cutoff "
        f"{rtl.pipeline:g}: {rtl.cycles_per_step} cycles per recurrent step."
    ]
    if rtl.cycles_max is not None:
        ex = runs.rtl_verdict(rtl.raw)
        us = rtl.cycles_max * clock / 1000
        paras.append(
            f"Cycles MEASURED in RTL simulation (Verilator), start to done, on {rtl.windows:,} windows "
            f"({rtl.raw.get('windows_source') or 'their source not recorded in this older rtl.json'}): {rtl.cycles_min}-{rtl.cycles_max} cycles = {us:.3f} us at the assumed clock. Outputs "
            f"compared with firmware_sim by exact integer equality: **{ex}**."
        )
    else:
        paras.append("Not simulated: no measured cycles.")
    paras.append(_rtl_budget(rtl, budget_us))
    rows: list[tuple[str, ...]] = []
    if rtl.lut is not None:
        cap, ut = rtl.capacity or {}, rtl.utilisation or {}

        def cell(name: str, capk: str, v: int | None) -> str:
            if v is None:
                return "n/a"
            return (
                f"{v:,} of {cap[capk]:,} ({100 * ut[name]:.1f} %)" if capk in cap and name in ut else f"{v:,}"
            )

        rows.append(
            (
                "RTL: Yosys synthesis, not placed",
                cell("lut", "lut", rtl.lut),
                cell("ff", "ff", rtl.ff),
                cell("dsp", "dsp", rtl.dsp),
                cell("bram18", "bram_18k", rtl.bram18),
                "n/a"
                if rtl.cycles_max is None
                else f"{rtl.cycles_max} cycles, {rtl.latency_us:.3f} us (measured)",
            )
        )
        fits = "fits" if rtl.fits else "does NOT fit" if rtl.fits is not None else "capacity unknown"
        paras.append(
            f"Resources after Yosys synthesis (synth_xilinx -family {rtl.synth_family}), NOT placed: {fits} "
            f"the part; {rtl.carry:,} CARRY cells. Logic depth (longest register-to-register path in "
            f"LUT/CARRY/MUXF cells, a proxy for the clock, not an Fmax): {rtl.logic_depth} cells."
        )
    else:
        paras.append("Not synthesised (rtl.synth false): no resources.")
    te = None if inp.estimates is None or rtl.target is None else inp.estimates.at(rtl.target, 1000 / clock)
    if te is not None:
        e = te.rf1
        rows.append(
            (
                "hls4ml: ESTIMATE at RF 1 (hls/estimate, the hls step's estimate.json)",
                f"{e.usage['lut']:,}",
                f"{e.usage['ff']:,}",
                f"{e.usage['dsp']:,}",
                f"{e.usage['bram_18k']}",
                f"{e.latency_us:.3f} us (estimate)",
            )
        )
    elif inp.estimates is None:
        paras.append("hls4ml estimate: " + estimates_missing(inp))
    else:
        paras.append(
            f"hls4ml estimate not available: {inp.estimates.path} has no entry for "
            f"{rtl.target or rtl.part} at {1000 / clock:g} MHz."
        )
    blocks: list[Block] = [*head, Para("\n\n".join(paras))]
    if rows:
        blocks.append(
            Table(("design", "LUT", "FF", "DSP", "BRAM18", "latency"), tuple(rows))  # fmt: skip
        )
    return blocks


#: where the report's budget comes from
_REPORT_BUDGET = "report.budget_us / qlstm report --budget-us"


def _rtl_budget(rtl: runs.RtlSummary, budget_us: float) -> str:
    """The RTL's budget verdict: its own (``rtl.budget_us``/``--budget-us``, which chose its
    cutoff) as rtl.json records it (``budget_met``, not derived again here), and which budget the
    report's latency verdicts use; without its own, the report's budget on the measured cycles.
    A new user's trial found "Budget 1 us: met" (the report's) under an RTL built for 0.6 us."""
    if rtl.budget_us is None:
        if rtl.cycles_max is None:
            return f"The rtl step had no budget of its own; not simulated: no verdict on the report's {budget_us:g} us."
        us = rtl.cycles_max * rtl.clock_ns / 1000
        return (
            f"The rtl step had no budget of its own (rtl.budget_us); against the report's budget, {budget_us:g} us "
            f"({_REPORT_BUDGET}): **{'met' if us <= budget_us else 'MISSED'}** (measured cycles x assumed clock)."
        )
    verdict = {True: "met", False: "MISSED", None: "not measured (not simulated)"}[rtl.budget_met]
    tried = len(rtl.raw.get("candidates") or [])
    chose = f"; it chose the cutoff {rtl.pipeline:g} among {tried} tried" if tried else ""
    how = rtl.raw.get("budget_source") or "as rtl.json records it"
    text = f"RTL budget {rtl.budget_us:g} us (rtl.budget_us / qlstm rtl --budget-us{chose}): **{verdict}** ({how})."
    if rtl.budget_us == budget_us:
        return text + f" The report's latency verdicts use the same budget ({_REPORT_BUDGET})."
    return (
        text + f" The report's latency verdicts (hls4ml ESTIMATES) use its own budget, {budget_us:g} us "
        f"({_REPORT_BUDGET}), not this one."
    )


def section_detection(det: runs.DetectionSummary | None) -> list[Block]:
    """The detect step's scores (``detection.json``, :func:`qlstm.runs.read_detection`) on the
    held-out events: detection rate, false alarms per day, median lead time per detector, and the
    step's ROC and timeline plots. Figures are SIMULATED on the (synthetic) recording."""
    head: list[Block] = [Heading("Quench-precursor detection (held-out events)")]
    if det is None:
        return [
            *head,
            Para(
                "Not available: this run has no detect step output (`detect/detection.json`); section omitted."
            ),
        ]
    if not det.labelled:
        return [*head, Para("The recording carries no anomaly labels: alarms only, no detection scores.")]

    def row(name: str, s: runs.DetectorScores) -> tuple[str, ...]:
        rate = (
            "n/a"
            if s.detection_rate is None
            else f"{100 * s.detection_rate:.0f} % ({s.detected}/{s.precursors})"
        )
        return (
            name,
            rate,
            _fmt(s.false_alarms_per_day, ".2f"),
            _fmt(s.median_lead_time_s, ".1f"),
            _fmt(s.auc, ".3f"),
        )

    rows = [row(f"deployed model ({det.backend} backend, quantized)", det.model)]
    if det.float is not None:
        rows.append(row("float model", det.float))
    rows += [row(name, s) for name, s in det.baselines.items()]
    blocks: list[Block] = [
        *head,
        Para(
            f"Detectors SIMULATED on the {len(det.evaluation_events)} held-out events of the run's recording, "
            f"thresholds calibrated on the training events' normal running for "
            f"{det.target_false_alarms_per_day:g} false alarm(s) per day (docs/detect.md). Lead time: alarm "
            "before the quench, seconds."
        ),
        Table(
            ("detector", "detection rate", "false alarms / day", "median lead time (s)", "AUC"), tuple(rows)
        ),
    ]
    captions = {
        "roc": "Event-level ROC: detection rate against false alarms per day over thresholds (simulated).",
        "timelines": "Alarm timelines around the held-out quenches (simulated).",
        "lead_times": "Lead-time histogram of the detected precursors (simulated).",
    }
    for name, path in det.plots.items():
        if name in ("roc", "timelines"):
            blocks.append(Figure(f"detect_{name}.png", path.read_bytes(), captions[name]))
    return blocks
