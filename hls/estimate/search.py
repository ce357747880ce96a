"""The estimate of one (target, HlsConfig) and the search for the smallest one meeting a budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from qlstm.description import GATES, ModelDescription
from qlstm.errors import QlstmError
from qlstm.hls.targets import Resources, Target
from qlstm.hls_config import HlsConfig, check_reuse, valid_reuse_factors

from .model import (
    CLOCK_UNCERTAINTY,
    FAMILY_DELAYS,
    IO_CYCLES,
    MAX_UNROLLED_MULTS,
    SUBFUNCTION_REGISTER_CYCLES,
    _shapes,
    closest_reuse_factor,
)
from .resources import Usage, _dense_usage, _layer_usage, _table_usage
from .schedule import _add_delay, _Chain, _dense_chain, _lookup_chain, _step


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class LayerEstimate:
    name: str
    step_cycles: int  # one time step (recurrent layers) or the whole layer (head)
    cycles: int
    usage: Usage


@dataclass(frozen=True)
class Estimate:
    """An ESTIMATE of hls4ml firmware latency, initiation interval and resources."""

    target: Target  # the part, its capacity and the clock (``target.clock_ns``)
    config: HlsConfig
    layers: tuple[LayerEstimate, ...]
    latency_cycles: int
    ii_cycles: int
    usage: Usage
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: False when Vivado HLS would refuse the design (a dense unrolls more than MAX_UNROLLED_MULTS)
    synthesisable: bool = True

    @property
    def latency_us(self) -> float:
        return self.latency_cycles * self.target.clock_ns / 1000.0

    @property
    def ii_us(self) -> float:
        return self.ii_cycles * self.target.clock_ns / 1000.0

    def utilisation(self) -> dict[str, float]:
        cap: Resources = self.target.resources
        out = {}
        for name, have in (("dsp", cap.dsp), ("lut", cap.lut), ("ff", cap.ff), ("bram_18k", cap.bram_18k)):
            used = getattr(self.usage, name)
            out[name] = used / have if have else (math.inf if used else 0.0)
        return out

    @property
    def fits(self) -> bool:
        return all(v <= 1.0 for v in self.utilisation().values())

    @property
    def peak_utilisation(self) -> float:
        return max(self.utilisation().values())

    def to_dict(self) -> dict:
        s, t = self.config, self.target
        return {
            "kind": "estimate",
            "target": t.name,
            "part": t.part,
            "clock_ns": t.clock_ns,
            "reuse_factor": s.reuse_factor,
            "strategy": s.strategy,
            "static": s.static,
            "latency_cycles": self.latency_cycles,
            "latency_us": self.latency_us,
            "ii_cycles": self.ii_cycles,
            "ii_us": self.ii_us,
            "usage": asdict(self.usage),
            "utilisation": self.utilisation(),
            "fits": self.fits,
            "synthesisable": self.synthesisable,
            "peak_utilisation": self.peak_utilisation,
            "layers": [
                {"name": x.name, "step_cycles": x.step_cycles, "cycles": x.cycles, "usage": asdict(x.usage)}
                for x in self.layers
            ],
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """A human-readable table; every figure is labelled as an estimate."""
        s, t = self.config, self.target
        util = self.utilisation()
        out = [
            f"ESTIMATE (model of hls4ml scheduling, not synthesis) for {t.name} ({t.part}) "
            f"at {1000 / t.clock_ns:.0f} MHz, reuse factor {s.reuse_factor}, strategy {s.strategy}, "
            f"{'static' if s.static else 'non-static'}",
            f"  estimated latency : {self.latency_cycles} cycles = {self.latency_us:.3f} us",
            f"  estimated II      : {self.ii_cycles} cycles = {self.ii_us:.3f} us",
        ]
        cap = t.resources
        for name, have in (("dsp", cap.dsp), ("lut", cap.lut), ("ff", cap.ff), ("bram_18k", cap.bram_18k)):
            out.append(
                f"  estimated {name:<8}: {getattr(self.usage, name):>10,} of {have:,} ({100 * util[name]:.1f} %)"
            )
        for x in self.layers:
            out.append(f"    {x.name:<6} {x.step_cycles:>4} cycles/step, {x.cycles:>6} cycles (estimate)")
        out += [f"  note: {n}" for n in self.notes]
        out.append("  fits the part (estimate)" if self.fits else "  DOES NOT FIT the part (estimate)")
        return out


def estimate(
    desc: ModelDescription,
    target: Target,
    config: HlsConfig | None = None,
    weights: dict[str, np.ndarray] | None = None,
) -> Estimate:
    """Estimate latency, II and resources of the hls4ml firmware of ``desc`` built with
    ``config`` (default: hls4ml's defaults) for ``target`` at ``target.clock_ns``.

    ``weights`` (optional) lets zero weights remove their multipliers, as hls4ml's ``n_zeros``
    does. Raises :class:`QlstmError` for a clock period <= 0 or a reuse factor hls4ml refuses
    (:func:`qlstm.hls_config.check_reuse`).
    """
    settings = HlsConfig() if config is None else config
    if not (math.isfinite(target.clock_ns) and target.clock_ns > 0):
        raise QlstmError(f"clock period {target.clock_ns} ns must be > 0")
    arch = desc.architecture
    d = FAMILY_DELAYS.get(target.family, FAMILY_DELAYS["zynq7"])
    rf = settings.reuse_factor
    check_reuse(desc, rf)
    layers_shape, heads = _shapes(desc, weights)
    notes: list[str] = []
    if target.family not in FAMILY_DELAYS:
        notes.append(f"family {target.family!r} unknown: 7-series delays assumed")
    if desc.quantization is None:
        notes.append("float description: hls4ml's default ap_fixed<16,6> assumed everywhere")
    instances = 1 if settings.static else arch.history
    synthesisable = True
    results: list[LayerEstimate] = []
    total_usage = Usage()
    latency = IO_CYCLES
    for i, layer in enumerate(layers_shape):
        ch = _step(layer, settings, target.clock_ns, d, rf, rf)
        step = ch.total()
        usage = _layer_usage(layer, settings, d, rf, rf, ch.boundaries).scaled(instances)
        results.append(LayerEstimate(f"rnn{i}", step, step * arch.history, usage))
        latency += step * arch.history
        total_usage += usage
        g = GATES[layer.cell] * layer.units
        for n_in in (layer.n_in, layer.units):
            if settings.strategy == "latency" and math.ceil(n_in * g / rf) > MAX_UNROLLED_MULTS:
                synthesisable = False
                notes.append(
                    f"rnn{i}: {math.ceil(n_in * g / rf)} unrolled products in one dense exceed Vivado HLS's "
                    f"limit of {MAX_UNROLLED_MULTS}; use reuse >= {math.ceil(n_in * g / MAX_UNROLLED_MULTS)} "
                    "or the resource strategy"
                )
    ii = 0
    for head in heads:
        head_rf = closest_reuse_factor(head.n_in, head.n_out, rf)
        if head_rf != rf:
            notes.append(
                f"{head.name}: reuse {rf} invalid for {head.n_in}x{head.n_out}, hls4ml uses {head_rf}"
            )
        ch = _Chain(target.clock_ns * (1.0 - CLOCK_UNCERTAINTY))
        _dense_chain(ch, head.n_in, head.w_in, head.w_weight, head.w_accum, head_rf, settings, d)
        head_usage = _dense_usage(
            head.n_in, head.n_out, head.zeros, head.w_in, head.w_weight, head.w_accum, head_rf, settings, d
        )
        if head.activation == "relu":  # a compare and a multiplexer per output, registered
            ch.op(_add_delay(head.w_result, d))
            ch.whole(SUBFUNCTION_REGISTER_CYCLES)
            head_usage += Usage(lut=head.n_out * head.w_result, ff=head.n_out * head.w_result)
        elif head.activation in ("sigmoid", "tanh"):
            _lookup_chain(ch, head.w_result, d, head.w_table)
            head_usage += _table_usage(head.n_out, head.table_size, head.w_table, head.w_result)
        head_cycles = ch.total()
        results.append(LayerEstimate(head.name, head_cycles, head_cycles, head_usage))
        latency += head_cycles
        total_usage += head_usage
        ii = max(ii, head_rf)
    ii = latency if settings.static else max(rf, ii)
    return Estimate(target, settings, tuple(results), latency, ii, total_usage, tuple(notes), synthesisable)


# ----------------------------------------------------------------------------- budget search
class Candidate(Protocol):
    """What the budget choice reads of an estimate: an :class:`Estimate`, or its record as a run
    folder stores it (:class:`qlstm.runs.EstimateRecord`)."""

    @property
    def config(self) -> HlsConfig: ...
    @property
    def latency_us(self) -> float: ...
    @property
    def fits(self) -> bool: ...
    @property
    def synthesisable(self) -> bool: ...
    @property
    def peak_utilisation(self) -> float: ...


@dataclass(frozen=True)
class BudgetResult:
    budget_us: float
    chosen: Any  # the chosen Candidate (an Estimate from search_budget), or None
    candidates: tuple[Any, ...]
    verdict: str


def search_budget(
    desc: ModelDescription,
    target: Target,
    clock_ns: float,
    budget_us: float,
    weights: dict[str, np.ndarray] | None = None,
    statics: tuple[bool, ...] = (True,),
    max_reuse: int | None = None,
) -> BudgetResult:
    """The smallest-resource (reuse factor, strategy) whose ESTIMATED latency meets ``budget_us``
    and that fits ``target``. Resource size = the largest utilisation fraction over DSP, LUT,
    FF and BRAM; ties go to the lower latency. If none qualifies the verdict says by how much
    the best candidate misses (latency over budget, or resources over the part)."""
    if not budget_us > 0:
        raise QlstmError(f"--budget-us {budget_us} must be > 0")
    return choose(candidates(desc, target, clock_ns, weights, statics, max_reuse), budget_us, target.name)


def candidates(
    desc: ModelDescription,
    target: Target,
    clock_ns: float,
    weights: dict[str, np.ndarray] | None = None,
    statics: tuple[bool, ...] = (True,),
    max_reuse: int | None = None,
) -> tuple[Estimate, ...]:
    """The ESTIMATE of every (reuse factor hls4ml accepts, strategy, static) at ``clock_ns``: what
    :func:`choose` picks from (the hls step stores them in ``estimate.json`` for the report)."""
    rfs = [r for r in valid_reuse_factors(desc) if max_reuse is None or r <= max_reuse]
    at_clock = replace(target, clock_ns=clock_ns)
    return tuple(
        estimate(desc, at_clock, HlsConfig(strategy=strat, reuse_factor=rf, static=static), weights)
        for rf in rfs
        for strat in ("latency", "resource")
        for static in statics
    )


def choose(cands: Sequence[Candidate], budget_us: float, target_name: str) -> BudgetResult:
    """Of ``cands`` (one target), the smallest-resource candidate whose ESTIMATED latency meets
    ``budget_us`` and that fits (the rule of :func:`search_budget`), with its verdict. Pure: it
    reads the candidates, it estimates nothing. Raises QlstmError for a budget <= 0."""
    if not budget_us > 0:
        raise QlstmError(f"--budget-us {budget_us} must be > 0")
    cands = tuple(cands)
    ok = [e for e in cands if e.fits and e.latency_us <= budget_us and e.synthesisable]
    if ok:
        best = min(ok, key=lambda e: (e.peak_utilisation, e.latency_us))
        s = best.config
        verdict = (
            f"meets {budget_us:g} us (estimate): reuse factor {s.reuse_factor}, {s.strategy}, "
            f"{'static' if s.static else 'non-static'}: {best.latency_us:.3f} us, "
            f"peak utilisation {100 * best.peak_utilisation:.1f} %"
        )
        return BudgetResult(budget_us, best, tuple(cands), verdict)
    fitting = [e for e in cands if e.fits and e.synthesisable]
    if fitting:
        fastest = min(fitting, key=lambda e: (e.latency_us, e.peak_utilisation))
        s = fastest.config
        verdict = (
            f"NO configuration meets {budget_us:g} us on {target_name} (estimate): the fastest that fits "
            f"(reuse factor {s.reuse_factor}, {s.strategy}) takes {fastest.latency_us:.3f} us, "
            f"{fastest.latency_us - budget_us:.3f} us ({fastest.latency_us / budget_us:.2f}x) over budget"
        )
        return BudgetResult(budget_us, None, tuple(cands), verdict)
    smallest = min(cands, key=lambda e: e.peak_utilisation)
    s = smallest.config
    verdict = (
        f"NO configuration fits {target_name} (estimate): the smallest (reuse factor {s.reuse_factor}, {s.strategy}) "
        f"needs {100 * smallest.peak_utilisation:.0f} % of its scarcest resource"
    )
    return BudgetResult(budget_us, None, tuple(cands), verdict)
