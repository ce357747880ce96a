"""``qlstm report QRUN_DIR --out REPORT_DIR``: the run report, in Markdown and self-contained HTML.

Sections: data summary; accuracy of float / PTQ / QAT / firmware per step ahead and per bit width;
predicted vs true traces before a quench (the paper's Fig. 11); latency and resources per target
(ESTIMATES, with the budget verdict); the comparison with Wielgosz et al. Table 6 and with the
hls4ml RNN paper; the bit-exactness of firmware_sim against the hls4ml C simulation.

Figures come from the run folders (``metrics.json``, ``data.json``, ``parent.json``), the quantize
sweep CSV and ``firmware_check.json`` when present; what is missing is computed through the
``qlstm predict`` backends when they are available, and otherwise named as not available, never
invented.
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

from qlstm import description
from qlstm.errors import QlstmError
from qlstm.io import atomic_write_bytes, atomic_write_text, staged_dir
from qlstm.report.render import Block, Figure, Heading, Para, Table, to_html, to_markdown

log = logging.getLogger(__name__)

FIRMWARE_CHECK_FILE = "firmware_check.json"
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
MAX_EVAL_WINDOWS = 20_000


@dataclass
class Inputs:
    qrun: Path
    float_run: Path
    desc: description.ModelDescription
    weights: dict[str, np.ndarray]
    qmetrics: dict[str, Any]
    fmetrics: dict[str, Any]
    data_info: dict[str, Any]
    others: list[Path] = field(default_factory=list)  # further quantised runs (PTQ vs QAT)
    sweep_csv: Path | None = None
    firmware_check_file: Path | None = None


# ----------------------------------------------------------------------------- reading
def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise QlstmError(f"{path}: not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise QlstmError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def parent_of(qrun: Path) -> Path:
    """The float run a quantised run came from, as its ``parent.json`` names it."""
    p = qrun / "parent.json"
    info = read_json(p)
    for key in ("float_run", "parent", "run_dir", "path", "source"):
        v = info.get(key)
        if isinstance(v, str):
            cand = Path(v) if Path(v).is_absolute() else (qrun / v)
            for c in (cand, Path(v)):
                if (c / description.DESCRIPTION_FILE).is_file():
                    return c.resolve()
    raise QlstmError(f"{p}: names no float run folder holding {description.DESCRIPTION_FILE}")


def rmse_per_step(metrics: dict[str, Any], where: str) -> list[float] | None:
    """The test RMSE per step ahead of a run's own model, from its ``metrics.json``."""
    for path in (("test", "model"), ("test", "quant"), ("test",), ("model",), ()):
        node: Any = metrics
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get("rmse_per_step"), list):
            return [float(v) for v in node["rmse_per_step"]]
    log.warning("%s: no test RMSE per step found", where)
    return None


def load_inputs(qrun: Path, others: list[Path] | None = None, sweep_csv: Path | None = None) -> Inputs:
    qrun = Path(qrun)
    desc, weights = description.load(qrun)
    if not desc.quantised:
        raise QlstmError(f"{qrun}: not a quantised run (no quantisation in model.json); quantize first")
    float_run = parent_of(qrun)
    fmetrics = read_json(float_run / "metrics.json")
    qmetrics = read_json(qrun / "metrics.json") if (qrun / "metrics.json").is_file() else {}
    data_info = read_json(float_run / "data.json")
    if sweep_csv is None:
        found = sorted(qrun.parent.glob("**/sweep*.csv"))
        sweep_csv = found[0] if found else None
    return Inputs(
        qrun, float_run, desc, weights, qmetrics, fmetrics, data_info, list(others or []), sweep_csv
    )


def rebuild_test(float_run: Path) -> tuple[np.ndarray, np.ndarray, Any, Any] | None:
    """The float run's test windows (x, y), its normalisation and test events, rebuilt exactly
    as training built them (same config, same data); None if the data file is not there."""
    from qlstm.train.config import load_config
    from qlstm.train.dataset import load_source, prepare, split

    float_run = Path(float_run)
    info = read_json(float_run / "data.json")
    cfg = load_config(float_run / "config.yaml")
    path = Path(info["path"]) if info.get("source") == "file" else None
    if path is not None and not path.is_absolute() and not path.is_file():
        path = float_run.parent / path  # data.json holds the path as given to `qlstm train`
    if path is not None and not path.is_file():
        log.warning("data file %s of the float run is not there; skipping recomputed figures", path)
        return None
    prep = prepare(cfg, path)
    es, _ = load_source(cfg, path)
    _, _, test_events = split(es, cfg)
    return prep.test.x, prep.test.y, prep.norm, test_events


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


def section_data(inp: Inputs, tw) -> list[Block]:
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
    if tw is not None:
        events = tw[3].events
        lengths = [len(e.t) for e in events]
        quenches = sum(e.quench_index is not None for e in events)
        blocks.append(
            Para(
                f"Test events: {len(events)}, {min(lengths)}-{max(lengths)} samples each, "
                f"{quenches} with a quench marker. The synthetic data is modelled on Wielgosz et al. "
                "(2017); it is not CERN data."
            )
        )
    return blocks


def section_accuracy(inp: Inputs, tw, fw_pred: np.ndarray | None) -> tuple[list[Block], dict[str, Any]]:
    test = inp.fmetrics.get("test", {})
    series: dict[str, list[float]] = {}
    for key, name in (("model", "float"), ("persistence", "persistence"), ("linear_ar", "linear AR")):
        if isinstance(test.get(key), dict) and "rmse_per_step" in test[key]:
            series[name] = [float(v) for v in test[key]["rmse_per_step"]]
    for run in [inp.qrun, *inp.others]:
        d, _ = description.load(run)
        q = d.quantisation
        metrics = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
        vals = rmse_per_step(metrics, str(run / "metrics.json"))
        if vals is not None:
            series[f"{q.method.upper()} {q.bits}-bit"] = vals
    if fw_pred is not None and tw is not None:
        e = fw_pred - tw[1]
        series[f"firmware_sim {inp.desc.quantisation.bits}-bit"] = np.sqrt(np.mean(e**2, axis=0)).tolist()
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
                f", firmware_sim recomputed here on the same {len(fw_pred):,} test windows. "
                if fw_pred is not None
                else " (firmware_sim not available here). "
            )
            + f"Float: {inp.fmetrics.get('verdict', 'no verdict in metrics.json')}."
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


def section_trace(inp: Inputs, tw) -> list[Block]:
    blocks: list[Block] = [Heading("Predicted vs true before a quench (cf. the paper's Fig. 11)")]
    if tw is None:
        return [*blocks, Para("Not available: the test data could not be rebuilt here.")]
    _, _, norm, test_events = tw
    a = inp.desc.architecture
    ev = next((e for e in test_events.events if e.quench_index is not None), None)
    if ev is None:
        return [*blocks, Para("Not available: no test event has a quench marker.")]
    q = ev.quench_index
    span = 300  # samples shown before the quench (2 minutes at 0.4 s)
    start = max(0, q - span - a.history)
    xs = norm.apply(ev.x[start : q + 1])
    n = len(xs) - a.history
    if n < 2:
        return [*blocks, Para(f"Not available: event {ev.name} is too short before its quench.")]
    win = np.stack([xs[i : i + a.history] for i in range(n)])
    truth = xs[a.history :, norm.target_channel]
    t = ev.t[start + a.history : q + 1] - ev.t[q]
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
            f"Event {ev.name}: the last {len(t)} samples up to the quench, true normalised voltage and "
            "1-step-ahead predictions.",
        )
    )
    if missing:
        blocks.append(Para("Not shown: " + "; ".join(missing)))
    return blocks


def section_latency(inp: Inputs, budget_us: float) -> tuple[list[Block], list[dict[str, Any]]]:
    from qlstm.hls.estimate import HlsSettings, estimate, search_budget
    from qlstm.hls.targets import get_target

    rows, records = [], []
    for name, mhz in REPORT_TARGETS:
        tgt = get_target(name)
        clock = 1000.0 / mhz
        full = estimate(inp.desc, HlsSettings(tgt, clock, 1), inp.weights)
        res = search_budget(inp.desc, tgt, clock, budget_us, inp.weights)
        fit = [e for e in res.candidates if e.fits and not any("exceed" in n for n in e.notes)]
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
                else f"{f.latency_us:.3f} us (RF {f.settings.reuse}, {f.settings.strategy})",
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
    from qlstm.hls.estimate import HlsSettings, estimate
    from qlstm.hls.targets import get_target

    rows = []
    for name, mhz, paper_us, label in PAPER_TABLE6:
        tgt = get_target(name)
        from qlstm.hls.estimate import search_budget

        res = search_budget(inp.desc, tgt, 1000.0 / mhz, 1e6, inp.weights)
        fit = [e for e in res.candidates if e.fits and not any("exceed" in n for n in e.notes)]
        f = min(fit, key=lambda e: e.latency_us) if fit else None
        ours = (
            "does not fit (estimate)"
            if f is None
            else f"{f.latency_us:.3f} us (estimate, RF {f.settings.reuse})"
        )
        ratio = "n/a" if f is None else f"{paper_us / f.latency_us:.0f}x"
        rows.append((f"{label} @ {mhz:g} MHz", f"{paper_us:g} us (measured, paper)", ours, ratio))
    from qlstm.description import Architecture, ModelDescription, Normalisation, RecurrentLayer

    khoda = ModelDescription(
        Architecture(6, 20, 5, (RecurrentLayer("lstm", 20),)),
        Normalisation((0.0,) * 6, (1.0,) * 6, tuple(f"f{i}" for i in range(6))),
    )
    k_est = estimate(khoda, HlsSettings(get_target("ku060"), 5.0, 1))
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


def firmware_check(inp: Inputs, x: np.ndarray | None, max_windows: int = 200) -> dict[str, Any]:
    """firmware_sim vs csim on test windows: exact equality of the outputs (``firmware_check.json``
    of the pipeline's firmware step when given, else computed here if both backends exist)."""
    path = inp.firmware_check_file or inp.qrun / FIRMWARE_CHECK_FILE
    if path.is_file():
        return read_json(path)
    if x is None:
        return {"available": False, "reason": "no test windows"}
    idx = np.linspace(0, len(x) - 1, min(max_windows, len(x))).astype(int)
    fw, why_fw = _predict("firmware", inp.qrun, x[idx])
    cs, why_cs = _predict("csim", inp.qrun, x[idx]) if fw is not None else (None, "")
    if fw is None or cs is None:
        return {"available": False, "reason": why_fw or why_cs}
    return compare_outputs(fw, cs, inp.desc.quantisation.dense.result.lsb)


def compare_outputs(a: np.ndarray, b: np.ndarray, lsb: float) -> dict[str, Any]:
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return {
        "available": True,
        "windows": int(a.shape[0]),
        "outputs": int(a.size),
        "equal": int(np.count_nonzero(diff == 0)),
        "max_diff_lsb": float(diff.max() / lsb),
        "bit_exact": bool(np.all(diff == 0)),
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
    tw = rebuild_test(inp.float_run)
    x_eval = None
    fw_pred = None
    if tw is not None:
        x_all, y_all = tw[0], tw[1]
        if len(x_all) > MAX_EVAL_WINDOWS:
            idx = np.linspace(0, len(x_all) - 1, MAX_EVAL_WINDOWS).astype(int)
            tw = (x_all[idx], y_all[idx], tw[2], tw[3])
        x_eval = tw[0]
        fw_pred, why = _predict("firmware", inp.qrun, x_eval)
        if fw_pred is None:
            log.warning("firmware backend not available: %s", why)
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
    blocks += section_data(inp, tw)
    acc_blocks, series = section_accuracy(inp, tw, fw_pred)
    blocks += acc_blocks
    blocks += section_trace(inp, tw)
    lat_blocks, records = section_latency(inp, budget_us)
    blocks += lat_blocks
    blocks += section_comparison(inp, records)
    check = firmware_check(inp, x_eval)
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
