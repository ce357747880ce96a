"""The ``onnx`` backend of ``qlstm predict``: run the run folder's exported file in onnxruntime.

A float run uses ``RUN_DIR/model.onnx``; a quantised run ``RUN_DIR/model.qonnx.onnx``
(lowered to standard ops, float64). The file is (re-)exported first when it is absent or was
written from other weights or another description than the run folder now holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm.errors import QlstmError
from qlstm.export.api import DEFAULT_FILES, batch_size, default_format, export, run_session, session
from qlstm.export.graph import read_metadata, weights_sha256

_SESSIONS: dict[tuple[str, int, int], Any] = {}


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


def model_path(run_dir: Path) -> Path:
    """The exported file for ``run_dir``, exporting it first if absent or stale."""
    run_dir = Path(run_dir)
    desc, weights = description.load(run_dir)
    fmt = default_format(desc)
    path = run_dir / DEFAULT_FILES[fmt]
    if not _current(path, desc, weights):
        export(run_dir, fmt, path)
    return path


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64 through the exported ONNX/QONNX file."""
    import onnx

    run_dir = Path(run_dir)
    desc, _ = description.load(run_dir)
    a = desc.architecture
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (a.history, a.input_channels):
        raise QlstmError(
            f"{run_dir}: input windows have shape {x.shape}, the model expects (N, {a.history}, {a.input_channels})"
        )
    path = model_path(run_dir)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SESSIONS:
        _SESSIONS.clear()
        _SESSIONS[key] = session(onnx.load_model(str(path)))
    return run_session(_SESSIONS[key], x, batch_size(desc))
