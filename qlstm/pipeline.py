"""``qlstm run``: the main job, data -> train -> quantize -> export -> hls -> firmware -> report.

FINN-style: an explicit, ordered list of named steps ``step_x(cfg, run) -> outputs``. Each step
writes into its own folder ``RUN_ROOT/<step>/`` and, when it succeeded, a done-marker
``RUN_ROOT/<step>/.done.json`` holding the key of its inputs (its config section and the keys of
the steps it reads). Re-running skips a step whose marker key still matches; a changed config
section re-runs that step and everything downstream. ``--from STEP`` forces re-running from
STEP, ``--to STEP`` stops after STEP. Each stage is called through its own CLI entry
(``qlstm.cli.main``), exactly as a user would call it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qlstm.config import from_mapping, read_yaml, to_mapping
from qlstm.errors import QlstmError
from qlstm.io import atomic_write_text

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "run_default.yaml"
DONE = ".done.json"
ROOT_MARKER = "qlstm-run.json"


# ----------------------------------------------------------------------------- configuration
#: The default `train` section: the compact model (configs/run_default.yaml repeats it).
COMPACT_TRAIN: dict[str, Any] = {
    "history": 16,
    "horizon": 4,
    "model": {"cell": "lstm", "layers": [32]},
    "training": {"epochs": 30, "batch_size": 64, "lr": 0.003, "patience": 30, "standardise": "both"},
    "data": {"max_train_windows": 40000, "max_eval_windows": 10000},
}


@dataclass(frozen=True)
class DataSection:
    """Synthetic events (``qlstm data generate``); modelled on the paper, not CERN data."""

    events: int = 20
    samples: int = 9000  # per event, at 0.4 s (1 h before the quench)
    seed: int = 0
    channels: tuple[str, ...] = ("U_res",)


@dataclass(frozen=True)
class QuantizeSection:
    bits: int = 8
    methods: tuple[Literal["ptq", "qat"], ...] = ("ptq", "qat")
    #: the quantised run taken on to hls/firmware/report (one of ``methods``)
    deploy: Literal["ptq", "qat"] = "qat"
    qat_epochs: int | None = 3  # None: quantize's default
    sweep: tuple[int, ...] = (6, 8, 12, 16)  # widths of the PTQ/QAT sweep (empty: no sweep)


@dataclass(frozen=True)
class HlsSection:
    target: str = "zynq7045"
    clock_ns: float = 5.0
    reuse: int = 1
    strategy: Literal["latency", "resource"] = "latency"


@dataclass(frozen=True)
class FirmwareSection:
    windows: int = 500  # held-out windows compared between firmware_sim and the C simulation


@dataclass(frozen=True)
class ReportSection:
    budget_us: float = 1.0


@dataclass(frozen=True)
class RunConfig:
    data: DataSection = field(default_factory=DataSection)
    #: a `qlstm train` config (see configs/ and train/config.py); validated by train itself
    train: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(COMPACT_TRAIN))
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    hls: HlsSection = field(default_factory=HlsSection)
    firmware: FirmwareSection = field(default_factory=FirmwareSection)
    report: ReportSection = field(default_factory=ReportSection)

    def __post_init__(self) -> None:
        if self.quantize.deploy not in self.quantize.methods:
            raise QlstmError(f"quantize.deploy={self.quantize.deploy!r} is not in quantize.methods")
        if self.data.events < 3 or self.data.samples < 100:
            raise QlstmError("data.events must be >= 3 and data.samples >= 100")


def load_run_config(path: Path | None) -> RunConfig:
    """``path``, or configs/run_default.yaml when there (a source checkout), else the built-in
    defaults, which are the same settings."""
    if path is None and not DEFAULT_CONFIG.is_file():
        cfg = RunConfig()
    else:
        path = DEFAULT_CONFIG if path is None else Path(path)
        cfg = from_mapping(RunConfig, read_yaml(path), where=str(path))
    from qlstm.train.config import load_config  # the train section is validated by train itself

    load_config(None, cfg.train)
    return cfg


# ----------------------------------------------------------------------------- run context
@dataclass
class Run:
    root: Path
    keys: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def dir(self, step: str) -> Path:
        return self.root / step


def _cli(argv: list[str]) -> None:
    """Run one stage through the CLI entry; its one-line error becomes ours."""
    from qlstm.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: unknown option of a stage (its usage went to stderr)
        code = exc.code if isinstance(exc.code, int) else 2
    if code != 0:
        raise QlstmError(f"step failed: `qlstm {' '.join(map(str, argv))}` exited with status {code}")


# ----------------------------------------------------------------------------- the steps
def step_data(cfg: RunConfig, run: Run) -> dict[str, Any]:
    out = run.dir("data") / "events.npz"
    d = cfg.data
    _cli(["data", "generate", "--out", out, "--events", d.events, "--samples", d.samples, "--seed", d.seed,
          "--channels", ",".join(d.channels)])  # fmt: skip
    return {"events": str(out)}


def step_train(cfg: RunConfig, run: Run) -> dict[str, Any]:
    import yaml

    folder = run.dir("train")
    cfg_file = run.root / "train_config.yaml"
    train_cfg = {**cfg.train, "data": {**cfg.train.get("data", {}), "channels": list(cfg.data.channels)}}
    atomic_write_text(cfg_file, yaml.safe_dump(train_cfg, sort_keys=False))
    _cli(["train", "--data", run.outputs["data"]["events"], "--config", cfg_file, "--out", folder / "float",
          "--no-progress"])  # fmt: skip
    metrics = json.loads((folder / "float" / "metrics.json").read_text())
    return {"float_run": str(folder / "float"), "verdict": metrics.get("verdict", "")}


def step_quantize(cfg: RunConfig, run: Run) -> dict[str, Any]:
    q = cfg.quantize
    folder = run.dir("quantize")
    float_run = run.outputs["train"]["float_run"]
    qat_epochs = ["--epochs", q.qat_epochs] if q.qat_epochs is not None else []  # for QAT runs and the sweep
    runs = {}
    for method in q.methods:
        out = folder / f"{method}{q.bits}"
        argv = ["quantize", float_run, "--bits", q.bits, "--method", method, "--out", out, "--no-progress"]
        _cli(argv + (qat_epochs if method == "qat" else []))
        runs[method] = str(out)
    out = {"runs": runs, "deploy": runs[q.deploy], "sweep_csv": None}
    if q.sweep:
        sweep_dir = folder / "sweep"
        _cli(
            [
                "quantize",
                float_run,
                "--sweep",
                ",".join(map(str, q.sweep)),
                "--out",
                sweep_dir,
                "--no-progress",
                *qat_epochs,
            ]
        )
        found = sorted(sweep_dir.glob("*.csv"))
        out["sweep_csv"] = str(found[0]) if found else None
    return out


def step_export(cfg: RunConfig, run: Run) -> dict[str, Any]:
    folder = run.dir("export")
    folder.mkdir(parents=True, exist_ok=True)
    onnx_file, qonnx_file = folder / "model.onnx", folder / "model.qonnx.onnx"
    _cli(["export", run.outputs["train"]["float_run"], "--format", "onnx", "--out", onnx_file])
    _cli(["export", run.outputs["quantize"]["deploy"], "--format", "qonnx", "--out", qonnx_file])
    return {"onnx": str(onnx_file), "qonnx": str(qonnx_file)}


def step_hls(cfg: RunConfig, run: Run) -> dict[str, Any]:
    h = cfg.hls
    out = run.dir("hls") / "project"
    _cli(["hls", run.outputs["quantize"]["deploy"], "--target", h.target, "--clock-ns", h.clock_ns,
          "--reuse", h.reuse, "--strategy", h.strategy, "--out", out, "--csim"])  # fmt: skip
    return {"project": str(out)}


def step_firmware(cfg: RunConfig, run: Run) -> dict[str, Any]:
    """firmware_sim against the compiled hls4ml C simulation on held-out windows: exact equality."""
    import numpy as np

    from qlstm import description
    from qlstm.predict import run_backend
    from qlstm.report.build import compare_outputs, rebuild_test

    qrun = Path(run.outputs["quantize"]["deploy"])
    tw = rebuild_test(Path(run.outputs["train"]["float_run"]))
    if tw is None:
        raise QlstmError("firmware step: the held-out windows of the float run cannot be rebuilt")
    x, y = tw[0], tw[1]
    idx = np.linspace(0, len(x) - 1, min(cfg.firmware.windows, len(x))).astype(int)
    fw = run_backend("firmware", qrun, x[idx])
    cs = run_backend("csim", qrun, x[idx])
    desc, _ = description.load(qrun)
    check = compare_outputs(fw, cs, desc.quantisation.dense.result.lsb)
    check["firmware_rmse"] = float(np.sqrt(np.mean((fw - y[idx]) ** 2)))
    check["csim_rmse"] = float(np.sqrt(np.mean((cs - y[idx]) ** 2)))
    path = run.dir("firmware") / "firmware_check.json"
    atomic_write_text(path, json.dumps(check, indent=2) + "\n")
    return {"check": str(path), "bit_exact": check["bit_exact"]}


def step_report(cfg: RunConfig, run: Run) -> dict[str, Any]:
    from qlstm.report.build import write_report

    q = run.outputs["quantize"]
    others = [Path(p) for m, p in q["runs"].items() if p != q["deploy"]]
    fw = run.outputs.get("firmware", {}).get("check")
    out = write_report(
        Path(q["deploy"]), run.dir("report"), overwrite=True, budget_us=cfg.report.budget_us, others=others,
        sweep_csv=Path(q["sweep_csv"]) if q.get("sweep_csv") else None,
        firmware_check_file=Path(fw) if fw else None,
    )  # fmt: skip
    return {
        "report": str(out / "report.md"),
        "html": str(out / "report.html"),
        "summary": str(out / "summary.json"),
    }


StepFn = Callable[[RunConfig, Run], dict[str, Any]]
#: The ordered steps: (name, function, config sections it reads, steps it reads).
STEPS: tuple[tuple[str, StepFn, tuple[str, ...], tuple[str, ...]], ...] = (
    ("data", step_data, ("data",), ()),
    ("train", step_train, ("train",), ("data",)),
    ("quantize", step_quantize, ("quantize",), ("train",)),
    ("export", step_export, (), ("train", "quantize")),
    ("hls", step_hls, ("hls",), ("quantize",)),
    ("firmware", step_firmware, ("firmware",), ("train", "quantize", "hls")),
    ("report", step_report, ("report",), ("train", "quantize", "firmware")),
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


def execute(cfg: RunConfig, root: Path, start: str | None = None, stop: str | None = None, echo=print) -> Run:
    """Run the steps in order, skipping those already done with the same inputs."""
    for name in (start, stop):
        if name is not None and name not in STEP_NAMES:
            raise QlstmError(f"unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
    i_start = STEP_NAMES.index(start) if start else 0
    i_stop = STEP_NAMES.index(stop) if stop else len(STEPS) - 1
    if i_stop < i_start:
        raise QlstmError(f"--to {stop} comes before --from {start}")
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
        if folder.exists():
            shutil.rmtree(folder)  # a stale or partial result of this step, inside our run folder
        folder.mkdir(parents=True)
        echo(f"{tag} running ...")
        t0 = time.perf_counter()
        outputs = fn(cfg, run)
        seconds = time.perf_counter() - t0
        atomic_write_text(
            folder / DONE, json.dumps({"key": key, "outputs": outputs, "seconds": seconds}) + "\n"
        )
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
    return lines


# ----------------------------------------------------------------------------- CLI
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: data -> train -> quantize -> export -> hls -> firmware -> report",
        description=(
            "The main job on the synthetic default: data -> train -> quantize -> export -> hls (C simulation) "
            "-> firmware check -> report, as named, resumable steps in one run folder. Re-running skips the "
            f"steps whose inputs did not change. Steps: {', '.join(STEP_NAMES)}."
        ),
    )
    p.add_argument("--config", type=Path, help="run config YAML (default: configs/run_default.yaml)")
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
