"""Synthetic quench events, modelled on the paper's data: NOT CERN data.

Wielgosz et al. (NIM A 867 (2017) 40) trained on the resistive voltage ``U_res`` of the LHC's
600 A superconducting corrector magnets, logged every 400 ms, 24 h before each of 425 quenches.
That data is not public. This generator produces series with the same sampling, length and
ingredients, from a physical toy model whose every parameter is a field of
:class:`SyntheticConfig` (meaning, unit, default). The defaults are plausible values chosen by
us for a 600 A corrector circuit, not fitted to any measurement.

Per event (one independent random stream per event, so event ``i`` of a seed is the same
whatever ``n_events`` is), on the grid ``t = n * dt``, ``n = 0 .. T-1``:

* current ``I(t)``: powering cycles of the accelerator: injection plateau, ramp up at a fixed
  rate to a random flat-top current, flat top, ramp down; corners rounded by a moving average
  (parabolic ramp start/end), the first cycle starting at a random phase;
* ``U_res = R I + f L dI/dt + drift + spikes + precursor + noise``, then ADC-quantized:

  - ``R I``: residual resistance (joints, leads) inside the measured span;
  - ``f L dI/dt``: the part of the inductive voltage the compensation leaves (fraction ``f``);
  - drift: offset plus a linear slope (electronics and temperature), random per event;
  - spikes: flux jumps of random sign, Poisson in time with a low rate on plateaus and a
    higher rate while the current ramps (flux jumps happen when the field changes); each one
    a decaying oscillation ``exp(-t/decay) cos(2 pi t/period)``, the ringing of the power
    converter's regulation loop (``spike_ring_period_s = 0``: a plain exponential decay);
  - precursor: the resistive transition before the quench, ``U_th exp(-(t_q - t)/tau)``, which
    reaches the detection threshold ``U_th`` on the last sample (``quench_index = T - 1``);
  - noise: white Gaussian measurement noise;
  - ADC: rounding to the converter's step ``(high - low) / 2**bits`` and clipping to its
    ``2**bits`` codes (``low`` .. ``high - step``).

* ``I`` (optional second channel): the current plus noise, rounded to its logger's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from qlstm.data.events import Event, EventSet
from qlstm.errors import QlstmError

CHANNELS = ("U_res", "I")
#: Precursor kinds: the resistive runaway alone, or a signature seen in magnet data added before it.
PRECURSOR_KINDS = ("exponential", "spikes", "oscillation", "noise", "steps", "slow_rise")
UNITS = {"U_res": "V", "I": "A"}


@dataclass(frozen=True)
class SyntheticConfig:
    """Every parameter of the synthetic generator (defaults: a 600 A corrector circuit, 24 h events).

    Ranges are ``(low, high)`` tuples drawn uniformly per cycle or per event.
    """

    # --- the data set
    n_events: int = 50  #: number of quench events (the paper had 425)
    duration_s: float = 86400.0  #: length of each event, s (24 h = 216,000 samples at 0.4 s)
    dt_s: float = 0.4  #: sampling step, s (the paper's 400 ms logging)
    seed: int = 0  #: random seed; same seed -> identical events
    channels: tuple[str, ...] = ("U_res",)  #: channels to output: ("U_res",) or ("U_res", "I")

    # --- powering cycles (current I)
    nominal_current_a: float = 550.0  #: highest flat-top current, A (600 A class circuits)
    injection_current_a: float = 25.0  #: current on the injection plateau, A
    flat_top_fraction: tuple[float, float] = (0.3, 1.0)  #: flat-top current / nominal, per cycle
    ramp_rate_a_per_s: float = 0.5  #: |dI/dt| while ramping, A/s (about 20 min from injection to nominal)
    ramp_rounding_s: float = 20.0  #: width of the moving average that rounds ramp corners, s
    injection_plateau_s: tuple[float, float] = (1200.0, 5400.0)  #: injection plateau length, s
    flat_top_s: tuple[float, float] = (3600.0, 14400.0)  #: flat-top length, s

    # --- voltage model (U_res)
    inductance_h: float = 0.2  #: magnet self-inductance L, H (600 A correctors: 0.01 - 1 H)
    inductive_fraction: float = 0.05  #: fraction f of L dI/dt left by the compensation (5 mV while ramping)
    resistance_ohm: float = 2e-6  #: residual resistance in the measured span, ohm (1.1 mV at 550 A)
    noise_std_v: float = 1e-4  #: white measurement noise, V (standard deviation)
    drift_offset_v: float = 1e-3  #: standard deviation of the per-event voltage offset, V
    drift_rate_v_per_h: float = 2e-4  #: standard deviation of the per-event drift slope, V/h
    spike_rate_per_h: float = 2.0  #: flux-jump rate on plateaus, 1/h
    spike_rate_ramp_per_h: float = 30.0  #: flux-jump rate while the current ramps, 1/h
    spike_amplitude_v: float = 5e-3  #: median spike height, V (log-normal, sigma 0.5; random sign)
    spike_decay_s: float = 6.0  #: spike decay time constant, s
    spike_ring_period_s: float = 4.0  #: period of the converter-loop ringing a spike excites, s (0: none)
    quench_threshold_v: float = 0.1  #: precursor voltage at the quench (detection threshold), V
    precursor_tau_s: tuple[float, float] = (20.0, 120.0)  #: precursor growth time constant, s
    adc_bits: int = 12  #: U_res converter resolution, bits
    adc_range_v: tuple[float, float] = (-0.25, 0.25)  #: U_res converter input range, V (clipped)

    # --- precursor kinds (anomaly ground truth; docs/data.md "Precursors and anomaly labels")
    #: kinds each event draws one of (uniformly): "exponential" (the resistive runaway alone, the
    #: default) or a signature added before it: "spikes", "oscillation", "noise", "steps", "slow_rise"
    precursor_kinds: tuple[str, ...] = ("exponential",)
    precursor_lead_s: tuple[float, float] = (60.0, 600.0)  #: signature start before the quench, s
    precursor_spike_rate_per_s: float = 0.2  #: "spikes": burst rate after the onset, 1/s
    precursor_spike_v: float = 2e-3  #: "spikes": median height, V (log-normal, sigma 0.5; random sign)
    precursor_spike_decay_s: float = 1.0  #: "spikes": exponential decay time, s (no ringing)
    precursor_oscillation_v: float = 3e-3  #: "oscillation": amplitude reached at the quench, V
    precursor_oscillation_period_s: tuple[float, float] = (2.0, 10.0)  #: "oscillation": period, s
    precursor_noise_v: float = 1e-3  #: "noise": extra noise std reached at the quench, V
    precursor_step_v: float = 1e-3  #: "steps": step height, V (x U(0.5, 1.5), positive)
    precursor_step_rate_per_s: float = 0.02  #: "steps": step rate after the onset, 1/s
    precursor_rise_v: float = 5e-3  #: "slow_rise": linear rise reached at the quench, V

    # --- current channel (I)
    current_noise_a: float = 0.05  #: current measurement noise, A (standard deviation)
    current_resolution_a: float = 0.01  #: current logger resolution, A

    def __post_init__(self) -> None:
        if self.n_events < 1:
            raise QlstmError(f"synthetic: n_events={self.n_events} must be >= 1")
        if not self.dt_s > 0:
            raise QlstmError(f"synthetic: dt_s={self.dt_s} must be > 0")
        if self.n_samples < 2:
            raise QlstmError(f"synthetic: duration_s={self.duration_s} gives fewer than 2 samples")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise QlstmError(f"synthetic: channels {self.channels!r} must be distinct and non-empty")
        for ch in self.channels:
            if ch not in CHANNELS:
                raise QlstmError(f"synthetic: unknown channel {ch!r}; choose from {', '.join(CHANNELS)}")
        if self.channels[0] != "U_res":
            raise QlstmError("synthetic: the first channel must be U_res (the predicted target)")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("n_events", "seed", "channels", "adc_range_v", "precursor_kinds"):
                continue
            vals = v if isinstance(v, tuple) else (v,)
            if any(x < 0 for x in vals):
                raise QlstmError(f"synthetic: {f.name}={v} must not be negative")
            if isinstance(v, tuple) and (len(v) != 2 or v[0] > v[1]):
                raise QlstmError(f"synthetic: {f.name}={v} must be a (low, high) pair with low <= high")
        lo, hi = self.adc_range_v
        if not hi > lo or not 2 <= self.adc_bits <= 24:
            raise QlstmError("synthetic: need adc_range_v low < high and 2 <= adc_bits <= 24")
        for name in ("ramp_rate_a_per_s", "quench_threshold_v", "current_resolution_a"):
            if not getattr(self, name) > 0:
                raise QlstmError(f"synthetic: {name} must be > 0")
        if self.precursor_tau_s[0] <= 0:
            raise QlstmError("synthetic: precursor_tau_s must be > 0")
        if not self.precursor_kinds or any(k not in PRECURSOR_KINDS for k in self.precursor_kinds):
            raise QlstmError(
                f"synthetic: precursor_kinds {self.precursor_kinds!r}: choose from {', '.join(PRECURSOR_KINDS)}"
            )
        if self.injection_plateau_s[1] + self.flat_top_s[1] <= 0:
            raise QlstmError("synthetic: a cycle needs a non-zero plateau or flat top")

    @property
    def n_samples(self) -> int:
        """Samples per event: ``round(duration_s / dt_s)``."""
        return int(round(self.duration_s / self.dt_s))

    @property
    def adc_step_v(self) -> float:
        lo, hi = self.adc_range_v
        return (hi - lo) / 2**self.adc_bits

    @classmethod
    def short(cls, **overrides: Any) -> SyntheticConfig:
        """A tiny deterministic configuration for tests: 6 events x 3,000 samples (20 min).

        Cycles, spikes and precursor are compressed in time so each event still shows them all.
        """
        base = cls(
            n_events=6,
            duration_s=1200.0,
            seed=0,
            ramp_rate_a_per_s=2.0,
            ramp_rounding_s=4.0,
            injection_plateau_s=(60.0, 180.0),
            flat_top_s=(120.0, 300.0),
            spike_rate_per_h=6.0,
            spike_rate_ramp_per_h=120.0,
            precursor_tau_s=(10.0, 30.0),
        )
        return replace(base, **overrides)


def _rounded_cycles(cfg: SyntheticConfig, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """The noiseless current: piecewise-linear powering cycles with moving-average-rounded corners."""
    t_end = t[-1] + cfg.ramp_rounding_s
    bp_t: list[float] = []
    bp_i: list[float] = []
    i_inj = cfg.injection_current_a
    # Start inside a cycle at a random phase: begin up to one full cycle before t = 0.
    now = -rng.uniform(0.0, cfg.injection_plateau_s[1] + cfg.flat_top_s[1]) - cfg.ramp_rounding_s
    while now <= t_end:
        i_top = cfg.nominal_current_a * rng.uniform(*cfg.flat_top_fraction)
        ramp = abs(i_top - i_inj) / cfg.ramp_rate_a_per_s
        plateau = rng.uniform(*cfg.injection_plateau_s)
        top = rng.uniform(*cfg.flat_top_s)
        for dur, level in ((0.0, i_inj), (plateau, i_inj), (ramp, i_top), (top, i_top), (ramp, i_inj)):
            now += dur
            if bp_t and now <= bp_t[-1]:
                continue
            bp_t.append(now)
            bp_i.append(level)
    width = max(1, int(round(cfg.ramp_rounding_s / cfg.dt_s)))
    pad = width // 2
    grid = t[0] + (np.arange(len(t) + width - 1) - pad) * cfg.dt_s
    raw = np.interp(grid, bp_t, bp_i)
    c = np.concatenate([[0.0], np.cumsum(raw)])
    return (c[width:] - c[:-width]) / width


def components(cfg: SyntheticConfig, index: int) -> dict[str, np.ndarray]:
    """Every ingredient of event ``index`` separately (for tests and plots).

    Keys: ``t``, ``current`` (noiseless), ``ramping`` (bool), ``resistive``, ``inductive``,
    ``drift``, ``spikes``, ``spike_onsets`` (sample indices), ``precursor``, ``noise``,
    ``u_analog`` (the sum before the ADC), ``u_res`` (after the ADC), ``i_meas``, ``signature``
    (the precursor kind's addition, included in ``precursor``), and the scalars ``drift_offset``,
    ``drift_slope`` (V/s), ``precursor_tau``, ``precursor_kind`` (str) and ``anomaly_onset`` (the
    sample where the anomaly window starts; it ends at the quench, the last sample) as 0-d arrays.
    """
    if not 0 <= index < cfg.n_events:
        raise QlstmError(f"synthetic: event index {index} outside 0-{cfg.n_events - 1}")
    seq = np.random.SeedSequence(cfg.seed, spawn_key=(index,))  # = child `index` of spawn()
    # Independent streams per ingredient: changing one parameter leaves the others' draws alone.
    # The 7th stream (precursor kind and signature) leaves the first six, and so the default, alone.
    r_cyc, r_drift, r_spk, r_pre, r_noise, r_cur, r_kind = (np.random.default_rng(s) for s in seq.spawn(7))
    n, dt = cfg.n_samples, cfg.dt_s
    t = np.arange(n) * dt

    current = _rounded_cycles(cfg, r_cyc, t)
    didt = np.gradient(current, dt)
    ramping = np.abs(didt) > 0.5 * cfg.ramp_rate_a_per_s
    resistive = cfg.resistance_ohm * current
    inductive = cfg.inductive_fraction * cfg.inductance_h * didt

    offset = r_drift.normal(0.0, cfg.drift_offset_v)
    slope = r_drift.normal(0.0, cfg.drift_rate_v_per_h) / 3600.0
    drift = offset + slope * t

    rate = np.where(ramping, cfg.spike_rate_ramp_per_h, cfg.spike_rate_per_h) / 3600.0
    onsets = np.flatnonzero(r_spk.random(n) < rate * dt)
    heights = cfg.spike_amplitude_v * np.exp(r_spk.normal(0.0, 0.5, onsets.size))
    heights *= r_spk.choice([-1.0, 1.0], onsets.size)
    impulses = np.zeros(n)
    impulses[onsets] = heights
    if cfg.spike_decay_s > 0:
        klen = max(1, int(np.ceil(10 * cfg.spike_decay_s / dt)))
        tk = np.arange(klen) * dt
        kernel = np.exp(-tk / cfg.spike_decay_s)
        if cfg.spike_ring_period_s > 0:
            kernel *= np.cos(2 * np.pi * tk / cfg.spike_ring_period_s)
        spikes = np.convolve(impulses, kernel)[:n]
    else:
        spikes = impulses

    tau = r_pre.uniform(*cfg.precursor_tau_s)
    precursor = cfg.quench_threshold_v * np.exp(-(t[-1] - t) / tau)

    kind, signature, onset = _signature(cfg, r_kind, t, precursor)
    precursor = precursor + signature

    noise = r_noise.normal(0.0, cfg.noise_std_v, n)
    u_analog = resistive + inductive + drift + spikes + precursor + noise
    lo, hi = cfg.adc_range_v
    step = cfg.adc_step_v
    lowest = np.ceil(lo / step)  # 2**adc_bits codes: lowest .. lowest + 2**bits - 1 (like two's complement)
    codes = np.clip(np.rint(u_analog / step), lowest, lowest + 2**cfg.adc_bits - 1)
    u_res = codes * step

    i_meas = current + r_cur.normal(0.0, cfg.current_noise_a, n)
    i_meas = np.rint(i_meas / cfg.current_resolution_a) * cfg.current_resolution_a
    return {
        "t": t,
        "current": current,
        "ramping": ramping,
        "resistive": resistive,
        "inductive": inductive,
        "drift": drift,
        "spikes": spikes,
        "spike_onsets": onsets,
        "precursor": precursor,
        "noise": noise,
        "u_analog": u_analog,
        "u_res": u_res,
        "i_meas": i_meas,
        "drift_offset": np.asarray(offset),
        "drift_slope": np.asarray(slope),
        "precursor_tau": np.asarray(tau),
        "precursor_kind": np.asarray(kind),
        "signature": signature,
        "anomaly_onset": np.asarray(onset),
    }


def _signature(
    cfg: SyntheticConfig, rng: np.random.Generator, t: np.ndarray, runaway: np.ndarray
) -> tuple[str, np.ndarray, int]:
    """The event's precursor kind, its signature (V, added to the runaway) and the anomaly onset.

    "exponential": no signature; the onset is the first sample where the runaway reaches the
    measurement noise's standard deviation (the ADC step if there is no noise). Other kinds: the
    signature starts ``U(precursor_lead_s)`` before the quench (the last sample) and grows up to
    it; the onset is the earlier of its start and the runaway's onset.
    """
    n, dt = len(t), cfg.dt_s
    level = cfg.noise_std_v if cfg.noise_std_v > 0 else cfg.adc_step_v
    runaway_onset = int(np.argmax(runaway >= level)) if (runaway >= level).any() else n - 1
    signature = np.zeros(n)
    if cfg.precursor_kinds == ("exponential",):  # the default: no draws at all
        return "exponential", signature, runaway_onset
    kind = str(cfg.precursor_kinds[int(rng.integers(len(cfg.precursor_kinds)))])
    if kind == "exponential":
        return kind, signature, runaway_onset
    start = max(0, n - 1 - int(round(rng.uniform(*cfg.precursor_lead_s) / dt)))
    m = n - start
    ramp = np.arange(m) / max(m - 1, 1)  # 0 at the onset -> 1 at the quench
    if kind == "spikes":
        hits = np.flatnonzero(rng.random(m) < cfg.precursor_spike_rate_per_s * dt)
        impulses = np.zeros(m)
        impulses[hits] = cfg.precursor_spike_v * np.exp(rng.normal(0.0, 0.5, hits.size))
        impulses[hits] *= rng.choice([-1.0, 1.0], hits.size)
        if cfg.precursor_spike_decay_s > 0:
            klen = max(1, int(np.ceil(10 * cfg.precursor_spike_decay_s / dt)))
            kernel = np.exp(-np.arange(klen) * dt / cfg.precursor_spike_decay_s)
            impulses = np.convolve(impulses, kernel)[:m]
        sig = impulses
    elif kind == "oscillation":
        period = rng.uniform(*cfg.precursor_oscillation_period_s)
        phase = rng.uniform(0.0, 2 * np.pi)
        sig = cfg.precursor_oscillation_v * ramp * np.sin(2 * np.pi * np.arange(m) * dt / period + phase)
    elif kind == "noise":
        sig = cfg.precursor_noise_v * ramp * rng.normal(0.0, 1.0, m)
    elif kind == "steps":
        hits = rng.random(m) < cfg.precursor_step_rate_per_s * dt
        hits[0] = True  # the onset is a step
        sig = np.cumsum(hits * cfg.precursor_step_v * rng.uniform(0.5, 1.5, m))
    else:  # "slow_rise"
        sig = cfg.precursor_rise_v * ramp
    signature[start:] = sig
    return kind, signature, min(start, runaway_onset)


def generate(cfg: SyntheticConfig | None = None) -> EventSet:
    """``cfg.n_events`` synthetic events (see the module docstring); deterministic in ``cfg.seed``."""
    cfg = cfg or SyntheticConfig()
    events = []
    for i in range(cfg.n_events):
        comp = components(cfg, i)
        cols = {"U_res": comp["u_res"], "I": comp["i_meas"]}
        x = np.stack([cols[ch] for ch in cfg.channels], axis=1)
        t = comp["t"]
        window = ((float(t[int(comp["anomaly_onset"])]), float(t[-1])),)
        events.append(Event(f"event_{i:04d}", t, x, quench_index=len(t) - 1, anomalies=window))
    return EventSet(
        tuple(events),
        tuple(cfg.channels),
        tuple(UNITS[ch] for ch in cfg.channels),
        cfg.dt_s,
        source=f"synthetic(seed={cfg.seed})",
        meta={
            "generator": "qlstm.data.synthetic",
            "synthetic": True,
            "precursor_kinds": list(cfg.precursor_kinds),
        },
    )
