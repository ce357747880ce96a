"""The network in float64 arithmetic, traced under the firmware's tensor names.

The one float per-point reference of the model: the run's own weights, exact ``sigmoid``/``tanh``,
no rounding anywhere. ``qlstm quantize`` profiles the range of every quantization point on it
(:func:`qlstm.quantize.model.profile`), and ``qlstm firmware check`` compares every intermediate
of the firmware with it, so the deviation measures what the firmware's arithmetic (accumulator
widths, lookup tables, state types, overflow) does, separately from weight quantization. Names
and layouts match :meth:`qlstm.firmware_sim.simulate.Firmware.trace_names` (gates in PyTorch
order). It lives in the core because both stages use it.
"""

from __future__ import annotations

import numpy as np

from qlstm.description import Architecture


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def float_trace(arch: Architecture, weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Every intermediate of the float64 network on (N, L, C) inputs, float64.

    Keys: ``input`` (N, L, C); per layer ``rnn{i}.x_acc`` (W x + b_ih), ``h_acc`` (U h + b_hh),
    ``preact``, ``gates``, ``h``, and ``c``/``tanh_c`` (LSTM) or ``r_h`` (GRU), each (N, L, .);
    ``rnn{i}`` (the layer output: the sequence, or the last step for the last layer);
    per head layer (``dense{j}`` ..., the last ``head``) ``{name}.acc`` (W x + b) and ``{name}``
    (the layer output), and for a layer with an activation ``{name}.result`` (before it);
    ``head`` is the network output (N, k). Memory grows with N: call it on batches.
    """
    x = np.asarray(x, dtype=np.float64)
    n, steps, _ = x.shape
    out: dict[str, np.ndarray] = {"input": x}
    seq = x
    for i, layer in enumerate(arch.layers):
        nm, hsz = f"rnn{i}", layer.units
        w_ih, w_hh = weights[f"{nm}.weight_ih"], weights[f"{nm}.weight_hh"]
        b_ih, b_hh = weights[f"{nm}.bias_ih"], weights[f"{nm}.bias_hh"]
        xa = seq @ w_ih.T + b_ih
        h = np.zeros((n, hsz))
        c = np.zeros((n, hsz))
        keys = ("h_acc", "preact", "gates", "h") + (("c", "tanh_c") if layer.cell == "lstm" else ("r_h",))
        tr = {k: [] for k in keys}
        for t in range(steps):
            ha = h @ w_hh.T + b_hh
            if layer.cell == "lstm":
                pre = xa[:, t] + ha
                i_, f_, g_, o_ = np.split(pre, 4, axis=1)
                act = np.concatenate([_sigmoid(i_), _sigmoid(f_), np.tanh(g_), _sigmoid(o_)], axis=1)
                ai, af, ag, ao = np.split(act, 4, axis=1)
                c = ag * ai + c * af
                tc = np.tanh(c)
                h = ao * tc
                tr["c"].append(c)
                tr["tanh_c"].append(tc)
            else:
                zr_pre = xa[:, t, : 2 * hsz] + ha[:, : 2 * hsz]
                r, z = np.split(_sigmoid(zr_pre), 2, axis=1)
                rh = r * ha[:, 2 * hsz :]
                n_pre = xa[:, t, 2 * hsz :] + rh
                n_act = np.tanh(n_pre)
                h = n_act * (1.0 - z) + h * z
                pre = np.concatenate([zr_pre, n_pre], axis=1)
                act = np.concatenate([r, z, n_act], axis=1)
                tr["r_h"].append(rh)
            tr["h_acc"].append(ha)
            tr["preact"].append(pre)
            tr["gates"].append(act)
            tr["h"].append(h)
        out[f"{nm}.x_acc"] = xa
        for k, v in tr.items():
            out[f"{nm}.{k}"] = np.stack(v, axis=1)
        seq = out[f"{nm}.h"]
        out[nm] = seq if i != len(arch.layers) - 1 else seq[:, -1]
    v = seq[:, -1]
    for nm, d in zip(arch.head_names(), arch.head, strict=True):
        acc = v @ weights[f"{nm}.weight"].T + weights[f"{nm}.bias"]
        out[f"{nm}.acc"] = acc
        if d.activation != "linear":
            out[f"{nm}.result"] = acc
        v = activate(d.activation, acc)
        out[nm] = v
    return out


def activate(kind: str, x: np.ndarray) -> np.ndarray:
    """A head activation (``qlstm.description.HEAD_ACTIVATIONS``) in float64, on (N, U):
    softmax over the last axis (max subtracted first; the value is the same)."""
    if kind == "linear":
        return x
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "tanh":
        return np.tanh(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def float_predict(
    arch: Architecture, weights: dict[str, np.ndarray], x: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """(N, L, C) windows -> (N, k) float64 outputs of the float network (:func:`float_trace`'s
    ``head``), computed ``batch_size`` windows at a time to bound memory."""
    x = np.asarray(x, dtype=np.float64)
    outs = [float_trace(arch, weights, x[s : s + batch_size])["head"] for s in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, arch.horizon))
