"""Events: the unit of magnet-voltage data, and the checks every loaded series must pass.

An *event* is one recording: the samples before (and ending at) one quench, on a regular time
grid. An :class:`EventSet` holds events that share their channels, units and sampling step.
Arrays are raw physical values (volts, amperes); normalisation happens only in windowing.

What is checked (:func:`check_series`) and what is repaired (:func:`fill_gaps`) is decided here,
once, for every file format:

* refused: NaN/inf in a channel or the time column, duplicated or decreasing timestamps,
  steps that are not a whole number of sampling steps within :data:`SAMPLING_TOLERANCE`,
  events sampled at different rates, series shorter than the minimum length;
* a gap (a step of ``m`` whole sampling steps, ``2 <= m <= MAX_GAP_SAMPLES + 1``) is refused
  unless filling is requested, in which case the missing samples are linearly interpolated on
  the regular grid; longer gaps are refused in any case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qlstm.errors import QlstmError

#: Largest relative deviation of one time step from the nominal step (1 %: 4 ms at 400 ms,
#: above logger time-stamp jitter, far below a missing sample).
SAMPLING_TOLERANCE = 0.01
#: Longest run of missing samples that ``fill_gaps`` interpolates (25 samples = 10 s at 400 ms).
MAX_GAP_SAMPLES = 25
#: Units assumed for well-known channels when a file does not state them.
DEFAULT_UNITS = {"U_res": "V", "I": "A"}
#: Sampling steps accepted as plausible, seconds (1 us to 1 h). A step outside is almost always a
#: time column read in the wrong unit (int64 epoch nanoseconds read as seconds: 4e8 s).
PLAUSIBLE_DT = (1e-6, 3600.0)
#: The hour a local-time clock repeats at the end of daylight saving time, seconds.
DST_SHIFT_S = 3600.0


@dataclass(frozen=True, eq=False)
class Event:
    """One recording: ``t`` (T,) seconds, ``x`` (T, C) raw channel values.

    ``quench_index`` is the sample at which the quench was detected (the synthetic generator puts
    it on the last sample), ``None`` if unknown. ``filled`` counts samples interpolated by
    ``fill_gaps`` (0 for data as recorded). ``anomalies`` are labelled anomaly windows
    ``(start_s, end_s)`` on the time axis, ends included (e.g. precursor onset to quench); empty if
    none are known. Files carry them as an ``anomaly`` 0/1 column (HDF5: ``anomaly_windows``).
    """

    name: str
    t: np.ndarray
    x: np.ndarray
    quench_index: int | None = None
    filled: int = 0
    anomalies: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.t.ndim != 1 or self.x.ndim != 2 or self.x.shape[0] != self.t.shape[0]:
            raise QlstmError(
                f"event {self.name!r}: t must be (T,) and x (T, C); got {self.t.shape} and {self.x.shape}"
            )
        if self.quench_index is not None and not 0 <= self.quench_index < len(self.t):
            raise QlstmError(
                f"event {self.name!r}: quench_index {self.quench_index} outside 0-{len(self.t) - 1}"
            )

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def anomaly_mask(self) -> np.ndarray:
        """(T,) bool: samples inside any of ``anomalies`` (ends included)."""
        mask = np.zeros(len(self.t), dtype=bool)
        for start, end in self.anomalies:
            mask |= (self.t >= start) & (self.t <= end)
        return mask


@dataclass(frozen=True, eq=False)
class EventSet:
    """Events sharing channels, units and sampling step ``dt`` (seconds)."""

    events: tuple[Event, ...]
    channel_names: tuple[str, ...]
    units: tuple[str, ...]
    dt: float
    source: str = ""
    #: Free-form provenance (generator config, file format ...), for reports.
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.units) != len(self.channel_names):
            raise QlstmError(f"{self.source}: {len(self.channel_names)} channels but {len(self.units)} units")
        if len(set(self.channel_names)) != len(self.channel_names):
            raise QlstmError(f"{self.source}: duplicated channel names {list(self.channel_names)}")
        if not self.dt > 0:
            raise QlstmError(f"{self.source}: sampling step dt={self.dt} must be > 0")
        names = [e.name for e in self.events]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise QlstmError(f"{self.source}: duplicated event names {dup}")
        for e in self.events:
            if e.x.shape[1] != len(self.channel_names):
                raise QlstmError(
                    f"{self.source}: event {e.name!r} has {e.x.shape[1]} channels, "
                    f"expected {len(self.channel_names)}"
                )

    def __len__(self) -> int:
        return len(self.events)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)

    @property
    def n_samples(self) -> int:
        return sum(len(e) for e in self.events)

    def subset(self, indices) -> EventSet:
        """The events at ``indices`` (in that order), same channels and step."""
        return EventSet(
            tuple(self.events[int(i)] for i in indices),
            self.channel_names,
            self.units,
            self.dt,
            self.source,
            dict(self.meta),
        )

    def channel_index(self, name: str) -> int:
        if name not in self.channel_names:
            raise QlstmError(
                f"{self.source}: no channel {name!r} (channels: {', '.join(self.channel_names)})"
            )
        return self.channel_names.index(name)


def _at(t: np.ndarray, i: int) -> str:
    return f"sample {i} (t={t[i]:.6g} s)"


def check_values(where: str, name: str, t: np.ndarray, x: np.ndarray, channels: tuple[str, ...]) -> None:
    """Refuse NaN/inf in the time column or any channel, naming the first bad sample."""
    bad = ~np.isfinite(t)
    if bad.any():
        i = int(np.argmax(bad))
        raise QlstmError(f"{where}: event {name!r}: time_s holds {t[i]} at sample {i}")
    for c, ch in enumerate(channels):
        bad = ~np.isfinite(x[:, c])
        if bad.any():
            i = int(np.argmax(bad))
            raise QlstmError(
                f"{where}: event {name!r}: channel {ch} holds {x[i, c]} at {_at(t, i)}; "
                "NaN/inf/missing values are refused, not repaired"
            )


def _dst_step(d: np.ndarray, i: int, step: float) -> bool:
    """True if the step ``d[i]`` is the clock falling back one hour (within two sampling steps)."""
    return abs(d[i] + DST_SHIFT_S - step) <= 2 * step + SAMPLING_TOLERANCE * step


def repair_dst_fallback(where: str, name: str, t: np.ndarray) -> np.ndarray:
    """Shift the samples after each one-hour step back of a local-time clock by + 1 h.

    Only steps back of one hour (within two sampling steps) are repaired; the result must be
    increasing, else the event is refused as not a daylight-saving fall-back.
    """
    d = np.diff(t)
    back = np.flatnonzero(d < 0)
    if back.size == 0:
        return t
    pos = d[d > 0]
    step = float(np.median(pos)) if pos.size else 0.0
    t = t.copy()
    for i in back:
        if not _dst_step(d, int(i), step):
            raise QlstmError(
                f"{where}: event {name!r}: timestamps step back by {-d[i]:.6g} s at {_at(t, int(i) + 1)}; "
                "not the one hour of a daylight-saving fall-back, so --repair-dst does not apply"
            )
        t[int(i) + 1 :] += DST_SHIFT_S
    return t


def event_step(where: str, name: str, t: np.ndarray, min_length: int) -> float:
    """The median time step of one event, after refusing too-short and non-increasing series."""
    if len(t) < max(min_length, 2):
        raise QlstmError(
            f"{where}: event {name!r} has {len(t)} sample(s), fewer than the minimum {max(min_length, 2)}"
        )
    d = np.diff(t)
    if (d < 0).any():
        i = int(np.argmax(d < 0))
        pos = d[d > 0]
        if pos.size and _dst_step(d, i, float(np.median(pos))):
            raise QlstmError(
                f"{where}: event {name!r}: the clock steps back one hour at {_at(t, i + 1)}: local time "
                "repeating an hour at the end of daylight saving; record in UTC, or pass --repair-dst"
            )
    if (d == 0).any():
        i = int(np.argmax(d == 0)) + 1
        raise QlstmError(f"{where}: event {name!r}: duplicated timestamp at {_at(t, i)}")
    if (d < 0).any():
        i = int(np.argmax(d < 0)) + 1
        raise QlstmError(f"{where}: event {name!r}: timestamps decrease at {_at(t, i)} (not monotonic)")
    return float(np.median(d))


def check_series(
    where: str, name: str, t: np.ndarray, dt: float, fill: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``t`` lies on the grid of step ``dt``; return (grid index of each sample, gap mask).

    Raises for irregular steps, and for gaps unless ``fill`` (and the gap is short enough).
    """
    r = np.diff(t) / dt
    m = np.rint(r)
    irregular = (m < 1) | (np.abs(r - m) > SAMPLING_TOLERANCE)
    if irregular.any():
        i = int(np.argmax(irregular)) + 1
        raise QlstmError(
            f"{where}: event {name!r}: irregular sampling at {_at(t, i)}: step {t[i] - t[i - 1]:.6g} s "
            f"is not a whole multiple of {dt:.6g} s within {SAMPLING_TOLERANCE:.0%}"
        )
    gaps = m > 1
    if gaps.any():
        i = int(np.argmax(gaps)) + 1
        missing = int(m[i - 1]) - 1
        if not fill:
            raise QlstmError(
                f"{where}: event {name!r}: gap of {missing} missing sample(s) before {_at(t, i)}; "
                f"--fill-gaps interpolates gaps of up to {MAX_GAP_SAMPLES} samples"
            )
        longest = int(m.max()) - 1
        if longest > MAX_GAP_SAMPLES:
            j = int(np.argmax(m)) + 1
            raise QlstmError(
                f"{where}: event {name!r}: gap of {longest} missing samples before {_at(t, j)} "
                f"is longer than the {MAX_GAP_SAMPLES} samples fill-gaps may interpolate"
            )
    index = np.concatenate([[0], np.cumsum(m.astype(np.int64))])
    return index, gaps


def fill_gaps(t: np.ndarray, x: np.ndarray, index: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Put samples on the regular grid ``index`` and interpolate the missing ones linearly.

    Recorded samples keep their exact timestamps and values; a missing sample gets the time
    ``t0 + index * dt`` and values interpolated (in time) between its recorded neighbours.
    """
    n = int(index[-1]) + 1
    t_new = t[0] + np.arange(n) * dt
    t_new[index] = t
    x_new = np.empty((n, x.shape[1]), dtype=np.float64)
    for c in range(x.shape[1]):
        x_new[:, c] = np.interp(t_new, t, x[:, c])
    return t_new, x_new


def build_event_set(
    where: str,
    raw: list[tuple[str, np.ndarray, np.ndarray, int | None]],
    channels: tuple[str, ...],
    units: tuple[str, ...],
    fill: bool = False,
    min_length: int = 2,
    meta: dict | None = None,
    repair_dst: bool = False,
) -> EventSet:
    """Check (and on request repair) raw ``(name, t, x, quench_index)`` series into an EventSet.

    Every loader ends here, so all formats refuse and repair exactly the same things.
    """
    if not raw:
        raise QlstmError(f"{where}: no events in file")
    if repair_dst:
        raw = [(name, repair_dst_fallback(where, name, t), x, q) for name, t, x, q in raw]
    steps = []
    for name, t, x, _ in raw:
        check_values(where, name, t, x, channels)
        steps.append(event_step(where, name, t, min_length))
    # 12 significant digits: float noise of a time column (e.g. n * 0.4) does not reach dt.
    dt = float(f"{np.median(steps):.12g}")
    # absolute times (epochs: 1.8e9 s) carry float64 noise of their spacing (2.4e-7 s): round dt
    # to a power of ten above 4 ulps, so 0.4 s sampling reads as 0.4 and not 0.40000009
    ulp = max(float(np.spacing(np.max(np.abs(t[[0, -1]])))) for _, t, _, _ in raw)
    if ulp > 0:
        q = 10.0 ** np.ceil(np.log10(4 * ulp))
        dt = float(f"{round(dt / q) * q:.12g}") or dt
    lo, hi = PLAUSIBLE_DT
    if not lo <= dt <= hi:
        raise QlstmError(
            f"{where}: sampling step {dt:.6g} s is implausible (outside {lo:g}-{hi:g} s): is the time "
            "column in another unit? state it with --time-unit (s ms us ns) or a header like 'time [ms]'"
        )
    for (name, _, _, _), s in zip(raw, steps, strict=True):
        if abs(s - dt) > SAMPLING_TOLERANCE * dt:
            raise QlstmError(
                f"{where}: event {name!r} is sampled every {s:.6g} s, other events every {dt:.6g} s; "
                "one file must have one sampling step"
            )
    events = []
    for name, t, x, q in raw:
        index, gaps = check_series(where, name, t, dt, fill)
        filled = 0
        if gaps.any():
            t, x = fill_gaps(t, x, index, dt)
            filled = len(t) - len(index)
            q = None if q is None else int(index[q])
        if len(t) < min_length:
            raise QlstmError(
                f"{where}: event {name!r} has {len(t)} samples, fewer than the minimum {min_length}"
            )
        events.append(Event(name, t, x, q, filled))
    return EventSet(tuple(events), channels, units, dt, where, dict(meta or {}))
