"""The schedule model: greedy chaining of operator delays into clock cycles for one cell step."""

from __future__ import annotations

import math

from qlstm.hls_config import HlsConfig

from .model import (
    BRAM_MIN_BITS,
    CLOCK_UNCERTAINTY,
    LOOP_ITERATION_CYCLES,
    LUT_MULT_MAX_BITS,
    SUBFUNCTION_REGISTER_CYCLES,
    Delays,
    _LayerShape,
)


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
