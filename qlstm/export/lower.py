"""Lower QONNX ``Quant`` nodes to standard ONNX ops, so onnxruntime runs a qlstm QONNX file.

qonnx 1.0 cannot execute these files itself with the pinned packages: its node-by-node
``execute_onnx`` builds each one-node model with onnx's default IR version (14), which
onnxruntime 1.31 refuses; and its ``Quant`` returns float32, inexact beyond 24 bits. Lowering
replaces each ``Quant(x, scale, 0, bitwidth)`` by the same arithmetic as qonnx's
``int_quant`` (``x / scale``, clip to the integer range, round, ``* scale``) in float64, so the
whole graph runs in one onnxruntime session, exactly.

Only files written by :mod:`qlstm.export.qonnx_export` are supported (Quant inputs in float64,
constant scale/zero-point/bit width).
"""

from __future__ import annotations

from typing import Any

from qlstm.errors import QlstmError
from qlstm.export.graph import QONNX_DOMAIN, GraphBuilder


def _round(g: GraphBuilder, y: str, mode: str, base: str) -> str:
    """ONNX ops for qonnx ``resolve_rounding_mode(mode)`` applied to ``y``."""
    if mode == "FLOOR":
        return g.op("Floor", [y], f"{base}.floor")
    if mode == "CEIL":
        return g.op("Ceil", [y], f"{base}.ceil")
    if mode in ("ROUND", "HALF_EVEN"):
        return g.op("Round", [y], f"{base}.round")  # ONNX Round: ties to even, as np.round
    sign = g.op("Sign", [y], f"{base}.sign")
    mag = g.op("Abs", [y], f"{base}.abs")
    if mode == "DOWN":
        mag = g.op("Floor", [mag], f"{base}.floor")
    elif mode == "HALF_UP":
        mag = g.op(
            "Floor", [g.op("Add", [mag, g.const(f"{base}.half", 0.5)], f"{base}.add")], f"{base}.floor"
        )
    elif mode == "HALF_DOWN":
        mag = g.op("Ceil", [g.op("Sub", [mag, g.const(f"{base}.half", 0.5)], f"{base}.sub")], f"{base}.ceil")
    else:
        raise QlstmError(f"Quant rounding_mode {mode!r} is not supported by the qlstm lowering")
    return g.op("Mul", [sign, mag], f"{base}.signed")


def lower_quant(model: Any) -> Any:
    """A copy of ``model`` with every QONNX ``Quant`` replaced by float64 standard ops."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    g = GraphBuilder()
    g._names.update(inits)  # noqa: SLF001 - reserve existing names
    for node in graph.node:
        g._names.update(node.output)  # noqa: SLF001
    new_nodes = []
    for node in graph.node:
        if not (node.domain == QONNX_DOMAIN and node.op_type == "Quant"):
            new_nodes.append(node)
            continue
        try:
            scale, zeropt, bits = (float(numpy_helper.to_array(inits[n])) for n in node.input[1:4])
        except KeyError:
            raise QlstmError(
                f"Quant node {node.name}: scale, zero point and bit width must be constants"
            ) from None
        if zeropt != 0.0:
            raise QlstmError(f"Quant node {node.name}: only zero_point 0 is supported")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        signed, narrow = int(attrs.get("signed", 1)), int(attrs.get("narrow", 0))
        mode = attrs.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        w = int(bits)
        lo = (-(2 ** (w - 1)) + narrow) if signed else 0
        hi = (2 ** (w - 1) - 1) if signed else (2**w - 1 - narrow)
        base = node.output[0]
        g.nodes = []
        sc = g.const(f"{base}.lower_scale", scale)
        y = g.op("Div", [node.input[0], sc], f"{base}.int")
        y = g.op(
            "Clip", [y, g.const(f"{base}.min", float(lo)), g.const(f"{base}.max", float(hi))], f"{base}.clip"
        )
        y = _round(g, y, mode, base)
        g.nodes.append(helper.make_node("Mul", [y, sc], [node.output[0]], name=f"{base}.rescale"))
        new_nodes.extend(g.nodes)
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in new_nodes for name in node.input}
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + g.initializers)
    kept = [o for o in model.opset_import if o.domain != QONNX_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    del graph.value_info[:]  # Quant outputs change from float32 to float64
    return model
