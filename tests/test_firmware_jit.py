"""The compiled ``dense_latency`` loop (firmware_sim/jit.py) at the edges of its arithmetic: every
tie of every rounding mode, saturation at every partial sum, the 32-bit accumulator cap; exact
equality against :func:`qlstm.fixedpoint.cast` applied one scalar at a time in the C++ order."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from qlstm.firmware_sim.jit import dense_products
from qlstm.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedType, cast, shift_round


def literal(x: np.ndarray, w: np.ndarray, b_acc: np.ndarray, pfrac: int, acc_t: FixedType):
    """acc = (accum_t)bias; acc += (accum_t)(x * w) for ii in order, one scalar at a time."""
    out = np.empty((x.shape[0], w.shape[1]), dtype=np.int64)
    ideal = np.empty_like(out)
    for r in range(x.shape[0]):
        for j in range(w.shape[1]):
            acc, tot = int(b_acc[j]), int(b_acc[j])
            for i in range(w.shape[0]):
                p = int(x[r, i]) * int(w[i, j])
                tot += int(shift_round(np.array([p]), pfrac - acc_t.frac, acc_t.rounding)[0])  # no overflow
                t = int(cast(np.array([p]), pfrac, acc_t)[0])  # mult[index] = (accum_t)(a * w)
                acc = int(cast(np.array([acc + t]), acc_t.frac, acc_t)[0])  # acc[jj] += mult[index]
            out[r, j], ideal[r, j] = acc, tot
    return out, ideal


@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_every_product_of_two_6_bit_types_every_tie(rounding, overflow):
    """n_in = 1, every (x, w) pair of two 6-bit types; 4 bits of the product are dropped, so every
    remainder occurs, ties (remainder 8/16) among them, positive and negative."""
    acc_t = FixedType(7, 3, True, rounding, overflow)  # frac 4; products have frac 8
    xs = np.arange(-32, 32, dtype=np.int64)
    x = np.repeat(xs, 64)[:, None]  # (4096, 1)
    w = xs[None, :]  # (1, 64): every x against every w
    b = np.zeros(64, dtype=np.int64)
    out, ideal = dense_products(x, w, b, 8, acc_t, ideal=True)
    p = x * w  # (4096, 64) exact products
    assert_array_equal(out, cast(cast(p, 8, acc_t), 4, acc_t))
    assert_array_equal(ideal, shift_round(p, 4, rounding))
    rem = np.abs(p) & 15
    assert np.any(rem == 8) and np.any((rem == 8) & (p < 0))  # ties on both sides were exercised


@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
@pytest.mark.parametrize("rounding", ["AP_TRN", "AP_RND_CONV", "AP_RND_ZERO"])
@pytest.mark.parametrize("shift", [-2, 0, 3])
def test_saturation_at_every_partial_sum(rounding, overflow, shift):
    """Partial sums leave the range at the first, a middle and the last product, up and down;
    ``shift``: accumulator frac minus product frac (< 0: products rounded, > 0: shifted left)."""
    rng = np.random.default_rng(abs(shift) + len(rounding) + len(overflow))
    acc_t = FixedType(8, 8 - (6 + shift), True, rounding, overflow)  # products have frac 6
    n_in, n_out, rows = 5, 4, 200
    w = rng.integers(-40, 41, size=(n_in, n_out))
    x = rng.integers(-40, 41, size=(rows, n_in))
    x[:, 0] = 40  # the first product alone leaves the range for |w| > a few
    x[::3, n_in // 2] = -40
    b = cast(rng.integers(-200, 200, size=n_out), acc_t.frac, acc_t)  # (accum_t) bias
    out, ideal = dense_products(x, w, b, 6, acc_t, ideal=True)
    exp, exp_ideal = literal(x, w, b, 6, acc_t)
    assert_array_equal(out, exp)
    assert_array_equal(ideal, exp_ideal)
    assert np.any(out != ideal)  # the range was left


@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
@pytest.mark.parametrize("signed", [True, False])
def test_the_32_bit_accumulator_cap(overflow, signed):
    """A 32-bit accumulator (qlstm's widest) whose sums cross 2**31 (and 2**32 unsigned) many times."""
    acc_t = FixedType(32, 4, signed, "AP_RND_INF", overflow)  # frac 28; products frac 30: rounded
    rng = np.random.default_rng(1 + signed)
    n_in = 64
    x = rng.integers(-(2**15) if signed else 0, 2**15, size=(30, n_in))
    w = rng.integers(-(2**15), 2**15, size=(n_in, 3))
    x[0], w[:, 0] = 2**15 - 1, 2**15 - 1  # every product at the top: the sum wraps or saturates
    b = np.array([acc_t.max_int, acc_t.min_int, 0], dtype=np.int64)
    out, ideal = dense_products(x, w, b, 30, acc_t, ideal=True)
    exp, exp_ideal = literal(x, w, b, 30, acc_t)
    assert_array_equal(out, exp)
    assert_array_equal(ideal, exp_ideal)
    assert out.min() >= acc_t.min_int and out.max() <= acc_t.max_int
    assert np.any(np.abs(ideal) > 2**32)  # far outside the accumulator: the cap was exercised


_CACHE_PROBE = """
import numpy as np
from qlstm.firmware_sim.jit import dense_products, int_matmul
from qlstm.fixedpoint import FixedType
x = np.arange(-6, 6, dtype=np.int64).reshape(3, 4)
w = np.arange(8, dtype=np.int64).reshape(4, 2)
out, idl = dense_products(x, w, np.zeros(2, np.int64), 4, FixedType(8, 4, True, "AP_RND", "AP_SAT"), ideal=True)
print("RESULT", out.tolist(), idl.tolist(), int_matmul(x, w).tolist())
"""


@pytest.mark.slow
def test_dense_kernels_are_cached_across_processes(tmp_path):
    """Issue #15: the dense loop was a closure over the modes (``cache=False``) and compiled again
    in every process (0.9 s per ``qlstm predict``). With an empty ``$NUMBA_CACHE_DIR`` the first
    process saves ``dense_loop`` and ``int_matmul``; a second one loads both and compiles neither."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), NUMBA_DEBUG_CACHE="1")

    def run():
        p = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True, check=True
        )
        return p.stdout

    first, second = run(), run()
    for name in ("dense_loop", "int_matmul"):
        assert "data saved to" in first and f"_compiled.{name}-" in first, first
        loaded = [ln for ln in second.splitlines() if "data loaded from" in ln and f"_compiled.{name}-" in ln]
        assert loaded, second
    assert "data saved to" not in second, second
    result = [ln for ln in first.splitlines() if ln.startswith("RESULT")]
    assert result == [ln for ln in second.splitlines() if ln.startswith("RESULT")] and result


@pytest.mark.parametrize("enabled", [True, False])
def test_compiled_module_restores_the_collector(enabled):
    """``jit.compiled_module`` (numba's first import, with the cyclic collector paused and the
    objects frozen afterwards) leaves the collector as it found it, freezes, and returns the one
    module on later calls (a fresh interpreter: numba is not imported yet)."""
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        f"{'' if enabled else 'gc.disable()'}\n"
        "from qlstm.firmware_sim.jit import compiled_module\n"
        "assert 'numba' not in sys.modules\n"
        "m = compiled_module()\n"
        f"assert gc.isenabled() is {enabled}\n"
        "assert gc.get_freeze_count() > 0 and compiled_module() is m\n"
        "import qlstm.firmware_sim._compiled as c\n"
        "assert c is m\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compiled_module_from_several_threads():
    """Threads asking for the compiled module at once all get the whole module (the first
    `qlstm predict` with two threads on hls4ml's default types got a half-imported one)."""
    import subprocess
    import sys

    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from qlstm.firmware_sim.jit import compiled_module\n"
        "with ThreadPoolExecutor(8) as pool:\n"  # each thread reads a kernel at once
        "    loops = list(pool.map(lambda _: compiled_module().dense_loop, range(8)))\n"
        "assert all(f is loops[0] for f in loops)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
