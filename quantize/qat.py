"""Quantization-aware fine-tuning with Brevitas fixed-point quantizers.

Choice: a cell assembled from Brevitas quantizers (``QuantIdentity`` with power-of-two scales from
``brevitas.quant.fixed_point``), not Brevitas' ``QuantLSTM``. ``QuantLSTM`` quantizes its own set
of points (its gate accumulators and activation outputs, with Brevitas' float sigmoid/tanh), which
is not the hls4ml dataflow: hls4ml keeps ``h`` and ``c`` at one ``state`` type, adds the two dense
products at ``accum`` and takes activations from truncating lookup tables. Assembling the cell
from quantizers puts one quantizer at exactly each point of :class:`qlstm.description.Quantization`,
so the trained scales *are* the firmware types (:func:`qlstm.quantize.brevitas_bridge.read_type`).
The module (:class:`qlstm.quantize.model.QuantNet`) is only the trainable forward; the resulting
model is evaluated by the bit-exact simulator, :mod:`qlstm.firmware_sim` (:mod:`qlstm.quantize.core`).

Training starts from the float run's weights and the PTQ types; every point's power-of-two scale
is a learned Brevitas parameter (straight-through gradients for rounding and for the lookup
tables). Early stopping on the validation MSE of the QAT forward, with the starting point as
epoch 0, so QAT never returns a model worse on validation than the one it started from. QAT starts
from the PTQ types except for the state range ([-1, 1), see :mod:`qlstm.quantize.policy`); the
PTQ model itself then competes with the best epoch and is returned where it is better on
validation, so a QAT run is never worse on validation than the PTQ run of the same width.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from qlstm.description import Architecture, Quantization
from qlstm.errors import QlstmError
from qlstm.quantize.model import QuantNet, quantized_weights
from qlstm.quantize.policy import QatConfig
from qlstm.threads import Adapt

log = logging.getLogger(__name__)


@dataclass
class QatResult:
    quant: Quantization
    weights: dict[str, np.ndarray]
    history: list[dict[str, float | None]]
    best_epoch: int
    seconds: float
    #: "qat" (the fine-tuned model) or "ptq" (the PTQ model was better on validation and is kept)
    kept: str = "qat"
    #: validation MSE of the PTQ model (None: not compared, its types were QAT's starting point)
    ptq_val_mse: float | None = None


def _val_mse(model: QuantNet, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    """MSE of the QAT forward (eval mode, no gradients) on validation windows."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            total += float(((model(x[s : s + batch]) - y[s : s + batch]) ** 2).sum())
    return total / (len(x) * y.shape[1])


def fine_tune(
    arch: Architecture,
    weights: dict[str, np.ndarray],
    start: Quantization,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: QatConfig,
    progress: bool = False,
    ptq: Quantization | None = None,
) -> QatResult:
    """Fine-tune the float ``weights`` under quantization ``start``; returns learned types and
    weights on their grids.

    ``ptq``: the PTQ types, when QAT starts from others (QAT's state range is [-1, 1)). Its
    validation MSE, measured like every epoch's, competes with the best epoch: where PTQ is better
    (measured on wide widths, where the narrower state range only clips the cell state) the PTQ
    model is returned (``kept == "ptq"``), so QAT is never worse than PTQ on validation.
    """
    from tqdm import tqdm

    if len(train[0]) == 0 or len(val[0]) == 0:
        raise QlstmError("QAT needs training and validation windows; the run has none")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = QuantNet(arch, weights, start)
    xt = torch.from_numpy(np.asarray(train[0], dtype=np.float64))
    yt = torch.from_numpy(np.asarray(train[1], dtype=np.float64))
    if cfg.max_train_windows and len(xt) > cfg.max_train_windows:
        keep = torch.randperm(len(xt), generator=gen)[: cfg.max_train_windows]
        xt, yt = xt[keep], yt[keep]
    xv = torch.from_numpy(np.asarray(val[0], dtype=np.float64))
    yv = torch.from_numpy(np.asarray(val[1], dtype=np.float64))
    if cfg.max_val_windows and len(xv) > cfg.max_val_windows:
        keep = torch.randperm(len(xv), generator=gen)[: cfg.max_val_windows]
        xv, yv = xv[keep], yv[keep]
    n = len(xt)
    steps = math.ceil(n / cfg.batch_size)
    total = steps * cfg.epochs
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
    )
    best = _val_mse(model, xv, yv)
    history: list[dict[str, float | None]] = [{"epoch": 0, "train_mse": None, "val_mse": best}]
    best_state, best_epoch, bad = copy.deepcopy(model.state_dict()), 0, 0
    start_time = time.perf_counter()
    bar = tqdm(
        total=total,
        disable=not progress,
        unit="batch",
        desc=f"qat {start.bits}b",
        dynamic_ncols=True,
        leave=False,
    )
    adapt = Adapt()  # 1 torch thread while other work contends for the cores
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen)
            running = 0.0
            for b in range(steps):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                loss = ((model(xt[idx]) - yt[idx]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                running += float(loss.detach()) * len(idx)
                bar.update(1)
                adapt.tick()
                if b % 20 == 0:
                    bar.set_postfix(
                        epoch=epoch, loss=f"{float(loss.detach()):.3g}", best_val=f"{best:.3g}", refresh=False
                    )
            val_mse = _val_mse(model, xv, yv)
            history.append({"epoch": epoch, "train_mse": running / n, "val_mse": val_mse})
            log.info("QAT epoch %d: train MSE %.3g, validation MSE %.3g", epoch, running / n, val_mse)
            if not math.isfinite(val_mse):
                raise QlstmError(f"QAT diverged at epoch {epoch} (validation loss {val_mse}); lower qat.lr")
            if val_mse < best:
                best, best_state, best_epoch, bad = val_mse, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    finally:
        adapt.close()
        bar.close()
    model.load_state_dict(best_state)
    q = model.current_quantization()
    result = QatResult(
        q, quantized_weights(q, model.weights_numpy()), history, best_epoch, time.perf_counter() - start_time
    )
    if ptq is not None and ptq != start:
        ref = QuantNet(arch, weights, ptq)
        result.ptq_val_mse = _val_mse(ref, xv, yv)
        if result.ptq_val_mse < best:
            log.info(
                "QAT: the PTQ model is better on validation (%.3g < %.3g) and is kept",
                result.ptq_val_mse,
                best,
            )
            result.quant, result.weights, result.kept = (
                replace(ptq, method=start.method),
                quantized_weights(ptq, weights),
                "ptq",
            )
    return result
