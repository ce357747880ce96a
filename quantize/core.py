"""The quantize stage: float run folder in, quantized run folder (or a bit-width sweep) out.

Steps (each a function of the previous outputs): :func:`load_float_run` -> :func:`run_windows`
(the very windows the float run was trained and tested on, read from its ``windows.npz``) ->
:func:`~qlstm.quantize.model.profile` on the training windows -> :func:`~qlstm.quantize.policy.choose_types` (PTQ) -> optionally
:func:`~qlstm.quantize.qat.fine_tune` -> :func:`evaluate` -> :func:`write_run` through
:func:`qlstm.io.staged_dir`.

One firmware forward. :func:`evaluate` runs the PTQ and QAT models through
:class:`qlstm.firmware_sim.simulate.Firmware`, the bit-exact simulator of the hls4ml firmware,
and nothing in this stage recomputes the firmware arithmetic (torch keeps only QAT's trainable
forward, :class:`~qlstm.quantize.model.QuantNet`). This is the one import of a later stage
here, and it is by design: ``firmware_sim`` is the project's reference semantics of hls4ml, a
library layer below quantize, export and hls (its simulator imports only the core:
``qlstm.fixedpoint``, ``qlstm.description``, ``qlstm.hls4ml_tables``), which the
``qlstm firmware`` commands also expose as a stage. hls4ml's table semantics and the float
reference that profiling uses are in the core (:mod:`qlstm.hls4ml_tables`,
:mod:`qlstm.float_reference`), not in ``firmware_sim``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description, runs
from qlstm.config import to_mapping
from qlstm.description import (
    Architecture,
    DenseQuant,
    ModelDescription,
    Quantization,
    RecurrentQuant,
    head_name,
)
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.float_reference import float_predict
from qlstm.io import atomic_path, atomic_write_bytes, atomic_write_text, check_out_folder, staged_dir
from qlstm.quantize.model import Profile, profile, quantized_weights
from qlstm.quantize.policy import QuantizeConfig, choose_types, input_weight_ranges

log = logging.getLogger(__name__)

PARENT_FILE = runs.PARENT_FILE
METRICS_FILE = runs.METRICS_FILE
CONFIG_FILE = runs.CONFIG_FILE
DATA_FILE = runs.DATA_FILE


@dataclass(frozen=True)
class Windows:
    """Normalised windows of the float run: x (N, L, C), y (N, k) per split."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def load_float_run(run_dir: Path) -> tuple[ModelDescription, dict[str, np.ndarray]]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise QlstmError(f"{run_dir}: run folder not found")
    desc, weights = description.load(run_dir)
    if desc.quantized:
        raise QlstmError(f"{run_dir}: already a quantized run; quantize its float parent instead")
    from qlstm.train.backend import check_checkpoint

    check_checkpoint(run_dir, weights)  # as `qlstm predict --backend float` does: a truncated one is refused
    return desc, weights


def run_windows(run_dir: Path, desc: ModelDescription) -> Windows:
    """The float run's train/val/test windows, as training saved them (``windows.npz``).

    Raises QlstmError when the run has no ``windows.npz`` (written before qlstm stored it) or
    when its windows do not fit the model (another L, k or channel count).
    """
    held = runs.open_float_run(run_dir).heldout()
    a = desc.architecture
    for name in runs.SPLITS:
        sp = getattr(held, name)
        if sp.x.shape[1:] != (a.history, a.input_channels) or sp.y.shape[1:] != (a.horizon,):
            raise QlstmError(
                f"{Path(run_dir) / runs.WINDOWS_FILE}: {name} windows {sp.x.shape} -> {sp.y.shape} do not fit "
                f"the model (L={a.history}, C={a.input_channels}, k={a.horizon})"
            )
    return Windows((held.train.x, held.train.y), (held.val.x, held.val.y), (held.test.x, held.test.y))


def rmse_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """:func:`qlstm.runs.rmse_metrics` as the JSON mapping ``metrics.json`` holds."""
    return runs.rmse_metrics(pred, y).to_dict()


def apply_type_overrides(q: Quantization, types: dict[str, str]) -> Quantization:
    """Replace named points (``rnn0.state``, ``head.accum``, ``input``, ``rnn1.table``,
    ``dense0.act_result``, ``head.table`` ...).

    ``*`` names every point except the tables (as hls4ml's model-wide default precision, which
    leaves ``table_t`` at its own default); named points override it. Raises QlstmError for an
    unknown point or a malformed type.
    """
    if not types:
        return q
    known = q.points()
    if "*" in types:
        every = {k: types["*"] for k in known if not k.endswith(".table") and not k.startswith("alarm.")}
        types = {**every, **{k: v for k, v in types.items() if k != "*"}}
    layers = [dict(vars(lq)) for lq in q.layers]
    head = [dict(vars(dq)) for dq in q.head]
    names = [head_name(j, len(head)) for j in range(len(head))]
    inp = q.input
    for name, text in types.items():
        if name not in known:
            raise QlstmError(f"unknown quantization point {name!r}; known: {', '.join(known)}")
        t = FixedType.from_ap(text)
        if name == "input":
            inp = t
            continue
        layer, role = name.split(".")
        target = head[names.index(layer)] if layer in names else layers[int(layer[3:])]
        if role == "table":
            target["table"] = replace(target["table"], type=t)
        else:
            target[role] = t
    dqs = tuple(DenseQuant(**dq) for dq in head)
    return replace(
        q, input=inp, layers=tuple(RecurrentQuant(**lq) for lq in layers), dense=dqs[-1], hidden=dqs[:-1]
    )


def quantize_model(
    arch: Architecture,
    weights: dict[str, np.ndarray],
    win: Windows,
    cfg: QuantizeConfig,
    types: dict[str, str] | None = None,
    progress: bool = False,
    prof: Profile | None = None,
) -> tuple[Quantization, dict[str, np.ndarray], dict[str, Any]]:
    """PTQ (and QAT if ``cfg.method == 'qat'``): the types, on-grid weights and metrics.
    ``prof``: the float model's ranges on ``win.train`` if already profiled."""
    prof = prof if prof is not None else profile(arch, weights, win.train[0])
    q = apply_type_overrides(choose_types(arch, prof, cfg, cfg.method), types or {})
    points = q.points()
    extra: dict[str, Any] = {
        "profile_max_abs": prof.max_abs,
        # points whose profiled range the chosen type cannot hold (they saturate or wrap)
        "points_out_of_range": sorted(
            k for k, v in prof.max_abs.items() if k in points and v > points[k].max_value
        ),
    }
    if cfg.method == "qat":
        from qlstm.quantize.qat import fine_tune

        ptq = apply_type_overrides(choose_types(arch, prof, cfg, "ptq"), types or {})
        res = fine_tune(arch, weights, q, win.train, win.val, cfg.qat, progress=progress, ptq=ptq)
        q, qweights = res.quant, res.weights
        extra["qat"] = {
            "history": res.history,
            "best_epoch": res.best_epoch,
            "seconds": res.seconds,
            "kept": res.kept,
            "ptq_val_mse": res.ptq_val_mse,
        }
    else:
        qweights = quantized_weights(q, weights)
    return q, qweights, extra


def evaluate(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    qweights: dict[str, np.ndarray],
    q: Quantization,
    win: Windows,
    float_m: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Test metrics of the quantized model as the firmware computes it (simulated bit for bit by
    :class:`qlstm.firmware_sim.simulate.Firmware`) and of the float model
    (:func:`qlstm.float_reference.float_predict`, float64; ``float_m`` if already computed).

    ``qweights`` are the weights on the grids of ``q``; raises :class:`QlstmError` (from the
    simulator) for types too wide to simulate exactly."""
    from qlstm.firmware_sim.simulate import Firmware

    x, y = win.test
    pred = Firmware(desc.with_quantization(q), qweights).predict(x)
    if float_m is None:
        float_m = rmse_metrics(float_predict(desc.architecture, weights, x), y)
    quant_m = rmse_metrics(pred, y)
    return {
        "test": quant_m,
        "float_test": float_m,
        "rmse_ratio_to_float": quant_m["rmse"] / float_m["rmse"] if float_m["rmse"] > 0 else None,
        "eval_backend": "firmware",  # the test metrics are simulated by qlstm.firmware_sim
    }


def _config_yaml(cfg: QuantizeConfig, types: dict[str, str]) -> str:
    import yaml

    data = {"quantize": to_mapping(cfg)}
    if types:
        data["quantize"]["types"] = dict(types)
    return yaml.safe_dump(data, sort_keys=False)


def write_run(
    stage: Path,
    parent: Path,
    desc: ModelDescription,
    q: Quantization,
    qweights: dict[str, np.ndarray],
    metrics: dict[str, Any],
    cfg: QuantizeConfig,
    types: dict[str, str],
) -> None:
    """Fill ``stage`` (a staging folder) with a complete quantized run folder."""
    import torch

    from qlstm.train.model import from_weights

    qdesc = desc.with_quantization(q)
    description.save(stage, qdesc, qweights)
    buf = io.BytesIO()
    torch.save(from_weights(desc.architecture, qweights).state_dict(), buf)
    atomic_write_bytes(stage / runs.CHECKPOINT_FILE, buf.getvalue())
    runs.write_parent(stage, parent, desc.fingerprint())
    if (Path(parent) / DATA_FILE).is_file():
        atomic_write_text(stage / DATA_FILE, (Path(parent) / DATA_FILE).read_text())
    atomic_write_text(stage / CONFIG_FILE, _config_yaml(cfg, types))
    full = {
        "method": q.method,
        "bits": q.bits,
        **metrics,
        "types": {k: t.describe() for k, t in q.points().items()},
    }
    atomic_write_text(stage / METRICS_FILE, json.dumps(full, indent=2) + "\n")


def quantize_run(
    run_dir: Path,
    out: Path,
    cfg: QuantizeConfig,
    types: dict[str, str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    win: Windows | None = None,
) -> dict[str, Any]:
    """``qlstm quantize RUN_DIR --out QRUN_DIR``: returns the metrics written."""
    desc, weights = load_float_run(run_dir)
    _refuse_existing(out, overwrite, run_dir)
    win = win if win is not None else run_windows(run_dir, desc)
    q, qweights, extra = quantize_model(desc.architecture, weights, win, cfg, types, progress)
    metrics = {**evaluate(desc, weights, qweights, q, win), **extra}
    metrics["input_weight_ranges"] = input_weight_ranges(desc, q, weights)
    with staged_dir(out, overwrite=overwrite, inputs=(run_dir,)) as stage:
        write_run(stage, run_dir, desc, q, qweights, metrics, cfg, types or {})
    return metrics


def _refuse_existing(out: Path, overwrite: bool, run_dir: Path, calibration: Path | None = None) -> None:
    check_out_folder(out, overwrite, (run_dir, calibration))


def sweep(
    run_dir: Path,
    out: Path,
    widths: tuple[int, ...],
    cfg: QuantizeConfig,
    methods: tuple[str, ...] = ("ptq", "qat"),
    overwrite: bool = False,
    progress: bool = False,
    win: Windows | None = None,
) -> list[dict[str, Any]]:
    """Test RMSE against bit width for float, PTQ and QAT: ``sweep.csv``, ``sweep.png`` and one
    quantized run folder per (method, width) in ``out``."""
    desc, weights = load_float_run(run_dir)
    for w in widths:
        replace(cfg, bits=w)  # validates every width before any work
    _refuse_existing(out, overwrite, run_dir)
    win = win if win is not None else run_windows(run_dir, desc)
    arch = desc.architecture
    float_m = rmse_metrics(float_predict(arch, weights, win.test[0]), win.test[1])
    float_rmse = float_m["rmse"]
    prof = profile(arch, weights, win.train[0])  # the same for every width
    rows = []
    with staged_dir(out, overwrite=overwrite, inputs=(run_dir,)) as stage:
        for w in widths:
            row: dict[str, Any] = {"bits": w, "float_rmse": float_rmse}
            for method in methods:
                c = replace(cfg, bits=w, method=method)
                q, qweights, extra = quantize_model(arch, weights, win, c, None, progress, prof)
                metrics = {**evaluate(desc, weights, qweights, q, win, float_m), **extra}
                metrics["input_weight_ranges"] = input_weight_ranges(desc, q, weights)
                write_run(stage / f"{method}_{w}", run_dir, desc, q, qweights, metrics, c, {})
                row[f"{method}_rmse"] = metrics["test"]["rmse"]
                log.info(
                    "%s %d bits: test RMSE %.4g (float %.4g)", method, w, row[f"{method}_rmse"], float_rmse
                )
            rows.append(row)
        write_csv(rows, stage / "sweep.csv")
        plot_sweep(rows, methods, f"{Path(run_dir).name}: test RMSE vs bit width", stage / "sweep.png")
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_sweep(rows: list[dict[str, Any]], methods: tuple[str, ...], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bits = [r["bits"] for r in rows]
    ax.axhline(rows[0]["float_rmse"], color="k", ls="--", label="float")
    for m in methods:
        ax.plot(bits, [r[f"{m}_rmse"] for r in rows], "o-", label=m.upper())
    ax.set_xlabel("bit width (--bits)")
    ax.set_ylabel("test RMSE (normalised)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
