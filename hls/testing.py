"""Small quantized models for tests and benchmarks (no training needed).

:func:`random_model` makes a valid quantized :class:`~qlstm.description.ModelDescription` and
weights lying exactly on their fixed-point grids, at a chosen width, so the C simulation and the
firmware simulator can be compared on any architecture without running ``train``/``quantize``.
The types deliberately mix rounding and overflow modes, so a simulator that ignores one of them
disagrees with the C simulation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qlstm.description import (
    Architecture,
    DenseQuant,
    ModelDescription,
    Normalisation,
    Quantization,
    RecurrentLayer,
    RecurrentQuant,
    TableSpec,
)
from qlstm.fixedpoint import FixedType


def layer_quant(bits: int, table_size: int | None = None) -> RecurrentQuant:
    """Types of one recurrent layer at ``bits`` (``bits=32`` is the "float-ish" wide setting)."""
    if bits >= 32:
        wide = FixedType(32, 12, True, "AP_RND_CONV", "AP_SAT")
        return RecurrentQuant(wide, wide, wide, wide, wide, wide, TableSpec(table_size or 65536, wide))
    acc_int = 6 if bits >= 12 else 4
    return RecurrentQuant(
        weight=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
        recurrent_weight=FixedType(bits, 1, True, "AP_RND_CONV", "AP_SAT"),
        bias=FixedType(bits, 3, True, "AP_RND", "AP_SAT"),
        recurrent_bias=FixedType(bits, 2, True, "AP_RND", "AP_SAT"),
        accum=FixedType(min(32, bits + 8), acc_int, True, "AP_TRN", "AP_WRAP"),
        state=FixedType(bits, 3, True, "AP_RND", "AP_SAT"),
        table=TableSpec(
            table_size or (1024 if bits >= 12 else 256), FixedType(bits, 2, True, "AP_TRN", "AP_SAT")
        ),
    )


def quantization(n_layers: int, bits: int, table_size: int | None = None) -> Quantization:
    if bits >= 32:
        wide = FixedType(32, 12, True, "AP_RND_CONV", "AP_SAT")
        dense = DenseQuant(wide, wide, wide, wide)
        inp = wide
    else:
        dense = DenseQuant(
            weight=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
            bias=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
            accum=FixedType(min(32, bits + 8), 6 if bits >= 12 else 4, True, "AP_TRN", "AP_WRAP"),
            result=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
        )
        inp = FixedType(bits, 1, False, "AP_RND_CONV", "AP_SAT")  # normalised inputs lie in [0, 1]
    return Quantization(
        input=inp,
        layers=tuple(layer_quant(bits, table_size) for _ in range(n_layers)),
        dense=dense,
        method="test",
        bits=min(bits, 32),
    )


def random_model(
    cells: Sequence[str] = ("lstm",),
    units: Sequence[int] = (8,),
    *,
    channels: int = 1,
    history: int = 8,
    horizon: int = 1,
    bits: int = 16,
    seed: int = 0,
    scale: float = 0.5,
    table_size: int | None = None,
) -> tuple[ModelDescription, dict[str, np.ndarray]]:
    """A quantized description and weights on its grids; weights ~ N(0, scale^2/fan_in)."""
    arch = Architecture(
        input_channels=channels,
        history=history,
        horizon=horizon,
        layers=tuple(RecurrentLayer(c, u) for c, u in zip(cells, units, strict=True)),
    )
    norm = Normalisation(
        lo=(0.0,) * channels, hi=(1.0,) * channels, channel_names=tuple(f"ch{i}" for i in range(channels))
    )
    q = quantization(len(arch.layers), bits, table_size)
    desc = ModelDescription(arch, norm).with_quantization(q)
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in arch.weight_shapes().items():
        fan_in = shape[1] if len(shape) == 2 else 1
        raw = rng.normal(size=shape) * scale * (2.0 / np.sqrt(fan_in) if len(shape) == 2 else 0.5)
        weights[name] = q.weight_type(name).quantize(raw)
    return desc, weights


def random_windows(desc: ModelDescription, n: int, seed: int = 1) -> np.ndarray:
    """(n, L, C) smooth-ish windows in [0, 1] (random walks), like normalised magnet voltages."""
    a = desc.architecture
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.1, 0.9, size=(n, 1, a.input_channels))
    steps = rng.normal(scale=0.05, size=(n, a.history, a.input_channels))
    return np.clip(start + np.cumsum(steps, axis=1), 0.0, 1.0)
