"""What quantize computes in torch: the QAT forward, and the profile and weight grids around it.

One firmware forward: quantize does not compute the firmware itself. PTQ and QAT models are
evaluated by the bit-exact simulator (:class:`qlstm.firmware_sim.simulate.Firmware`, see
:mod:`qlstm.quantize.core`), and the float ranges are profiled on the core's float reference
(:func:`qlstm.float_reference.float_trace`). Torch keeps only what QAT's gradients need:

* :class:`QuantNet`: the hls4ml LSTM/GRU dataflow (``nnet_recurrent.h``, ``lstm_static`` /
  ``gru_static``) with a Brevitas fixed-point quantizer at every quantization point (straight-
  through gradients, learned power-of-two scales, :mod:`qlstm.quantize.qat`) and hls4ml's lookup
  tables in the forward pass with the exact function's gradient (straight-through, :func:`_act`).
  It differs from the firmware only where Brevitas cannot express it: a wrapping type is trained
  as saturating, and the dense products are summed exactly before the ``accum`` cast instead of
  being cast one by one (a difference of at most ``n_in`` accumulator LSBs; the policy keeps that
  LSB small). Where nothing wraps or rounds per product it equals the firmware bit for bit
  (``tests/test_quant_forward.py``).
* :func:`profile`: max |value| of the float network at every quantization point (PTQ's input).
* :func:`quantized_weights`: the parameters on their types' grids (what the firmware stores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qlstm import hls4ml_tables
from qlstm.description import Architecture, DenseQuant, Quantization, RecurrentQuant
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.float_reference import float_trace

#: Quantization points of a recurrent layer and of the head, as named in the description.
LAYER_ROLES = ("weight", "recurrent_weight", "bias", "recurrent_bias", "accum", "state")
HEAD_ROLES = ("weight", "bias", "accum", "result")
#: description weight key suffix -> the layer role quantizing it
WEIGHT_ROLE = {
    "weight_ih": "weight",
    "weight_hh": "recurrent_weight",
    "bias_ih": "bias",
    "bias_hh": "recurrent_bias",
}
#: Float trace tensors (:func:`qlstm.float_reference.float_trace`) stored at a layer's ``accum``
#: type in the firmware: the two dense sums, the gate sums, the activation outputs and, for the
#: GRU, the reset product. ``state`` holds ``h`` and the LSTM's ``c``.
ACCUM_TRACES = ("x_acc", "h_acc", "preact", "gates", "tanh_c", "r_h")
STATE_TRACES = ("c", "h")


@dataclass
class Profile:
    """max |value| seen at every quantization point (names as :meth:`Quantization.points`)."""

    max_abs: dict[str, float]

    def update(self, name: str, x: np.ndarray) -> None:
        v = float(np.max(np.abs(x))) if np.size(x) else 0.0
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), v)


def profile(
    arch: Architecture, weights: dict[str, np.ndarray], x: np.ndarray, batch_size: int = 256
) -> Profile:
    """Max |value| of the float network at every quantization point on (N, L, C) windows ``x``.

    Values come from :func:`qlstm.float_reference.float_trace` (float64, exact activations), in
    batches of ``batch_size`` windows. Accumulator ranges also cover the biases (cast to
    ``accum``), 1.0 (the activation outputs, stored at ``accum``) and the largest single product
    (each product is cast to ``accum`` before it is summed). Raises :class:`QlstmError` if ``x``
    holds no windows."""
    if len(x) == 0:
        raise QlstmError("no windows to profile the float model on (the training split is empty)")
    prof = Profile({})
    m = prof.max_abs
    n_layers = len(arch.layers)
    for s in range(0, len(x), batch_size):
        tr = float_trace(arch, weights, np.asarray(x[s : s + batch_size], dtype=np.float64))
        prof.update("input", tr["input"])
        for i in range(n_layers):
            p = f"rnn{i}"
            for key, role in WEIGHT_ROLE.items():
                prof.update(f"{p}.{role}", weights[f"{p}.{key}"])
            for key in ACCUM_TRACES:
                if f"{p}.{key}" in tr:
                    prof.update(f"{p}.accum", tr[f"{p}.{key}"])
            prof.update(f"{p}.accum", weights[f"{p}.bias_ih"])
            prof.update(f"{p}.accum", weights[f"{p}.bias_hh"])
            for key in STATE_TRACES:
                if f"{p}.{key}" in tr:
                    prof.update(f"{p}.state", tr[f"{p}.{key}"])
        for nm, d in zip(arch.head_names(), arch.head, strict=True):
            prof.update(f"{nm}.weight", weights[f"{nm}.weight"])
            prof.update(f"{nm}.bias", weights[f"{nm}.bias"])
            prof.update(f"{nm}.accum", weights[f"{nm}.bias"])
            prof.update(f"{nm}.accum", tr[f"{nm}.acc"])
            if d.activation == "linear":
                prof.update(f"{nm}.result", tr[nm])
            else:
                prof.update(f"{nm}.result", tr[f"{nm}.result"])
                prof.update(f"{nm}.act_result", tr[nm])
    for i in range(n_layers):
        p = f"rnn{i}"
        xin = m["input"] if i == 0 else m[f"rnn{i - 1}.state"]
        m[f"{p}.accum"] = max(
            m[f"{p}.accum"], 1.0, xin * m[f"{p}.weight"], m[f"{p}.state"] * m[f"{p}.recurrent_weight"]
        )
    xin = m[f"rnn{n_layers - 1}.state"]
    for nm, d in zip(arch.head_names(), arch.head, strict=True):
        m[f"{nm}.accum"] = max(m[f"{nm}.accum"], xin * m[f"{nm}.weight"])
        xin = m[f"{nm}.result"] if d.activation == "linear" else m[f"{nm}.act_result"]
    return prof


def weight_type(q: Quantization, name: str) -> FixedType:
    """The type of the description weight ``name`` (e.g. ``rnn0.weight_ih``, ``head.bias``)."""
    return q.weight_type(name)


def quantized_weights(q: Quantization, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The parameters rounded onto their types' grids (what the firmware stores), float64, in
    sorted name order (the order of the QAT module's parameters, so weights.npz is reproducible)."""
    return {
        name: weight_type(q, name).quantize(np.asarray(weights[name], dtype=np.float64))
        for name in sorted(weights)
    }


def _key(name: str) -> str:
    return name.replace(".", "__")


class QuantNet(nn.Module):
    """The QAT forward: (N, L, C) normalised windows -> (N, k), float64, with a Brevitas
    quantizer at every point of ``quant`` (its types are the starting scales)."""

    def __init__(self, arch: Architecture, weights: dict[str, np.ndarray], quant: Quantization) -> None:
        from qlstm.quantize.brevitas_bridge import quantizer

        if not arch.simple_head:
            raise QlstmError(
                f"QAT: the head {' -> '.join(f'Dense({d.units}, {d.activation})' for d in arch.head)} is not "
                "trainable by the QAT forward (one linear Dense layer only); use --method ptq"
            )
        super().__init__()
        self.arch = arch
        self.quant = quant
        self.params = nn.ParameterDict(
            {
                _key(k): nn.Parameter(torch.tensor(np.asarray(v), dtype=torch.float64))
                for k, v in weights.items()
            }
        )
        #: point name (dots as ``__``) -> Brevitas quantizer; the tables are not learned.
        self.quantizers = nn.ModuleDict(
            {
                _key(name): quantizer(t, f"QAT point {name}")
                for name, t in quant.points().items()
                if not name.endswith(".table")
            }
        )

    def weight(self, name: str) -> torch.Tensor:
        return self.params[_key(name)]

    def weights_numpy(self) -> dict[str, np.ndarray]:
        return {k.replace("__", "."): p.detach().numpy().copy() for k, p in self.params.items()}

    def current_quantization(self) -> Quantization:
        """Types of every point as read from the (trained) Brevitas quantizers."""
        from qlstm.quantize.brevitas_bridge import read_type

        q = self.quant
        layers = tuple(
            RecurrentQuant(
                **{r: read_type(self.quantizers[_key(f"rnn{i}.{r}")], getattr(lq, r)) for r in LAYER_ROLES},
                table=lq.table,
            )
            for i, lq in enumerate(q.layers)
        )
        dense = DenseQuant(
            **{r: read_type(self.quantizers[_key(f"head.{r}")], getattr(q.dense, r)) for r in HEAD_ROLES}
        )
        return Quantization(
            input=read_type(self.quantizers["input"], q.input),
            layers=layers,
            dense=dense,
            method=q.method,
            bits=q.bits,
        )

    def _point(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Brevitas fake quantization at quantization point ``name``."""
        return self.quantizers[_key(name)](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The hls4ml dataflow with fake quantization at every point (training and validation)."""
        x = x.to(torch.float64)
        types = self.current_quantization()
        h_seq = self._point("input", x)
        for i, layer in enumerate(self.arch.layers):
            p = f"rnn{i}"
            w_ih = self._point(f"{p}.weight", self.weight(f"{p}.weight_ih"))
            w_hh = self._point(f"{p}.recurrent_weight", self.weight(f"{p}.weight_hh"))
            b_ih = self._point(f"{p}.bias", self.weight(f"{p}.bias_ih"))
            b_hh = self._point(f"{p}.recurrent_bias", self.weight(f"{p}.bias_hh"))
            lq = types.layers[i]

            def acc(v: torch.Tensor, p: str = p) -> torch.Tensor:
                return self._point(f"{p}.accum", v)

            def state(v: torch.Tensor, p: str = p) -> torch.Tensor:
                return self._point(f"{p}.state", v)

            def act(kind: str, v: torch.Tensor, src: str, lq: RecurrentQuant = lq) -> torch.Tensor:
                return _act(kind, v, lq, src)  # the table entry cast to accum: on accum's grid

            n, steps, hdim = x.shape[0], x.shape[1], layer.units
            h = x.new_zeros(n, hdim)
            c = x.new_zeros(n, hdim)
            outs = []
            for t in range(steps):
                a1 = b_ih + h_seq[:, t] @ w_ih.T
                a2 = b_hh + h @ w_hh.T
                if layer.cell == "lstm":
                    pre = acc(a1 + a2)
                    s_ = act("sigmoid", pre, "accum")  # one call for i, f, o (g's quarter unused)
                    si, sf, so = s_[:, :hdim], s_[:, hdim : 2 * hdim], s_[:, 3 * hdim :]
                    c = state(act("tanh", pre[:, 2 * hdim : 3 * hdim], "accum") * si + c * sf)
                    h = state(so * act("tanh", c, "state"))
                else:
                    rz = acc(a1[:, : 2 * hdim] + a2[:, : 2 * hdim])
                    r, z = act("sigmoid", rz, "accum").split(hdim, dim=1)
                    rh = r * a2[:, 2 * hdim :]
                    nh = act("tanh", acc(a1[:, 2 * hdim :] + rh), "accum")
                    h = state(nh * (1 - z) + h * z)
                outs.append(h)
            h_seq = torch.stack(outs, dim=1)
        w = self._point("head.weight", self.weight("head.weight"))
        b = self._point("head.bias", self.weight("head.bias"))
        y = self._point("head.accum", self._point("head.accum", b) + h_seq[:, -1] @ w.T)
        return self._point("head.result", y)


def _act(kind: str, v: torch.Tensor, lq: RecurrentQuant, src: str) -> torch.Tensor:
    """sigmoid/tanh of values of type ``lq.<src>``: the firmware's value (the table entry of
    :mod:`qlstm.hls4ml_tables`, cast to ``accum``) with the exact function's gradient
    (straight-through)."""
    exact = torch.sigmoid(v) if kind == "sigmoid" else torch.tanh(v)
    in_type, spec = getattr(lq, src), lq.table
    m = in_type.to_int(v.detach().cpu().numpy())  # (data_T) v: the table input's mantissas
    entry = spec.type.to_float(hls4ml_tables.lookup(kind, m, in_type.frac, spec))  # type: ignore[arg-type]
    table = torch.from_numpy(lq.accum.quantize(entry))  # res = (accum_t) table[index]
    return exact + (table.to(exact.dtype) - exact).detach()
