"""The resource model: DSP, LUT, FF and BRAM of the dense products, tables and one cell."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qlstm.description import GATES
from qlstm.hls_config import HlsConfig

from .model import (
    BRAM18_BITS,
    BRAM18_WIDTH,
    BRAM_MIN_BITS,
    BRAM_MIN_DEPTH,
    CONST_MULT_LUT,
    CONST_WEIGHT_DSP_FRACTION,
    CONTROL_FF,
    CONTROL_LUT,
    LOOKUP_LUT_PER_BIT,
    Delays,
    _LayerShape,
)
from .schedule import _dsp_per_mult, _is_dsp


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
