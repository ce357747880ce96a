"""The ``csim`` backend of ``qlstm predict``: the compiled hls4ml C simulation of a quantized run.

The first call for a run compiles the C simulation (seconds to minutes, with g++); later calls,
in any process, load it from the content-hash cache (see :mod:`qlstm.hls.csim`). The part and
clock do not change the C++ of the kernels; the implementation options do (with a saturating
accumulator the resource strategy's reuse factor changes the order of the sums), so they are
those of the hls4ml project given (``config``, e.g. from :func:`project_config`), else
hls4ml's defaults (io_parallel, latency, reuse factor 1, static). Windows run in parallel
processes over chunks (:meth:`qlstm.hls.csim.CSim.predict`), one per thread of
:func:`qlstm.threads.count`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlstm import description
from qlstm import threads as qlstm_threads
from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig
from qlstm.runs import read_hls_project

from .csim import CSim, build_csim


def project_config(project_dir: Path, desc: description.ModelDescription | None = None) -> HlsConfig:
    """The :class:`~qlstm.hls_config.HlsConfig` of a ``qlstm hls`` project folder (its
    ``qlstm_hls.json``, read by :func:`qlstm.runs.read_hls_project`); with ``desc``, the project
    must have been generated from a model of the same architecture and types (the description's
    fingerprint; the weights may differ). Raises QlstmError otherwise."""
    project = read_hls_project(Path(project_dir))
    if desc is not None and project.raw.get("model_fingerprint") != desc.fingerprint():
        raise QlstmError(
            f"{project_dir}: this hls project was generated from another model than the run's (architecture or types differ)"
        )
    return project.config


def load_csim(run_dir: Path, config: HlsConfig | None = None) -> CSim:
    """The C simulation of the quantized run in ``run_dir`` with ``config`` (compiled once, then cached)."""
    desc, weights = description.load(Path(run_dir))
    return build_csim(desc, weights, config)


def predict(run_dir: Path, x: np.ndarray, config: HlsConfig | None = None) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64 predictions of the C simulation."""
    return load_csim(run_dir, config).predict(x, workers=qlstm_threads.count())


def trace(run_dir: Path, x: np.ndarray, config: HlsConfig | None = None) -> dict[str, np.ndarray]:
    """Every layer's output in the C simulation: ``rnn0`` ... and ``head`` (see ``CSim.trace``)."""
    return load_csim(run_dir, config).trace(x)
