"""The precursor alarm in RTL (qlstm.rtl.alarm) against firmware_sim's alarm (``alarm_fixed``).

Cheap: the traced alarm graph run by da4ml's interpreter in the wrapper's schedule
(:func:`qlstm.rtl.alarm.interpret`) equals :func:`qlstm.rtl.alarm.reference` (``alarm_fixed``, fed
as ``detect --backend firmware`` feeds it) on integers, exactly. Slow: the same in Verilator,
through ``qlstm rtl --alarm --sim`` and ``qlstm detect --backend rtl``.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from rtl_models import policy_model

from qlstm import description
from qlstm.cli import main
from qlstm.description import AlarmQuant
from qlstm.detect.alarm import AlarmRule
from qlstm.errors import QlstmError
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import FixedType
from qlstm.rtl import alarm, api


def _model(alarm_types=None, history=3, horizon=2):
    desc, weights = policy_model(("gru",), (2,), 6, history=history, horizon=horizon)
    if alarm_types is not None:
        desc = desc.with_quantization(replace(desc.quantization, alarm=alarm_types))
    return desc, weights


def _narrow(desc, rounding="AP_TRN"):
    """Narrow alarm types: the residual saturates at +-2, the score at 4 - lsb, the counter at 7."""
    q = desc.quantization
    f = max(q.input.frac, q.dense.result.frac)
    return AlarmQuant(
        residual=FixedType(f + 2, 2, True, rounding, "AP_SAT"),
        score=FixedType(f + 4, 2, False, rounding, "AP_SAT"),
        threshold=FixedType(f + 4, 2, False, "AP_TRN", "AP_SAT"),
        counter=FixedType(3, 3, False, "AP_TRN", "AP_SAT"),
    )


def _toy_stream(desc, n=120):
    """Window stream of a toy recording (mantissas): the newest target sample is 0 except windows
    40-69 (a step of 1.5: residual 1.5 per step ahead, combined 3.0) and 90-91 (one short blip);
    every forecast 0. Two recordings: ``clear`` at windows 0 and 100."""
    q = desc.quantization
    y = np.zeros(n)
    y[40:70] = 1.5
    y[90:92] = 1.5
    y_m = q.input.to_int(y)
    p_m = np.zeros((n, desc.architecture.horizon), dtype=np.int64)
    clear = np.zeros(n, dtype=bool)
    clear[[0, 100]] = True
    return y_m, p_m, clear


def test_known_alarms_of_a_toy_stream_instant_score():
    desc, _ = _model()
    types = _narrow(desc)
    desc = desc.with_quantization(replace(desc.quantization, alarm=types))
    rule = AlarmRule(score="instant")
    ad = alarm.trace_alarm(desc, rule)
    y_m, p_m, clear = _toy_stream(desc)
    st = types.score
    c = alarm.Constants(theta=st.to_int(1.0), clip=st.max_int, kappa=0, min_run=3)
    got = alarm.interpret(ad, y_m, p_m, clear, c)
    want = alarm.reference(types, rule, ad.input_t, ad.result_t, y_m, p_m, clear, c)
    for key in ("score", "counter", "alarm"):
        np.testing.assert_array_equal(got[key], want[key])
    # by hand: the combined residual 1.5 + 1.5 = 3.0 is a score of 3.0 (exact in ap_ufixed<.,2>)
    assert set(got["score"][40:70].tolist()) == {st.to_int(3.0)} and got["score"][:40].max() == 0
    # counter 1, 2, 3, ... saturating at 7 (ap_uint<3>); the alarm from the 3rd sample above theta
    assert got["counter"][40:50].tolist() == [1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    assert np.flatnonzero(got["alarm"]).tolist() == list(range(42, 70))  # the blip (2 samples) is too short


@pytest.mark.parametrize("score", ["instant", "ewma", "cusum"])
@pytest.mark.parametrize("rounding", ["AP_TRN", "AP_RND_CONV"])
def test_interpreter_equals_firmware_alarm_with_saturation(score, rounding):
    desc, _ = _model()
    types = _narrow(desc, rounding)
    desc = desc.with_quantization(replace(desc.quantization, alarm=types))
    rule = AlarmRule(score=score, ewma_shift=2)
    ad = alarm.trace_alarm(desc, rule)
    rng = np.random.default_rng(3)
    n, k = 300, desc.architecture.horizon
    q = desc.quantization
    y_m = q.input.to_int(rng.normal(0.0, 0.3, n))
    p_m = q.dense.result.to_int(rng.normal(0.0, 0.3, (n, k)))
    y_m[100:160] = q.input.max_int  # large residuals: the residual type and the score saturate
    p_m[100:160] = q.dense.result.min_int
    clear = np.zeros(n, dtype=bool)
    clear[[0, 200]] = True
    st = types.score
    c = alarm.Constants(theta=st.to_int(1.2), clip=st.to_int(3.5), kappa=st.to_int(0.8), min_run=2)
    got = alarm.interpret(ad, y_m, p_m, clear, c)
    want = alarm.reference(types, rule, ad.input_t, ad.result_t, y_m, p_m, clear, c)
    for key in ("score", "counter", "alarm"):
        np.testing.assert_array_equal(got[key], want[key])
    assert got["alarm"].any() and not got["alarm"].all()
    assert got["counter"].max() == types.counter.max_int  # the counter saturates
    if score == "cusum":
        assert got["score"].max() == st.max_int  # the score saturates
    # no clip: the score type's largest value
    c2 = replace(c, clip=st.max_int)
    np.testing.assert_array_equal(
        alarm.interpret(ad, y_m, p_m, clear, c2)["score"],
        alarm.reference(types, rule, ad.input_t, ad.result_t, y_m, p_m, clear, c2)["score"],
    )


@pytest.mark.parametrize("score", ["ewma", "cusum"])
def test_interpreter_on_the_network_outputs_of_a_toy_series_default_types(score):
    """The network's own forecasts (firmware_sim) of a toy series with a step, default alarm types."""
    desc, weights = _model(history=4, horizon=3)
    rule = AlarmRule(score=score, ewma_shift=3)
    ad = alarm.trace_alarm(desc, rule)
    assert ad.types == AlarmQuant.default_for(desc.quantization)
    rng = np.random.default_rng(0)
    z = 0.5 + 0.02 * rng.standard_normal(400)
    z[250:] += 0.4  # a step the random network does not forecast
    x = alarm.stream_windows(z[:, None], 4)
    xm = desc.quantization.input.to_int(x)
    p_m = Firmware(desc, weights).run(x).y_m
    y_m = alarm.newest_target(ad, xm)
    np.testing.assert_array_equal(y_m, desc.quantization.input.to_int(z[3:]))
    clear = np.zeros(len(xm), dtype=bool)
    clear[0] = True
    st = ad.types.score
    top = alarm.Constants(ad.types.threshold.max_int, st.max_int, st.to_int(0.05), rule.min_run)
    s = alarm.reference(ad.types, rule, ad.input_t, ad.result_t, y_m, p_m, clear, top)["score"]
    c = replace(top, theta=int(np.quantile(s[s > 0], 0.9)))
    got = alarm.interpret(ad, y_m, p_m, clear, c)
    want = alarm.reference(ad.types, rule, ad.input_t, ad.result_t, y_m, p_m, clear, c)
    for key in ("score", "counter", "alarm"):
        np.testing.assert_array_equal(got[key], want[key])
    assert got["alarm"].any() and not got["alarm"].all()


def test_alarm_is_in_the_top_module_only_when_asked_and_fits_the_window():
    desc, weights = _model()
    d = api.design(desc, weights, 8.0)
    assert d.alarm is None  # no quantization.alarm, no rule: the design of qlstm rtl is unchanged
    d2 = api.design(desc, weights, 8.0, AlarmRule(score="cusum"))
    assert 1 <= d2.alarm.stages < d2.alarm.cycles <= d2.cycles
    from qlstm.rtl.verilog import top_module

    top, _ = top_module(d2)
    for port in (
        "alarm_clear",
        "alarm_theta",
        "alarm_clip",
        "alarm_kappa",
        "alarm_min_run",
        "score",
        "alarm_valid",
    ):
        assert port in top
    with_types = desc.with_quantization(
        replace(desc.quantization, alarm=AlarmQuant.default_for(desc.quantization))
    )
    assert api.design(with_types, weights, 8.0).alarm is not None  # the description carries the points


def test_alarm_constants_out_of_range_and_signed_counter_refused():
    desc, _ = _model()
    ad = alarm.trace_alarm(desc, AlarmRule())
    y = np.zeros(5, dtype=np.int64)
    with pytest.raises(QlstmError, match="theta"):
        alarm.interpret(ad, y, np.zeros((5, 2), np.int64), np.ones(5, bool), alarm.Constants(-1, 0, 0, 1))
    bad = replace(_narrow(desc), counter=FixedType(4, 4, True, "AP_TRN", "AP_SAT"))
    with pytest.raises(QlstmError, match="alarm.counter"):
        alarm.trace_alarm(desc.with_quantization(replace(desc.quantization, alarm=bad)), AlarmRule())


# ====================================================================== Verilator
@pytest.mark.slow
def test_verilator_alarm_equals_firmware_through_rtl_cli(tmp_path, capsys):
    desc, weights = _model(_narrow(_model()[0]))
    run = tmp_path / "qrun"
    description.save(run, desc, weights)
    rng = np.random.default_rng(4)
    z = 0.5 + 0.05 * rng.standard_normal(600)
    z[300:420] += np.linspace(0, 3, 120)  # a growing deviation: alarms, saturating score and counter
    x = alarm.stream_windows(z[:, None], 3)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "rtl"
    code = main(["rtl", str(run), "--target", "zynq7045", "--out", str(out), "--alarm", "cusum",
                 "--sim", "--inputs", str(tmp_path / "x.npy")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "rtl.json").read_text())
    al = s["alarm"]
    assert s["bit_exact"] is True and al["bit_exact"] is True and al["mismatches"] == 0
    assert al["windows"] == len(x) and 0 < al["alarms"] < len(x)
    # the alarm is written A cycles after start, beside the steps: the window's cycles are unchanged
    assert (
        al["cycles_min"]
        == al["cycles_max"]
        == al["cycles_by_construction"]
        == al["stages"] + 1
        <= s["cycles_max"]
    )
    assert s["cycles_min"] == s["cycles_max"] == s["cycles_by_construction"]


@pytest.fixture(scope="module")
def detect_setup(tmp_path_factory):
    from qlstm.testing import detection_run

    root = tmp_path_factory.mktemp("detect_rtl")
    run, data, es, desc = detection_run(root, "q6", *_model(history=4, horizon=2))
    return root, run, data, es, desc


@pytest.mark.slow
def test_detect_backend_rtl_scores_the_rtl_alarms(detect_setup, monkeypatch, capsys):
    root, run, data, es, desc = detect_setup
    monkeypatch.setenv("QLSTM_CACHE", str(root / "cache"))
    out_fw, out_rtl = root / "det_fw", root / "det_rtl"
    common = ["--data", str(data), "--false-alarms-per-day", "5", "--no-progress", "--no-plots"]
    assert main(["detect", str(run), "--backend", "firmware", "--out", str(out_fw), *common]) == 0
    assert main(["detect", str(run), "--backend", "rtl", "--out", str(out_rtl), *common]) == 0
    fw = json.loads((out_fw / "detection.json").read_text())
    d = json.loads((out_rtl / "detection.json").read_text())
    assert "RTL simulation (Verilator)" in d["figures"] and d["backend"] == "rtl"
    r = d["rtl"]
    n_samples = sum(len(es.events[i].t) for i in (2, 3))
    assert r["samples"] == n_samples and r["firings"] == d["alarms"] == sum(e["alarms"] for e in d["events"])
    assert r["alarm_cycles"][1] <= r["cycles_per_window"][0]
    # the RTL's alarms are the firmware's: the same figures
    for key in ("detection_rate", "false_alarms_per_day", "median_lead_time_s", "threshold", "events"):
        assert d[key] == fw[key], key
    # and directly: one held-out event through the cached RTL, alarm bits equal to alarm_fixed
    from qlstm.rtl.backend import alarm_stream

    rule = AlarmRule()
    ad = alarm.trace_alarm(desc, rule)
    e = es.events[3]
    x = alarm.stream_windows(desc.normalisation.apply(e.x).astype(np.float32), 4).astype(np.float64)
    xm = desc.quantization.input.to_int(x)
    clear = np.zeros(len(xm), dtype=bool)
    clear[0] = True
    p_m = Firmware(desc, description.load(run)[1]).run(x).y_m
    c = alarm.check_constants_for(ad, xm, p_m)  # a threshold at the median score: both alarm states
    sim = alarm_stream(run, rule, xm, clear, c)
    np.testing.assert_array_equal(sim.y_m, p_m)
    want = alarm.reference(
        ad.types, rule, ad.input_t, ad.result_t, alarm.newest_target(ad, xm), p_m, clear, c
    )
    for key in ("score", "counter", "alarm"):
        np.testing.assert_array_equal(getattr(sim, key), want[key])
    assert sim.alarm.any() and not sim.alarm.all()


@pytest.mark.parametrize("score", ["ewma", "cusum"])
def test_check_constants_exercise_the_score_on_random_windows(score):
    """qlstm rtl --sim's constants on its own random/saturating windows: the score is non-zero on
    at least a tenth of the windows and zero on some, and the alarm takes both states (a CUSUM
    drift fixed at an eighth of the score's range left every score 0: the testbench's score and
    alarm checks could not fail)."""
    desc, weights = _model(history=4, horizon=2)
    rule = AlarmRule(score=score)
    ad = alarm.trace_alarm(desc, rule)
    x = api.default_windows(desc, 400, seed=2)
    xm = desc.quantization.input.to_int(x)
    p_m = Firmware(desc, weights).run(x).y_m
    c = alarm.check_constants_for(ad, xm, p_m)
    clear = np.zeros(len(xm), dtype=bool)
    clear[0] = True
    want = alarm.reference(
        ad.types, rule, ad.input_t, ad.result_t, alarm.newest_target(ad, xm), p_m, clear, c
    )
    nonzero = np.count_nonzero(want["score"])
    assert 0.1 * len(xm) <= nonzero < len(xm)
    assert want["alarm"].any() and not want["alarm"].all()
    assert (
        alarm.interpret(ad, alarm.newest_target(ad, xm), p_m, clear, c)["score"].tolist()
        == want["score"].tolist()
    )


@pytest.mark.parametrize("bits", [24, 28])
def test_score_of_more_than_32_fraction_bits_saturates_at_its_largest_value(bits):
    """A 24/28-bit model's default score type has 34/38 fraction bits (``ap_ufixed<24,-10>``);
    da4ml 0.6.0 keeps at most 32 in a constant, so the traced saturation bound lost its low bits
    (the RTL score saturated at mantissa 0xfffff0 where firmware_sim's is 0xffffff: 2,996 of 3,000
    windows differed, a new user's trial). The graph is traced scaled by 2**shift (the same
    mantissas); da4ml's Python evaluator (exact here) on a saturating input, then the stream."""
    desc, _ = policy_model(("gru",), (2,), bits, method="ptq", history=3, horizon=2)
    rule = AlarmRule(score="cusum")
    ad = alarm.trace_alarm(desc, rule)
    st, q = ad.types.score, desc.quantization
    assert st.frac > 32
    sh = getattr(ad, "shift", 0)
    row = [q.input.max_value] + [q.output.min_value] * 2 + [st.max_value, st.max_value, 0.0, st.lsb]
    s_new, above = ad.comb([v * 2.0**sh for v in row])  # type: ignore[operator]
    assert (int(round(s_new * 2.0 ** (st.frac - sh))), above) == (st.max_int, 1)
    y_m, p_m, clear = _toy_stream(desc, 120)
    y_m[40:70] = q.input.max_int  # the combined residual saturates: the score reaches its largest value
    c = alarm.Constants(theta=st.max_int, clip=st.max_int, kappa=st.max_int >> 4, min_run=2)
    got = alarm.interpret(ad, y_m, p_m, clear, c)
    want = alarm.reference(ad.types, rule, ad.input_t, ad.result_t, y_m, p_m, clear, c)
    for key in ("score", "counter", "alarm"):
        np.testing.assert_array_equal(got[key], want[key])
    assert got["score"].max() == st.max_int and got["alarm"].any()


@pytest.mark.slow
def test_verilator_cusum_alarm_of_a_24_bit_model_is_bit_exact(tmp_path, capsys):
    """The trial's case: a 24-bit model (score ``ap_ufixed<24,-10>``, 34 fraction bits) with the
    CUSUM alarm through ``qlstm rtl --sim``: every window's score, counter and alarm equal
    firmware_sim's alarm (before the scaled trace 2,996 of 3,000 windows differed)."""
    desc, weights = policy_model(("gru",), (2,), 24, method="ptq", history=3, horizon=2)
    run = tmp_path / "qrun"
    description.save(run, desc, weights)
    rng = np.random.default_rng(6)
    z = 0.5 + 0.05 * rng.standard_normal(500)
    z[250:350] += np.linspace(0, 2, 100)  # a growing deviation: the score saturates
    x = alarm.stream_windows(z[:, None], 3)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "rtl"
    code = main(["rtl", str(run), "--target", "zynq7045", "--clock-ns", "5", "--out", str(out), "--alarm", "cusum",
                 "--sim", "--inputs", str(tmp_path / "x.npy")])  # fmt: skip
    printed = capsys.readouterr().out
    s = json.loads((out / "rtl.json").read_text())
    al = s["alarm"]
    assert (code, s["mismatches"], al["mismatches"]) == (0, 0, 0), printed
    assert s["bit_exact"] is True and al["windows"] == len(x) and 0 < al["alarms"] < len(x)
    assert (
        "; bit-exact with firmware_sim" in printed and "(Verilator, 498 windows in tb/): PASS" in printed
    ), printed
