"""Keras models without TensorFlow: legacy HDF5 ``.h5`` (Keras 2) and Keras 3 ``.keras``.

Both are read with h5py and json only:

* ``.h5`` (``model.save('m.h5')``, Keras 2 / tf.keras): the root attribute ``model_config``
  (JSON) describes the layers; ``model_weights/<layer>`` holds each layer's arrays, named by
  its ``weight_names`` attribute (``lstm/lstm_cell/kernel:0`` ...);
* ``.keras`` (Keras 3 ``model.save``): a zip with ``config.json`` and ``model.weights.h5``,
  whose arrays sit at ``layers/<class in snake case>[_n]/vars/<i>`` (recurrent layers:
  ``.../cell/vars/<i>``), ``_n`` counting earlier layers of the same class
  (``keras/src/saving/saving_lib.py``, ``_save_container_state``).

Supported: Sequential models and functional single-input chains of ``LSTM``/``GRU`` layers
followed by a head of ``Dense`` layers, each with an activation (``Dense(activation=...)`` or a
separate ``Activation`` layer: linear, relu, sigmoid, tanh, softmax); ``Dropout`` is an identity
at inference and skipped. Everything else is refused with one line naming the layer: see
``docs/import.md`` for the semantics table and the reasons.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from qlstm.errors import QlstmError
from qlstm.importers.common import KERAS_TO_TORCH, Imported, activation_name, permute_gates, refuse

RECURRENT = {"LSTM": "lstm", "GRU": "gru"}
#: identities at inference (Keras applies them in training only)
SKIPPED = {"InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout"}
LINEAR = (None, "linear")

#: Why each well-known layer is refused (anything else: "not a supported layer type").
REFUSED = {
    "Masking": "masking skips time steps per sample; the firmware runs every step of every window",
    "Bidirectional": "bidirectional layers are not supported (the description runs forward in time only)",
    "SimpleRNN": "SimpleRNN is not supported (LSTM and GRU only)",
    "TimeDistributed": "TimeDistributed is not supported (the head reads the last step only)",
    "RNN": "generic RNN wrappers are not supported (use LSTM or GRU layers)",
    "CuDNNLSTM": "CuDNNLSTM keeps two biases in cuDNN order; re-save the model with an LSTM layer",
    "CuDNNGRU": "CuDNNGRU keeps two biases in cuDNN order; re-save the model with a GRU layer",
    "BatchNormalization": "normalisation layers are not supported; fold them into the weights first",
    "LayerNormalization": "normalisation layers are not supported",
}


def _activation(v: Any) -> str | None:
    """A Keras activation as saved: a name, or ``{"class_name": "function", "config": name}``."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, dict):
        cfg = v.get("config")
        if isinstance(cfg, str):
            return cfg
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
            return cfg["name"]
        if isinstance(v.get("registered_name"), str):
            return v["registered_name"]
        if isinstance(v.get("class_name"), str):
            return v["class_name"]
    return repr(v)


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


# ====================================================================== the layer chain
def _layers_of(config: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    """(model class, layer entries in order) of a Sequential or functional model config."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise QlstmError(f"{where}: model config has no class_name; not a saved Keras model")
    cls = config["class_name"]
    cfg = config.get("config")
    if cls == "Sequential":
        layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers")
    elif cls in ("Functional", "Model"):
        layers = (cfg or {}).get("layers")
    else:
        raise QlstmError(f"{where}: model class {cls!r}: only Sequential and functional models are supported")
    if not isinstance(layers, list) or not layers:
        raise QlstmError(f"{where}: model config lists no layers")
    for entry in layers:
        if entry.get("class_name") in ("Sequential", "Functional", "Model"):
            raise refuse(
                where, _name(entry), entry["class_name"], "nested models are not supported; flatten it"
            )
    if cls != "Sequential":
        _check_chain(layers, cfg, where)
    return cls, layers


def _name(entry: dict[str, Any]) -> str:
    return str(entry.get("name") or (entry.get("config") or {}).get("name") or "?")


def _inbound(entry: dict[str, Any]) -> list[str]:
    """Names of the layers feeding a functional layer (Keras 2 and Keras 3 encodings)."""
    names: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            hist = (
                (obj.get("config") or {}).get("keras_history")
                if obj.get("class_name") == "__keras_tensor__"
                else None
            )
            if hist:
                names.append(str(hist[0]))
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                names.append(obj[0])  # Keras 2: [layer_name, node_index, tensor_index, kwargs]
                return
            for v in obj:
                walk(v)

    walk(entry.get("inbound_nodes", []))
    return names


def _check_chain(layers: list[dict[str, Any]], cfg: dict[str, Any], where: str) -> None:
    """A functional model must be one chain: every layer fed by exactly the previous one."""
    inputs = cfg.get("input_layers") or []
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], list) and len(inputs) > 1:
        raise QlstmError(f"{where}: the model has {len(inputs)} inputs; qlstm imports single-input chains")
    for prev, entry in zip(layers, layers[1:], strict=False):
        src = _inbound(entry)
        if src != [_name(prev)]:
            raise refuse(
                where,
                _name(entry),
                entry.get("class_name", "?"),
                f"takes its input from {src or 'nothing'}, not from the layer before it ({_name(prev)!r}); "
                "only simple chains are supported",
            )


def _input_shape(layers: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """(L, C) of the model input as saved (None where the file leaves it open)."""
    for entry in layers[:2]:
        c = entry.get("config") or {}
        shape = c.get("batch_input_shape") or c.get("batch_shape")
        if shape is None and entry.get("build_config"):
            shape = entry["build_config"].get("input_shape")
        if shape is not None and len(shape) == 3:
            return shape[1], shape[2]
    return None, None


# ====================================================================== weights
class _Weights:
    """Arrays of one layer, by Keras variable name (kernel, recurrent_kernel, bias)."""

    def __init__(self, arrays: list[np.ndarray], names: list[str]) -> None:
        self.by_name = dict(zip(names, arrays, strict=True))

    def get(self, name: str, where: str) -> np.ndarray:
        if name not in self.by_name:
            raise QlstmError(f"{where}: no {name} array (found {sorted(self.by_name)})")
        return np.asarray(self.by_name[name], dtype=np.float64)


def _h5_layer_weights(f: Any, layer: str, where: str) -> _Weights:
    """Keras 2 legacy HDF5: ``model_weights/<layer>`` with its ``weight_names`` attribute."""
    root = f.get("model_weights", f)
    if layer not in root:
        raise QlstmError(f"{where}: layer {layer!r} has no weight group in the file")
    g = root[layer]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
    arrays = [np.asarray(g[n]) for n in names]
    short = [n.rsplit("/", 1)[-1].split(":")[0] for n in names]
    return _Weights(arrays, short)


_VAR_NAMES = {
    "lstm": ["kernel", "recurrent_kernel", "bias"],
    "gru": ["kernel", "recurrent_kernel", "bias"],
    "dense": ["kernel", "bias"],
}


def _keras3_layer_weights(f: Any, path: str, kind: str, use_bias: bool, where: str) -> _Weights:
    """Keras 3 ``model.weights.h5``: ``<path>/vars/0..n`` in creation order."""
    if path not in f and "_layer_checkpoint_dependencies" in f:
        path = path.replace("layers", "_layer_checkpoint_dependencies", 1)
    if path not in f or "vars" not in f[path]:
        raise QlstmError(f"{where}: no weights at {path}/vars in model.weights.h5")
    g = f[path]["vars"]
    names = _VAR_NAMES[kind][: len(g)]
    expected = len(_VAR_NAMES[kind]) - (0 if use_bias else 1)
    if len(g) != expected:
        raise QlstmError(f"{where}: {path}/vars holds {len(g)} arrays, expected {expected}")
    return _Weights([np.asarray(g[str(i)]) for i in range(len(g))], names)


# ====================================================================== conversion
def _recurrent(
    imp: Imported, entry: dict[str, Any], w: _Weights, n_in: int, where: str, is_last: bool
) -> None:
    cls, name, c = entry["class_name"], _name(entry), entry.get("config") or {}
    cell = RECURRENT[cls]
    for flag, reason in (
        ("go_backwards", "go_backwards runs the sequence in reverse; the firmware runs forward"),
        ("stateful", "stateful layers carry state across windows; the firmware starts every window at zero"),
        (
            "return_state",
            "return_state is not supported (the next layer must read the sequence or last step)",
        ),
        ("time_major", "time_major inputs are not supported (hls4ml refuses them too)"),
    ):
        if c.get(flag):
            raise refuse(where, name, cls, reason)
    act, ract = (
        _activation(c.get("activation", "tanh")),
        _activation(c.get("recurrent_activation", "sigmoid")),
    )
    if act != "tanh":
        raise refuse(
            where, name, cls, f"activation {act!r}: only tanh is supported (the firmware's tanh table)"
        )
    if ract == "hard_sigmoid":
        raise refuse(
            where,
            name,
            cls,
            "recurrent_activation 'hard_sigmoid': hls4ml's recurrent kernels compute only relu/sigmoid/tanh "
            "(nnet_recr_activations.h) and qlstm's firmware uses the sigmoid table; retrain with sigmoid",
        )
    if ract != "sigmoid":
        raise refuse(where, name, cls, f"recurrent_activation {ract!r}: only sigmoid is supported")
    if c.get("return_sequences", False) == is_last:
        why = (
            "the last recurrent layer returns sequences; qlstm's head reads the final step only"
            if is_last
            else "return_sequences is false, but another recurrent layer follows"
        )
        raise refuse(where, name, cls, why)
    units = int(c["units"])
    use_bias = c.get("use_bias", True)
    kernel = w.get("kernel", f"{where}: layer {name!r}")
    rec = w.get("recurrent_kernel", f"{where}: layer {name!r}")
    g = 4 if cell == "lstm" else 3
    if kernel.shape != (n_in, g * units) or rec.shape != (units, g * units):
        raise refuse(
            where,
            name,
            cls,
            f"kernel {kernel.shape} / recurrent_kernel {rec.shape} do not match {n_in} -> {units} units",
        )
    perm = KERAS_TO_TORCH[cell]
    w_ih = permute_gates(kernel.T, cell, units, perm)
    w_hh = permute_gates(rec.T, cell, units, perm)
    zeros = np.zeros(g * units)
    if cell == "lstm":
        b = w.get("bias", f"{where}: layer {name!r}") if use_bias else zeros
        if b.shape != (g * units,):
            raise refuse(where, name, cls, f"bias of shape {b.shape}, expected ({g * units},)")
        imp.add_recurrent(name, cell, w_ih, w_hh, permute_gates(b, cell, units, perm), zeros)
        return
    if not c.get("reset_after", True):
        raise refuse(
            where,
            name,
            cls,
            "reset_after=False applies the reset gate before the recurrent product; hls4ml's gru kernels "
            "(nnet_recurrent.h) and qlstm's firmware compute reset_after=True only; retrain with reset_after=True",
        )
    b = w.get("bias", f"{where}: layer {name!r}") if use_bias else np.zeros((2, g * units))
    if b.shape != (2, g * units):
        raise refuse(
            where, name, cls, f"bias of shape {b.shape}, expected (2, {g * units}) for reset_after=True"
        )
    imp.add_recurrent(
        name, cell, w_ih, w_hh, permute_gates(b[0], cell, units, perm), permute_gates(b[1], cell, units, perm)
    )


def _convert(config: dict[str, Any], weights_of: Any, fmt: str, where: str) -> Imported:
    """The layer chain of ``config`` with arrays from ``weights_of(entry, kind, use_bias)``."""
    _, layers = _layers_of(config, where)
    imp = Imported(fmt=fmt)
    length, channels = _input_shape(layers)
    if channels is None:
        raise QlstmError(f"{where}: the model does not record its input shape (build it before saving)")
    imp.history, imp.input_channels = length, int(channels)
    n_in = int(channels)
    body = [e for e in layers if e.get("class_name") not in SKIPPED]
    for e in body:
        cls = e.get("class_name", "?")
        if cls in REFUSED:
            raise refuse(where, _name(e), cls, REFUSED[cls])
        if cls not in RECURRENT and cls not in ("Dense", "Activation"):
            raise refuse(
                where, _name(e), cls, "not a supported layer type (LSTM, GRU, Dense, Activation, Dropout)"
            )
    rec_idx = [i for i, e in enumerate(body) if e["class_name"] in RECURRENT]
    if not rec_idx:
        raise QlstmError(f"{where}: no LSTM or GRU layer; qlstm imports recurrent models")
    last_rec = rec_idx[-1]
    for e in body[:last_rec]:
        if e["class_name"] not in RECURRENT:
            raise refuse(
                where, _name(e), e["class_name"], "only recurrent layers may precede the last recurrent layer"
            )
    for e in body[: last_rec + 1]:
        w = weights_of(e, RECURRENT[e["class_name"]], (e.get("config") or {}).get("use_bias", True))
        _recurrent(imp, e, w, n_in, where, e is body[last_rec])
        n_in = imp.units[-1]
    head = body[last_rec + 1 :]
    if not any(e["class_name"] == "Dense" for e in head):
        raise QlstmError(f"{where}: no Dense layer after the recurrent layers; qlstm needs at least one")
    for e in head:
        c = e.get("config") or {}
        cls = e["class_name"]
        act = _activation(c.get("activation"))
        act = activation_name(where, _name(e), cls, "linear" if act in LINEAR else act)
        if cls == "Activation":
            imp.add_activation(where, _name(e), cls, act)
            continue
        use_bias = c.get("use_bias", True)
        w = weights_of(e, "dense", use_bias)
        kernel = w.get("kernel", f"{where}: layer {_name(e)!r}")
        k = int(c.get("units", kernel.shape[-1]))
        if kernel.shape != (n_in, k):
            raise refuse(where, _name(e), "Dense", f"kernel {kernel.shape} does not match {n_in} -> {k}")
        bias = w.get("bias", f"{where}: layer {_name(e)!r}") if use_bias else np.zeros(k)
        if act == "softmax" and (c.get("axis", -1) not in (-1, None)):
            raise refuse(where, _name(e), cls, "softmax over another axis than the last is not supported")
        imp.add_dense(_name(e), kernel.T, bias, act)
        n_in = k
    return imp


# ====================================================================== the two formats
def read_h5(path: Path) -> Imported:
    """A Keras 2 / tf.keras legacy HDF5 model file."""
    import h5py

    where = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise QlstmError(f"{where}: not a readable HDF5 file ({exc})") from None
    with f:
        raw = f.attrs.get("model_config")
        if raw is None:
            raise QlstmError(
                f"{where}: no model_config attribute; a weights-only file cannot say the architecture "
                "(save the whole model, or use the PyTorch YAML route)"
            )
        try:
            config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        except json.JSONDecodeError as exc:
            raise QlstmError(f"{where}: corrupt model_config ({exc})") from None
        version = f.attrs.get("keras_version", b"?")
        version = version.decode() if isinstance(version, bytes) else str(version)
        imp = _convert(config, lambda e, kind, ub: _h5_layer_weights(f, _name(e), where), "keras-h5", where)
        imp.notes.append(f"keras_version {version}")
        return imp


def read_keras(path: Path) -> Imported:
    """A Keras 3 ``.keras`` archive (``config.json`` + ``model.weights.h5``)."""
    import h5py

    where = str(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise QlstmError(f"{where}: no config.json in the archive; not a .keras model")
            if "model.weights.h5" not in names:
                raise QlstmError(
                    f"{where}: no model.weights.h5 in the archive (npz weights are not supported)"
                )
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            blob = z.read("model.weights.h5")
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as exc:
        raise QlstmError(f"{where}: not a readable .keras archive ({type(exc).__name__}: {exc})") from None
    counters: dict[str, int] = {}
    paths: dict[int, str] = {}
    _, layers = _layers_of(config, where)
    for e in layers:
        if e.get("class_name") == "InputLayer" and config.get("class_name") == "Sequential":
            continue
        base = _snake(str(e.get("class_name")))
        n = counters.get(base)
        counters[base] = 0 if n is None else n + 1
        paths[id(e)] = f"layers/{base}" if n is None else f"layers/{base}_{n + 1}"

    try:
        f = h5py.File(io.BytesIO(blob), "r")
    except OSError as exc:
        raise QlstmError(f"{where}: model.weights.h5 is not readable HDF5 ({exc})") from None

    def weights_of(e: dict[str, Any], kind: str, use_bias: bool) -> Any:
        p = paths[id(e)] + ("/cell" if kind in ("lstm", "gru") else "")
        return _keras3_layer_weights(f, p, kind, use_bias, f"{where}: layer {_name(e)!r}")

    with f:
        # _layers_of returns the very dicts of `config`, so id() keys match
        imp = _convert(config, weights_of, "keras", where)
    imp.notes.append(f"keras_version {meta.get('keras_version', '?')}")
    return imp
