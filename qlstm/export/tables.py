"""hls4ml's sigmoid/tanh lookup tables as the exported QONNX graph holds them.

The table contents are :func:`qlstm.hls4ml_tables.table` (bit-exact with the hls4ml C
simulation). The index rule of ``nnet_activation.h`` is
``clip(trunc(v * N / (2R)) + N/2, 0, N - 1)`` with ``R = 8`` (sigmoid) or ``4`` (tanh) and
truncation toward zero (:func:`qlstm.hls4ml_tables.table_index` states the C++ reasons);
the graph computes it with ``Mul/Sign/Abs/Floor/Add/Clip``. The C ``int`` of hls4ml wraps at 32
bits; the graph does not, which matters only for table inputs beyond ``2**31 * 2R / N``.
"""

from __future__ import annotations

import numpy as np

from qlstm import hls4ml_tables
from qlstm.description import TableSpec


def table(kind: str, spec: TableSpec) -> np.ndarray:
    """The ``spec.size`` table entries as float64 values on ``spec.type``'s grid."""
    return spec.type.to_float(hls4ml_tables.table(kind, spec))  # type: ignore[arg-type]


def index_scale(kind: str, size: int) -> float:
    """``N / (2R)``: the index is ``trunc(v * index_scale) + N/2``, clipped to the table."""
    return size / (2.0 * hls4ml_tables.HALF_RANGE[kind])
