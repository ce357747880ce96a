"""The firmware forward quantize evaluates with (qlstm.firmware_sim) against an independent
integer-mantissa oracle, and QAT's torch forward against both.

The oracle (tests/oracle_firmware.py) re-derives hls4ml's dataflow from the templates with int64
mantissas, ``qlstm.fixedpoint.cast`` at every C++ assignment and the sequential ``acc += mult``
loop of ``nnet_dense_latency.h``; the simulator uses matrix products, overflow bounds and fast
paths. They must agree exactly, including saturation and per-product truncation, on the types
``qlstm quantize`` chooses.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from oracle_firmware import reference

from qlstm import hls4ml_tables as tables
from qlstm.description import Architecture, ModelDescription, Normalisation, RecurrentLayer
from qlstm.firmware_sim.simulate import Firmware
from qlstm.quantize.model import QuantNet, profile, quantized_weights
from qlstm.quantize.policy import QuantizeConfig, choose_types
from qlstm.testing import random_weights


def _firmware(arch, qw, q, x):
    """What quantize evaluates with: the bit-exact simulator (qlstm.firmware_sim)."""
    desc = ModelDescription(arch, Normalisation((0.0,), (1.0,), ("U_res",)), q)
    return Firmware(desc, qw).predict(x)


def _model(cell, seed, layers=(5, 4), scale=0.6):
    rng = np.random.default_rng(seed)
    arch = Architecture(1, 6, 2, tuple(RecurrentLayer(cell, u) for u in layers))
    w = random_weights(arch, init="normal", scale=scale, seed=rng)
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
    q = choose_types(arch, profile(arch, w, x_prof), QuantizeConfig(bits=bits, **overrides), "ptq")
    if xscale < 0:  # let the large inputs in
        q = replace(q, input=replace(q.input, integer=3))
    xscale = abs(xscale)
    qw = quantized_weights(q, w)
    x = rng.uniform(-0.2, 1.0, (64, 6, 1)) * xscale
    got = _firmware(arch, qw, q, x)
    want = reference(arch, qw, q, x)
    np.testing.assert_array_equal(got, want)


def test_lut_activation_is_the_table_entry_not_the_function():
    """The evaluated firmware's gates use hls4ml's tables: a 1-unit LSTM step computed by hand."""
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
    q = choose_types(arch, profile(arch, w, x), cfg, "ptq")
    lq = q.layers[0]
    got = _firmware(arch, quantized_weights(q, w), q, x)[:, 0]
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


def test_float_reference_equals_the_pytorch_predictor():
    """The float reference quantize profiles and scores on is the trained PyTorch network."""
    from qlstm.float_reference import float_predict
    from qlstm.train.model import from_weights
    from qlstm.train.model import predict_array as torch_predict

    for cell in ("lstm", "gru"):
        arch, w, rng = _model(cell, seed=3)
        w = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}  # as trained
        x = rng.uniform(0, 1, (50, 6, 1))
        ours = float_predict(arch, w, x, batch_size=16)
        theirs = torch_predict(from_weights(arch, w), x)  # float64
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_qat_training_forward_equals_firmware_on_saturating_points(cell):
    """With Brevitas quantizers at their PTQ scales, the QAT forward equals the firmware (the
    simulator and the oracle) whenever nothing wraps: the same casts, tables and states
    (products summed exactly)."""
    arch, w, rng = _model(cell, seed=5, layers=(4,))
    x = rng.uniform(0, 1, (40, 6, 1))
    q = choose_types(arch, profile(arch, w, x), QuantizeConfig(bits=8), "qat")
    qw = quantized_weights(q, w)
    fw = _firmware(arch, qw, q, x)
    net = QuantNet(arch, qw, q)
    with torch.no_grad():
        qat = net.eval()(torch.from_numpy(x)).numpy()
    assert net.current_quantization() == q
    # accumulators are exact at 8 bits (the policy widens them), so the two agree exactly
    np.testing.assert_array_equal(qat, fw)
    np.testing.assert_array_equal(qat, reference(arch, qw, q, x))
