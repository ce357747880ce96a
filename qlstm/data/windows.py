"""Splitting by event, normalisation fitted on training events, and sliding windows.

The split is by *event*, never by window: windows of one event are strongly correlated, so a
window-level split would leak the test set into training. Normalisation (min-max to [0, 1]) is
fitted on the training events only and then applied to every split.

Window ``j`` of an event starting at sample ``s`` is ``x = z[s : s+L]`` (all channels) and
``y = z[s+L : s+L+k, target]``, with ``z`` the normalised series and ``s = 0, stride, 2 stride,
...`` while ``s + L + k <= T``. Windows are cut from strided views
(``sliding_window_view``) and copied once, into the output arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from qlstm.data.events import EventSet
from qlstm.description import HISTORY_RANGE, HORIZON_RANGE, Normalisation
from qlstm.errors import QlstmError


class Split(NamedTuple):
    """Disjoint event sets; ``val`` is carved out of the training share."""

    train: EventSet
    val: EventSet
    test: EventSet


def split_events(
    es: EventSet, test_fraction: float = 0.3, val_fraction: float = 0.15, seed: int = 0
) -> Split:
    """Shuffle events with ``seed`` and split them: test = ``round(n * test_fraction)``, val =
    ``round((n - n_test) * val_fraction)`` of the rest, train = what remains.

    A non-zero fraction always gets at least one event, and training keeps at least one; if the
    set is too small for that, it is an error. Each side lists its events in file order.
    """
    n = len(es)
    for name, f in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= f < 1.0:
            raise QlstmError(f"split: {name}={f} must be in [0, 1)")
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round((n - n_test) * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise QlstmError(
            f"split: {n} event(s) in {es.source} cannot be split into train/val/test with "
            f"test_fraction={test_fraction}, val_fraction={val_fraction} (need >= {n_test + n_val + 1})"
        )
    order = np.random.default_rng(seed).permutation(n)
    test = np.sort(order[:n_test])
    val = np.sort(order[n_test : n_test + n_val])
    train = np.sort(order[n_test + n_val :])
    return Split(es.subset(train), es.subset(val), es.subset(test))


def fit_normalisation(es_train: EventSet, target_channel: int = 0) -> Normalisation:
    """Per-channel min and max over all training events: ``(raw - lo) / (hi - lo)`` maps them to [0, 1].

    Raises QlstmError naming every channel that is constant over the training events, or whose
    range is at the float64 rounding level of its magnitude (``hi - lo <= 10 eps max(|lo|, |hi|)``:
    scikit-learn's ``_handle_zeros_in_scale`` threshold of ``10 eps``, made relative because
    recorded channels carry offsets, e.g. 25 A): scaling such a range to [0, 1] would blow
    rounding noise up to the whole input range.
    """
    if len(es_train) == 0:
        raise QlstmError("normalisation: no training events to fit on")
    c = len(es_train.channel_names)
    if not 0 <= target_channel < c:
        raise QlstmError(f"normalisation: target_channel {target_channel} outside 0-{c - 1}")
    lo = np.min([e.x.min(axis=0) for e in es_train.events], axis=0)
    hi = np.max([e.x.max(axis=0) for e in es_train.events], axis=0)
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(lo), np.abs(hi))
    flat = [es_train.channel_names[i] for i in range(c) if not hi[i] - lo[i] > tiny[i]]
    if flat:
        raise QlstmError(
            f"normalisation: channel(s) {', '.join(flat)} are constant over the training events of "
            f"{es_train.source} (to float64 rounding); a constant channel cannot be scaled to [0, 1]"
        )
    return Normalisation(
        lo=tuple(float(v) for v in lo),
        hi=tuple(float(v) for v in hi),
        channel_names=tuple(es_train.channel_names),
        target_channel=target_channel,
        units=tuple(es_train.units),
    )


@dataclass(frozen=True, eq=False)
class Windows:
    """``x`` (N, L, C) float32 inputs, ``y`` (N, k) float32 targets, both normalised; ``event``
    (N,) index of the source event in the EventSet; ``start`` (N,) first sample of the window."""

    x: np.ndarray
    y: np.ndarray
    event: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


def window_count(length: int, history: int, horizon: int, stride: int) -> int:
    """Number of windows of one series of ``length`` samples."""
    span = history + horizon
    return 0 if length < span else (length - span) // stride + 1


def make_windows(
    es: EventSet, norm: Normalisation, history: int, horizon: int = 1, stride: int = 1
) -> Windows:
    """Cut every event into windows (see the module docstring); refuses events shorter than L + k."""
    lo_l, hi_l = HISTORY_RANGE
    lo_k, hi_k = HORIZON_RANGE
    for name, v, lo, hi in (("history L", history, lo_l, hi_l), ("horizon k", horizon, lo_k, hi_k)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
            raise QlstmError(f"windows: {name}={v} outside {lo}-{hi}")
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise QlstmError(f"windows: stride={stride} must be an integer >= 1")
    if tuple(norm.channel_names) != tuple(es.channel_names):
        raise QlstmError(
            f"windows: normalisation is for channels {list(norm.channel_names)}, "
            f"{es.source} has {list(es.channel_names)}"
        )
    bad = [
        f"{ch} in {u} (normalisation in {v})"
        for ch, u, v in zip(es.channel_names, es.units, norm.units or es.units, strict=True)
        if u and v and u != v
    ]
    if bad:
        raise QlstmError(
            f"windows: {es.source} has {'; '.join(bad)}; convert it first (qlstm.data.load_for_model)"
        )
    counts = []
    for e in es.events:
        if len(e) < history + horizon:
            raise QlstmError(
                f"windows: event {e.name!r} of {es.source} has {len(e)} samples, fewer than "
                f"history + horizon = {history + horizon}"
            )
        counts.append(window_count(len(e), history, horizon, stride))
    n, c, tc = sum(counts), len(es.channel_names), norm.target_channel
    x = np.empty((n, history, c), dtype=np.float32)
    y = np.empty((n, horizon), dtype=np.float32)
    event = np.empty(n, dtype=np.int64)
    start = np.empty(n, dtype=np.int64)
    off = 0
    for i, (e, m) in enumerate(zip(es.events, counts, strict=True)):
        z = norm.apply(e.x).astype(np.float32)  # (T, C): one normalised copy of the event
        # (T-L+1, C, L) view -> every stride-th window -> (m, L, C), copied once into x.
        x[off : off + m] = sliding_window_view(z, history, axis=0)[: (m - 1) * stride + 1 : stride].transpose(
            0, 2, 1
        )
        y[off : off + m] = sliding_window_view(z[history:, tc], horizon)[: (m - 1) * stride + 1 : stride]
        event[off : off + m] = i
        start[off : off + m] = np.arange(m) * stride
        off += m
    return Windows(x, y, event, start)
