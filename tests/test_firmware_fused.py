"""The compiled cell step (firmware_sim/_compiled.py) against the NumPy step, exact integer equality.

Untraced runs do each time step's elementwise work (gate sums and their casts, table lookups,
state updates and casts) in one compiled loop; traced and recorded runs use the NumPy form, which
``tests/test_firmware_kernels.py`` and ``tests/test_firmware_csim.py`` tie to the literal C++ and
the C simulation. Here the two forms are compared on every layer's whole ``h`` sequence, for every
rounding mode and every overflow mode of the accumulator and of the state, LSTM, GRU and stacked,
with inputs that saturate the input type and states that leave their range; both table-index forms
(direct table for inputs of <= 16 bits, shift-and-clamp above) and both product paths (wrapping
accumulator with exact products: fused BLAS sums; saturating or rounding accumulators: the dense
kernel) are covered, and each case checks that overflows really happened. The compiled step
runs with and without the int16 recurrent products (``Firmware.int16_products``).
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from qlstm.description import TableSpec
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedType
from qlstm.testing import random_model, uniform_quantization

CELLS = (("lstm",), ("gru",), ("gru", "lstm"))


def _sequences(fw: Firmware, x: np.ndarray, compiled: bool, int16: bool | None = None) -> list[np.ndarray]:
    """Every layer's (N, L, H) ``h`` sequence (untraced path) and the head's output mantissas;
    ``int16``: :attr:`Firmware.int16_products` (None: wherever exact on this CPU)."""
    fw.compiled = compiled
    fw.int16_products = int16
    seq = fw.input_t.to_int(x)
    out = []
    for lay in fw.layers:
        common = max(2 * lay.acc_t.frac, lay.state_t.frac + lay.acc_t.frac)
        assert fw._compiled_step(lay, common) is not None  # the compiled form exists for these types
        hs = fw._layer(lay, seq, None, None, compiled)
        out.append(hs)
        seq = hs
    out.append(fw.run(x, chunk=13).y_m)
    return out


def _model(cells, rounding: str, overflow: str, acc: FixedType, seed: int) -> Firmware:
    state = FixedType(8, 0, True, rounding, overflow)  # |c|, |h| >= 0.5 leave the state's range
    q = uniform_quantization(
        len(cells), width=8, integer=3, accum=acc, state=state, rounding=rounding, overflow=overflow,
        table=TableSpec(256, FixedType(12, 3, True, rounding, overflow)),
    )  # fmt: skip
    desc, w = random_model(
        cells, (6,) * len(cells), history=6, horizon=2, quantization=q, init="uniform", scale=4.0, seed=seed
    )
    return Firmware(desc, w)


def _check(fw: Firmware, x: np.ndarray) -> dict[str, int]:
    """The compiled step with U h as int16 products where exact (tests/test_firmware_int16.py)
    and without (float32 BLAS or int64) equal to the NumPy step; the overflow counts."""
    numpy_ = _sequences(fw, x, False)
    for int16 in (None, False):
        compiled = _sequences(fw, x, True, int16)
        for a, b in zip(compiled, numpy_, strict=True):
            assert_array_equal(a, b)
    fw.compiled, fw.int16_products = True, None
    return {k: e.count for k, e in fw.run(x, record=True).overflows.items()}


@pytest.mark.slow  # 28 modes, each compiling its dense kernels: ~3 minutes in all
@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_compiled_step_equals_numpy_every_mode(rounding, overflow):
    """Narrow accumulator (products rounded one by one, 10-bit: direct tables) and a wide one
    (exact products, 24-bit: shift-and-clamp index; wrapping: fused BLAS sums)."""
    rng = np.random.default_rng(ROUNDING_MODES.index(rounding) * 4 + OVERFLOW_MODES.index(overflow))
    x = rng.uniform(-20.0, 20.0, size=(50, 6, 1))  # ap_fixed<8,3> holds [-4, 4): inputs saturate/wrap
    for k, cells in enumerate(CELLS):
        for acc in (FixedType(10, 5, True, rounding, overflow), FixedType(24, 8, True, rounding, overflow)):
            counts = _check(_model(cells, rounding, overflow, acc, seed=k), x)
            assert counts["input"] > 0
            assert counts["rnn0.h"] + counts.get("rnn0.c", 0) > 0  # the state casts overflowed
            if acc.width == 10:
                assert counts["rnn0.preact"] > 0  # the gate sums overflowed


@pytest.mark.parametrize("cells", CELLS, ids=["lstm", "gru", "gru-lstm"])
def test_compiled_step_float32_and_int64_products(cells):
    """The default 16-bit model with exact accumulators: U h as a float32 BLAS product while its
    bound allows, int64 beyond (large weights); both equal the NumPy step; chunks and threads too."""
    x = np.random.default_rng(3).uniform(-1.0, 2.0, size=(70, 8, 1))
    for scale in (0.5, 30.0):
        desc, w = random_model(
            cells, (9,) * len(cells), history=8, horizon=3,
            quantization=uniform_quantization(len(cells)), init="uniform", scale=scale, seed=4,
        )  # fmt: skip
        fw = Firmware(desc, w)
        _check(fw, x)
        fw.compiled = None  # automatic: numba is loaded here, so the compiled step
        y = fw.run(x).y_m
        assert_array_equal(fw.run(x, chunk=16, threads=2).y_m, y)
        assert_array_equal(fw.run(x, trace=True).y_m, y)


def test_f32_bound_edges():
    """``_f32_exact``: max |h| * colsum below 2**24, or the Cauchy-Schwarz bound
    ``sum h**2 * max column sum w**2 < 2**48``; both exact at their edges, and a product of
    2**24 + 1 (not a float32) refused. Each accepted case is checked against int64."""
    from qlstm.firmware_sim.simulate import _colsq, _f32_exact

    def bounds(h: np.ndarray, w: np.ndarray) -> tuple[int, int, int, int]:
        colsum = int(np.abs(w).sum(axis=0).max())
        return int(np.abs(h).max()), int((h * h).sum(axis=1).max()), colsum, _colsq(w)

    def f32_equals_int64(h: np.ndarray, w: np.ndarray) -> bool:
        return np.array_equal((h.astype(np.float32) @ w.astype(np.float32)).astype(np.int64), h @ w)

    # sum_i |h_i w_i| = 15 * 273 * 4097 = 2**24 - 1: the largest exact sum, accepted by max|h|
    h, w = np.full((3, 15), 273, dtype=np.int64), np.full((15, 2), 4097, dtype=np.int64)
    hmax, ss, colsum, colsq = bounds(h, w)
    assert hmax * colsum == (1 << 24) - 1 and _f32_exact(hmax, ss, 15, colsum, colsq)
    assert f32_equals_int64(h, w)
    # one more unit: 2**24 + 1 products of odd sums are not float32 numbers; both bounds refuse
    h2, w2 = np.full((3, 1), (1 << 24) + 1, dtype=np.int64), np.ones((1, 2), dtype=np.int64)
    assert not _f32_exact(*bounds(h2, w2)[:2], 1, *bounds(h2, w2)[2:])
    assert not f32_equals_int64(h2, w2)
    # one large entry of h: max |h| * colsum = 1023 * 128 * 256 > 2**24, Cauchy-Schwarz accepts
    h3 = np.ones((4, 128), dtype=np.int64)
    h3[:, 5] = -1023
    w3 = np.full((128, 8), 256, dtype=np.int64)
    w3[::2] *= -1
    hmax, ss, colsum, colsq = bounds(h3, w3)
    assert hmax * colsum >= 1 << 24 and ss * colsq < 1 << 48
    assert _f32_exact(hmax, ss, 128, colsum, colsq) and f32_equals_int64(h3, w3)
    # Cauchy-Schwarz is tight for equal entries: sqrt(ss * colsq) = 2**24 exactly is refused
    h4, w4 = np.full((1, 64), 1 << 10, dtype=np.int64), np.full((64, 1), 1 << 8, dtype=np.int64)
    hmax, ss, colsum, colsq = bounds(h4, w4)
    assert ss * colsq == 1 << 48 and not _f32_exact(hmax, ss, 64, colsum, colsq)
    # a weight of 2**24 or more disables the second bound; a row sum of squares that could have
    # wrapped int64 is not trusted
    assert _colsq(np.array([[1 << 24]])) == 0
    assert not _f32_exact(1 << 23, 0, 1 << 17, 4, 1)


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_compiled_step_cauchy_schwarz_and_input_products(channels, monkeypatch):
    """A model whose U h passes float32 BLAS in some steps only through the Cauchy-Schwarz bound
    (max |h| * colsum >= 2**24) and is refused in others, with the input products formed inside the compiled
    step (1 and 3 channels) or read from BLAS (5 > INKERNEL_MAX_INPUTS): equal to the NumPy step."""
    from qlstm.firmware_sim import simulate

    assert 3 <= simulate.INKERNEL_MAX_INPUTS < 5
    seen = []
    real = simulate._f32_exact

    def spy(hmax, ssmax, units, colsum, colsq):
        ok = real(hmax, ssmax, units, colsum, colsq)
        seen.append((hmax * colsum >= 1 << 24, ok))
        return ok

    monkeypatch.setattr(simulate, "_f32_exact", spy)
    x = np.random.default_rng(5).uniform(-1.0, 2.0, size=(60, 8, channels))
    desc, w = random_model(
        ("lstm",), (64,), history=8, channels=channels, horizon=2, quantization=uniform_quantization(1),
        init="uniform", scale=1.0, seed=6,
    )  # fmt: skip
    _check(Firmware(desc, w), x)
    # steps through BLAS by the first bound, by the second only, and refused (exact int64 sums)
    assert {(False, True), (True, True), (True, False)} <= set(seen)


@pytest.mark.parametrize("rounding", ["AP_TRN", "AP_RND_CONV"])  # int32 state update, or int64
@pytest.mark.parametrize("width", [6, 8])  # accumulators of 13 and 17 bits: direct and shift-and-clamp tables
def test_numpy_float32_gate_sums(width, rounding):
    """The untraced NumPy LSTM step with float32 gate sums (taken when no input and state of their
    types can bring them to 2**24 or out of accum_t: one product [h, x_t, 1] @ [U; W; b] per step,
    one gather for the four gates, an int32 state update with truncating casts) equals the traced
    int64 step on every layer's whole h sequence, on inputs that saturate the input type and
    states that wrap; stacked layers too. A model with larger sums does not take it."""
    x = np.random.default_rng(7).uniform(-9.0, 9.0, size=(300, 10, 2))
    q = uniform_quantization(2, width=width, integer=3, rounding=rounding)
    desc, w = random_model(
        ("lstm", "lstm"), (12, 7), history=10, channels=2, horizon=3, quantization=q, seed=8
    )
    fw = Firmware(desc, w)
    fw.compiled = False
    assert all(lay.float32_sums and lay.gate_lookup is not None for lay in fw.layers)
    assert fw.layers[0].sigmoid.direct is not None if width == 6 else fw.layers[0].sigmoid.shift is not None
    int32 = rounding == "AP_TRN"
    assert all((lay.gate_lookup[2].dtype == np.int32) == int32 for lay in fw.layers)  # type: ignore[index]
    traced = fw.run(x, trace=True)
    seq = fw.input_t.to_int(x)
    for lay in fw.layers:  # every layer's h sequence (the last: its final h), untraced vs traced
        hs = fw._layer(lay, seq, None, None, False)
        want = traced.mantissas[f"{lay.name}.h"]
        assert_array_equal(hs, want if lay.return_sequences else want[:, -1])
        seq = hs
    y = fw.run(x, chunk=64).y_m
    assert_array_equal(y, traced.y_m)
    for lay in fw.layers:  # without the one gate table (generic index, or too large): per-gate lookups
        lay.__dict__["gate_lookup"] = None  # functools.cached_property's slot
    assert_array_equal(fw.run(x, chunk=64).y_m, traced.y_m)
    counts = {k: e.count for k, e in fw.run(x, record=True).overflows.items()}
    assert counts["input"] > 0 and counts["rnn0.c"] > 0  # inputs and cell states wrapped
    desc16, w16 = random_model(
        ("lstm",), (32,), quantization=uniform_quantization(1), init="uniform", scale=0.5, seed=9
    )  # 16 bits, 30-bit accumulator
    assert not Firmware(desc16, w16).layers[0].float32_sums


@pytest.mark.parametrize("coherent", [False, True])  # random signs / all weights >= 0: sums that wrap
def test_numpy_float32_gate_sums_that_wrap(coherent):
    """The README flow's PTQ-8 types (qlstm.testing.README_PTQ8_TYPES: AP_RND_CONV/AP_SAT input,
    weights and state, a truncating wrapping accumulator ap_fixed<21,5> holding every product):
    the float32 gate sums can leave accum_t (bound > 2**20), so each step checks their range and
    wraps a step that left it exactly. Untraced NumPy step equal to the traced int64 step on
    every layer's h sequence and the outputs, stacked, with sums that wrap (all weights of the
    first layer >= 0) and sums that stay in range; the compiled step equal too."""
    from qlstm.testing import non_negative_layer, readme_ptq8_quantization

    desc, w = random_model(
        ("lstm", "lstm"), (16, 3), history=12, channels=1, horizon=4,
        quantization=readme_ptq8_quantization(2), init="uniform", scale=8.0, seed=4,
    )  # fmt: skip
    if coherent:  # every product of a gate the same sign: |W x + U h + b| up to 21 > 16
        w = non_negative_layer(desc, w)
    fw = Firmware(desc, w)
    lay0 = fw.layers[0]
    assert lay0.float32_sums and lay0.float32_may_wrap and lay0.gate_lookup is not None
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.uniform(-3.0, 3.0, size=(200, 12, 1)), rng.uniform(0.0, 0.02, size=(200, 12, 1))])
    traced = fw.run(x, trace=True)
    fw.compiled = False
    seq = fw.input_t.to_int(x)
    for lay in fw.layers:
        hs = fw._layer(lay, seq, None, None, False)
        want = traced.mantissas[f"{lay.name}.h"]
        assert_array_equal(hs, want if lay.return_sequences else want[:, -1])
        seq = hs
    assert_array_equal(fw.run(x, chunk=50).y_m, traced.y_m)
    # gate sums x_acc + h_acc (each on accum_t) that left accum_t (wrapped steps): with the
    # coherent weights only; the other case runs every step on the one gate table
    a = lay0.acc_t
    total = traced.mantissas["rnn0.x_acc"] + traced.mantissas["rnn0.h_acc"]
    out = (total < a.min_int) | (total > a.max_int)
    assert out.any() == coherent
    lay0.__dict__["gate_lookup"] = None  # without the one gate table: per-gate lookups, unscaled sums
    assert_array_equal(fw.run(x, chunk=50).y_m, traced.y_m)
    fw.compiled = True
    assert_array_equal(fw.run(x, chunk=50).y_m, traced.y_m)  # the compiled step too


@pytest.mark.parametrize("width", [6, 8, "ptq8"])
def test_gate_lookup_every_sum(width):
    """``_Layer.gate_lookup`` (one table for the four LSTM gates, read at ``trunc(pre * scale) +
    offset``) equals the sigmoid / tanh lookup of every gate sum the layer can form in range (all
    of ``-neg <= pre <= pos``: the float32 bound, clipped to accum_t's range for the README flow's
    PTQ-8 types, whose bound exceeds it; in float32 as the step computes it); the int32 direct
    ``tanh(c)`` table equals the int64 one on every state."""
    from qlstm.testing import readme_ptq8_quantization

    q = readme_ptq8_quantization() if width == "ptq8" else uniform_quantization(1, width=width, integer=3)
    desc, w = random_model(("lstm",), (16 if width == "ptq8" else 5,), history=4, quantization=q, seed=1)
    lay = Firmware(desc, w).layers[0]
    reach, rng = lay._f32_reach(), lay._lut_range()
    assert reach is not None and rng is not None and lay.gate_lookup is not None
    assert lay.float32_may_wrap == (width == "ptq8")
    if width == "ptq8":  # clipped at accum_t's limits: -2**20 and 2**20 - 1
        assert reach > 1 << 20 and rng == (1 << 20, (1 << 20) - 1)
    scale, offset, table = lay.gate_lookup
    m = np.arange(-rng[0], rng[1] + 1, dtype=np.int64)
    pre = m.astype(np.float32)
    assert np.array_equal(pre.astype(np.int64), m)  # below 2**24: exact
    for col, act in ((0, lay.sigmoid), (3 * lay.units, lay.tanh)):
        idx = (pre * scale[col]).astype(np.int32) + offset[col]
        assert_array_equal(table[idx], act(m))
    ts = lay.tanh_state
    c = np.arange(ts.in_t.min_int, ts.in_t.max_int + 1, dtype=np.int64)
    assert ts.direct32 is not None
    assert_array_equal(ts(c.astype(np.int32)), ts(c))


@pytest.mark.parametrize(
    "dst",
    [
        FixedType(8, 3, True, "AP_TRN", "AP_WRAP"),
        FixedType(8, 3, True, "AP_TRN", "AP_SAT"),
        FixedType(12, 2, False, "AP_TRN", "AP_SAT_ZERO"),
        FixedType(32, 12, False, "AP_TRN", "AP_WRAP"),  # unsigned 32 bits: not int32, int64 result
        FixedType(8, 3, True, "AP_RND", "AP_WRAP"),  # rounding: the int64 form
    ],
)
def test_fast_cast_int32(dst):
    """``kernels.fast_cast`` on int32 mantissas (the int32 LSTM update) equals ``cast`` on int64,
    in range and overflowing, and keeps int32 only where the result type fits it."""
    from qlstm.firmware_sim.kernels import fast_cast
    from qlstm.fixedpoint import cast

    m = np.random.default_rng(5).integers(-(1 << 30), 1 << 30, size=4000).astype(np.int32)
    m[:3] = (-(1 << 31), (1 << 31) - 1, 0)
    frac = dst.frac + 20
    for part in (m, m >> 16):  # overflowing, and (for the narrow types) partly in range
        got = fast_cast(part, frac, dst)
        assert_array_equal(got, cast(part.astype(np.int64), frac, dst))
        assert got.dtype == (np.int32 if dst.rounding == "AP_TRN" and dst.width < 32 else np.int64)


@pytest.mark.parametrize("state_overflow", ["AP_WRAP", "AP_SAT"])
@pytest.mark.parametrize(("acc_width", "acc_overflow"), [(20, "AP_WRAP"), (22, "AP_WRAP"), (20, "AP_SAT")])
def test_compiled_step_one_channel_edges(acc_width, acc_overflow, state_overflow, monkeypatch):
    """The compiled LSTM step's one-input-channel loops (gate sum, wrapping cast and the
    shift-and-clamp index of both gate tables in one vectorised loop, the loads in another; the
    state update with its ``tanh(c)`` indices apart from their loads) equal the NumPy step and the
    traced step: gate sums that clamp the index at 0 and at the top of both tables, that wrap the
    accumulator (shift 0 and 2 onto its grid) or saturate it (the generic loops), cell states at
    both ends of their type, 13 units (vector remainders)."""
    from qlstm.firmware_sim import _compiled

    rows = []
    real = _compiled.lstm_step

    def spy(xa, xw, *rest):
        rows.append(xw.shape[0])
        return real(xa, xw, *rest)

    monkeypatch.setattr(_compiled, "lstm_step", spy)
    acc = FixedType(acc_width, 6, True, "AP_TRN", acc_overflow)  # >= 14 fractional bits: products exact
    state = FixedType(8, 1, True, "AP_TRN", state_overflow)  # |c| >= 1 leaves it
    q = uniform_quantization(1, width=12, integer=5, accum=acc, state=state)  # weights up to 16
    desc, w = random_model(
        ("lstm",), (13,), history=7, channels=1, horizon=1, quantization=q, init="uniform", scale=6.0, seed=11
    )
    fw = Firmware(desc, w)
    lay = fw.layers[0]
    assert lay.sigmoid.shift > 0 and lay.tanh.shift > 0 and lay.tanh_state.direct is not None
    x = np.random.default_rng(12).uniform(-20.0, 20.0, size=(90, 7, 1))
    _check(fw, x)  # compiled vs NumPy step, every layer's h sequence and the outputs
    assert rows and set(rows) == ({1} if acc_overflow == "AP_WRAP" else {0})  # the loop under test
    fw.compiled = True
    traced = fw.run(x, trace=True)
    assert_array_equal(fw.run(x, chunk=32).y_m, traced.y_m)
    pre, hsz = traced.mantissas["rnn0.preact"], lay.units  # PyTorch order: i, f, g, o
    for act, cols in (
        (lay.sigmoid, np.r_[0 : 2 * hsz, 3 * hsz : 4 * hsz]),
        (lay.tanh, np.r_[2 * hsz : 3 * hsz]),
    ):
        m = pre[:, :, cols]
        idx = np.trunc(m / 2.0**act.shift).astype(np.int64) + act.half  # before the clamps
        assert (idx < 0).any() and (idx > act.spec.size - 1).any()  # both ends of the table
    counts = {k: e.count for k, e in fw.run(x, record=True).overflows.items()}
    assert counts["rnn0.preact"] > 0 and counts["rnn0.c"] > 0  # gate sums and states overflowed
    c = traced.mantissas["rnn0.c"]
    if state_overflow == "AP_SAT":
        assert c.min() == state.min_int and c.max() == state.max_int
