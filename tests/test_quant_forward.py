"""The firmware forward of qlstm.quantize against an independent integer-mantissa reference.

The reference below re-derives hls4ml's dataflow from the templates with int64 mantissas,
``qlstm.fixedpoint.cast`` at every C++ assignment and the sequential ``acc += mult`` loop of
``nnet_dense_latency.h``; the module under test uses float64 values, matrix products and the
overflow bounds. They must agree exactly, including saturation and per-product truncation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from qlstm.description import Architecture, RecurrentLayer
from qlstm.firmware_sim import tables
from qlstm.fixedpoint import cast
from qlstm.quantize.model import QuantNet, predict_array
from qlstm.quantize.policy import QuantizeConfig, choose_types


def _dense_ref(xm, xf, wm, wt, bm, bt, acc):
    """nnet::dense_latency: mult = (accum_t)(x*w); acc = (accum_t)b; acc += mult, in ii order."""
    out = np.broadcast_to(cast(bm, bt.frac, acc), (xm.shape[0], wm.shape[0])).copy()
    for ii in range(xm.shape[1]):
        prod = cast(xm[:, ii, None] * wm[None, :, ii], xf + wt.frac, acc)
        out = cast(out + prod, acc.frac, acc)
    return out


def _act_ref(kind, m, frac, lq):
    return cast(tables.lookup(kind, m, frac, lq.table), lq.table.type.frac, lq.accum)


def _add(a, fa, b, fb):
    """Exact sum of mantissas with fa and fb fractional bits -> (sum, frac)."""
    f = max(fa, fb)
    return np.left_shift(a, f - fa) + np.left_shift(b, f - fb), f


def reference(arch, weights, q, x):
    seq, sf = q.input.to_int(x), q.input.frac
    for i, layer in enumerate(arch.layers):
        lq = q.layers[i]
        acc, st = lq.accum, lq.state
        wm = {
            k: t.to_int(weights[f"rnn{i}.{k}"])
            for k, t in (
                ("weight_ih", lq.weight),
                ("weight_hh", lq.recurrent_weight),
                ("bias_ih", lq.bias),
                ("bias_hh", lq.recurrent_bias),
            )
        }
        hdim = layer.units
        h = np.zeros((len(x), hdim), dtype=np.int64)
        c = np.zeros_like(h)
        outs = []
        for t in range(seq.shape[1]):
            t1 = _dense_ref(seq[:, t], sf, wm["weight_ih"], lq.weight, wm["bias_ih"], lq.bias, acc)
            t2 = _dense_ref(
                h, st.frac, wm["weight_hh"], lq.recurrent_weight, wm["bias_hh"], lq.recurrent_bias, acc
            )
            a = acc.frac
            if layer.cell == "lstm":
                pre = cast(t1 + t2, a, acc)
                si, sf_, so = (
                    _act_ref("sigmoid", pre[:, k * hdim : (k + 1) * hdim], a, lq) for k in (0, 1, 3)
                )
                tg = _act_ref("tanh", pre[:, 2 * hdim : 3 * hdim], a, lq)
                s, f = _add(tg * si, 2 * a, c * sf_, st.frac + a)
                c = cast(s, f, st)
                h = cast(so * _act_ref("tanh", c, st.frac, lq), a + a, st)
            else:
                rz = cast(t1[:, : 2 * hdim] + t2[:, : 2 * hdim], a, acc)
                r = _act_ref("sigmoid", rz[:, :hdim], a, lq)
                z = _act_ref("sigmoid", rz[:, hdim:], a, lq)
                rh = cast(r * t2[:, 2 * hdim :], 2 * a, acc)
                nh = _act_ref("tanh", cast(t1[:, 2 * hdim :] + rh, a, acc), a, lq)
                s, f = _add(nh * ((1 << a) - z), 2 * a, h * z, st.frac + a)
                h = cast(s, f, st)
            outs.append(h)
        seq, sf = np.stack(outs, axis=1), st.frac
    d = q.dense
    acc_m = _dense_ref(
        seq[:, -1],
        sf,
        d.weight.to_int(weights["head.weight"]),
        d.weight,
        d.bias.to_int(weights["head.bias"]),
        d.bias,
        d.accum,
    )
    return d.result.to_float(cast(acc_m, d.accum.frac, d.result))


def _model(cell, seed, layers=(5, 4), scale=0.6):
    rng = np.random.default_rng(seed)
    arch = Architecture(1, 6, 2, tuple(RecurrentLayer(cell, u) for u in layers))
    w = {k: rng.normal(0, scale, s) for k, s in arch.weight_shapes().items()}
    return arch, w, rng


CASES = [
    # (cell, bits, config overrides, s): s > 0: inputs up to s (> 1 drives values past the profile);
    # s < 0: types profiled on inputs in [0, 0.1] and weights 4x larger, inputs up to |s|, so
    # inputs, accumulators and states overflow
    ("lstm", 6, {}, 1.0),
    ("lstm", 8, {}, 3.0),
    ("lstm", 10, {}, 1.0),
    ("lstm", 12, {}, 1.0),
    ("lstm", 14, {}, 1.0),
    ("lstm", 16, {}, 2.0),
    ("gru", 6, {}, 1.0),
    ("gru", 8, {}, 3.0),
    ("gru", 12, {}, 1.0),
    ("gru", 16, {}, 2.0),
    # narrow accumulators: every product is truncated on its own, then saturating / wrapping sums
    ("lstm", 8, {"accum_bits": 9, "accum_headroom": 0, "accum_overflow": "AP_SAT"}, -3.0),
    ("lstm", 8, {"accum_bits": 9, "accum_headroom": 0, "accum_overflow": "AP_WRAP"}, -3.0),
    ("gru", 8, {"accum_bits": 10, "accum_headroom": 0, "accum_overflow": "AP_SAT_SYM"}, -3.0),
    # wide accumulators that saturate: sums exact, sequential saturation on the risky rows only
    ("lstm", 8, {"accum_headroom": 0, "accum_overflow": "AP_SAT", "accum_rounding": "AP_RND"}, -4.0),
    ("gru", 12, {"accum_headroom": 0, "accum_overflow": "AP_SAT_ZERO"}, -4.0),
    ("lstm", 10, {"state_bits": 6, "rounding": "AP_TRN", "overflow": "AP_WRAP", "table_size": 64}, -2.0),
]


@pytest.mark.parametrize(
    ("cell", "bits", "overrides", "xscale"),
    CASES,
    ids=[f"{c}-{b}b-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'policy'}-x{s:g}" for c, b, o, s in CASES],
)
def test_firmware_forward_matches_integer_reference(cell, bits, overrides, xscale):
    arch, w, rng = _model(
        cell, seed=bits, scale=0.6 if xscale > 0 else 2.4, layers=(5, 4) if xscale > 0 else (12, 6)
    )
    x_prof = rng.uniform(0, 1 if xscale > 0 else 0.1, (200, 6, 1))
    q = choose_types(arch, QuantNet(arch, w).profile(x_prof), QuantizeConfig(bits=bits, **overrides), "ptq")
    if xscale < 0:  # let the large inputs in
        q = replace(q, input=replace(q.input, integer=3))
    xscale = abs(xscale)
    qw = QuantNet(arch, w, q).quantised_weights(q)
    x = rng.uniform(-0.2, 1.0, (64, 6, 1)) * xscale
    got = predict_array(QuantNet(arch, qw, q), x)
    want = reference(arch, qw, q, x)
    np.testing.assert_array_equal(got, want)


def test_lut_activation_is_the_table_entry_not_the_function():
    """In eval the gates use hls4ml's tables: a 1-unit LSTM step computed by hand from the table."""
    arch = Architecture(1, 1, 1, (RecurrentLayer("lstm", 1),))
    w = {
        "rnn0.weight_ih": np.array([[0.5], [0.25], [1.0], [-0.75]]),
        "rnn0.weight_hh": np.zeros((4, 1)),
        "rnn0.bias_ih": np.zeros(4),
        "rnn0.bias_hh": np.zeros(4),
        "head.weight": np.array([[1.0]]),
        "head.bias": np.zeros(1),
    }
    x = np.linspace(-1, 1, 41).reshape(-1, 1, 1)
    cfg = QuantizeConfig(bits=10, table_size=64)
    q = choose_types(arch, QuantNet(arch, w).profile(x), cfg, "ptq")
    lq = q.layers[0]
    net = QuantNet(arch, w, q)
    got = predict_array(net, x)[:, 0]
    xv = q.input.quantize(x[:, 0, 0])
    sig_tab = lq.table.type.to_float(tables.table("sigmoid", lq.table))
    tanh_tab = lq.table.type.to_float(tables.table("tanh", lq.table))

    def idx(v, width):  # index = trunc(v * size / width) + size / 2, clamped
        return np.clip(np.trunc(v * 64 / width).astype(int) + 32, 0, 63)

    gates = [lq.accum.quantize(xv * g) for g in (0.5, 0.25, 1.0, -0.75)]
    i_, _, g_, o_ = (sig_tab[idx(v, 16)] for v in gates)
    g_ = tanh_tab[idx(gates[2], 8)]
    c = lq.state.quantize(g_ * i_)
    h = lq.state.quantize(o_ * tanh_tab[idx(c, 8)])
    want = q.dense.result.quantize(q.dense.accum.quantize(h))
    np.testing.assert_array_equal(got, want)
    # and a 64-entry table is visibly not the exact function
    exact_h = (1 / (1 + np.exp(0.75 * xv))) * np.tanh((1 / (1 + np.exp(-0.5 * xv))) * np.tanh(xv))
    assert np.max(np.abs(got - exact_h)) > 4 * q.dense.result.lsb


def test_float_mode_equals_the_pytorch_predictor():
    from qlstm.train.model import from_weights
    from qlstm.train.model import predict_array as float_predict

    for cell in ("lstm", "gru"):
        arch, w, rng = _model(cell, seed=3)
        x = rng.uniform(0, 1, (50, 6, 1))
        ours = predict_array(QuantNet(arch, w), x)
        theirs = float_predict(from_weights(arch, w), x.astype(np.float32))
        np.testing.assert_allclose(ours, theirs, atol=1e-6)  # theirs runs in float32


def test_qat_training_forward_equals_firmware_on_saturating_points():
    """With Brevitas quantisers at their PTQ scales, the QAT forward equals the firmware forward
    whenever nothing wraps: the same casts, tables and states (products summed exactly)."""
    from qlstm.quantize.qat import attach

    arch, w, rng = _model("lstm", seed=5, layers=(4,))
    x = rng.uniform(0, 1, (40, 6, 1))
    q = choose_types(arch, QuantNet(arch, w).profile(x), QuantizeConfig(bits=8), "qat")
    qw = QuantNet(arch, w, q).quantised_weights(q)
    fw = predict_array(QuantNet(arch, qw, q), x)
    net = QuantNet(arch, qw, q)
    attach(net, q)
    with torch.no_grad():
        qat = net.qat_forward(torch.from_numpy(x)).numpy()
    assert net.current_quantisation() == q
    # accumulators are exact at 8 bits (the policy widens them), so the two agree exactly
    np.testing.assert_array_equal(qat, fw)
