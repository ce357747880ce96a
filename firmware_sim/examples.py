"""Random quantized models for tests and benchmarks (weights on their grids, chosen types).

:func:`random_model` builds a :class:`~qlstm.description.ModelDescription` with a quantization
and weights drawn uniformly within ``weight_range`` and rounded to the weight types' grids; it is
what the bit-exactness tests and ``benchmarks/bench_firmware.py`` feed to both the simulator and
the compiled C simulation. Nothing here is trained: use a real run folder for realistic models.
"""

from __future__ import annotations

import numpy as np

from qlstm.description import (
    Architecture,
    DenseLayer,
    DenseQuant,
    ModelDescription,
    Normalisation,
    Quantization,
    RecurrentLayer,
    RecurrentQuant,
    TableSpec,
)
from qlstm.fixedpoint import FixedType


def uniform_quantization(
    n_layers: int,
    *,
    width: int = 16,
    integer: int = 6,
    accum: FixedType | None = None,
    state: FixedType | None = None,
    table: TableSpec | None = None,
    rounding: str = "AP_TRN",
    overflow: str = "AP_WRAP",
    head: tuple[str, ...] = ("linear",),
    act_result: FixedType | None = None,
    head_table: TableSpec | None = None,
) -> Quantization:
    """One type ``ap_fixed<width, integer, rounding, overflow>`` everywhere, unless overridden.

    The default accumulator keeps every product exact (``2 * frac`` fractional bits) and is as
    wide as qlstm allows. ``head``: the activation of each head Dense layer (the last is the
    output layer); their ``act_result`` (default: the common type) and sigmoid/tanh
    ``head_table`` (default: ``table``).
    """
    t = FixedType(width, integer, True, rounding, overflow)
    if accum is None:
        frac = min(2 * t.frac, 32 - integer - 4)
        accum = FixedType(min(32, frac + integer + 4), integer + 4, True, rounding, overflow)
    state = state or t
    table = table or TableSpec(1024, FixedType(18, 8))
    lq = RecurrentQuant(
        weight=t, recurrent_weight=t, bias=t, recurrent_bias=t, accum=accum, state=state, table=table
    )
    dqs = tuple(
        DenseQuant(
            weight=t, bias=t, accum=accum, result=t,
            act_result=None if act == "linear" else (act_result or t),
            table=(head_table or table) if act in ("sigmoid", "tanh") else None,
        )
        for act in head
    )  # fmt: skip
    return Quantization(
        input=t,
        layers=tuple(lq for _ in range(n_layers)),
        dense=dqs[-1],
        method="random",
        bits=width,
        hidden=dqs[:-1],
    )


def random_model(
    cells: tuple[str, ...] = ("lstm",),
    units: tuple[int, ...] = (8,),
    *,
    history: int = 8,
    channels: int = 1,
    horizon: int = 1,
    quantization: Quantization | None = None,
    weight_range: float = 0.5,
    seed: int = 0,
    head: tuple[tuple[int, str], ...] = (),
) -> tuple[ModelDescription, dict[str, np.ndarray]]:
    """A quantized model with random weights on the grids of ``quantization`` (default 16 bits);
    ``head``: ``(units, activation)`` per head Dense layer (default: one linear layer of
    ``horizon`` units)."""
    arch = Architecture(
        input_channels=channels,
        history=history,
        horizon=horizon,
        layers=tuple(RecurrentLayer(c, u) for c, u in zip(cells, units, strict=True)),
        head=tuple(DenseLayer(u, a) for u, a in head),
    )
    q = quantization or uniform_quantization(len(cells), head=tuple(d.activation for d in arch.head))
    norm = Normalisation(
        lo=tuple(0.0 for _ in range(channels)),
        hi=tuple(1.0 for _ in range(channels)),
        channel_names=tuple(f"ch{i}" for i in range(channels)),
    )
    desc = ModelDescription(architecture=arch, normalisation=norm, quantization=q)
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in arch.weight_shapes().items():
        t = q.weight_type(name)
        weights[name] = t.quantize(rng.uniform(-weight_range, weight_range, size=shape))
    return desc, weights
