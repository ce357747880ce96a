"""Exact integer kernels of the hls4ml firmware: dense products, lookup activations, overflow log.

Values are integer mantissas in ``int64`` arrays; a mantissa array always comes with the number of
fractional bits it carries. ``ap_fixed`` products and sums are exact (the C++ result types widen),
so they are plain integer products and sums after aligning the binary points; the only lossy
step is an assignment to a narrower type, which is :func:`qlstm.fixedpoint.cast` - nothing here
rounds or saturates by itself.

:func:`dense` mirrors ``nnet::dense_latency`` (``nnet_dense_latency.h``)::

    mult[index] = product(cache, weights[index]);   // accum_t mult[]: each product cast
    acc[iacc] = (typename CONFIG_T::accum_t)biases[iacc];
    acc[jj] += mult[index];                          // ii = 0 .. n_in-1, accum_t each time
    res[ires] = cast<data_T, res_T, CONFIG_T>(acc[ires]);

Matrix products run in float BLAS while every partial sum provably stays below 2**53 (2**24 for
float32), else in compiled int64 (exact below 2**63, or modulo 2**64, which is still exact for a
wrapping accumulator; :func:`qlstm.firmware_sim.jit.int_matmul`). A saturating accumulator depends on the order of the partial sums; it is
summed in the C++ order, but only for the rows whose partial sums can leave the range at all.
When products need rounding to the accumulator (``accum.frac < data.frac + weight.frac``), and
for the rows of a saturating accumulator whose partial sums can leave its range, the C++ loop
itself runs, compiled (:mod:`qlstm.firmware_sim.jit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qlstm import hls4ml_tables as tables
from qlstm.description import TableSpec
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType, cast, shift_round, would_overflow

from .jit import dense_products, int_matmul

#: Largest partial sum (in magnitude) for which float64 / float32 products and sums are exact.
_F64_EXACT = 1 << 53
_F32_EXACT = 1 << 24
#: Largest magnitude we let int64 arithmetic reach (one bit of headroom for a final addition).
_I64_SAFE = 1 << 62
#: Input widths up to this get a direct "mantissa -> activation" table (2**16 int64 = 512 KiB).
_DIRECT_LUT_BITS = 16


def max_abs(t: FixedType) -> int:
    """Largest mantissa magnitude of type ``t``."""
    return max(-t.min_int, t.max_int)


def check_int64(bound: int, what: str) -> None:
    """Refuse an intermediate whose magnitude could reach int64's limit (types too wide)."""
    if bound >= _I64_SAFE:
        raise QlstmError(
            f"{what}: the fixed-point types are too wide for exact int64 simulation "
            f"(intermediates need {int(bound).bit_length() + 1} bits > 63); narrow the types"
        )


def align(m: np.ndarray, frac: int, to_frac: int) -> np.ndarray:
    """Mantissas ``m`` (``frac`` fractional bits) rewritten with ``to_frac >= frac`` bits (exact)."""
    return m if to_frac == frac else np.left_shift(m, to_frac - frac)


# ====================================================================== overflow log
@dataclass
class OverflowEntry:
    """Where a cast hit its overflow mode: element count, steps involved, first (window, step).

    ``first_window``/``first_step``: the earliest window with an overflow and, in it, the
    earliest step (``first_step`` is None for the head, which runs once after the last step).
    """

    count: int = 0
    total: int = 0
    steps: set[int] = field(default_factory=set)
    first_window: int | None = None
    first_step: int | None = None

    def _first(self, window: int, step: int | None) -> None:
        key = (window, -1 if step is None else step)
        old = (self.first_window, -1 if self.first_step is None else self.first_step)
        if self.first_window is None or key < old:
            self.first_window, self.first_step = window, step


class Recorder:
    """Collects overflow events per named quantization point (used by ``qlstm firmware check``)."""

    def __init__(self) -> None:
        self.entries: dict[str, OverflowEntry] = {}
        self.window_offset = 0  # index of the first window of the chunk being simulated

    def note(self, name: str, mask: np.ndarray, step: int | None = None, steps: int | None = None) -> None:
        """Count the True elements of ``mask`` (rows first) for point ``name``.

        Rows are windows of the current chunk at time step ``step`` (None: not per step); or,
        with ``steps`` (a product computed for every step at once), row ``window * steps + t``
        is window ``window`` at step ``t``.
        """
        e = self.entries.setdefault(name, OverflowEntry())
        mask = np.asarray(mask, dtype=bool)
        e.total += mask.size
        n = int(mask.sum())
        if not n:
            return
        e.count += n
        if mask.ndim == 0:
            e._first(self.window_offset, step)
            if step is not None:
                e.steps.add(step)
            return
        if steps is not None:
            hits = mask.reshape(-1, steps, int(np.prod(mask.shape[1:], dtype=np.int64))).any(axis=2)
            e.steps.update(int(t) for t in np.nonzero(hits.any(axis=0))[0])
            w = int(np.nonzero(hits.any(axis=1))[0][0])
            e._first(self.window_offset + w, int(np.nonzero(hits[w])[0][0]))
            return
        if step is not None:
            e.steps.add(step)
        rows = np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]
        e._first(self.window_offset + int(rows[0]), step)


def fast_cast(m: np.ndarray, frac: int, dst: FixedType) -> np.ndarray:
    """``cast(m, frac, dst)``, skipping the overflow step when every value is already in range.

    ``cast`` is ``overflow(shift_round(...))``; the overflow step is the identity on in-range
    values, and checking the range (min and max) is cheaper than applying it. int32 mantissas
    shifted right with truncation stay int32 (LSTM state update, ``simulate._int32_update``),
    also where they overflow when ``dst`` fits int32 (the result then lies in its range).
    """
    if m.dtype == np.int32 and frac > dst.frac and dst.rounding == "AP_TRN" and max_abs(dst) < 1 << 31:
        r = np.right_shift(m, frac - dst.frac)  # shift_round's floor, keeping int32
        if r.size and (int(r.min()) < dst.min_int or int(r.max()) > dst.max_int):
            return cast(r, dst.frac, dst).astype(np.int32)
        return r
    r = m if frac == dst.frac else shift_round(m, frac - dst.frac, dst.rounding)
    if r.size and (int(r.min()) < dst.min_int or int(r.max()) > dst.max_int):
        return cast(r, dst.frac, dst)
    return r


def cast_noted(
    m: np.ndarray, frac: int, dst: FixedType, rec: Recorder | None, name: str, step: int | None = None
) -> np.ndarray:
    """:func:`cast`, noting the elements that hit ``dst``'s overflow mode when recording."""
    if rec is not None:
        rec.note(name, would_overflow(m, frac, dst), step)
    return fast_cast(m, frac, dst)


# ====================================================================== exact matrix product
def exact_matmul(
    x: np.ndarray,
    w: np.ndarray,
    bound: int,
    modular_ok: bool,
    what: str,
    colsum: int | None = None,
    w_float: tuple[np.ndarray, np.ndarray] | None = None,
    as_int: bool = True,
) -> np.ndarray:
    """``x @ w`` for int64 mantissas, exactly; ``bound`` >= every partial sum's magnitude.

    ``as_int=False`` returns a BLAS result as it is (float32/float64 holding exact integers; the
    compiled cell step converts it as it reads it), saving a pass over a large array.

    float32 BLAS when the partial sums of *these* rows stay below 2**24 (``colsum``: the largest
    column sum of ``|w|``, to bound them from ``max |x|``), float64 while ``bound < 2**53``;
    beyond, compiled int64 (:func:`qlstm.firmware_sim.jit.int_matmul`: exact below 2**63, and
    congruent modulo 2**64 beyond, which is enough when ``modular_ok``: the result is then
    wrapped to fewer bits). BLAS first because, measured in the whole simulation, it is as fast
    as the compiled product and a process that needs no compiled kernel does not pay numba's
    0.6 s of import and cache loading (firmware_sim/README.md, Speed). ``w_float``: ``w``
    already converted to (float32, float64).
    """
    w32, w64 = w_float if w_float is not None else (w.astype(np.float32), w.astype(np.float64))
    if colsum is not None and x.size and max(-int(x.min()), int(x.max())) * colsum < _F32_EXACT:
        p = x.astype(np.float32) @ w32
        return p.astype(np.int64) if as_int else p
    if bound < _F64_EXACT:
        p = x.astype(np.float64) @ w64
        return p.astype(np.int64) if as_int else p
    if bound >= _I64_SAFE and not modular_ok:
        check_int64(bound, what)
    return int_matmul(x, w)


# ====================================================================== dense
def summation_order(name: str, n_in: int, strategy: str, reuse: int) -> np.ndarray | None:
    """The order in which hls4ml 1.3.0's dense kernel adds the products of the ``n_in`` inputs.

    ``latency`` (``dense_latency``, any reuse factor: it only sets a pragma): 0 .. n_in-1, None.
    ``resource`` (``nnet_dense_resource.h``): with ``reuse <= n_in`` (``dense_resource_rf_leq_nin``)
    pass ``ir = 0 .. reuse-1`` adds inputs ``ir, ir + reuse, ir + 2 reuse, ...``; with ``reuse`` a
    multiple of ``n_in`` (``rf_gt_nin_rem0``) every output gets one product per pass, in input
    order. Other reuse factors (``rf_gt_nin``, which hls4ml rejects for these shapes) are refused.
    Each product is cast to ``accum_t`` and each partial sum too in every variant, so only the
    order differs - and only a saturating accumulator can tell.
    """
    if strategy == "latency" or reuse == 1:
        return None
    if strategy != "resource":
        raise QlstmError(f"{name}: unknown strategy {strategy!r}; choose latency or resource")
    if reuse <= n_in:
        if n_in % reuse:
            raise QlstmError(f"{name}: reuse factor {reuse} does not divide n_in = {n_in}; not modelled")
        return np.array([ir + s * reuse for ir in range(reuse) for s in range(n_in // reuse)], dtype=np.int64)
    if reuse % n_in == 0:
        return None
    raise QlstmError(
        f"{name}: reuse factor {reuse} > n_in = {n_in} and not a multiple of it "
        "(hls4ml's dense_resource_rf_gt_nin) is not modelled by firmware_sim"
    )


@dataclass(frozen=True)
class Dense:
    """One ``dense_latency`` call: kernel (n_in, n_out) and bias as mantissas, and its types."""

    name: str
    w: np.ndarray  # (n_in, n_out) int64 mantissas of w_t (hls4ml layout: w[ii * n_out + jj])
    w_t: FixedType
    b_acc: np.ndarray  # (n_out,) (accum_t)biases, mantissas of acc_t
    b_overflow: np.ndarray  # (n_out,) bool: where that bias cast overflowed
    x_t: FixedType
    acc_t: FixedType
    colsum: int  # largest column sum of |w|: bounds |x @ w| by max|x| * colsum
    w_float: tuple[np.ndarray, np.ndarray] | None = None  # w as float32 and float64 for BLAS
    order: np.ndarray | None = None  # the C++ summation order of the inputs (None: 0 .. n_in-1)

    @classmethod
    def build(
        cls,
        name: str,
        w: np.ndarray,
        w_t: FixedType,
        b: np.ndarray,
        b_t: FixedType,
        x_t: FixedType,
        acc_t: FixedType,
        order: np.ndarray | None = None,
    ) -> Dense:
        """From real-valued kernel (n_in, n_out) and bias on their grids; ``order``: the order in
        which the C++ adds the products of the inputs (see :func:`summation_order`)."""
        w_m = w_t.to_int(w)
        b_m = b_t.to_int(b)
        if not (np.array_equal(w_t.to_float(w_m), w) and np.array_equal(b_t.to_float(b_m), b)):
            raise QlstmError(f"{name}: weights are not on the grid of their fixed-point types")
        return cls(
            name=name,
            w=np.ascontiguousarray(w_m),
            w_t=w_t,
            b_acc=cast(b_m, b_t.frac, acc_t),
            b_overflow=would_overflow(b_m, b_t.frac, acc_t),
            x_t=x_t,
            acc_t=acc_t,
            colsum=int(np.abs(w_m).sum(axis=0).max(initial=0)),
            w_float=(w_m.astype(np.float32), w_m.astype(np.float64)),
            order=None if order is None or np.array_equal(order, np.arange(w_m.shape[0])) else order,
        )

    @property
    def n_in(self) -> int:
        return self.w.shape[0]

    @property
    def shift(self) -> int:
        """Bits to shift an exact product left to reach the accumulator's grid (< 0: rounding)."""
        return self.acc_t.frac - (self.x_t.frac + self.w_t.frac)

    def product_bound(self) -> int:
        """Largest ``sum_ii |x_ii * w_ii,jj|`` over outputs, in product mantissa units."""
        return max_abs(self.x_t) * self.colsum

    def __call__(
        self, x: np.ndarray, rec: Recorder | None = None, step: int | None = None, steps: int | None = None
    ) -> np.ndarray:
        """(rows, n_in) mantissas of ``x_t`` -> (rows, n_out) mantissas of ``acc_t``.

        ``rec``/``step``/``steps``: overflow log, as :meth:`Recorder.note` (``steps``: the rows
        are every step of each window, flattened).
        """
        if rec is not None:
            rec.note(
                f"{self.name}.bias",
                np.broadcast_to(self.b_overflow, (x.shape[0], self.b_acc.size)),
                step,
                steps,
            )
        if self.shift >= 0 and self._products_fit():
            out, ideal = self._exact_products(x)
        else:
            out, ideal = self._rounded_products(x, need_ideal=rec is not None)
        if rec is not None:
            rec.note(f"{self.name}.accum", out != ideal, step, steps)
        return out

    def _products_fit(self) -> bool:
        """Every single product fits the accumulator (so casting it is the identity) or wraps."""
        if self.acc_t.overflow == "AP_WRAP":
            return True
        wmax = int(np.abs(self.w).max(initial=0))
        p = (max_abs(self.x_t) * wmax) << self.shift
        return p <= self.acc_t.max_int and -p >= self.acc_t.min_int

    @property
    def modular(self) -> bool:
        """Products land exactly on a wrapping accumulator's grid: the result is the exact sum
        modulo ``2**width``, whatever the order (see :meth:`exact_sum`)."""
        return self.shift >= 0 and self.acc_t.overflow == "AP_WRAP"

    @property
    def int64_exact(self) -> bool:
        """:meth:`exact_sum` never wraps int64 (so its values are the true sums)."""
        return (self.product_bound() << max(self.shift, 0)) + max_abs(self.acc_t) < _I64_SAFE

    def exact_sum(self, x: np.ndarray, bias: bool = True) -> np.ndarray:
        """``bias + sum(products)`` on the accumulator grid, before any overflow (exact products).

        For a wrapping accumulator the result equals the C++ one after a single final cast, and
        congruent sums can be added before that cast (int64 wraps modulo 2**64 too).
        """
        total = align(self.products(x), 0, self.shift)
        return total + self.b_acc if bias else total

    def products(self, x: np.ndarray, as_int: bool = True) -> np.ndarray:
        """``x @ w`` exactly, in product units (``as_int=False``: see :func:`exact_matmul`)."""
        bound = self.product_bound()
        if self.acc_t.overflow != "AP_WRAP":
            check_int64((bound << self.shift) + max_abs(self.acc_t), f"{self.name} accumulation")
        return exact_matmul(x, self.w, bound, self.modular, self.name, self.colsum, self.w_float, as_int)

    def _exact_products(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Products land exactly on the accumulator grid: one matrix product, then the sum's casts."""
        acc = self.acc_t
        ideal = self.exact_sum(x)
        if acc.overflow == "AP_WRAP":  # modulo 2**width: the order of the partial sums is irrelevant
            return fast_cast(ideal, acc.frac, acc), ideal
        # saturating: only rows whose partial sums can leave the range need the C++ order; first a
        # per-row bound from max |x|, then exact bounds from the positive and negative parts
        out = ideal.copy()
        xmax = np.abs(x).max(axis=1, initial=0)
        reach = np.left_shift(xmax * self.colsum, self.shift) + int(np.abs(self.b_acc).max(initial=0))
        cand = np.nonzero((reach > acc.max_int) | (-reach < acc.min_int))[0]
        if cand.size == 0:
            return out, ideal
        xc = x[cand]
        xp, xn = np.maximum(xc, 0), np.minimum(xc, 0)
        wp, wn = np.maximum(self.w, 0), np.minimum(self.w, 0)
        b, nm = self.product_bound(), self.name
        hi = self.b_acc + np.left_shift(
            exact_matmul(xp, wp, b, False, nm) + exact_matmul(xn, wn, b, False, nm), self.shift
        )
        lo = self.b_acc + np.left_shift(
            exact_matmul(xp, wn, b, False, nm) + exact_matmul(xn, wp, b, False, nm), self.shift
        )
        rows = cand[((hi > acc.max_int) | (lo < acc.min_int)).any(axis=1)]
        if rows.size:
            xo, wo = self._ordered(x[rows])
            out[rows] = dense_products(xo, wo, self.b_acc, self.x_t.frac + self.w_t.frac, acc)[0]
        return out, ideal

    def _ordered(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and kernel rows in the C++ summation order (matters for saturating sums only)."""
        if self.order is None or self.acc_t.overflow == "AP_WRAP":
            return x, self.w
        return x[:, self.order], self.w[self.order]

    def _rounded_products(self, x: np.ndarray, need_ideal: bool) -> tuple[np.ndarray, np.ndarray]:
        """Each product cast to the accumulator (rounding and overflow) and summed in the C++
        order (:func:`qlstm.firmware_sim.jit.dense_products`); with ``need_ideal`` also the sum
        an unbounded accumulator would hold (for the overflow log)."""
        acc = self.acc_t
        wmax = int(np.abs(self.w).max(initial=0))
        check_int64(max_abs(self.x_t) * wmax, f"{self.name} product")
        check_int64(
            self.n_in * max_abs(self.x_t) * wmax + (self.n_in + 1) * max_abs(acc), f"{self.name} accumulation"
        )
        xo, wo = self._ordered(x)
        out, ideal = dense_products(xo, wo, self.b_acc, self.x_t.frac + self.w_t.frac, acc, need_ideal)
        return out, (ideal if need_ideal else out)


# ====================================================================== lookup activations
class Activation:
    """``nnet::sigmoid``/``nnet::tanh`` from ``in_t`` mantissas to ``res_T`` (``out_t``) mantissas.

    ``res[ii] = (res_T)table[index]``: the table entry (``table_t``) cast to the result type, with
    the index of :func:`qlstm.hls4ml_tables.table_index`. Two faster, equivalent forms:
    inputs of up to 16 bits tabulate the whole map mantissa -> result once (one gather); wider
    inputs, when the table has at least 16 (sigmoid) / 8 (tanh) entries and the C ``int`` index
    cannot wrap, compute ``data * table_size / 16`` as one shift with truncation toward zero and
    let the gather clamp the index.
    """

    def __init__(self, kind: str, spec: TableSpec, in_t: FixedType, out_t: FixedType) -> None:
        self.kind, self.spec, self.in_t, self.out_t = kind, spec, in_t, out_t
        tab = tables.table(kind, spec)  # type: ignore[arg-type]
        self.table_out = cast(tab, spec.type.frac, out_t)  # (res_T) table[index]
        self.table_overflow = would_overflow(tab, spec.type.frac, out_t)
        self.direct: np.ndarray | None = None
        self.shift: int | None = None  # data_round = trunc0(m / 2**shift) (or m << -shift)
        n_bits = spec.size.bit_length() - 1
        d_bits = 4 if kind == "sigmoid" else 3  # '/ 16' for sigmoid, '/ 8' for tanh
        self.direct32: np.ndarray | None = None  # the direct table as int32, for int32 inputs
        if in_t.width <= _DIRECT_LUT_BITS:
            m = np.arange(in_t.min_int, in_t.max_int + 1, dtype=np.int64)
            self.direct = self.table_out[self.index(m)]
            if max_abs(out_t) < 1 << 31:
                self.direct32 = self.direct.astype(np.int32)
        elif n_bits >= d_bits:
            shift = in_t.frac - (n_bits - d_bits)
            largest = max_abs(in_t) >> shift if shift >= 0 else max_abs(in_t) << -shift
            if largest + spec.size < (1 << 31):  # the C int never wraps
                self.shift = shift
        self.half = spec.size // 2

    def index(self, m: np.ndarray) -> np.ndarray:
        return tables.table_index(self.kind, m, self.in_t.frac, self.spec)  # type: ignore[arg-type]

    def __call__(self, m: np.ndarray) -> np.ndarray:
        """Table entries for int64 mantissas ``m``, or float arrays holding exact integer mantissas
        (an untraced LSTM's float32 gate sums)."""
        if m.dtype.kind == "f" and self.shift is not None:
            # m * 2**-k is exact (a power of two) and astype truncates toward zero, like the C++
            r = (m * m.dtype.type(2.0**-self.shift)).astype(np.int64)
            r += self.half
            return np.take(self.table_out, r, mode="clip")
        if m.dtype.kind == "f":
            m = m.astype(np.int64)
        if self.direct is not None:
            if m.dtype == np.int32 and self.direct32 is not None:  # int32 in, int32 out (same values)
                return np.take(self.direct32, m - np.int32(self.in_t.min_int))
            return self.direct[m - self.in_t.min_int]
        if self.shift is None:
            return self.table_out[self.index(m)]
        k = self.shift
        # truncation toward zero: add 2**k - 1 to negative values before the (floor) shift
        r = np.right_shift(m + (np.right_shift(m, 63) & ((1 << k) - 1)), k) if k > 0 else np.left_shift(m, -k)
        r += self.half
        return np.take(self.table_out, r, mode="clip")  # the two index clamps

    def overflowed(self, m: np.ndarray) -> np.ndarray:
        """Where the table entry looked up did not fit the result type."""
        return self.table_overflow[self.index(m)]
