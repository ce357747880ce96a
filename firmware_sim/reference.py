"""The float64 reference of ``qlstm firmware check``: :func:`qlstm.float_reference.float_trace`.

The implementation lives in the core (:mod:`qlstm.float_reference`), where ``qlstm quantize``
profiles on the same function; this module keeps the description-based call of the simulator.
"""

from __future__ import annotations

import numpy as np

from qlstm.description import ModelDescription
from qlstm.float_reference import float_trace as _float_trace


def float_trace(
    desc: ModelDescription, weights: dict[str, np.ndarray], x: np.ndarray
) -> dict[str, np.ndarray]:
    """Every intermediate of the float64 network on (N, L, C) inputs (names as the firmware's)."""
    return _float_trace(desc.architecture, weights, x)
