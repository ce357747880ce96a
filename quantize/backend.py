"""The ``quant`` backend of ``qlstm predict``: the firmware forward of a quantised run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlstm import description
from qlstm.errors import QlstmError


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64: what the hls4ml firmware of the run outputs."""
    from qlstm.quantize.model import QuantNet, predict_array

    desc, weights = description.load(Path(run_dir))
    if not desc.quantised:
        raise QlstmError(
            f"{run_dir}: not a quantised run (no quantisation in model.json); run qlstm quantize"
        )
    a = desc.architecture
    return predict_array(QuantNet(a, weights, desc.quantisation), a.check_windows(x, "inputs"))
