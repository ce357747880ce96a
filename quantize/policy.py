"""How ``qlstm quantize`` chooses a fixed-point type for every quantization point.

Widths come from the options (``--bits`` for everything, ``--state-bits`` etc. per role, a
``layers:`` list in the YAML config per layer); integer bits come from the ranges profiled on the
training windows of the float run (:func:`qlstm.quantize.model.profile`).

Policy (documented defaults, every one overridable in :class:`QuantizeConfig`):

* **state** (h and, for LSTM, c share hls4ml's ``res_T``):

  - PTQ: integer bits cover the profiled range but at most [-4, 4), the input range of hls4ml's
    tanh table: beyond it ``tanh(c)`` is the table's end entry anyway, so a wider c range only
    costs the fraction bits of h. Measured on the compact model (c reaches 12.5) at 8 bits, PTQ
    test RMSE: 0.061 with ``ap_fixed<8,5>`` (covering c), 0.016 with ``ap_fixed<8,3>`` (this
    cap); at 10 bits 0.015 -> 0.0063.
  - QAT: one integer bit, [-1, 1) (``QAT_STATE_INTEGER``): h = o tanh(c) lies in (-1, 1) anyway,
    and the fine-tuning sees c saturate there and learns to live with it, while h gains two
    fraction bits over [-4, 4). Measured on configs/compact.yaml (LSTM(16), float test RMSE
    0.001849) at 8 bits, QAT test RMSE / float: 1.589 with ``ap_fixed<8,3>``, 1.244 with
    ``ap_fixed<8,2>``, 1.232 with ``ap_fixed<8,1>``.
  - ``state_integer_bits`` (``--state-integer-bits``) sets it for both methods.
* **integer bits**: the fewest that cover the profiled max |value| (``max_value >= max|x|``),
  plus ``headroom`` bits for the input, states and output (default 0) and ``accum_headroom``
  for the accumulators (default 1, they wrap). Weights and biases are covered exactly (their
  range is known). Integer bits may be negative (small weights) and never exceed the width.
  ``rnn0.weight`` has one type for all input channels, whose columns carry the folded training
  standardisation scales: :func:`input_weight_ranges` reports the channel that sets its range.
* **weights, biases, states** (the datapath: multipliers and state registers): ``--bits`` wide;
  round to nearest even (``AP_RND_CONV``), saturate (``AP_SAT``).
* **input and result**: ``--bits + 4`` wide (at most 32), same modes. There is one input channel
  and ``k`` outputs, so these cost next to nothing in hardware, while an 8-bit input or output
  alone adds quantization noise ``lsb / sqrt(12) ~ 0.0023`` of the normalised range, as large as
  the float model's whole error on the synthetic data (measured: compact float test RMSE 0.0022).
  ``--input-bits`` / ``--result-bits`` set them like any other role.
* **accumulators**: truncate (``AP_TRN``) and wrap (``AP_WRAP``), as hls4ml's MAC trees; wide
  enough that every product and sum is exact (``frac = max(frac_data + frac_weight, frac_state
  + frac_recurrent_weight, frac_bias, frac_table)``), capped at ``max_accum_bits`` (32), where the
  fraction bits are cut; ``--accum-bits`` sets the width directly.
* **tables**: ``2**bits`` entries, at least hls4ml's 1024 and at most 65,536, so the table's
  input step (16 / size for sigmoid) equals the LSB of a ``bits``-wide accumulator value with 4
  integer bits. hls4ml's index *truncates* the input, and with 1024 entries that alone costs
  ~0.01 RMSE on a normalised output (measured on random models: 1.1e-2 at 16 bits with 1024
  entries, 6e-4 with 16,384, 1e-4 with 65,536), ten times the paper's best RMSE. Type
  ``ap_fixed<bits + 2, 1, AP_RND_CONV, AP_SAT>``: sigmoid and tanh lie in (-1, 1); two more bits
  than the data so the table is not the coarsest step.
* **a head of several Dense layers** (imported models): per layer ``weight``/``bias`` and
  ``accum`` as the output layer's; the Dense ``result`` of a hidden layer or of a layer with an
  activation is ``--bits`` wide (datapath), covering the profiled range, capped for sigmoid/tanh
  at the table's input range ([-8, 8) / [-4, 4): beyond it the table's end entry is looked up
  anyway); the activation's ``act_result`` is ``--bits`` wide (the network output ``bits + 4``);
  sigmoid/tanh tables as the recurrent layers' (size and type). Softmax is refused: hls4ml's
  softmax (exp and inverse tables) is not simulated bit-exactly by firmware_sim.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from qlstm.description import (
    SIGMOID_RANGE,
    TANH_RANGE,
    Architecture,
    DenseQuant,
    ModelDescription,
    Quantization,
    RecurrentQuant,
    TableSpec,
)
from qlstm.errors import QlstmError
from qlstm.fixedpoint import MAX_WIDTH, MIN_WIDTH, FixedType

if TYPE_CHECKING:  # torch is imported only by the commands that quantize
    from qlstm.quantize.model import Profile

log = logging.getLogger(__name__)

#: States need at most [-4, 4) (hls4ml's tanh table input range): ap_fixed<W, 3>.
STATE_MAX_INTEGER = 1 + int(math.log2(TANH_RANGE))
#: QAT keeps the states in [-1, 1): ap_fixed<W, 1> (see the module docstring).
QAT_STATE_INTEGER = 1


@dataclass(frozen=True)
class LayerBits:
    """Per-recurrent-layer width overrides (None: the global setting)."""

    weight_bits: int | None = None
    bias_bits: int | None = None
    state_bits: int | None = None
    accum_bits: int | None = None
    table_bits: int | None = None
    table_size: int | None = None


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware fine-tuning (``--method qat``)."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3  # Adam, cosine decay to lr/100
    patience: int = 3  # early stopping on the validation loss (QAT forward)
    seed: int = 0
    grad_clip: float = 1.0
    #: At most this many training windows per epoch (a fixed random subset; 0 = all).
    max_train_windows: int = 50_000
    #: At most this many validation windows for early stopping (a fixed random subset; 0 = all).
    max_val_windows: int = 10_000

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise QlstmError("qat.epochs, qat.batch_size and qat.patience must be >= 1")
        if self.max_train_windows < 0 or self.max_val_windows < 0:
            raise QlstmError("qat.max_train_windows and qat.max_val_windows must be >= 0")
        if self.lr <= 0 or self.grad_clip < 0:
            raise QlstmError("qat.lr must be > 0 and qat.grad_clip >= 0")


@dataclass(frozen=True)
class QuantizeConfig:
    """The ``quantize:`` settings (YAML keys = these field names; unknown keys are errors)."""

    method: Literal["ptq", "qat"] = "ptq"
    bits: int = 8
    input_bits: int | None = None  # None: bits + 4
    weight_bits: int | None = None
    bias_bits: int | None = None
    state_bits: int | None = None
    accum_bits: int | None = None  # None: exact products, at most max_accum_bits
    max_accum_bits: int = MAX_WIDTH
    result_bits: int | None = None  # None: bits + 4
    table_bits: int | None = None  # None: bits + 2 (at most 32)
    table_size: int | None = None  # None: 2**bits within [1024, 65536]
    headroom: int = 0
    accum_headroom: int = 1
    #: integer bits of the state types (None: PTQ the profiled range capped at [-4, 4), QAT 1)
    state_integer_bits: int | None = None
    rounding: str = "AP_RND_CONV"
    overflow: str = "AP_SAT"
    accum_rounding: str = "AP_TRN"
    accum_overflow: str = "AP_WRAP"
    layers: tuple[LayerBits, ...] = ()
    qat: QatConfig = field(default_factory=QatConfig)

    def __post_init__(self) -> None:
        widths = {
            "bits": self.bits,
            "input_bits": self.input_bits,
            "weight_bits": self.weight_bits,
            "bias_bits": self.bias_bits,
            "state_bits": self.state_bits,
            "accum_bits": self.accum_bits,
            "max_accum_bits": self.max_accum_bits,
            "result_bits": self.result_bits,
            "table_bits": self.table_bits,
        }
        for i, lb in enumerate(self.layers):
            for k in ("weight_bits", "bias_bits", "state_bits", "accum_bits", "table_bits"):
                widths[f"layers[{i}].{k}"] = getattr(lb, k)
        for name, w in widths.items():
            if w is not None and not MIN_WIDTH <= w <= MAX_WIDTH:
                raise QlstmError(f"{name}={w}: bit width outside {MIN_WIDTH}-{MAX_WIDTH}")
        if self.headroom < 0 or self.accum_headroom < 0:
            raise QlstmError("headroom and accum_headroom must be >= 0")
        if self.state_integer_bits is not None and not 1 <= self.state_integer_bits <= STATE_MAX_INTEGER:
            raise QlstmError(
                f"state_integer_bits={self.state_integer_bits}: outside 1-{STATE_MAX_INTEGER} "
                f"(the states of hls4ml's LSTM/GRU never need more than [-{TANH_RANGE:g}, {TANH_RANGE:g}))"
            )
        sizes = [s for s in [self.table_size] + [lb.table_size for lb in self.layers] if s is not None]
        for s in sizes:
            TableSpec(s, FixedType(8, 1))  # validates the size
        # validate the mode names now, before anything runs
        FixedType(8, 1, True, self.rounding, self.overflow)
        FixedType(8, 1, True, self.accum_rounding, self.accum_overflow)


def integer_bits(max_abs: float, width: int, headroom: int, what: str | None) -> int:
    """Fewest integer bits (sign included) with ``max_value >= max_abs``, plus ``headroom``;
    logs a warning naming ``what`` when even ``width`` integer bits cannot hold it (None: no log)."""
    integer = -width
    while integer < width and FixedType(width, integer).max_value < max_abs:
        integer += 1
    integer = min(integer + headroom, width)
    if what is not None and FixedType(width, integer).max_value < max_abs:
        log.warning("%s: max |value| %.4g exceeds the %d-bit range; it will saturate", what, max_abs, width)
    return integer


#: :func:`input_weight_ranges` warns when one input channel's first-layer weights need this many
#: integer bits more than every other channel's: the others lose that many fraction bits.
INPUT_RANGE_WARN_BITS = 2


def input_weight_ranges(
    desc: ModelDescription, q: Quantization, weights: dict[str, np.ndarray]
) -> dict[str, Any] | None:
    """Which input channel sets the range of ``rnn0.weight`` (one type for all channels), and
    what it costs the others; logs one WARNING line when a channel's weights saturate, or when
    the channel with the largest training standardisation scale costs the others (with non-zero
    weights) :data:`INPUT_RANGE_WARN_BITS` fraction bits or more.

    Training folds its standardisation scale ``1/std`` into each channel's column of
    ``rnn0.weight_ih``, so a channel with a tiny (but non-zero) std over the training windows
    gets large folded weights: the type still covers them (integer bits from the largest
    weight), but every other channel's weights lose precision, or, past the width, saturate.
    Returns None for a one-channel model, else the per-channel max |w| and integer bits needed
    (``metrics.json``'s ``input_weight_ranges``).
    """
    names = desc.normalisation.channel_names
    if len(names) < 2:
        return None
    t = q.layers[0].weight
    col = np.abs(np.asarray(weights["rnn0.weight_ih"], dtype=np.float64)).max(axis=0)
    need = [integer_bits(float(v), t.width, 0, None) for v in col]
    top = int(np.argmax(col))
    # the other channels with weights (a zero column, e.g. a channel left unscaled, loses nothing)
    others = [i for i in range(len(names)) if i != top and col[i] > 0]
    lost = t.integer - max(need[i] for i in others) if others else 0
    saturated = [names[i] for i in range(len(names)) if col[i] > t.max_value]
    std = desc.standardisation
    # the cost is standardisation's doing when the channel that sets the range got the largest
    # scale (a channel the network barely uses has small weights anyway: no advice to drop)
    by_scale = std is not None and all(std.in_scale[top] > std.in_scale[i] for i in others)
    report = {
        "type": t.describe(),
        "max_abs": {n: float(v) for n, v in zip(names, col, strict=True)},
        "integer_bits_needed": dict(zip(names, need, strict=True)),
        "set_by": names[top],
        "fraction_bits_lost_by_the_others": max(0, lost),
        "saturated": saturated,
    }
    if saturated or (by_scale and lost >= INPUT_RANGE_WARN_BITS):
        why = (
            f", training standardisation scale {std.in_scale[top]:.3g}"
            if std is not None and std.in_scale[top] != 1
            else ""
        )
        sat = f"; {', '.join(saturated)} saturate(s) at its range" if saturated else ""
        log.warning(
            "quantize: rnn0.weight %s: its range is set by input channel %s (max |w| %.3g%s); the "
            "other channels' weights (max |w| %.3g) lose %d fraction bits%s; consider dropping %s, "
            "wider weights or standardise: none",
            t.describe(),
            names[top],
            col[top],
            why,
            max((col[i] for i in others), default=0.0),
            max(0, lost),
            sat,
            names[top],
        )
    return report


def choose_types(arch: Architecture, prof: Profile, cfg: QuantizeConfig, method: str) -> Quantization:
    """The PTQ types for ``arch`` from the profiled ranges ``prof`` (see the module docstring)."""
    m = prof.max_abs
    if len(cfg.layers) not in (0, len(arch.layers)):
        raise QlstmError(f"config layers: {len(cfg.layers)} entries for a model of {len(arch.layers)} layers")

    def t(width: int, name: str, headroom: int, rnd: str | None = None, ovf: str | None = None) -> FixedType:
        return FixedType(
            width,
            integer_bits(m[name], width, headroom, name),
            True,
            rnd or cfg.rounding,
            ovf or cfg.overflow,
        )

    def accum(name: str, width: int | None, frac_needed: int) -> FixedType:
        if width is None:
            integer = integer_bits(m[name], cfg.max_accum_bits, cfg.accum_headroom, name)
            width = max(MIN_WIDTH, min(cfg.max_accum_bits, integer + frac_needed))
        integer = integer_bits(m[name], width, cfg.accum_headroom, name)
        return FixedType(width, integer, True, cfg.accum_rounding, cfg.accum_overflow)

    bits = cfg.bits
    io_bits = min(bits + 4, MAX_WIDTH)
    data_t = t(cfg.input_bits or io_bits, "input", cfg.headroom)
    layers = []
    for i in range(len(arch.layers)):
        lb = cfg.layers[i] if cfg.layers else LayerBits()
        p = f"rnn{i}"
        wbits = lb.weight_bits or cfg.weight_bits or bits
        bbits = lb.bias_bits or cfg.bias_bits or bits
        w_t = t(wbits, f"{p}.weight", 0)
        u_t = t(wbits, f"{p}.recurrent_weight", 0)
        b_t = t(bbits, f"{p}.bias", 0)
        br_t = t(bbits, f"{p}.recurrent_bias", 0)
        s_w = lb.state_bits or cfg.state_bits or bits
        if cfg.state_integer_bits is not None:
            s_i = cfg.state_integer_bits
        elif method == "qat":
            s_i = QAT_STATE_INTEGER
        else:
            s_i = min(integer_bits(m[f"{p}.state"], s_w, 0, f"{p}.state"), STATE_MAX_INTEGER) + cfg.headroom
        s_t = FixedType(s_w, min(s_i, s_w), True, cfg.rounding, cfg.overflow)
        tbits = lb.table_bits or cfg.table_bits or min(bits + 2, MAX_WIDTH)
        size = lb.table_size or cfg.table_size or min(max(1 << bits, 1024), 1 << 16)
        table = TableSpec(size, FixedType(tbits, 1, True, cfg.rounding, cfg.overflow))
        frac = max(data_t.frac + w_t.frac, s_t.frac + u_t.frac, b_t.frac, br_t.frac, table.type.frac)
        a_t = accum(f"{p}.accum", lb.accum_bits or cfg.accum_bits, frac)
        layers.append(RecurrentQuant(w_t, u_t, b_t, br_t, a_t, s_t, table))
        data_t = s_t
    head = []
    n_head = len(arch.head)
    for j, (nm, d) in enumerate(zip(arch.head_names(), arch.head, strict=True)):
        last = j == n_head - 1
        if d.activation == "softmax":
            raise QlstmError(
                f"head layer {nm!r} (softmax): not supported at quantization - hls4ml's softmax "
                "(exp and inverse tables) is not simulated bit-exactly by firmware_sim"
            )
        hw = t(cfg.weight_bits or bits, f"{nm}.weight", 0)
        hb = t(cfg.bias_bits or bits, f"{nm}.bias", 0)
        ha = accum(f"{nm}.accum", cfg.accum_bits, max(data_t.frac + hw.frac, hb.frac))
        out_bits = (cfg.result_bits or io_bits) if last else bits
        if d.activation == "linear":
            head.append(DenseQuant(hw, hb, ha, t(out_bits, f"{nm}.result", cfg.headroom)))
        else:
            hr = t(bits, f"{nm}.result", cfg.headroom)
            table = None
            if d.activation in ("sigmoid", "tanh"):
                cap = 1 + int(math.log2(SIGMOID_RANGE if d.activation == "sigmoid" else TANH_RANGE))
                hr = FixedType(bits, min(hr.integer, cap), True, cfg.rounding, cfg.overflow)
                tbits = cfg.table_bits or min(bits + 2, MAX_WIDTH)
                size = cfg.table_size or min(max(1 << bits, 1024), 1 << 16)
                table = TableSpec(size, FixedType(tbits, 1, True, cfg.rounding, cfg.overflow))
            act = t(out_bits, f"{nm}.act_result", cfg.headroom)
            head.append(DenseQuant(hw, hb, ha, hr, act, table))
        data_t = head[-1].output
    return Quantization(
        input=t(cfg.input_bits or io_bits, "input", cfg.headroom),
        layers=tuple(layers),
        dense=head[-1],
        method=method,
        bits=bits,
        hidden=tuple(head[:-1]),
    )
