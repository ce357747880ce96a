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

The package, by concern: :mod:`.model` (constants, per-family delays, shapes read from the
description), :mod:`.schedule` (cycles of one cell step), :mod:`.resources` (DSP/LUT/FF/BRAM),
:mod:`.search` (:func:`estimate` of one (Target, HlsConfig) and :func:`search_budget`),
:mod:`.calibration` (the published builds and the error on each).
"""

from qlstm.hls_config import valid_reuse_factor, valid_reuse_factors

from .calibration import (
    CALIBRATION,
    UW_REPO,
    CalibrationPoint,
    CalibrationRow,
    calibration_rows,
    estimate_point,
)
from .model import (
    BRAM_MIN_BITS,
    BRAM_MIN_DEPTH,
    CLOCK_UNCERTAINTY,
    CONST_MULT_LUT,
    CONST_WEIGHT_DSP_FRACTION,
    DEFAULT_TABLE,
    DEFAULT_TYPE,
    FAMILY_DELAYS,
    IO_CYCLES,
    LOOKUP_LUT_PER_BIT,
    LUT_MULT_MAX_BITS,
    MAX_UNROLLED_MULTS,
    Delays,
    closest_reuse_factor,
)
from .resources import Usage
from .search import BudgetResult, Estimate, LayerEstimate, candidates, choose, estimate, search_budget

__all__ = [
    "BRAM_MIN_BITS", "BRAM_MIN_DEPTH", "CALIBRATION", "CLOCK_UNCERTAINTY", "CONST_MULT_LUT",
    "CONST_WEIGHT_DSP_FRACTION", "DEFAULT_TABLE", "DEFAULT_TYPE", "FAMILY_DELAYS", "IO_CYCLES",
    "LOOKUP_LUT_PER_BIT", "LUT_MULT_MAX_BITS", "MAX_UNROLLED_MULTS", "UW_REPO", "BudgetResult",
    "CalibrationPoint", "CalibrationRow", "Delays", "Estimate", "LayerEstimate", "Usage",
    "calibration_rows", "candidates", "choose", "closest_reuse_factor", "estimate", "estimate_point", "search_budget",
    "valid_reuse_factor", "valid_reuse_factors",
]  # fmt: skip
