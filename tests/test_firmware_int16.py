"""The int16 recurrent products (firmware_sim/_int16.py, AVX-512 VNNI) at their edges, exact equality.

The kernel returns ``h @ U`` modulo 2**32; the compiled LSTM/GRU step uses it only where that decides
the wrapping gate-sum cast (``_int16.exact_for``). Checked here: the kernel against int64 products
reduced modulo 2**32 (full int16 range, every product ``-32768 * -32768``, pair sums of 2**31,
padding of rows, columns and odd K); the rule's edges; whole LSTM and GRU networks whose U h really
wraps a 32-bit accumulator (products on its grid and two bits below it) against the same network without
the int16 products, the NumPy step and the traced step; the fallback on a CPU without the
instruction, and the refusal when it is required there. ``tests/test_firmware_fused.py`` runs
every compiled-step case with and without the int16 products too.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from qlstm.errors import QlstmError
from qlstm.firmware_sim import _int16
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import FixedType
from qlstm.testing import random_model, uniform_quantization

needs_vnni = pytest.mark.skipif(not _int16.available(), reason="this CPU has no AVX-512 VNNI")


def _wrap32(p: np.ndarray) -> np.ndarray:
    """int64 values reduced to int32's range modulo 2**32 (two's complement)."""
    return (((p + (1 << 31)) & ((1 << 32) - 1)) - (1 << 31)).astype(np.int32)


def _product(h: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``h @ u`` through the kernel (padding as simulate does), the (rows, N) int32 part."""
    rows, cols = _int16.padded(*h.shape)
    h16 = np.zeros((rows, cols), dtype=np.int16)
    h16[: h.shape[0], : h.shape[1]] = h
    bp = _int16.pack(u)
    out = np.full((rows, bp.shape[0] * 16), 12345, dtype=np.int32)  # every entry is written
    _int16.matmul(h16, bp, out)
    assert (out[h.shape[0] :] == 0).all() and (out[:, u.shape[1] :] == 0).all()  # padding: zero products
    return out[: h.shape[0], : u.shape[1]]


@needs_vnni
@pytest.mark.parametrize(("rows", "k", "n"), [(512, 128, 512), (13, 7, 20), (1, 1, 1), (6, 130, 70)])
def test_matmul_is_the_product_modulo_2_32(rows, k, n):
    """Full int16 range with both extremes on whole rows and columns: equal to int64 mod 2**32."""
    rng = np.random.default_rng(rows + k + n)
    h = rng.integers(-32768, 32768, (rows, k), dtype=np.int64)
    u = rng.integers(-32768, 32768, (k, n), dtype=np.int64)
    h[0], u[:, 0] = -32768, -32768  # -32768 * -32768 = 2**30 in every term of out[0, 0]
    if rows > 1:
        h[1] = 32767
    exact = h @ u
    if k >= 8:  # the sums really leave int32
        assert exact.max() > (1 << 31) or exact.min() < -(1 << 31)
    assert_array_equal(_product(h, u), _wrap32(exact))


@needs_vnni
def test_matmul_extreme_sums():
    """Pair sums of 2**31 (one instruction's two products wrap int32), K * 2**30 for K = 2 .. 256
    (2**32: zero; 2**31: int32's minimum), and -32768 * 32767 sums."""
    for k in (2, 3, 4, 8, 128, 256):
        h = np.full((4, k), -32768, dtype=np.int64)
        u = np.full((k, 64), -32768, dtype=np.int64)
        u[:, 1] = 32767
        u[:, 2] = 0
        u[0, 3] = 1
        got = _product(h, u)
        assert_array_equal(got, _wrap32(h @ u))
        assert got[0, 0] == _wrap32(np.array(k << 30))
    assert _product(np.full((1, 2), -32768), np.full((2, 1), -32768))[0, 0] == -(1 << 31)  # 2**31 wrapped
    assert _product(np.full((1, 4), -32768), np.full((4, 1), -32768))[0, 0] == 0  # 2**32


def test_matmul_refuses_other_shapes():
    """Shapes the kernel would read or write out of bounds are refused before it runs."""
    bp = _int16.pack(np.ones((4, 64), dtype=np.int64))
    out = np.zeros((4, 64), dtype=np.int32)
    for h in (np.zeros((3, 4), np.int16), np.zeros((4, 6), np.int16), np.zeros((4, 4), np.int32)):
        with pytest.raises(ValueError, match="int16 matmul"):
            _int16.matmul(h, bp, out)
    with pytest.raises(ValueError, match="int16 matmul"):
        _int16.matmul(np.zeros((4, 4), np.int16), bp, np.zeros((8, 64), np.int32))


def test_pack_layout_and_range():
    """Element [jb, k, l] holds (u[2k, 16 jb + l], u[2k + 1, 16 jb + l]) as int16 pairs; entries
    outside int16 are refused."""
    u = np.arange(5 * 20, dtype=np.int64).reshape(5, 20) - 50
    bp = _int16.pack(u)
    assert bp.shape == (4, 3, 16) and bp.dtype == np.int32
    words = bp.view(np.int16).reshape(4, 3, 16, 2)
    for jb, k, lane, p in np.ndindex(words.shape):
        i, j = 2 * k + p, 16 * jb + lane
        assert words[jb, k, lane, p] == (u[i, j] if i < 5 and j < 20 else 0)
    with pytest.raises(ValueError, match="int16"):
        _int16.pack(np.array([[32768]]))
    with pytest.raises(ValueError, match="int16"):
        _int16.pack(np.array([[-32769]]))


def test_exact_for_edges():
    """16-bit mantissas of h and U, wrapping accumulators of <= 32 + shift bits, shift >= 0."""
    u = np.array([[-32768, 32767]])
    ok = _int16.exact_for
    assert ok(-32768, 32767, u, 32, "AP_WRAP", 0)
    assert ok(-32768, 32767, u, 34, "AP_WRAP", 2) and not ok(-32768, 32767, u, 35, "AP_WRAP", 2)
    assert not ok(-32768, 32767, u, 33, "AP_WRAP", 0)
    for mode in ("AP_SAT", "AP_SAT_SYM", "AP_SAT_ZERO"):  # the residue does not decide saturation
        assert not ok(-32768, 32767, u, 24, mode, 0)
    assert not ok(-32768, 32767, u, 24, "AP_WRAP", -1)  # products rounded onto the accumulator
    assert not ok(0, 65535, u, 24, "AP_WRAP", 0)  # unsigned 16-bit state
    assert not ok(-32769, 32767, u, 24, "AP_WRAP", 0)
    assert not ok(-32768, 32767, np.array([[32768]]), 24, "AP_WRAP", 0)


def _wide_model(
    weight_int: int, overflow: str = "AP_WRAP", cell: str = "lstm"
) -> tuple[Firmware, np.ndarray]:
    """LSTM(24) or GRU(24), 16-bit state ap_fixed<16,1> (|h| up to 32767 mantissas), weights ap_fixed<16, weight_int>
    near their extremes, a 32-bit accumulator ap_fixed<32,2>: U h leaves it (and int32)."""
    acc = FixedType(32, 2, True, "AP_TRN", overflow)
    state = FixedType(16, 1, True, "AP_TRN", "AP_SAT")
    q = uniform_quantization(1, width=16, integer=weight_int, accum=acc, state=state, overflow=overflow)
    desc, w = random_model(
        (cell,), (24,), history=6, channels=1, horizon=1, quantization=q, init="uniform", scale=8.0, seed=21
    )
    x = np.random.default_rng(22).uniform(-1.0, 1.0, size=(37, 6, 1))
    return Firmware(desc, w), x


@needs_vnni
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("weight_int", [1, 3])  # shift 0 (products on accum_t's grid) and 2
def test_network_with_a_wrapping_32_bit_accumulator(weight_int, cell, monkeypatch):
    """U h wraps the 32-bit accumulator: the int16 products (used: counted) give the same h
    sequences and outputs as the float/int64 products, the NumPy step and the traced run."""
    fw, x = _wide_model(weight_int, cell=cell)
    lay = fw.layers[0]
    assert lay.acc_t.width == 32 and lay.hh.shift == weight_int - 1
    calls = []
    real = _int16.matmul
    monkeypatch.setattr(_int16, "matmul", lambda *a: calls.append(1) or real(*a))
    traced = fw.run(x, trace=True)  # NumPy step, every intermediate
    seq = fw.input_t.to_int(x)
    hs = {}
    for compiled, int16 in ((True, None), (True, False), (False, None)):
        fw.compiled, fw.int16_products = compiled, int16
        before = len(calls)
        hs[compiled, int16] = fw._layer(lay, seq, None, None, compiled)
        assert (len(calls) > before) == (compiled and int16 is None)  # the int16 kernel ran, or not
        assert_array_equal(fw.run(x, chunk=8).y_m, traced.y_m)
    for v in hs.values():  # the last layer returns its final h
        assert_array_equal(v, traced.mantissas["rnn0.h"][:, -1])
    # the exact U h of the traced states leaves the accumulator's 32 bits, and (shift 0) the
    # kernel's int32 sums wrap too
    h = traced.mantissas["rnn0.h"][:, :-1].reshape(-1, lay.units)
    exact = h @ lay.hh.w
    on_grid = exact << lay.hh.shift
    assert on_grid.max() > lay.acc_t.max_int or on_grid.min() < lay.acc_t.min_int
    if lay.hh.shift == 0:
        assert exact.max() >= 1 << 31 or exact.min() < -(1 << 31)
    assert np.abs(h).max() > 1 << 14 and np.abs(lay.hh.w).max() > 32000  # h and U far into int16
    assert fw.run(x, record=True).overflows["rnn0.h_acc.accum"].count > 0


@needs_vnni
def test_saturating_accumulator_keeps_the_exact_path(monkeypatch):
    """AP_SAT: the residue modulo 2**32 does not decide the result; the int16 kernel never runs."""
    fw, x = _wide_model(1, overflow="AP_SAT")
    monkeypatch.setattr(
        _int16, "matmul", lambda *a: pytest.fail("int16 products with a saturating accumulator")
    )
    fw.compiled = True
    assert fw._int16_weights(fw.layers[0]) is None
    y = fw.run(x).y_m
    fw.compiled = False
    assert_array_equal(fw.run(x).y_m, y)


def test_fallback_without_vnni(monkeypatch):
    """On a CPU without AVX-512 VNNI (simulated here) the compiled step keeps the float32 / int64
    products, with the same outputs; requiring the int16 products there is one clear error."""
    fw, x = _wide_model(1)
    fw.compiled = False
    ref = fw.run(x).y_m
    monkeypatch.setattr(_int16, "available", lambda: False)
    monkeypatch.setattr(_int16, "matmul", lambda *a: pytest.fail("int16 products without VNNI"))
    fw.compiled = True
    assert fw._int16_weights(fw.layers[0]) is None
    assert_array_equal(fw.run(x).y_m, ref)
    fw.int16_products = True
    with pytest.raises(QlstmError, match="VNNI"):
        fw.run(x)
