"""Random models for tests and benchmarks: one generator of descriptions and weights (nothing
here is trained; use a real run folder for realistic models).

:func:`random_model` builds a :class:`~qlstm.description.ModelDescription` for the given cells,
units, channels, history and horizon and draws its weights (:func:`random_weights`); with a
quantization (or ``bits``) every weight is rounded onto its type's grid, so the simulator, the
compiled C simulation, the exporters and the RTL can be compared on any architecture without
running ``train``/``quantize``. Three type policies, each for what it exercises:

* :func:`uniform_quantization` - one ``ap_fixed<width, integer, rounding, overflow>`` everywhere
  (each rounding/overflow mode on its own; the accumulator keeps every product by default);
* :func:`mixed_quantization` - rounding and overflow modes mixed per tensor, so a simulator that
  ignores one of them disagrees with the C simulation (the default of :func:`random_model`);
* :func:`saturating_quantization` - every stored type saturates (as QONNX's ``Quant`` does, so
  exports compare exactly); at 6 bits the accumulator keeps every product, at 8 and 16 it does not.

:func:`random_windows` gives input windows shaped like normalised magnet voltages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

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
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType

Init = Literal["uniform", "normal", "fan_in"]


# ------------------------------------------------------------------------------ type policies
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


def _mixed_layer(bits: int, table_size: int | None) -> RecurrentQuant:
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


#: The types ``qlstm quantize`` (PTQ, 8 bits) chose for the README flow's LSTM(16), L = 16, k = 4
#: (run of 2026-12-01, issue #15): input wider than the state, AP_RND_CONV/AP_SAT casts, a
#: truncating wrapping accumulator holding every product exactly, gate sums that can leave it.
README_PTQ8_TYPES: dict = {
    "input": "ap_fixed<12,1,AP_RND_CONV,AP_SAT>",
    "layer": {
        "weight": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
        "recurrent_weight": "ap_fixed<8,1,AP_RND_CONV,AP_SAT>",
        "bias": "ap_fixed<8,0,AP_RND_CONV,AP_SAT>",
        "recurrent_bias": "ap_fixed<8,0,AP_RND_CONV,AP_SAT>",
        "accum": "ap_fixed<21,5,AP_TRN,AP_WRAP>",
        "state": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
        "table": {"size": 1024, "type": "ap_fixed<10,1,AP_RND_CONV,AP_SAT>"},
    },
    "dense": {
        "weight": "ap_fixed<8,-2,AP_RND_CONV,AP_SAT>",
        "bias": "ap_fixed<8,-2,AP_RND_CONV,AP_SAT>",
        "accum": "ap_fixed<17,2,AP_TRN,AP_WRAP>",
        "result": "ap_fixed<12,1,AP_RND_CONV,AP_SAT>",
    },
}


def readme_ptq8_quantization(n_layers: int = 1) -> Quantization:
    """:data:`README_PTQ8_TYPES` for ``n_layers`` recurrent layers (every layer the same types)."""
    t = README_PTQ8_TYPES
    return Quantization.from_dict(
        {
            "input": t["input"],
            "layers": [t["layer"]] * n_layers,
            "dense": t["dense"],
            "method": "ptq",
            "bits": 8,
        }
    )


def mixed_quantization(n_layers: int, bits: int, table_size: int | None = None) -> Quantization:
    """Types at ``bits`` mixing AP_RND_CONV/AP_RND/AP_TRN and AP_SAT/AP_WRAP per tensor; the input
    is unsigned (normalised inputs lie in [0, 1]). ``bits >= 32``: one wide ``ap_fixed<32,12>``."""
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
        inp = FixedType(bits, 1, False, "AP_RND_CONV", "AP_SAT")
    return Quantization(
        input=inp,
        layers=tuple(_mixed_layer(bits, table_size) for _ in range(n_layers)),
        dense=dense,
        method="test",
        bits=min(bits, 32),
    )


def saturating_quantization(n_layers: int, bits: int) -> Quantization:
    """A plausible hls4ml-style set of types at ``bits``: every stored type saturates, the
    accumulator is wide (``ap_fixed<16,6>`` up to 8 bits, ``<24,6>`` above).

    At 6 bits the accumulator keeps every product bit (exported as MatMul); at 8 and 16 bits it
    does not (each product is cast), so both dense forms of the exporters are exercised.
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
        layers=tuple(rec for _ in range(n_layers)),
        dense=DenseQuant(
            weight=FixedType(bits, 1, True, "AP_RND_CONV", "AP_SAT"),
            bias=FixedType(bits, 2, True, "AP_RND_CONV", "AP_SAT"),
            accum=acc,
            result=FixedType(bits, 3, True, "AP_RND_CONV", "AP_SAT"),
        ),
        bits=bits,
    )


# ------------------------------------------------------------------------------ the generator
def random_weights(
    arch: Architecture,
    *,
    init: Init = "fan_in",
    scale: float = 0.5,
    seed: int | np.random.Generator = 0,
) -> dict[str, np.ndarray]:
    """Float64 weights of ``arch`` (``Architecture.weight_shapes()`` order and shapes), drawn
    from one generator (``seed``: an int, or a Generator the caller keeps drawing from).

    ``init``: ``"uniform"`` U(-scale, scale); ``"normal"`` N(0, scale^2); ``"fan_in"``
    N(0, (2 scale / sqrt(fan_in))^2) for matrices and N(0, (scale / 2)^2) for biases.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in arch.weight_shapes().items():
        if init == "uniform":
            out[name] = rng.uniform(-scale, scale, size=shape)
        elif init == "normal":
            out[name] = rng.normal(size=shape) * scale
        elif init == "fan_in":
            k = 2.0 / np.sqrt(shape[1]) if len(shape) == 2 else 0.5
            out[name] = rng.normal(size=shape) * scale * k
        else:
            raise ValueError(f"init must be uniform, normal or fan_in, got {init!r}")
    return out


def random_model(
    cells: Sequence[str] = ("lstm",),
    units: Sequence[int] = (8,),
    *,
    channels: int = 1,
    history: int = 8,
    horizon: int = 1,
    bits: int | None = 16,
    quantization: Quantization | None = None,
    init: Init = "fan_in",
    scale: float = 0.5,
    seed: int | np.random.Generator = 0,
    normalisation: Normalisation | None = None,
    head: Sequence[tuple[int, str]] = (),
) -> tuple[ModelDescription, dict[str, np.ndarray]]:
    """A model description and its random weights (:func:`random_weights`).

    ``head``: ``(units, activation)`` per head Dense layer (default: one linear layer of
    ``horizon`` units); a quantization for such a head comes from ``quantization`` (e.g.
    :func:`uniform_quantization` with its ``head``).

    Quantized with ``quantization`` if given, else with :func:`mixed_quantization` at ``bits``;
    ``bits=None`` and no quantization: a float description and float weights. Quantized weights
    lie exactly on their types' grids. ``normalisation`` defaults to [0, 1] on channels
    ``ch0..``. Raises :class:`~qlstm.errors.QlstmError` for an invalid architecture.
    """
    arch = Architecture(
        input_channels=channels,
        history=history,
        horizon=horizon,
        layers=tuple(RecurrentLayer(c, u) for c, u in zip(cells, units, strict=True)),
        head=tuple(DenseLayer(u, a) for u, a in head),
    )
    norm = normalisation or Normalisation(
        lo=(0.0,) * channels, hi=(1.0,) * channels, channel_names=tuple(f"ch{i}" for i in range(channels))
    )
    raw = random_weights(arch, init=init, scale=scale, seed=seed)
    q = quantization
    if q is None and bits is not None:
        q = mixed_quantization(len(arch.layers), bits)
    desc = ModelDescription(arch, norm).with_quantization(q)
    if q is None:
        return desc, raw
    return desc, {k: q.weight_type(k).quantize(v) for k, v in raw.items()}


def non_negative_layer(
    desc: ModelDescription, weights: dict[str, np.ndarray], layer: int = 0
) -> dict[str, np.ndarray]:
    """``weights`` with recurrent layer ``layer``'s kernels and biases replaced by their magnitudes.

    Saturated onto each weight's type (``-min_int`` has no positive twin). With non-negative
    inputs, every product of a gate then has the same sign, so the gate sums reach their largest
    magnitudes: the case where a narrow accumulator wraps (tests of the wrapping paths).
    """
    q = desc.quantization
    if q is None:
        raise QlstmError("non_negative_layer needs a quantized description (the weights' types)")
    out = dict(weights)
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        name = f"rnn{layer}.{k}"
        out[name] = q.weight_type(name).quantize(np.abs(weights[name]))
    return out


def random_windows(desc: ModelDescription, n: int, seed: int = 1) -> np.ndarray:
    """(n, L, C) smooth-ish windows in [0, 1] (random walks), like normalised magnet voltages."""
    a = desc.architecture
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.1, 0.9, size=(n, 1, a.input_channels))
    steps = rng.normal(scale=0.05, size=(n, a.history, a.input_channels))
    return np.clip(start + np.cumsum(steps, axis=1), 0.0, 1.0)


def detection_run(root, name: str, desc: ModelDescription, weights: dict[str, np.ndarray]):
    """A small labelled recording and a quantized run folder over it, for ``qlstm detect`` tests.

    Generates 4 short synthetic events (400 s each, "steps" and "oscillation" precursors 40-120 s
    before the quench) into ``root/events.npz``, sets ``desc``'s normalisation to the recording's
    range (channel ``U_res`` in V) and its split to events 0 and 1 for training (the calibration
    events), and saves the run as ``root/name``. Returns ``(run_dir, events_path, events, desc)``.
    """
    from dataclasses import replace
    from pathlib import Path

    from qlstm import description
    from qlstm.data import SyntheticConfig, generate, save_events

    root = Path(root)
    cfg = replace(
        SyntheticConfig.short(n_events=4, duration_s=400.0, precursor_lead_s=(40.0, 120.0)),
        precursor_kinds=("steps", "oscillation"),
    )
    es = generate(cfg)
    data = save_events(es, root / "events.npz")
    lo = min(float(e.x.min()) for e in es.events)
    hi = max(float(e.x.max()) for e in es.events)
    desc = replace(
        desc,
        normalisation=Normalisation((lo,), (hi,), ("U_res",), units=("V",)),
        data={"path": str(data), "split": {"train": ["event_0000", "event_0001"], "val": [], "test": []}},
    )
    run = root / name
    description.save(run, desc, weights)
    return run, data, es, desc
