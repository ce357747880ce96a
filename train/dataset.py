"""From a config and a recording to normalised train/validation/test windows.

Events come from a file (``--data``; ``qlstm data generate`` writes a synthetic one) or a sine
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

from qlstm.data import (
    Event,
    EventSet,
    fit_normalisation,
    load_events,
    make_windows,
    split_events,
)
from qlstm.data.baselines import LinearAR
from qlstm.description import CONSTANT_IN_WINDOWS, Normalisation, Standardisation
from qlstm.errors import QlstmError
from qlstm.io import sha256_file
from qlstm.train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class WindowSet:
    """Normalised windows x (N, L, C) float32 and targets y (N, k) float32; ``event`` (N,) the
    index of each window's event in its split, ``start`` (N,) the window's first sample."""

    x: np.ndarray
    y: np.ndarray
    stride: int
    event: np.ndarray
    start: np.ndarray

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
    #: the linear AR baseline, least squares on all training windows
    ar: LinearAR
    #: the events of each split (for the held-out artifact: names, lengths, the quench trace)
    events: dict[str, EventSet]


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
        raise QlstmError(
            "no data: pass --data FILE (a recording; `qlstm data generate --out events.npz` makes a synthetic "
            "one) or set train.data.source: sine"
        )
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
    """Evenly strided windows of ``es`` (validation, test): the stride is raised until at most
    ~``max_windows`` remain; any excess (one per event at most) is dropped at random with ``seed``."""
    span = cfg.history + cfg.horizon
    for ev in es.events:
        if len(ev.t) < span:
            raise QlstmError(
                f"{what} event {ev.name!r} has {len(ev.t)} samples, fewer than history + horizon = {span}"
            )
    possible = sum(len(ev.t) - span + 1 for ev in es.events)
    stride = max(stride, math.ceil(possible / max_windows))
    w = make_windows(es, norm, history=cfg.history, horizon=cfg.horizon, stride=stride)
    x, y, event, start = w.x, w.y, w.event, w.start
    if len(x) > max_windows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_windows, replace=False))
        x, y, event, start = x[keep], y[keep], event[keep], start[keep]
    log.info("%s: %d windows (stride %d) from %d events", what, len(x), stride, len(es.events))
    return WindowSet(
        np.ascontiguousarray(x, dtype=np.float32),
        np.ascontiguousarray(y, dtype=np.float32),
        stride,
        np.asarray(event, dtype=np.int64),
        np.asarray(start, dtype=np.int64),
    )


def _event_windows(es: EventSet, i: int, norm: Normalisation, cfg: TrainConfig, stride: int):
    one = EventSet((es.events[i],), es.channel_names, es.units, es.dt, es.source)
    return make_windows(one, norm, history=cfg.history, horizon=cfg.horizon, stride=stride)


def training_windows(es: EventSet, norm: Normalisation, cfg: TrainConfig) -> tuple[WindowSet, LinearAR]:
    """At most ``data.max_train_windows`` training windows, and the linear AR baseline fitted by
    least squares on ALL training windows (at ``data.stride``), so the baseline is the best linear
    predictor the training data allow, whatever subset the network is trained on.

    The subset is drawn at random (seed ``training.seed``). With ``data.active_fraction`` > 0 that
    share of it comes from the "active" windows (the top decile by largest step between
    consecutive target-channel samples in history + targets: flux jumps, ramp corners, the quench
    precursor), which a uniform draw of a few % of ~10 M windows would mostly miss; the rest is
    uniform. Validation and test windows are never reweighted.
    """
    d, tc = cfg.data, norm.target_channel
    span = cfg.history + cfg.horizon
    for ev in es.events:
        if len(ev.t) < span:
            raise QlstmError(
                f"training event {ev.name!r} has {len(ev.t)} samples, fewer than history + horizon = {span}"
            )
    ar = _ARAccumulator(cfg.history, len(es.channel_names), cfg.horizon)
    activity = []
    for i in range(len(es.events)):  # pass 1: AR normal equations and window activity, per event
        w = _event_windows(es, i, norm, cfg, d.stride)
        ar.add(w.x, w.y)
        seq = np.concatenate([w.x[:, :, tc], w.y], axis=1)
        activity.append(np.abs(np.diff(seq, axis=1)).max(axis=1))
    counts = np.array([len(a) for a in activity])
    act = np.concatenate(activity)
    del activity  # the per-event copies of act
    rng = np.random.default_rng(cfg.training.seed)
    n = min(d.max_train_windows, act.size)
    if n == act.size:
        chosen = np.arange(act.size)
    else:
        n_act = int(round(d.active_fraction * n))
        active = np.flatnonzero(act > np.quantile(act, 0.9)) if n_act else np.empty(0, dtype=int)
        pick_act = rng.choice(active, min(n_act, active.size), replace=False) if active.size else active
        rest = np.ones(act.size, dtype=bool)  # = setdiff1d(arange, pick_act), one byte a window
        rest[pick_act] = False
        rest = np.flatnonzero(rest)
        chosen = np.sort(np.concatenate([pick_act, rng.choice(rest, n - pick_act.size, replace=False)]))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    xs, ys, evs, starts = [], [], [], []
    for i in range(len(es.events)):  # pass 2: gather the chosen windows, event by event
        sel = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
        if sel.size:
            w = _event_windows(es, i, norm, cfg, d.stride)
            xs.append(w.x[sel])
            ys.append(w.y[sel])
            evs.append(np.full(sel.size, i, dtype=np.int64))
            starts.append(w.start[sel])
    x = np.ascontiguousarray(np.concatenate(xs), dtype=np.float32)
    y = np.ascontiguousarray(np.concatenate(ys), dtype=np.float32)
    log.info(
        "training: %d of %d windows (stride %d, active share %.2f) from %d events; AR on all %d",
        len(x), act.size, d.stride, d.active_fraction, len(es.events), act.size,
    )  # fmt: skip
    event = np.concatenate(evs)
    start = np.asarray(np.concatenate(starts), dtype=np.int64)
    return WindowSet(x, y, d.stride, event, start), ar.solve()


class _ARAccumulator:
    """Least squares ``y ~ [x_flat, 1] @ W`` from normal equations summed over chunks (float64)."""

    def __init__(self, history: int, channels: int, horizon: int) -> None:
        self.history, self.channels = history, channels
        n_features = history * channels
        self.ata = np.zeros((n_features + 1, n_features + 1))
        self.aty = np.zeros((n_features + 1, horizon))
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        for s in range(0, len(x), 65536):
            a = np.concatenate(
                [x[s : s + 65536].reshape(-1, self.ata.shape[0] - 1), np.ones((min(65536, len(x) - s), 1))],
                axis=1,
            ).astype(np.float64)
            self.ata += a.T @ a
            self.aty += a.T @ y[s : s + 65536].astype(np.float64)
            self.n += len(a)

    def solve(self) -> LinearAR:
        return LinearAR.from_normal_equations(self.ata, self.aty, self.history, self.channels)


def prepare(cfg: TrainConfig, data_path: Path | None) -> Prepared:
    """Load the events, split them, fit the normalisation and cut the windows: the one place the
    train/validation/test windows are made (``qlstm train`` saves them as ``windows.npz``; later
    stages read that file through :mod:`qlstm.runs` instead of calling this again).

    ``data_path``: a recording (.csv .h5 .hdf5 .parquet .npz) or None for ``data.source: sine``.
    Returns the normalisation (min-max, fitted on the training events only), windows x (N, L, C)
    and y (N, k) float32 in normalised units per split, the provenance for ``data.json`` and the
    linear-AR baseline fitted on all training windows.

    Raises QlstmError when the file is missing or unreadable, a channel is missing, or an event is
    shorter than history + horizon.
    """
    es, info = load_source(cfg, data_path)
    tr, va, te = split(es, cfg)
    norm = fit_normalisation(tr, target_channel=0)
    d = cfg.data
    train, ar = training_windows(tr, norm, cfg)
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
    return Prepared(
        norm=norm,
        train=train,
        val=val,
        test=test,
        info=info,
        ar=ar,
        events={"train": tr, "val": va, "test": te},
    )


def quench_trace(events: EventSet, norm: Normalisation, history: int, span: int = 300):
    """The last ``span`` samples before the quench of the first test event that has one, as
    (n, L, C) normalised windows, the normalised target one step ahead (n,) and the time relative
    to the quench (n,) in seconds; None when no event has a quench marker or it comes too early."""
    from qlstm.runs import QuenchTrace

    ev = next((e for e in events.events if e.quench_index is not None), None)
    if ev is None:
        return None
    q = ev.quench_index
    start = max(0, q - span - history)
    xs = norm.apply(ev.x[start : q + 1])
    n = len(xs) - history
    if n < 2:
        return None
    win = np.stack([xs[i : i + history] for i in range(n)])
    truth = xs[history:, norm.target_channel].astype(np.float64)
    t = ev.t[start + history : q + 1] - ev.t[q]
    return QuenchTrace(ev.name, win, truth, np.asarray(t, dtype=np.float64))


def heldout(prep: Prepared, history: int):
    """The :class:`qlstm.runs.HeldOut` artifact (``windows.npz``) of prepared data."""
    from qlstm.runs import HeldOut, Split

    def split_of(w: WindowSet) -> Split:
        return Split(w.x, w.y, w.event, w.start)

    return HeldOut(
        train=split_of(prep.train),
        val=split_of(prep.val),
        test=split_of(prep.test),
        events={k: tuple(e.name for e in es.events) for k, es in prep.events.items()},
        event_lengths={k: tuple(len(e.t) for e in es.events) for k, es in prep.events.items()},
        quenches=sum(e.quench_index is not None for e in prep.events["test"].events),
        trace=quench_trace(prep.events["test"], prep.norm, history),
    )


def is_constant(var: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Which features are indistinguishable from constant, given their float64 variance ``var``
    and mean ``mean`` over ``n`` values.

    scikit-learn's rule (``sklearn.preprocessing._data._is_constant_feature``, used by
    ``StandardScaler`` to give such features scale 1): ``var <= n eps var + (n mean eps)**2``
    with float64 ``eps``, the error bound of the two-pass variance algorithm (Chan, Golub and
    LeVeque), so a variance at the rounding level of the mean's magnitude counts as zero.
    """
    eps = np.finfo(np.float64).eps
    var, mean = np.asarray(var, dtype=np.float64), np.asarray(mean, dtype=np.float64)
    return var <= n * eps * var + (n * mean * eps) ** 2


def standardisation(train: WindowSet, mode: str, names: tuple[str, ...] | None = None) -> Standardisation:
    """The per-channel standardisation of the training inputs and, for ``both``, of the targets
    (mean and 1/std over the training windows, normalised units); identity for ``none``.

    * An input channel constant over the training windows (:func:`is_constant`; e.g. a current
      that changes only on the last sample of each event, which no input window contains, case
      B13) carries no information there: it gets scale 1 and shift = its constant value, so the
      network sees 0 (as scikit-learn's StandardScaler, scale 1 for a constant feature, and
      tslearn PR #315, a range of 1 for a constant series, both do), and one WARNING line names
      it. The other channels are standardised as configured. Every input channel constant:
      QlstmError in every mode (the prediction could not depend on the inputs).
    * The targets are one channel at t+1..t+k: one mean and std over all ``k`` columns. A
      target constant over every training window leaves nothing to learn: QlstmError, in every
      mode.

    Raises QlstmError for a constant target or when every input is constant. ``names``: the
    channel names, for the messages.
    """
    c = train.x.shape[2]
    names = tuple(names) if names else tuple(str(i) for i in range(c))
    y64 = train.y.astype(np.float64)
    ym, yv = float(y64.mean()), float(y64.var())
    if is_constant(yv, ym, y64.size):
        raise QlstmError(
            f"training: the target takes one value ({ym:.6g} normalised) in every training window's "
            f"targets: nothing to learn (it varies only where no target lies); use more or other events"
        )
    x64 = train.x.reshape(-1, c).astype(np.float64)
    mean, var = x64.mean(axis=0), x64.var(axis=0)
    del x64
    flat = is_constant(var, mean, train.x.shape[0] * train.x.shape[1])
    if flat.all():
        raise QlstmError(
            f"training: every input channel ({', '.join(names)}) is constant over the training "
            "windows: the prediction could not depend on the inputs; use more or other events"
        )
    if mode == "none":
        return Standardisation("none", (0.0,) * c, (1.0,) * c)
    unscaled = tuple(names[i] for i in np.flatnonzero(flat))
    if unscaled:
        log.warning(
            "standardisation: input channel(s) %s %s (no information there): left unscaled "
            "(scale 1, shift = the constant); the other inputs are standardised; consider dropping them",
            ", ".join(unscaled),
            CONSTANT_IN_WINDOWS,
        )
    scale = np.where(flat, 1.0, 1.0 / np.sqrt(np.where(flat, 1.0, var)))
    out_shift, out_scale = (ym, math.sqrt(yv)) if mode == "both" else (0.0, 1.0)
    return Standardisation(
        mode,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        float(out_shift),
        float(out_scale),
        unscaled,
    )
