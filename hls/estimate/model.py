"""The estimator's model constants (cycle and resource rules, per-family delays) and the
shapes it reads from a description (docs/estimator.md gives the source of each constant)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from qlstm.description import ModelDescription
from qlstm.fixedpoint import FixedType
from qlstm.hls_config import valid_reuse_factor

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
#: hls4ml's default precision, used for every point of a float (unquantized) description.
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
    """One Dense layer of the head and its activation (``w_result``: the Dense output width)."""

    n_in: int
    n_out: int
    w_in: int
    w_weight: int
    w_accum: int
    zeros: int = 0
    name: str = "head"
    activation: str = "linear"
    w_result: int = 0
    table_size: int = 0
    w_table: int = 0


def _shapes(
    desc: ModelDescription, weights: dict[str, np.ndarray] | None
) -> tuple[list[_LayerShape], list[_Head]]:
    arch, q = desc.architecture, desc.quantization
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
    heads = []
    for j, (nm, dl) in enumerate(zip(arch.head_names(), arch.head, strict=True)):
        if q is not None:
            dq = q.head[j]
            ws = (dq.weight.width, dq.accum.width, dq.result.width)
            table = (dq.table.size, dq.table.type.width) if dq.table is not None else DEFAULT_TABLE_SHAPE
            w_out = dq.output.width
        else:
            ws = (DEFAULT_TYPE.width,) * 3
            table, w_out = DEFAULT_TABLE_SHAPE, DEFAULT_TYPE.width
        h = _Head(arch.head_n_in(j), dl.units, w_in, ws[0], ws[1], 0, nm, dl.activation, ws[2], *table)
        heads.append(replace(h, zeros=zeros(f"{nm}.weight")))
        w_in = w_out
    return layers, heads


# ----------------------------------------------------------------------------- reuse factors
def closest_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    valid = [r for r in range(1, n_in * n_out + 1) if valid_reuse_factor(n_in, n_out, r)]
    return min(valid, key=lambda r: (abs(r - rf), r))
