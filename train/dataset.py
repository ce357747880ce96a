"""From a config (and optionally a recording) to normalised train/validation/test windows.

Events come from a file (``--data``), the synthetic generator of :mod:`qlstm.data`, or a sine
wave (the classic exercise, ``data.source: sine``). Sets of at least three events are split by
event; a recording of fewer events (e.g. the single sine series) is split in time instead, each
event cut into consecutive train / validation / test blocks, so no window straddles two blocks.
The normalisation is fitted on the training events only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qlstm.train.config import TrainConfig

from qlstm.config import to_mapping
from qlstm.data import (
    Event,
    EventSet,
    SyntheticConfig,
    fit_normalisation,
    generate,
    load_events,
    make_windows,
    split_events,
)
from qlstm.description import Normalisation
from qlstm.errors import QlstmError
from qlstm.io import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSet:
    """Normalised windows x (N, L, C) float32 and targets y (N, k) float32."""

    x: np.ndarray
    y: np.ndarray
    stride: int

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class Prepared:
    norm: Normalisation
    train: WindowSet
    val: WindowSet
    test: WindowSet
    #: what ``data.json`` records: source, file + sha256, split event names, L, k, strides.
    info: dict[str, Any]


def sine_events(samples: int, t_max: float) -> EventSet:
    """sin(pi t) on ``samples`` points of [0, t_max], as one event of one channel."""
    t = np.linspace(0.0, t_max, samples)
    x = np.sin(np.pi * t)[:, None]
    return EventSet(
        events=(Event(name="sine", t=t, x=x, quench_index=None),),
        channel_names=("sin",),
        units=("1",),
        dt=float(t[1] - t[0]),
        source=f"sine: sin(pi t), t in [0, {t_max}], {samples} samples",
    )


def load_source(cfg: TrainConfig, data_path: Path | None) -> tuple[EventSet, dict[str, Any]]:
    """The events named by ``--data`` or the config, and how to find them again."""
    d = cfg.data
    if data_path is not None:
        data_path = Path(data_path)
        if not data_path.is_file():
            raise QlstmError(f"--data {data_path}: file not found")
        es = load_events(data_path, channels=list(d.channels))
        # absolute, so later stages find the file whatever their working folder
        info = {"source": "file", "path": str(data_path.resolve()), "sha256": sha256_file(data_path)}
    elif d.source == "sine":
        es = sine_events(d.sine_samples, d.sine_t_max)
        info = {"source": "sine", "samples": d.sine_samples, "t_max": d.sine_t_max}
    else:
        syn = SyntheticConfig(
            n_events=d.events, duration_s=d.hours * 3600.0, seed=d.seed, channels=d.channels
        )
        es = generate(syn)
        info = {"source": "synthetic", "synthetic": to_mapping(syn)}
    return es, info


def _time_split(es: EventSet, test_fraction: float, val_fraction: float) -> tuple[EventSet, ...]:
    """Cut every event into consecutive train / val / test blocks (for sets of < 3 events)."""
    parts: dict[str, list[Event]] = {"train": [], "val": [], "test": []}
    for ev in es.events:
        n = len(ev.t)
        b = int(round(n * (1.0 - test_fraction)))
        a = int(round(b * (1.0 - val_fraction)))
        for tag, lo, hi in (("train", 0, a), ("val", a, b), ("test", b, n)):
            q = ev.quench_index
            q = q - lo if q is not None and lo <= q < hi else None
            parts[tag].append(Event(name=f"{ev.name}[{tag}]", t=ev.t[lo:hi], x=ev.x[lo:hi], quench_index=q))
    return tuple(
        EventSet(
            events=tuple(parts[tag]),
            channel_names=es.channel_names,
            units=es.units,
            dt=es.dt,
            source=es.source,
        )
        for tag in ("train", "val", "test")
    )


def split(es: EventSet, cfg: TrainConfig) -> tuple[EventSet, EventSet, EventSet]:
    d = cfg.data
    if len(es.events) < 3:
        return _time_split(es, d.test_fraction, d.val_fraction)  # type: ignore[return-value]
    s = split_events(es, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=d.split_seed)
    return s.train, s.val, s.test


def windows(
    es: EventSet, norm: Normalisation, cfg: TrainConfig, max_windows: int, stride: int, seed: int, what: str
) -> WindowSet:
    """Windows of ``es`` with the stride raised until at most ~``max_windows`` remain; any excess
    (one per event at most) is dropped at random with ``seed``."""
    span = cfg.history + cfg.horizon
    for ev in es.events:
        if len(ev.t) < span:
            raise QlstmError(
                f"{what} event {ev.name!r} has {len(ev.t)} samples, fewer than history + horizon = {span}"
            )
    possible = sum(len(ev.t) - span + 1 for ev in es.events)
    stride = max(stride, math.ceil(possible / max_windows))
    w = make_windows(es, norm, history=cfg.history, horizon=cfg.horizon, stride=stride)
    x, y = w.x, w.y
    if len(x) > max_windows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_windows, replace=False))
        x, y = x[keep], y[keep]
    log.info("%s: %d windows (stride %d) from %d events", what, len(x), stride, len(es.events))
    return WindowSet(
        np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32), stride
    )


def prepare(cfg: TrainConfig, data_path: Path | None) -> Prepared:
    es, info = load_source(cfg, data_path)
    tr, va, te = split(es, cfg)
    norm = fit_normalisation(tr, target_channel=0)
    d = cfg.data
    train = windows(tr, norm, cfg, d.max_train_windows, d.stride, cfg.training.seed, "training")
    val = windows(va, norm, cfg, d.max_eval_windows, 1, cfg.training.seed + 1, "validation")
    test = windows(te, norm, cfg, d.max_eval_windows, 1, cfg.training.seed + 2, "test")
    info = {
        **info,
        "channels": list(es.channel_names),
        "units": list(es.units),
        "dt": es.dt,
        "split": {
            "train": [e.name for e in tr.events],
            "val": [e.name for e in va.events],
            "test": [e.name for e in te.events],
        },
        "L": cfg.history,
        "k": cfg.horizon,
        "stride": {"train": train.stride, "val": val.stride, "test": test.stride},
        "windows": {"train": len(train), "val": len(val), "test": len(test)},
    }
    return Prepared(norm=norm, train=train, val=val, test=test, info=info)
