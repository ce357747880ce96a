"""The ``csim`` backend of ``qlstm predict``: the compiled hls4ml C simulation of a quantised run.

The first call for a run compiles the C simulation (seconds to minutes, with g++); later calls,
in any process, load it from the content-hash cache (see :mod:`qlstm.hls.csim`). The part and
clock do not change the C++ of the kernels; the implementation options do (with a saturating
accumulator the resource strategy's reuse factor changes the order of the sums), so they are
those of the hls4ml project given (``options``, e.g. from :func:`project_options`), else
hls4ml's defaults (io_parallel, latency, reuse factor 1, static). Windows run in parallel
processes over chunks (:meth:`qlstm.hls.csim.CSim.predict`), one per thread of
:func:`qlstm.threads.count`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm import threads as qlstm_threads
from qlstm.errors import QlstmError

from .csim import CSim, build_csim
from .graph import HlsOptions  # the one line to change when HlsConfig replaces HlsOptions
from .project import METADATA


def project_options(project_dir: Path, desc: description.ModelDescription | None = None) -> dict[str, Any]:
    """The implementation options of a ``qlstm hls`` project folder (its ``qlstm_hls.json``), as
    plain fields (io_type, strategy, reuse, static, backend); with ``desc``, the project must
    have been generated from a model of the same architecture and types (the description's
    fingerprint; the weights may differ)."""
    path = Path(project_dir) / METADATA
    try:
        meta = json.loads(path.read_text())
        opts = HlsOptions(**meta["options"])
    except FileNotFoundError:
        raise QlstmError(f"{project_dir}: not a qlstm hls project (no {METADATA})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QlstmError(f"{path}: unreadable project metadata ({type(exc).__name__}: {exc})") from None
    if desc is not None and meta.get("model_fingerprint") != desc.fingerprint():
        raise QlstmError(
            f"{project_dir}: this hls project was generated from another model than the run's (architecture or types differ)"
        )
    return opts.to_dict()


def load_csim(run_dir: Path, options: dict[str, Any] | None = None) -> CSim:
    """The C simulation of the quantised run in ``run_dir`` with ``options`` (compiled once, then cached)."""
    desc, weights = description.load(Path(run_dir))
    return build_csim(desc, weights, **(options or {}))


def predict(run_dir: Path, x: np.ndarray, options: dict[str, Any] | None = None) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64 predictions of the C simulation."""
    return load_csim(run_dir, options).predict(x, workers=qlstm_threads.count())


def trace(run_dir: Path, x: np.ndarray, options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Every layer's output in the C simulation: ``rnn0`` ... and ``head`` (see ``CSim.trace``)."""
    return load_csim(run_dir, options).trace(x)
