"""The ``onnx`` backend of ``qlstm predict``: run the run folder's exported file in onnxruntime.

A float run uses ``RUN_DIR/model.onnx``; a quantized run ``RUN_DIR/model.qonnx.onnx``
(lowered to standard ops, float64). The file is (re-)exported first when it is absent or was
written from other weights or another description than the run folder now holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm.errors import QlstmError
from qlstm.export.api import (
    DEFAULT_FILES,
    batch_size,
    build_model,
    default_format,
    export,
    run_session,
    session,
)
from qlstm.export.graph import read_metadata
from qlstm.io import weights_sha256

log = logging.getLogger(__name__)
_SESSIONS: dict[tuple[str, int], Any] = {}


def _current(path: Path, desc: description.ModelDescription, weights: dict[str, np.ndarray]) -> bool:
    import onnx

    if not path.is_file():
        return False
    try:
        meta = read_metadata(onnx.load_model(str(path), load_external_data=False))
    except Exception:  # a truncated/corrupt file is simply rebuilt
        return False
    try:
        same_desc = json.loads(meta.get("qlstm.description", "null")) == json.loads(
            json.dumps(desc.to_dict())
        )
    except json.JSONDecodeError:
        return False
    return same_desc and meta.get("qlstm.weights_sha256") == weights_sha256(weights)


def load_model(run_dir: Path) -> tuple[Any, str]:
    """The exported ModelProto of ``run_dir`` and where it came from.

    Reads ``RUN_DIR/model.onnx`` / ``model.qonnx.onnx`` when it matches the run folder; otherwise
    exports it there first. A run folder that cannot be written to (read-only archive) still
    predicts: the model is then built in memory and a warning says so.
    """
    import onnx

    run_dir = Path(run_dir)
    desc, weights = description.load(run_dir)
    fmt = default_format(desc)
    path = run_dir / DEFAULT_FILES[fmt]
    if not _current(path, desc, weights):
        try:
            export(run_dir, fmt, path)
        except OSError as exc:
            log.warning("cannot write %s (%s); using an in-memory export", path, exc.strerror or exc)
            return build_model(desc, weights, fmt), "memory"
    return onnx.load_model(str(path)), str(path)


def _checked(run_dir: Path, x: np.ndarray) -> tuple[description.ModelDescription, np.ndarray]:
    desc, _ = description.load(run_dir)
    a = desc.architecture
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (a.history, a.input_channels):
        raise QlstmError(
            f"{run_dir}: input windows have shape {x.shape}, the model expects (N, {a.history}, {a.input_channels})"
        )
    return desc, x


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64 through the exported ONNX/QONNX file."""
    run_dir = Path(run_dir)
    desc, x = _checked(run_dir, x)
    model, where = load_model(run_dir)
    if where == "memory":
        return run_session(session(model), x, batch_size(desc))
    key = (where, Path(where).stat().st_mtime_ns)
    if key not in _SESSIONS:
        _SESSIONS.clear()
        _SESSIONS[key] = session(model)
    return run_session(_SESSIONS[key], x, batch_size(desc))


def trace(run_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Intermediates of the exported graph under the firmware backend's trace names.

    QONNX (quantized run): ``input``, per layer ``rnn{i}.x_acc``, ``h_acc``, ``preact``,
    ``gates`` ((N, L, G*H), PyTorch gate order), LSTM ``c``/``tanh_c``, GRU ``r_h``, ``h``
    ((N, L, H)), ``rnn{i}`` (the layer output), ``head.acc`` and ``head``: so
    ``trace(run, x)[name] == qlstm.firmware_sim.backend.trace(run, x)[name]`` localises a
    mismatch. Float ONNX: ``rnn{i}`` and ``head``.
    """
    from onnx import TensorProto, helper

    run_dir = Path(run_dir)
    desc, x = _checked(run_dir, x)
    model, _ = load_model(run_dir)
    wanted = _trace_tensors(desc)
    model.graph.output.extend(
        helper.make_tensor_value_info(t, TensorProto.DOUBLE if desc.quantized else TensorProto.FLOAT, None)
        for t in sorted({t for parts in wanted.values() for step in parts for t in step})
    )
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    dtype = np.float64 if desc.quantized else np.float32
    values = dict(zip(names, sess.run(None, {"x": x.astype(dtype)}), strict=True))
    n = x.shape[0]
    out: dict[str, np.ndarray] = {}
    for name, steps in wanted.items():
        per_step = [np.concatenate([_batch(values[t], n) for t in parts], axis=-1) for parts in steps]
        out[name] = per_step[0] if len(per_step) == 1 else np.stack(per_step, axis=1)
    if not desc.quantized:  # LSTM/GRU Y is (L, 1, N, H)
        out = {k: (np.moveaxis(v[:, 0], 0, 1) if k.startswith("rnn") else v) for k, v in out.items()}
    last = len(desc.architecture.layers) - 1
    for i in range(last + 1):
        seq = out[f"rnn{i}.h"] if desc.quantized else out[f"rnn{i}"]
        out[f"rnn{i}"] = seq[:, -1] if i == last else seq
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _batch(v: np.ndarray, n: int) -> np.ndarray:
    """A constant (G*H,) tensor (the t = 0 recurrent product is its bias) repeated per window."""
    return np.broadcast_to(v, (n, v.shape[-1])) if v.ndim == 1 else v


def _trace_tensors(desc: description.ModelDescription) -> dict[str, list[list[str]]]:
    """trace name -> per time step, the graph tensors concatenated along the last axis."""
    a = desc.architecture
    if not desc.quantized:
        return {**{f"rnn{i}": [[f"rnn{i}.Y"]] for i in range(len(a.layers))}, "head": [["y"]]}
    out: dict[str, list[list[str]]] = {"input": [["x_q"]]}
    for i, layer in enumerate(a.layers):
        steps = [f"rnn{i}.t{t}" for t in range(a.history)]
        out[f"rnn{i}.x_acc"] = [[f"rnn{i}.Wx.acc"]]
        out[f"rnn{i}.h_acc"] = [[f"{s}.Uh.acc" if t else f"rnn{i}.b_r_acc"] for t, s in enumerate(steps)]
        if layer.cell == "lstm":
            out[f"rnn{i}.preact"] = [[f"{s}.pre"] for s in steps]
            out[f"rnn{i}.gates"] = [[f"{s}.ifo.0", f"{s}.ifo.1", f"{s}.g.acc", f"{s}.ifo.2"] for s in steps]
            out[f"rnn{i}.c"] = [[f"{s}.c"] for s in steps]
            out[f"rnn{i}.tanh_c"] = [[f"{s}.tanh_c.acc"] for s in steps]
        else:
            out[f"rnn{i}.preact"] = [[f"{s}.pre_rz", f"{s}.pre_n"] for s in steps]
            out[f"rnn{i}.gates"] = [[f"{s}.sigm.acc", f"{s}.n.acc"] for s in steps]
            out[f"rnn{i}.r_h"] = [[f"{s}.r_hn"] for s in steps]
        out[f"rnn{i}.h"] = [[f"{s}.h"] for s in steps]
    for nm, d in zip(a.head_names(), a.head, strict=True):
        out[f"{nm}.acc"] = [[f"{nm}.acc"]]
        if d.activation == "linear":
            out[nm] = [[f"{nm}.result"]]
        else:
            out[f"{nm}.result"] = [[f"{nm}.result"]]
            out[nm] = [[f"{nm}.act" if d.activation == "relu" else f"{nm}.act.acc"]]
    return out
