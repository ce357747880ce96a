"""Scoring alarms against anomaly windows: detections, lead times, false alarms per day, ROC.

Definitions (docs/detect.md):

* an alarm *fires* on the sample where the run-length counter reaches ``M`` (one firing per run
  of samples at or above the threshold);
* *normal running* is every scored sample (the score exists) outside every anomaly window and
  not after the event's quench; a firing there is a *false alarm*. False alarms per day =
  false alarms / hours of normal running x 24;
* an anomaly window is *detected* if an alarm fires inside it (ends included); its *lead time*
  is the quench time (the window's end if the event has no quench marker) minus the time of
  the first firing inside it; *alarms before onset* counts the false alarms of that event
  before the window starts;
* the event-level ROC is (false alarms per day, detection rate) over thresholds; its AUC is the
  area under the best detection rate reachable at each false-alarm rate from 0 to
  ``AUC_MAX_FA_PER_DAY``, divided by that range (1.0: every precursor caught without a false
  alarm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qlstm.errors import QlstmError

#: Upper end of the false-alarm axis over which the ROC's AUC is computed, per day.
AUC_MAX_FA_PER_DAY = 10.0


@dataclass
class EventTrack:
    """One event as the detector sees it: time (T,), score (T,) (NaN: not scored), windows, quench."""

    name: str
    t: np.ndarray
    score: np.ndarray
    windows: list[tuple[int, int]]  # inclusive sample ranges
    quench_index: int | None

    def normal_mask(self) -> np.ndarray:
        m = np.isfinite(self.score)
        for a, b in self.windows:
            m[a : b + 1] = False
        if self.quench_index is not None:
            m[self.quench_index :] = False
        return m


def fire_indices(above: np.ndarray, min_run: int) -> np.ndarray:
    """Samples where a run of True in ``above`` reaches length ``min_run`` (one per run)."""
    edges = np.diff(np.concatenate([[0], np.asarray(above, dtype=np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = (ends - starts) >= min_run
    return starts[long] + min_run - 1


def evaluate_event(ev: EventTrack, fires: np.ndarray) -> dict:
    """Per-event figures from the firing samples (see the module docstring)."""
    normal = ev.normal_mask()
    dt_h = (ev.t[1] - ev.t[0]) / 3600.0 if len(ev.t) > 1 else 0.0
    false = fires[normal[fires]] if len(fires) else fires
    windows = []
    for a, b in ev.windows:
        inside = fires[(fires >= a) & (fires <= b)]
        t_ref = (
            float(ev.t[ev.quench_index])
            if ev.quench_index is not None and ev.quench_index >= b
            else float(ev.t[b])
        )
        first = int(inside[0]) if len(inside) else None
        windows.append(
            {
                "onset_s": float(ev.t[a]),
                "end_s": float(ev.t[b]),
                "detected": first is not None,
                "first_alarm_s": None if first is None else float(ev.t[first]),
                "lead_time_s": None if first is None else t_ref - float(ev.t[first]),
                "alarms_before_onset": int(np.sum(false < a)),
            }
        )
    return {
        "event": ev.name,
        "normal_hours": float(normal.sum() * dt_h),
        "false_alarms": int(len(false)),
        "false_alarm_times_s": [float(ev.t[i]) for i in false],
        "alarms": int(len(fires)),
        "alarm_times_s": [float(ev.t[i]) for i in fires],
        "windows": windows,
    }


def summarise(per_event: list[dict]) -> dict:
    """Overall figures of per-event results: detection rate, false alarms per day, lead times."""
    wins = [w for e in per_event for w in e["windows"]]
    hours = sum(e["normal_hours"] for e in per_event)
    fa = sum(e["false_alarms"] for e in per_event)
    leads = [w["lead_time_s"] for w in wins if w["detected"]]
    return {
        "precursors": len(wins),
        "detected": sum(w["detected"] for w in wins),
        "detection_rate": (sum(w["detected"] for w in wins) / len(wins)) if wins else None,
        "alarms": sum(e["alarms"] for e in per_event),
        "false_alarms": fa,
        "normal_hours": hours,
        "false_alarms_per_day": fa / hours * 24.0 if hours > 0 else None,
        "false_alarms_per_day_upper95": _poisson_upper95(fa) / hours * 24.0 if hours > 0 else None,
        "median_lead_time_s": float(np.median(leads)) if leads else None,
        "lead_times_s": leads,
    }


def _poisson_upper95(n: int) -> float:
    """One-sided 95 % upper limit of a Poisson mean after observing ``n`` counts: the mean ``mu``
    with ``P(X <= n; mu) = 0.05`` (3.00 for n = 0), by bisection."""
    import math

    def cdf(mu: float) -> float:
        term, total = math.exp(-mu), math.exp(-mu)
        for i in range(1, n + 1):
            term *= mu / i
            total += term
        return total

    lo, hi = 0.0, 10.0 + 5.0 * n
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf(mid) > 0.05 else (lo, mid)
    return 0.5 * (lo + hi)


def score_at(tracks: list[EventTrack], threshold: float, min_run: int) -> dict:
    """Every event's figures and the summary at one threshold."""
    per = [
        evaluate_event(ev, fire_indices(np.nan_to_num(ev.score, nan=-np.inf) >= threshold, min_run))
        for ev in tracks
    ]
    return {"threshold": float(threshold), "per_event": per, **summarise(per)}


def _fa_count(tracks: list[EventTrack], thr: float, min_run: int, normals: list[np.ndarray]) -> int:
    n = 0
    for ev, normal in zip(tracks, normals, strict=True):
        f = fire_indices(np.nan_to_num(ev.score, nan=-np.inf) >= thr, min_run)
        n += int(normal[f].sum())
    return n


def calibrate(
    tracks: list[EventTrack], false_alarms_per_day: float, min_run: int, lsb: float | None = None
) -> dict:
    """The lowest threshold whose false alarms on the normal running of ``tracks`` stay within
    ``false_alarms_per_day`` x hours / 24 (at least zero false alarms: above every normal score).

    Binary search over the distinct normal-running scores (false alarms fall with the threshold
    apart from a run split in two, which the search tolerates: the returned threshold's count is
    re-checked). ``lsb``: the scores lie on a fixed-point grid of this step, and the threshold
    above every normal score is the highest one plus ``lsb`` (else the next float). Returns the
    threshold, the hours it rests on and the false alarms it leaves.
    """
    if false_alarms_per_day < 0:
        raise QlstmError(f"--false-alarms-per-day {false_alarms_per_day}: must be >= 0")
    normals = [ev.normal_mask() for ev in tracks]
    dt_h = [(ev.t[1] - ev.t[0]) / 3600.0 for ev in tracks]
    hours = float(sum(m.sum() * d for m, d in zip(normals, dt_h, strict=True)))
    if hours <= 0:
        raise QlstmError("calibration: the calibration events have no normal running to set a threshold on")
    allowed = int(np.floor(false_alarms_per_day * hours / 24.0 + 1e-9))
    vals = np.unique(np.concatenate([ev.score[m] for ev, m in zip(tracks, normals, strict=True)]))
    top = float(vals[-1])
    above = (
        top + lsb if lsb is not None else (np.nextafter(top, np.inf) if top != 0 else np.finfo(float).tiny)
    )
    cands = np.append(vals, above)
    lo, hi = 0, len(cands) - 1  # cands[hi] gives no false alarm at all
    while lo < hi:
        mid = (lo + hi) // 2
        if _fa_count(tracks, cands[mid], min_run, normals) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    thr = float(cands[hi])
    return {
        "threshold": thr,
        "normal_hours": hours,
        "allowed_false_alarms": allowed,
        "false_alarms": _fa_count(tracks, thr, min_run, normals),
        "events": len(tracks),
    }


def roc(tracks: list[EventTrack], min_run: int, n_thresholds: int = 200) -> dict:
    """Detection rate and false alarms per day over thresholds (quantiles of all scores), and the AUC."""
    allv = np.concatenate([ev.score[np.isfinite(ev.score)] for ev in tracks])
    if len(allv) == 0:
        raise QlstmError("ROC: no scored samples")
    qs = np.unique(np.quantile(allv, np.linspace(0.0, 1.0, n_thresholds)))
    thr = np.append(qs, np.nextafter(qs[-1], np.inf))
    fa, det = [], []
    for th in thr:
        s = score_at(tracks, th, min_run)
        fa.append(s["false_alarms_per_day"] if s["false_alarms_per_day"] is not None else 0.0)
        det.append(s["detection_rate"] if s["detection_rate"] is not None else 0.0)
    fa_a, det_a = np.asarray(fa), np.asarray(det)
    return {
        "thresholds": thr.tolist(),
        "false_alarms_per_day": fa,
        "detection_rate": det,
        "auc": auc(fa_a, det_a),
    }


def auc(fa: np.ndarray, det: np.ndarray, fa_max: float = AUC_MAX_FA_PER_DAY) -> float:
    """Area under the best detection rate reachable at false-alarm rate x, x in [0, fa_max], / fa_max."""
    xs = np.unique(np.concatenate([[0.0], fa[fa <= fa_max], [fa_max]]))
    best = np.array([det[fa <= x].max() if (fa <= x).any() else 0.0 for x in xs])
    return float(np.sum(best[:-1] * np.diff(xs)) / fa_max)
