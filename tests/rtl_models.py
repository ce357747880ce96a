"""Quantized models for the RTL tests and benchmark: qlstm's own type policy on random weights.

``policy_model`` draws float weights, takes their ranges (and assumed activation ranges) as the
profile ``qlstm quantize`` would measure, lets :func:`qlstm.quantize.policy.choose_types` choose
every type (so 16-bit models get capped accumulators whose products are rounded one by one, as a
real 16-bit run does) and rounds the weights onto their grids. Nothing here is trained.
"""

from __future__ import annotations

import numpy as np

from qlstm.description import ModelDescription
from qlstm.testing import random_model


def policy_model(
    cells: tuple[str, ...],
    units: tuple[int, ...],
    bits: int,
    *,
    method: str = "qat",
    history: int = 6,
    horizon: int = 2,
    weight_range: float = 0.6,
    accum_range: float = 6.0,
    seed: int = 0,
    **cfg,
) -> tuple[ModelDescription, dict[str, np.ndarray]]:
    from qlstm.quantize.model import Profile
    from qlstm.quantize.policy import QuantizeConfig, choose_types

    fdesc, w = random_model(
        cells,
        units,
        history=history,
        horizon=horizon,
        bits=None,
        init="uniform",
        scale=weight_range,
        seed=seed,
    )
    arch = fdesc.architecture
    m = {"input": 1.0, "head.result": 1.5, "head.accum": accum_range}
    for i in range(len(cells)):
        p = f"rnn{i}"
        m.update(
            {
                f"{p}.weight": np.abs(w[f"{p}.weight_ih"]).max(),
                f"{p}.recurrent_weight": np.abs(w[f"{p}.weight_hh"]).max(),
                f"{p}.bias": np.abs(w[f"{p}.bias_ih"]).max(),
                f"{p}.recurrent_bias": np.abs(w[f"{p}.bias_hh"]).max(),
                f"{p}.state": 2.5,
                f"{p}.accum": accum_range,
            }
        )
    m.update({"head.weight": np.abs(w["head.weight"]).max(), "head.bias": np.abs(w["head.bias"]).max()})
    q = choose_types(arch, Profile(m), QuantizeConfig(bits=bits, **cfg), method)
    desc = fdesc.with_quantization(q)
    weights = {k: q.weight_type(k).quantize(v) for k, v in w.items()}
    return desc, weights


def windows(desc: ModelDescription, n: int, seed: int = 1) -> np.ndarray:
    """Random and saturating windows (N, L, C) (qlstm.rtl.api.default_windows)."""
    from qlstm.rtl.api import default_windows

    return default_windows(desc, n, seed)
