"""Bit-exactness: the firmware simulator against the compiled hls4ml C simulation (the oracle).

Every comparison is exact equality of integer mantissas: outputs, and every layer output that
hls4ml's trace() returns. Models cover single and stacked LSTM/GRU, widths 6 to 16, every
rounding and overflow mode, narrow accumulators (products rounded one by one), inputs that drive
accumulators and states into overflow and saturation, a small trained model and random
precisions (Hypothesis). Each model is compiled once per session (cached by content hash in a
temporary QLSTM_CACHE).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from qlstm.description import (
    Architecture,
    DenseQuant,
    ModelDescription,
    Normalisation,
    Quantization,
    RecurrentLayer,
    RecurrentQuant,
    TableSpec,
    save,
)
from qlstm.firmware_sim import backend
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedType
from qlstm.testing import non_negative_layer, random_model, readme_ptq8_quantization, uniform_quantization

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("g++") is None, reason="the C simulation needs g++"),
    pytest.mark.usefixtures("module_csim_cache"),  # a private compile cache (conftest)
]


_COMPILED: dict[str, tuple] = {}


def compiled(name: str, desc: ModelDescription, weights: dict[str, np.ndarray]):
    """(Firmware, CSim) of a model, compiled once per module."""
    from qlstm.hls.csim import build_csim

    if name not in _COMPILED:
        _COMPILED[name] = (Firmware(desc, weights), build_csim(desc, weights), weights)
    return _COMPILED[name][:2]


def assert_bit_exact(fw: Firmware, cs, x: np.ndarray, trace_rows: int = 40) -> None:
    """Outputs (fast and traced paths) and every traced layer equal as integer mantissas."""
    res_t = fw.result_t
    yc = cs.predict(x)
    yc_m = res_t.to_int(yc)
    assert_array_equal(res_t.to_float(yc_m), yc)  # the C simulation's outputs lie on the grid
    assert_array_equal(fw.run(x, chunk=64).y_m, yc_m)
    xs = x[:trace_rows]
    tc = cs.trace(xs)
    run = fw.run(xs, trace=True, record=True)
    assert_array_equal(run.y_m, yc_m[:trace_rows])
    for name, values in tc.items():
        t = run.types[name]
        assert_array_equal(run.mantissas[name], t.to_int(values), err_msg=f"traced layer {name}")


def _inputs(seed: int, n: int, shape: tuple[int, int], lo: float, hi: float) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, *shape))


# ---------------------------------------------------------------- fixed models
def _q(width, integer, rounding, overflow, n_layers, accum=None, state=None, table=None, **head):
    return uniform_quantization(
        n_layers, width=width, integer=integer, rounding=rounding, overflow=overflow,
        accum=accum, state=state, table=table, **head,
    )  # fmt: skip


MODELS = {
    # 16 bits everywhere, an accumulator that holds every product exactly (fast path)
    "lstm16": dict(cells=("lstm",), units=(8,), q=_q(16, 6, "AP_TRN", "AP_WRAP", 1), scale=1.0),
    "gru16": dict(cells=("gru",), units=(6,), q=_q(16, 6, "AP_RND_CONV", "AP_SAT", 1), scale=1.0),
    # narrow saturating accumulator: every product rounded, partial sums saturate
    "gru10-sat-narrow": dict(
        cells=("gru",), units=(6,),
        q=_q(10, 3, "AP_RND", "AP_SAT", 1, accum=FixedType(12, 5, True, "AP_RND", "AP_SAT"),
             table=TableSpec(256, FixedType(10, 2, True, "AP_RND", "AP_SAT"))),
        scale=3.0,
    ),
    # stacked, mixed modes: symmetric / zeroing saturation, unsigned table type
    "stack12-mixed": dict(
        cells=("lstm", "gru", "lstm"), units=(4, 5, 3),
        q=_q(12, 4, "AP_RND_ZERO", "AP_SAT_SYM", 3,
             accum=FixedType(14, 5, True, "AP_RND_INF", "AP_SAT_ZERO"),
             state=FixedType(10, 3, True, "AP_RND_MIN_INF", "AP_SAT_SYM"),
             table=TableSpec(128, FixedType(10, 1, False, "AP_RND_CONV", "AP_SAT"))),
        scale=6.0,
    ),
    # 6-bit wrapping everything: overflow everywhere
    "stack6-wrap": dict(
        cells=("gru", "lstm"), units=(4, 4),
        q=_q(6, 2, "AP_TRN", "AP_WRAP", 2, accum=FixedType(8, 3), table=TableSpec(64, FixedType(6, 1))),
        scale=3.0,
    ),
    # heads of several Dense layers with activations (issue #17): relu and the sigmoid table,
    # an activation type with fewer fraction bits than the Dense result (rounds, saturates)
    "head-relu-sigmoid": dict(
        cells=("lstm",), units=(6,), head=((8, "relu"), (2, "sigmoid")),
        q=_q(12, 4, "AP_RND_CONV", "AP_SAT", 1, head=("relu", "sigmoid"),
             act_result=FixedType(9, 3, True, "AP_RND", "AP_SAT"),
             head_table=TableSpec(512, FixedType(10, 1, False, "AP_RND_CONV", "AP_SAT"))),
        scale=2.0,
    ),
    # stacked cells, tanh table then relu then a linear output, wrapping types
    "head-tanh-relu-stack": dict(
        cells=("gru", "lstm"), units=(5, 4), head=((7, "tanh"), (3, "relu"), (2, "linear")),
        q=_q(10, 3, "AP_TRN", "AP_WRAP", 2, accum=FixedType(12, 5), table=TableSpec(256, FixedType(10, 2)),
             head=("tanh", "relu", "linear"), act_result=FixedType(8, 2, True, "AP_RND_CONV", "AP_WRAP")),
        scale=3.0,
    ),
    # the README flow's PTQ-8 types (qlstm.testing.README_PTQ8_TYPES), stacked: input wider than
    # the state, AP_RND_CONV/AP_SAT casts, a wrapping accumulator whose float32 gate sums can
    # leave it (the NumPy step's wrapped steps, issue #15)
    "ptq8-readme": dict(cells=("lstm", "lstm"), units=(6, 5), q=readme_ptq8_quantization(2), scale=6.0),
    # hls4ml's default types (ap_fixed<16,6> everywhere, table ap_fixed<18,8>): every product rounded
    "gru16-hls4ml-default": dict(
        cells=("gru",), units=(6,), q=_q(16, 6, "AP_TRN", "AP_WRAP", 1, accum=FixedType(16, 6)), scale=2.0
    ),
}  # fmt: skip


def _model(name: str):
    m = MODELS[name]
    desc, w = random_model(
        m["cells"], m["units"], history=6, channels=2, horizon=2, quantization=m["q"],
        init="uniform", scale=m["scale"], seed=11, head=m.get("head", ()),
    )  # fmt: skip
    return compiled(name, desc, w), m["scale"]


@pytest.mark.parametrize("name", list(MODELS), ids=list(MODELS))
def test_bit_exact_on_random_models(name):
    (fw, cs), scale = _model(name)
    x = _inputs(0, 300, (6, 2), -scale, scale)
    assert_bit_exact(fw, cs, x)


@pytest.mark.parametrize("name", ["gru10-sat-narrow", "stack12-mixed", "stack6-wrap", "head-tanh-relu-stack"])
def test_overflow_and_saturation_are_exercised_and_exact(name):
    """Inputs far outside [0, 1]: accumulators and states overflow (wrap) or saturate."""
    (fw, cs), scale = _model(name)
    x = _inputs(1, 200, (6, 2), -4 * scale, 4 * scale)
    assert_bit_exact(fw, cs, x)
    hits = {k for k, e in fw.run(x, record=True).overflows.items() if e.count}
    assert "input" in hits
    assert any(k.endswith(".accum") for k in hits), hits
    assert any(k.endswith((".h", ".c", ".preact")) for k in hits), hits


def test_readme_ptq8_types_wrapped_gate_sums_exact():
    """The README flow's PTQ-8 types with the first layer's weights all >= 0 (every product of a
    gate the same sign: |W x + U h + b| up to 29 > 16): the untraced NumPy step forms the gate
    sums in float32 and wraps the steps whose sums leave accum_t (ap_fixed<21,5>) exactly; equal
    to the C simulation (the random-sign model, sums in range: test_bit_exact_on_random_models)."""
    desc, w = random_model(
        ("lstm", "lstm"), (16, 5), history=6, channels=2, horizon=2,
        quantization=readme_ptq8_quantization(2), init="uniform", scale=6.0, seed=11,
    )  # fmt: skip
    w = non_negative_layer(desc, w)
    fw, cs = compiled("ptq8-coherent", desc, w)
    assert (
        fw.layers[0].float32_sums and fw.layers[0].float32_may_wrap and fw.layers[0].gate_lookup is not None
    )
    x = _inputs(2, 300, (6, 2), -2.0, 2.0)
    assert_bit_exact(fw, cs, x)
    hits = {k for k, e in fw.run(x, record=True).overflows.items() if e.count}
    assert "rnn0.preact" in hits, hits


def test_head_activations_are_exercised_and_exact():
    """The relu clips negative Dense outputs, the sigmoid table saturates at both ends and the
    activation's narrower type rounds: all bit-exact with the C simulation (issue #17)."""
    (fw, cs), scale = _model("head-relu-sigmoid")
    x = _inputs(3, 300, (6, 2), -2 * scale, 2 * scale)
    assert_bit_exact(fw, cs, x, trace_rows=300)
    run = fw.run(x, trace=True)
    r, y = run.mantissas["dense0.result"], run.mantissas["dense0"]
    assert (r < 0).any() and (y == 0).any() and (y > 0).any()
    assert not np.array_equal(run.types["dense0.result"], run.types["dense0"])
    pre = run.values()["head.result"]
    assert pre.min() == run.types["head.result"].min_value  # the table's lower clamp is reached
    # the same model with the output layer negated reaches the table's upper end
    w = {k: (-v if k.startswith("head.") else v) for k, v in _COMPILED["head-relu-sigmoid"][2].items()}
    fw2, cs2 = compiled("head-relu-sigmoid-negated", fw.desc, w)
    assert_bit_exact(fw2, cs2, x, trace_rows=300)
    run2 = fw2.run(x, trace=True)
    assert run2.values()["head.result"].max() > 7 and run2.values()["head"].max() > 0.99


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(list(MODELS)),
    x=st.lists(st.floats(-20, 20, allow_nan=False, width=64), min_size=12, max_size=12),
    n_copies=st.integers(1, 3),
)
def test_bit_exact_on_arbitrary_inputs(name, x, n_copies):
    (fw, cs), _ = _model(name)
    xs = np.array(x, dtype=np.float64).reshape(1, 6, 2).repeat(n_copies, axis=0)
    assert_array_equal(fw.run(xs).y_m, fw.result_t.to_int(cs.predict(xs)))


def test_backend_predict_and_trace_match_the_c_simulation(tmp_path):
    (fw, cs), scale = _model("stack12-mixed")
    save(tmp_path / "qrun", fw.desc, _COMPILED["stack12-mixed"][2])
    x = _inputs(2, 50, (6, 2), -scale, scale).astype(np.float32)  # float32 windows convert exactly
    assert_array_equal(backend.predict(tmp_path / "qrun", x), cs.predict(x))
    tr = backend.trace(tmp_path / "qrun", x)
    for name, values in cs.trace(x).items():
        assert_array_equal(tr[name], values, err_msg=name)


# ---------------------------------------------------------------- a trained model
def _trained_model():
    """A tiny LSTM trained for a few hundred steps on a noisy sine, weights rounded to 12 bits."""
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t = np.arange(3000) * 0.07
    series = 0.5 + 0.4 * np.sin(t) * np.sin(0.13 * t) + 0.01 * rng.standard_normal(t.size)
    L = 8
    idx = np.arange(series.size - L - 1)
    xs = torch.tensor(np.stack([series[i : i + L] for i in idx])[:, :, None], dtype=torch.float32)
    ys = torch.tensor(series[idx + L][:, None], dtype=torch.float32)
    lstm, head = torch.nn.LSTM(1, 8, batch_first=True), torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.02)
    for _ in range(150):
        b = torch.randint(0, xs.shape[0], (64,))
        out, _ = lstm(xs[b])
        loss = torch.mean((head(out[:, -1]) - ys[b]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t12 = FixedType(12, 4, True, "AP_RND_CONV", "AP_SAT")
    lq = RecurrentQuant(
        weight=t12, recurrent_weight=t12, bias=t12, recurrent_bias=t12,
        accum=FixedType(24, 8, True, "AP_RND_CONV", "AP_SAT"), state=FixedType(12, 3, True, "AP_RND_CONV", "AP_SAT"),
        table=TableSpec(1024, FixedType(12, 2, True, "AP_RND_CONV", "AP_SAT")),
    )  # fmt: skip
    q = Quantization(input=t12, layers=(lq,), dense=DenseQuant(t12, t12, FixedType(24, 8), t12))
    sd = {k: v.detach().double().numpy() for k, v in lstm.state_dict().items()}
    w = {
        "rnn0.weight_ih": sd["weight_ih_l0"], "rnn0.weight_hh": sd["weight_hh_l0"],
        "rnn0.bias_ih": sd["bias_ih_l0"], "rnn0.bias_hh": sd["bias_hh_l0"],
        "head.weight": head.weight.detach().double().numpy(), "head.bias": head.bias.detach().double().numpy(),
    }  # fmt: skip
    w = {k: t12.quantize(v) for k, v in w.items()}
    desc = ModelDescription(
        architecture=Architecture(
            input_channels=1, history=L, horizon=1, layers=(RecurrentLayer("lstm", 8),)
        ),
        normalisation=Normalisation(lo=(0.0,), hi=(1.0,), channel_names=("U_res",)),
        quantization=q,
    )
    x = np.stack([series[i : i + L] for i in range(0, 2000, 7)])[:, :, None]
    return desc, w, x, series


def test_bit_exact_on_a_trained_model():
    desc, w, x, _ = _trained_model()
    fw, cs = compiled("trained", desc, w)
    assert_bit_exact(fw, cs, x)
    assert float(np.std(fw.predict(x))) > 0.05  # the trained model follows the signal


# ---------------------------------------------------------------- random precisions
def _random_precision_model(data) -> tuple[ModelDescription, dict[str, np.ndarray], float]:
    width = data.draw(st.integers(6, 16), label="width")
    integer = data.draw(st.integers(1, min(6, width - 2)), label="integer")
    r = data.draw(st.sampled_from(ROUNDING_MODES), label="rounding")
    o = data.draw(st.sampled_from(OVERFLOW_MODES), label="overflow")
    acc_extra = data.draw(st.integers(0, 2 * (width - integer)), label="accum extra fraction bits")
    cell = data.draw(st.sampled_from(["lstm", "gru"]), label="cell")
    acc = FixedType(min(32, width + 2 + acc_extra), integer + 2, True, r, o)
    table = TableSpec(
        data.draw(st.sampled_from([64, 256, 1024]), label="table"), FixedType(width, 2, True, r, o)
    )
    q = _q(width, integer, r, o, 1, accum=acc, table=table)
    desc, w = random_model(
        (cell,), (4,), history=5, channels=1, horizon=1, quantization=q, init="uniform", scale=2.0, seed=3
    )
    return desc, w, float(2 ** (integer - 1))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_exact_on_random_precisions(data):
    desc, w, scale = _random_precision_model(data)
    fw, cs = compiled(f"random-{desc.fingerprint()[:12]}", desc, w)
    x = _inputs(4, 150, (5, 1), -1.5 * scale, 1.5 * scale)
    assert_bit_exact(fw, cs, x)
