"""PyTorch models without unpickling code: a ``state_dict`` plus a small YAML, or ``torch.export``.

* **YAML + state_dict**: the YAML names the architecture, the state_dict (``torch.save(model.
  state_dict(), 'w.pt')``) is read with ``torch.load(weights_only=True)``::

      state_dict: w.pt          # relative to the YAML file
      recurrent:                # nn.LSTM / nn.GRU modules in order (any num_layers, batch_first)
        - {module: lstm, cell: lstm}
      head: fc                  # the nn.Linear reading the last step of the last layer, or a list:
      # head: [{module: fc1, activation: relu}, {module: fc2, activation: sigmoid}]
      history: 20               # optional (else --history)

  The YAML asserts the forward pass (stacked modules, last time step, the Linear layers in order,
  each followed by its activation: linear, relu, sigmoid, tanh, softmax); every state_dict key
  must be claimed by it.
* **``.pt2``** (``torch.export.save``): the archive is read as data - the graph
  (``models/model.json``) and the raw weight bytes - never through ``torch.export.load``, which
  falls back to ``torch.load(weights_only=False)``. The graph must be ``aten.lstm``/``aten.gru``
  nodes (zero initial state, forward, batch_first) feeding each other, the last step
  (``select(seq, 1, -1)`` or ``h_n[-1]``) and a chain of ``aten.linear``, each optionally
  followed by ``aten.relu``/``sigmoid``/``tanh``/``softmax``; dropout in eval mode is skipped.

PyTorch keeps both biases (``bias_ih``, ``bias_hh``) and the gate order of the description
(LSTM i, f, g, o; GRU r, z, n with the reset gate applied after the recurrent product), so the
arrays are copied unchanged.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from qlstm.errors import QlstmError
from qlstm.importers.common import Imported, activation_name, refuse
from qlstm.io import read_text

_YAML_KEYS = {"state_dict", "recurrent", "head", "history", "input_channels"}
_CELLS = {"lstm": 4, "gru": 3}


def _module_layers(
    imp: Imported, sd: dict[str, np.ndarray], module: str, cell: str, where: str, claimed: set[str]
) -> None:
    """Append every layer ``_l0, _l1 ...`` of one nn.LSTM/nn.GRU state."""
    kind = "nn.LSTM" if cell == "lstm" else "nn.GRU"
    prefix = f"{module}." if module else ""
    keys = [k for k in sd if k.startswith(prefix) and "." not in k[len(prefix) :]]
    if not keys:
        raise QlstmError(f"{where}: no state_dict entries for module {module!r}")
    if any(k.endswith("_reverse") for k in keys):
        raise refuse(where, module, kind, "bidirectional=True: the description runs forward in time only")
    if any("weight_hr" in k for k in keys):
        raise refuse(where, module, kind, "proj_size > 0 (LSTM projections) is not supported")
    n = 1 + max(int(m.group(1)) for k in keys if (m := re.search(r"_l(\d+)$", k)))
    for j in range(n):
        w_ih, w_hh = sd.get(f"{prefix}weight_ih_l{j}"), sd.get(f"{prefix}weight_hh_l{j}")
        if w_ih is None or w_hh is None:
            raise refuse(where, module, kind, f"layer {j} has no weight_ih/weight_hh")
        units = w_hh.shape[1]
        if w_ih.shape[0] != _CELLS[cell] * units:
            raise refuse(
                where,
                module,
                kind,
                f"weight_ih_l{j} has {w_ih.shape[0]} rows: not a {cell.upper()} of {units} units",
            )
        zeros = np.zeros(_CELLS[cell] * units)
        b_ih, b_hh = sd.get(f"{prefix}bias_ih_l{j}", zeros), sd.get(f"{prefix}bias_hh_l{j}", zeros)
        imp.add_recurrent(f"{module}[{j}]" if n > 1 else module, cell, w_ih, w_hh, b_ih, b_hh)
        claimed.update(f"{prefix}{t}_l{j}" for t in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def read_yaml(path: Path) -> Imported:
    """YAML description + state_dict file."""
    import torch
    import yaml

    where = str(path)
    try:
        spec = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise QlstmError(f"{where}: not readable YAML ({type(exc).__name__})") from None
    if not isinstance(spec, dict):
        raise QlstmError(f"{where}: expected a mapping with state_dict, recurrent and head")
    unknown = set(spec) - _YAML_KEYS
    if unknown:
        raise QlstmError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_YAML_KEYS))}"
        )
    for key in ("state_dict", "recurrent", "head"):
        if key not in spec:
            raise QlstmError(f"{where}: missing key {key!r}")
    sd_path = (path.parent / str(spec["state_dict"])).resolve()
    if not sd_path.is_file():
        raise QlstmError(f"{where}: state_dict file {sd_path} not found")
    try:
        state = torch.load(sd_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (code in the file), RuntimeError (bad zip) ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise QlstmError(
            f"{sd_path}: not a state_dict loadable with weights_only=True ({type(exc).__name__}: {first[:160]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise QlstmError(f"{sd_path}: not a flat state_dict of tensors (save model.state_dict())")
    sd = {str(k): v.detach().cpu().double().numpy() for k, v in state.items()}
    imp = Imported(fmt="pytorch-state-dict")
    claimed: set[str] = set()
    rec = spec["recurrent"]
    if not isinstance(rec, list) or not rec:
        raise QlstmError(f"{where}: recurrent must be a list of {{module: NAME, cell: lstm|gru}}")
    for item in rec:
        if not isinstance(item, dict) or set(item) != {"module", "cell"} or item["cell"] not in _CELLS:
            raise QlstmError(f"{where}: recurrent entry {item!r}: expected {{module: NAME, cell: lstm|gru}}")
        _module_layers(imp, sd, str(item["module"]), item["cell"], where, claimed)
    heads = spec["head"] if isinstance(spec["head"], list) else [{"module": spec["head"]}]
    for item in heads:
        if not isinstance(item, dict) or "module" not in item or set(item) - {"module", "activation"}:
            raise QlstmError(
                f"{where}: head entry {item!r}: expected a module name or {{module: NAME, activation: A}}"
            )
        head = str(item["module"])
        act = activation_name(where, head, "nn.Linear", str(item.get("activation", "linear")))
        hw, hb = sd.get(f"{head}.weight"), sd.get(f"{head}.bias")
        if hw is None or hw.ndim != 2:
            raise QlstmError(f"{where}: head {head!r}: no 2-D {head}.weight in the state_dict")
        n_in = int(imp.dense[-1][1].shape[0]) if imp.dense else imp.units[-1]
        if hw.shape[1] != n_in:
            raise refuse(
                where, head, "nn.Linear", f"weight {hw.shape} does not read the previous layer's {n_in} units"
            )
        imp.add_dense(head, hw, hb if hb is not None else np.zeros(hw.shape[0]), act)
        claimed.update({f"{head}.weight", f"{head}.bias"})
    rest = sorted(set(sd) - claimed)
    if rest:
        raise QlstmError(f"{where}: state_dict entries the YAML does not describe: {', '.join(rest)}")
    imp.input_channels = int(imp.weights["rnn0.weight_ih"].shape[1])
    if "input_channels" in spec and int(spec["input_channels"]) != imp.input_channels:
        raise QlstmError(
            f"{where}: input_channels {spec['input_channels']} but {rec[0]['module']}.weight_ih_l0 reads "
            f"{imp.input_channels}"
        )
    imp.history = int(spec["history"]) if spec.get("history") is not None else None
    imp.notes.append(f"state_dict {sd_path}")
    return imp


# ====================================================================== torch.export .pt2
#: torch._export.serde.schema.ScalarType -> NumPy dtype (the ones a float model uses)
_DTYPES = {7: np.float32, 8: np.float64, 6: np.float16}
_ACTIVATIONS = {
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "_softmax",
    "gelu",
    "elu",
    "leaky_relu",
    "hardtanh",
    "silu",
}
#: aten op -> head activation (qlstm.description.HEAD_ACTIVATIONS)
_HEAD_ACTIVATIONS = {
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "_softmax": "softmax",
}
_PLUMBING = {"contiguous", "clone", "alias", "detach", "_to_copy", "to"}


def _tensor(buf: bytes, meta: dict[str, Any], where: str, name: str, order: str = "<") -> np.ndarray:
    dtype = _DTYPES.get(int(meta["dtype"]))
    if dtype is None:
        raise QlstmError(f"{where}: {name} has tensor dtype code {meta['dtype']}; float tensors expected")
    storage = np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder(order))
    sizes = [int(s["as_int"]) for s in meta["sizes"]]
    strides = [int(s["as_int"]) * storage.itemsize for s in meta["strides"]]
    off = int(meta["storage_offset"]["as_int"])
    return np.lib.stride_tricks.as_strided(storage[off:], sizes, strides).astype(np.float64)


def _pt2_weights(z: zipfile.ZipFile, root: str, where: str) -> dict[str, np.ndarray]:
    cfg_name = f"{root}/data/weights/model_weights_config.json"
    if cfg_name not in z.namelist():
        raise QlstmError(f"{where}: no {cfg_name}; an older .pt2 layout (re-save with torch.export.save)")
    cfg = json.loads(z.read(cfg_name))["config"]
    order_file = f"{root}/byteorder"
    order = ">" if order_file in z.namelist() and z.read(order_file).strip() == b"big" else "<"
    out = {}
    for fqn, meta in cfg.items():
        if meta.get("use_pickle"):
            raise QlstmError(f"{where}: weight {fqn} is stored pickled; qlstm never unpickles model files")
        out[fqn] = _tensor(
            z.read(f"{root}/data/weights/{meta['path_name']}"), meta["tensor_meta"], where, fqn, order
        )
    return out


def _arg(node: dict[str, Any], name: str) -> Any:
    for a in node["inputs"]:
        if a["name"] == name:
            return a["arg"]
    return None


def _scalar(arg: Any) -> Any:
    if arg is None:
        return None
    for k in ("as_int", "as_float", "as_bool", "as_ints"):
        if k in arg:
            return arg[k]
    if "as_none" in arg:
        return None
    return arg


def read_pt2(path: Path) -> Imported:
    """A ``torch.export`` archive, interpreted from its graph (see the module docstring)."""
    where = str(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise QlstmError(f"{where}: not a readable .pt2 archive ({type(exc).__name__})") from None
    with z:
        models = [n for n in z.namelist() if re.fullmatch(r"[^/]+/models/[^/]+\.json", n)]
        if len(models) != 1:
            raise QlstmError(f"{where}: expected one exported program in the archive, found {len(models)}")
        root = models[0].split("/")[0]
        program = json.loads(z.read(models[0]))
        params = _pt2_weights(z, root, where)
    graph = program["graph_module"]["graph"]
    sig = program["graph_module"]["signature"]
    names: dict[str, str] = {}  # graph placeholder -> parameter FQN
    user_inputs = []
    for spec in sig["input_specs"]:
        kind, body = next(iter(spec.items()))
        if kind == "parameter":
            names[body["arg"]["name"]] = body["parameter_name"]
        elif kind == "user_input":
            user_inputs.append(body["arg"]["as_tensor"]["name"])
        elif kind == "buffer":
            raise QlstmError(
                f"{where}: buffer {body.get('buffer_name')!r}: models with buffers are not supported"
            )
        else:
            raise QlstmError(f"{where}: graph input of kind {kind!r} is not supported")
    if len(user_inputs) != 1:
        raise QlstmError(
            f"{where}: the program takes {len(user_inputs)} inputs; qlstm imports one (N, L, C) input"
        )
    x = user_inputs[0]
    xmeta = graph["tensor_values"][x]["sizes"]
    imp = Imported(fmt="pytorch-export")
    if len(xmeta) != 3:
        raise QlstmError(f"{where}: input {x} has {len(xmeta)} dimensions; expected (N, L, C)")
    imp.history = int(xmeta[1]["as_int"]) if "as_int" in xmeta[1] else None
    imp.input_channels = int(xmeta[2]["as_int"])
    val: dict[str, tuple[Any, ...]] = {x: ("seq", -1)}
    for node in graph["nodes"]:
        op = node["target"].removeprefix("torch.ops.aten.").split(".")[0]
        outs = [o.get("as_tensor", {}).get("name") for o in node["outputs"]]
        outs += [t["name"] for o in node["outputs"] for t in o.get("as_tensors", [])]
        nm = outs[0] if outs and outs[0] else op

        def src(name: str = "input", node: dict[str, Any] = node) -> tuple[Any, ...]:
            a = _arg(node, name) or {}
            t = a.get("as_tensor", {}).get("name")
            return val.get(t, ("other", t))

        if op in ("zeros", "zeros_like", "new_zeros"):
            for o in outs:
                val[o] = ("zeros",)
        elif op in ("lstm", "gru"):
            cell = op
            kind = f"aten.{op}"
            if node["target"].endswith(".data"):
                raise refuse(where, nm, kind, "packed sequences are not supported")
            s = src()
            if s[0] != "seq" or s[1] != len(imp.cells) - 1:
                raise refuse(
                    where, nm, kind, "does not read the input or the previous recurrent layer's sequence"
                )
            hx = _arg(node, "hx")
            hx_names = (
                [t["name"] for t in hx.get("as_tensors", [])]
                if "as_tensors" in hx
                else [hx["as_tensor"]["name"]]
            )
            if any(val.get(h, ("?",))[0] != "zeros" for h in hx_names):
                raise refuse(
                    where, nm, kind, "initial state is not zero; the firmware starts every window at zero"
                )
            has_b, n_layers = _scalar(_arg(node, "has_biases")), int(_scalar(_arg(node, "num_layers")))
            train, bidir = _scalar(_arg(node, "train")), _scalar(_arg(node, "bidirectional"))
            if bidir:
                raise refuse(where, nm, kind, "bidirectional=True: the description runs forward in time only")
            if not _scalar(_arg(node, "batch_first")):
                raise refuse(where, nm, kind, "batch_first=False: export the model with batch_first=True")
            if train and float(_scalar(_arg(node, "dropout")) or 0) > 0:
                raise refuse(where, nm, kind, "exported in training mode with dropout; export model.eval()")
            plist = [names.get(t["name"]) for t in _arg(node, "params")["as_tensors"]]
            if None in plist:
                raise refuse(where, nm, kind, "weights are not parameters of the program")
            per = 4 if has_b else 2
            if len(plist) != per * n_layers:
                raise refuse(
                    where, nm, kind, f"{len(plist)} weight tensors for {n_layers} layer(s); projections?"
                )
            for j in range(n_layers):
                p = [params[q] for q in plist[per * j : per * (j + 1)]]
                g = _CELLS[cell] * p[1].shape[1]
                zeros = np.zeros(g)
                b_ih, b_hh = (p[2], p[3]) if has_b else (zeros, zeros)
                module = plist[per * j].rsplit(".", 1)[0]
                imp.add_recurrent(f"{module}[{j}]", cell, p[0], p[1], b_ih, b_hh)
            last = len(imp.cells) - 1
            val[outs[0]] = ("seq", last)
            for o in outs[1:2]:
                val[o] = ("h_n", last, n_layers)
            for o in outs[2:]:
                val[o] = ("c_n",)
        elif node["target"] == "_operator.getitem" or op == "getitem":
            raise QlstmError(f"{where}: unexpected tuple access in the graph")
        elif op == "select":
            s, dim, index = src("self"), _scalar(_arg(node, "dim")), _scalar(_arg(node, "index"))
            last_step = s[0] == "seq" and s[1] >= 0 and dim == 1 and index in (-1, (imp.history or 0) - 1)
            last_h_n = s[0] == "h_n" and dim == 0 and index in (-1, s[2] - 1)
            if last_step or last_h_n:
                val[outs[0]] = ("last", s[1])
            else:
                raise refuse(where, nm, "aten.select", "selects something other than the last time step")
        elif op == "dropout":
            if _scalar(_arg(node, "train")):
                raise refuse(where, nm, "aten.dropout", "exported in training mode; export model.eval()")
            val[outs[0]] = src()
        elif op in _PLUMBING:
            val[outs[0]] = src("self") if _arg(node, "self") else src()
        elif op == "linear":
            s = src()
            last_dense = len(imp.dense) - 1
            if (s[0] == "last" and s[1] == len(imp.cells) - 1 and not imp.dense) or (
                s[0] == "dense" and s[1] == last_dense
            ):
                w = names.get(_arg(node, "weight")["as_tensor"]["name"])
                b_arg = _arg(node, "bias") or {}
                b = names.get(b_arg.get("as_tensor", {}).get("name", ""))
                if w is None:
                    raise refuse(where, nm, "aten.linear", "weight is not a parameter of the program")
                n_in = int(imp.dense[-1][1].shape[0]) if imp.dense else imp.units[-1]
                if params[w].shape[1] != n_in:
                    raise refuse(
                        where, nm, "aten.linear", f"weight {params[w].shape} does not read {n_in} units"
                    )
                imp.add_dense(
                    w.rsplit(".", 1)[0], params[w], params[b] if b else np.zeros(params[w].shape[0])
                )
            elif s[0] == "seq":
                raise refuse(
                    where, nm, "aten.linear", "applied to every time step; qlstm's head reads the last step"
                )
            else:
                raise refuse(
                    where, nm, "aten.linear", "does not read the last step or the previous head layer"
                )
            val[outs[0]] = ("dense", len(imp.dense) - 1)
        elif op in _ACTIVATIONS:
            s = src("self") if _arg(node, "self") else src()
            if s[0] != "dense" or s[1] != len(imp.dense) - 1:
                raise refuse(where, nm, f"aten.{op}", "an activation only follows a head Linear layer")
            if op not in _HEAD_ACTIVATIONS:
                raise refuse(
                    where,
                    nm,
                    f"aten.{op}",
                    "not a supported head activation (relu, sigmoid, tanh, softmax)",
                )
            if "softmax" in op and _scalar(_arg(node, "dim")) not in (-1, 1):
                raise refuse(
                    where, nm, f"aten.{op}", "softmax over another axis than the last is not supported"
                )
            imp.add_activation(where, nm, f"aten.{op}", _HEAD_ACTIVATIONS[op])
            val[outs[0]] = s
        else:
            raise refuse(where, nm, node["target"], "operation not supported in an imported recurrent model")
    # operator.getitem nodes are serialized as tuple outputs of the lstm node itself, so the
    # select/linear chain above sees the named outputs directly.
    if not imp.cells:
        raise QlstmError(f"{where}: no aten.lstm/aten.gru node; qlstm imports recurrent models")
    if not imp.dense:
        raise QlstmError(f"{where}: no Linear layer reading the last step of the last recurrent layer")
    outputs = [o.get("as_tensor", {}).get("name") for o in graph["outputs"]]
    if len(outputs) != 1 or val.get(outputs[0], ("?",)) != ("dense", len(imp.dense) - 1):
        raise QlstmError(f"{where}: the program's output is not the last head layer's output")
    return imp
