"""The float model as standard ONNX: one ``LSTM``/``GRU`` operator per layer and a ``Gemm`` head.

The graph is ``x (N, L, C) -> Transpose (L, N, C) -> [LSTM|GRU] -> ... -> last Y_h (N, H)
-> Gemm [-> Relu|Sigmoid|Tanh|Softmax] -> ... -> y (N, k)`` (one ``Gemm`` per head layer), in float32 with a dynamic batch dimension. Weights come from the run
folder's ``weights.npz`` (PyTorch layout); ONNX orders the gates differently, so the blocks
are permuted here:

* LSTM: PyTorch ``i, f, g, o`` -> ONNX ``i, o, f, c``;
* GRU: PyTorch ``r, z, n`` -> ONNX ``z, r, h``, with ``linear_before_reset=1`` because PyTorch
  applies the reset gate after the recurrent product (``r * (W_hn h + b_hn)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qlstm.description import GATES, ModelDescription
from qlstm.export.graph import INPUT_NAME, OUTPUT_NAME, GraphBuilder, make_model

#: Source block (PyTorch order) of each ONNX gate block.
_ONNX_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


def _reorder(a: np.ndarray, cell: str, units: int) -> np.ndarray:
    """Permute gate blocks along axis 0 from PyTorch to ONNX order."""
    blocks = [a[k * units : (k + 1) * units] for k in range(GATES[cell])]
    return np.concatenate([blocks[k] for k in _ONNX_GATE_ORDER[cell]], axis=0)


def build(desc: ModelDescription, weights: dict[str, np.ndarray]) -> Any:
    """The float ONNX ModelProto of ``desc`` with ``weights`` (quantized runs export too:
    their on-grid weights, with float arithmetic everywhere else)."""
    from onnx import TensorProto

    g = GraphBuilder()
    a = desc.architecture
    seq = g.op("Transpose", [INPUT_NAME], "x_time_major", perm=[1, 0, 2])  # (L, N, C)
    last_h = ""
    for i, layer in enumerate(a.layers):
        h = layer.units
        w = _reorder(weights[f"rnn{i}.weight_ih"], layer.cell, h)[None]
        r = _reorder(weights[f"rnn{i}.weight_hh"], layer.cell, h)[None]
        b = np.concatenate(
            [
                _reorder(weights[f"rnn{i}.bias_ih"], layer.cell, h),
                _reorder(weights[f"rnn{i}.bias_hh"], layer.cell, h),
            ]
        )[None]
        inputs = [
            seq,
            g.const(f"rnn{i}.W", w, np.float32),
            g.const(f"rnn{i}.R", r, np.float32),
            g.const(f"rnn{i}.B", b, np.float32),
        ]
        attrs: dict[str, Any] = {"hidden_size": h, "direction": "forward"}
        if layer.cell == "gru":
            attrs["linear_before_reset"] = 1
        op = "LSTM" if layer.cell == "lstm" else "GRU"
        y, y_h = g.op_multi(op, inputs, [f"rnn{i}.Y", f"rnn{i}.Y_h"], **attrs)
        if i < len(a.layers) - 1:
            seq = g.op("Squeeze", [y, g.const(f"rnn{i}.axis", [1], np.int64)], f"rnn{i}.seq")  # (L, N, H)
        else:
            last_h = g.op("Squeeze", [y_h, g.const(f"rnn{i}.axis", [0], np.int64)], f"rnn{i}.h_last")
    v = last_h
    names = a.head_names()
    for j, (nm, d) in enumerate(zip(names, a.head, strict=True)):
        w = g.const(f"{nm}.weight", weights[f"{nm}.weight"], np.float32)
        b = g.const(f"{nm}.bias", weights[f"{nm}.bias"], np.float32)
        last = j == len(names) - 1
        if d.activation == "linear" and last:
            g.nodes.append(_node("Gemm", [v, w, b], OUTPUT_NAME, nm, transB=1))
            break
        v = g.op("Gemm", [v, w, b], f"{nm}.gemm", transB=1)
        if d.activation != "linear":
            op = _ONNX_ACTIVATION[d.activation]
            attrs = {"axis": -1} if op == "Softmax" else {}
            if last:
                g.nodes.append(_node(op, [v], OUTPUT_NAME, f"{nm}.{d.activation}", **attrs))
            else:
                v = g.op(op, [v], f"{nm}.{d.activation}", **attrs)
    return make_model(g, desc, "float-onnx", TensorProto.FLOAT, TensorProto.FLOAT)


#: head activation -> ONNX operator
_ONNX_ACTIVATION = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def _node(op: str, inputs: list[str], out: str, name: str, **attrs: Any) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, [out], name=name, **attrs)
