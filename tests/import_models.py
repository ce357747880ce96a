"""Test helpers for ``qlstm import``: Keras-layout files written with h5py from known weights,
and NumPy forwards written from the frameworks' documented equations, independent of qlstm.

The Keras writers imitate what Keras writes (layouts read from keras-team/keras
``saving_lib.py`` and tf.keras' legacy ``hdf5_format.py``, and hls4ml's Keras readers):

* Keras 2 ``.h5``: root attributes ``model_config`` (JSON), ``keras_version``, ``backend``;
  ``model_weights/<layer>`` groups with a ``weight_names`` attribute (``lstm/lstm_cell/kernel:0``)
  and the arrays at those paths inside the group;
* Keras 3 ``.keras``: a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5`` with
  arrays at ``layers/<class snake case>[_n]/vars/<i>`` (recurrent: ``.../cell/vars/<i>``).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def act(name: str | None, v: np.ndarray) -> np.ndarray:
    """Keras / PyTorch activation functions by name, from their definitions."""
    if name in (None, "linear"):
        return v
    if name == "relu":
        return np.where(v > 0, v, 0.0)
    if name == "sigmoid":
        return sigmoid(v)
    if name == "tanh":
        return np.tanh(v)
    assert name == "softmax", name
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ====================================================================== Keras-layout layers
def keras_layer(
    cls: str, name: str, rng: np.random.Generator | None = None, n_in: int = 0, **cfg: Any
) -> dict:
    """One layer: its Keras config and (for LSTM/GRU/Dense) random arrays in Keras layout."""
    config = {"name": name, "trainable": True, "dtype": "float32", **cfg}
    arrays: dict[str, np.ndarray] = {}
    if cls in ("LSTM", "GRU"):
        units = cfg["units"]
        g = 4 if cls == "LSTM" else 3
        config = {
            "return_sequences": False,
            "return_state": False,
            "go_backwards": False,
            "stateful": False,
            "unroll": False,
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
            **({"reset_after": True} if cls == "GRU" else {"unit_forget_bias": True}),
            **config,
        }
        assert rng is not None
        arrays["kernel"] = rng.normal(0, 0.5, (n_in, g * units)).astype(np.float32)
        arrays["recurrent_kernel"] = rng.normal(0, 0.5, (units, g * units)).astype(np.float32)
        if config["use_bias"]:
            shape = (2, g * units) if cls == "GRU" and config["reset_after"] else (g * units,)
            arrays["bias"] = rng.normal(0, 0.3, shape).astype(np.float32)
    elif cls == "Dense":
        config = {"activation": "linear", "use_bias": True, **config}
        assert rng is not None
        arrays["kernel"] = rng.normal(0, 0.5, (n_in, cfg["units"])).astype(np.float32)
        if config["use_bias"]:
            arrays["bias"] = rng.normal(0, 0.3, (cfg["units"],)).astype(np.float32)
    return {"class_name": cls, "config": config, "arrays": arrays}


def stack(spec: list[tuple[str, dict]], channels: int, seed: int = 0) -> list[dict]:
    """Layers from ``[(class, config), ...]`` with chained input sizes and seeded weights."""
    rng = np.random.default_rng(seed)
    n_in, out, counts = channels, [], {}
    for cls, cfg in spec:
        base = {"LSTM": "lstm", "GRU": "gru", "Dense": "dense", "Dropout": "dropout"}.get(cls, cls.lower())
        k = counts.get(base, -1) + 1
        counts[base] = k
        name = cfg.pop("name", base if k == 0 else f"{base}_{k}")
        out.append(keras_layer(cls, name, rng, n_in, **cfg))
        if "units" in cfg:
            n_in = cfg["units"]
    return out


def _var_names(layer: dict) -> list[str]:
    return [k for k in ("kernel", "recurrent_kernel", "bias") if k in layer["arrays"]]


def write_keras2_h5(
    path: Path,
    layers: list[dict],
    history: int | None,
    channels: int,
    functional: bool = False,
    legacy: bool = False,
) -> None:
    """A tf.keras 2.x ``model.save('m.h5')`` file; ``legacy``: Keras 2.2 style (Sequential config a
    plain list, input shape in the first layer's config, weight names without the cell scope)."""
    inp = {
        "class_name": "InputLayer",
        "config": {"batch_input_shape": [None, history, channels], "dtype": "float32", "sparse": False,
                   "ragged": False, "name": "input_1"},
    }  # fmt: skip
    entries = [{"class_name": e["class_name"], "config": e["config"]} for e in layers]
    if functional:
        prev = "input_1"
        full = [{**inp, "name": "input_1", "inbound_nodes": []}]
        for e in entries:
            full.append({**e, "name": e["config"]["name"], "inbound_nodes": [[[prev, 0, 0, {}]]]})
            prev = e["config"]["name"]
        cfg = {"class_name": "Functional", "config": {"name": "model", "layers": full,
               "input_layers": [["input_1", 0, 0]], "output_layers": [[prev, 0, 0]]}}  # fmt: skip
    elif legacy:
        entries[0]["config"] = {**entries[0]["config"], "batch_input_shape": [None, history, channels]}
        cfg = {"class_name": "Sequential", "config": entries}
    else:
        cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [inp, *entries]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(
            {**cfg, "keras_version": "2.13.1", "backend": "tensorflow"}
        ).encode()
        f.attrs["keras_version"] = b"2.13.1"
        f.attrs["backend"] = b"tensorflow"
        mw = f.create_group("model_weights")
        saved = (
            [{"class_name": "InputLayer", "config": {"name": "input_1"}, "arrays": {}}] if functional else []
        ) + layers
        mw.attrs["layer_names"] = [e["config"]["name"].encode() for e in saved]
        for e in saved:
            name = e["config"]["name"]
            g = mw.create_group(name)
            cell = None if legacy else {"LSTM": "lstm_cell", "GRU": "gru_cell"}.get(e["class_name"])
            names = [f"{name}/{cell}/{v}:0" if cell else f"{name}/{v}:0" for v in _var_names(e)]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, v in zip(names, _var_names(e), strict=True):
                g.create_dataset(n, data=e["arrays"][v])


def _snake(cls: str) -> str:
    return {"LSTM": "lstm", "GRU": "gru", "Dense": "dense", "Dropout": "dropout", "InputLayer": "input_layer",
            "Masking": "masking", "Activation": "activation"}.get(cls, cls.lower())  # fmt: skip


def write_keras3(
    path: Path, layers: list[dict], history: int | None, channels: int, functional: bool = False
) -> None:
    """A Keras 3 ``model.save('m.keras')`` archive."""
    shape = [None, history, channels]
    inp = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
           "config": {"batch_shape": shape, "dtype": "float32", "sparse": False, "name": "input_layer"}}  # fmt: skip
    entries = []
    for e in layers:
        entries.append({"module": "keras.layers", "class_name": e["class_name"], "config": e["config"],
                        "registered_name": None, "build_config": {"input_shape": shape}})  # fmt: skip
    if functional:
        prev, full = "input_layer", [{**inp, "name": "input_layer", "inbound_nodes": []}]
        for e in entries:
            arg = {"class_name": "__keras_tensor__", "config": {"shape": shape, "dtype": "float32",
                   "keras_history": [prev, 0, 0]}}  # fmt: skip
            full.append({**e, "name": e["config"]["name"], "inbound_nodes": [{"args": [arg], "kwargs": {}}]})
            prev = e["config"]["name"]
        cfg = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
               "config": {"name": "functional", "layers": full, "input_layers": ["input_layer", 0, 0],
                          "output_layers": [prev, 0, 0]}}  # fmt: skip
    else:
        cfg = {"module": "keras", "class_name": "Sequential", "registered_name": None,
               "config": {"name": "sequential", "layers": [inp, *entries], "build_input_shape": shape},
               "build_config": {"input_shape": shape}}  # fmt: skip
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        counts: dict[str, int] = {}
        container = (["InputLayer"] if functional else []) + [e["class_name"] for e in layers]
        objs = ([{"class_name": "InputLayer", "arrays": {}}] if functional else []) + layers
        for cls, e in zip(container, objs, strict=True):
            base = _snake(cls)
            n = counts.get(base)
            counts[base] = 0 if n is None else n + 1
            p = f"layers/{base}" if n is None else f"layers/{base}_{n + 1}"
            f.create_group(p).create_group("vars")
            if cls in ("LSTM", "GRU"):
                p += "/cell"
                f.create_group(p).create_group("vars")
            for i, v in enumerate(_var_names(e)):
                f[p]["vars"][str(i)] = e["arrays"][v]
        f.create_group("vars")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "metadata.json", json.dumps({"keras_version": "3.8.0", "date_saved": "2026-11-30@12:00:00"})
        )
        z.writestr("config.json", json.dumps(cfg))
        z.writestr("model.weights.h5", buf.getvalue())


# ====================================================================== NumPy forwards
def keras_forward(layers: list[dict], x: np.ndarray) -> np.ndarray:
    """Keras semantics on Keras-layout arrays (float64): LSTM gates i, f, c, o; GRU z, r, h with
    ``reset_after`` (``hh = tanh(x W_h + b_h + r * (h U_h + b_rh))``, ``h = z h + (1 - z) hh``)."""
    seq = np.asarray(x, dtype=np.float64)
    out = None
    for e in layers:
        cls, a, c = e["class_name"], {k: v.astype(np.float64) for k, v in e["arrays"].items()}, e["config"]
        if cls == "Dropout":
            continue
        if cls == "Activation":
            out = seq = act(c["activation"], seq)
            continue
        if cls == "Dense":
            out = seq = act(c.get("activation"), seq @ a["kernel"] + a.get("bias", 0.0))
            continue
        n, steps, _ = seq.shape
        units = c["units"]
        h = np.zeros((n, units))
        cs = np.zeros((n, units))
        hs = []
        for t in range(steps):
            xt = seq[:, t]
            if cls == "LSTM":
                z = xt @ a["kernel"] + h @ a["recurrent_kernel"] + a.get("bias", 0.0)
                i, f, g, o = np.split(z, 4, axis=1)
                cs = sigmoid(f) * cs + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(cs)
            else:
                b = a.get("bias", np.zeros((2, 3 * units)))
                xz = xt @ a["kernel"] + b[0]
                hz = h @ a["recurrent_kernel"] + b[1]
                z = sigmoid(xz[:, :units] + hz[:, :units])
                r = sigmoid(xz[:, units : 2 * units] + hz[:, units : 2 * units])
                hh = np.tanh(xz[:, 2 * units :] + r * hz[:, 2 * units :])
                h = z * h + (1 - z) * hh
            hs.append(h)
        seq = np.stack(hs, axis=1) if c["return_sequences"] else hs[-1]
    assert out is not None
    return out


def torch_forward(
    layers: list[tuple[str, dict[str, np.ndarray]]], head: tuple | list, x: np.ndarray
) -> np.ndarray:
    """PyTorch ``nn.LSTM``/``nn.GRU`` equations (docs) on PyTorch-layout arrays, then ``h_L W^T + b``
    (``head`` a ``(W, b)`` pair, or a list of ``(W, b, activation)`` applied in order)."""
    seq = np.asarray(x, dtype=np.float64)
    for cell, p in layers:
        w_ih, w_hh, b_ih, b_hh = (
            np.asarray(p[k], dtype=np.float64) for k in ("w_ih", "w_hh", "b_ih", "b_hh")
        )
        units = w_hh.shape[1]
        n, steps, _ = seq.shape
        h, c = np.zeros((n, units)), np.zeros((n, units))
        hs = []
        for t in range(steps):
            gi = seq[:, t] @ w_ih.T + b_ih
            gh = h @ w_hh.T + b_hh
            if cell == "lstm":
                i, f, g, o = np.split(gi + gh, 4, axis=1)
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            else:
                r = sigmoid(gi[:, :units] + gh[:, :units])
                z = sigmoid(gi[:, units : 2 * units] + gh[:, units : 2 * units])
                nn_ = np.tanh(gi[:, 2 * units :] + r * gh[:, 2 * units :])
                h = (1 - z) * nn_ + z * h
            hs.append(h)
        seq = np.stack(hs, axis=1)
    y = seq[:, -1]
    for w, b, a in head if isinstance(head, list) else [(*head, "linear")]:
        y = act(a, y @ np.asarray(w, dtype=np.float64).T + np.asarray(b, dtype=np.float64))
    return y


def torch_params(module: Any) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``[(cell, {w_ih, w_hh, b_ih, b_hh}), ...]`` of every layer of every nn.LSTM/nn.GRU in order."""
    import torch

    out = []
    for m in module.modules():
        if isinstance(m, torch.nn.LSTM | torch.nn.GRU):
            cell = "lstm" if isinstance(m, torch.nn.LSTM) else "gru"
            for j in range(m.num_layers):
                out.append(
                    (cell, {k: getattr(m, f"{t}_l{j}").detach().double().numpy() for k, t in
                            (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))})
                )  # fmt: skip
    return out
