"""The synthetic generator: determinism, and the statistics of each ingredient."""

from __future__ import annotations

import numpy as np
import pytest

from qlstm.data import SyntheticConfig, components, generate
from qlstm.errors import QlstmError

SHORT = SyntheticConfig.short()


def _same(a, b) -> bool:
    return all(
        x.name == y.name and np.array_equal(x.t, y.t) and np.array_equal(x.x, y.x)
        for x, y in zip(a.events, b.events, strict=True)
    )


def test_same_seed_identical_different_seed_different():
    cfg = SyntheticConfig.short(channels=("U_res", "I"))
    a, b = generate(cfg), generate(cfg)
    assert _same(a, b)
    c = generate(SyntheticConfig.short(channels=("U_res", "I"), seed=1))
    for x, y in zip(a.events, c.events, strict=True):
        assert not np.array_equal(x.x[:, 0], y.x[:, 0])
        assert not np.array_equal(x.x[:, 1], y.x[:, 1])


def test_event_does_not_depend_on_number_of_events():
    few, many = generate(SyntheticConfig.short(n_events=2)), generate(SyntheticConfig.short(n_events=5))
    assert _same(few, many.subset([0, 1]))


def test_default_event_is_24h_at_400ms_with_quench_on_last_sample():
    cfg = SyntheticConfig(n_events=1)
    es = generate(cfg)
    e = es.events[0]
    assert cfg.n_samples == 216_000 and len(e) == 216_000
    assert es.dt == 0.4 and es.channel_names == ("U_res",) and es.units == ("V",)
    assert e.quench_index == len(e) - 1
    np.testing.assert_allclose(np.diff(e.t), 0.4, rtol=1e-9)
    assert "synthetic" in es.source


def test_short_config_is_small():
    es = generate(SHORT)
    assert 4 <= len(es) <= 6 and all(2000 <= len(e) <= 4000 for e in es.events)


def test_two_channels_order_and_units():
    es = generate(SyntheticConfig.short(channels=("U_res", "I"), n_events=1))
    assert es.channel_names == ("U_res", "I") and es.units == ("V", "A")
    comp = components(SyntheticConfig.short(channels=("U_res", "I")), 0)
    np.testing.assert_array_equal(es.events[0].x[:, 0], comp["u_res"])
    np.testing.assert_array_equal(es.events[0].x[:, 1], comp["i_meas"])


def test_sum_of_components_is_the_analog_signal():
    c = components(SHORT, 2)
    total = c["resistive"] + c["inductive"] + c["drift"] + c["spikes"] + c["precursor"] + c["noise"]
    np.testing.assert_allclose(c["u_analog"], total, rtol=0, atol=1e-15)


def test_noise_and_adc_in_the_output():
    """What is left after removing the noiseless model is the noise plus ADC rounding."""
    cfg = SyntheticConfig.short(n_events=4)
    step = cfg.adc_step_v
    resid = []
    for i in range(cfg.n_events):
        c = components(cfg, i)
        codes = c["u_res"] / step
        np.testing.assert_array_equal(codes, np.rint(codes))  # every value on the ADC grid
        assert np.max(np.abs(c["u_res"] - c["u_analog"])) <= step / 2 + 1e-15
        resid.append(c["u_res"] - (c["u_analog"] - c["noise"]))
    resid = np.concatenate(resid)
    expected = np.sqrt(cfg.noise_std_v**2 + step**2 / 12)
    assert abs(resid.std() / expected - 1) < 0.05  # n = 12,000: std error of a std ~ 0.7 %
    assert abs(resid.mean()) < 4 * expected / np.sqrt(resid.size)


def test_adc_step_visible_and_clipping():
    cfg = SyntheticConfig.short(n_events=1, adc_bits=6, adc_range_v=(-0.02, 0.02))
    u = components(cfg, 0)["u_res"]
    step = cfg.adc_step_v
    assert len(np.unique(u)) <= 2**6
    assert np.min(np.diff(np.unique(u))) == pytest.approx(step)
    assert u.max() <= 0.02 and u.min() >= -0.02
    assert u.max() == pytest.approx(0.02 - step)  # the precursor reaches 0.1 V: clipped at full scale


def test_current_cycles_ramp_rate_and_levels():
    cfg = SHORT
    c = components(cfg, 1)
    i = c["current"]
    assert i.min() >= cfg.injection_current_a - 1e-9
    assert i.max() <= cfg.nominal_current_a * cfg.flat_top_fraction[1] + 1e-9
    didt = np.gradient(i, cfg.dt_s)
    assert np.max(np.abs(didt)) == pytest.approx(cfg.ramp_rate_a_per_s, rel=0.01)
    assert 0.05 < c["ramping"].mean() < 0.9  # both ramps and plateaus
    # plateaus: no inductive voltage; ramps: f * L * dI/dt
    np.testing.assert_allclose(c["inductive"], cfg.inductive_fraction * cfg.inductance_h * didt, atol=1e-15)
    np.testing.assert_allclose(c["resistive"], cfg.resistance_ohm * i)


def test_current_channel_noise_and_resolution():
    cfg = SyntheticConfig.short(n_events=1, channels=("U_res", "I"))
    c = components(cfg, 0)
    np.testing.assert_allclose(
        c["i_meas"] / cfg.current_resolution_a, np.rint(c["i_meas"] / cfg.current_resolution_a)
    )
    expected = np.sqrt(cfg.current_noise_a**2 + cfg.current_resolution_a**2 / 12)
    assert abs((c["i_meas"] - c["current"]).std() / expected - 1) < 0.06


def test_spike_count_matches_rate_and_ramps_raise_it():
    cfg = SyntheticConfig.short(n_events=6)
    count = expected = on_ramp = on_ramp_expected = 0.0
    for i in range(cfg.n_events):
        c = components(cfg, i)
        rate = np.where(c["ramping"], cfg.spike_rate_ramp_per_h, cfg.spike_rate_per_h) / 3600
        count += c["spike_onsets"].size
        expected += np.sum(rate * cfg.dt_s)
        on_ramp += np.sum(c["ramping"][c["spike_onsets"]])
        on_ramp_expected += np.sum((rate * cfg.dt_s)[c["ramping"]])
    assert expected > 50
    assert abs(count - expected) < 4 * np.sqrt(expected)
    assert abs(on_ramp - on_ramp_expected) < 4 * np.sqrt(on_ramp_expected)


def test_spike_shape_and_amplitude():
    cfg = SyntheticConfig.short(n_events=1, spike_rate_per_h=60.0, spike_rate_ramp_per_h=60.0)
    c = components(cfg, 0)
    s, on = c["spikes"], c["spike_onsets"]
    n = np.arange(4)
    shape = np.exp(-n * cfg.dt_s / cfg.spike_decay_s) * np.cos(
        2 * np.pi * n * cfg.dt_s / cfg.spike_ring_period_s
    )
    span = int(10 * cfg.spike_decay_s / cfg.dt_s)  # the kernel's length
    isolated = [o for o in on if o + 3 < len(s) and not np.any((on > o - span) & (on <= o + 3) & (on != o))]
    assert len(isolated) > 5
    for o in isolated:  # a decaying oscillation (the converter's ringing), starting at the height
        np.testing.assert_allclose(s[o : o + 4] / s[o], shape, rtol=1e-9, atol=1e-12)
    pure = components(SyntheticConfig.short(n_events=1, spike_rate_per_h=200.0, spike_ring_period_s=0.0), 0)
    o = pure["spike_onsets"][0]
    assert pure["spikes"][o + 1] / pure["spikes"][o] == pytest.approx(np.exp(-cfg.dt_s / cfg.spike_decay_s))
    heights = np.abs(s[isolated])
    assert np.median(np.abs(np.diff(s)[on - 1])) == pytest.approx(cfg.spike_amplitude_v, rel=0.5)
    assert heights.min() > 0


def test_precursor_grows_to_threshold_at_quench():
    cfg = SHORT
    for i in range(cfg.n_events):
        c = components(cfg, i)
        p = c["precursor"]
        assert np.all(np.diff(p) > 0)
        assert p[-1] == pytest.approx(cfg.quench_threshold_v)
        tau = float(c["precursor_tau"])
        assert cfg.precursor_tau_s[0] <= tau <= cfg.precursor_tau_s[1]
        k = int(round(tau / cfg.dt_s))
        assert p[-1 - k] / p[-1] == pytest.approx(np.exp(-k * cfg.dt_s / tau))
        u = c["u_res"]
        # in the data: the last second is far above the level a minute earlier
        assert u[-3:].mean() - np.median(u[-300:-150]) > 0.5 * cfg.quench_threshold_v


def test_drift_slope_recovered_from_the_data():
    """Everything off but drift and noise: a straight-line fit of U_res gives back the slope."""
    cfg = SyntheticConfig.short(
        n_events=20,
        duration_s=3600.0,
        inductance_h=0.0,
        resistance_ohm=0.0,
        spike_rate_per_h=0.0,
        spike_rate_ramp_per_h=0.0,
        quench_threshold_v=1e-12,
        drift_rate_v_per_h=5e-3,
    )
    slopes = []
    for i in range(cfg.n_events):
        c = components(cfg, i)
        fit = np.polyfit(c["t"], c["u_res"], 1)[0]
        se = cfg.noise_std_v * np.sqrt(12 / cfg.n_samples) / c["t"][-1]
        assert abs(fit - float(c["drift_slope"])) < 5 * se
        slopes.append(float(c["drift_slope"]) * 3600)
    # per-event slopes are N(0, drift_rate_v_per_h): 20 draws -> std within a factor ~1.6
    assert 0.6 < np.std(slopes) / cfg.drift_rate_v_per_h < 1.5


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"n_events": 0}, "n_events"),
        ({"channels": ("I",)}, "first channel must be U_res"),
        ({"channels": ("U_res", "T")}, "unknown channel"),
        ({"noise_std_v": -1.0}, "must not be negative"),
        ({"flat_top_s": (10.0, 5.0)}, "low <= high"),
        ({"duration_s": 0.1}, "fewer than 2 samples"),
        ({"ramp_rate_a_per_s": 0.0}, "ramp_rate_a_per_s must be > 0"),
        ({"adc_range_v": (0.1, -0.1)}, "adc_range_v"),
    ],
    ids=[
        "no-events",
        "target-not-first",
        "unknown-channel",
        "negative",
        "bad-range",
        "too-short",
        "zero-ramp",
        "adc",
    ],
)
def test_config_refuses_nonsense(overrides, match):
    with pytest.raises(QlstmError, match=match):
        SyntheticConfig.short(**overrides)
