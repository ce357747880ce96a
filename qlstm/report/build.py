"""``qlstm report QRUN_DIR --out REPORT_DIR``: the run report, in Markdown and self-contained HTML.

Sections: data summary; accuracy of float / PTQ / QAT / firmware per step ahead and per bit width;
predicted vs true traces before a quench (the paper's Fig. 11); latency and resources per target
(ESTIMATES, with the budget verdict); the comparison with Wielgosz et al. Table 6 and with the
hls4ml RNN paper; the bit-exactness of firmware_sim against the hls4ml C simulation.

Figures come from the run folders, read through :mod:`qlstm.runs` (``metrics.json``,
``data.json``, ``parent.json``, ``windows.npz``), the quantize sweep CSV, the hls step's
``estimate.json``, the firmware step's ``firmware_check.json`` and ``trace_predictions.npz``, the
rtl and detect steps' files; what is missing is named as not available (with the command that
writes it), never invented. The report runs no backend, no C simulation and no estimator.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from qlstm import runs
from qlstm.errors import QlstmError
from qlstm.io import atomic_write_bytes, atomic_write_text, check_out_folder, staged_dir, weights_sha256
from qlstm.report.evidence import Inputs, firmware_check, load_inputs
from qlstm.report.render import Block, Figure, Heading, Para, to_html, to_markdown
from qlstm.report.sections import (
    section_accuracy,
    section_bitexact,
    section_comparison,
    section_data,
    section_detection,
    section_latency,
    section_rtl,
    section_trace,
)
from qlstm.run_config import ReportSection

log = logging.getLogger(__name__)

#: the one default latency budget (the run config's report.budget_us)
DEFAULT_BUDGET_US = ReportSection().budget_us


# ----------------------------------------------------------------------------- the report
def build(inp: Inputs, budget_us: float = DEFAULT_BUDGET_US) -> tuple[list[Block], dict[str, Any]]:
    """Every section as render blocks, and ``summary.json``'s content."""
    a, q = inp.desc.architecture, inp.desc.quantization
    layers = " -> ".join(f"{layer.cell.upper()}({layer.units})" for layer in a.layers)
    blocks: list[Block] = [
        Heading(f"qlstm report: {inp.qrun.name}", 1),
        Para(
            f"Quantized run `{inp.qrun}` ({q.method.upper()}, {q.bits} bits) of float run `{inp.float_run}`: "
            f"{layers} -> Dense({a.horizon}), L = {a.history}, {a.input_channels} channel(s), "
            f"{a.n_parameters():,} parameters."
        ),
    ]
    blocks += section_data(inp)
    acc_blocks, models = section_accuracy(inp)
    blocks += acc_blocks
    blocks += section_trace(inp)
    lat_blocks, records = section_latency(inp, budget_us)
    blocks += lat_blocks
    blocks += section_comparison(inp, records)
    check = firmware_check(inp)
    blocks += section_bitexact(check)
    blocks += section_rtl(inp, inp.rtl, budget_us)
    blocks += section_detection(inp.detection)
    summary = {
        "qrun": str(inp.qrun),
        "float_run": str(inp.float_run),
        "rmse": {k: m.rmse for k, m in models.items()},
        "rmse_per_step": {k: list(m.rmse_per_step) for k, m in models.items()},
        "latency": records,
        "bit_exact": check,
        "budget_us": budget_us,
        "rtl": None if inp.rtl is None else inp.rtl.raw,
        "detection": None if inp.detection is None else _detection_brief(inp.detection),
    }
    return blocks, summary


def _detection_brief(d: runs.DetectionSummary) -> dict[str, Any]:
    from dataclasses import asdict

    out = {"model": asdict(d.model), "baselines": {k: asdict(v) for k, v in d.baselines.items()}}
    if d.float is not None:
        out["float"] = asdict(d.float)
    return out


def write_report(
    qrun: Path,
    out: Path,
    overwrite: bool = False,
    budget_us: float | None = None,
    others: list[Path] | None = None,
    sweep_csv: Path | None = None,
    firmware_check_file: Path | None = None,
    trace_predictions_file: Path | None = None,
    rtl_dir: Path | None = None,
    detect_dir: Path | None = None,
    hls_dir: Path | None = None,
) -> Path:
    """Write ``report.md``, ``report.html``, ``figures/`` and ``summary.json`` into ``out``.
    ``rtl_dir``/``detect_dir``: the rtl and detect steps' folders; ``hls_dir``: the hls project
    whose ``estimate.json`` the estimate sections render (None, or a project without one: those
    sections say so). Raises QlstmError for an ``estimate.json`` of another model."""
    out = Path(out)
    inputs = (
        Path(qrun),
        *(others or []),
        sweep_csv,
        firmware_check_file,
        trace_predictions_file,
        rtl_dir,
        detect_dir,
        hls_dir,
    )
    check_out_folder(out, overwrite, inputs)  # refuse before the slow part
    inp = load_inputs(Path(qrun), others, sweep_csv)
    inp.firmware_check_file = firmware_check_file
    if trace_predictions_file is not None:
        inp.trace_predictions = runs.load_trace_predictions(trace_predictions_file)
    inp.rtl = runs.read_rtl(rtl_dir) if rtl_dir is not None else None
    if inp.rtl is not None:
        runs.check_rtl_model(inp.rtl, inp.desc, inp.weights, inp.qrun)
    inp.detection = runs.read_detection(detect_dir) if detect_dir is not None else None
    inp.hls_dir = None if hls_dir is None else Path(hls_dir)
    if inp.hls_dir is not None:
        if not inp.hls_dir.is_dir():
            raise QlstmError(f"{inp.hls_dir}: hls project folder not found")
        if (inp.hls_dir / runs.ESTIMATE_FILE).is_file():
            inp.estimates = runs.read_estimates(inp.hls_dir)
            e = inp.estimates
            if (e.model_fingerprint, e.weights_sha256) != (
                inp.desc.fingerprint(),
                weights_sha256(inp.weights),
            ):
                raise QlstmError(
                    f"{inp.estimates.path}: estimates of another model than {inp.qrun} (description or weights differ)"
                )
    blocks, summary = build(inp, DEFAULT_BUDGET_US if budget_us is None else budget_us)
    with staged_dir(out, overwrite=overwrite, inputs=inputs) as stage:
        for b in blocks:
            if isinstance(b, Figure):
                atomic_write_bytes(stage / "figures" / b.name, b.png)
        atomic_write_text(stage / "report.md", to_markdown(blocks))
        atomic_write_text(stage / "report.html", to_html(blocks, f"qlstm report: {inp.qrun.name}"))
        atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return out
