"""``qlstm report QRUN_DIR --out REPORT_DIR``: the run report, in Markdown and self-contained HTML.

Sections: data summary; accuracy of float / PTQ / QAT / firmware per step ahead and per bit width;
predicted vs true traces before a quench (the paper's Fig. 11); latency and resources per target
(ESTIMATES, with the budget verdict); the comparison with Wielgosz et al. Table 6 and with the
hls4ml RNN paper; the bit-exactness of firmware_sim against the hls4ml C simulation.

Figures come from the run folders, read through :mod:`qlstm.runs` (``metrics.json``,
``data.json``, ``parent.json``, ``windows.npz``), the quantize sweep CSV and the firmware step's
``firmware_check.json``; what is missing is named as not available, never invented or recomputed.
Two things are still computed here: the quench-trace figure's predictions (float, quantised and
firmware_sim backends on the ~300 stored trace windows) and the latency/resource estimates.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description, runs
from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig
from qlstm.io import atomic_write_bytes, atomic_write_text, staged_dir
from qlstm.report.render import Block, Figure, Heading, Para, Table, to_html, to_markdown

log = logging.getLogger(__name__)

FIRMWARE_CHECK_FILE = runs.FIRMWARE_CHECK_FILE
#: Wielgosz, Skoczeń, Mertik, NIM A 867 (2017) 40, Table 6: their LSTM (128 cells, L = 16) on FPGA.
PAPER_TABLE6 = (
    ("zynq7020", 142.0, 932.0, "Zynq 7020"),
    ("ku060", 200.0, 82.7, "XCKU060"),
    ("zynq7045", 100.0, 15.96, "XC7Z045"),
)
#: Khoda et al., MLST 4 (2023) 025004: LSTM(20), 20 steps x 6 features, 200 MHz, lowest RF.
KHODA = {"band_us": (1.5, 1.7), "clock_mhz": 200.0}
#: (target, clock MHz) rows of the latency section.
REPORT_TARGETS = (("zynq7020", 142.0), ("zynq7045", 100.0), ("zynq7045", 200.0), ("ku060", 200.0))
DEFAULT_BUDGET_US = 2.5


@dataclass
class Inputs:
    """What the report renders, read through :mod:`qlstm.runs` (typed files only)."""

    qrun: Path
    float_run: Path
    desc: description.ModelDescription
    weights: dict[str, np.ndarray]
    qmetrics: runs.QuantMetrics
    fmetrics: runs.FloatMetrics
    data_info: dict[str, Any]
    heldout: runs.HeldOut
    others: list[Path] = field(default_factory=list)  # further quantised runs (PTQ vs QAT)
    sweep_csv: Path | None = None
    firmware_check_file: Path | None = None


# ----------------------------------------------------------------------------- reading
def read_json(path: Path) -> dict[str, Any]:
    return runs.read_json(path)


def load_inputs(qrun: Path, others: list[Path] | None = None, sweep_csv: Path | None = None) -> Inputs:
    """Open the quantised run, its float parent, their metrics and the held-out windows.

    Raises QlstmError when ``qrun`` is not a quantised run, its parent.json is missing or names
    no float run, or a metrics.json / windows.npz is missing or of an older format.
    """
    q = runs.open_quant_run(Path(qrun))
    desc, weights = q.load()
    parent = q.parent
    if sweep_csv is None:
        found = sorted(q.path.parent.glob("**/sweep*.csv"))
        sweep_csv = found[0] if found else None
    return Inputs(
        q.path, parent.path, desc, weights, q.metrics, parent.metrics, parent.data, parent.heldout(),
        list(others or []), sweep_csv,
    )  # fmt: skip


def _predict(backend: str, run_dir: Path, x: np.ndarray) -> tuple[np.ndarray | None, str]:
    from qlstm.predict import run_backend

    try:
        return run_backend(backend, run_dir, x), ""
    except QlstmError as exc:
        return None, str(exc)


# ----------------------------------------------------------------------------- figures
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plot_per_step(series: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, vals in series.items():
        ax.plot(range(1, len(vals) + 1), vals, marker="o", ms=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step ahead k")
    ax.set_ylabel("test RMSE (normalised)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_sweep(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["bits"], r["rmse"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xlabel("bit width")
    ax.set_ylabel("test RMSE (normalised)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _plot_trace(
    t: np.ndarray, truth: np.ndarray, preds: dict[str, np.ndarray], quench_t: float | None
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, truth, color="k", lw=1.6, label="true")
    for name, p in preds.items():
        ax.plot(t, p, lw=1.0, label=name)
    if quench_t is not None:
        ax.axvline(quench_t, color="r", ls="--", lw=1, label="quench")
    ax.set_xlabel("time before the end of the event [s]")
    ax.set_ylabel("normalised U_res, 1 step ahead")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------- sections
def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "n/a" if v is None else format(v, spec)


def read_sweep(path: Path) -> list[dict[str, Any]]:
    """Rows (method, bits, rmse) from the quantize sweep CSV, long or wide format."""
    try:
        with open(path, newline="") as fh:
            raw = list(csv.DictReader(fh))
    except OSError as exc:
        raise QlstmError(f"{path}: cannot read the sweep CSV ({exc})") from None
    rows: list[dict[str, Any]] = []
    for r in raw:
        low = {k.strip().lower(): v for k, v in r.items() if k}
        bits_key = next((k for k in ("bits", "width", "bit_width") if k in low), None)
        if bits_key is None:
            raise QlstmError(f"{path}: no bits/width column (columns: {', '.join(low)})")
        try:
            bits = int(float(low[bits_key]))
            if "method" in low and "rmse" in low:
                rows.append({"method": low["method"], "bits": bits, "rmse": float(low["rmse"])})
            else:
                for k, v in low.items():
                    if k.endswith("rmse") and k != "rmse" and v not in ("", None):
                        rows.append({"method": k.removesuffix("_rmse").removesuffix("rmse"), "bits": bits,
                                     "rmse": float(v)})  # fmt: skip
        except ValueError as exc:
            raise QlstmError(f"{path}: bad number in the sweep CSV ({exc})") from None
    if not rows:
        raise QlstmError(f"{path}: no (method, bits, rmse) rows found")
    return rows


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


def section_accuracy(inp: Inputs) -> tuple[list[Block], dict[str, Any]]:
    """Test RMSE per step ahead of float, baselines, each quantised run and firmware_sim, all
    from the runs' ``metrics.json`` (normalised units); the sweep table from its CSV."""
    fm = inp.fmetrics
    series: dict[str, list[float]] = {
        "float": list(fm.model.rmse_per_step),
        "persistence": list(fm.persistence.rmse_per_step),
        "linear AR": list(fm.linear_ar.rmse_per_step),
    }
    for path in [inp.qrun, *inp.others]:
        qm = runs.QuantRun(Path(path)).metrics
        series[f"{qm.method.upper()} {qm.bits}-bit"] = list(qm.test.rmse_per_step)
    fw_windows = None
    if inp.qmetrics.raw.get("eval_backend") == "firmware":  # quantize measured with firmware_sim
        series[f"firmware_sim {inp.desc.quantisation.bits}-bit"] = list(inp.qmetrics.test.rmse_per_step)
        fw_windows = inp.qmetrics.test.windows
    k = inp.desc.architecture.horizon
    header = ("model", "RMSE (all k)", *(f"k={j + 1}" for j in range(min(k, 8))))
    rows = []
    for name, vals in series.items():
        overall = float(np.sqrt(np.mean(np.square(vals))))
        rows.append((name, f"{overall:.4g}", *(f"{v:.4g}" for v in vals[:8])))
    blocks: list[Block] = [
        Heading("Accuracy: float vs PTQ vs QAT vs firmware"),
        Para(
            "Test RMSE in normalised units, per step ahead (first 8 shown), on the held-out events. "
            "Float and baselines from the float run's `metrics.json`, quantised runs from theirs"
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
    return blocks, series


def section_trace(inp: Inputs) -> list[Block]:
    """The 1-step-ahead predictions before a quench (the paper's Fig. 11) on the quench trace
    that training stored in ``windows.npz``."""
    blocks: list[Block] = [Heading("Predicted vs true before a quench (cf. the paper's Fig. 11)")]
    tr = inp.heldout.trace
    if tr is None:
        return [*blocks, Para("Not available: no test event has a quench marker (or it comes too early).")]
    win, truth, t = tr.x, tr.truth, tr.t
    preds: dict[str, np.ndarray] = {}
    missing = []
    for name, backend, run in (("float", "float", inp.float_run), (f"{inp.desc.quantisation.method} {inp.desc.quantisation.bits}-bit", "quant", inp.qrun), ("firmware_sim", "firmware", inp.qrun)):  # fmt: skip
        y, why = _predict(backend, run, win)
        if y is None:
            missing.append(f"{name}: {why}")
        else:
            preds[name] = y[:, 0]
    blocks.append(
        Figure(
            "trace_quench.png",
            _plot_trace(t, truth, preds, 0.0),
            f"Event {tr.event}: the last {len(t)} samples up to the quench, true normalised voltage and "
            "1-step-ahead predictions.",
        )
    )
    if missing:
        blocks.append(Para("Not shown: " + "; ".join(missing)))
    return blocks


def section_latency(inp: Inputs, budget_us: float) -> tuple[list[Block], list[dict[str, Any]]]:
    from dataclasses import replace

    from qlstm.hls.estimate import estimate, search_budget
    from qlstm.hls.targets import get_target

    rows, records = [], []
    for name, mhz in REPORT_TARGETS:
        tgt = get_target(name)
        clock = 1000.0 / mhz
        full = estimate(inp.desc, replace(tgt, clock_ns=clock), HlsConfig(), inp.weights)
        res = search_budget(inp.desc, tgt, clock, budget_us, inp.weights)
        fit = [e for e in res.candidates if e.fits and e.synthesisable]
        fastest = min(fit, key=lambda e: e.latency_us) if fit else None
        rec = {"target": name, "clock_mhz": mhz, "rf1": full.to_dict(), "verdict": res.verdict,
               "chosen": None if res.chosen is None else res.chosen.to_dict(),
               "fastest_fitting": None if fastest is None else fastest.to_dict()}  # fmt: skip
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
                else f"{f.usage.dsp:,} / {f.usage.lut:,} / {f.usage.ff:,} / {f.usage.bram_18k}",
                res.verdict.split(" (estimate)")[0] if res.chosen is None else "meets budget",
            )
        )
    blocks: list[Block] = [
        Heading("Latency and resources per target (ESTIMATES)"),
        Para(
            "Every figure in this section is an ESTIMATE from `hls/estimate.py` (docs/estimator.md: a "
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
    from qlstm.hls.estimate import estimate
    from qlstm.hls.targets import get_target

    rows = []
    for name, mhz, paper_us, label in PAPER_TABLE6:
        tgt = get_target(name)
        from qlstm.hls.estimate import search_budget

        res = search_budget(inp.desc, tgt, 1000.0 / mhz, 1e6, inp.weights)
        fit = [e for e in res.candidates if e.fits and e.synthesisable]
        f = min(fit, key=lambda e: e.latency_us) if fit else None
        ours = (
            "does not fit (estimate)"
            if f is None
            else f"{f.latency_us:.3f} us (estimate, RF {f.config.reuse_factor})"
        )
        ratio = "n/a" if f is None else f"{paper_us / f.latency_us:.0f}x"
        rows.append((f"{label} @ {mhz:g} MHz", f"{paper_us:g} us (measured, paper)", ours, ratio))
    from qlstm.description import Architecture, ModelDescription, Normalisation, RecurrentLayer

    khoda = ModelDescription(
        Architecture(6, 20, 5, (RecurrentLayer("lstm", 20),)),
        Normalisation((0.0,) * 6, (1.0,) * 6, tuple(f"f{i}" for i in range(6))),
    )
    k_est = estimate(khoda, get_target("ku060"), HlsConfig())  # ku060's clock is 5 ns
    targets = section_targets(inp)
    lo, hi = KHODA["band_us"]
    return [
        Heading("Comparison with the paper (Table 6) and with the hls4ml RNN results"),
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
    """The project's latency targets (issue 8), as estimates: the `paper` architecture with this
    run's fixed-point types on zynq7045 at 200 MHz (<= 2.5 us), and this run's model (<= 1 us)."""
    from dataclasses import replace

    from qlstm.description import Architecture, RecurrentLayer
    from qlstm.hls.estimate import search_budget
    from qlstm.hls.targets import get_target

    a, q = inp.desc.architecture, inp.desc.quantisation
    paper_arch = Architecture(a.input_channels, 16, a.horizon, (RecurrentLayer("lstm", 128),))
    paper = replace(inp.desc, architecture=paper_arch, quantisation=replace(q, layers=q.layers[:1]))
    tgt = get_target("zynq7045")
    rows = []
    for name, desc, weights, budget in (
        ("paper: LSTM(128), L = 16, this run's types", paper, None, 2.5),
        (
            f"this run: {'+'.join(str(x.units) for x in a.layers)} cells, L = {a.history}",
            inp.desc,
            inp.weights,
            1.0,
        ),
    ):
        res = search_budget(desc, tgt, 5.0, budget, weights)
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


def firmware_check(inp: Inputs) -> dict[str, Any]:
    """The firmware step's ``firmware_check.json`` (firmware_sim against the C simulation of the
    run's hls project, exact equality); the report does not recompute it."""
    path = inp.firmware_check_file or inp.qrun / FIRMWARE_CHECK_FILE
    if path.is_file():
        return read_json(path)
    return {
        "available": False,
        "reason": f"no {FIRMWARE_CHECK_FILE} (the firmware step of `qlstm run` writes it)",
    }


def section_bitexact(check: dict[str, Any]) -> list[Block]:
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


# ----------------------------------------------------------------------------- the report
def build(inp: Inputs, budget_us: float = DEFAULT_BUDGET_US) -> tuple[list[Block], dict[str, Any]]:
    """Every section as render blocks, and ``summary.json``'s content."""
    a, q = inp.desc.architecture, inp.desc.quantisation
    layers = " -> ".join(f"{layer.cell.upper()}({layer.units})" for layer in a.layers)
    blocks: list[Block] = [
        Heading(f"qlstm report: {inp.qrun.name}", 1),
        Para(
            f"Quantised run `{inp.qrun}` ({q.method.upper()}, {q.bits} bits) of float run `{inp.float_run}`: "
            f"{layers} -> Dense({a.horizon}), L = {a.history}, {a.input_channels} channel(s), "
            f"{a.n_parameters():,} parameters."
        ),
    ]
    blocks += section_data(inp)
    acc_blocks, series = section_accuracy(inp)
    blocks += acc_blocks
    blocks += section_trace(inp)
    lat_blocks, records = section_latency(inp, budget_us)
    blocks += lat_blocks
    blocks += section_comparison(inp, records)
    check = firmware_check(inp)
    blocks += section_bitexact(check)
    summary = {
        "qrun": str(inp.qrun),
        "float_run": str(inp.float_run),
        "rmse": {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in series.items()},
        "rmse_per_step": series,
        "latency": records,
        "bit_exact": check,
        "budget_us": budget_us,
    }
    return blocks, summary


def write_report(
    qrun: Path,
    out: Path,
    overwrite: bool = False,
    budget_us: float | None = None,
    others: list[Path] | None = None,
    sweep_csv: Path | None = None,
    firmware_check_file: Path | None = None,
) -> Path:
    """Write ``report.md``, ``report.html``, ``figures/`` and ``summary.json`` into ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:  # refuse before the slow part
        raise QlstmError(f"{out} already exists and is not empty; choose another folder or pass --overwrite")
    inp = load_inputs(Path(qrun), others, sweep_csv)
    inp.firmware_check_file = firmware_check_file
    blocks, summary = build(inp, DEFAULT_BUDGET_US if budget_us is None else budget_us)
    with staged_dir(out, overwrite=overwrite) as stage:
        for b in blocks:
            if isinstance(b, Figure):
                atomic_write_bytes(stage / "figures" / b.name, b.png)
        atomic_write_text(stage / "report.md", to_markdown(blocks))
        atomic_write_text(stage / "report.html", to_html(blocks, f"qlstm report: {inp.qrun.name}"))
        atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return out
