"""The float predictor: stacked single-layer LSTM/GRU modules and a Dense head, in PyTorch.

Each recurrent layer is its own ``nn.LSTM``/``nn.GRU`` with ``num_layers=1`` (the shape hls4ml
converts layer by layer); every layer but the last returns its whole sequence to the next, and
the head maps the last layer's final hidden state to the ``k`` predicted steps. Dropout acts
between recurrent layers during training only, so a one-layer model has none.

:func:`to_weights` / :func:`from_weights` convert to and from the model description's weight
layout (``rnn{i}.weight_ih`` ... ``head.bias``, see :mod:`qlstm.description`), which is PyTorch's
own layout and gate order, so the mapping is a renaming.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qlstm.description import Architecture, check_weights
from qlstm.errors import QlstmError

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
#: description key suffix -> PyTorch parameter name of a one-layer nn.LSTM/nn.GRU
_PARAM_NAMES = {
    "weight_ih": "weight_ih_l0",
    "weight_hh": "weight_hh_l0",
    "bias_ih": "bias_ih_l0",
    "bias_hh": "bias_hh_l0",
}


class Predictor(nn.Module):
    """(N, L, C) normalised history -> (N, k) normalised target at t+1..t+k.

    ``in_shift``/``in_scale`` (per channel) and ``out_shift``/``out_scale`` are a fixed affine
    standardisation used during training only: the network sees ``(x - in_shift) * in_scale``
    and its head output is mapped back by ``* out_scale + out_shift``. Both are affine, so
    :func:`to_weights` folds them exactly into ``rnn0``'s input kernel and bias and into the head;
    the saved model is the plain architecture on the min-max normalised data.
    """

    def __init__(
        self,
        arch: Architecture,
        in_shift: np.ndarray | None = None,
        in_scale: np.ndarray | None = None,
        out_shift: float = 0.0,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.arch = arch
        c = arch.input_channels
        shift = np.zeros(c) if in_shift is None else np.asarray(in_shift, dtype=np.float64)
        scale = np.ones(c) if in_scale is None else np.asarray(in_scale, dtype=np.float64)
        if shift.shape != (c,) or scale.shape != (c,) or not np.all(scale > 0) or not out_scale > 0:
            raise ValueError("standardisation: one shift and one positive scale per input channel")
        # not persistent: they are folded into the weights, never saved separately
        self.register_buffer("in_shift", torch.tensor(shift, dtype=torch.float32), persistent=False)
        self.register_buffer("in_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.out_shift, self.out_scale = float(out_shift), float(out_scale)
        self._fold = (shift, scale, self.out_shift, self.out_scale)
        self.rnns = nn.ModuleList()
        n_in = arch.input_channels
        for layer in arch.layers:
            self.rnns.append(_CELLS[layer.cell](n_in, layer.units, num_layers=1, batch_first=True))
            n_in = layer.units
        self.dropout = nn.Dropout(arch.dropout)
        # the head's Dense layers before the last (description names dense{j}); empty for one layer
        self.hidden = nn.ModuleList()
        for d in arch.head[:-1]:
            self.hidden.append(nn.Linear(n_in, d.units))
            n_in = d.units
        self.head = nn.Linear(n_in, arch.horizon)

    @property
    def standardised(self) -> bool:
        shift, scale, oshift, oscale = self._fold
        return bool(np.any(shift != 0) or np.any(scale != 1) or oshift != 0 or oscale != 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.in_shift.to(x.dtype)) * self.in_scale.to(x.dtype) if self.standardised else x
        for i, rnn in enumerate(self.rnns):
            if i > 0:
                h = self.dropout(h)
            h, _ = rnn(h)
        y = h[:, -1, :]
        for lin, d in zip(self.hidden, self.arch.head[:-1], strict=True):
            y = activate(d.activation, lin(y))
        y = activate(self.arch.head[-1].activation, self.head(y))
        return y * self.out_scale + self.out_shift if self.standardised else y


def activate(kind: str, x: torch.Tensor) -> torch.Tensor:
    """A head activation (``qlstm.description.HEAD_ACTIVATIONS``) in PyTorch."""
    if kind == "linear":
        return x
    if kind == "relu":
        return torch.relu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "tanh":
        return torch.tanh(x)
    return torch.softmax(x, dim=-1)


def to_weights(model: Predictor) -> dict[str, np.ndarray]:
    """The model's parameters in the description's layout, with any training standardisation
    folded in (float64 arrays holding float32 values, so a checkpoint can hold them exactly).

    Folding: ``W (x - m) s + b = (W s) x + (b - (W s) m)`` for ``rnn0``'s input kernel, and
    ``(V h + c) t + u = (t V) h + (t c + u)`` for the head.
    """
    out: dict[str, np.ndarray] = {}
    for i, rnn in enumerate(model.rnns):
        params = dict(rnn.named_parameters())
        for key, torch_name in _PARAM_NAMES.items():
            out[f"rnn{i}.{key}"] = params[torch_name].detach().cpu().double().numpy().copy()
    for j, lin in enumerate(model.hidden):
        out[f"dense{j}.weight"] = lin.weight.detach().cpu().double().numpy().copy()
        out[f"dense{j}.bias"] = lin.bias.detach().cpu().double().numpy().copy()
    out["head.weight"] = model.head.weight.detach().cpu().double().numpy().copy()
    out["head.bias"] = model.head.bias.detach().cpu().double().numpy().copy()
    if model.standardised:
        shift, scale, oshift, oscale = model._fold
        if model.arch.head[-1].activation != "linear" and (oshift != 0 or oscale != 1):
            raise QlstmError("output standardisation folds into a linear last head layer only")
        w = out["rnn0.weight_ih"] * scale[None, :]
        out["rnn0.weight_ih"] = w
        out["rnn0.bias_ih"] = out["rnn0.bias_ih"] - w @ shift
        out["head.weight"] = out["head.weight"] * oscale
        out["head.bias"] = out["head.bias"] * oscale + oshift
    return {k: v.astype(np.float32).astype(np.float64) for k, v in out.items()}


def state_dict_to_weights(arch: Architecture, state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A :class:`Predictor` state_dict (e.g. from ``checkpoint.pt``) in the description's layout."""
    expected = {
        f"rnns.{i}.{t}": f"rnn{i}.{k}" for i in range(len(arch.layers)) for k, t in _PARAM_NAMES.items()
    }
    expected |= {"head.weight": "head.weight", "head.bias": "head.bias"}
    expected |= {
        f"hidden.{j}.{p}": f"dense{j}.{p}" for j in range(len(arch.head) - 1) for p in ("weight", "bias")
    }
    if set(state) != set(expected):
        raise QlstmError(
            "checkpoint does not match the architecture "
            f"(missing {sorted(set(expected) - set(state))}, extra {sorted(set(state) - set(expected))})"
        )
    return {expected[k]: v.detach().cpu().double().numpy().copy() for k, v in state.items()}


def from_weights(arch: Architecture, weights: dict[str, np.ndarray]) -> Predictor:
    """A :class:`Predictor` holding ``weights`` (description layout), in eval mode.

    The arrays are stored as float32, which is exact for weights trained in float32 and for
    fixed-point weights of up to 24 significant bits.
    """
    from qlstm.description import ModelDescription, Normalisation

    probe = ModelDescription(arch, Normalisation((0.0,), (1.0,), ("x",)))
    check_weights(probe, weights)
    model = Predictor(arch)
    with torch.no_grad():
        for i, rnn in enumerate(model.rnns):
            params = dict(rnn.named_parameters())
            for key, torch_name in _PARAM_NAMES.items():
                params[torch_name].copy_(torch.from_numpy(np.asarray(weights[f"rnn{i}.{key}"])))
        model.head.weight.copy_(torch.from_numpy(np.asarray(weights["head.weight"])))
        model.head.bias.copy_(torch.from_numpy(np.asarray(weights["head.bias"])))
        for j, lin in enumerate(model.hidden):
            lin.weight.copy_(torch.from_numpy(np.asarray(weights[f"dense{j}.weight"])))
            lin.bias.copy_(torch.from_numpy(np.asarray(weights[f"dense{j}.bias"])))
    return model.eval()


def predict_array(model: Predictor, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Run ``model`` on (N, L, C) windows in batches, in float64; returns (N, k) float64.

    Float64 makes this the reference the quantized backends are compared against: its own
    rounding error (~1e-16) is far below any fixed-point LSB.
    """
    model = model.eval()
    ref = next(model.parameters())
    dtype_model = model if ref.dtype == torch.float64 else _double_copy(model)
    out = np.empty((x.shape[0], model.arch.horizon), dtype=np.float64)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.asarray(x[s : s + batch_size], dtype=np.float64))
            out[s : s + batch_size] = dtype_model(xb).numpy()
    return out


def _double_copy(model: Predictor) -> Predictor:
    shift, scale, oshift, oscale = model._fold
    twin = Predictor(model.arch, shift, scale, oshift, oscale)
    twin.load_state_dict(model.state_dict())
    return twin.double().eval()
