"""ONNX models: ``LSTM``/``GRU`` operators followed by a head of ``Gemm`` or ``MatMul`` (+ ``Add``)
layers, each optionally followed by ``Relu``, ``Sigmoid``, ``Tanh`` or ``Softmax``.

The operators' weights are read from initializers (or ``Constant`` nodes) and converted from
ONNX's layout - ``W (1, G*H, n_in)``, ``R (1, G*H, H)``, ``B (1, 2*G*H)`` = ``Wb`` then ``Rb``,
gate order LSTM i, o, f, c and GRU z, r, h - into the description's (PyTorch order). Refused with
one line: ``direction`` other than forward, non-default ``activations``, ``clip``,
``input_forget``, non-zero peepholes ``P``, ``sequence_lens``, GRU ``linear_before_reset=0``
(reset gate before the recurrent product, which hls4ml's kernels cannot compute), other
activations (LeakyRelu, Elu, HardSigmoid ...), two activations in a row, and operators outside the plumbing a recurrent model
exports with (Transpose, Squeeze, Slice, Gather, Reshape ...).

Because that plumbing may wire layers in ways qlstm does not read (another time step, reversed
inputs, a non-zero initial state computed at run time), the import is verified by execution:
onnxruntime runs the file and the imported model runs in float64 on the same seeded windows,
and the import is refused if they differ by more than float32 rounding can explain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qlstm.errors import QlstmError
from qlstm.importers.common import ONNX_TO_TORCH, Imported, permute_gates, refuse

_PLUMBING = {
    "Transpose", "Squeeze", "Unsqueeze", "Slice", "Gather", "Reshape", "Flatten", "Shape", "Concat",
    "Constant", "ConstantOfShape", "Expand", "Identity", "Cast", "Dropout", "Add",
}  # fmt: skip
_ACTIVATIONS = {
    "Relu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LeakyRelu",
    "Elu",
    "HardSigmoid",
    "Gelu",
    "Selu",
    "LogSoftmax",
}
#: ONNX operator -> head activation (qlstm.description.HEAD_ACTIVATIONS)
_HEAD_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
#: Worst-case |onnxruntime float32 - float64| accepted, relative to max(1, |y|).
VERIFY_TOLERANCE = 1e-4
VERIFY_WINDOWS = 32


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = (
            [s.decode() if isinstance(s, bytes) else s for s in v]
            if isinstance(v, list)
            else (v.decode() if isinstance(v, bytes) else v)
        )
    return out


def read(path: Path, history: int | None = None) -> Imported:
    """An ``.onnx`` file; ``history`` is needed to verify a model with an open sequence length."""
    import onnx
    from onnx import numpy_helper

    where = str(path)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, OSError
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise QlstmError(f"{where}: not a valid ONNX model ({type(exc).__name__}: {first[:160]})") from None
    g = model.graph
    const: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and "value" in _attrs(n):
            const[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
        elif n.op_type == "Identity" and n.input[0] in const:
            const[n.output[0]] = const[n.input[0]]
    inputs = [i for i in g.input if i.name not in const]
    if len(inputs) != 1:
        raise QlstmError(f"{where}: the graph has {len(inputs)} inputs; qlstm imports one (N, L, C) input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 3:
        raise QlstmError(f"{where}: input {inputs[0].name!r} has {len(dims)} dimensions; expected (N, L, C)")
    imp = Imported(fmt="onnx")
    if dims[2].dim_value <= 0:
        raise QlstmError(f"{where}: input {inputs[0].name!r} does not fix its channel count C")
    imp.input_channels = int(dims[2].dim_value)
    imp.history = int(dims[1].dim_value) if dims[1].dim_value > 0 else None
    for n in g.node:
        name, op = n.name or n.output[0], n.op_type
        if op in ("LSTM", "GRU"):
            if imp.dense:
                raise refuse(where, name, op, "a recurrent layer after a dense product is not supported")
            _recurrent(imp, n, const, where)
        elif op in ("Gemm", "MatMul"):
            if not imp.cells:
                raise refuse(where, name, op, "a dense product before the recurrent layers is not supported")
            _dense(imp, n, g, const, where)
        elif op in _ACTIVATIONS:
            if not imp.cells:
                raise refuse(where, name, op, "an activation before the recurrent layers is not supported")
            if op not in _HEAD_ACTIVATIONS:
                raise refuse(
                    where, name, op, f"not a supported head activation ({', '.join(_HEAD_ACTIVATIONS)})"
                )
            if op == "Softmax" and _attrs(n).get("axis", -1) not in (-1, 1):
                raise refuse(where, name, op, "softmax over another axis than the last is not supported")
            imp.add_activation(where, name, op, _HEAD_ACTIVATIONS[op])
        elif op not in _PLUMBING:
            raise refuse(where, name, op, "operator not supported in an imported recurrent model")
    if not imp.cells:
        raise QlstmError(f"{where}: no LSTM or GRU operator; qlstm imports recurrent models")
    if not imp.dense:
        raise QlstmError(f"{where}: no Gemm/MatMul after the recurrent layers; qlstm needs at least one")
    _verify(imp, model, inputs[0], history, where)
    return imp


def _recurrent(imp: Imported, n: Any, const: dict[str, np.ndarray], where: str) -> None:
    op, name = n.op_type, n.name or n.output[0]
    cell = op.lower()
    a = _attrs(n)
    if a.get("direction", "forward") != "forward":
        raise refuse(where, name, op, f"direction {a['direction']!r}: only forward is supported")
    if "activations" in a and [s.lower() for s in a["activations"]] != [s.lower() for s in _DEFAULT_ACTS[op]]:
        raise refuse(
            where, name, op, f"activations {a['activations']}: only the default sigmoid/tanh are supported"
        )
    if "clip" in a:
        raise refuse(where, name, op, "clip is not supported (the firmware does not clip gate inputs)")
    if a.get("input_forget", 0):
        raise refuse(where, name, op, "input_forget=1 (coupled input/forget gates) is not supported")
    if op == "GRU" and not a.get("linear_before_reset", 0):
        raise refuse(
            where,
            name,
            op,
            "linear_before_reset=0 applies the reset gate before the recurrent product; hls4ml's gru kernels and "
            "qlstm's firmware compute linear_before_reset=1 (PyTorch, Keras reset_after=True) only",
        )
    ins = list(n.input) + [""] * (8 - len(n.input))

    def c(i: int, what: str) -> np.ndarray | None:
        if not ins[i]:
            return None
        if ins[i] not in const:
            raise refuse(where, name, op, f"{what} is computed at run time; qlstm needs it as an initializer")
        return np.asarray(const[ins[i]], dtype=np.float64)

    w, r = c(1, "W"), c(2, "R")
    if w is None or r is None:
        raise refuse(where, name, op, "W and R inputs are required")
    if w.shape[0] != 1:
        raise refuse(where, name, op, f"W has {w.shape[0]} directions; only forward is supported")
    units = int(a.get("hidden_size", r.shape[-1]))
    gsz = (4 if cell == "lstm" else 3) * units
    b = c(3, "B")
    b = np.zeros((1, 2 * gsz)) if b is None else b
    if ins[4]:
        raise refuse(where, name, op, "sequence_lens is not supported (the firmware runs every step)")
    for i, what in ((5, "initial_h"), (6, "initial_c")):
        if ins[i] and ins[i] in const and np.any(const[ins[i]] != 0):
            raise refuse(where, name, op, f"{what} is not zero; the firmware starts every window at zero")
    if op == "LSTM" and ins[7]:
        p = c(7, "P")
        if p is not None and np.any(p != 0):
            raise refuse(where, name, op, "peephole connections (P) are not supported")
    if w.shape[1] != gsz or r.shape[1:] != (gsz, units) or b.shape != (1, 2 * gsz):
        raise refuse(
            where, name, op, f"W {w.shape}, R {r.shape}, B {b.shape} do not match hidden_size {units}"
        )
    perm = ONNX_TO_TORCH[cell]
    imp.add_recurrent(
        name,
        cell,
        permute_gates(w[0], cell, units, perm),
        permute_gates(r[0], cell, units, perm),
        permute_gates(b[0, :gsz], cell, units, perm),
        permute_gates(b[0, gsz:], cell, units, perm),
    )


def _dense(imp: Imported, n: Any, g: Any, const: dict[str, np.ndarray], where: str) -> None:
    """One head Dense layer from ``Gemm`` or ``MatMul`` (+ ``Add`` of a constant bias)."""
    name, op = n.name or n.output[0], n.op_type
    h = int(imp.dense[-1][1].shape[0]) if imp.dense else imp.units[-1]
    if op == "Gemm":
        a = _attrs(n)
        if a.get("transA", 0) or n.input[1] not in const:
            raise refuse(where, name, op, "expected Gemm(h, W, b) with W an initializer and transA=0")
        w = np.asarray(const[n.input[1]], dtype=np.float64)
        w = w if a.get("transB", 0) else w.T
        w = w * float(a.get("alpha", 1.0))
        bias = np.zeros(w.shape[0])
        if len(n.input) > 2 and n.input[2]:
            if n.input[2] not in const:
                raise refuse(where, name, op, "the bias C is computed at run time")
            bias = bias + float(a.get("beta", 1.0)) * np.asarray(const[n.input[2]], dtype=np.float64)
    else:
        if n.input[1] not in const:
            raise refuse(where, name, op, "expected MatMul(h, W) with W an initializer")
        w = np.asarray(const[n.input[1]], dtype=np.float64).T
        bias = np.zeros(w.shape[0])
        adds = [m for m in g.node if m.op_type == "Add" and n.output[0] in m.input]
        for m in adds:
            other = [i for i in m.input if i != n.output[0]]
            if other and other[0] in const:
                bias = bias + np.asarray(const[other[0]], dtype=np.float64).reshape(-1)
    if w.ndim != 2 or w.shape[1] != h:
        raise refuse(where, name, op, f"weight {w.shape} does not read the previous layer's {h} units")
    imp.add_dense(name, w, np.array(np.broadcast_to(bias, (w.shape[0],))))


def _verify(imp: Imported, model: Any, inp: Any, history: int | None, where: str) -> None:
    """Run the file with onnxruntime and the imported model in float64 on the same windows."""
    import onnxruntime as ort

    from qlstm.train.model import from_weights, predict_array

    arch = imp.architecture(where, history)
    batch = inp.type.tensor_type.shape.dim[0].dim_value  # 0: dynamic
    n = batch * -(-VERIFY_WINDOWS // batch) if batch > 0 else VERIFY_WINDOWS
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, size=(n, arch.history, arch.input_channels))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QlstmError(f"{where}: onnxruntime cannot load the model ({first[:200]})") from None
    elem = {1: np.float32, 11: np.float64}.get(inp.type.tensor_type.elem_type)
    if elem is None:
        raise QlstmError(f"{where}: input {inp.name!r} is not float32 or float64")
    try:
        if batch > 0:
            ys = [
                sess.run(None, {inp.name: x[s : s + batch].astype(elem)})[0] for s in range(0, len(x), batch)
            ]
            y_ref = np.concatenate(ys)
        else:
            y_ref = sess.run(None, {inp.name: x.astype(elem)})[0]
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise QlstmError(f"{where}: onnxruntime failed on (N, L, C) windows ({first[:160]})") from None
    y_ref = np.asarray(y_ref, dtype=np.float64).reshape(len(x), -1)
    y = predict_array(from_weights(arch, imp.weights), x)
    if y_ref.shape != y.shape:
        raise QlstmError(
            f"{where}: the graph returns {y_ref.shape[1:]} per window, the imported chain {y.shape[1:]}"
        )
    err = float(np.max(np.abs(y - y_ref) / np.maximum(1.0, np.abs(y_ref))))
    if err > VERIFY_TOLERANCE:
        raise QlstmError(
            f"{where}: onnxruntime and the imported LSTM/GRU -> Dense chain disagree (max relative difference "
            f"{err:.2e} on {len(x)} seeded windows): the graph wires its layers differently than qlstm reads them"
        )
    imp.notes.append(
        f"verified against onnxruntime on {len(x)} seeded windows in [-1, 1): max relative difference {err:.2e}"
    )
