"""One recurrent step of the firmware as da4ml fixed-point operations, bit-exact with firmware_sim.

The model description (``qlstm/description.py``) fixes every quantization point; this module
replays hls4ml's dataflow (``nnet_recurrent.h`` ``lstm_static``/``gru_static``,
``nnet_dense_latency.h``, ``nnet_activation.h``; see ``qlstm.firmware_sim.simulate`` for the
step-by-step casts) on da4ml traced variables:

* constant products ``W x`` and ``U h`` are da4ml constant-matrix-vector adder graphs (no
  multipliers) when every product lands exactly on the accumulator grid and the accumulator
  wraps; otherwise each product is a constant multiplication cast to ``accum_t`` on its own and a
  saturating accumulator is summed in the C++ order, one saturating addition after the other;
* ``g * i``, ``c * f``, ``o * tanh(c)`` (GRU: ``r * (U h)_n``, ``n (1 - z)``, ``h z``) are variable
  products;
* hls4ml's sigmoid/tanh tables are ROMs; the index ``trunc0(x * N / 16) + N / 2`` clamped to
  ``[0, N)`` is an addition (truncation toward zero), a saturation and the ROM; inputs of at most
  :data:`DIRECT_BITS` bits index a ROM of their own that holds the table entry of every input;
* every ``ap_fixed`` assignment is :func:`cast`: da4ml's ``quantize`` (``TRN``/``RND``, ``WRAP``/
  ``SAT``/``SAT_SYM``), with ``AP_RND_CONV`` composed from an addition and the kept LSB.

Two graphs are traced: the *step* graph ``[x_t, h_0, c_0, h_1, c_1, ...] -> [h_0', c_0', ...]`` in
which layer ``l`` reads layer ``l-1``'s current ``h`` (so layer ``l`` runs step ``t - l`` while
layer 0 runs step ``t``: a wavefront, one graph as deep as one layer), and the *head* graph
``h_last -> y`` (every Dense layer of the head, each followed by its activation: relu as a
sign-bit multiplexer, sigmoid/tanh as ROMs like the cell's tables). :func:`interpret` runs them with da4ml's C++ interpreter (``CombLogic.predict``)
under exactly the schedule the RTL wrapper uses.
"""

from __future__ import annotations

import decimal
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from qlstm import hls4ml_tables as _tables
from qlstm.description import ModelDescription, check_weights
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.fixedpoint import cast as np_cast

#: Activation inputs of at most this many bits get a ROM indexed by the input itself.
DIRECT_BITS = 10
#: Rounding modes this module can build (others refuse the description).
ROUNDING = ("AP_TRN", "AP_RND", "AP_RND_CONV")
OVERFLOW = {"AP_WRAP": "WRAP", "AP_SAT": "SAT", "AP_SAT_SYM": "SAT_SYM"}
#: da4ml's constant-matrix solver options (``da4ml.cmvm.solver_options_t``) for ``W x`` and ``U h``
#: by default, plus qlstm's ``columns``: solve the matrix in blocks of that many output columns
#: (less sharing between blocks, a much smaller search each). They choose the adder graph (how
#: many adders, how deep), never the values: every graph computes the exact sum. docs/rtl.md has
#: the measured choice.
SOLVER_OPTIONS: dict = {"search_all_decompose_dc": False}
#: Matrices with more rows than this are solved in column blocks (see ``columns``): da4ml's CPU
#: time grew 31-fold from LSTM(32) to LSTM(64) on the whole matrix, 9-fold by blocks (docs/rtl.md).
BLOCK_ROWS = 64
#: Significant decimal digits of da4ml's constant arithmetic while tracing. da4ml 0.6.0 folds
#: constant additions in Python ``Decimal`` under the current context (28 digits by default) and
#: truncates the folded constant onto its grid (``int(data / step)`` in ``da4ml/trace/tracer.py``):
#: a constant of more than 28 significant digits (a 24-bit model's bias plus the rounding constant
#: of an ``AP_RND_CONV`` cast, 31 digits) lost one LSB. Every constant here is a dyadic rational
#: of at most a few hundred bits, exact in this many digits.
DECIMAL_DIGITS = 400


@contextmanager
def exact_constants():
    """A ``decimal`` context (this thread only) in which da4ml's constant folding is exact."""
    with decimal.localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        yield


def _da4ml():
    try:
        import da4ml.trace as t
    except ImportError:  # pragma: no cover - a pinned dependency
        raise QlstmError("da4ml is not installed; install it with: pip install da4ml==0.6.0", 3) from None
    return t


#: The most fraction bits da4ml 0.6.0 keeps in a constant: ``_const_f`` (``da4ml/trace/
#: fixed_variable.py``) searches the grid of a constant in ``2**-32 .. 2**32`` only, and a
#: constant that needs a finer grid is truncated onto ``2**-32`` (``int(data)`` in
#: ``da4ml/trace/tracer.py``). A saturating cast to a type of more fraction bits has such a
#: constant (its largest value ``2**i - 2**-f``): the 24-bit model's score ``ap_ufixed<24,-12>``
#: saturated at mantissa 0xfffff0 instead of 0xffffff. See :func:`graph_shift`.
CONST_FRAC_BITS = 32


def kif(t: FixedType, shift: int = 0) -> tuple[int, int, int]:
    """da4ml's (signed, integer bits without sign, fraction bits) of an ``ap_fixed``; ``shift``:
    of the type scaled by ``2**shift`` (the same mantissas, ``shift`` fewer fraction bits)."""
    return int(t.signed), t.integer - int(t.signed) + shift, t.frac - shift


def graph_shift(types) -> int:
    """The power of two a graph of ``types`` is traced in: ``max(0, max frac - CONST_FRAC_BITS)``.

    Multiplying every value and type of a graph (additions, casts, comparisons, constant
    multiplications: no product of two variables) by the same ``2**shift`` leaves every mantissa
    and so every bit of the Verilog unchanged, and puts every constant of a cast on a grid of at
    most :data:`CONST_FRAC_BITS` fraction bits, which da4ml represents exactly."""
    return max(0, max(t.frac for t in types) - CONST_FRAC_BITS)


def check_expressible(t: FixedType, where: str) -> None:
    """Refuse a type whose rounding/overflow mode this module cannot build from da4ml primitives."""
    if t.rounding not in ROUNDING:
        raise QlstmError(
            f"{where}: {t.describe()} uses rounding {t.rounding}, which the RTL backend cannot express "
            f"(supported: {', '.join(ROUNDING)})"
        )
    if t.overflow not in OVERFLOW:
        raise QlstmError(
            f"{where}: {t.describe()} uses overflow {t.overflow}, which the RTL backend cannot express "
            f"(supported: {', '.join(OVERFLOW)})"
        )


def cast(v, t: FixedType, shift: int = 0):
    """``(t) v``: an ``ap_fixed`` assignment of traced variable ``v`` (rounding, then overflow);
    ``shift``: in a graph scaled by ``2**shift`` (:func:`graph_shift`)."""
    k, i, f = kif(t, shift)
    ovf = OVERFLOW[t.overflow]
    step = float(v.step)
    q = 2.0**-f
    if step >= q or v.low == v.high or t.rounding == "AP_TRN":
        return v.quantize(k, i, f, ovf, "TRN")
    if t.rounding == "AP_RND":
        return v.quantize(k, i, f, ovf, "RND")
    # AP_RND_CONV (ties to even): floor(v + q/2 - s + b*s), s = v's LSB, b = the kept LSB of v.
    # Ties v = n q + q/2 go up exactly when n is odd; other values round to nearest.
    b_q = v.quantize(0, 1 - f, f, "WRAP", "TRN")  # b * q (one bit of weight q)
    adj = v + (q / 2 - step) + b_q * (step / q)
    return adj.quantize(k, i, f, ovf, "TRN")


def _real(m: np.ndarray, t: FixedType) -> np.ndarray:
    return np.asarray(m, dtype=np.float64) * 2.0**-t.frac


def dense(
    x: list,
    w_m: np.ndarray,
    w_t: FixedType,
    b_m: np.ndarray,
    b_t: FixedType,
    x_t: FixedType,
    acc_t: FixedType,
    solver: dict | None = None,
):
    """``nnet::dense_latency``: (n_in,) traced ``x_t`` values, kernel (n_in, n_out) mantissas ->
    (n_out,) traced ``acc_t`` values (``acc = (accum_t) b; acc += (accum_t)(x * w)``). ``solver``:
    da4ml's constant-matrix solver options (default :data:`SOLVER_OPTIONS`)."""
    t = _da4ml()
    b_acc = _real(np_cast(np.asarray(b_m, dtype=np.int64), b_t.frac, acc_t), acc_t)
    w = _real(w_m, w_t)
    n_in, n_out = w.shape
    exact = acc_t.frac >= x_t.frac + w_t.frac
    if exact and acc_t.overflow == "AP_WRAP":
        # the sum modulo 2**width does not depend on the order: one adder graph, one wrap
        opts = dict(SOLVER_OPTIONS if solver is None else solver)
        # qlstm's own key: solve column blocks apart (by default for matrices of more than
        # BLOCK_ROWS rows, in blocks of as many columns as rows: one gate of U at a time)
        block = int(opts.pop("columns", n_in if n_in > BLOCK_ROWS else 0)) or n_out
        xs = t.FixedVariableArray(np.array(x, dtype=object), opts)
        s = None
        for part in _float32_parts(w_m, w_t):  # da4ml's solver reads the matrix as float32
            sp = [v for j0 in range(0, n_out, block) for v in (xs @ part[:, j0 : j0 + block])._vars.ravel()]
            s = sp if s is None else [a + b for a, b in zip(s, sp, strict=True)]
        assert s is not None
        return [cast(s[j] + float(b_acc[j]), acc_t) for j in range(n_out)]
    out = []
    for j in range(n_out):
        terms = [cast(const_mul(x[ii], float(w[ii, j])), acc_t) for ii in range(n_in) if w[ii, j] != 0]
        if acc_t.overflow == "AP_WRAP":
            out.append(cast(_tree_sum(terms) + float(b_acc[j]), acc_t) if terms else _fv(b_acc[j], x[0]))
            continue
        acc = _fv(b_acc[j], x[0])
        for term in terms:  # acc[jj] += mult[index], in the C++ order, each sum cast to accum_t
            acc = cast(term + acc, acc_t)
        out.append(acc)
    return out


#: Significant bits of a float32: da4ml 0.6.0's constant-matrix solver reads the matrix as
#: ``float32`` (``cmvm`` in ``da4ml/trace/fixed_variable_array.py``): a weight of more significant
#: bits was rounded (mantissa 2**26 + 1 became 2**26).
FLOAT32_BITS = 24
#: :func:`_float32_parts` splits wider mantissas into parts of this many low bits and the rest.
_SPLIT_BITS = 16


def _float32_parts(w_m: np.ndarray, w_t: FixedType) -> list[np.ndarray]:
    """Real matrices, each exact in float32, whose sum is the weights of mantissas ``w_m``: the
    matrix itself when every mantissa has at most :data:`FLOAT32_BITS` bits (the usual case: the
    same adder graph as before), else its high and low :data:`_SPLIT_BITS` bits (two adder graphs
    summed: the sum is exact and the accumulator wraps, so the order does not matter)."""
    m = np.asarray(w_m, dtype=np.int64)
    if np.all(np.abs(m) < 1 << FLOAT32_BITS):
        return [_real(m, w_t)]
    lo = m & ((1 << _SPLIT_BITS) - 1)
    hi = m - lo  # a multiple of 2**_SPLIT_BITS: at most 32 - _SPLIT_BITS significant bits
    return [_real(hi, w_t), _real(lo, w_t)]


def _frac_bits(c: float) -> int:
    """The fewest fraction bits of the (finite, dyadic) float ``c``."""
    m, e = math.frexp(c)  # c = m * 2**e, 0.5 <= |m| < 1, m has at most 53 bits
    n = int(abs(m) * 2.0**53)
    return 53 - e - ((n & -n).bit_length() - 1) if n else 0


def const_mul(v, c: float):
    """``v * c`` exactly: da4ml 0.6.0 writes a constant factor in signed digits on a grid of at
    most :data:`CONST_FRAC_BITS` fraction bits (``_const_f``; 3 * 2**-33 became 4 * 2**-33), so a
    finer constant is scaled by a power of two first and the product scaled back (exact: a
    power-of-two factor is free in da4ml)."""
    sh = _frac_bits(c) - CONST_FRAC_BITS
    if sh <= 0:
        return v * c
    return (v * (c * 2.0**sh)) * 2.0**-sh


def _fv(value: float, like):
    """A da4ml constant (exact value already on its grid)."""
    return _da4ml().FixedVariable.from_const(float(value), hwconf=like.hwconf)


def _tree_sum(terms: list):
    while len(terms) > 1:
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def activation(v, kind: str, spec, in_t: FixedType, out_t: FixedType):
    """``nnet::sigmoid``/``nnet::tanh`` of traced ``in_t`` value ``v`` -> ``(out_t) table[index]``."""
    tab = _tables.table(kind, spec)
    tab_out = np_cast(np.asarray(tab, dtype=np.int64), spec.type.frac, out_t)
    n = spec.size
    if v.low == v.high:  # a constant (e.g. a zero-weight gate): fold it
        m = int(round(float(v.low) * 2.0**in_t.frac))
        return float(_real(tab_out[_tables.table_index(kind, np.array([m]), in_t.frac, spec)], out_t)[0])
    if in_t.width <= max(DIRECT_BITS, n.bit_length() - 1):
        m = np.arange(in_t.min_int, in_t.max_int + 1, dtype=np.int64)
        direct = _real(tab_out[_tables.table_index(kind, m, in_t.frac, spec)], out_t)
        return v.lookup(direct, original_qint=(in_t.min_value, in_t.max_value, in_t.lsb))
    divisor = 16 if kind == "sigmoid" else 8
    # data_round = trunc0(data * N / divisor) must fit a C int (the index is computed in int)
    largest = (max(-in_t.min_int, in_t.max_int) * n // divisor) >> in_t.frac
    if largest + n >= 1 << 31:
        raise QlstmError(
            f"{kind} of {in_t.describe()} with {n} entries: hls4ml's table index overflows a C int, "
            "which the RTL backend does not model; narrow the accumulator"
        )
    u = v * (n / divisor)  # exact: a power-of-two scaling
    if float(u.step) < 1 and u.low < 0:  # truncation toward zero: add 1 - LSB to negative values
        u = u + u.msb_mux(1.0 - float(u.step), 0.0)
    half = n // 2
    idx = u.quantize(1, int(math.log2(half)) if half > 1 else 0, 0, "SAT", "TRN")  # clamp to [-N/2, N/2)
    return idx.lookup(_real(tab_out, out_t), original_qint=(-half, half - 1, 1))


# ====================================================================== the model
@dataclass(frozen=True)
class LayerIO:
    """Where a recurrent layer's state sits in the step graph's inputs and outputs."""

    cell: str
    units: int
    h_in: slice
    c_in: slice | None
    h_out: slice
    c_out: slice | None
    state_t: FixedType


@dataclass
class Traced:
    """The step and head graphs (da4ml ``CombLogic``) and the layout of their ports.

    Step inputs: ``x`` (C values of the input type) then per layer ``h`` (H) and, for an LSTM,
    ``c`` (H), all of the layer's state type; outputs: per layer ``h'`` then ``c'``. Head: the last
    layer's ``h`` -> ``k`` values of the result type.
    """

    desc: ModelDescription
    step: object  # da4ml CombLogic
    head: object  # da4ml CombLogic
    layers: tuple[LayerIO, ...]
    n_step_in: int
    n_step_out: int

    @property
    def input_t(self) -> FixedType:
        return self.desc.quantization.input  # type: ignore[union-attr]

    @property
    def result_t(self) -> FixedType:
        return self.desc.quantization.output  # type: ignore[union-attr]


def _inputs(t, ft: FixedType, n: int, shift: int = 0) -> list:
    k, i, f = kif(ft, shift)
    return list(t.FixedVariableArray.from_kif(np.full(n, k), np.full(n, i), np.full(n, f))._vars.ravel())


def check_description(desc: ModelDescription) -> None:
    """Refuse descriptions the RTL backend cannot express, naming the quantization point."""
    q = desc.quantization
    if q is None:
        raise QlstmError("the model is not quantized: the RTL backend needs a quantized run (qlstm quantize)")
    for name, ft in q.points().items():
        check_expressible(ft, name)
    # the types the step and head graphs cast to: their saturation bounds, rounding constants and
    # the constants on their grid (biases, table inputs) are da4ml constants. The alarm's types
    # are traced scaled instead (graph_shift: that graph has no product of two variables)
    for name, ft in q.points().items():
        if name.endswith((".accum", ".state", ".result", ".act_result")) and ft.frac > CONST_FRAC_BITS:
            raise QlstmError(
                f"{name} {ft.describe()} has {ft.frac} fraction bits: the RTL backend (da4ml 0.6.0) keeps at "
                f"most {CONST_FRAC_BITS} in a constant; give {name} more integer bits or fewer bits"
            )


def trace(desc: ModelDescription, weights: dict[str, np.ndarray], solver: dict | None = None) -> Traced:
    """Trace the step and head graphs of a quantized description (see :class:`Traced`); ``solver``:
    da4ml's constant-matrix solver options (default :data:`SOLVER_OPTIONS`)."""
    with exact_constants():
        return _trace(desc, weights, solver)


def _trace(desc: ModelDescription, weights: dict[str, np.ndarray], solver: dict | None) -> Traced:
    check_description(desc)
    check_weights(desc, weights)
    t = _da4ml()
    q = desc.quantization
    assert q is not None
    arch = desc.architecture
    x_in = _inputs(t, q.input, arch.input_channels)
    inputs, outputs, ios = list(x_in), [], []
    # first pass: every layer's state inputs, so layer l can read layer l-1's current h
    states = []
    for layer, lq in zip(arch.layers, q.layers, strict=True):
        h = _inputs(t, lq.state, layer.units)
        c = _inputs(t, lq.state, layer.units) if layer.cell == "lstm" else None
        states.append((h, c))
    pos = len(inputs)
    layouts = []
    for (h, c), layer in zip(states, arch.layers, strict=True):
        h_sl = slice(pos, pos + layer.units)
        inputs += h
        pos += layer.units
        c_sl = None
        if c is not None:
            c_sl = slice(pos, pos + layer.units)
            inputs += c
            pos += layer.units
        layouts.append((h_sl, c_sl))
    x, x_t = x_in, q.input
    opos = 0
    for i, (layer, lq) in enumerate(zip(arch.layers, q.layers, strict=True)):
        h, c = states[i]
        w = {k: lq_t.to_int(weights[f"rnn{i}.{k}"]) for k, lq_t in (
            ("weight_ih", lq.weight), ("weight_hh", lq.recurrent_weight),
            ("bias_ih", lq.bias), ("bias_hh", lq.recurrent_bias),
        )}  # fmt: skip
        xa = dense(x, w["weight_ih"].T, lq.weight, w["bias_ih"], lq.bias, x_t, lq.accum, solver)
        ha = dense(
            h, w["weight_hh"].T, lq.recurrent_weight, w["bias_hh"], lq.recurrent_bias, lq.state, lq.accum,
            solver,
        )  # fmt: skip
        h_new, c_new = (_lstm if layer.cell == "lstm" else _gru)(xa, ha, h, c, layer.units, lq)
        outputs += h_new
        h_out = slice(opos, opos + layer.units)
        opos += layer.units
        c_out = None
        if c_new is not None:
            outputs += c_new
            c_out = slice(opos, opos + layer.units)
            opos += layer.units
        ios.append(LayerIO(layer.cell, layer.units, layouts[i][0], layouts[i][1], h_out, c_out, lq.state))
        x, x_t = h, lq.state  # the next layer reads this layer's current h (wavefront)
    step = t.comb_trace(inputs, outputs)
    last = arch.layers[-1]
    hl = _inputs(t, q.layers[-1].state, last.units)
    y, y_t = hl, q.layers[-1].state
    for nm, dl, d in zip(arch.head_names(), arch.head, q.head, strict=True):
        hw, hb = d.weight.to_int(weights[f"{nm}.weight"]), d.bias.to_int(weights[f"{nm}.bias"])
        acc = dense(y, hw.T, d.weight, hb, d.bias, y_t, d.accum, solver)
        y = [cast(a, d.result) for a in acc]
        y = _head_activation(y, dl.activation, d, nm)
        y_t = d.output
    head = t.comb_trace(hl, y)
    return Traced(desc, step, head, tuple(ios), len(inputs), len(outputs))


def _head_activation(y: list, kind: str, d, name: str) -> list:
    """The activation layer after a head Dense layer (``nnet_activation.h``): relu ``(res_T)(x > 0
    ? x : 0)`` as a sign-bit multiplexer; sigmoid/tanh as the ROMs of the cell's tables."""
    if kind == "linear":
        return y
    if kind == "relu":
        out = []
        for v in y:
            if v.low >= 0:
                r = v
            elif v.high <= 0 or v.low == v.high:
                r = _fv(max(float(v.low), 0.0), v)
            else:
                r = v.msb_mux(0.0, v)
            out.append(cast(r, d.act_result))
        return out
    if kind in ("sigmoid", "tanh"):
        return [activation(v, kind, d.table, d.result, d.act_result) for v in y]
    raise QlstmError(f"head layer {name!r} ({kind}): the RTL backend does not build this activation")


def _lstm(xa, ha, h, c, units, lq):
    a, s = lq.accum, lq.state
    pre = [cast(xi + hi, a) for xi, hi in zip(xa, ha, strict=True)]  # inputacc
    i_ = [activation(p, "sigmoid", lq.table, a, a) for p in pre[:units]]
    f_ = [activation(p, "sigmoid", lq.table, a, a) for p in pre[units : 2 * units]]
    g_ = [activation(p, "tanh", lq.table, a, a) for p in pre[2 * units : 3 * units]]
    o_ = [activation(p, "sigmoid", lq.table, a, a) for p in pre[3 * units :]]
    c_new = [cast(g * ii + cc * ff, s) for g, ii, cc, ff in zip(g_, i_, c, f_, strict=True)]  # s_state
    tc = [activation(cn, "tanh", lq.table, s, a) for cn in c_new]  # s_actstate
    h_new = [cast(o * tt, s) for o, tt in zip(o_, tc, strict=True)]  # h_state
    return h_new, c_new


def _gru(xa, ha, h, c, units, lq):  # noqa: ARG001 - a GRU has no c
    a, s = lq.accum, lq.state
    zr_pre = [cast(xi + hi, a) for xi, hi in zip(xa[: 2 * units], ha[: 2 * units], strict=True)]
    r = [activation(p, "sigmoid", lq.table, a, a) for p in zr_pre[:units]]
    z = [activation(p, "sigmoid", lq.table, a, a) for p in zr_pre[units:]]
    rh = [cast(rr * hn, a) for rr, hn in zip(r, ha[2 * units :], strict=True)]  # tmpres_state_h
    n_pre = [cast(xn + v, a) for xn, v in zip(xa[2 * units :], rh, strict=True)]  # inputacc_h
    n_act = [activation(p, "tanh", lq.table, a, a) for p in n_pre]
    h_new = [cast(n * (1.0 - zz) + hh * zz, s) for n, zz, hh in zip(n_act, z, h, strict=True)]
    return h_new, None


# ====================================================================== the schedule
def iterations(desc: ModelDescription) -> int:
    """Passes through the step graph per window: L + (layers - 1) (the wavefront)."""
    return desc.architecture.history + len(desc.architecture.layers) - 1


def interpret(tr: Traced, x: np.ndarray) -> np.ndarray:
    """Run windows (N, L, C) of normalised floats through the traced graphs with da4ml's C++
    interpreter, in the RTL wrapper's schedule; returns (N, k) result-type mantissas (int64)."""
    arch = tr.desc.architecture
    xm = tr.input_t.to_int(np.asarray(x, dtype=np.float64))
    n = xm.shape[0]
    state = np.zeros((n, tr.n_step_in), dtype=np.float64)
    x_real = _real(xm, tr.input_t)
    c_n = arch.input_channels
    for j in range(iterations(tr.desc)):
        if j < arch.history:
            state[:, :c_n] = x_real[:, j]
        out = tr.step.predict(state)  # type: ignore[attr-defined]
        for li, io in enumerate(tr.layers):
            if 0 <= j - li < arch.history:  # layer li runs step j - li in this pass
                state[:, io.h_in] = out[:, io.h_out]
                if io.c_in is not None:
                    state[:, io.c_in] = out[:, io.c_out]
    last = tr.layers[-1]
    y = tr.head.predict(state[:, last.h_in])  # type: ignore[attr-defined]
    return to_mantissa(y, tr.result_t)


def to_mantissa(v: np.ndarray, ft: FixedType, shift: int = 0) -> np.ndarray:
    """Exact real values on ``ft``'s grid (scaled by ``2**shift``) -> int64 mantissas (refuses
    values off the grid)."""
    m = np.asarray(v, dtype=np.float64) * 2.0 ** (ft.frac - shift)
    r = np.round(m)
    if not np.array_equal(r, m):
        raise AssertionError(f"values off the grid of {ft.describe()}")
    return r.astype(np.int64)
