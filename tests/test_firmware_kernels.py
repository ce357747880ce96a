"""The simulator's vectorised kernels against literal, loop-by-loop transcriptions of the C++
(``dense_latency``, ``lstm_static``/``gru_static``), exact equality on integer mantissas.
No compiler needed: the compiled C simulation is the oracle of test_firmware_csim.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from qlstm.description import TableSpec
from qlstm.errors import QlstmError
from qlstm.firmware_sim.kernels import Dense, exact_matmul, fast_cast
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedType, cast
from qlstm.float_reference import float_trace
from qlstm.testing import random_model, uniform_quantization


def _c(m: int, frac: int, t: FixedType) -> int:
    return int(cast(np.array([m]), frac, t)[0])


def literal_dense(x: np.ndarray, d: Dense, b_m: np.ndarray, b_t: FixedType) -> np.ndarray:
    """nnet_dense_latency.h, one scalar at a time."""
    acc_t, pfrac = d.acc_t, d.x_t.frac + d.w_t.frac
    out = np.zeros((x.shape[0], d.w.shape[1]), dtype=np.int64)
    for r in range(x.shape[0]):
        acc = [_c(int(b), b_t.frac, acc_t) for b in b_m]  # acc[iacc] = (accum_t)biases[iacc]
        for ii in range(d.w.shape[0]):
            for jj in range(d.w.shape[1]):
                p = _c(int(x[r, ii]) * int(d.w[ii, jj]), pfrac, acc_t)  # mult[index] = (accum_t)(a * w)
                acc[jj] = _c(acc[jj] + p, acc_t.frac, acc_t)  # acc[jj] += mult[index]
        out[r] = acc
    return out


types = st.builds(
    lambda w, i, r, o: FixedType(w, min(i, w), True, r, o),
    st.integers(4, 14),
    st.integers(0, 6),
    st.sampled_from(ROUNDING_MODES),
    st.sampled_from(OVERFLOW_MODES),
)


@settings(max_examples=80, deadline=None)
@given(x_t=types, w_t=types, b_t=types, acc_t=types, seed=st.integers(0, 2**16))
def test_dense_equals_literal_cpp(x_t, w_t, b_t, acc_t, seed):
    rng = np.random.default_rng(seed)
    n_in, n_out, rows = 5, 3, 6
    # symmetric ranges: AP_SAT_SYM types cannot hold their most negative bit pattern as a value
    w = w_t.to_float(rng.integers(-w_t.max_int, w_t.max_int, size=(n_in, n_out), endpoint=True))
    b = b_t.to_float(rng.integers(-b_t.max_int, b_t.max_int, size=n_out, endpoint=True))
    d = Dense.build("t", w, w_t, b, b_t, x_t, acc_t)
    x = rng.integers(x_t.min_int, x_t.max_int, size=(rows, n_in), endpoint=True)
    assert_array_equal(d(x), literal_dense(x, d, b_t.to_int(b), b_t))


@pytest.mark.parametrize("overflow", ["AP_SAT", "AP_SAT_SYM", "AP_SAT_ZERO"])
def test_saturating_accumulator_follows_cpp_order(overflow):
    """Partial sums that leave the range and come back: the order decides the result."""
    acc_t = FixedType(6, 6, True, "AP_TRN", overflow)  # [-32, 31]
    x_t = w_t = b_t = FixedType(8, 8)
    w = np.array([[30.0], [30.0], [-30.0], [-30.0]])
    d = Dense.build("t", w, w_t, np.zeros(1), b_t, x_t, acc_t)
    x = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 1, 1]])
    got = d(x)
    assert_array_equal(got, literal_dense(x, d, np.zeros(1, dtype=np.int64), b_t))
    # row 0: 30, 60 -> 31 (SAT) or 0 (SAT_ZERO), then -30 twice; the plain sum would be 0
    assert got[0, 0] == (0 if overflow == "AP_SAT_ZERO" else -29)


def test_exact_matmul_is_exact_and_modular():
    rng = np.random.default_rng(3)
    x = rng.integers(-(2**15), 2**15, size=(7, 40))
    w = rng.integers(-(2**15), 2**15, size=(40, 9))
    x[0, :5] = 0  # zero inputs are skipped
    exact = np.array([[sum(int(a) * int(b) for a, b in zip(r, c, strict=True)) for c in w.T] for r in x])
    bound = 2**15 * int(np.abs(w).sum(axis=0).max())
    assert_array_equal(exact_matmul(x, w, bound, False, "t"), exact)  # float64 BLAS
    assert_array_equal(exact_matmul(x, w, 2**60, False, "t"), exact)  # compiled int64
    small = x >> 12
    colsum = int(np.abs(w).sum(axis=0).max())
    assert_array_equal(exact_matmul(small, w, bound, False, "t", colsum), small @ w)  # float32
    # beyond int64: congruent modulo 2**64 (enough for a wrapping accumulator)
    big = x << 30
    got = exact_matmul(big, w << 2, 2**80, True, "t")
    want = [[(int(v) << 32) % 2**64 for v in row] for row in exact]
    assert [[int(v) % 2**64 for v in row] for row in got] == want


def test_exact_matmul_refuses_int64_overflow_unless_modular():
    x = np.ones((1, 2), dtype=np.int64)
    with pytest.raises(QlstmError, match="too wide"):
        exact_matmul(x, x.T, 2**63, False, "t")
    exact_matmul(x, x.T, 2**63, True, "t")


@settings(max_examples=60, deadline=None)
@given(t=types, src_frac=st.integers(0, 20), seed=st.integers(0, 2**16))
def test_fast_cast_equals_cast(t, src_frac, seed):
    m = np.random.default_rng(seed).integers(-(2**30), 2**30, size=200)
    m[:3] = [0, 2**30, -(2**30)]
    assert_array_equal(fast_cast(m, src_frac, t), cast(m, src_frac, t))
    small = m >> 24
    assert_array_equal(fast_cast(small, src_frac, t), cast(small, src_frac, t))


# ---------------------------------------------------------------- whole cells, literally
def _lut(act, m: int) -> int:
    """``(res_T) table[index(m)]`` for one value, through the reference index computation."""
    return int(act.table_out[act.index(np.array([m]))[0]])


def _literal_step(
    lay, tx: list[int], th: list[int], h: list[int], c: list[int]
) -> tuple[list[int], list[int]]:
    """One lstm_static / gru_static call, one unit at a time; tx, th in PyTorch gate order."""
    a, s, hsz = lay.acc_t, lay.state_t, lay.units
    fr = max(2 * a.frac, s.frac + a.frac)
    newh, newc = [0] * hsz, [0] * hsz
    for j in range(hsz):
        gx = [tx[k * hsz + j] for k in range(len(tx) // hsz)]
        gh = [th[k * hsz + j] for k in range(len(th) // hsz)]
        if lay.cell == "lstm":
            pre = [_c(gx[k] + gh[k], a.frac, a) for k in range(4)]
            i_, f_, gg, o_ = (
                _lut(lay.sigmoid, pre[0]),
                _lut(lay.sigmoid, pre[1]),
                _lut(lay.tanh, pre[2]),
                _lut(lay.sigmoid, pre[3]),
            )
            cs = (gg * i_ << (fr - 2 * a.frac)) + (c[j] * f_ << (fr - s.frac - a.frac))
            newc[j] = _c(cs, fr, s)
            newh[j] = _c(o_ * _lut(lay.tanh_state, newc[j]), 2 * a.frac, s)
        else:
            r = _lut(lay.sigmoid, _c(gx[0] + gh[0], a.frac, a))
            z = _lut(lay.sigmoid, _c(gx[1] + gh[1], a.frac, a))
            rh = _c(r * gh[2], 2 * a.frac, a)
            n_ = _lut(lay.tanh, _c(gx[2] + rh, a.frac, a))
            hs = (n_ * ((1 << a.frac) - z) << (fr - 2 * a.frac)) + (h[j] * z << (fr - s.frac - a.frac))
            newh[j] = _c(hs, fr, s)
    return newh, newc


def literal_network(fw: Firmware, x: np.ndarray) -> np.ndarray:
    """The stacked layers and the dense head, one window at a time."""
    q = fw.desc.quantization
    outs = []
    for xw in x:
        seq = [[int(v) for v in q.input.to_int(step)] for step in xw]
        for lay in fw.layers:
            back = np.argsort(_stored_order(lay.cell, lay.units))  # stored columns -> PyTorch order
            h, c, hseq = [0] * lay.units, [0] * lay.units, []
            for xt in seq:
                tx = [int(v) for v in lay.ih(np.array([xt]))[0][back]]
                th = [int(v) for v in lay.hh(np.array([h]))[0][back]]
                h, c = _literal_step(lay, tx, th, h, c)
                hseq.append(h)
            seq = hseq
        acc = fw.head(np.array([seq[-1]]))[0]
        outs.append(cast(acc, fw.head.acc_t.frac, q.dense.result))
    return np.array(outs)


def _stored_order(cell: str, hsz: int) -> np.ndarray:
    from qlstm.firmware_sim.simulate import _gate_order

    return _gate_order(cell, hsz)


@pytest.mark.parametrize(
    ("cells", "width", "integer", "rounding", "overflow", "scale"),
    [
        (("lstm",), 16, 6, "AP_TRN", "AP_WRAP", 1.0),
        (("gru",), 10, 3, "AP_RND", "AP_SAT", 3.0),
        (("lstm", "gru"), 6, 2, "AP_RND_CONV", "AP_WRAP", 4.0),
        (("gru", "lstm"), 8, 3, "AP_TRN_ZERO", "AP_SAT_SYM", 6.0),
    ],
    ids=["lstm16", "gru10-sat", "lstm-gru6-wrap", "gru-lstm8-satsym"],
)
def test_network_equals_literal_cpp(cells, width, integer, rounding, overflow, scale):
    acc = FixedType(width + 2, integer + 2, True, rounding, overflow)  # products rounded one by one
    q = uniform_quantization(
        len(cells), width=width, integer=integer, accum=acc, rounding=rounding, overflow=overflow,
        table=TableSpec(128, FixedType(width, 2, True, rounding, overflow)),
    )  # fmt: skip
    desc, w = random_model(
        cells, (3,) * len(cells), history=4, horizon=2, quantization=q, init="uniform", scale=scale, seed=5
    )
    fw = Firmware(desc, w)
    x = np.random.default_rng(1).uniform(-scale, scale, size=(6, 4, 1))
    expected = literal_network(fw, x)
    assert_array_equal(fw.run(x).y_m, expected)
    assert_array_equal(fw.run(x, trace=True, record=True, chunk=4).y_m, expected)


@pytest.mark.parametrize("cells", [("lstm",), ("gru", "lstm")], ids=["lstm", "gru-lstm"])
def test_fused_and_traced_paths_agree_and_traces_match_outputs(cells):
    desc, w = random_model(
        cells, (5,) * len(cells), history=5, horizon=2,
        quantization=uniform_quantization(len(cells)), init="uniform", scale=1.0, seed=2,
    )  # fmt: skip
    fw = Firmware(desc, w)
    x = np.random.default_rng(0).uniform(-2, 3, size=(40, 5, 1))
    fast = fw.run(x, chunk=16)
    run = fw.run(x, trace=True, record=True, chunk=7)
    assert_array_equal(fast.y_m, run.y_m)
    last = f"rnn{len(cells) - 1}"
    assert_array_equal(run.mantissas[last], run.mantissas[f"{last}.h"][:, -1])
    assert_array_equal(run.mantissas["head"], run.y_m)
    names = set(run.mantissas)
    assert names == set(fw.trace_names()) == set(float_trace(desc.architecture, w, x))


def test_float_reference_tracks_a_wide_firmware():
    """With 24-bit types and a big table, firmware and float64 agree to a few table steps."""
    t = FixedType(24, 8)
    q = uniform_quantization(
        1, width=24, integer=8, accum=FixedType(32, 10), table=TableSpec(4096, FixedType(24, 2))
    )
    desc, w = random_model(("lstm",), (6,), history=6, quantization=q, init="uniform", scale=0.5)
    x = np.random.default_rng(0).uniform(0, 1, size=(30, 6, 1))
    y = Firmware(desc, w).predict(x)
    ref = float_trace(desc.architecture, w, x)["head"]
    assert t.lsb < 1e-4
    assert np.max(np.abs(y - ref)) < 0.02  # tables step 16/4096 in x; tanh slope <= 1


def test_bad_inputs_are_one_line_errors():
    desc, w = random_model(("lstm",), (2,), history=3, quantization=uniform_quantization(1), init="uniform")
    fw = Firmware(desc, w)
    with pytest.raises(QlstmError, match=r"shape \(2, 4, 1\)"):
        fw.predict(np.zeros((2, 4, 1)))
    with pytest.raises(QlstmError, match="NaN"):
        fw.predict(np.full((2, 3, 1), np.nan))
    float_desc = desc.with_quantization(None)
    with pytest.raises(QlstmError, match="not quantized"):
        Firmware(float_desc, w)


def test_too_wide_types_are_refused():
    """A saturating 32-bit accumulator fed 32-bit products: partial sums need more than int64."""
    q = uniform_quantization(
        1, width=32, integer=17, accum=FixedType(32, 17, True, "AP_TRN", "AP_SAT"), overflow="AP_SAT"
    )
    desc, w = random_model(("lstm",), (4,), quantization=q, init="uniform", scale=60000.0)
    with pytest.raises(QlstmError, match="too wide"):
        Firmware(desc, w).predict(np.full((1, 8, 1), 60000.0))
