"""The quantised LSTM/GRU predictor: one torch module for profiling, QAT and the firmware forward.

The module holds the float parameters and computes in float64, in one of three ways:

* **float** (no quantisation): PyTorch's LSTM/GRU equations; used by PTQ to profile the range of
  every quantisation point (:meth:`QuantNet.profile`).
* **firmware** (``eval()`` with a :class:`~qlstm.description.Quantisation`): what the hls4ml
  firmware computes, cast for cast (``nnet_recurrent.h``, ``lstm_static``/``gru_static``, and
  ``nnet_dense_latency.h``): the input converted to its type; each dense product and partial sum
  at ``accum``; the two gate sums added at ``accum``; sigmoid/tanh from hls4ml's lookup tables
  (index truncation included) cast to ``accum``; the LSTM cell state ``c`` and hidden state
  ``h`` (GRU: ``h``) cast to ``state`` every step; the next layer reads ``state`` values; the
  Dense head accumulates at ``head.accum`` and casts to ``head.result``. Exact (see
  :mod:`qlstm.quantize.fxp`), so it agrees with ``firmware_sim`` bit for bit.
* **QAT training** (``train()`` with Brevitas quantisers attached, :mod:`qlstm.quantize.qat`):
  the same dataflow with a Brevitas fixed-point quantiser at every quantisation point
  (straight-through gradients, learned power-of-two scales) and the lookup tables in the forward
  pass with the exact function's gradient (straight-through). It differs from the firmware forward
  only where Brevitas cannot express the firmware: a wrapping type is trained as saturating, and
  the dense products are summed exactly before the ``accum`` cast instead of being cast one by one
  (a difference of at most ``n_in`` accumulator LSBs; the policy keeps that LSB small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qlstm.description import Architecture, DenseQuant, Quantisation, RecurrentQuant
from qlstm.fixedpoint import FixedType
from qlstm.quantize import fxp

#: Quantisation points of a recurrent layer and of the head, as named in the description.
LAYER_ROLES = ("weight", "recurrent_weight", "bias", "recurrent_bias", "accum", "state")
HEAD_ROLES = ("weight", "bias", "accum", "result")
#: description weight key suffix -> the layer role quantising it
WEIGHT_ROLE = {
    "weight_ih": "weight",
    "weight_hh": "recurrent_weight",
    "bias_ih": "bias",
    "bias_hh": "recurrent_bias",
}


@dataclass
class Profile:
    """max |value| seen at every quantisation point (names as :meth:`Quantisation.points`)."""

    max_abs: dict[str, float]

    def update(self, name: str, x: torch.Tensor) -> None:
        v = float(x.detach().abs().max()) if x.numel() else 0.0
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), v)


def _key(name: str) -> str:
    return name.replace(".", "__")


class QuantNet(nn.Module):
    """(N, L, C) normalised windows -> (N, k), float64, quantised as ``quant`` says."""

    def __init__(
        self, arch: Architecture, weights: dict[str, np.ndarray], quant: Quantisation | None = None
    ) -> None:
        super().__init__()
        self.arch = arch
        self.quant = quant
        self.params = nn.ParameterDict(
            {
                _key(k): nn.Parameter(torch.tensor(np.asarray(v), dtype=torch.float64))
                for k, v in weights.items()
            }
        )
        #: name -> Brevitas quantiser (set by qat.attach); used in training mode only.
        self.quantisers: nn.ModuleDict | None = None
        self._profile: Profile | None = None

    # ------------------------------------------------------------------ helpers
    def weight(self, name: str) -> torch.Tensor:
        return self.params[_key(name)]

    def weights_numpy(self) -> dict[str, np.ndarray]:
        return {k.replace("__", "."): p.detach().numpy().copy() for k, p in self.params.items()}

    def quantised_weights(self, quant: Quantisation) -> dict[str, np.ndarray]:
        """The parameters rounded onto their types' grids (what the firmware stores)."""
        out = {}
        for name, w in self.weights_numpy().items():
            out[name] = _weight_type(quant, name).quantize(w)
        return out

    def _point(self, name: str, x: torch.Tensor, qat: bool) -> torch.Tensor:
        """A quantisation point of the float/QAT dataflow: Brevitas fake quantisation in QAT, a
        range record while profiling, else the identity."""
        if self._profile is not None:
            self._profile.update(name, x)
        if qat:
            assert self.quantisers is not None
            return self.quantisers[_key(name)](x)
        return x

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training with quantisers: QAT; eval with a quantisation: the firmware; else float."""
        x = x.to(torch.float64)
        if self.training and self.quantisers is not None:
            return self._trainable(x, qat=True)
        if not self.training and self.quant is not None:
            return self._firmware(x)
        return self._trainable(x, qat=False)

    def qat_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The QAT dataflow regardless of mode (fast validation during QAT)."""
        return self._trainable(x.to(torch.float64), qat=True)

    def current_quantisation(self) -> Quantisation:
        """Types of every point: read from the Brevitas quantisers if attached, else ``quant``."""
        if self.quantisers is None:
            if self.quant is None:
                raise ValueError("the model is not quantised")
            return self.quant
        from qlstm.quantize.brevitas_bridge import read_type

        q = self.quant
        assert q is not None
        layers = tuple(
            RecurrentQuant(
                **{r: read_type(self.quantisers[_key(f"rnn{i}.{r}")], getattr(lq, r)) for r in LAYER_ROLES},
                table=lq.table,
            )
            for i, lq in enumerate(q.layers)
        )
        dense = DenseQuant(
            **{r: read_type(self.quantisers[_key(f"head.{r}")], getattr(q.dense, r)) for r in HEAD_ROLES}
        )
        return Quantisation(
            input=read_type(self.quantisers["input"], q.input),
            layers=layers,
            dense=dense,
            method=q.method,
            bits=q.bits,
        )

    # -- float / QAT-training dataflow ------------------------------------------------------
    def _trainable(self, x: torch.Tensor, qat: bool) -> torch.Tensor:
        types = self.current_quantisation() if qat else None
        h_seq = self._point("input", x, qat)
        for i, layer in enumerate(self.arch.layers):
            p = f"rnn{i}"
            w_ih = self._point(f"{p}.weight", self.weight(f"{p}.weight_ih"), qat)
            w_hh = self._point(f"{p}.recurrent_weight", self.weight(f"{p}.weight_hh"), qat)
            b_ih = self._point(f"{p}.bias", self.weight(f"{p}.bias_ih"), qat)
            b_hh = self._point(f"{p}.recurrent_bias", self.weight(f"{p}.bias_hh"), qat)
            lq = types.layers[i] if types is not None else None

            def acc(v: torch.Tensor, learn: bool = True, p: str = p) -> torch.Tensor:
                return self._point(f"{p}.accum", v, qat and learn)

            def state(v: torch.Tensor, p: str = p) -> torch.Tensor:
                return self._point(f"{p}.state", v, qat)

            def act(kind: str, v: torch.Tensor, src: str, lq: RecurrentQuant | None = lq) -> torch.Tensor:
                return acc(_act(kind, v, lq, src), learn=False)

            b_ih_acc, b_hh_acc = acc(b_ih, learn=False), acc(b_hh, learn=False)
            n, steps, hdim = x.shape[0], x.shape[1], layer.units
            h = x.new_zeros(n, hdim)
            c = x.new_zeros(n, hdim)
            outs = []
            for t in range(steps):
                a1 = acc(b_ih_acc + h_seq[:, t] @ w_ih.T, learn=False)
                a2 = acc(b_hh_acc + h @ w_hh.T, learn=False)
                if layer.cell == "lstm":
                    pre = acc(a1 + a2)
                    s_ = act("sigmoid", pre, "accum")  # one call for i, f, o (g's quarter unused)
                    si, sf, so = s_[:, :hdim], s_[:, hdim : 2 * hdim], s_[:, 3 * hdim :]
                    c = state(act("tanh", pre[:, 2 * hdim : 3 * hdim], "accum") * si + c * sf)
                    h = state(so * act("tanh", c, "state"))
                else:
                    rz = acc(a1[:, : 2 * hdim] + a2[:, : 2 * hdim])
                    r, z = act("sigmoid", rz, "accum").split(hdim, dim=1)
                    rh = acc(r * a2[:, 2 * hdim :], learn=False)
                    nh = act("tanh", acc(a1[:, 2 * hdim :] + rh), "accum")
                    h = state(nh * (1 - z) + h * z)
                outs.append(h)
            h_seq = torch.stack(outs, dim=1)
        w = self._point("head.weight", self.weight("head.weight"), qat)
        b = self._point("head.bias", self.weight("head.bias"), qat)
        y = self._point("head.accum", self._point("head.accum", b, qat) + h_seq[:, -1] @ w.T, qat)
        return self._point("head.result", y, qat)

    # -- the firmware dataflow --------------------------------------------------------------
    def _firmware(self, x: torch.Tensor) -> torch.Tensor:
        q = self.current_quantisation()
        with torch.no_grad():
            wq = {k: torch.from_numpy(v) for k, v in self.quantised_weights(q).items()}
            seq = fxp.cast(x, q.input)
            seq_t = q.input
            for i, layer in enumerate(self.arch.layers):
                seq = firmware_layer(layer.cell, seq, seq_t, wq, i, q.layers[i])
                seq_t = q.layers[i].state
            d = q.dense
            acc = fxp.dense(seq[:, -1], seq_t, wq["head.weight"], d.weight, wq["head.bias"], d.accum)
            return fxp.cast(acc, d.result, d.accum.frac)

    # ------------------------------------------------------------------ profiling
    def profile(self, x: np.ndarray, batch_size: int = 2048) -> Profile:
        """Run the float model on ``x`` and record max |value| at every quantisation point.

        Accumulator ranges also include the largest single product (each product is cast to
        ``accum`` before it is summed) and the activation outputs (stored at ``accum``)."""
        prof = Profile({})
        saved, self.quantisers, self._profile = self.quantisers, None, prof
        self.eval()
        try:
            with torch.no_grad():
                for s in range(0, len(x), batch_size):
                    self._trainable(
                        qat=False, x=torch.from_numpy(np.asarray(x[s : s + batch_size], dtype=np.float64))
                    )
        finally:
            self.quantisers, self._profile = saved, None
        m = prof.max_abs
        for i in range(len(self.arch.layers)):
            p = f"rnn{i}"
            xin = m["input"] if i == 0 else m[f"rnn{i - 1}.state"]
            m[f"{p}.accum"] = max(
                m[f"{p}.accum"], 1.0, xin * m[f"{p}.weight"], m[f"{p}.state"] * m[f"{p}.recurrent_weight"]
            )
        m["head.accum"] = max(m["head.accum"], m[f"rnn{len(self.arch.layers) - 1}.state"] * m["head.weight"])
        return prof


def _act(kind: str, v: torch.Tensor, lq: RecurrentQuant | None, src: str) -> torch.Tensor:
    """sigmoid/tanh of values of type ``lq.<src>``: exact in float; in QAT the firmware's value
    (table entry cast to ``accum``) with the exact function's gradient (straight-through)."""
    exact = torch.sigmoid(v) if kind == "sigmoid" else torch.tanh(v)
    if lq is None:
        return exact
    in_type = getattr(lq, src)
    table = fxp.cast(fxp.lut(kind, fxp.cast(v, in_type), in_type, lq.table), lq.accum)
    return exact + (table.to(exact.dtype) - exact).detach()


def _weight_type(q: Quantisation, name: str) -> FixedType:
    if name.startswith("head."):
        return q.dense.weight if name.endswith("weight") else q.dense.bias
    layer, key = name.split(".")
    return getattr(q.layers[int(layer[3:])], WEIGHT_ROLE[key])


def firmware_layer(
    cell: str, seq: torch.Tensor, seq_t: FixedType, wq: dict[str, torch.Tensor], i: int, lq: RecurrentQuant
) -> torch.Tensor:
    """``nnet::lstm_stack``/``gru_stack`` with ``lstm_static``/``gru_static``: (N, L, n_in) values of
    type ``seq_t`` -> (N, L, H) hidden states of type ``lq.state``. States start at zero."""
    acc, st, tab = lq.accum, lq.state, lq.table
    w_ih, w_hh, b_ih, b_hh = (wq[f"rnn{i}.{k}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    hdim = w_hh.shape[1]
    n, steps = seq.shape[0], seq.shape[1]
    h = torch.zeros(n, hdim, dtype=torch.float64)
    c = torch.zeros(n, hdim, dtype=torch.float64)

    def act(kind: str, v: torch.Tensor, t: FixedType) -> torch.Tensor:
        return fxp.cast(fxp.lut(kind, v, t, tab), acc, tab.type.frac)  # res = (res_T)table[index]

    eff = min(tab.type.frac, acc.frac)  # activation outputs lie on this grid
    tmax = max(abs(tab.type.min_value), tab.type.max_value)
    outs = []
    for t in range(steps):
        tmpres = fxp.dense(seq[:, t], seq_t, w_ih, lq.weight, b_ih, acc)
        tmpres_state = fxp.dense(h, st, w_hh, lq.recurrent_weight, b_hh, acc)
        if cell == "lstm":
            inputacc = fxp.cast(tmpres + tmpres_state, acc, acc.frac)
            i_, f_, g_, o_ = inputacc.split(hdim, dim=1)
            si, sf, so = act("sigmoid", i_, acc), act("sigmoid", f_, acc), act("sigmoid", o_, acc)
            tg = act("tanh", g_, acc)
            # s_state = tmpres_c * tmpres_ifo[i] + s_state * tmpres_ifo[f]  (exact, then res_T)
            fxp.check_exact(
                tmax * tmax + st.max_value * tmax + 1, eff + max(eff, st.frac), "LSTM cell update"
            )
            c = fxp.cast(tg * si + c * sf, st, eff + max(eff, st.frac))
            # h_state = tmpres_ifo[o] * tanh(s_state)
            h = fxp.cast(so * act("tanh", c, st), st, 2 * eff)
        else:
            rz = fxp.cast(tmpres[:, : 2 * hdim] + tmpres_state[:, : 2 * hdim], acc, acc.frac)
            zr = act("sigmoid", rz, acc)
            r, z = zr[:, :hdim], zr[:, hdim:]
            # tmpres_state_h = tmpres_zr[r] * tmpres_state_zr[n]  (pytorch_order), cast to accum
            fxp.check_exact(
                tmax * max(abs(acc.min_value), acc.max_value), eff + acc.frac, "GRU reset product"
            )
            rh = fxp.cast(r * tmpres_state[:, 2 * hdim :], acc, eff + acc.frac)
            nh = act("tanh", fxp.cast(tmpres[:, 2 * hdim :] + rh, acc, acc.frac), acc)
            # h = (res_T)(tmpres_h * (1 - z) + h_state * z)
            fxp.check_exact(
                2 * tmax * (tmax + 1) + st.max_value * tmax, eff + max(eff, st.frac), "GRU update"
            )
            h = fxp.cast(nh * (1 - z) + h * z, st, eff + max(eff, st.frac))
        outs.append(h)
    return torch.stack(outs, dim=1)


def predict_array(model: QuantNet, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """(N, L, C) -> (N, k) float64 with the model in eval mode (the firmware forward if quantised)."""
    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            outs.append(model(torch.from_numpy(np.asarray(x[s : s + batch_size], dtype=np.float64))).numpy())
    k = model.arch.horizon
    return np.concatenate(outs) if outs else np.zeros((0, k))
