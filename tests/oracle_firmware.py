"""An N-version oracle of the hls4ml firmware: int64 mantissas, one C++ assignment at a time.

Kept in tests/, not in the package (issue 13: one firmware forward ships, :mod:`qlstm.firmware_sim`).
It re-derives hls4ml 1.3.0's dataflow from the templates independently of the simulator: int64
mantissas, :func:`qlstm.fixedpoint.cast` at every C++ assignment, and the sequential
``acc += mult`` loop of ``nnet_dense_latency.h`` (no matrix products, no overflow bounds, no fast
paths). ``lstm_static``/``gru_static`` (``nnet_recurrent.h``), ``pytorch_order`` for the GRU, the
states reset to zero per window, the Dense head cast to ``head.result``. Used by
tests/test_quant_forward.py, tests/test_quant_firmware.py and tests/test_export.py.
"""

from __future__ import annotations

import numpy as np

from qlstm import hls4ml_tables as tables
from qlstm.fixedpoint import cast


def _dense_ref(xm, xf, wm, wt, bm, bt, acc):
    """nnet::dense_latency: mult = (accum_t)(x*w); acc = (accum_t)b; acc += mult, in ii order."""
    out = np.broadcast_to(cast(bm, bt.frac, acc), (xm.shape[0], wm.shape[0])).copy()
    for ii in range(xm.shape[1]):
        prod = cast(xm[:, ii, None] * wm[None, :, ii], xf + wt.frac, acc)
        out = cast(out + prod, acc.frac, acc)
    return out


def _act_ref(kind, m, frac, lq):
    return cast(tables.lookup(kind, m, frac, lq.table), lq.table.type.frac, lq.accum)


def _add(a, fa, b, fb):
    """Exact sum of mantissas with fa and fb fractional bits -> (sum, frac)."""
    f = max(fa, fb)
    return np.left_shift(a, f - fa) + np.left_shift(b, f - fb), f


def reference(arch, weights, q, x):
    """(N, L, C) float inputs -> (N, k) float64 outputs of the firmware with types ``q`` and
    on-grid ``weights`` (description layout)."""
    seq, sf = q.input.to_int(x), q.input.frac
    for i, layer in enumerate(arch.layers):
        lq = q.layers[i]
        acc, st = lq.accum, lq.state
        wm = {
            k: t.to_int(weights[f"rnn{i}.{k}"])
            for k, t in (
                ("weight_ih", lq.weight),
                ("weight_hh", lq.recurrent_weight),
                ("bias_ih", lq.bias),
                ("bias_hh", lq.recurrent_bias),
            )
        }
        hdim = layer.units
        h = np.zeros((len(x), hdim), dtype=np.int64)
        c = np.zeros_like(h)
        outs = []
        for t in range(seq.shape[1]):
            t1 = _dense_ref(seq[:, t], sf, wm["weight_ih"], lq.weight, wm["bias_ih"], lq.bias, acc)
            t2 = _dense_ref(
                h, st.frac, wm["weight_hh"], lq.recurrent_weight, wm["bias_hh"], lq.recurrent_bias, acc
            )
            a = acc.frac
            if layer.cell == "lstm":
                pre = cast(t1 + t2, a, acc)
                si, sf_, so = (
                    _act_ref("sigmoid", pre[:, k * hdim : (k + 1) * hdim], a, lq) for k in (0, 1, 3)
                )
                tg = _act_ref("tanh", pre[:, 2 * hdim : 3 * hdim], a, lq)
                s, f = _add(tg * si, 2 * a, c * sf_, st.frac + a)
                c = cast(s, f, st)
                h = cast(so * _act_ref("tanh", c, st.frac, lq), a + a, st)
            else:
                rz = cast(t1[:, : 2 * hdim] + t2[:, : 2 * hdim], a, acc)
                r = _act_ref("sigmoid", rz[:, :hdim], a, lq)
                z = _act_ref("sigmoid", rz[:, hdim:], a, lq)
                rh = cast(r * t2[:, 2 * hdim :], 2 * a, acc)
                nh = _act_ref("tanh", cast(t1[:, 2 * hdim :] + rh, a, acc), a, lq)
                s, f = _add(nh * ((1 << a) - z), 2 * a, h * z, st.frac + a)
                h = cast(s, f, st)
            outs.append(h)
        seq, sf = np.stack(outs, axis=1), st.frac
    d = q.dense
    acc_m = _dense_ref(
        seq[:, -1],
        sf,
        d.weight.to_int(weights["head.weight"]),
        d.weight,
        d.bias.to_int(weights["head.bias"]),
        d.bias,
        d.accum,
    )
    return d.result.to_float(cast(acc_m, d.accum.frac, d.result))
