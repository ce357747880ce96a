"""Models for tests/test_export*.py: small descriptions, random weights, quantized versions."""

from __future__ import annotations

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

ARCHS = {
    "lstm": (("lstm", 8),),
    "stacked_lstm": (("lstm", 6), ("lstm", 5)),
    "gru": (("gru", 7),),
}


def description(layers: tuple[tuple[str, int], ...], channels: int = 2, history: int = 12, horizon: int = 3):
    arch = Architecture(channels, history, horizon, tuple(RecurrentLayer(c, u) for c, u in layers))
    names = ("U_res", "I", "U_diff")[:channels]
    norm = Normalisation(
        tuple(-0.5 * (i + 1) for i in range(channels)), tuple(0.7 * (i + 1) for i in range(channels)), names
    )
    return ModelDescription(arch, norm)


def random_weights(desc: ModelDescription, seed: int, scale: float = 0.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, scale, s) for k, s in desc.architecture.weight_shapes().items()}


def quantization(desc: ModelDescription, bits: int) -> Quantization:
    """A plausible hls4ml-style set of types at ``bits``; accum wide, states saturating.

    At 6 bits the accumulator keeps every product bit (exported as MatMul); at 8 and 16 bits it
    does not (each product is cast), so both dense forms are exercised.
    """
    acc = FixedType(16, 6) if bits <= 8 else FixedType(24, 6)
    rec = RecurrentQuant(
        weight=FixedType(bits, 1, True, "AP_RND_CONV", "AP_SAT"),
        recurrent_weight=FixedType(bits, 1, True, "AP_RND_CONV", "AP_SAT"),
        bias=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
        recurrent_bias=FixedType(bits, 2, True, "AP_RND", "AP_SAT"),
        accum=acc,
        state=FixedType(bits, 3, True, "AP_TRN", "AP_SAT"),
        table=TableSpec(256 if bits <= 8 else 1024, FixedType(bits + 2, 2, True, "AP_RND_CONV", "AP_SAT")),
    )
    return Quantization(
        input=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
        layers=tuple(rec for _ in desc.architecture.layers),
        dense=DenseQuant(
            weight=FixedType(bits, 1, True, "AP_RND_CONV", "AP_SAT"),
            bias=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
            accum=acc,
            result=FixedType(bits, 3, True, "AP_RND_CONV", "AP_SAT"),
        ),
        bits=bits,
    )


def quantized(desc: ModelDescription, weights: dict[str, np.ndarray], bits: int):
    """(quantized description, weights rounded onto their grids)."""
    q = quantization(desc, bits)
    types = {}
    for i, lq in enumerate(q.layers):
        types |= {
            f"rnn{i}.weight_ih": lq.weight,
            f"rnn{i}.weight_hh": lq.recurrent_weight,
            f"rnn{i}.bias_ih": lq.bias,
            f"rnn{i}.bias_hh": lq.recurrent_bias,
        }
    types |= {"head.weight": q.dense.weight, "head.bias": q.dense.bias}
    return desc.with_quantization(q), {k: types[k].quantize(v) for k, v in weights.items()}
