"""The model description as an hls4ml layer list and configuration, with every type explicit.

hls4ml's PyTorch front end converts one recurrent layer and keeps only its last step, so qlstm
builds the layer list itself - the same dictionaries hls4ml's converters produce - and hands it
to ``ModelGraph.from_layer_list``. That path supports ``return_sequences``, so stacked layers
(LSTM -> LSTM -> Dense) and GRUs work.

Layout and gate order (checked against ``hls4ml/converters/pytorch/recurrent.py`` and
``nnet_recurrent.h``):

* kernels are transposed from PyTorch's ``(G*H, n_in)`` to hls4ml/Keras ``(n_in, G*H)``; the
  dense kernels index ``w[i_in * n_out + i_out]``;
* LSTM gates stay in PyTorch order i, f, g, o, which is the order ``lstm_static`` slices;
* GRU gates stay in PyTorch order r, z, n with ``pytorch_order = true`` and the reset gate
  applied after the recurrent product (``apply_reset_gate='after'``), as PyTorch does;
* both biases are kept separately (``pytorch=True``): ``W x + b_ih`` and ``U h + b_hh``;
* the head's Dense kernels are transposed to ``(n_in, units)``; a head layer with an activation
  is hls4ml's ``Dense`` followed by an ``Activation`` layer (what the Keras converter makes of
  ``Dense(activation=...)``), with its own ``result`` type and, for sigmoid/tanh, ``table_t``
  and ``TableSize``.

Layer names in the generated project are ``x`` (input), ``rnn0``, ``rnn1``, ..., then per head
layer (``dense0`` ..., the last ``head``) the layer's name for its output: the Dense layer when
linear, else the activation layer, whose Dense layer is ``<name>_linear``. These are the
description's weight keys, so traces read naturally.

No precision is given a model-wide default: a quantization point missing here makes hls4ml
raise instead of silently using ``ap_fixed<16,6>``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from qlstm.description import ModelDescription
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.hls_config import HlsConfig, check_reuse

#: Name of the HLS top function (and of the generated ``<name>.cpp``, ``<name>_bridge.cpp``).
PROJECT_NAME = "qlstm"
INPUT_NAME = "x"
HEAD_NAME = "head"


def rnn_name(i: int) -> str:
    return f"rnn{i}"


def dense_layer_name(name: str, activation: str) -> str:
    """The hls4ml name of head layer ``name``'s Dense layer (``name`` itself when linear)."""
    return name if activation == "linear" else f"{name}_linear"


def head_layers(desc: ModelDescription) -> list[tuple[str, str, str]]:
    """``(head layer name, hls4ml Dense layer name, activation)`` per head layer, in order."""
    arch = desc.architecture
    return [
        (nm, dense_layer_name(nm, d.activation), d.activation)
        for nm, d in zip(arch.head_names(), arch.head, strict=True)
    ]


# ====================================================================== layer list + config
def layer_list(desc: ModelDescription, weights: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The hls4ml layer dictionaries for ``desc`` (what a converter's parser would return)."""
    arch = desc.architecture
    f64 = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    layers: list[dict[str, Any]] = [
        {"name": INPUT_NAME, "class_name": "InputLayer", "input_shape": [arch.history, arch.input_channels]}
    ]
    prev = INPUT_NAME
    last = len(arch.layers) - 1
    for i, layer in enumerate(arch.layers):
        name = rnn_name(i)
        d: dict[str, Any] = {
            "name": name,
            "class_name": layer.cell.upper(),
            "inputs": [prev],
            "n_timesteps": arch.history,
            "n_in": arch.n_in(i),
            "n_out": layer.units,
            "return_sequences": i != last,
            "return_state": False,
            "pass_initial_states": False,
            "direction": "forward",
            "time_major": False,
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "pytorch": True,
            "weight_data": np.ascontiguousarray(f64[f"{name}.weight_ih"].T),
            "recurrent_weight_data": np.ascontiguousarray(f64[f"{name}.weight_hh"].T),
            "bias_data": f64[f"{name}.bias_ih"].copy(),
            "recurrent_bias_data": f64[f"{name}.bias_hh"].copy(),
        }
        if layer.cell == "gru":
            d["apply_reset_gate"] = "after"
        layers.append(d)
        prev = name
    for j, (nm, dname, act) in enumerate(head_layers(desc)):
        units = arch.head[j].units
        layers.append(
            {
                "name": dname,
                "class_name": "Dense",
                "inputs": [prev],
                "n_in": arch.head_n_in(j),
                "n_out": units,
                "use_bias": True,
                "weight_data": np.ascontiguousarray(f64[f"{nm}.weight"].T),
                "bias_data": f64[f"{nm}.bias"].copy(),
            }
        )
        if act != "linear":
            if act == "softmax":
                raise QlstmError(f"head layer {nm!r} (softmax): not supported by qlstm's hls4ml projects")
            layers.append({"name": nm, "class_name": "Activation", "activation": act, "inputs": [dname]})
        prev = nm
    return layers


def _p(t: FixedType) -> str:
    return t.describe()


def hls_config(
    desc: ModelDescription,
    opts: HlsConfig,
    *,
    output_dir: str,
    part: str,
    clock_ns: float,
    trace: bool,
) -> dict[str, Any]:
    """The hls4ml configuration dict: every precision named per layer, no model-wide default."""
    q = desc.quantization
    if q is None:
        raise QlstmError(
            "the model is not quantized; run `qlstm quantize` first (hls needs fixed-point types)"
        )
    if len(q.layers) != len(desc.architecture.layers):
        raise QlstmError("quantization has a different number of layers than the architecture")
    by_name: dict[str, Any] = {INPUT_NAME: {"Precision": {"result": _p(q.input)}, "Trace": trace}}
    for i, lq in enumerate(q.layers):
        by_name[rnn_name(i)] = {
            "Precision": {
                "weight": _p(lq.weight),
                "recurrent_weight": _p(lq.recurrent_weight),
                "bias": _p(lq.bias),
                "recurrent_bias": _p(lq.recurrent_bias),
                "accum": _p(lq.accum),
                "result": _p(lq.state),
            },
            # hls4ml reads the table type of a recurrent layer from the `table_t` layer key
            # (a `table` entry under Precision is silently ignored and ap_fixed<18,8> leaks in).
            "table_t": _p(lq.table.type),
            "TableSize": lq.table.size,
            "Static": opts.static,
            "ReuseFactor": opts.reuse_factor,
            "RecurrentReuseFactor": opts.reuse_factor,
            "Strategy": opts.strategy.capitalize(),
            "Trace": trace,
        }
    if len(q.head) != len(desc.architecture.head):
        raise QlstmError("quantization has a different number of head layers than the architecture")
    for (nm, dname, act), dq in zip(head_layers(desc), q.head, strict=True):
        by_name[dname] = {
            "Precision": {
                "weight": _p(dq.weight),
                "bias": _p(dq.bias),
                "accum": _p(dq.accum),
                "result": _p(dq.result),
            },
            "ReuseFactor": opts.reuse_factor,
            "Strategy": opts.strategy.capitalize(),
            "Trace": trace,
        }
        if act != "linear":
            assert dq.act_result is not None  # check_quantization
            cfg: dict[str, Any] = {"Precision": {"result": _p(dq.act_result)}, "Trace": trace}
            if dq.table is not None:  # as for the recurrent layers: the `table_t` layer key
                cfg["table_t"] = _p(dq.table.type)
                cfg["TableSize"] = dq.table.size
            by_name[nm] = cfg
    return {
        "OutputDir": output_dir,
        "ProjectName": PROJECT_NAME,
        "Backend": opts.backend,
        "Part": part,
        "ClockPeriod": clock_ns,
        "ClockUncertainty": "12.5%",
        "IOType": opts.io_type,
        "TraceOutput": trace,
        "HLSConfig": {
            "Model": {
                "ReuseFactor": opts.reuse_factor,
                "Strategy": opts.strategy.capitalize(),
                "BramFactor": 1_000_000_000,
            },
            "LayerName": by_name,
        },
        "WriterConfig": {
            "Namespace": None,
            # hls4ml's default: the C simulation reads the weights from firmware/weights/*.txt
            # (at WEIGHTS_DIR, an absolute path compiled in by build_lib.sh) instead of compiling
            # ap_fixed initialisers of every weight, which takes g++ many minutes for a 128-cell
            # LSTM. Synthesis uses the same values from the headers.
            "WriteWeightsTxt": True,
            "WriteTar": False,
            "TBOutputStream": "both",
        },
    }


def build_model_graph(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    opts: HlsConfig,
    *,
    output_dir: str,
    part: str,
    clock_ns: float,
    trace: bool,
) -> Any:
    """An hls4ml ``ModelGraph`` for ``desc`` (not yet written or compiled)."""
    check_reuse(desc, opts.reuse_factor)
    from hls4ml.model import ModelGraph  # heavy import, only when building

    cfg = hls_config(desc, opts, output_dir=output_dir, part=part, clock_ns=clock_ns, trace=trace)
    return ModelGraph.from_layer_list(cfg, layer_list(desc, weights))


# ====================================================================== generated types
_TYPEDEF_RE = re.compile(r"^\s*typedef\s+(?P<type>[^;]+?)\s+(?P<name>\w+)\s*;", re.MULTILINE)


def expected_layer_types(desc: ModelDescription) -> dict[str, dict[str, tuple[FixedType, ...] | FixedType]]:
    """For each hls4ml layer: the description's type of every role the kernels use."""
    q = desc.quantization
    assert q is not None
    out: dict[str, dict[str, Any]] = {INPUT_NAME: {"result": q.input}}
    for i, lq in enumerate(q.layers):
        out[rnn_name(i)] = {
            "weight": lq.weight,
            "recurrent_weight": lq.recurrent_weight,
            "bias": lq.bias,
            "recurrent_bias": lq.recurrent_bias,
            "accum": lq.accum,
            "result": lq.state,
            "table": lq.table.type,
        }
    for (nm, dname, act), dq in zip(head_layers(desc), q.head, strict=True):
        out[dname] = {"weight": dq.weight, "bias": dq.bias, "accum": dq.accum, "result": dq.result}
        if act != "linear":
            out[nm] = {"result": dq.act_result}
            if dq.table is not None:
                out[nm]["table"] = dq.table.type
    return out


def parse_typedefs(text: str) -> dict[str, str]:
    """``typedef T name;`` lines of a C++ header, ``name -> T`` (top level and inside structs)."""
    return {m["name"]: " ".join(m["type"].split()) for m in _TYPEDEF_RE.finditer(text)}
