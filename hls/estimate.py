"""Latency and resource ESTIMATES of the hls4ml firmware of a model description (no Vivado here).

Every number this module produces is an estimate from a documented model of how Vivado HLS
schedules hls4ml's ``io_parallel`` recurrent templates; ``docs/estimator.md`` gives the model,
its constants, the published synthesis results it is calibrated on and its error on each.

Schedule model (``nnet_recurrent.h``, ``nnet_dense_latency.h``, ``nnet_dense_resource.h``,
``nnet_activation.h``):

* ``lstm_stack``/``gru_stack`` loop over the L time steps, calling the cell once per step; the
  recurrence ``h_t = f(x_t, h_{t-1})`` makes the steps strictly sequential, so a layer takes
  ``L * step_cycles``. Stacked layers run one after the other (each returns its whole sequence
  before the next starts), then the Dense head.
* One cell step is a dependency chain of operations: the two dense products ``W x + b`` and
  ``U h + b_r`` (in parallel: multiplier, then an adder tree of depth ``ceil(log2(n_in + 1))``),
  their sum, the sigmoid/tanh table lookups (index = add + clamp, then a synchronous ROM read),
  the element-wise state update (multiply, add), ``tanh(c)`` and ``o * tanh(c)`` (LSTM), or the
  GRU's ``r * (U_n h)`` and ``(1 - z) n + z h``. Operations are chained greedily into clock
  cycles of ``clock_ns * (1 - uncertainty)`` from per-operator delays; an operation longer than
  a cycle is pipelined over ``ceil(delay / cycle)`` cycles.
* Each pipelined sub-function (dense, activation) adds one output-register cycle; the time loop
  adds one cycle per iteration. These two constants are set by the calibration point.
* Reuse factor R: the latency-strategy dense is pipelined with ``II = R`` and at most
  ``ceil(n_in * n_out / R)`` multipliers, so a product takes ``R - 1`` extra cycles; the
  resource strategy streams R blocks through a ``PIPELINE II=1 rewind`` loop reading the
  weights from a reshaped memory (one extra read cycle).
* Static (``use_static = true``, hls4ml's default): ONE cell instance serves every time step;
  the next window starts when the previous finished (II = latency). Non-static: the time loop
  is unrolled into L cell instances (L times the resources) and windows enter every R cycles.

Resource model: a product maps to DSPs unless both operands are at most
``LUT_MULT_MAX_BITS`` wide (Vivado HLS builds narrow products from LUTs); a DSP48E1 multiplies
25x18 bits, a DSP48E2 27x18, wider products take ``ceil(a/A) * ceil(b/18)`` slices. Adders cost one
LUT per bit, LUT multipliers ``~a*b/2`` LUTs, reuse multiplexers one LUT per 3 extra inputs per
bit; activation tables are ROMs (one dual-port copy per two parallel lookups), in BRAM when
``size * width >= BRAM_MIN_BITS`` else in LUTs; flip-flops hold the live values at each cycle
boundary. At R = 1 with the latency strategy the weights are constants and part of the products
leave the DSPs for LUTs (``CONST_WEIGHT_DSP_FRACTION``).

Calibration (``CALIBRATION``, ``calibration_rows``): four published Vivado HLS builds of hls4ml
LSTM/GRU layers with their exact configurations. Latency constants were set before these were
found (on the second-hand Khoda et al. band), so the latency rows are held out; the resource
constants name the points they were set on. Errors per point: docs/estimator.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from qlstm.description import GATES, ModelDescription
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.hls.targets import Resources, Target
from qlstm.hls_config import HlsConfig, check_reuse, valid_reuse_factor, valid_reuse_factors  # the one rule

Strategy = Literal["latency", "resource"]

# ----------------------------------------------------------------------------- constants
#: Vivado HLS default clock uncertainty: 12.5 % of the period is kept as margin.
CLOCK_UNCERTAINTY = 0.125
#: Products whose two operands are both at most this wide are built from LUTs.
LUT_MULT_MAX_BITS = 10
#: Vivado HLS C++ loop-unroll limit for one pipelined dense (hls4ml issue #1013): above this the
#: latency strategy does not synthesise and the reuse factor must grow.
MAX_UNROLLED_MULTS = 4096
#: ROMs of at least this many bits go to block RAM; smaller ones to LUTs.
BRAM_MIN_BITS = 16 * 1024
BRAM18_BITS = 18 * 1024
#: Weight memories of the resource strategy at least this deep go to BRAM, shallower to LUT RAM.
#: The calibration builds put depth-20 and depth-30 memories in BRAM, packed 36 bits wide per
#: BRAM18 (docs/estimator.md); shallower ones were not observed.
BRAM_MIN_DEPTH = 20
BRAM18_WIDTH = 36
#: Fully parallel (R = 1) latency strategy: each product has a constant weight and Vivado HLS
#: builds part of them from LUTs (shift-add) instead of a DSP. Fraction left on DSPs and LUTs per
#: product moved to fabric, both set on the LSTM(20) calibration point (held out: GRU(20)).
CONST_WEIGHT_DSP_FRACTION = 0.69
CONST_MULT_LUT = 45
#: LUTs per bit of input per activation-table lookup (index arithmetic, clamp, read-port
#: multiplexing): 127-134 LUT per 16-bit lookup in the GRU(120) build's instance breakdown.
LOOKUP_LUT_PER_BIT = 8
#: Calibrated structural constants (docs/estimator.md): output register of each pipelined
#: sub-function, and the per-iteration overhead of the time loop.
SUBFUNCTION_REGISTER_CYCLES = 1
LOOP_ITERATION_CYCLES = 2
#: Cycles to read the window in and write the result out (top-level ap_vld registers).
IO_CYCLES = 2
#: Per-layer control logic (FSM, loop counters), LUT and FF.
CONTROL_LUT, CONTROL_FF = 150, 120


@dataclass(frozen=True)
class Delays:
    """Combinational operator delays in ns (Vivado HLS operator characterisation, speed -2)."""

    dsp_mult: float  # one DSP multiply, unregistered
    lut_mult_base: float  # LUT multiplier: base + per_bit * max width
    lut_mult_per_bit: float
    add_base: float  # carry-chain adder: base + per_bit * width
    add_per_bit: float
    dsp_a: int  # DSP multiplier port widths (signed): A x B
    dsp_b: int


FAMILY_DELAYS: dict[str, Delays] = {
    "zynq7": Delays(3.4, 1.2, 0.2, 0.9, 0.04, 25, 18),
    "kintex7": Delays(3.4, 1.2, 0.2, 0.9, 0.04, 25, 18),
    "kintexu": Delays(2.6, 0.9, 0.15, 0.7, 0.03, 27, 18),
}


# ----------------------------------------------------------------------------- inputs
#: hls4ml's default precision, used for every point of a float (unquantised) description.
DEFAULT_TYPE = FixedType(16, 6)
DEFAULT_TABLE = (1024, FixedType(18, 8))
DEFAULT_TABLE_SHAPE = (DEFAULT_TABLE[0], DEFAULT_TABLE[1].width)


@dataclass(frozen=True)
class _LayerShape:
    cell: str
    n_in: int
    units: int
    w_in: int  # width of the layer input
    w_weight: int
    w_rweight: int
    w_accum: int
    w_state: int
    table_size: int
    w_table: int
    zeros_ih: int = 0  # zero weights (hls4ml removes their multipliers: n_zeros)
    zeros_hh: int = 0


@dataclass(frozen=True)
class _Head:
    n_in: int
    n_out: int
    w_in: int
    w_weight: int
    w_accum: int
    zeros: int = 0


def _shapes(desc: ModelDescription, weights: dict[str, np.ndarray] | None) -> tuple[list[_LayerShape], _Head]:
    arch, q = desc.architecture, desc.quantisation
    layers: list[_LayerShape] = []
    w_in = q.input.width if q else DEFAULT_TYPE.width

    def zeros(key: str) -> int:
        return 0 if weights is None else int(np.count_nonzero(np.asarray(weights[key]) == 0))

    for i, layer in enumerate(arch.layers):
        if q is not None:
            lq = q.layers[i]
            types = (lq.weight.width, lq.recurrent_weight.width, lq.accum.width, lq.state.width)
            table = (lq.table.size, lq.table.type.width)
        else:
            types = (DEFAULT_TYPE.width,) * 4
            table = (DEFAULT_TABLE[0], DEFAULT_TABLE[1].width)
        layers.append(
            _LayerShape(
                layer.cell,
                arch.n_in(i),
                layer.units,
                w_in,
                *types,
                *table,
                zeros_ih=zeros(f"rnn{i}.weight_ih"),
                zeros_hh=zeros(f"rnn{i}.weight_hh"),
            )  # fmt: skip
        )
        w_in = types[3]
    if q is not None:
        head = _Head(arch.layers[-1].units, arch.horizon, w_in, q.dense.weight.width, q.dense.accum.width)
    else:
        head = _Head(arch.layers[-1].units, arch.horizon, w_in, DEFAULT_TYPE.width, DEFAULT_TYPE.width)
    return layers, replace(head, zeros=zeros("head.weight"))


# ----------------------------------------------------------------------------- reuse factors
def closest_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    valid = [r for r in range(1, n_in * n_out + 1) if valid_reuse_factor(n_in, n_out, r)]
    return min(valid, key=lambda r: (abs(r - rf), r))


# ----------------------------------------------------------------------------- scheduling
class _Chain:
    """Greedy chaining of a dependency chain of operations into clock cycles."""

    def __init__(self, cycle_ns: float) -> None:
        self.cycle_ns = cycle_ns
        self.cycles = 0  # completed cycles
        self.used = 0.0  # ns used in the current (open) cycle
        self.boundaries = 0  # register boundaries crossed (for the FF estimate)

    def op(self, delay_ns: float) -> None:
        if delay_ns > self.cycle_ns:  # pipelined operator: starts a fresh cycle
            self.close()
            n = math.ceil(delay_ns / self.cycle_ns)
            self.cycles += n - 1
            self.boundaries += n - 1
            self.used = delay_ns - (n - 1) * self.cycle_ns
        elif self.used + delay_ns > self.cycle_ns:
            self.close()
            self.used = delay_ns
        else:
            self.used += delay_ns

    def close(self) -> None:
        if self.used > 0:
            self.cycles += 1
            self.boundaries += 1
            self.used = 0.0

    def whole(self, n: int, registers: bool = True) -> None:
        """``n`` full cycles (a synchronous ROM read, a sub-function register, reuse rounds);
        reuse rounds (``registers=False``) keep only the accumulators, counted elsewhere."""
        self.close()
        self.cycles += n
        self.boundaries += n if registers else 0

    def total(self) -> int:
        self.close()
        return self.cycles


def _is_dsp(a: int, b: int) -> bool:
    return max(a, b) > LUT_MULT_MAX_BITS


def _dsp_per_mult(a: int, b: int, d: Delays) -> int:
    if not _is_dsp(a, b):
        return 0
    big, small = max(a, b), min(a, b)
    return math.ceil(big / d.dsp_a) * math.ceil(small / d.dsp_b)


def _mult_delay(a: int, b: int, d: Delays) -> float:
    if _is_dsp(a, b):
        return d.dsp_mult * _dsp_per_mult(a, b, d) ** 0.5  # cascaded slices lengthen the path
    return d.lut_mult_base + d.lut_mult_per_bit * max(a, b)


def _add_delay(w: int, d: Delays) -> float:
    return d.add_base + d.add_per_bit * w


def _dense_chain(ch: _Chain, n_in: int, a: int, b: int, w_acc: int, rf: int, s: HlsConfig, d: Delays) -> None:
    """One dense product on the chain: (weight read), multiply, adder tree, reuse rounds, register."""
    if s.strategy == "resource":
        ch.whole(1)  # reshaped weight memory read
    if rf > 1:
        ch.whole(rf - 1, registers=False)
    ch.op(_mult_delay(a, b, d))
    n_in_eff = math.ceil(n_in / rf) if s.strategy == "resource" else n_in
    for _ in range(math.ceil(math.log2(n_in_eff + 1))):
        ch.op(_add_delay(w_acc, d))
    if s.strategy == "resource" and rf > 1:
        ch.op(_add_delay(w_acc, d))  # accumulation across the R rounds
    ch.whole(SUBFUNCTION_REGISTER_CYCLES)


def _lookup_chain(ch: _Chain, w: int, d: Delays, table_bits: int) -> None:
    ch.op(_add_delay(w, d))  # index = data * size / 16 + offset (a shift and an add)
    ch.op(_add_delay(w, d))  # clamp to [0, size - 1]
    if table_bits >= BRAM_MIN_BITS:
        ch.whole(1)  # synchronous BRAM read
    else:
        ch.op(1.0)  # LUT ROM
    ch.whole(SUBFUNCTION_REGISTER_CYCLES)


def _step(layer: _LayerShape, s: HlsConfig, clock_ns: float, d: Delays, rf_ih: int, rf_hh: int) -> _Chain:
    """The dependency chain of one cell step (the longer of the two dense products first).
    ``rf_ih``/``rf_hh``: reuse factors of the input and recurrent kernels (equal unless hls4ml
    replaced an invalid one by the closest valid value, as in some calibration builds)."""
    ch = _Chain(clock_ns * (1.0 - CLOCK_UNCERTAINTY))
    # the two dense products run in parallel: the one with the longer chain sets the time
    a = _Chain(ch.cycle_ns)
    _dense_chain(a, layer.n_in, layer.w_in, layer.w_weight, layer.w_accum, rf_ih, s, d)
    b = _Chain(ch.cycle_ns)
    _dense_chain(b, layer.units, layer.w_state, layer.w_rweight, layer.w_accum, rf_hh, s, d)
    longest = max(a, b, key=lambda c: c.total())
    ch.cycles, ch.boundaries = longest.cycles, longest.boundaries
    acc, st = layer.w_accum, layer.w_state
    table_bits = layer.table_size * layer.w_table
    ch.op(_add_delay(acc, d))  # tmpres + tmpres_state
    _lookup_chain(ch, acc, d, table_bits)  # sigmoid (and tanh of the candidate) in parallel
    if layer.cell == "lstm":
        ch.op(_mult_delay(acc, st, d))  # c*f  (and g*i in parallel)
        ch.op(_add_delay(acc, d))  # + g*i, cast to the state type
        _lookup_chain(ch, st, d, table_bits)  # tanh(c)
        ch.op(_mult_delay(acc, acc, d))  # h = o * tanh(c)
    else:  # GRU: n = tanh(W_n x + r * (U_n h)), h = (1 - z) n + z h
        ch.op(_mult_delay(acc, acc, d))
        ch.op(_add_delay(acc, d))
        _lookup_chain(ch, acc, d, table_bits)
        ch.op(_mult_delay(acc, st, d))
        ch.op(_add_delay(acc, d))
    ch.whole(LOOP_ITERATION_CYCLES)
    return ch


# ----------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class Usage:
    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram_18k: int = 0

    def __add__(self, o: Usage) -> Usage:
        return Usage(self.dsp + o.dsp, self.lut + o.lut, self.ff + o.ff, self.bram_18k + o.bram_18k)

    def scaled(self, k: int) -> Usage:
        return Usage(self.dsp * k, self.lut * k, self.ff * k, self.bram_18k * k)


def _mults(count: int, a: int, b: int, d: Delays) -> Usage:
    if _is_dsp(a, b):
        return Usage(dsp=count * _dsp_per_mult(a, b, d))
    return Usage(lut=count * math.ceil(a * b / 2))


def _dense_usage(
    n_in: int, n_out: int, zeros: int, a: int, b: int, w_acc: int, rf: int, s: HlsConfig, d: Delays
) -> Usage:
    """Multipliers (hls4ml's ``multiplier_limit``), adders, operand selection and weight storage."""
    n_mult = max(1, math.ceil(n_in * n_out / rf) - zeros // rf)
    u = _mults(n_mult, a, b, d)
    if rf == 1 and s.strategy == "latency" and u.dsp:  # constant weights: some products leave the DSPs
        moved = n_mult - math.ceil(n_mult * CONST_WEIGHT_DSP_FRACTION)
        u = Usage(dsp=u.dsp - moved * _dsp_per_mult(a, b, d), lut=moved * CONST_MULT_LUT)
    adds = max(n_mult, n_out)  # every product is summed once per round
    mux_per_bit = math.ceil((rf - 1) / 3)  # an R:1 multiplexer: one LUT6 per 3 extra inputs per bit
    if rf == 1:  # fully unrolled: constant weights, no selection
        extra = Usage()
    elif s.strategy == "latency":
        # HLS binds the unrolled products to the limited multipliers freely: every multiplier
        # selects its data operand (R:1) and its constant weight (an R-entry LUT ROM).
        extra = Usage(lut=n_mult * (a * mux_per_bit + b * math.ceil(rf / 64)))
    else:
        # dense_resource: multiplier im reads data[(ir + im * R) % n_in] in round ir, so only
        # ceil(n_in / R) distinct R:1 selections exist; weights come from a memory of depth R
        # and width n_mult * b (BRAM when deep enough, else LUT RAM).
        sel = Usage(lut=math.ceil(n_in / rf) * a * mux_per_bit)
        if rf >= BRAM_MIN_DEPTH:
            mem = Usage(bram_18k=math.ceil(n_mult * b / BRAM18_WIDTH) * math.ceil(rf / 512))
        else:
            mem = Usage(lut=math.ceil(rf / 64) * n_mult * b)
        extra = sel + mem
    # operand registers of LUT multipliers, at every R (counting them only for R > 1 made FF
    # jump at R = 2; FF are under-estimated at R = 1 on the calibration points anyway)
    ff = n_out * w_acc + (0 if _is_dsp(a, b) else n_mult * (a + b))
    return u + extra + Usage(lut=adds * w_acc, ff=ff)


def _table_usage(lookups: int, size: int, w_table: int, w_index: int) -> Usage:
    copies = math.ceil(lookups / 2)  # dual-port ROMs
    bits = size * w_table
    index = lookups * LOOKUP_LUT_PER_BIT * w_index
    if bits >= BRAM_MIN_BITS:
        return Usage(lut=index, bram_18k=copies * math.ceil(bits / BRAM18_BITS))
    return Usage(lut=index + copies * math.ceil(size / 64) * w_table)


def _layer_usage(
    layer: _LayerShape, s: HlsConfig, d: Delays, rf_ih: int, rf_hh: int, boundaries: int
) -> Usage:
    g = GATES[layer.cell] * layer.units
    h, acc, st = layer.units, layer.w_accum, layer.w_state
    u = _dense_usage(layer.n_in, g, layer.zeros_ih, layer.w_in, layer.w_weight, acc, rf_ih, s, d)
    u += _dense_usage(layer.units, g, layer.zeros_hh, st, layer.w_rweight, acc, rf_hh, s, d)
    if layer.cell == "lstm":
        u += _mults(2 * h, acc, st, d) + _mults(h, acc, acc, d)  # c*f, g*i ; o*tanh(c)
        # sigmoid(i,f,o) + tanh(g); tanh(c) reuses the tanh instance (one per cell in the
        # LSTM(20) build, whose BRAM count is 3H/2 + H/2 table copies)
        lookups = 4 * h
    else:
        u += _mults(h, acc, acc, d) + _mults(2 * h, acc, st, d)
        lookups = 2 * h + h
    u += _table_usage(lookups, layer.table_size, layer.w_table, acc)
    # element-wise adds; live values registered at every cycle boundary of the step
    live_bits = g * acc + 2 * h * st
    u += Usage(lut=3 * h * acc + CONTROL_LUT, ff=boundaries * live_bits // 4 + 2 * h * st + CONTROL_FF)
    return u


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
    layers_shape, head = _shapes(desc, weights)
    notes: list[str] = []
    if target.family not in FAMILY_DELAYS:
        notes.append(f"family {target.family!r} unknown: 7-series delays assumed")
    if desc.quantisation is None:
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
    head_rf = closest_reuse_factor(head.n_in, head.n_out, rf)
    if head_rf != rf:
        notes.append(f"head: reuse {rf} invalid for {head.n_in}x{head.n_out}, hls4ml uses {head_rf}")
    ch = _Chain(target.clock_ns * (1.0 - CLOCK_UNCERTAINTY))
    _dense_chain(ch, head.n_in, head.w_in, head.w_weight, head.w_accum, head_rf, settings, d)
    head_cycles = ch.total()
    head_usage = _dense_usage(
        head.n_in, head.n_out, head.zeros, head.w_in, head.w_weight, head.w_accum, head_rf, settings, d
    )
    results.append(LayerEstimate("head", head_cycles, head_cycles, head_usage))
    latency += head_cycles
    total_usage += head_usage
    ii = latency if settings.static else max(rf, head_rf)
    return Estimate(target, settings, tuple(results), latency, ii, total_usage, tuple(notes), synthesisable)


# ----------------------------------------------------------------------------- budget search
@dataclass(frozen=True)
class BudgetResult:
    budget_us: float
    chosen: Estimate | None
    candidates: tuple[Estimate, ...]
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
    rfs = [r for r in valid_reuse_factors(desc) if max_reuse is None or r <= max_reuse]
    at_clock = replace(target, clock_ns=clock_ns)
    cands = [
        estimate(desc, at_clock, HlsConfig(strategy=strat, reuse_factor=rf, static=static), weights)
        for rf in rfs
        for strat in ("latency", "resource")
        for static in statics
    ]
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
            f"NO configuration meets {budget_us:g} us on {target.name} (estimate): the fastest that fits "
            f"(reuse factor {s.reuse_factor}, {s.strategy}) takes {fastest.latency_us:.3f} us, "
            f"{fastest.latency_us - budget_us:.3f} us ({fastest.latency_us / budget_us:.2f}x) over budget"
        )
        return BudgetResult(budget_us, None, tuple(cands), verdict)
    smallest = min(cands, key=lambda e: e.peak_utilisation)
    s = smallest.config
    verdict = (
        f"NO configuration fits {target.name} (estimate): the smallest (reuse factor {s.reuse_factor}, {s.strategy}) "
        f"needs {100 * smallest.peak_utilisation:.0f} % of its scarcest resource"
    )
    return BudgetResult(budget_us, None, tuple(cands), verdict)


# ----------------------------------------------------------------------------- calibration
#: Where the published builds below come from: Vivado HLS reports committed with the hls4ml
#: projects of the University of Washington group (authors of Khoda et al.) in a public
#: repository. They are first-hand tool output with their exact configuration, not the paper's
#: tables (which we could not read); they are C-synthesis estimates, not post-route figures.
UW_REPO = "github.com/uw-acme/HLS4ML_VS_MANUAL"


@dataclass(frozen=True)
class CalibrationPoint:
    """One published hls4ml synthesis result of a recurrent layer, with its exact configuration.

    ``stack_cycles``: the ``lstm_stack``/``gru_stack`` latency (min, max), i.e. the whole layer
    over its L steps; ``cell``: the ``*_static`` instance's resources (one cell). ``fitted``
    names the quantities used to set a constant of this module (the others are held out)."""

    name: str
    source: str
    cell: str
    units: int
    steps: int
    features: int
    width: int  # every type ap_fixed<width, 6> (hls4ml's default precision)
    part: str
    family: str
    clock_ns: float
    strategy: Strategy
    rf_ih: int
    rf_hh: int
    stack_cycles: tuple[int, int]
    cell_usage: Usage
    fitted: tuple[str, ...] = ()


# fmt: off
CALIBRATION: tuple[CalibrationPoint, ...] = (
    CalibrationPoint(
        "LSTM(20) top tagging, RF 1, latency",
        f"{UW_REPO} @2447c23, src/hdl/TopTagging-HLS/model_lstm_hls/hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.1): syn/report/csynth.xml, lstm_static_*_csynth.xml",
        "lstm", 20, 20, 6, 16, "xc7vx690t-ffg1761-2", "kintex7", 5.0, "latency", 1, 1,
        (339, 339), Usage(dsp=1494, lut=73771, ff=44934, bram_18k=40),
        fitted=("dsp", "lut", "bram_18k"),
    ),
    CalibrationPoint(
        "GRU(20) top tagging, RF 1, latency",
        f"{UW_REPO} @2447c23, src/hdl/TopTagging-HLS/model_gru_hls/hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.1): gru_stack_*_csynth.rpt",
        "gru", 20, 20, 6, 16, "xc7vx690t-ffg1761-2", "kintex7", 5.0, "latency", 1, 1,
        (339, 339), Usage(dsp=1244, lut=53854, ff=34535, bram_18k=30),
    ),
    CalibrationPoint(
        "GRU(20) top tagging, RF 30 (recurrent 20), resource",
        f"{UW_REPO} @79a401e, documents/Benchmarks/RNN/toptagging/hls/toptagging_gru_hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.2): gru_stack_ap_fixed_16_6_*_csynth.rpt, parameters.h",
        "gru", 20, 20, 6, 16, "xcu250-figd2104-2L-e", "kintexu", 5.0, "resource", 30, 20,
        (801, 821), Usage(dsp=132, lut=18000, ff=8157, bram_18k=63),
    ),
    CalibrationPoint(
        "GRU(120) flavour tagging, RF 30, resource",
        f"{UW_REPO} @79a401e, documents/Benchmarks/RNN/ftag/hls/ftag_gru_hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.2): gru_stack/gru_static_ap_fixed_16_6_*_csynth.rpt",
        "gru", 120, 15, 6, 16, "xcu250-figd2104-2L-e", "kintexu", 5.0, "resource", 30, 30,
        (601, 616), Usage(dsp=1872, lut=127081, ff=75740, bram_18k=852),
        fitted=("lut", "bram_18k"),
    ),
)
# fmt: on


@dataclass(frozen=True)
class CalibrationRow:
    point: str
    quantity: str  # "latency_cycles", "dsp", "lut", "ff", "bram_18k"
    published: tuple[int, int]
    estimated: int
    fitted: bool

    @property
    def error(self) -> float:
        """Relative error of the ESTIMATE against the middle of the published range."""
        mid = (self.published[0] + self.published[1]) / 2
        return (self.estimated - mid) / mid


def estimate_point(p: CalibrationPoint) -> tuple[int, Usage]:
    """ESTIMATED (layer cycles over the L steps, one cell's resources) for a calibration point."""
    d = FAMILY_DELAYS[p.family]
    layer = _LayerShape(p.cell, p.features, p.units, *(p.width,) * 5, *DEFAULT_TABLE_SHAPE)
    s = HlsConfig(strategy=p.strategy)
    ch = _step(layer, s, p.clock_ns, d, p.rf_ih, p.rf_hh)
    return ch.total() * p.steps, _layer_usage(layer, s, d, p.rf_ih, p.rf_hh, ch.boundaries)


def calibration_rows() -> list[CalibrationRow]:
    """Every calibration point's published figure beside the estimator's (docs/estimator.md)."""
    rows = []
    for p in CALIBRATION:
        cycles, usage = estimate_point(p)
        rows.append(CalibrationRow(p.name, "latency_cycles", p.stack_cycles, cycles, "latency" in p.fitted))
        for q in ("dsp", "lut", "ff", "bram_18k"):
            pub = getattr(p.cell_usage, q)
            rows.append(CalibrationRow(p.name, q, (pub, pub), getattr(usage, q), q in p.fitted))
    return rows
