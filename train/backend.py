"""The ``float`` backend of ``qlstm predict``: the run's weights in PyTorch, computed in float64.

The model is rebuilt from the run folder's description and ``weights.npz`` (the contract every
stage reads). For a float run, ``checkpoint.pt`` is also read (``weights_only=True``) and must hold
the same numbers, so a corrupt, truncated or mismatched checkpoint is reported, not ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlstm import description
from qlstm.errors import QlstmError
from qlstm.runs import CHECKPOINT_FILE
from qlstm.train.model import Predictor, activate, from_weights, predict_array, state_dict_to_weights


def load_checkpoint(run_dir: Path) -> dict[str, np.ndarray]:
    """``checkpoint.pt`` as description-layout weights; a clear error if corrupt or truncated."""
    import torch

    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    desc, _ = description.load(run_dir)
    if not path.is_file():
        raise QlstmError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # RuntimeError (bad zip), EOFError, UnpicklingError ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise QlstmError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise QlstmError(f"{path}: corrupt checkpoint (not a state_dict of tensors)")
    try:
        return state_dict_to_weights(desc.architecture, state)
    except QlstmError as exc:
        raise QlstmError(f"{path}: corrupt checkpoint ({exc})") from None


def check_checkpoint(run_dir: Path, weights: dict[str, np.ndarray]) -> None:
    """A float run's ``checkpoint.pt``, when present (an imported run has none), must load and hold
    ``weights`` (its ``weights.npz``) exactly: a corrupt, truncated or mismatched checkpoint is one
    error line. The one check of the float backend and of ``qlstm quantize``. Raises QlstmError."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_FILE).exists():
        return
    ckpt = load_checkpoint(run_dir)
    for k, w in weights.items():
        if ckpt[k].shape != w.shape or not np.array_equal(ckpt[k], w):
            raise QlstmError(
                f"{run_dir / CHECKPOINT_FILE}: corrupt checkpoint ({k} differs from {description.WEIGHTS_FILE})"
            )


def load_model(run_dir: Path) -> Predictor:
    """The run's model in eval mode; for float runs the checkpoint must match ``weights.npz``."""
    run_dir = Path(run_dir)
    desc, weights = description.load(run_dir)
    if not desc.quantized:
        check_checkpoint(run_dir, weights)
    return from_weights(desc.architecture, weights)


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64 predictions of the run's float model."""
    model = load_model(run_dir)
    return predict_array(model, np.asarray(x))


def trace(run_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-layer outputs in float64: ``rnn{i}`` (N, L, H) hidden sequence of layer i and
    ``head`` (N, k), for localising a mismatch against another backend."""
    import torch

    model = load_model(run_dir).double()
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        h = torch.from_numpy(np.asarray(x, dtype=np.float64))
        for i, rnn in enumerate(model.rnns):
            h, _ = rnn(h)
            out[f"rnn{i}"] = h.numpy().copy()
        y = h[:, -1, :]
        for lin, d in zip(model.hidden, model.arch.head[:-1], strict=True):
            y = activate(d.activation, lin(y))
        out["head"] = activate(model.arch.head[-1].activation, model.head(y)).numpy().copy()
    return out
