"""``qlstm run``: the main job, data -> train -> quantize -> export -> hls -> firmware -> rtl ->
detect -> report.

FINN-style: an explicit, ordered list of named steps ``step_x(cfg, run) -> outputs``. Each step
writes into its own folder ``RUN_ROOT/<step>/`` and, when it succeeded, a done-marker
``RUN_ROOT/<step>/.done.json`` holding the key of its inputs (its config section and the keys of
the steps it reads). Re-running skips a step whose marker key still matches; a changed config
section re-runs that step and everything downstream. ``--from STEP`` forces re-running from
STEP, ``--to STEP`` stops after STEP. Each step calls its stage's Python function with its
typed config section (:mod:`qlstm.run_config`); what flows between steps is the run folders,
read back through :mod:`qlstm.runs`. tests/test_pipeline.py drives ``qlstm run`` through the CLI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qlstm.config import to_mapping
from qlstm.errors import QlstmError
from qlstm.io import atomic_write_text, check_out_folder
from qlstm.run_config import RunConfig, load_run_config

DONE = ".done.json"
ROOT_MARKER = "qlstm-run.json"


# ----------------------------------------------------------------------------- run context
@dataclass
class Run:
    """The run folder and what each finished step produced (``outputs[step]``: paths as str)."""

    root: Path
    keys: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def dir(self, step: str) -> Path:
        return self.root / step


# ----------------------------------------------------------------------------- the steps
def step_data(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """Generate the synthetic events of ``cfg.data`` (:class:`SyntheticConfig`) into
    ``data/events.npz``; returns ``{"events": path}``. Raises QlstmError on a bad section."""
    from qlstm.data import generate, save_events

    out = run.dir("data") / "events.npz"
    es = generate(cfg.data)
    save_events(es, out)
    return {"events": str(out)}


def step_train(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """Train ``cfg.train`` on the data step's events into ``train/float`` (model.json,
    weights.npz, windows.npz: the held-out data every later step reads, metrics.json ...);
    returns ``{"float_run": path, "verdict": one line against the baselines}``."""
    from qlstm.train.trainer import train_run

    folder = run.dir("train") / "float"
    metrics = train_run(cfg.train, folder, Path(run.outputs["data"]["events"]), progress=False)
    return {"float_run": str(folder), "verdict": metrics.get("verdict", "")}


def step_quantize(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """Quantize the float run with ``cfg.quantize`` (its ``method`` is deployed), once more per
    ``report.compare_methods``, and sweep ``report.sweep`` widths (``report.sweep_methods``); returns the
    quantized run folders, the deployed one and the sweep CSV (None without a sweep)."""
    from qlstm.quantize import core

    q = cfg.quantize
    base = q.config()
    folder = run.dir("quantize")
    float_run = Path(run.outputs["train"]["float_run"])
    win = core.run_windows(float_run, core.load_float_run(float_run)[0])  # read once, shared
    runs: dict[str, str] = {}
    for method in dict.fromkeys((*cfg.report.compare_methods, q.method)):  # ordered, no repeats
        out = folder / f"{method}{q.bits}"
        core.quantize_run(float_run, out, replace(base, method=method), q.types, win=win)
        runs[method] = str(out)
    outputs: dict[str, Any] = {"runs": runs, "deploy": runs[q.method], "sweep_csv": None}
    if cfg.report.sweep:
        sweep_dir = folder / "sweep"
        core.sweep(float_run, sweep_dir, cfg.report.sweep, base, cfg.report.sweep_methods, win=win)
        outputs["sweep_csv"] = str(sweep_dir / "sweep.csv")
    return outputs


def step_export(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """ONNX of the float run and QONNX of the deployed quantized run, each executed and checked
    against its reference before it is written (:func:`qlstm.export.api.export`)."""
    from qlstm.export.api import export

    folder = run.dir("export")
    folder.mkdir(parents=True, exist_ok=True)
    onnx_file = export(Path(run.outputs["train"]["float_run"]), "onnx", folder / "model.onnx")
    qonnx_file = export(Path(run.outputs["quantize"]["deploy"]), "qonnx", folder / "model.qonnx.onnx")
    return {"onnx": str(onnx_file), "qonnx": str(qonnx_file)}


def step_hls(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """The hls4ml project of the deployed quantized run for ``cfg.hls`` (target, HlsConfig
    options, test bench from the held-out windows, C simulation if ``hls.csim``) in
    ``hls/project``; its ``qlstm_hls.json`` records the options for the firmware step."""
    from qlstm.hls.project import generate

    h = cfg.hls
    out = run.dir("hls") / "project"
    generate(Path(run.outputs["quantize"]["deploy"]), out, h.resolve_target(), h.options,
             tb_count=h.tb_count, csim=h.csim, csim_windows=h.csim_windows)  # fmt: skip
    return {"project": str(out)}


def step_firmware(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """firmware_sim against the compiled C simulation of the project the hls step generated (its
    own HlsConfig, part and clock) on ``firmware.windows`` held-out test windows: exact equality
    of every output, and both RMSEs; writes ``firmware/firmware_check.json``, and each backend's
    predictions on the quench trace for the report's figure (``trace_predictions.npz``)."""
    import numpy as np

    from qlstm import runs
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.hls.csim import build_csim

    project = runs.read_hls_project(Path(run.outputs["hls"]["project"]))
    qrun = runs.open_quant_run(Path(run.outputs["quantize"]["deploy"]))
    test = qrun.heldout().test
    desc, weights = qrun.load()
    idx = np.linspace(0, len(test) - 1, min(cfg.firmware.windows, len(test))).astype(int)
    x, y = test.x[idx], test.y[idx]
    fw = Firmware(desc, weights, project.config).predict(x)  # the project's options, modelled
    cs = build_csim(desc, weights, project.config, part=project.part, clock_ns=project.clock_ns).predict(x)
    check = {
        "available": True,
        **runs.compare(fw, cs, desc.quantization.output.lsb).to_dict(),
        "hls_options": project.config.to_dict(),
        "firmware_rmse": runs.rmse_metrics(fw, y).rmse,
        "csim_rmse": runs.rmse_metrics(cs, y).rmse,
    }
    path = run.dir("firmware") / runs.FIRMWARE_CHECK_FILE
    runs.write_json(path, check)
    out = {"check": str(path), "bit_exact": check["bit_exact"], "trace": None}
    trace = qrun.heldout().trace
    if trace is not None:  # the report's quench figure: each backend once, here, not in the report
        from qlstm.predict import run_backend

        q = desc.quantization
        float_run = Path(run.outputs["train"]["float_run"])
        curves = (("float", "float", float_run), (f"{q.method} {q.bits}-bit", "quant", qrun.path),
                  ("firmware_sim", "firmware", qrun.path))  # fmt: skip
        preds = {name: run_backend(b, r, trace.x) for name, b, r in curves}
        out["trace"] = str(run.dir("firmware") / runs.TRACE_PREDICTIONS_FILE)
        runs.save_trace_predictions(Path(out["trace"]), preds)
    return out


def step_rtl(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """RTL of the deployed quantized run for the hls step's target and clock (:mod:`rtl.api`):
    da4ml trace at ``rtl.pipeline`` (or the cutoff meeting ``rtl.budget_us``), Verilator simulation
    of ``rtl.windows`` held-out test windows (cycles measured, outputs compared exactly with
    firmware_sim), Yosys synthesis if ``rtl.synth``; writes ``rtl/rtl.json`` and the sources.
    Returns ``{"rtl": folder or None, "bit_exact": ...}``. Raises QlstmError when Verilator or
    Yosys is missing (before anything is written) or the part has no Yosys family."""
    import numpy as np

    from qlstm import runs
    from qlstm.rtl import api

    r = cfg.rtl
    if not r.enabled:
        return {"rtl": None, "bit_exact": None, "note": "rtl.enabled is false"}
    from qlstm.rtl.sim import verilator_env

    tgt = cfg.hls.resolve_target()
    verilator_env()  # the tools are checked before any work
    if r.synth:
        from qlstm.rtl.synth import _yosys, yosys_family

        yosys_family(tgt.part)
        _yosys()
    qrun = runs.open_quant_run(Path(run.outputs["quantize"]["deploy"]))
    desc, weights = qrun.load()
    test = qrun.heldout().test
    idx = np.linspace(0, len(test) - 1, min(r.windows, len(test))).astype(int)
    rows = None
    cap = {"lut": tgt.resources.lut, "ff": tgt.resources.ff, "dsp": tgt.resources.dsp,
           "bram_18k": tgt.resources.bram_18k}  # fmt: skip
    if r.budget_us is not None:
        d, rows = api.choose_pipeline(desc, weights, r.budget_us, tgt.clock_ns, capacity=cap)
    else:
        d = api.design(desc, weights, r.pipeline)
    out = run.dir("rtl")
    res = api.build(desc, weights, part=tgt.part, clock_ns=tgt.clock_ns, out=out, target=tgt.name,
                    capacity=cap, traced_design=d)  # fmt: skip
    res.budget_us, res.candidates = r.budget_us, rows
    res.windows_source = f"{len(idx):,} held-out test windows of {qrun.path}"
    # Yosys (one thread) runs beside the Verilator build: on 2 cores the step takes the longer of
    # the two, not their sum (docs/architecture.md has the measured times).
    try:
        sim = beside(
            (lambda: api.synthesize(res)) if r.synth else None,
            lambda: api.simulate(res, test.x[idx], jobs=r.jobs),
        )
    except QlstmError as exc:  # the folder goes: its tool's log is kept beside it (rtl.verilator.log ...)
        raise api.keep_log(exc, out) from None
    res.write_json()  # after both: each wrote its own half while the other was running
    return {"rtl": str(out), "bit_exact": sim["bit_exact"]}


def beside(side: Callable[[], Any] | None, main: Callable[[], Any]) -> Any:
    """``main()`` in this thread while ``side()`` (if given) runs in a worker thread; returns
    ``main``'s result once both finished, re-raising a failure of either.

    When ``main`` fails or is interrupted (Ctrl-C, SIGTERM: Python delivers them to this thread
    only), the tools ``side`` runs through :func:`qlstm.io.run_tool` are killed
    (:func:`qlstm.io.tools_stopped`) rather than awaited: the rtl step waited 146 s for Yosys after
    a Ctrl-C, and a second Ctrl-C left it running with parent pid 1 (a user's trial, 2026-12-01)."""
    from concurrent.futures import ThreadPoolExecutor

    from qlstm.io import tools_stopped

    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(side) if side is not None else None
        try:
            out = main()
            if fut is not None:
                fut.result()  # re-raises the side's failure
        except BaseException:
            with tools_stopped():  # the side's failure (it was killed) is not the one to report
                pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out


def step_detect(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """Quench-precursor detection with the deployed quantized run (firmware backend, which also
    scores the float model) and the baselines (persistence, linear AR, plain voltage threshold):
    thresholds calibrated on the training events' normal running for ``detect.false_alarms_per_day``,
    scored on the held-out events of the data step (which carries the anomaly labels); writes
    ``detect/detection.json`` and the plots (:func:`qlstm.detect.run.write`)."""
    from qlstm.detect.alarm import AlarmRule
    from qlstm.detect.run import DetectConfig, detect, write

    d = cfg.detect
    if not d.enabled:
        return {"detect": None, "note": "detect.enabled is false"}
    dc = DetectConfig(rule=AlarmRule(score=d.score, min_run=d.min_run),
                      false_alarms_per_day=d.false_alarms_per_day, backend="firmware")  # fmt: skip
    events = Path(run.outputs["data"]["events"])
    result = detect(Path(run.outputs["quantize"]["deploy"]), events, cfg=dc)
    if not result.labelled:
        raise QlstmError(
            f"{events}: the data step's events carry no anomaly labels; set detect.enabled: false"
        )
    out = run.dir("detect")
    write(result, out, overwrite=True, plots=d.plots)
    return {"detect": str(out)}


def step_report(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """The run report (Markdown, self-contained HTML, summary.json) from the steps' files, read
    through :mod:`qlstm.runs`: no data preparation, no backend run, no C simulation, no estimate
    (the hls step's ``estimate.json`` holds them)."""
    from qlstm.report.build import write_report

    q = run.outputs["quantize"]
    others = [Path(p) for m, p in q["runs"].items() if p != q["deploy"]]
    fw = run.outputs.get("firmware", {})
    out = write_report(
        Path(q["deploy"]), run.dir("report"), overwrite=True, budget_us=cfg.report.budget_us, others=others,
        sweep_csv=Path(q["sweep_csv"]) if q.get("sweep_csv") else None,
        firmware_check_file=Path(fw["check"]) if fw.get("check") else None,
        trace_predictions_file=Path(fw["trace"]) if fw.get("trace") else None,
        hls_dir=_step_folder(run, "hls", "project"),
        rtl_dir=_step_folder(run, "rtl", "rtl"), detect_dir=_step_folder(run, "detect", "detect"),
    )  # fmt: skip
    return {
        "report": str(out / "report.md"),
        "html": str(out / "report.html"),
        "summary": str(out / "summary.json"),
    }


def _step_folder(run: Run, step: str, key: str) -> Path | None:
    p = run.outputs.get(step, {}).get(key)
    return Path(p) if p else None


StepFn = Callable[[RunConfig, Run], dict[str, Any]]
#: The ordered steps: (name, function, config sections it reads, steps it reads).
STEPS: tuple[tuple[str, StepFn, tuple[str, ...], tuple[str, ...]], ...] = (
    ("data", step_data, ("data",), ()),
    ("train", step_train, ("train",), ("data",)),
    ("quantize", step_quantize, ("quantize", "report"), ("train",)),
    ("export", step_export, (), ("train", "quantize")),
    ("hls", step_hls, ("hls",), ("quantize",)),
    ("firmware", step_firmware, ("firmware",), ("train", "quantize", "hls")),
    ("rtl", step_rtl, ("hls", "rtl"), ("quantize",)),
    ("detect", step_detect, ("detect",), ("data", "quantize")),
    ("report", step_report, ("report",), ("train", "quantize", "hls", "firmware", "rtl", "detect")),
)
STEP_NAMES = tuple(s[0] for s in STEPS)


def _key(cfg: RunConfig, name: str, sections: tuple[str, ...], deps: tuple[str, ...], run: Run) -> str:
    from qlstm import __version__

    payload = {
        "step": name,
        "version": __version__,
        "config": {s: to_mapping(getattr(cfg, s)) for s in sections},
        "inputs": {d: run.keys.get(d) for d in deps},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_done(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _prepare_root(root: Path) -> None:
    """RUN_ROOT must be new, empty, or a folder this command made (it deletes step folders)."""
    if root.exists() and any(root.iterdir()) and not (root / ROOT_MARKER).is_file():
        raise QlstmError(f"{root} is not empty and is not a `qlstm run` folder; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ROOT_MARKER).is_file():
        atomic_write_text(root / ROOT_MARKER, json.dumps({"kind": "qlstm run", "steps": STEP_NAMES}) + "\n")


def _aside(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.previous"


def _set_aside(folder: Path) -> Path | None:
    """Move a step's last result out of the way (``RUN_ROOT/.<step>.previous``) before the step
    runs again; :func:`execute` puts it back if the step fails or is interrupted, so a failed step
    never leaves its folder empty or half-written under a report that presents it (a new user's
    trial of issue #16: an unreachable ``rtl.budget_us`` deleted ``rtl/`` under the old report).
    A copy left by a killed process is put back first when the step's folder has no done-marker;
    a folder without one (partial) is deleted, not kept."""
    aside = _aside(folder)
    if aside.exists():
        if (folder / DONE).is_file():
            shutil.rmtree(aside)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(aside, folder)
    if folder.exists() and not (folder / DONE).is_file():
        shutil.rmtree(folder)  # a partial result (no done-marker): nothing to keep
    if not folder.exists():
        return None
    os.replace(folder, aside)
    return aside


def _remove_dependents(root: Path, name: str) -> None:
    """Delete the folders of the steps that read step ``name``'s result, directly or not: once
    ``name`` has a new result they are stale (they run again after it, or, stopped by ``--to``,
    are absent rather than describing a result that is gone)."""
    stale = {name}
    for step, _fn, _sections, deps in STEPS:
        if stale.intersection(deps):
            stale.add(step)
            shutil.rmtree(root / step, ignore_errors=True)


def execute(cfg: RunConfig, root: Path, start: str | None = None, stop: str | None = None, echo=print) -> Run:
    """Run the steps in order, skipping those already done with the same inputs."""
    for name in (start, stop):
        if name is not None and name not in STEP_NAMES:
            raise QlstmError(f"unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
    i_start = STEP_NAMES.index(start) if start else 0
    i_stop = STEP_NAMES.index(stop) if stop else len(STEPS) - 1
    if i_stop < i_start:
        raise QlstmError(f"--to {stop} comes before --from {start}")
    check_out_folder(root, overwrite=True)  # a file, /proc, a read-only place; a resumed run is non-empty
    root = Path(root).resolve()
    _prepare_root(root)
    run = Run(root)
    t_all = time.perf_counter()
    for i, (name, fn, sections, deps) in enumerate(STEPS):
        if i > i_stop:
            break
        key = _key(cfg, name, sections, deps, run)
        done = _read_done(run.dir(name))
        tag = f"[{i + 1}/{len(STEPS)}] {name:<9}"
        if i < i_start:
            if done is None or done.get("key") != key:
                raise QlstmError(
                    f"--from {start}: step {name} has not been run with this config in {root}; run without --from"
                )
            run.keys[name], run.outputs[name] = key, done["outputs"]
            echo(f"{tag} reused (before --from)")
            continue
        if start is None and done is not None and done.get("key") == key:
            run.keys[name], run.outputs[name] = key, done["outputs"]
            echo(f"{tag} up to date, skipped ({done['seconds']:.1f} s when run)")
            continue
        folder = run.dir(name)
        previous = _set_aside(folder)  # the last result stays until this run of the step succeeds
        folder.mkdir(parents=True)
        echo(f"{tag} running ...")
        t0 = time.perf_counter()
        try:
            outputs = fn(cfg, run)
            seconds = time.perf_counter() - t0
            atomic_write_text(
                folder / DONE, json.dumps({"key": key, "outputs": outputs, "seconds": seconds}) + "\n"
            )
        except BaseException:  # failed or interrupted (Ctrl-C): the run folder as it was before the step
            shutil.rmtree(folder, ignore_errors=True)
            if previous is not None:
                os.replace(previous, folder)
            raise
        if previous is not None:
            shutil.rmtree(previous)
        _remove_dependents(root, name)
        run.keys[name], run.outputs[name] = key, outputs
        echo(f"{tag} done in {seconds:.1f} s (total {time.perf_counter() - t_all:.0f} s)")
    return run


def summary_lines(run: Run) -> list[str]:
    rep = run.outputs.get("report")
    if rep is None:
        return [f"run folder: {run.root} (stopped before the report)"]
    s = json.loads(Path(rep["summary"]).read_text())
    lines = [f"report: {rep['report']}", f"        {rep['html']} (self-contained)"]
    for name, v in s["rmse"].items():
        lines.append(f"  test RMSE {name:<22} {v:.4g}")
    if run.outputs.get("train", {}).get("verdict"):
        lines.append(f"  {run.outputs['train']['verdict']}")
    be = s.get("bit_exact", {})
    if be.get("available"):
        lines.append(
            f"  firmware_sim vs csim: {'BIT-EXACT' if be['bit_exact'] else 'NOT bit-exact'} "
            f"({be['equal']}/{be['outputs']} outputs equal)"
        )
    for rec in s.get("latency", []):
        lines.append(f"  {rec['target']} @ {rec['clock_mhz']:g} MHz: {rec['verdict']}")
    r = s.get("rtl")
    if r and r.get("cycles_max") is not None:
        from qlstm.runs import rtl_verdict  # the network's outputs and the alarm apart

        ex = "BIT-EXACT" if r["bit_exact"] else rtl_verdict(r)
        line = (f"  RTL {r['target'] or r['part']}: {r['cycles_max']} cycles measured in Verilator = "
                f"{r['latency_us']:.3f} us at an assumed {r['clock_ns']:g} ns clock, {ex} vs firmware_sim "
                f"on {r['windows']} windows ({r.get('windows_source') or 'source not recorded'})")  # fmt: skip
        if r.get("lut") is not None:
            line += (
                f"; Yosys (not placed) {r['lut']:,} LUT, {r['ff']:,} FF, {r['dsp']} DSP, {r['bram18']} BRAM18"
            )
            line += f" ({'fits' if r.get('fits') else 'does NOT fit'})" if r.get("fits") is not None else ""
        if r.get("budget_us") is not None:  # the RTL's own budget and rtl.json's verdict on it
            met = {True: "met", False: "MISSED"}.get(r.get("budget_met"), "not measured")
            line += f"; rtl.budget_us {r['budget_us']:g} us: {met}"
        lines.append(line)
    d = s.get("detection")
    if d:
        for name, sc in (("firmware", d["model"]), ("float", d.get("float")), *d["baselines"].items()):
            if sc and sc.get("detection_rate") is not None:
                lead = sc["median_lead_time_s"]
                lines.append(
                    f"  detection (simulated) {name:<17}: {100 * sc['detection_rate']:.0f} % of precursors, "
                    f"{sc['false_alarms_per_day']:.2f} false alarms/day, median lead "
                    f"{'n/a' if lead is None else f'{lead:.0f} s'}"
                )
    return lines


# ----------------------------------------------------------------------------- CLI
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: data -> train -> quantize -> export -> hls -> firmware -> rtl -> detect -> report",
        description=(
            "The main job on the synthetic default: data -> train -> quantize -> export -> hls (C simulation) "
            "-> firmware check -> rtl (Verilator cycles, Yosys resources) -> detect (precursor alarms) -> report, as named, resumable steps in one run folder. Re-running skips the "
            f"steps whose inputs did not change. Steps: {', '.join(STEP_NAMES)}."
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a qlstm config file, one typed section per stage: data, train, quantize, hls, firmware, rtl, detect, "
        "report (default: configs/run_default.yaml; unknown keys, and keys the run would ignore, are errors)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/default"), help="run folder (default runs/default)")
    p.add_argument("--from", dest="start", choices=STEP_NAMES, help="re-run from this step on")
    p.add_argument("--to", dest="stop", choices=STEP_NAMES, help="stop after this step")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config)
    t0 = time.perf_counter()
    result = execute(cfg, args.out, args.start, args.stop, echo=lambda m: print(m, flush=True))
    print(f"qlstm run finished in {time.perf_counter() - t0:.0f} s; run folder {result.root}")
    print("\n".join(summary_lines(result)))
    sys.stdout.flush()
    return 0
