"""Shared pieces of the ONNX/QONNX writers: versions, a small graph builder, metadata, saving.

Graphs are built directly with :mod:`onnx.helper` from the model description and weights
(no tracing), so the same run folder always gives the same file, byte for byte.

Versions: onnx 1.23 writes IR version 14 by default, which onnxruntime 1.31 refuses (it accepts
up to 13). Every file is written with :data:`IR_VERSION` and :data:`OPSET`, loadable by
onnxruntime releases back to 1.13.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import __version__
from qlstm.description import ModelDescription
from qlstm.io import atomic_path, check_out_file

#: ONNX IR version written (onnxruntime 1.31 loads IR <= 13; 8 keeps older runtimes working).
IR_VERSION = 8
#: Default-domain opset (LSTM/GRU-14 semantics, ReduceSum/Split/Unsqueeze with tensor inputs).
OPSET = 17
QONNX_DOMAIN = "qonnx.custom_op.general"
#: Name of the (N, L, C) input and (N, k) output in every exported file.
INPUT_NAME, OUTPUT_NAME = "x", "y"
BATCH = "N"


class GraphBuilder:
    """Collects nodes and initializers under unique, readable names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        """``base`` if still free, else ``base_2``, ``base_3``..."""
        cand, n = base, 1
        while cand in self._names:
            n += 1
            cand = f"{base}_{n}"
        self._names.add(cand)
        return cand

    def const(self, base: str, value: np.ndarray | float | int, dtype: Any = np.float64) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, domain: str = "", **attrs: Any) -> str:
        """Add a one-output node; returns its output name (also the node name)."""
        from onnx import helper

        out = self.name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def op_multi(self, op_type: str, inputs: list[str], bases: list[str], **attrs: Any) -> list[str]:
        from onnx import helper

        outs = [self.name(b) for b in bases]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0] + "_node", **attrs))
        return outs


def metadata(desc: ModelDescription, kind: str, dtype: str = "float32") -> dict[str, str]:
    """What a user needs to apply the file alone: shapes, channels, normalisation, types."""
    a, n = desc.architecture, desc.normalisation
    meta = {
        "qlstm.version": __version__,
        "qlstm.kind": kind,
        "qlstm.history_L": str(a.history),
        "qlstm.horizon_k": str(a.horizon),
        "qlstm.channels": json.dumps(list(n.channel_names)),
        "qlstm.units": json.dumps(list(n.units)),
        "qlstm.target_channel": str(n.target_channel),
        "qlstm.normalisation": json.dumps({"lo": list(n.lo), "hi": list(n.hi)}),
        "qlstm.layers": json.dumps([f"{layer.cell}{layer.units}" for layer in a.layers]),
        "qlstm.usage": (
            f"input '{INPUT_NAME}': (N, {a.history}, {a.input_channels}) {dtype} windows, each channel "
            "normalised as (raw - lo) / (hi - lo); output "
            f"'{OUTPUT_NAME}': (N, {a.horizon}) normalised target channel at t+1..t+{a.horizon}; "
            "raw = y * (hi - lo) + lo of the target channel"
        ),
        "qlstm.description": json.dumps(desc.to_dict(), sort_keys=True),
    }
    if desc.quantization is not None:
        meta["qlstm.fixed_point_types"] = json.dumps(
            {k: t.describe() for k, t in desc.quantization.points().items()}
        )
    return meta


def make_model(
    g: GraphBuilder,
    desc: ModelDescription,
    kind: str,
    in_type: int,
    out_type: int,
    extra_meta: dict[str, str] | None = None,
    qonnx: bool = False,
) -> Any:
    """Assemble a ModelProto with pinned IR version/opset and the qlstm metadata."""
    from onnx import TensorProto, helper

    a = desc.architecture
    graph = helper.make_graph(
        g.nodes,
        f"qlstm_{kind}",
        [helper.make_tensor_value_info(INPUT_NAME, in_type, [BATCH, a.history, a.input_channels])],
        [helper.make_tensor_value_info(OUTPUT_NAME, out_type, [BATCH, a.horizon])],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if qonnx:
        opsets.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    model = helper.make_model(
        graph, opset_imports=opsets, producer_name="qlstm", producer_version=__version__
    )
    model.ir_version = IR_VERSION
    dtype = "float64" if in_type == TensorProto.DOUBLE else "float32"
    meta = metadata(desc, kind, dtype) | (extra_meta or {})
    helper.set_model_props(model, meta)
    return model


def save_model(model: Any, out: Path) -> None:
    """Write atomically (a temporary file renamed on success)."""
    import onnx

    check_out_file(out, parent_must_exist=True)
    with atomic_path(Path(out)) as tmp:
        onnx.save_model(model, str(tmp))


def read_metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
