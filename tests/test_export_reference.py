"""Test references for tests/test_export*.py: models, quantised descriptions, firmware arithmetic.

``firmware_reference`` is an integer-mantissa re-statement of the hls4ml dataflow
(``nnet_recurrent.h`` static LSTM/GRU with PyTorch gate order, ``nnet_dense_latency.h``) written
with :func:`qlstm.fixedpoint.cast`, independent of the exported graph's float64 ops. It stands
in for the ``quant``/``firmware`` backends until those land.
"""

from __future__ import annotations

import numpy as np
import torch
from qlstm.firmware_sim.tables import lookup

from qlstm.description import (
    Architecture,
    DenseQuant,
    ModelDescription,
    Normalisation,
    Quantisation,
    RecurrentLayer,
    RecurrentQuant,
    TableSpec,
)
from qlstm.fixedpoint import FixedType, cast

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


def quantisation(desc: ModelDescription, bits: int) -> Quantisation:
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
    return Quantisation(
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


def quantised(desc: ModelDescription, weights: dict[str, np.ndarray], bits: int):
    """(quantised description, weights rounded onto their grids)."""
    q = quantisation(desc, bits)
    types = {}
    for i, lq in enumerate(q.layers):
        types |= {
            f"rnn{i}.weight_ih": lq.weight,
            f"rnn{i}.weight_hh": lq.recurrent_weight,
            f"rnn{i}.bias_ih": lq.bias,
            f"rnn{i}.bias_hh": lq.recurrent_bias,
        }
    types |= {"head.weight": q.dense.weight, "head.bias": q.dense.bias}
    return desc.with_quantisation(q), {k: types[k].quantize(v) for k, v in weights.items()}


# ---------------------------------------------------------------------------- float reference
def torch_reference(desc: ModelDescription, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """PyTorch nn.LSTM/nn.GRU stack + Linear head in float64."""
    h = torch.from_numpy(np.asarray(x, dtype=np.float64))
    n_in = desc.architecture.input_channels
    with torch.no_grad():
        for i, layer in enumerate(desc.architecture.layers):
            mod = (torch.nn.LSTM if layer.cell == "lstm" else torch.nn.GRU)(
                n_in, layer.units, batch_first=True
            )
            mod = mod.double()
            for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(mod, f"{key}_l0").copy_(torch.from_numpy(weights[f"rnn{i}.{key}"]))
            h, _ = mod(h)
            n_in = layer.units
        last = h[:, -1].numpy()
    return last @ weights["head.weight"].T + weights["head.bias"]


# ---------------------------------------------------------------------------- firmware reference
def _dense(xm, xf, w, wt, b, bt, acc):
    """hls4ml dense_latency on mantissas: (acc)b + sum (acc)(x w); returns acc mantissas."""
    wm = wt.to_int(w)  # (n_out, n_in)
    prods = xm[..., :, None] * wm.T  # (..., n_in, n_out), frac xf + wt.frac
    total = cast(bt.to_int(b), bt.frac, acc) + cast(prods, xf + wt.frac, acc).sum(axis=-2)
    return cast(total, acc.frac, acc)


def _lut(m, frac, kind, spec, acc):
    """(acc) table[index]: index and table by qlstm.firmware_sim.tables (integer C++ mirror)."""
    return cast(lookup(kind, m, frac, spec), spec.type.frac, acc)


def _align(a, fa, b, fb):
    f = max(fa, fb)
    return a * (1 << (f - fa)) + b * (1 << (f - fb)), f


def firmware_reference(desc: ModelDescription, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    q = desc.quantisation
    xm = q.input.to_int(np.asarray(x, dtype=np.float64))
    xt = q.input
    for i, (layer, lq) in enumerate(zip(desc.architecture.layers, q.layers, strict=True)):
        acc, st, h_units = lq.accum, lq.state, layer.units
        af = acc.frac
        ax = _dense(
            xm, xt.frac, weights[f"rnn{i}.weight_ih"], lq.weight, weights[f"rnn{i}.bias_ih"], lq.bias, acc
        )
        n = xm.shape[0]
        h = np.zeros((n, h_units), np.int64)
        c = np.zeros((n, h_units), np.int64)
        outs = []
        for t in range(desc.architecture.history):
            ah = _dense(
                h,
                st.frac,
                weights[f"rnn{i}.weight_hh"],
                lq.recurrent_weight,
                weights[f"rnn{i}.bias_hh"],
                lq.recurrent_bias,
                acc,
            )
            if layer.cell == "lstm":
                pre = cast(ax[:, t] + ah, af, acc)
                gi, gf, gg, go = np.split(pre, 4, axis=1)
                gi, gf, go = (_lut(v, af, "sigmoid", lq.table, acc) for v in (gi, gf, go))
                gg = _lut(gg, af, "tanh", lq.table, acc)
                s, f = _align(gg * gi, 2 * af, c * gf, st.frac + af)
                c = cast(s, f, st)
                h = cast(go * _lut(c, st.frac, "tanh", lq.table, acc), 2 * af, st)
            else:
                xr, xz, xn = np.split(ax[:, t], 3, axis=1)
                hr, hz, hn = np.split(ah, 3, axis=1)
                r = _lut(cast(xr + hr, af, acc), af, "sigmoid", lq.table, acc)
                z = _lut(cast(xz + hz, af, acc), af, "sigmoid", lq.table, acc)
                pre_n = cast(xn + cast(r * hn, 2 * af, acc), af, acc)
                nn_ = _lut(pre_n, af, "tanh", lq.table, acc)
                s, f = _align(nn_ * ((1 << af) - z), 2 * af, h * z, st.frac + af)
                h = cast(s, f, st)
            outs.append(h)
        xm, xt = np.stack(outs, axis=1), st
    d = q.dense
    acc = _dense(xm[:, -1], xt.frac, weights["head.weight"], d.weight, weights["head.bias"], d.bias, d.accum)
    return d.result.to_float(cast(acc, d.accum.frac, d.result))
