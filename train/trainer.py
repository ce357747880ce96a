"""Training a float predictor and writing its self-describing run folder.

:func:`train_run` is the whole stage: prepare windows (:mod:`qlstm.train.dataset`), fit with Adam,
a learning-rate schedule and early stopping on the validation events (:func:`fit`), measure the
best model against persistence and a linear AR model on the test events
(:mod:`qlstm.train.metrics`), and write the run folder through :func:`qlstm.io.staged_dir`, so a
failed or interrupted run leaves nothing behind that looks complete.

Training is deterministic on CPU for a given seed and thread count: seeded initialisation,
shuffling and dropout, and ``torch.use_deterministic_algorithms`` during the fit.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from qlstm import description
from qlstm.config import to_mapping
from qlstm.description import CONSTANT_IN_WINDOWS, ModelDescription, Standardisation
from qlstm.errors import QlstmError
from qlstm.io import atomic_path, atomic_write_bytes, atomic_write_text, check_out_folder, staged_dir
from qlstm.runs import CHECKPOINT_FILE, CONFIG_FILE, CURVE_FILE, DATA_FILE, METRICS_FILE, WINDOWS_FILE
from qlstm.threads import Adapt
from qlstm.train import metrics as M
from qlstm.train.config import TrainConfig, TrainingConfig
from qlstm.train.dataset import Prepared, WindowSet, heldout, prepare, standardisation
from qlstm.train.model import Predictor, from_weights, predict_array, to_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    model: Predictor  # the best model (lowest validation MSE), in eval mode
    history: list[dict[str, float]]  # per epoch: epoch, train_mse, val_mse, lr
    best_epoch: int
    stopped_early: bool
    seconds: float


def _evaluate(model: Predictor, w: WindowSet, batch_size: int = 4096) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(w), batch_size):
            xb = torch.from_numpy(w.x[s : s + batch_size])
            yb = torch.from_numpy(w.y[s : s + batch_size])
            total += float(((model(xb) - yb) ** 2).sum())
    return total / (len(w) * w.y.shape[1])


def lstsq_head(
    model: Predictor, train: WindowSet, max_rows: int = 100_000, seed: int = 0, ridge: float = 0.0
) -> float:
    """Set the head to the least-squares readout of the targets from the last layer's final
    hidden states (centred features, float64), on at most ``max_rows`` training windows;
    returns the fit's MSE on those windows (normalised units)."""
    n = len(train)
    rows = (
        np.arange(n)
        if n <= max_rows
        else np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    )
    model.eval()
    feats = []
    with torch.no_grad():
        for s in range(0, rows.size, 8192):
            h = torch.from_numpy(train.x[rows[s : s + 8192]])
            h = (h - model.in_shift) * model.in_scale if model.standardised else h
            for rnn in model.rnns:
                h, _ = rnn(h)
            feats.append(h[:, -1, :].double().numpy())
    f = np.concatenate(feats)
    y = (train.y[rows].astype(np.float64) - model.out_shift) / model.out_scale
    fm, ym = f.mean(axis=0), y.mean(axis=0)
    fc = f - fm
    if ridge > 0:  # ridge relative to the mean feature variance: keeps the head weights moderate
        g = fc.T @ fc
        w = np.linalg.solve(g + ridge * np.trace(g) / len(g) * np.eye(len(g)), fc.T @ (y - ym))
    else:
        w, *_ = np.linalg.lstsq(fc, y - ym, rcond=None)  # (H, k)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w.T.copy()))
        model.head.bias.copy_(torch.from_numpy(ym - fm @ w))
    resid = fc @ w - (y - ym)
    return float(np.mean(resid**2)) * model.out_scale**2


def fit(
    model: Predictor, train: WindowSet, val: WindowSet, t: TrainingConfig, progress: bool = False
) -> FitResult:
    """Adam + schedule + early stopping on ``val``; returns the best model found.

    With ``head_init: lstsq`` the head starts as the least-squares readout; that starting point
    is epoch 0 of the history and competes for "best" like every epoch."""
    from tqdm import tqdm

    if len(train) == 0 or len(val) == 0:
        raise QlstmError("no training or validation windows: the events are too short for L + k")
    gen = torch.Generator().manual_seed(t.seed)
    xt, yt = torch.from_numpy(train.x), torch.from_numpy(train.y)
    n = len(train)
    steps = math.ceil(n / t.batch_size)
    total = steps * t.epochs
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.lr_schedule == "cosine":
        sched: Any = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
        )
    elif t.lr_schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    else:
        sched = None
    loss_fn = nn.MSELoss()
    history: list[dict[str, float]] = []
    best, best_state, best_epoch, bad = math.inf, copy.deepcopy(model.state_dict()), 0, 0
    start = time.perf_counter()
    if t.head_init == "lstsq":
        fit_mse = lstsq_head(model, train, seed=t.seed, ridge=t.head_ridge)
        best, best_state = _evaluate(model, val), copy.deepcopy(model.state_dict())
        history.append({"epoch": 0, "train_mse": fit_mse, "val_mse": best, "lr": 0.0})
        log.info("epoch 0 (least-squares head): validation MSE %.3g", best)
    stopped_early = False
    bar = tqdm(total=total, disable=not progress, unit="batch", desc="train", dynamic_ncols=True, leave=False)
    adapt = Adapt()  # 1 torch thread while other work contends for the cores
    try:
        for epoch in range(1, t.epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen)
            running = 0.0
            for b in range(steps):
                idx = perm[b * t.batch_size : (b + 1) * t.batch_size]
                loss = loss_fn(model(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                opt.step()
                if t.lr_schedule == "cosine":
                    sched.step()
                lv = loss.item()
                running += lv * len(idx)
                bar.update(1)
                adapt.tick()
                if b % 20 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{lv:.3g}", best_val=f"{best:.3g}", refresh=False)
            val_mse = _evaluate(model, val)
            if t.lr_schedule == "plateau":
                sched.step(val_mse)
            history.append(
                {
                    "epoch": epoch,
                    "train_mse": running / n,
                    "val_mse": val_mse,
                    "lr": opt.param_groups[0]["lr"],
                }
            )
            log.info("epoch %d: train MSE %.3g, validation MSE %.3g", epoch, running / n, val_mse)
            if not math.isfinite(val_mse):
                raise QlstmError(
                    f"training diverged at epoch {epoch} (validation loss {val_mse}); lower training.lr"
                )
            if val_mse < best:
                best, best_state, best_epoch, bad = val_mse, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad += 1
                if bad >= t.patience:
                    stopped_early = epoch < t.epochs
                    break
    finally:
        adapt.close()
        bar.close()
    model.load_state_dict(best_state)
    return FitResult(model.eval(), history, best_epoch, stopped_early, time.perf_counter() - start)


def plot_curve(
    history: list[dict[str, float]],
    best_epoch: int,
    title: str,
    path: Path,
    baselines: dict[str, float] | None = None,
    dropout: bool = False,
) -> None:
    """Training and validation MSE per epoch, with the baselines' validation MSE as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.semilogy(
        ep,
        [h["train_mse"] for h in history],
        "o-",
        label="training MSE" + (" (with dropout)" if dropout else ""),
    )
    ax.semilogy(ep, [h["val_mse"] for h in history], "s-", label="validation MSE")
    for (name, v), style in zip((baselines or {}).items(), (":", "-."), strict=False):
        ax.axhline(v, color="black", ls=style, lw=1, label=f"{name}, validation MSE")
    ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (normalised units)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def _config_text(cfg: TrainConfig, std: Standardisation | None = None) -> str:
    """config.yaml of the run: a qlstm config file whose ``train:`` section is ``cfg``; when the
    standardisation left channels unscaled, a first comment line says so (the config holds what
    was asked for; model.json's ``standardisation`` what was applied)."""
    text = yaml.safe_dump({"train": to_mapping(cfg)}, sort_keys=False)
    if std is not None and std.unscaled:
        text = (
            f"# standardise: {std.mode} applied to all but {', '.join(std.unscaled)} "
            f"({CONSTANT_IN_WINDOWS}: scale 1); per channel: model.json standardisation\n" + text
        )
    return text


def _same_run(out: Path, cfg: TrainConfig, prep_info: dict[str, Any], std: Standardisation) -> bool:
    """``out`` is a complete run of exactly this config on exactly this data."""
    try:
        same_cfg = (out / CONFIG_FILE).read_text() == _config_text(cfg, std)
        old = json.loads((out / DATA_FILE).read_text())
    except (OSError, ValueError):
        return False
    keys = ("source", "sha256", "synthetic", "samples", "t_max")
    return (
        same_cfg
        and all(old.get(k) == prep_info.get(k) for k in keys)
        and all(
            (out / f).is_file()
            for f in (METRICS_FILE, description.WEIGHTS_FILE, CHECKPOINT_FILE, WINDOWS_FILE)
        )
    )


def train_run(
    cfg: TrainConfig,
    out: Path,
    data_path: Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    prep: Prepared | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` and write the run folder ``out``; returns the metrics written to metrics.json.

    A folder that already holds this exact run (same config and data) is kept and its metrics
    returned; a non-empty folder holding anything else is refused unless ``overwrite``.
    ``prep``: the windows ``prepare(cfg, data_path)`` returns, when the caller already made them
    (``qlstm explore`` makes them once per L and shares them between trials).
    """
    out = Path(out)
    check_out_folder(out, overwrite=True, inputs=(data_path,))  # the same run is kept: judged below
    nonempty = out.is_dir() and any(out.iterdir())
    if nonempty and not overwrite and not (out / CONFIG_FILE).is_file():
        raise QlstmError(
            f"{out} already exists and is not a qlstm run; choose another folder or pass --overwrite"
        )
    arch = cfg.architecture()
    if prep is None:
        prep = prepare(cfg, data_path)
    elif (prep.info.get("L"), prep.info.get("k")) != (cfg.history, cfg.horizon):
        raise RuntimeError(
            f"prepared windows L={prep.info.get('L')}, k={prep.info.get('k')} do not fit the config"
        )
    std = standardisation(prep.train, cfg.training.standardise, prep.norm.channel_names)
    log.info("%s", std.summary(prep.norm.channel_names))
    if nonempty and not overwrite:
        if _same_run(out, cfg, prep.info, std):
            log.info("%s already holds this run; nothing to do", out)
            return json.loads((out / METRICS_FILE).read_text())
        raise QlstmError(
            f"{out} already holds a different run (other config or data); choose another folder or pass --overwrite"
        )
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(cfg.training.seed)
        model = Predictor(arch, **std.fold_kwargs())
        unscaled = [prep.norm.channel_names.index(n) for n in std.unscaled]
        if unscaled:  # 0 in every training window: no gradient reaches these weights, so zero
            # weights make the model ignore a channel it has no information about (at predict
            # time too) instead of keeping their random initial values
            with torch.no_grad():
                model.rnns[0].weight_ih_l0[:, unscaled] = 0.0
        result = fit(model, prep.train, prep.val, cfg.training, progress=progress)
    finally:
        torch.use_deterministic_algorithms(prev_det)
    weights = to_weights(result.model)  # standardisation folded in
    final = from_weights(arch, weights)  # the plain model the run folder holds
    metrics = evaluate(prep, weights, cfg, result)
    metrics["standardisation"] = {"summary": std.summary(prep.norm.channel_names), **asdict(std)}
    desc = ModelDescription(architecture=arch, normalisation=prep.norm, data=prep.info, standardisation=std)
    with staged_dir(out, overwrite=overwrite, inputs=(data_path,)) as stage:
        description.save(stage, desc, weights)
        buf = io.BytesIO()
        torch.save(final.state_dict(), buf)
        atomic_write_bytes(stage / CHECKPOINT_FILE, buf.getvalue())
        atomic_write_text(stage / CONFIG_FILE, _config_text(cfg, std))
        atomic_write_text(stage / DATA_FILE, json.dumps(prep.info, indent=2) + "\n")
        atomic_write_text(stage / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        heldout(prep, cfg.history).save(stage / WINDOWS_FILE)  # the held-out data, written once
        title = (
            f"{out.name}: {cfg.model.cell.upper()}{list(cfg.model.layers)}, L={cfg.history}, k={cfg.horizon}, "
            f"test RMSE {metrics['test']['model']['rmse']:.3g}"
        )
        ar = prep.ar
        yv = prep.val.y.astype(np.float64)
        base = {
            "persistence": float(np.mean((M.persistence(prep.val.x, cfg.horizon) - yv) ** 2)),
            "linear AR": float(np.mean((ar.predict(prep.val.x) - yv) ** 2)),
        }
        plot_curve(result.history, result.best_epoch, title, stage / CURVE_FILE, base, cfg.model.dropout > 0)
    return metrics


def evaluate(
    prep: Prepared, weights: dict[str, np.ndarray], cfg: TrainConfig, result: FitResult
) -> dict[str, Any]:
    """metrics.json: test metrics of the saved weights (exactly what the float backend computes)."""
    arch = cfg.architecture()
    model = from_weights(arch, weights)
    test = M.compare(
        predict_array(model, prep.test.x),
        prep.test.x,
        prep.test.y,
        prep.ar,
    )
    scale = prep.norm.hi[prep.norm.target_channel] - prep.norm.lo[prep.norm.target_channel]
    ch = prep.norm.target_channel
    return {
        "verdict": M.verdict(test),
        "test": test,
        "raw_units": {
            "channel": prep.norm.channel_names[ch],
            "unit": prep.norm.units[ch] if prep.norm.units else "",
            "scale": scale,
            "model_rmse": test["model"]["rmse"] * scale,
            "model_mse": test["model"]["mse"] * scale**2,
        },
        "n_parameters": arch.n_parameters(),
        "training": {
            "epochs_run": sum(h["epoch"] > 0 for h in result.history),
            "best_epoch": result.best_epoch,
            "best_val_mse": min(h["val_mse"] for h in result.history),
            "stopped_early": result.stopped_early,
            "seconds": result.seconds,
            "train_windows": len(prep.train),
            "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "history": result.history,
        },
    }
