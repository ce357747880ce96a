"""qlstm.export: float ONNX vs PyTorch, QONNX vs the firmware backend and the oracle, recurrence,
metadata, CLI.

References: the float model is qlstm.train.model (PyTorch, float64); the quantized model is the
``firmware`` backend (qlstm.firmware_sim, the bit-exact simulation of the hls4ml C++) and the
independent int64 oracle of tests/oracle_firmware.py.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from oracle_firmware import reference

from qlstm import description as desc_io
from qlstm.cli import main
from qlstm.description import Normalisation
from qlstm.errors import QlstmError
from qlstm.export import backend
from qlstm.export.api import export, run_session, session
from qlstm.export.graph import IR_VERSION
from qlstm.export.lower import lower_quant
from qlstm.firmware_sim import backend as firmware
from qlstm.testing import random_model, saturating_quantization
from qlstm.train.model import from_weights, predict_array

BITS = (6, 8, 16)
ARCHS = {
    "lstm": (("lstm", 8),),
    "stacked_lstm": (("lstm", 6), ("lstm", 5)),
    "gru": (("gru", 7),),
}
#: two channels with a normalisation other than [0, 1] (the export folds it into the graph)
NORM = Normalisation((-0.5, -0.5 * 2), (0.7, 0.7 * 2), ("U_res", "I"))


def make_model(arch: str, seed: int, bits: int | None = None, history: int = 12):
    """ARCHS[arch] on 2 channels, L = ``history``, k = 3, weights ~ N(0, 0.5^2); with ``bits``:
    :func:`~qlstm.testing.saturating_quantization` and the same weights on its grids."""
    cells, units = zip(*ARCHS[arch], strict=True)
    q = None if bits is None else saturating_quantization(len(cells), bits)
    return random_model(
        cells, units, channels=2, history=history, horizon=3, bits=None, quantization=q,
        init="normal", scale=0.5, seed=seed, normalisation=NORM,
    )  # fmt: skip


def torch_reference(desc, weights, x):
    """The float model (qlstm.train.model.Predictor) in float64."""
    return predict_array(from_weights(desc.architecture, weights), x)


def held_out_like(n: int, history: int, channels: int, seed: int) -> np.ndarray:
    """Windows shaped like normalised magnet voltage: slow random walks inside [0, 1]."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.03, (n, history, channels)).cumsum(axis=1)
    start = rng.uniform(0.2, 0.8, (n, 1, channels))
    return np.clip(start + steps, 0.0, 1.0)


def float_run(tmp_path, arch: str, seed: int = 3):
    d, w = make_model(arch, seed)
    run = tmp_path / f"{arch}_float"
    desc_io.save(run, d, w)
    return run, d, w


def quant_run(tmp_path, arch: str, bits: int, seed: int = 3):
    dq, wq = make_model(arch, seed, bits)
    run = tmp_path / f"{arch}_q{bits}"
    desc_io.save(run, dq, wq)
    return run, dq, wq


# ---------------------------------------------------------------------------- float ONNX
@pytest.mark.parametrize("arch", list(ARCHS), ids=list(ARCHS))
def test_float_onnx_matches_pytorch(tmp_path, arch):
    run, d, w = float_run(tmp_path, arch)
    path = export(run, "onnx")
    assert path == run / "model.onnx"
    model = onnx.load_model(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION <= 13  # onnxruntime 1.31 refuses IR 14
    x = held_out_like(300, d.architecture.history, d.architecture.input_channels, seed=11)
    y = backend.predict(run, x)
    ref = torch_reference(d, w, x)
    assert y.shape == (300, d.architecture.horizon)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)
    # dynamic batch: a single window and an odd batch give the same rows
    np.testing.assert_array_equal(backend.predict(run, x[:1]), y[:1])
    np.testing.assert_array_equal(backend.predict(run, x[:37]), y[:37])


# ---------------------------------------------------------------------------- QONNX
@pytest.mark.parametrize("bits", BITS, ids=[f"{b}bit" for b in BITS])
@pytest.mark.parametrize("arch", list(ARCHS), ids=list(ARCHS))
def test_qonnx_matches_firmware_arithmetic(tmp_path, arch, bits):
    run, dq, wq = quant_run(tmp_path, arch, bits)
    path = export(run, "qonnx")
    assert path == run / "model.qonnx.onnx"
    model = onnx.load_model(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.checker.check_model(lower_quant(model), full_check=True)
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    assert quants and all(n.domain == "qonnx.custom_op.general" for n in quants)
    x = held_out_like(400, dq.architecture.history, dq.architecture.input_channels, seed=12)
    y = backend.predict(run, x)
    lsb = dq.quantization.dense.result.lsb
    oracle = reference(dq.architecture, wq, dq.quantization, x)  # tests/oracle_firmware.py
    for name, ref in (("oracle", oracle), ("firmware", firmware.predict(run, x))):
        lsbs = np.abs(y - ref) / lsb
        print(f"{arch} {bits} bit vs {name}: exact {np.mean(lsbs == 0):.2%}, max {lsbs.max():g} LSB")
        assert lsbs.max() <= 1
        # the arithmetic allows exactness (no type overflows on these windows): demand it
        np.testing.assert_array_equal(y, ref, err_msg=name)


@pytest.mark.parametrize("arch", list(ARCHS), ids=list(ARCHS))
def test_graph_holds_the_recurrence(tmp_path, arch):
    """Fails if the recurrence is dropped (the Brevitas dynamo trap): recurrent operator or
    unrolled steps present, and the output depends on the first time step."""
    run, d, _ = float_run(tmp_path, arch)
    qrun, dq, _ = quant_run(tmp_path, arch, 8)
    layers = d.architecture.layers
    float_ops = [n.op_type for n in onnx.load_model(str(export(run, "onnx"))).graph.node]
    assert float_ops.count("LSTM") + float_ops.count("GRU") == len(layers)
    qnodes = {n.name for n in onnx.load_model(str(export(qrun, "qonnx"))).graph.node}
    for i in range(len(layers)):
        for t in range(d.architecture.history):
            assert f"rnn{i}.t{t}.h.q" in qnodes, f"layer {i} step {t} missing"
    x = held_out_like(64, d.architecture.history, d.architecture.input_channels, seed=13)
    x2 = x.copy()
    x2[:, 0, :] = 1.0 - x2[:, 0, :]
    for r in (run, qrun):
        assert np.any(backend.predict(r, x) != backend.predict(r, x2)), f"{r.name}: x[:, 0] ignored"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_qonnx_file_executes_in_qonnx(tmp_path, arch, monkeypatch):
    """qonnx's own execute_onnx gives the same numbers (types <= 24 bits). qonnx 1.0 builds its
    one-node models with onnx's default IR version 14, which onnxruntime 1.31 refuses; the
    patch below only lowers that version number."""
    import qonnx.core.onnx_exec as ox
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    make = ox.qonnx_make_model

    def make_ir(graph, **kw):
        m = make(graph, **kw)
        m.ir_version = IR_VERSION
        return m

    monkeypatch.setattr(ox, "qonnx_make_model", make_ir)
    dq, wq = make_model(arch, 5, 8, history=4)
    run = tmp_path / "q"
    desc_io.save(run, dq, wq)
    model = onnx.load_model(str(export(run, "qonnx")))
    n = 6
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = n
    x = held_out_like(n, 4, 2, seed=14)
    y = ox.execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x})["y"]
    np.testing.assert_array_equal(y, backend.predict(run, x))
    np.testing.assert_array_equal(y, firmware.predict(run, x))


@pytest.mark.slow
def test_qonnx_file_survives_qonnx_cleanup(tmp_path):
    """What FINN/qonnx users do first: cleanup (constant folding, renaming) keeps the numbers."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    dq, wq = make_model("gru", 6, 8, history=3)
    run = tmp_path / "q"
    desc_io.save(run, dq, wq)
    cleaned = cleanup_model(ModelWrapper(onnx.load_model(str(export(run, "qonnx"))))).model
    assert any(n.op_type == "Quant" for n in cleaned.graph.node)
    x = held_out_like(8, 3, 2, seed=18)
    np.testing.assert_array_equal(run_session(session(cleaned), x), firmware.predict(run, x))


# ---------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("fmt", ["onnx", "qonnx"])
def test_metadata_says_how_to_use_the_file(tmp_path, fmt):
    run, dq, wq = quant_run(tmp_path, "stacked_lstm", 8)
    meta = {
        p.key: p.value for p in onnx.load_model(str(export(run, fmt, tmp_path / f"m.{fmt}"))).metadata_props
    }
    assert meta["qlstm.history_L"] == "12" and meta["qlstm.horizon_k"] == "3"
    assert json.loads(meta["qlstm.channels"]) == ["U_res", "I"]
    assert json.loads(meta["qlstm.normalisation"]) == {"lo": [-0.5, -1.0], "hi": [0.7, 1.4]}
    assert json.loads(meta["qlstm.description"]) == json.loads(json.dumps(dq.to_dict()))
    assert meta["qlstm.version"]
    verified = json.loads(meta["qlstm.verified"])
    assert verified["ok"] is True and verified["windows"] == 256
    if fmt == "qonnx":
        assert verified["exact_fraction"] == 1.0
        types = json.loads(meta["qlstm.fixed_point_types"])
        assert types == {k: t.describe() for k, t in dq.quantization.points().items()}
        assert json.loads(meta["qlstm.float64_exact"]) is True


# ---------------------------------------------------------------------------- backend
def test_backend_reexports_stale_file_and_checks_shape(tmp_path):
    run, d, w = float_run(tmp_path, "gru")
    x = held_out_like(20, 12, 2, seed=15)
    y1 = backend.predict(run, x)  # exports model.onnx on first use
    assert (run / "model.onnx").is_file()
    w2 = {k: v * 0.5 for k, v in w.items()}
    desc_io.save(run, d, w2)
    np.testing.assert_allclose(backend.predict(run, x), torch_reference(d, w2, x), rtol=0, atol=1e-5)
    assert not np.allclose(y1, torch_reference(d, w2, x))
    with pytest.raises(QlstmError, match=r"expects \(N, 12, 2\)"):
        backend.predict(run, x[:, :5])


# ---------------------------------------------------------------------------- CLI
def test_cli_writes_file(tmp_path, capsys):
    run, _, _ = quant_run(tmp_path, "gru", 6)
    out = tmp_path / "exported.qonnx.onnx"
    assert main(["export", str(run), "--format", "qonnx", "--out", str(out), "--verify", "40"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out)
    assert printed[1].startswith("verified on 40 windows: 100.00% exact, max 0 LSB vs qlstm.firmware_sim")
    assert out.is_file()
    assert main(["export", str(run)]) == 0  # default: qonnx beside the run
    assert (run / "model.qonnx.onnx").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "qonnx"], "needs a quantized run"),
        (["--out", "{tmp}/missing/m.onnx"], "does not exist"),
        (["--out", "{tmp}"], "is a folder"),
    ],
    ids=["qonnx-of-float-run", "missing-out-dir", "out-is-dir"],
)
def test_cli_bad_input_one_line_nothing_written(tmp_path, capsys, args, message):
    run, _, _ = float_run(tmp_path, "lstm")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["export", str(run), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err and err.startswith("qlstm export: error:")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{run}", "--format", "tflite"], "--format 'tflite': choose one of onnx, qonnx"),
        (["{tmp}/nope"], "not a qlstm run folder"),
    ],
    ids=["unknown-format", "missing-run"],
)
def test_cli_rejects_unknown_format_and_missing_run(tmp_path, capsys, args, message):
    run, _, _ = float_run(tmp_path, "lstm")
    assert main(["export", *[a.format(run=run, tmp=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not list(run.glob("*.onnx"))


@pytest.mark.parametrize("arch", list(ARCHS), ids=list(ARCHS))
def test_trace_equals_firmware_trace(tmp_path, arch):
    """Every intermediate of the QONNX graph equals the firmware simulation's, name by name."""
    run, dq, _ = quant_run(tmp_path, arch, 8)
    x = held_out_like(16, dq.architecture.history, dq.architecture.input_channels, seed=16)
    ours, theirs = backend.trace(run, x), firmware.trace(run, x)
    assert set(ours) == set(theirs)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    np.testing.assert_array_equal(ours["head"], backend.predict(run, x))


def test_float_trace_and_unwritable_run_folder(tmp_path, monkeypatch, caplog):
    run, d, w = float_run(tmp_path, "stacked_lstm")
    x = held_out_like(5, 12, 2, seed=17)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(backend, "export", refuse)
    y = backend.predict(run, x)  # built in memory, nothing written
    assert "in-memory export" in caplog.text
    assert not (run / "model.onnx").exists()
    np.testing.assert_allclose(y, torch_reference(d, w, x), rtol=0, atol=1e-5)
    t = backend.trace(run, x)
    assert {k: v.shape for k, v in t.items()} == {"rnn0": (5, 12, 6), "rnn1": (5, 5), "head": (5, 3)}
    np.testing.assert_array_equal(t["head"], y)


def test_export_refuses_a_file_that_does_not_match(tmp_path, capsys):
    """A wrapping accumulator that overflows: Quant saturates, the firmware wraps; the mismatch
    is found by the verification and nothing is written."""
    from dataclasses import replace

    from qlstm.fixedpoint import FixedType

    dq, wq = make_model("lstm", 3, 8)
    q = dq.quantization
    narrow = replace(q.layers[0], accum=FixedType(8, -1))  # ap_fixed<8,-1>: |x| < 1/4, wraps
    run = tmp_path / "wraps"
    desc_io.save(run, dq.with_quantization(replace(q, layers=(narrow,))), wq)
    assert main(["export", str(run), "--format", "qonnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match its reference" in err and "AP_WRAP" in err
    assert not list(run.glob("*.onnx")) and not list(run.glob(".*tmp*"))


# ---------------------------------------------------------------------------- heads of several layers
HEADS = {
    "relu-sigmoid": ((6, "relu"), (2, "sigmoid")),
    "tanh-relu-linear": ((5, "tanh"), (3, "relu"), (2, "linear")),
}


@pytest.mark.parametrize("head", list(HEADS))
def test_head_of_several_layers_exports_and_executes(tmp_path, head):
    """Float ONNX (Gemm + Relu/Sigmoid/Tanh per layer) equals the float64 PyTorch model; the QONNX
    graph (Relu, and the sigmoid/tanh tables as Gather) equals firmware_sim exactly, tensor by
    tensor (issue #17)."""
    from qlstm.description import TableSpec
    from qlstm.fixedpoint import FixedType
    from qlstm.testing import random_model, uniform_quantization

    acts = tuple(a for _, a in HEADS[head])
    q = uniform_quantization(
        2, width=12, integer=3, rounding="AP_RND_CONV", overflow="AP_SAT", head=acts,
        act_result=FixedType(10, 2, True, "AP_RND", "AP_SAT"),
        head_table=TableSpec(512, FixedType(12, 1, True, "AP_RND_CONV", "AP_SAT")),
    )  # fmt: skip
    dq, wq = random_model(("lstm", "gru"), (4, 3), history=5, channels=2, horizon=2, quantization=q,
                          init="uniform", scale=2.5, seed=8, head=HEADS[head])  # fmt: skip
    run, frun = tmp_path / "q", tmp_path / "f"
    desc_io.save(run, dq, wq)
    desc_io.save(frun, dq.with_quantization(None), wq)
    x = np.random.default_rng(13).uniform(-2.0, 2.0, (300, 5, 2))  # wider than [0, 1]: varied outputs
    export(frun, "onnx")
    np.testing.assert_allclose(backend.predict(frun, x), torch_reference(dq, wq, x), rtol=0, atol=1e-5)
    export(run, "qonnx")
    y, ref = backend.predict(run, x), firmware.predict(run, x)
    np.testing.assert_array_equal(y, ref)
    assert len(np.unique(ref)) > 10 and np.ptp(ref) > 0.5  # not a constant comparison
    ours, theirs = backend.trace(run, x[:20]), firmware.trace(run, x[:20])
    assert set(ours) == set(theirs) and {"dense0.result", "dense0", "head"} <= set(ours)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
