"""The training configuration: one typed, frozen dataclass read from YAML (unknown keys are errors).

A config file holds any subset of these keys; missing ones take the defaults below. See
``configs/*.yaml`` for documented examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qlstm.config import merge
from qlstm.description import Architecture, RecurrentLayer, check_history_horizon
from qlstm.errors import QlstmError


@dataclass(frozen=True)
class DataConfig:
    """Which channels of the events are used and how many windows are cut from them.

    The events come from a recording (``qlstm train --data FILE``; in ``qlstm run`` the data
    step's ``events.npz``), or, with ``source: sine``, from sin(pi t) sampled ``sine_samples``
    times on [0, ``sine_t_max``] (the classic exercise, split in time).
    """

    #: ``file``: the recording given by ``--data`` (required); ``sine``: the sine wave
    source: Literal["file", "sine"] = "file"
    channels: tuple[str, ...] = ("U_res",)  # input channels; the first is predicted
    sine_samples: int = 10_000
    sine_t_max: float = 100.0
    test_fraction: float = 0.3  # share of events held out for the final metrics
    val_fraction: float = 0.15  # share of events (out of the training share) for early stopping
    split_seed: int = 0
    stride: int = 1  # stride of the candidate training windows
    #: At most this many training windows, drawn at random from all candidates, so a 50-event,
    #: 24 h set (~10 M windows) stays trainable on a 2-core CPU.
    max_train_windows: int = 200_000
    #: Share of the training windows drawn from the most active decile (flux jumps, ramp corners,
    #: precursor) instead of uniformly; 0 = a uniform random draw. Only matters when
    #: max_train_windows is below the number of windows.
    active_fraction: float = 0.0
    #: At most this many validation / test windows (evenly strided over the held-out events).
    max_eval_windows: int = 100_000

    def __post_init__(self) -> None:
        if not self.channels:
            raise QlstmError("data.channels must name at least one channel")
        if not 0 < self.test_fraction < 1 or not 0 < self.val_fraction < 1:
            raise QlstmError("data.test_fraction and data.val_fraction must lie in (0, 1)")
        if self.stride < 1 or self.max_train_windows < 1 or self.max_eval_windows < 1:
            raise QlstmError("data.stride, data.max_train_windows and data.max_eval_windows must be >= 1")
        if not 0.0 <= self.active_fraction <= 1.0:
            raise QlstmError(f"data.active_fraction={self.active_fraction} must lie in [0, 1]")
        if self.sine_samples < 100 or self.sine_t_max <= 0:
            raise QlstmError("data.sine_samples must be >= 100 and data.sine_t_max > 0")


@dataclass(frozen=True)
class ModelConfig:
    cell: Literal["lstm", "gru"] = "lstm"
    layers: tuple[int, ...] = (32,)  # units of each stacked recurrent layer
    dropout: float = 0.0  # between recurrent layers, training only


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 3e-3
    #: ``cosine``: cosine decay to lr/100 over all epochs; ``plateau``: halve when the
    #: validation loss stalls for 2 epochs; ``none``: constant.
    lr_schedule: Literal["cosine", "plateau", "none"] = "cosine"
    patience: int = 5  # early stopping: epochs without a validation improvement
    seed: int = 0
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    weight_decay: float = 0.0
    #: ``lstsq``: before the first epoch, set the Dense head to the least-squares fit of the
    #: targets on the (randomly initialised) last layer's final hidden states - a random-feature
    #: readout that is epoch 0 of the history; ``random``: PyTorch's default init. No shipped
    #: config uses ``lstsq`` (why, with the measurements: docs/train.md).
    head_init: Literal["lstsq", "random"] = "random"
    #: ridge of that fit, relative to the mean feature variance (0 = plain least squares)
    head_ridge: float = 0.0
    #: Train on standardised inputs (``inputs``) and targets (``both``): zero mean, unit variance
    #: over the training windows; the affine maps are folded into rnn0's input kernel/bias and the
    #: head when saved, so the run is the plain architecture on min-max normalised data. Why it is
    #: the default, with the measurements against the baselines: docs/train.md.
    standardise: Literal["none", "inputs", "both"] = "both"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise QlstmError("training.epochs, training.batch_size and training.patience must be >= 1")
        if self.lr <= 0 or self.grad_clip < 0 or self.weight_decay < 0 or self.head_ridge < 0:
            raise QlstmError("training.lr must be > 0; grad_clip, weight_decay and head_ridge >= 0")


@dataclass(frozen=True)
class TrainConfig:
    history: int = 16  # L, input steps
    horizon: int = 1  # k, predicted steps
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        check_history_horizon(self.history, self.horizon)

    def architecture(self) -> Architecture:
        return Architecture(
            input_channels=len(self.data.channels),
            history=self.history,
            horizon=self.horizon,
            layers=tuple(RecurrentLayer(self.model.cell, u) for u in self.model.layers),
            dropout=self.model.dropout,
        )


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The ``train:`` section of config file ``path`` (defaults if None) with ``overrides``
    merged in, validated; raises QlstmError naming the file and the bad key."""
    from qlstm.run_config import read_section

    base = read_section(path, "train") if path is not None else TrainConfig()
    where = f"{path}: train" if path is not None else "train options"
    cfg = merge(base, overrides or {}, where) if overrides else base
    try:
        cfg.architecture()  # validates units, dropout against the description's limits
    except QlstmError as exc:
        raise QlstmError(f"{where}: {exc}") from None
    return cfg
