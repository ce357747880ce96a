"""qlstm.detect: labels, scores against hand-computed cases, calibration, the fixed-point alarm."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from qlstm.data import SyntheticConfig, components, generate, load_events, save_events
from qlstm.data.events import Event, EventSet
from qlstm.description import AlarmQuant, ModelDescription
from qlstm.detect.alarm import AlarmRule, alarm_fixed, alarm_float, counter_alarm
from qlstm.detect.evaluate import EventTrack, auc, calibrate, fire_indices, score_at
from qlstm.detect.labels import resolve_labels, window_indices
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType


# ====================================================================== synthetic ground truth
def _digest(es: EventSet) -> str:
    h = hashlib.sha256()
    for e in es.events:
        h.update(e.x.tobytes())
        h.update(e.t.tobytes())
    return h.hexdigest()


def test_default_samples_unchanged_by_precursor_kinds():
    # Digest of SyntheticConfig.short(channels=("U_res", "I")) before precursor kinds existed.
    es = generate(SyntheticConfig.short(channels=("U_res", "I")))
    assert _digest(es) == "2964fbc8526562633fde8754c4ff16f835ecfa14ab01341f7da66ae4530e3fdd"


def test_events_carry_anomaly_window_from_onset_to_quench():
    cfg = SyntheticConfig.short()
    es = generate(cfg)
    for i, e in enumerate(es.events):
        c = components(cfg, i)
        onset = int(c["anomaly_onset"])
        ((a, b),) = e.anomalies
        assert a == e.t[onset] and b == e.t[-1] and e.quench_index == len(e.t) - 1
        # exponential kind: the runaway reaches the noise level at the onset, not before
        assert c["precursor"][onset] >= cfg.noise_std_v > c["precursor"][onset - 1]


@pytest.mark.parametrize("kind", ["spikes", "oscillation", "noise", "steps", "slow_rise"])
def test_precursor_kinds_add_a_signature_after_the_onset_only(kind):
    cfg = SyntheticConfig.short(precursor_kinds=(kind,), n_events=2)
    base = SyntheticConfig.short(n_events=2)
    for i in range(2):
        c, c0 = components(cfg, i), components(base, i)
        onset = int(c["anomaly_onset"])
        assert str(c["precursor_kind"]) == kind
        assert np.all(c["signature"][:onset] == 0) and np.any(c["signature"][onset:] != 0)
        lead = (len(c["t"]) - 1 - onset) * cfg.dt_s
        assert cfg.precursor_lead_s[0] - cfg.dt_s <= lead <= cfg.precursor_lead_s[1] + cfg.dt_s
        # every other ingredient is the default's
        for key in ("current", "drift", "spikes", "noise"):
            assert np.array_equal(c[key], c0[key])


def test_unknown_precursor_kind_refused():
    with pytest.raises(QlstmError, match="precursor_kinds"):
        SyntheticConfig.short(precursor_kinds=("wobble",))


@pytest.mark.parametrize("ext", ["csv", "parquet", "h5", "npz"])
def test_anomaly_windows_round_trip_every_format(tmp_path, ext):
    es = generate(SyntheticConfig.short(n_events=3, precursor_kinds=("steps", "exponential")))
    back = load_events(save_events(es, tmp_path / f"e.{ext}"))
    assert [e.anomalies for e in back.events] == [e.anomalies for e in es.events]
    assert resolve_labels(back).source == "recording"


# ====================================================================== labels
def _toy_set(n=2, T=100, dt=1.0, quench=True):
    t = np.arange(T) * dt
    evs = tuple(Event(f"e{i}", t, np.zeros((T, 1)), T - 1 if quench else None) for i in range(n))
    return EventSet(evs, ("U_res",), ("V",), dt, "toy")


def test_labels_file_json_and_csv(tmp_path):
    es = _toy_set()
    p = tmp_path / "l.json"
    p.write_text(json.dumps({"e1": [[50, 99]]}))
    lab = resolve_labels(es, p)
    assert lab.windows == {"e0": (), "e1": ((50.0, 99.0),)}
    q = tmp_path / "l.csv"
    q.write_text("event,start_s,end_s\ne0,10,20\ne0,30,40\n")
    assert resolve_labels(es, q).windows["e0"] == ((10.0, 20.0), (30.0, 40.0))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"nope": [[1, 2]]}, "event 'nope' is not in the recording"),
        ({"e0": [[20, 10]]}, "reversed"),
        ({"e0": [[10, 30], [25, 40]]}, "overlap"),
        ({"e0": [[10, 500]]}, "outside the event's time span"),
        ({"e0": [[1, 2, 3]]}, "not a readable labels file"),
    ],
)
def test_bad_labels_one_clear_line(tmp_path, content, message):
    p = tmp_path / "l.json"
    p.write_text(json.dumps(content))
    with pytest.raises(QlstmError, match=message) as exc:
        resolve_labels(_toy_set(), p)
    assert "\n" not in str(exc.value)


def test_quench_markers_give_a_window_before_each_quench():
    lab = resolve_labels(_toy_set(T=100), None, quench_window_s=30)
    assert lab.windows["e0"] == ((69.0, 99.0),) and "quench markers" in lab.source
    assert resolve_labels(_toy_set(quench=False)).source == "none"


# ====================================================================== scores by hand
def test_fire_indices_one_per_run_of_min_length():
    above = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    assert fire_indices(above, 3).tolist() == [6, 11]
    assert fire_indices(above, 1).tolist() == [1, 4, 9]


def test_scores_of_a_labelled_toy_series():
    """Event of 100 s at 1 s; precursor window 60-99 s, quench at 99 s; score given by hand."""
    t = np.arange(100.0)
    s = np.zeros(100)
    s[:5] = np.nan  # not scored (warm-up)
    s[10:13] = 5.0  # a 3-sample excursion in normal running: one false alarm at 12 s (M = 3)
    s[30:32] = 5.0  # 2 samples only: no alarm
    s[70:] = 5.0  # the precursor: fires at 72 s, lead time 99 - 72 = 27 s
    ev = EventTrack("e", t, s, window_indices(t, ((60.0, 99.0),)), 99)
    r = score_at([ev], threshold=4.0, min_run=3)
    (w,) = r["per_event"][0]["windows"]
    assert w["detected"] and w["first_alarm_s"] == 72.0 and w["lead_time_s"] == 27.0
    assert w["alarms_before_onset"] == 1
    assert r["false_alarms"] == 1 and r["per_event"][0]["false_alarm_times_s"] == [12.0]
    normal_h = (60 - 5) / 3600.0  # samples 5..59 are scored normal running
    assert r["normal_hours"] == pytest.approx(normal_h)
    assert r["false_alarms_per_day"] == pytest.approx(24.0 / normal_h)
    assert r["detection_rate"] == 1.0 and r["median_lead_time_s"] == 27.0
    r2 = score_at([ev], threshold=6.0, min_run=3)
    assert r2["detection_rate"] == 0.0 and r2["false_alarms"] == 0 and r2["median_lead_time_s"] is None


def test_calibration_picks_lowest_threshold_within_the_target():
    t = np.arange(8640.0)  # 2.4 h at 1 s
    s = np.zeros(len(t))
    s[100:105] = 3.0
    s[2000:2010] = 2.0
    s[5000:5003] = 1.0
    ev = EventTrack("e", t, s, [], None)
    hours = len(t) / 3600.0
    # 0 false alarms allowed (1/day over 2.4 h): above the highest normal score
    c = calibrate([ev], 1.0, 3)
    assert c["threshold"] > 3.0 and c["false_alarms"] == 0 and c["normal_hours"] == pytest.approx(hours)
    # 10/day over 2.4 h allows 1 false alarm: the 3.0 excursion may fire, not the 2.0 one
    c = calibrate([ev], 10.0, 3)
    assert c["threshold"] == 3.0 and c["false_alarms"] == 1
    # 30/day allows 3: a threshold of 0.0 fires once (the whole series is one run), so it is chosen
    c = calibrate([ev], 30.0, 3)
    assert c["false_alarms"] <= 3 and c["threshold"] == 0.0
    # M = 4: the 1.0 excursion (3 samples) cannot fire; 10/day still allows one false alarm
    c = calibrate([ev], 10.0, 4)
    assert c["threshold"] == 3.0
    # grid: the threshold above every normal score is the top plus one LSB
    assert calibrate([ev], 0.0, 3, lsb=0.25)["threshold"] == 3.25


def test_auc_of_step_roc():
    fa = np.array([0.0, 2.0, 5.0, 20.0])
    det = np.array([0.5, 0.75, 1.0, 1.0])
    # best detection: 0.5 on [0, 2), 0.75 on [2, 5), 1.0 on [5, 10]
    assert auc(fa, det) == pytest.approx((0.5 * 2 + 0.75 * 3 + 1.0 * 5) / 10)


# ====================================================================== the alarm in fixed point
def _reference_alarm(y, p, valid, types, rule, kappa_m, theta_m, y_frac, p_frac, clip_m=None):
    """Scalar transcription with exact rationals: every cast as round-then-overflow on Fractions."""

    def cast(v: Fraction, t: FixedType) -> int:
        x = v * (1 << t.frac) if t.frac >= 0 else v / (1 << -t.frac)
        f = x.numerator // x.denominator
        rem = x - f
        if t.rounding == "AP_TRN":
            m = f
        elif t.rounding == "AP_RND":
            m = f + (1 if rem >= Fraction(1, 2) else 0)
        elif t.rounding == "AP_RND_CONV":
            m = f + (1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and f % 2 == 1) else 0)
        else:
            raise AssertionError(t.rounding)
        if t.overflow == "AP_SAT":
            return min(max(m, t.min_int), t.max_int)
        span = 1 << t.width
        return (m - t.min_int) % span + t.min_int

    rt, st = types.residual, types.score
    out_s, out_c, out_alarm = [], [], []
    s = c = 0
    started = False
    for i in range(len(y)):
        if not valid[i]:
            out_s.append(0)
            out_c.append(0)
            out_alarm.append(False)
            continue
        yv = Fraction(int(y[i]), 1 << y_frac)
        rs = [cast(yv - Fraction(int(p[i, j]), 1 << p_frac), rt) for j in range(p.shape[1])]
        a = cast(sum(Fraction(abs(r), 1 << rt.frac) for r in rs), st)
        if clip_m is not None:
            a = min(a, clip_m)
        if rule.score == "instant":
            s = a
        elif rule.score == "ewma":
            prev = Fraction(s, 1 << st.frac) if started else Fraction(0)
            s = cast(prev + (Fraction(a, 1 << st.frac) - prev) / (1 << rule.ewma_shift), st)
        else:
            prev = s if started else 0
            s = cast(Fraction(max(0, prev + a - kappa_m), 1 << st.frac), st)
        started = True
        c = min(c + 1, types.counter.max_int) if s >= theta_m else 0
        out_s.append(s)
        out_c.append(c)
        out_alarm.append(c >= rule.min_run)
    return out_s, out_c, out_alarm


@pytest.mark.parametrize("score", ["instant", "ewma", "cusum"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_alarm_bit_exact_against_rational_reference(score, seed):
    rng = np.random.default_rng(seed)
    rounding = ["AP_TRN", "AP_RND", "AP_RND_CONV"][seed]
    overflow = ["AP_SAT", "AP_WRAP", "AP_SAT"][seed]
    types = AlarmQuant(
        residual=FixedType(8 + seed, 2, True, rounding, overflow),
        score=FixedType(10 + seed, 4, False, rounding, "AP_SAT"),
        threshold=FixedType(10 + seed, 4, False, "AP_TRN", "AP_SAT"),
        counter=FixedType(3, 3, False, "AP_TRN", "AP_SAT"),
    )
    T, k = 300, 3
    y_frac, p_frac = 9, 7
    y = rng.integers(-(1 << 10), 1 << 10, T)
    p = rng.integers(-(1 << 8), 1 << 8, (T, k))
    p[rng.random(T) < 0.2] += 2000  # large residuals: saturation/wrap of the residual type
    valid = np.arange(T) >= 5
    rule = AlarmRule(score=score, ewma_shift=2, min_run=2)
    kappa_m, theta_m = 37, 150 + 40 * seed
    clip_m = None if seed == 0 else 400
    got = alarm_fixed(y, y_frac, p, p_frac, valid, types, rule, kappa_m, theta_m, clip_m)
    s, c, al = _reference_alarm(y, p, valid, types, rule, kappa_m, theta_m, y_frac, p_frac, clip_m)
    assert got["score"].tolist() == s
    assert got["counter"].tolist() == c
    assert got["alarm"].tolist() == al
    assert any(al) and not all(al[5:])  # the case exercises both states
    assert max(c) == types.counter.max_int  # and the counter's saturation


@pytest.mark.parametrize("score", ["instant", "ewma", "cusum"])
def test_fixed_alarm_equals_float_alarm_where_types_are_wide(score):
    rng = np.random.default_rng(5)
    T, k = 2000, 4
    frac = 12
    y = np.round(rng.normal(0.5, 0.01, T) * 2**frac) / 2**frac
    p = np.round((y[:, None] + rng.normal(0, 0.002, (T, k))) * 2**frac) / 2**frac
    p[1500:1600] -= 82 / 2**frac  # an anomaly (on the grid)
    p[:3] = np.nan
    valid = np.isfinite(p).all(axis=1)
    wide = AlarmQuant(
        residual=FixedType(32, 32 - 16, True, "AP_TRN", "AP_SAT"),
        score=FixedType(32, 32 - 24, False, "AP_TRN", "AP_SAT"),
        threshold=FixedType(32, 32 - 24, False, "AP_TRN", "AP_SAT"),
        counter=FixedType(8, 8, False, "AP_TRN", "AP_SAT"),
    )
    rule = AlarmRule(
        score=score, ewma_shift=0 if score == "cusum" else 3, min_run=3, cusum_drift=0.0078125, clip=0.046875
    )
    thr = {"instant": 0.03, "ewma": 0.025, "cusum": 0.01}[score]
    fl = alarm_float(y[:, None] - p, rule, thr)
    lsb = wide.score.lsb
    fx = alarm_fixed(
        np.round(y * 2**frac).astype(np.int64), frac, np.round(np.nan_to_num(p) * 2**frac).astype(np.int64),
        frac, valid, wide, rule, int(rule.cusum_drift / lsb), int(round(thr / lsb)), int(rule.clip / lsb),
    )  # fmt: skip
    assert fl["alarm"].any() and not fl["alarm"].all()
    assert np.array_equal(fl["alarm"], fx["alarm"])
    # the scores themselves agree to the score type's resolution (EWMA rounds every step)
    ok = valid
    assert np.max(np.abs(fl["score"][ok] - fx["score"][ok] * lsb)) < 64 * lsb


def test_counter_saturates():
    c, a = counter_alarm(np.ones(10, dtype=bool), 3, counter_max=7)
    assert c.tolist() == [1, 2, 3, 4, 5, 6, 7, 7, 7, 7] and a.tolist() == [False, False] + [True] * 8


def test_description_alarm_types_optional_and_round_trip():
    from qlstm.testing import random_model, uniform_quantization

    desc, _ = random_model(quantization=uniform_quantization(1), init="uniform")
    d = desc.to_dict()
    assert "alarm" not in d["quantization"]  # old descriptions stay as they were
    q = desc.quantization
    assert q.alarm_types() == AlarmQuant.default_for(q)
    with_alarm = desc.with_quantization(replace(q, alarm=AlarmQuant.default_for(q)))
    back = ModelDescription.from_dict(json.loads(json.dumps(with_alarm.to_dict())))
    assert back.quantization.alarm == AlarmQuant.default_for(q)
    assert "alarm.threshold" in back.quantization.points()
