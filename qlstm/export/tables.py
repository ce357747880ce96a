"""hls4ml's sigmoid/tanh lookup tables and index rule, as the exported QONNX graph uses them.

From ``nnet_activation.h`` (hls4ml 1.3): a table of ``N`` entries of ``table_t`` holds
``f(x_j)`` at ``x_j = 2 R (j - N/2) / N`` with ``R = 8`` (sigmoid) or ``4`` (tanh), computed in
single precision (``1.0 / (1 + std::exp(-x))`` with a float ``exp``; ``tanh`` of a float) and
assigned to ``table_t`` with its rounding mode. An input ``v`` reads entry
``clip(int(v * N / (2R)) + N/2, 0, N - 1)``, where ``int(...)`` truncates toward zero: the
``ap_fixed`` division and the conversion to ``int`` both truncate toward zero (checked with
g++ against the bundled ``ap_fixed.h``: ``-0.0078125 * 1024 / 16`` gives 0, not -1).

NumPy's float32 ``exp``/``tanh`` may differ from glibc's by one ulp; that changes an entry only
when the float lands exactly on a rounding boundary of ``table_t``.
"""

from __future__ import annotations

import numpy as np

from qlstm.description import SIGMOID_RANGE, TANH_RANGE, TableSpec

RANGES = {"sigmoid": SIGMOID_RANGE, "tanh": TANH_RANGE}


def table(kind: str, spec: TableSpec) -> np.ndarray:
    """The ``spec.size`` table entries (float64, on ``spec.type``'s grid)."""
    n = spec.size
    j = np.arange(n, dtype=np.float64)
    x = (2.0 * RANGES[kind] * (j - n / 2.0) / n).astype(np.float32)
    with np.errstate(over="ignore"):
        if kind == "sigmoid":
            f = (1.0 / (np.float32(1.0) + np.exp(-x)).astype(np.float64)).astype(np.float32)
        else:
            f = np.tanh(x)
    return spec.type.quantize(f.astype(np.float64))


def index_scale(kind: str, size: int) -> float:
    """``N / (2R)``: the index is ``trunc(v * index_scale) + N/2``, clipped to the table."""
    return size / (2.0 * RANGES[kind])
