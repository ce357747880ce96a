"""The quantized model as QONNX: the hls4ml firmware dataflow, unrolled over the L time steps.

Every quantization point of the description (:class:`qlstm.description.Quantization`) is a
QONNX ``Quant`` node (domain ``qonnx.custom_op.general``) with scale ``2**-frac``, the type's
width, signedness and rounding mode, placed exactly where the hls4ml C++ assigns to a narrower
``ap_fixed`` (``nnet_recurrent.h`` ``lstm_static``/``gru_static`` with ``pytorch_order``,
``nnet_dense_latency.h``):

* dense products ``W x``: each product is cast to ``accum`` (a ``Quant`` per product when
  ``accum`` has fewer fractional bits than the product, else one ``MatMul``), the bias is cast
  to ``accum`` and the sum is held at ``accum``;
* gate pre-activations ``Wx + b + Uh + b_r`` at ``accum``;
* sigmoid/tanh as hls4ml's lookup tables: index ``trunc(v N / 2R) + N/2`` clipped, computed
  with ``Mul/Abs/Floor/Sign/Add/Clip/Cast`` and read with ``Gather`` from the table constant
  (``Quant`` at the table type), the result cast to ``accum``;
* LSTM ``c = (state)(g i + c f)``, ``h = (state)(o tanh(c))`` (tanh indexed from the state
  type); GRU ``n`` branch ``(accum)(r (U_n h + b_rn))`` and ``h = (state)(n (1 - z) + h z)``;
* each Dense layer of the head: products and bias at ``accum``, output cast to ``result``; then
  its activation: ``Relu`` cast to ``act_result``, or the sigmoid/tanh table as above cast to
  ``act_result``.

Arithmetic between ``Quant`` nodes is float64 (each ``Quant`` output is cast back to double),
which is exact while the operands' widths fit 53 bits (checked: ``qlstm.float64_exact`` in the
metadata). ``Quant`` saturates; hls4ml's default ``AP_WRAP`` wraps: the two agree whenever no
value overflows its type (``qlstm firmware check`` finds overflows on data). ``AP_SAT_ZERO`` has
no ``Quant`` form either and agrees under the same condition. Measured on a real 8-bit run whose
accumulator was narrowed until it wrapped: 0.08 % of outputs still agree, so the metadata names
every wrapping type.

qonnx 1.0's ``Quant`` returns float32, so ``qonnx.core.onnx_exec.execute_onnx`` is exact only
for types of at most 24 bits; :mod:`qlstm.export.lower` runs the file in onnxruntime in double.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qlstm.description import ModelDescription, RecurrentQuant
from qlstm.errors import QlstmError
from qlstm.export.graph import INPUT_NAME, OUTPUT_NAME, QONNX_DOMAIN, GraphBuilder, make_model
from qlstm.export.tables import index_scale, table
from qlstm.fixedpoint import QONNX_ROUNDING, FixedType

log = logging.getLogger(__name__)


@dataclass
class QuantWriter:
    """Graph-building context: the builder plus one set of Quant parameters per type."""

    g: GraphBuilder
    params: dict[FixedType, list[str]] = field(default_factory=dict)
    consts: dict[tuple[str, float, str], str] = field(default_factory=dict)

    def scalar(self, base: str, value: float, dtype: str = "float64") -> str:
        """One shared scalar initializer per (name, value, dtype)."""
        key = (base, float(value), dtype)
        if key not in self.consts:
            self.consts[key] = self.g.const(base, value, np.dtype(dtype))
        return self.consts[key]

    def _params(self, t: FixedType) -> list[str]:
        if t not in self.params:
            tag = t.ap().replace("ap_", "").replace("<", "_").replace(">", "").replace(",", "_")
            self.params[t] = [
                self.g.const(f"{tag}.scale", t.lsb, np.float32),
                self.g.const(f"{tag}.zeropt", 0.0, np.float32),
                self.g.const(f"{tag}.bitwidth", float(t.width), np.float32),
            ]
        return self.params[t]

    def axes(self, axis: int) -> str:
        """A shared one-element int64 ``axes`` input."""
        key = ("axes", float(axis), "int64")
        if key not in self.consts:
            self.consts[key] = self.g.const(f"axes_{axis}".replace("-", "m"), [axis], np.int64)
        return self.consts[key]

    def quant(self, x: str, t: FixedType, base: str, on_grid: bool = False) -> str:
        """``(t) x`` as Quant (float32 out, per qonnx) followed by a Cast back to double.

        ``on_grid``: ``x`` is a constant already on ``t``'s grid (weights, biases and tables are,
        see :func:`qlstm.description.check_weights`), so any rounding is the identity and the
        half-LSB offset node is left out (it would be the only constant-foldable standard node,
        and qonnx 1.0's constant folding cannot run with onnxruntime 1.31).
        """
        from onnx import TensorProto

        mode, offset = QONNX_ROUNDING[t.rounding]
        g = self.g
        if offset and not on_grid:
            x = g.op("Add", [x, self.scalar("half_lsb", offset * t.lsb)], f"{base}.pre_round")
        q = g.op(
            "Quant",
            [x, *self._params(t)],
            f"{base}.q",
            domain=QONNX_DOMAIN,
            signed=int(t.signed),
            narrow=int(t.signed and t.overflow == "AP_SAT_SYM"),
            rounding_mode=mode,
        )
        return self.g.op("Cast", [q], base, to=TensorProto.DOUBLE)


def _dense(
    q: QuantWriter, x: str, x_t: FixedType, w: str, w_t: FixedType, b: str, acc: FixedType, base: str
) -> str:
    """hls4ml ``dense_latency``: ``acc = (acc)b + sum_i (acc)(x_i w_ij)``, last axis of ``x``.

    ``w`` is (n_in, n_out). When ``acc`` keeps every fractional bit of a product the per-product
    casts only matter on overflow, so one MatMul is exact; otherwise each product is cast.
    """
    g = q.g
    if acc.frac >= x_t.frac + w_t.frac:
        s = g.op("MatMul", [x, w], f"{base}.matmul")
    else:
        xe = g.op("Unsqueeze", [x, q.axes(-1)], f"{base}.x_col")
        prods = q.quant(g.op("Mul", [xe, w], f"{base}.products"), acc, f"{base}.products_acc")
        s = g.op("ReduceSum", [prods, q.axes(-2)], f"{base}.sum", keepdims=0)
    return q.quant(g.op("Add", [s, b], f"{base}.add_bias"), acc, f"{base}.acc")


def _lut(q: QuantWriter, v: str, kind: str, tab: str, size: int, acc: FixedType, base: str) -> str:
    """hls4ml table activation of ``v``: ``(acc) table[clip(trunc(v N/2R) + N/2, 0, N-1)]``."""
    from onnx import TensorProto

    g = q.g
    scaled = g.op("Mul", [v, q.scalar(f"{kind}_index_scale", index_scale(kind, size))], f"{base}.scaled")
    trunc = g.op(
        "Mul",
        [
            g.op("Sign", [scaled], f"{base}.sign"),
            g.op("Floor", [g.op("Abs", [scaled], f"{base}.abs")], f"{base}.floor_abs"),
        ],
        f"{base}.trunc",
    )
    idx = g.op("Add", [trunc, q.scalar("table_middle", size / 2.0)], f"{base}.offset")
    idx = g.op("Clip", [idx, q.scalar("zero", 0.0), q.scalar("table_last", size - 1.0)], f"{base}.clip")
    idx = g.op("Cast", [idx], f"{base}.index", to=TensorProto.INT64)
    val = g.op("Gather", [tab, idx], f"{base}.table", axis=0)
    return q.quant(val, acc, f"{base}.acc")


def _split(q: QuantWriter, x: str, parts: int, units: int, base: str) -> list[str]:
    """``parts`` blocks of ``units`` along the last axis."""
    key = ("split", float(parts * 100_000 + units), "int64")
    if key not in q.consts:
        q.consts[key] = q.g.const(f"split_{parts}x{units}", [units] * parts, np.int64)
    return q.g.op_multi("Split", [x, q.consts[key]], [f"{base}.{k}" for k in range(parts)], axis=-1)


def _layer_consts(
    q: QuantWriter, weights: dict[str, np.ndarray], i: int, lq: RecurrentQuant
) -> tuple[str, str, str, str, dict[str, str]]:
    """Quantized weights (transposed to (n_in, G*H)), biases cast to accum, and tables."""
    g = q.g
    w = q.quant(g.const(f"rnn{i}.weight_ih", weights[f"rnn{i}.weight_ih"].T), lq.weight, f"rnn{i}.W", True)
    u = q.quant(
        g.const(f"rnn{i}.weight_hh", weights[f"rnn{i}.weight_hh"].T), lq.recurrent_weight, f"rnn{i}.U", True
    )
    b = q.quant(
        q.quant(g.const(f"rnn{i}.bias_ih", weights[f"rnn{i}.bias_ih"]), lq.bias, f"rnn{i}.b", True),
        lq.accum,
        f"rnn{i}.b_acc",
    )
    br = q.quant(
        q.quant(
            g.const(f"rnn{i}.bias_hh", weights[f"rnn{i}.bias_hh"]), lq.recurrent_bias, f"rnn{i}.b_r", True
        ),
        lq.accum,
        f"rnn{i}.b_r_acc",
    )
    tabs = {
        kind: q.quant(
            g.const(f"rnn{i}.{kind}_table_raw", table(kind, lq.table)),
            lq.table.type,
            f"rnn{i}.{kind}_table",
            True,
        )
        for kind in ("sigmoid", "tanh")
    }
    return w, u, b, br, tabs


def _lstm_step(
    q: QuantWriter,
    ax: str,
    h: str | None,
    c: str | None,
    u: str,
    br: str,
    lq: RecurrentQuant,
    units: int,
    tabs: dict[str, str],
    base: str,
) -> tuple[str, str]:
    g, acc, st, n = q.g, lq.accum, lq.state, lq.table.size
    ah = br if h is None else _dense(q, h, st, u, lq.recurrent_weight, br, acc, f"{base}.Uh")
    pre = q.quant(g.op("Add", [ax, ah], f"{base}.pre_sum"), acc, f"{base}.pre")
    pi, pf, pg, po = _split(q, pre, 4, units, f"{base}.pre_gate")
    ifo = g.op("Concat", [pi, pf, po], f"{base}.pre_ifo", axis=-1)
    gi, gf, go = _split(
        q, _lut(q, ifo, "sigmoid", tabs["sigmoid"], n, acc, f"{base}.sigm"), 3, units, f"{base}.ifo"
    )
    gg = _lut(q, pg, "tanh", tabs["tanh"], n, acc, f"{base}.g")
    new = g.op("Mul", [gg, gi], f"{base}.g_i")
    if c is not None:
        new = g.op("Add", [new, g.op("Mul", [c, gf], f"{base}.c_f")], f"{base}.c_sum")
    c_new = q.quant(new, st, f"{base}.c")
    tc = _lut(q, c_new, "tanh", tabs["tanh"], n, acc, f"{base}.tanh_c")
    h_new = q.quant(g.op("Mul", [go, tc], f"{base}.o_tanh_c"), st, f"{base}.h")
    return h_new, c_new


def _gru_step(
    q: QuantWriter,
    ax: str,
    h: str | None,
    u: str,
    br: str,
    lq: RecurrentQuant,
    units: int,
    tabs: dict[str, str],
    base: str,
) -> str:
    g, acc, st, n = q.g, lq.accum, lq.state, lq.table.size
    ah = br if h is None else _dense(q, h, st, u, lq.recurrent_weight, br, acc, f"{base}.Uh")
    xr, xz, xn = _split(q, ax, 3, units, f"{base}.x_gate")
    hr, hz, hn = _split(q, ah, 3, units, f"{base}.h_gate")
    pre = q.quant(
        g.op(
            "Add",
            [
                g.op("Concat", [xr, xz], f"{base}.x_rz", axis=-1),
                g.op("Concat", [hr, hz], f"{base}.h_rz", axis=-1),
            ],
            f"{base}.pre_sum",
        ),
        acc,
        f"{base}.pre_rz",
    )
    r, z = _split(q, _lut(q, pre, "sigmoid", tabs["sigmoid"], n, acc, f"{base}.sigm"), 2, units, f"{base}.rz")
    r_hn = q.quant(g.op("Mul", [r, hn], f"{base}.r_hn_prod"), acc, f"{base}.r_hn")
    pre_n = q.quant(g.op("Add", [xn, r_hn], f"{base}.pre_n_sum"), acc, f"{base}.pre_n")
    nn_ = _lut(q, pre_n, "tanh", tabs["tanh"], n, acc, f"{base}.n")
    one_minus_z = g.op("Sub", [q.scalar("one", 1.0), z], f"{base}.one_minus_z")
    new = g.op("Mul", [nn_, one_minus_z], f"{base}.n_1mz")
    if h is not None:
        new = g.op("Add", [new, g.op("Mul", [h, z], f"{base}.h_z")], f"{base}.h_sum")
    return q.quant(new, st, f"{base}.h")


def float64_exact(desc: ModelDescription) -> bool:
    """Whether every product and sum between Quant nodes is exact in float64 (53 bits).

    Bounds: a dense sum needs ``width_x + width_w + bits(n + 1)`` bits; a table output lies in
    [-1, 1] on the grid of ``min(table.frac, accum.frac)`` (``lf``), so a gate product needs
    about ``2 lf + 2`` bits, the state update ``max(2 lf, state.frac + lf) + max(1, state.integer)
    + 2``, and the GRU's ``r * (U_n h + b)`` ``lf + 2 + accum.width``.
    """
    q = desc.quantization
    assert q is not None
    a = desc.architecture
    need = []
    x_t = q.input
    for i, lq in enumerate(q.layers):
        acc, st = lq.accum, lq.state
        lf = min(lq.table.type.frac, acc.frac)
        need.append(x_t.width + lq.weight.width + (a.n_in(i) + 1).bit_length())
        need.append(st.width + lq.recurrent_weight.width + (a.layers[i].units + 1).bit_length())
        need.append(acc.width + max(a.n_in(i), a.layers[i].units, 1).bit_length() + 1)
        need.append(max(2 * lf, st.frac + lf) + max(1, st.integer) + 2)
        if a.layers[i].cell == "gru":
            need.append(lf + 2 + acc.width)
        x_t = st
    for j, d in enumerate(q.head):
        n_in = a.head_n_in(j)
        need.append(x_t.width + d.weight.width + (n_in + 1).bit_length())
        need.append(d.accum.width + (n_in + 1).bit_length())
        x_t = d.output
    return max(need) <= 53


def build(desc: ModelDescription, weights: dict[str, np.ndarray]) -> Any:
    """The QONNX ModelProto of a quantized description (see the module docstring)."""
    from onnx import TensorProto

    qz = desc.quantization
    if qz is None:
        raise QlstmError(
            "QONNX export needs a quantized run (model.json has no quantization); run quantize first"
        )
    for name, t in qz.points().items():
        if t.rounding not in QONNX_ROUNDING:  # pragma: no cover - every ap mode is mapped
            raise QlstmError(f"{name}: rounding {t.rounding} has no QONNX form")
    a = desc.architecture
    g = GraphBuilder()
    q = QuantWriter(g)
    x = q.quant(INPUT_NAME, qz.input, "x_q")
    x_t = qz.input
    seq = x  # (N, L, n_in)
    h: str | None = None
    for i, (layer, lq) in enumerate(zip(a.layers, qz.layers, strict=True)):
        w, u, b, br, tabs = _layer_consts(q, weights, i, lq)
        ax_all = _dense(q, seq, x_t, w, lq.weight, b, lq.accum, f"rnn{i}.Wx")  # (N, L, G*H)
        h, c, outs = None, None, []
        for t in range(a.history):
            ax = g.op("Gather", [ax_all, q.scalar("step", t, "int64")], f"rnn{i}.t{t}.Wx", axis=1)
            base = f"rnn{i}.t{t}"
            if layer.cell == "lstm":
                h, c = _lstm_step(q, ax, h, c, u, br, lq, layer.units, tabs, base)
            else:
                h = _gru_step(q, ax, h, u, br, lq, layer.units, tabs, base)
            outs.append(h)
        if i < len(a.layers) - 1:
            one = q.axes(1)
            seq = g.op(
                "Concat", [g.op("Unsqueeze", [o, one], f"{o}.seq") for o in outs], f"rnn{i}.sequence", axis=1
            )
        x_t = lq.state
    assert h is not None
    res = h
    for nm, dl, d in zip(a.head_names(), a.head, qz.head, strict=True):
        hw = q.quant(g.const(f"{nm}.weight", weights[f"{nm}.weight"].T), d.weight, f"{nm}.W", True)
        hb = q.quant(
            q.quant(g.const(f"{nm}.bias", weights[f"{nm}.bias"]), d.bias, f"{nm}.b", True),
            d.accum,
            f"{nm}.b_acc",
        )
        acc = _dense(q, res, x_t, hw, d.weight, hb, d.accum, nm)
        res = q.quant(acc, d.result, f"{nm}.result")
        if dl.activation == "relu":  # res = data > 0 ? data : 0, cast to the activation's res_T
            res = q.quant(g.op("Relu", [res], f"{nm}.relu"), d.output, f"{nm}.act")
        elif dl.activation in ("sigmoid", "tanh"):
            assert d.table is not None
            tab = q.quant(
                g.const(f"{nm}.{dl.activation}_table_raw", table(dl.activation, d.table)),
                d.table.type,
                f"{nm}.{dl.activation}_table",
                True,
            )
            res = _lut(q, res, dl.activation, tab, d.table.size, d.output, f"{nm}.act")
        elif dl.activation != "linear":
            raise QlstmError(f"head layer {nm!r} ({dl.activation}): no QONNX form in qlstm")
        x_t = d.output
    g.nodes.append(_identity(res))
    exact = float64_exact(desc)
    if not exact:
        log.warning("some products exceed 53 bits: the QONNX graph's float64 arithmetic may round")
    wraps = sorted(k for k, t in qz.points().items() if t.overflow in ("AP_WRAP", "AP_SAT_ZERO"))
    meta = {
        "qlstm.float64_exact": json.dumps(exact),
        "qlstm.overflow_note": (
            "Quant saturates; these types wrap (AP_WRAP) or zero (AP_SAT_ZERO) in the firmware, "
            f"so the file matches it only where they do not overflow: {', '.join(wraps) or 'none'}"
        ),
        "qlstm.execution": (
            "onnxruntime after lowering Quant to standard ops in float64 (exact): "
            "qlstm.export.api.run_session(qlstm.export.api.session(model), x); or qonnx "
            "execute_onnx with a fixed batch size (Quant outputs float32: exact for types <= 24 "
            "bits; qonnx 1.0 builds one-node models at onnx's default IR version, 14 with onnx "
            "1.23, which onnxruntime 1.31 refuses)"
        ),
    }
    return make_model(g, desc, "qonnx", TensorProto.DOUBLE, TensorProto.DOUBLE, meta, qonnx=True)


def _identity(x: str) -> Any:
    from onnx import helper

    return helper.make_node("Identity", [x], [OUTPUT_NAME], name="output")
