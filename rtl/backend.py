"""The ``rtl`` backend of ``qlstm predict``: the generated Verilog, simulated in Verilator.

The first call for a model writes the RTL (da4ml cutoff :data:`qlstm.rtl.api.DEFAULT_PIPELINE`)
and compiles its testbench (seconds for a few cells, minutes for 32); later calls, in any process,
reuse it from ``$QLSTM_CACHE/rtl`` (default ``~/.cache/qlstm/rtl``), keyed by the model and the
qlstm version. The outputs are the firmware's (and firmware_sim's) exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from qlstm import __version__, description
from qlstm.errors import QlstmError

from . import api, sim
from .verilog import TB

#: Bump when the generated RTL changes for the same model (invalidates the cache).
RTL_FORMAT = 2  # 2: x_t registered, product latency


def cache_root() -> Path:
    base = os.environ.get("QLSTM_CACHE")
    return Path(base) / "rtl" if base else Path.home() / ".cache" / "qlstm" / "rtl"


def _key(desc, weights: dict[str, np.ndarray], pipeline: float, alarm_rule=None) -> str:
    h = hashlib.sha256()
    d = desc.to_dict()
    key = [
        d["architecture"],
        d["quantization"],
        pipeline,
        api.DEFAULT_PRODUCT_LATENCY,
        RTL_FORMAT,
        __version__,
    ]
    if alarm_rule is not None:  # the design with the alarm (qlstm detect --backend rtl)
        from .alarm import ALARM_FORMAT

        key.append(["alarm", ALARM_FORMAT, alarm_rule.score, alarm_rule.ewma_shift])
    h.update(json.dumps(key, sort_keys=True).encode())
    for k in sorted(weights):
        h.update(k.encode())
        h.update(np.ascontiguousarray(weights[k], dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def compiled(
    run_dir: Path, pipeline: float = api.DEFAULT_PIPELINE, alarm_rule=None
) -> tuple[Path, api.RtlResult | None, object]:
    """(folder, result if built now, description) of the run's compiled RTL in the cache; with
    ``alarm_rule`` (an ``AlarmRule``) the design with the precursor alarm (:mod:`.alarm`)."""
    desc, weights = description.load(Path(run_dir))
    if not desc.quantized:
        raise QlstmError(
            f"{run_dir}: not a quantized run; the rtl backend needs the output of qlstm quantize"
        )
    entry = cache_root() / _key(desc, weights, pipeline, alarm_rule)
    binary = entry / "sim" / "obj_dir" / f"V{TB}"
    if binary.is_file():
        return entry, None, desc
    sim.verilator_env()
    entry.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        d = api.with_alarm(api._verilog.pipeline(api._trace.trace(desc, weights), pipeline), alarm_rule)
        res = api.build(
            desc, weights, part="xc7z045ffg900-2", clock_ns=5.0, pipeline=pipeline, out=stage, traced_design=d
        )
        sim.build(stage)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(stage, entry)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return entry, res, desc


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64: the RTL's outputs in Verilator."""
    folder, _, desc = compiled(run_dir)
    q = desc.quantization  # type: ignore[attr-defined]
    xm = q.input.to_int(np.asarray(x, dtype=np.float64))
    with tempfile.TemporaryDirectory() as tmp:
        binary = folder / "sim" / "obj_dir" / f"V{TB}"
        r = sim.run(binary, folder, xm, q.input, q.output, desc.architecture.horizon, io_dir=Path(tmp))  # type: ignore[attr-defined]
    return q.output.to_float(r.y_m)


def alarm_stream(
    run_dir: Path,
    alarm_rule,
    xm: np.ndarray,
    clear: np.ndarray,
    constants,
    pipeline: float = api.DEFAULT_PIPELINE,
):
    """Run a stream of windows (N, L, C input-type mantissas; ``clear`` (N,) where a recording
    starts) through the run's RTL with the alarm in Verilator -> :class:`qlstm.rtl.alarm.AlarmSim`
    (outputs, alarm registers and cycles per window, measured in RTL simulation)."""
    from . import alarm

    folder, _, desc = compiled(run_dir, pipeline, alarm_rule)
    ad = alarm.trace_alarm(desc, alarm_rule)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        binary = folder / "sim" / "obj_dir" / f"V{TB}"
        return alarm.run(binary, folder, xm, clear, ad, constants, io_dir=Path(tmp))
