"""The estimates the hls step stores beside its project (``estimate.json``) for the run report.

The report renders latency and resources per target, the comparison with the paper and the
latency targets from this file; it never runs the estimator (issue 13). Every figure in it is an
ESTIMATE (:func:`.search.estimate`: a model of hls4ml's scheduling, not synthesis). Written by
:func:`qlstm.hls.project.generate` (``qlstm hls`` and the hls step of ``qlstm run``); read back
by :func:`qlstm.runs.read_estimates`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import runs
from qlstm.description import Architecture, ModelDescription, Normalisation, RecurrentLayer
from qlstm.hls.targets import Target, get_target
from qlstm.hls_config import HlsConfig
from qlstm.io import weights_sha256

from .search import candidates, estimate

#: (target, clock MHz) of the report's latency rows: the paper's three platforms at the clocks of
#: its Table 6 (Wielgosz et al., NIM A 867 (2017) 40) and zynq7045 at 200 MHz (the project's
#: latency targets); the hls project's own target and clock are added when not among them.
REPORT_TARGETS = (("zynq7020", 142.0), ("zynq7045", 100.0), ("zynq7045", 200.0), ("ku060", 200.0))
#: Khoda et al., MLST 4 (2023) 025004: LSTM(20), 20 steps x 6 features, 200 MHz (ku060's
#: default clock), lowest reuse factor: about 1.5-1.7 us after synthesis.
KHODA = {"band_us": (1.5, 1.7), "target": "ku060"}
#: The paper's model (Wielgosz et al. 2017): LSTM(128), L = 16, estimated with this run's types
#: on zynq7045 at 200 MHz (the project's 2.5 us target).
PAPER_MODEL = {"units": 128, "history": 16, "target": "zynq7045", "clock_mhz": 200.0}


def _entry(
    desc: ModelDescription, weights: dict[str, np.ndarray] | None, tgt: Target, clock_ns: float
) -> dict[str, Any]:
    at = replace(tgt, clock_ns=clock_ns)
    return {
        "target": tgt.name,
        "part": tgt.part,
        "clock_ns": clock_ns,
        "rf1": estimate(desc, at, HlsConfig(), weights).to_dict(),
        "candidates": [e.to_dict() for e in candidates(desc, tgt, clock_ns, weights)],
    }


def summarise(desc: ModelDescription, weights: dict[str, np.ndarray], target: Target) -> dict[str, Any]:
    """``estimate.json``'s content for the quantized model ``desc``: per report target (and the
    project's ``target``) the ESTIMATE at hls4ml's defaults (reuse factor 1, latency, static)
    and every candidate of the budget search; the paper's LSTM(128) with this model's types; the
    estimator on Khoda et al.'s LSTM(20). Raises QlstmError for a model the estimator refuses."""
    pairs = [(get_target(name), 1000.0 / mhz) for name, mhz in REPORT_TARGETS]
    if not any(t.name == target.name and abs(c - target.clock_ns) < 1e-9 for t, c in pairs):
        pairs.append((target, target.clock_ns))
    a, q = desc.architecture, desc.quantization
    assert q is not None
    paper_arch = Architecture(
        a.input_channels, PAPER_MODEL["history"], a.horizon, (RecurrentLayer("lstm", PAPER_MODEL["units"]),)
    )
    paper = replace(desc, architecture=paper_arch, quantization=replace(q, layers=q.layers[:1]))
    khoda = ModelDescription(
        Architecture(6, 20, 5, (RecurrentLayer("lstm", 20),)),
        Normalisation((0.0,) * 6, (1.0,) * 6, tuple(f"f{i}" for i in range(6))),
    )
    return {
        "format": runs.ESTIMATE_FORMAT,
        "kind": "estimate",
        "model_fingerprint": desc.fingerprint(),
        "weights_sha256": weights_sha256(weights),
        "targets": [_entry(desc, weights, t, c) for t, c in pairs],
        "paper_model": {
            "architecture": f"LSTM({PAPER_MODEL['units']}), L = {PAPER_MODEL['history']}, this model's types",
            **_entry(paper, None, get_target(PAPER_MODEL["target"]), 1000.0 / PAPER_MODEL["clock_mhz"]),
        },
        "khoda": {
            "band_us": list(KHODA["band_us"]),
            "estimate": estimate(khoda, get_target(KHODA["target"]), HlsConfig()).to_dict(),
        },
    }


def write_summary(
    folder: Path, desc: ModelDescription, weights: dict[str, np.ndarray], target: Target
) -> Path:
    """Write :func:`summarise` as ``folder/estimate.json`` (atomically); return its path."""
    path = Path(folder) / runs.ESTIMATE_FILE
    runs.write_json(path, summarise(desc, weights, target))
    return path
