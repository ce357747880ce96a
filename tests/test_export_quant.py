"""Quant nodes as qlstm writes and lowers them: every ap_fixed rounding mode, exact tie tables.

The exported Quant (with its half-LSB offset where needed) must equal ``FixedType.quantize``
with saturation, and the onnxruntime lowering must equal qonnx's own ``int_quant``.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from qonnx.custom_op.general.quant import quant as qonnx_quant

from qlstm.export.graph import IR_VERSION, OPSET, QONNX_DOMAIN, GraphBuilder
from qlstm.export.lower import lower_quant
from qlstm.export.qonnx_export import QuantWriter
from qlstm.fixedpoint import QONNX_ROUNDING, ROUNDING_MODES, FixedType

TYPES = [(6, 2, True), (8, 3, False), (5, -1, True)]


def _run_quant(t: FixedType, x: np.ndarray) -> np.ndarray:
    g = GraphBuilder()
    out = QuantWriter(g).quant("x", t, "q")
    g.nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(
        g.nodes,
        "q",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)]
    )
    model.ir_version = IR_VERSION
    sess = ort.InferenceSession(lower_quant(model).SerializeToString())
    return sess.run(None, {"x": x})[0]


def _ties_and_neighbours(t: FixedType) -> np.ndarray:
    """Every half-LSB point over the range and beyond, and points just off the ties."""
    k = np.arange(2 * t.min_int - 8, 2 * t.max_int + 9)
    half = k * (t.lsb / 2)
    eps = t.lsb / 64
    return np.concatenate([half, half + eps, half - eps])


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("spec", TYPES, ids=[f"w{w}i{i}{'s' if s else 'u'}" for w, i, s in TYPES])
def test_quant_equals_fixedtype_saturating(mode, spec):
    width, integer, signed = spec
    for overflow in ("AP_SAT", "AP_SAT_SYM"):
        t = FixedType(width, integer, signed, mode, overflow)
        x = _ties_and_neighbours(t)
        np.testing.assert_array_equal(_run_quant(t, x), t.quantize(x), err_msg=t.describe())


@pytest.mark.parametrize("mode", sorted({m for m, _ in QONNX_ROUNDING.values()}))
def test_lowering_equals_qonnx_int_quant(mode):
    x = np.arange(-70, 71) * 0.25  # ties at .5 and beyond the 6-bit range
    for signed, narrow in ((1, 0), (1, 1), (0, 0)):
        g = GraphBuilder()
        g.nodes.append(
            helper.make_node(
                "Quant",
                [
                    "x",
                    g.const("s", 1.0, np.float32),
                    g.const("z", 0.0, np.float32),
                    g.const("b", 6.0, np.float32),
                ],
                ["y"],
                domain=QONNX_DOMAIN,
                signed=signed,
                narrow=narrow,
                rounding_mode=mode,
            )
        )
        graph = helper.make_graph(
            g.nodes,
            "q",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None])],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None])],
            initializer=g.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)]
        )
        model.ir_version = IR_VERSION
        y = ort.InferenceSession(lower_quant(model).SerializeToString()).run(None, {"x": x})[0]
        expected = qonnx_quant(x, np.float64(1.0), np.float64(0.0), np.float64(6.0), signed, narrow, mode)
        np.testing.assert_array_equal(y, expected, err_msg=f"{mode} signed={signed} narrow={narrow}")
