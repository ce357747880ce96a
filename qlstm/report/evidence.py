"""What the report renders, read through :mod:`qlstm.runs`: typed files only, nothing re-derived."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description, runs
from qlstm.errors import QlstmError
from qlstm.io import read_text

log = logging.getLogger(__name__)


FIRMWARE_CHECK_FILE = runs.FIRMWARE_CHECK_FILE


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
    others: list[Path] = field(default_factory=list)  # further quantized runs (PTQ vs QAT)
    sweep_csv: Path | None = None
    firmware_check_file: Path | None = None
    #: the firmware step's predictions on the quench trace (None: the figure is not available)
    trace_predictions: dict[str, np.ndarray] | None = None
    #: the rtl step's ``rtl.json`` (None: the report omits the RTL section with a note)
    rtl: runs.RtlSummary | None = None
    #: the detect step's ``detection.json`` (None: the report omits the detection section)
    detection: runs.DetectionSummary | None = None
    #: the hls project given (None: none given) and its ``estimate.json`` (None: the estimate
    #: sections say it is not available; the report never runs the estimator)
    hls_dir: Path | None = None
    estimates: runs.Estimates | None = None


# ----------------------------------------------------------------------------- reading
def read_json(path: Path) -> dict[str, Any]:
    return runs.read_json(path)


def load_inputs(qrun: Path, others: list[Path] | None = None, sweep_csv: Path | None = None) -> Inputs:
    """Open the quantized run, its float parent, their metrics and the held-out windows.

    Raises QlstmError when ``qrun`` is not a quantized run, its parent.json is missing or names
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


def read_sweep(path: Path) -> list[dict[str, Any]]:
    """Rows (method, bits, rmse) from the quantize sweep CSV, long or wide format."""
    try:
        with io.StringIO(read_text(path, legacy=True), newline="") as fh:  # a byte-order mark dropped
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
