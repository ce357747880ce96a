"""Recurrent products ``h @ U`` of 16-bit mantissas modulo 2**32, with AVX-512 VNNI (``vpdpwssd``).

Used by the compiled LSTM/GRU step (:mod:`qlstm.firmware_sim.simulate`) in place of the float32
BLAS product when :func:`exact_for` holds; it computes the same integer accumulator values (see
the proof below), everything after it is unchanged. Imported on first use (it needs numba).

``vpdpwssd`` (Intel SDM, "VPDPWSSD"): for each of the 16 int32 lanes ``i`` of a 512-bit register,
``dst[i] = src[i] + sext(a[2i]) * sext(b[2i]) + sext(a[2i+1]) * sext(b[2i+1])``, the additions in
32-bit two's complement, wrapping (the ``...S`` form saturates; it is not used): 32 int16
multiply-adds per instruction, against 16 float32 FMAs. Measured on the machine of this
repository (AMD EPYC, znver5, 2026-12-01 01:00 UTC, one thread, load ~1-2): a (512 x 128) @
(128 x 512) product in 141 us (238 GMAC/s) against 536 us for float32 BLAS (OpenBLAS sgemm,
63 GMAC/s); firmware_sim/README.md, Speed.

**Why the result is exact.** Let ``P = sum_k h_k u_k`` (an integer) and ``R`` the int32 this
kernel returns. Every step above is an integer multiplication or addition reduced modulo 2**32
(two's complement int32 arithmetic is the ring Z/2**32; the sign extensions are exact), so
``R == P (mod 2**32)``, whatever the order of the additions and however far the partial sums
(even one pair ``(-32768)(-32768) + (-32768)(-32768) = 2**31``) leave int32. The gate sum
``v = b + (R << s) + X`` (``s >= 0``: the left shift onto accum_t's grid, ``b``, ``X``: the bias
and input terms) is then congruent to the exact ``v* = b + (P << s) + X`` modulo ``2**(32 + s)``.
An ``AP_WRAP`` cast to a ``W``-bit accumulator (both the LSTM's gate sums and the GRU's
``tmpres_state`` are such casts in the fused path, :attr:`qlstm.firmware_sim.kernels.Dense.modular`)
maps ``v`` to the one value of its range ``[lo, lo + 2**W)`` congruent to ``v`` modulo ``2**W``;
if ``W <= 32 + s``, ``2**W`` divides ``2**(32 + s)``, so ``cast(v) == cast(v*)``, which is the
C++ result (the products and their sum land exactly on accum_t's grid and a wrapping sum is
order-free). With a saturating accumulator the residue does not decide the result (``v*`` itself
must be compared with the range): this kernel is never used there, nor for accumulators wider
than ``32 + s`` bits or mantissas wider than 16 bits (:func:`exact_for`).

The kernel (:func:`matmul`) blocks 4 rows (windows) x 64 columns (4 registers of 16 int32) in 16
accumulators held in registers; ``h`` is read as int32 pairs ``(h[2k], h[2k+1])`` broadcast to
all lanes, ``U`` is stored interleaved (:func:`pack`): ``[column block, k // 2, 16 columns, 2]``.
Rows, columns and ``k`` are padded with zeros to multiples of 4, 64 and 2 (zero products).
Column blocks outside, rows inside: 128 us against 143 us with rows outside (the product above,
best of 20, 7 rounds each, interleaved). ``llvm.x86.avx512.vpdpwssd.512`` is called through a
numba intrinsic on a ``<16 x i32>`` value type; numba's plain loops do not get there (the
dot-product form ``acc += int32(h[k]) * int32(u[j, k])`` over contiguous ``k`` compiles to
``vpmaddwd`` with a horizontal sum per output: 662 us, 51 GMAC/s, measured in the same session).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: Rows (windows) and columns a call of the kernel handles at once.
ROW_BLOCK = 4
COL_BLOCK = 64  # 4 registers of 16 int32 lanes

_VEC = ir.VectorType(ir.IntType(32), 16)
_WORDS = ir.VectorType(ir.IntType(16), 32)


@functools.cache
def available() -> bool:
    """This process's compiled code may use AVX-512 VNNI: the host CPU has avx512f, avx512bw and
    avx512vnni, and numba compiles for the host (``NUMBA_CPU_NAME`` unset or ``host``; a generic
    target would refuse the instruction)."""
    from llvmlite import binding

    name = numba.config.CPU_NAME
    if name not in (None, "host") or numba.config.CPU_FEATURES is not None:
        return False
    try:
        feats = binding.get_host_cpu_features()
    except RuntimeError:  # not an x86 host, or features unknown
        return False
    return all(feats.get(f, False) for f in ("avx512f", "avx512bw", "avx512vnni"))


class _Vec16(types.Type):
    """Sixteen int32 lanes, an LLVM ``<16 x i32>`` value (a zmm register)."""

    def __init__(self) -> None:
        super().__init__(name="int32x16")


vec16 = _Vec16()


@register_model(_Vec16)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _VEC)


def _elem_ptr(context, builder, aty, arr, idx):
    a = context.make_array(aty)(context, builder, arr)
    return builder.gep(a.data, [idx])


@intrinsic
def _zero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0] * 16)

    return vec16(), codegen


@intrinsic
def _load(typingctx, arr, idx):
    """The 16 int32 at ``arr.flat[idx:idx + 16]`` (``arr`` C-contiguous int32)."""

    def codegen(context, builder, sig, args):
        p = builder.bitcast(_elem_ptr(context, builder, sig.args[0], args[0], args[1]), _VEC.as_pointer())
        return builder.load(p, align=4)

    return vec16(arr, idx), codegen


@intrinsic
def _broadcast(typingctx, arr, idx):
    """``arr.flat[idx]`` (an int32: a pair of int16) in all 16 lanes."""

    def codegen(context, builder, sig, args):
        v = builder.load(_elem_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), ir.Constant(_VEC, [0] * 16))

    return vec16(arr, idx), codegen


@intrinsic
def _dot(typingctx, acc, a, b):
    """``vpdpwssd``: ``acc[i] + a.w[2i] b.w[2i] + a.w[2i+1] b.w[2i+1]`` modulo 2**32 per lane."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(_VEC, [_VEC, _WORDS, _WORDS])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpdpwssd.512")
        return builder.call(fn, [args[0], builder.bitcast(args[1], _WORDS), builder.bitcast(args[2], _WORDS)])

    return vec16(vec16, vec16, vec16), codegen


@intrinsic
def _store(typingctx, arr, idx, v):
    """Write the 16 lanes of ``v`` to ``arr.flat[idx:idx + 16]``."""

    def codegen(context, builder, sig, args):
        p = builder.bitcast(_elem_ptr(context, builder, sig.args[0], args[0], args[1]), _VEC.as_pointer())
        builder.store(args[2], p, align=4)
        return context.get_dummy_value()

    return types.none(arr, idx, vec16), codegen


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _kernel(h2, bp, out):  # pragma: no cover - compiled
    n, k2s = h2.shape
    nb = bp.shape[0]
    ncol = nb * 16
    hv = h2.ravel()
    bv = bp.ravel()
    ov = out.ravel()
    for jb in range(0, nb, 4):  # columns outside: the 4 blocks of U (4 x K x 32 bytes) stay in L1
        for r in range(0, n, 4):
            a00, a01, a02, a03 = _zero(), _zero(), _zero(), _zero()
            a10, a11, a12, a13 = _zero(), _zero(), _zero(), _zero()
            a20, a21, a22, a23 = _zero(), _zero(), _zero(), _zero()
            a30, a31, a32, a33 = _zero(), _zero(), _zero(), _zero()
            for k in range(k2s):
                b0 = _load(bv, (jb * k2s + k) * 16)
                b1 = _load(bv, ((jb + 1) * k2s + k) * 16)
                b2 = _load(bv, ((jb + 2) * k2s + k) * 16)
                b3 = _load(bv, ((jb + 3) * k2s + k) * 16)
                x = _broadcast(hv, r * k2s + k)
                a00, a01, a02, a03 = _dot(a00, x, b0), _dot(a01, x, b1), _dot(a02, x, b2), _dot(a03, x, b3)
                x = _broadcast(hv, (r + 1) * k2s + k)
                a10, a11, a12, a13 = _dot(a10, x, b0), _dot(a11, x, b1), _dot(a12, x, b2), _dot(a13, x, b3)
                x = _broadcast(hv, (r + 2) * k2s + k)
                a20, a21, a22, a23 = _dot(a20, x, b0), _dot(a21, x, b1), _dot(a22, x, b2), _dot(a23, x, b3)
                x = _broadcast(hv, (r + 3) * k2s + k)
                a30, a31, a32, a33 = _dot(a30, x, b0), _dot(a31, x, b1), _dot(a32, x, b2), _dot(a33, x, b3)
            o = r * ncol + jb * 16
            _store(ov, o, a00), _store(ov, o + 16, a01), _store(ov, o + 32, a02), _store(ov, o + 48, a03)
            o += ncol
            _store(ov, o, a10), _store(ov, o + 16, a11), _store(ov, o + 32, a12), _store(ov, o + 48, a13)
            o += ncol
            _store(ov, o, a20), _store(ov, o + 16, a21), _store(ov, o + 32, a22), _store(ov, o + 48, a23)
            o += ncol
            _store(ov, o, a30), _store(ov, o + 16, a31), _store(ov, o + 32, a32), _store(ov, o + 48, a33)


def padded(rows: int, k: int) -> tuple[int, int]:
    """Shape of the zero-padded int16 ``h`` buffer :func:`matmul` reads for ``rows`` x ``k``."""
    return -(-rows // ROW_BLOCK) * ROW_BLOCK, k + (k & 1)


def pack(u: np.ndarray) -> np.ndarray:
    """(K, N) integer mantissas in int16's range -> the interleaved layout of :func:`matmul`:
    int32 (ceil(N / 64) * 4, ceil(K / 2), 16), element ``[jb, k, l]`` holding the int16 pair
    ``(u[2k, 16 jb + l], u[2k + 1, 16 jb + l])`` (zeros beyond ``u``).

    Raises ValueError when an entry does not fit int16.
    """
    kk, nn = u.shape
    if u.size and (int(u.min()) < -(1 << 15) or int(u.max()) >= 1 << 15):
        raise ValueError("pack: weights outside int16's range")
    k2 = padded(0, kk)[1]
    n2 = -(-nn // COL_BLOCK) * COL_BLOCK
    w = np.zeros((k2, n2), dtype=np.int16)
    w[:kk, :nn] = u
    inter = w.reshape(k2 // 2, 2, n2 // 16, 16).transpose(2, 0, 3, 1)  # [jb, k, l, pair]
    return np.ascontiguousarray(inter).view(np.int32).reshape(n2 // 16, k2 // 2, 16)


def matmul(h16: np.ndarray, bp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = h16 @ U`` modulo 2**32 (int32, two's complement), ``U`` packed by :func:`pack`.

    ``h16``: int16 (rows, K') C-contiguous, ``rows`` a multiple of 4 and ``K'`` even
    (:func:`padded`; padding zero); ``out``: int32 (rows, 16 * bp.shape[0]). The caller reads
    only its first ``N`` columns. Needs :func:`available`. Raises ValueError on other shapes or
    dtypes (the kernel itself reads and writes whole blocks unchecked).
    """
    rows, k = h16.shape
    ok = h16.dtype == np.int16 and out.dtype == np.int32 and bp.dtype == np.int32 and bp.ndim == 3
    ok = ok and h16.flags.c_contiguous and out.flags.c_contiguous and bp.flags.c_contiguous
    ok = ok and rows % ROW_BLOCK == 0 and k == 2 * bp.shape[1] and bp.shape[0] % 4 == 0 and bp.shape[2] == 16
    if not (ok and out.shape == (rows, 16 * bp.shape[0])):
        raise ValueError(
            f"int16 matmul: h {h16.dtype} {h16.shape}, packed U {bp.dtype} {bp.shape}, out {out.dtype} {out.shape}"
        )
    _kernel(h16.view(np.int32), bp, out)
    return out


def exact_for(
    state_min: int, state_max: int, u: np.ndarray, acc_width: int, acc_overflow: str, shift: int
) -> bool:
    """Whether :func:`matmul` gives the C++ gate sums (module docstring): mantissas of ``h``
    (``[state_min, state_max]``) and of ``U`` within int16, a wrapping accumulator of at most
    ``32 + shift`` bits, ``shift >= 0`` (the products land on accum_t's grid)."""
    lo, hi = -(1 << 15), (1 << 15) - 1
    fits = (
        lo <= state_min and state_max <= hi and (u.size == 0 or (lo <= int(u.min()) and int(u.max()) <= hi))
    )
    return fits and acc_overflow == "AP_WRAP" and shift >= 0 and acc_width <= 32 + shift
