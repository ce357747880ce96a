"""The alarm: residuals -> combined residual -> score -> threshold and run-length counter.

One time step ``t`` (all steps ahead ``j = 1 .. k`` of the forecasts that target sample ``t``)::

    r_j   = y_t - yhat_{t-j}(j)                       residual per step ahead   (residual type)
    a     = min(sum_j |r_j|, clip)                    combined residual         (score type)
    s     = a                                          "instant"
          = s + (a - s) / 2**n                         "ewma"  (exponential moving average)
          = max(0, s + a - kappa)                      "cusum" (one-sided CUSUM of a)
    c     = min(c + 1, c_max) if s >= theta else 0     run-length counter       (counter type)
    alarm = c >= M

Two implementations of the same rule: :func:`alarm_float` (float64, the float detector) and
:func:`alarm_fixed` (integer mantissas, bit-exact as a firmware computes it with the
:class:`~qlstm.description.AlarmQuant` types: the difference ``y - yhat`` exact, then one cast to
the residual type; the sum of absolute values exact, then one cast to the score type; the EWMA
update ``(s (2**n - 1) + a) / 2**n`` exact, then one cast; the CUSUM ``s + a - kappa`` exact,
clamped at 0, then one cast; ``kappa`` and ``theta`` are constants of the score and threshold
types). The state starts at zero on the first sample where every step's residual exists.

The clip bounds what one sample can add: a flux jump's onset gives residuals of several mV for a
few samples, a precursor's signature a smaller residual for minutes; without the clip the
threshold that keeps flux jumps quiet also hides the signatures (docs/detect.md, measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qlstm.description import AlarmQuant
from qlstm.errors import QlstmError
from qlstm.fixedpoint import cast

SCORES = ("instant", "ewma", "cusum")


@dataclass(frozen=True)
class AlarmRule:
    """The score and alarm rule (see the module docstring); thresholds are set by calibration."""

    score: str = "ewma"
    ewma_shift: int = 7  #: n: EWMA weight 2**-n (n = 7: a time constant of 128 samples, 51 s at 0.4 s)
    cusum_drift: float = 0.0  #: kappa, normalised units (set by calibration from normal running)
    min_run: int = 3  #: M: samples at or above the threshold before the alarm fires
    clip: float = float("inf")  #: largest combined residual one sample adds, normalised (set by calibration)

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise QlstmError(f"unknown score {self.score!r}; choose one of {', '.join(SCORES)}")
        if not 0 <= self.ewma_shift <= 16:
            raise QlstmError(f"ewma_shift {self.ewma_shift} outside 0-16")
        if not 1 <= self.min_run <= 255:
            raise QlstmError(f"min_run {self.min_run} outside 1-255 (an ap_uint<8> counter)")
        if self.cusum_drift < 0:
            raise QlstmError(f"cusum_drift {self.cusum_drift} must be >= 0")
        if not self.clip > 0:
            raise QlstmError(f"clip {self.clip} must be > 0")


def combined_float(r: np.ndarray, clip: float = float("inf")) -> np.ndarray:
    """(T, k) residuals (NaN where a step is missing) -> (T,) ``min(sum |r_j|, clip)`` (NaN if any missing)."""
    return np.minimum(np.abs(r).sum(axis=1), clip)


def score_float(a: np.ndarray, rule: AlarmRule) -> np.ndarray:
    """(T,) combined residual (NaN before the first complete sample) -> (T,) score (NaN there)."""
    s = np.full(a.shape, np.nan)
    valid = np.isfinite(a)
    if not valid.any():
        return s
    t0 = int(np.argmax(valid))
    if not valid[t0:].all():
        raise QlstmError("alarm: the combined residual has gaps after its first sample")
    x = a[t0:]
    if rule.score == "instant":
        s[t0:] = x
        return s
    out = np.empty_like(x)
    prev = 0.0
    if rule.score == "ewma":
        w = 2.0**-rule.ewma_shift
        for i, v in enumerate(x.tolist()):
            prev = prev + (v - prev) * w
            out[i] = prev
    else:
        kappa = rule.cusum_drift
        for i, v in enumerate(x.tolist()):
            prev = max(0.0, prev + v - kappa)
            out[i] = prev
    s[t0:] = out
    return s


def counter_alarm(above: np.ndarray, min_run: int, counter_max: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(T,) bool -> (counter (T,) int64 saturating at ``counter_max``, alarm (T,) bool = counter >= M)."""
    above = np.asarray(above, dtype=bool)
    # The counter is the length of the current run of True, clamped.
    idx = np.arange(len(above))
    last_false = np.maximum.accumulate(np.where(~above, idx, -1))
    c = np.where(above, idx - last_false, 0)
    c = np.minimum(c, counter_max)
    return c.astype(np.int64), c >= min_run


def alarm_float(r: np.ndarray, rule: AlarmRule, threshold: float) -> dict[str, np.ndarray]:
    """Float alarm of one event: (T, k) residuals -> ``a``, ``score``, ``counter``, ``alarm`` (T,)."""
    a = combined_float(r, rule.clip)
    s = score_float(a, rule)
    counter, alarm = counter_alarm(np.nan_to_num(s, nan=-np.inf) >= threshold, rule.min_run)
    return {"a": a, "score": s, "counter": counter, "alarm": alarm}


# ====================================================================== fixed point
def alarm_fixed(
    y_m: np.ndarray,
    y_frac: int,
    p_m: np.ndarray,
    p_frac: int,
    valid: np.ndarray,
    types: AlarmQuant,
    rule: AlarmRule,
    kappa_m: int,
    theta_m: int,
    clip_m: int | None = None,
) -> dict[str, np.ndarray]:
    """Bit-exact alarm of one event on integer mantissas.

    ``y_m`` (T,) the target samples at ``y_frac`` fractional bits (the firmware input type);
    ``p_m`` (T, k) the forecasts aligned to the sample they target, at ``p_frac`` (the network
    result type), meaningful where ``valid`` (T,) is True (every step present; a suffix of the
    event). ``kappa_m``/``theta_m``/``clip_m`` are mantissas of the score/threshold/score types
    (``clip_m`` None: no clip). Returns int64
    mantissas ``r`` (T, k), ``a``, ``score``, ``counter`` and bool ``alarm`` (T,); zeros where
    not valid.
    """
    y_m = np.asarray(y_m, dtype=np.int64)
    p_m = np.asarray(p_m, dtype=np.int64)
    T, k = p_m.shape
    rt, st, tt, ct = types.residual, types.score, types.threshold, types.counter
    if st.frac != tt.frac:
        raise QlstmError(
            f"alarm: score {st.describe()} and threshold {tt.describe()} need the same fractional bits"
        )
    f = max(y_frac, p_frac)
    if max(y_frac, p_frac) - min(y_frac, p_frac) > 40 or abs(st.frac - rt.frac) > 40:
        raise QlstmError("alarm: types too far apart for exact int64 arithmetic")
    diff = np.left_shift(y_m, f - y_frac)[:, None] - np.left_shift(p_m, f - p_frac)
    r = cast(diff, f, rt)  # (T, k) at the residual type
    fa = max(rt.frac, st.frac)
    a_exact = np.left_shift(np.abs(r), fa - rt.frac).sum(axis=1)
    a = cast(a_exact, fa, st)
    if clip_m is not None:
        a = np.minimum(a, clip_m)
    valid = np.asarray(valid, dtype=bool)
    r = np.where(valid[:, None], r, 0)
    a = np.where(valid, a, 0)
    s = np.zeros(T, dtype=np.int64)
    if valid.any():
        t0 = int(np.argmax(valid))
        if not valid[t0:].all():
            raise QlstmError("alarm: the valid samples must be a suffix of the event")
        x = a[t0:]
        if rule.score == "instant":
            s[t0:] = x
        elif rule.score == "ewma":
            n = rule.ewma_shift
            keep = (1 << n) - 1
            prev = 0
            out = np.empty(len(x), dtype=np.int64)
            for i, v in enumerate(x.tolist()):
                prev = int(cast(np.int64(prev * keep + v), st.frac + n, st))
                out[i] = prev
            s[t0:] = out
        else:
            prev = 0
            out = np.empty(len(x), dtype=np.int64)
            for i, v in enumerate(x.tolist()):
                prev = int(cast(np.int64(max(0, prev + v - kappa_m)), st.frac, st))
                out[i] = prev
            s[t0:] = out
    above = valid & (s >= theta_m)
    counter, alarm = counter_alarm(above, rule.min_run, ct.max_int)
    return {"r": r, "a": a, "score": s, "counter": counter, "alarm": alarm}
