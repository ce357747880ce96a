"""The ``csim`` backend of ``qlstm predict``: the compiled hls4ml C simulation of a quantised run.

The first call for a run compiles the C simulation (seconds to minutes, with g++); later calls,
in any process, load it from the content-hash cache (see :mod:`qlstm.hls.csim`). The C
simulation's numbers do not depend on the part, clock, reuse factor or strategy, so the default
implementation options are used here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlstm import description

from .csim import CSim, build_csim


def load_csim(run_dir: Path) -> CSim:
    """The C simulation of the quantised run in ``run_dir`` (compiled once, then cached)."""
    desc, weights = description.load(Path(run_dir))
    return build_csim(desc, weights)


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64 predictions of the C simulation."""
    return load_csim(run_dir).predict(x)


def trace(run_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output in the C simulation: ``rnn0`` ... and ``head`` (see ``CSim.trace``)."""
    return load_csim(run_dir).trace(x)
