"""One trial of ``qlstm explore``, run as a Dask task on a worker: train, quantize, firmware_sim
RMSE on the held-out test windows, and the hls4ml latency/resource estimate.

The trial calls the stage functions ``qlstm run`` calls (train_run, quantize_run, Firmware,
hls.estimate) with the sections of a normal run config, and writes that config (``run.yaml``)
so the point can be reproduced with ``qlstm run --config run.yaml``.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from qlstm.errors import QlstmError

RUN_CONFIG_FILE = "run.yaml"
# C++ optimisation of the per-trial Verilator build: -O0 compiles faster than -O1 (measured in
# docs/explore.md) and the few simulated windows do not need a fast simulator
RTL_SIM_OPT = "-O0"


@dataclass(frozen=True)
class Context:
    """What every trial shares: the events file (built once per exploration), the folders, the
    target and the budget, and the space's fixed settings."""

    events: str  # the exploration's events.npz (one data step), read by every trial
    trials_dir: str
    target: str
    clock_ns: float
    budget_us: float
    settings: dict[str, Any]
    synthetic: bool  # the events are the synthetic default (then `qlstm run` reproduces a trial)
    threads: int = 1
    rtl: bool = False  # the RTL design (da4ml, Verilator cycles) instead of the hls4ml estimate


def run_config(params: dict[str, Any], ctx: Context):
    """The :class:`qlstm.run_config.RunConfig` of one point (searched params over fixed settings)."""
    from qlstm.data.synthetic import SyntheticConfig
    from qlstm.hls.config import HlsSection
    from qlstm.hls_config import HlsConfig
    from qlstm.quantize.policy import QuantizeConfig
    from qlstm.run_config import FirmwareSection, QuantizeSection, ReportSection, RunConfig
    from qlstm.train.config import DataConfig, ModelConfig, TrainConfig, TrainingConfig

    s = ctx.settings
    base = RunConfig()
    m = base.train.model
    cells = int(params.get("cells", m.layers[0]))
    layers = int(params.get("layers", len(m.layers)))
    train = TrainConfig(
        history=int(params.get("history", base.train.history)),
        horizon=int(s["horizon"]),
        data=DataConfig(max_train_windows=int(s["max_train_windows"]), max_eval_windows=int(s["max_eval_windows"])),
        model=ModelConfig(cell=params.get("cell", m.cell), layers=(cells,) * layers),
        training=TrainingConfig(
            epochs=int(s["epochs"]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
            patience=int(s["epochs"]), standardise="both", seed=int(s["seed"]),
        ),
    )  # fmt: skip
    groups = ("input_bits", "weight_bits", "bias_bits", "state_bits", "result_bits")
    method = params.get("method", "ptq")
    qat = (
        {"qat": dataclasses.replace(QuantizeConfig().qat, epochs=int(s["qat_epochs"]))}
        if method == "qat"
        else {}
    )
    quantize = QuantizeSection(
        method=method,
        bits=int(params.get("bits", base.quantize.bits)),
        **qat,  # a PTQ trial's run config names no QAT settings (they would be ignored: refused)
        **{g: int(params[g]) for g in groups if g in params},
    )
    hls = HlsSection(
        target=ctx.target,
        clock_ns=ctx.clock_ns,
        options=HlsConfig(
            strategy=params.get("strategy", "latency"), reuse_factor=int(params.get("reuse_factor", 1))
        ),
        csim=True,
    )
    data = SyntheticConfig(
        n_events=int(s["n_events"]), duration_s=float(s["duration_s"]), seed=int(s["seed"])
    )
    return RunConfig(
        data=data, train=train, quantize=quantize, hls=hls,
        firmware=FirmwareSection(), report=ReportSection(budget_us=ctx.budget_us, compare_methods=(), sweep=()),
    )  # fmt: skip


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, QlstmError):
        return str(exc).splitlines()[0] if str(exc) else "QlstmError"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}{where}"


def prepare_windows(history: int, ctx: Context):
    """The train/val/test windows of history ``history`` cut from the exploration's events (a
    :class:`qlstm.train.dataset.Prepared`): a Dask task run ONCE per distinct L, its result shared
    by every trial of that L. The other fields of a trial's config do not change the windows (the
    split, the window counts and the seeds are the space's fixed settings)."""
    from qlstm.train.dataset import heldout, prepare

    prep = prepare(run_config({"history": history}, ctx).train, Path(ctx.events))
    shared = Path(ctx.trials_dir).parent / "windows"
    shared.mkdir(parents=True, exist_ok=True)
    heldout(prep, history).save(shared / f"L{history}.npz")  # the shared artifact, one per L
    return prep


def run_trial(number: int, params: dict[str, Any], ctx: Context, prep: Any = None) -> dict[str, Any]:
    """Evaluate one point; returns ``{"ok": True, objectives and details}`` or ``{"ok": False,
    "error": one line}`` (a failing trial never raises, so the study goes on). ``prep``: the
    shared windows of the point's L (:func:`prepare_windows`), or None to cut them here."""
    t0 = time.perf_counter()
    try:
        return {"ok": True, **_evaluate(number, params, ctx, prep), "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - recorded as the trial's error line
        return {"ok": False, "error": _error_line(exc), "seconds": time.perf_counter() - t0}


def _evaluate(number: int, params: dict[str, Any], ctx: Context, prep: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    from qlstm import runs
    from qlstm.config import to_mapping
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.hls.estimate import estimate
    from qlstm.hls.targets import get_target
    from qlstm.hls_config import valid_reuse_factors
    from qlstm.io import atomic_write_text
    from qlstm.quantize.core import quantize_run
    from qlstm.train.trainer import train_run

    torch.set_num_threads(ctx.threads)
    cfg = run_config(params, ctx)
    cfg.train.architecture()  # L, k and sizes against the description's limits: one error line
    root = Path(ctx.trials_dir) / f"{number:05d}"
    float_dir = root / "train" / "float"
    q = cfg.quantize
    qdir = root / "quantize" / f"{q.method}{q.bits}"
    train_run(cfg.train, float_dir, Path(ctx.events), overwrite=True, prep=prep)
    quantize_run(float_dir, qdir, q.config(), dict(q.types), overwrite=True)
    qrun = runs.open_quant_run(qdir)
    desc, weights = qrun.load()
    # the searched reuse factor, mapped to the largest valid one <= it (hls4ml refuses the others)
    wanted = cfg.hls.options.reuse_factor
    rf = max(r for r in valid_reuse_factors(desc) if r <= wanted)
    options = dataclasses.replace(cfg.hls.options, reuse_factor=rf)
    cfg = dataclasses.replace(cfg, hls=dataclasses.replace(cfg.hls, options=options))
    test = qrun.heldout().test
    fw = Firmware(desc, weights, options).predict(test.x)
    rmse = runs.rmse_metrics(np.asarray(fw), test.y).rmse
    target = dataclasses.replace(get_target(ctx.target), clock_ns=ctx.clock_ns)
    if ctx.rtl:
        rtl = _rtl(root, desc, weights, test.x, target, float(params.get("pipeline_depth", 0)) or None, ctx)
    est = estimate(desc, target, options, weights)
    util = est.utilisation()
    resource_frac = max(util.values())
    text = yaml.safe_dump(to_mapping(cfg), sort_keys=False)
    atomic_write_text(root / RUN_CONFIG_FILE, f"# qlstm explore trial {number}: {params}\n" + text)
    if ctx.rtl:
        return {"rmse": float(rmse), **rtl, "float_rmse": float(qrun.metrics.float_test.rmse),
                "test_windows": len(test), "folder": str(root), "data_file": None if ctx.synthetic else ctx.events,
                "rtl_folder": str(root / "rtl"),
                "rtl_command": f"qlstm rtl {{out}}/quantize/{q.method}{q.bits} --target {ctx.target} --clock-ns "
                               f"{ctx.clock_ns:g} --pipeline {rtl['pipeline_depth']:g} --sim --out {{out}}/rtl"}  # fmt: skip
    return {
        "rmse": float(rmse),
        "latency_us": float(est.latency_us),
        "latency_kind": "estimate",
        "latency_source": "estimate (hls4ml latency estimator, hls/estimate)",
        "resource_frac": float(resource_frac),
        "resource_kind": "estimate (hls4ml resource estimator: LUT, FF, DSP, BRAM)",
        "fits": bool(est.fits and est.synthesisable),
        "meets_budget": bool(est.latency_us <= ctx.budget_us),
        "float_rmse": float(qrun.metrics.float_test.rmse),
        "quant_rmse_torch": float(qrun.metrics.test.rmse),
        "latency_cycles": int(est.latency_cycles),
        "reuse_factor_used": rf,
        "test_windows": len(test),
        "lut_frac": util["lut"], "ff_frac": util["ff"], "dsp_frac": util["dsp"], "bram_frac": util["bram_18k"],
        "folder": str(root),
        "data_file": None if ctx.synthetic else ctx.events,
    }  # fmt: skip


def _rtl(root: Path, desc, weights, x, target, depth: float | None, ctx: Context) -> dict[str, Any]:
    """The RTL design at da4ml latency cutoff ``depth``: LUT and register bits ESTIMATED by da4ml
    (no Yosys run: it takes up to tens of minutes per design); cycles MEASURED in Verilator on
    ``settings.rtl_windows`` held-out windows (every output checked against firmware_sim).

    A design that does not fit the part by that estimate cannot be on the front (the constraint
    fails whatever its latency), so it is not simulated: its latency is the pipeline schedule's
    cycle count (exact by construction, labelled ``estimate``), which saves the Verilator build
    (minutes for the large designs that do not fit)."""
    import numpy as np

    from qlstm.rtl import api

    d = api.DEFAULT_PIPELINE if depth is None else depth
    out = root / "rtl"
    out.mkdir(parents=True, exist_ok=True)
    res = api.build(
        desc, weights, part=target.part, clock_ns=ctx.clock_ns, pipeline=d, out=out, target=target.name
    )
    summary = res.summary()
    est = summary["da4ml_estimate"]
    cap = target.resources
    util = {"lut": est["lut"] / cap.lut, "ff": est["register_bits"] / cap.ff}
    fits = max(util.values()) <= 1.0
    if fits:
        idx = np.linspace(0, len(x) - 1, min(int(ctx.settings["rtl_windows"]), len(x))).astype(int)
        sim = api.simulate(res, x[idx], opt=RTL_SIM_OPT)
        if not sim["bit_exact"]:
            raise QlstmError(f"RTL simulation differs from firmware_sim on {sim['mismatches']} window(s)")
        cycles, kind, windows = int(sim["cycles_max"]), "measured", int(sim["windows"])
        source = "measured in RTL simulation (Verilator), the largest over the simulated windows"
    else:
        cycles, kind, windows = int(summary["cycles_by_construction"]), "estimate", 0
        source = (
            "da4ml pipeline schedule (by construction); not simulated: the design does not fit (estimate)"
        )
    return {
        "latency_us": cycles * ctx.clock_ns / 1000.0,
        "latency_kind": kind,
        "latency_source": source,
        "latency_cycles": cycles,
        "resource_frac": float(max(util.values())),
        "resource_kind": "estimate (da4ml LUT and register bits)",
        "fits": bool(fits),
        "meets_budget": bool(cycles * ctx.clock_ns / 1000.0 <= ctx.budget_us),
        "rtl_bit_exact_windows": windows,
        "pipeline_depth": float(d),
        "lut_frac": util["lut"], "ff_frac": util["ff"],
    }  # fmt: skip
