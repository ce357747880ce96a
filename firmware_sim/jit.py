"""The per-product ``dense_latency`` loop, compiled with numba: exact and fast at any precision.

``nnet::dense_latency`` (``nnet_dense_latency.h``) casts every product to ``accum_t`` and adds
them to the (``accum_t``) bias in order, ``ii = 0 .. n_in-1``, casting each partial sum::

    mult[index] = (accum_t)(data[ii] * weights[index]);   // rounding, then overflow
    acc[jj] = (accum_t)biases[jj];
    acc[jj] += mult[index];                               // overflow at every step

:func:`dense_kernel` returns that loop (``_compiled.dense_loop``) for one rounding mode, one
overflow mode and whether the overflow log's "ideal" sum (an unbounded accumulator's) is wanted;
the modes and ``ideal`` are literal arguments of one module-level function, so numba compiles
one specialisation per combination, with the modes as compile-time constants (the inner loop over
``jj`` branch-free), and caches each on disk (a closure over the modes, the form before
2026-12-01, was compiled again in every process: 0.9 s per ``qlstm predict``, issue #15; the
modes as plain run-time arguments were measured 5-9x slower). For a saturating accumulator the
order over ``ii`` is kept exactly; the ``jj`` lanes are independent.
A wrapping accumulator takes every sum modulo ``2**width``, so its casts are deferred to one
at the end (int64 itself wraps modulo ``2**64``, a multiple). The rounding and overflow
formulas are those of :func:`qlstm.fixedpoint.shift_round` and ``_overflow`` (tested equal,
element by element, in ``tests/test_firmware_jit.py``). The kernels release the GIL, so windows
can be simulated in several threads (:mod:`qlstm.firmware_sim.simulate`).

numba is imported only in :mod:`qlstm.firmware_sim._compiled`, on first use; a fresh cache
compiles each kernel once (a few seconds), later processes load it from numba's cache
(``__pycache__`` next to ``_compiled.py``, or ``$NUMBA_CACHE_DIR``; numba falls back to a user
cache directory when the package directory is not writable).
"""

from __future__ import annotations

import functools
import gc
import threading

import numpy as np

from qlstm.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedType


def compiled_module():
    """:mod:`qlstm.firmware_sim._compiled`, imported (with numba) on first use.

    The first import runs with Python's cyclic garbage collector paused, loads one small cached
    kernel (numba's target context imports its implementation registries on the first compile
    or cache load), and then freezes the objects made so far (``gc.freeze``): numba's ~250
    modules live until the process ends, and the collector no longer traverses them. A whole
    ``qlstm predict`` with hls4ml's default types spent 27 % of its CPU in ``gc_collect_main``
    (perf, 2026-12-01): numba's import, first kernel load and the exit of a process that
    imported it took 0.47-0.56 s of CPU, 0.23-0.29 s with the collector paused and frozen.
    """
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    with _MODULE_LOCK:  # firmware_sim's threads: one import, and none returns a module half made
        if _MODULE is None:
            enabled = gc.isenabled()
            gc.disable()
            try:
                from . import _compiled as mod

                one = np.zeros((1, 1), dtype=np.int64)
                mod.int_matmul(one, one, np.empty((1, 1), dtype=np.int64))  # the registries, now
            finally:
                if enabled:
                    gc.enable()
            gc.freeze()
            _MODULE = mod
    return _MODULE


_MODULE = None
_MODULE_LOCK = threading.Lock()


_compiled = compiled_module


def _numba():
    import numba

    return numba


def _kind(a) -> tuple:
    """What numba's type of a kernel argument depends on (``numba.typeof`` of an array: dtype,
    dimensions, layout, mutability, alignment), read from NumPy's flags: ``numba.typeof`` on
    every call cost 0.12 s of a 0.32 s run (hls4ml's default types, 20,000 windows, 720 calls;
    cProfile, 2026-12-01). Scalars: their Python type (the kernels get ints within int64)."""
    if isinstance(a, np.ndarray):
        f = a.flags
        return (a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
    return (type(a),)


@functools.cache
def dense_kernel(rounding: str, overflow: str, ideal: bool):
    """The compiled loop ``kernel(x, w, bias, k, left, lo, hi, mask, out, idl)``.

    ``x`` (rows, n_in) and ``w`` (n_in, n_out) int64 mantissas, ``bias`` (n_out,) the
    ``(accum_t)`` bias; each product ``x * w`` is shifted right by ``k > 0`` bits with
    ``rounding`` (or left by ``left >= 0`` bits when ``k == 0``) onto the accumulator's grid;
    ``lo``/``hi`` the accumulator's mantissa range (for ``AP_SAT_SYM`` the symmetric one),
    ``mask`` ``2**width - 1``. Writes ``out`` (rows, n_out) and, when
    ``ideal``, ``idl``: the bias plus the rounded products without any overflow. One cached
    function (``_compiled.dense_loop``) with the modes as arguments.
    """
    loop = _compiled().dense_loop
    numba = _numba()
    rmode = ROUNDING_MODES.index(rounding)
    omode = OVERFLOW_MODES.index(overflow)
    entries: dict = {}  # argument kinds (_kind) -> the literal specialisation's compiled entry point

    def kernel(x, w, bias, k, left, lo, hi, mask, out, idl):
        args = (x, w, bias, k, left, lo, hi, mask, out, idl, rmode, omode, bool(ideal))
        key = tuple(map(_kind, args[:10]))
        fn = entries.get(key)
        if fn is not None:
            return fn(*args)
        # the literal specialisation, loaded from numba's cache or compiled; asked for by its
        # signature: a dispatcher call would first type the non-literal signature (a failed
        # compile, measured 1.0 s a process) before numba.literally retries, and would re-type
        # every call (measured 0.4 s a call)
        types = tuple(numba.typeof(a) for a in args[:10])
        sig = types + (numba.types.literal(rmode), numba.types.literal(omode), numba.types.boolean)
        loop.compile(sig)
        fn = entries[key] = loop.overloads[sig].entry_point
        return fn(*args)

    return kernel


def int_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for int64 (rows, n_in) and (n_in, n_out): exact below 2**63, else modulo 2**64.

    When every single product fits int32 the products are formed in int32 (twice the SIMD lanes)
    and summed in int64. Faster than float64 BLAS with its two conversions at the shapes
    firmware_sim meets, and it releases the GIL (docs: firmware_sim/README.md, Speed).
    """
    x = np.ascontiguousarray(x, dtype=np.int64)
    out = np.empty((x.shape[0], w.shape[1]), dtype=np.int64)
    xm = max(-int(x.min()), int(x.max())) if x.size else 0
    wm = int(np.abs(w).max(initial=0))
    if xm * wm < (1 << 31) and xm < (1 << 31) and wm < (1 << 31):
        _compiled().int_matmul(x.astype(np.int32), np.ascontiguousarray(w, dtype=np.int32), out)
    else:
        _compiled().int_matmul(x, np.ascontiguousarray(w, dtype=np.int64), out)
    return out


def dense_products(
    x: np.ndarray,
    w: np.ndarray,
    bias_acc: np.ndarray,
    prod_frac: int,
    acc_t: FixedType,
    ideal: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``dense_latency`` on (rows, n_in) mantissas: (rows, n_out) ``accum_t`` mantissas.

    ``prod_frac``: fractional bits of an exact product ``x * w``; ``bias_acc`` the bias already
    cast to ``acc_t``. With ``ideal`` also returns the sum an unbounded accumulator would hold
    (the bias plus every product rounded to ``acc_t``'s grid), for the overflow log. The caller
    guarantees that products and sums stay within int64 (``kernels.check_int64``).
    """
    x = np.ascontiguousarray(x, dtype=np.int64)
    rows, n_out = x.shape[0], w.shape[1]
    k = prod_frac - acc_t.frac
    out = np.empty((rows, n_out), dtype=np.int64)
    idl = np.empty((rows, n_out) if ideal else (0, 0), dtype=np.int64)
    kern = dense_kernel(acc_t.rounding, acc_t.overflow, ideal)
    mask = (1 << acc_t.width) - 1
    lo = -acc_t.max_int if acc_t.overflow == "AP_SAT_SYM" and acc_t.signed else acc_t.min_int
    kern(x, w, bias_acc, max(k, 0), max(-k, 0), lo, acc_t.max_int, mask, out, idl)
    return out, (idl if ideal else None)
