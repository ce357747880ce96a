"""The model description: the single, self-describing input of every stage after training.

A run folder holds ``model.json`` (this description) beside ``weights.npz``. The description
says what the network is (architecture), how its inputs were normalised, and - for a quantized
run - the fixed-point type of every quantization point *as the hls4ml firmware computes it*.
``firmware_sim/`` and the generated hls4ml C++ are built from nothing else (``hls/`` also reads
the held-out windows for its test bench, through :mod:`qlstm.runs`); ``quantize/`` writes it.

Weights (``weights.npz``) use PyTorch's layout and gate order, one set per recurrent layer ``i``:

=====================  ===============  ==========================================
key                    shape            meaning
=====================  ===============  ==========================================
``rnn{i}.weight_ih``   (G*H, n_in)      input kernel; LSTM gates i,f,g,o; GRU r,z,n
``rnn{i}.weight_hh``   (G*H, H)         recurrent kernel
``rnn{i}.bias_ih``     (G*H,)           input bias
``rnn{i}.bias_hh``     (G*H,)           recurrent bias
``dense{j}.weight``    (U_j, n_in)      Dense layer j of the head but the last
``dense{j}.bias``      (U_j,)
``head.weight``        (k, n_in)        the head's last (output) Dense layer
``head.bias``          (k,)
=====================  ===============  ==========================================

The head is a list of Dense layers (:class:`DenseLayer`: ``units`` and ``activation``, one of
:data:`HEAD_ACTIVATIONS`) reading the last time step of the last recurrent layer; the last has
``k`` units and keeps the names ``head.*`` (a run with one linear Dense layer, the only head
before qlstm-model/3, has exactly the arrays it had).

with ``G = 4`` for LSTM and ``3`` for GRU. In a quantized run every array lies exactly on the
grid of its fixed-point type (float64 values ``mantissa * 2**-frac``).

The hls4ml LSTM/GRU kernels (``nnet_recurrent.h``, static variant) fix the dataflow these
types describe, per recurrent layer:

* ``weight``/``recurrent_weight``/``bias``/``recurrent_bias``: the kernel and bias arrays;
* ``accum``: the two dense products ``W x + b`` and ``U h + b_r`` (accumulated at this type),
  their sum, and the outputs of the sigmoid/tanh lookup tables;
* ``table``: size and type of the lookup tables (sigmoid over [-8, 8), tanh over [-4, 4));
* ``state``: hls4ml's ``res_T``: the hidden state ``h`` *and* the cell state ``c`` of an LSTM
  are both stored at this type every step, and it is the layer's output type.

Each Dense layer of the head (hls4ml's ``Dense`` then, unless linear, an ``Activation`` layer)
has ``weight``, ``bias``, ``accum`` and ``result`` (the Dense output, ``res_T`` of
``dense_latency``); a layer with an activation also has ``act_result`` (the activation layer's
``res_T``) and, for sigmoid/tanh, ``table`` (the activation layer's ``table_t`` and
``table_size``). The last layer's output is the network output.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qlstm import __version__
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.io import atomic_write_bytes, atomic_write_text, read_text

FORMAT = "qlstm-model/3"
#: Formats still read, and the key renames that bring them to :data:`FORMAT`: qlstm-model/1
#: spelt the quantization section with an s (written by qlstm before 2026-11-30); qlstm-model/2
#: has no ``architecture.head`` (one linear Dense layer of ``horizon`` units, the default).
OLD_FORMATS = {"qlstm-model/1": {"quantisation": "quantization"}, "qlstm-model/2": {}}
DESCRIPTION_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"

Cell = Literal["lstm", "gru"]
GATES = {"lstm": 4, "gru": 3}
#: Input half-ranges of hls4ml's lookup tables (``nnet_activation.h``): sigmoid covers
#: [-8, 8), tanh [-4, 4). Fixed by the templates; recorded so a reader need not know that.
SIGMOID_RANGE = 8.0
TANH_RANGE = 4.0
#: Activations of a head Dense layer (hls4ml ``Activation`` layers, ``nnet_activation.h``).
HEAD_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")
#: Head activations computed by hls4ml with a lookup table (``table_t``, ``table_size``).
TABLE_ACTIVATIONS = ("sigmoid", "tanh")


def _check_keys(cls: type, data: dict[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise QlstmError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    from dataclasses import MISSING

    missing = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING} - set(
        data
    )
    if missing:
        raise QlstmError(f"{where}: missing key(s) {', '.join(sorted(missing))}")


# ====================================================================== architecture
@dataclass(frozen=True)
class RecurrentLayer:
    """One recurrent layer; every layer but the last returns the whole sequence."""

    cell: Cell
    units: int

    def __post_init__(self) -> None:
        if self.cell not in GATES:
            raise QlstmError(f"unknown recurrent cell {self.cell!r}; choose lstm or gru")
        if not 1 <= self.units <= 1024:
            raise QlstmError(f"recurrent layer units {self.units} outside 1-1024")


@dataclass(frozen=True)
class DenseLayer:
    """One Dense layer of the head: ``units`` outputs, then ``activation`` (linear: none)."""

    units: int
    activation: str = "linear"

    def __post_init__(self) -> None:
        if self.activation not in HEAD_ACTIVATIONS:
            raise QlstmError(
                f"unknown head activation {self.activation!r}; choose one of {', '.join(HEAD_ACTIVATIONS)}"
            )
        if not 1 <= self.units <= 4096:
            raise QlstmError(f"dense layer units {self.units} outside 1-4096")


def head_name(j: int, n: int) -> str:
    """Name of head layer ``j`` of ``n``: ``dense{j}``, the last ``head`` (weights, traces, hls4ml)."""
    return "head" if j == n - 1 else f"dense{j}"


#: The one range of the history L and the horizon k (inclusive).
HISTORY_RANGE = (1, 128)
HORIZON_RANGE = (1, 32)


def check_history_horizon(
    history: int | None, horizon: int | None, opts: tuple[str, str] | None = None
) -> None:
    """Refuse L or k outside :data:`HISTORY_RANGE` / :data:`HORIZON_RANGE` (None: not checked);
    ``opts`` names the command-line options in the message instead of L and k."""
    for v, (lo, hi), name, opt in (
        (history, HISTORY_RANGE, "history L", opts[0] if opts else None),
        (horizon, HORIZON_RANGE, "horizon k", opts[1] if opts else None),
    ):
        if v is not None and not lo <= v <= hi:
            raise QlstmError(f"{opt} {v}: outside {lo}-{hi}" if opt else f"{name}={v} outside {lo}-{hi}")


@dataclass(frozen=True)
class Architecture:
    """What the network computes, independent of numbers: (N, L, C) -> (N, k)."""

    input_channels: int
    history: int  # L
    horizon: int  # k
    layers: tuple[RecurrentLayer, ...]
    dropout: float = 0.0  # training only; the exported/firmware model has none
    #: The Dense layers after the last recurrent layer; the last has ``horizon`` units. Empty
    #: means one linear Dense layer (the head of every run before qlstm-model/3).
    head: tuple[DenseLayer, ...] = ()

    def __post_init__(self) -> None:
        check_history_horizon(self.history, self.horizon)
        if not self.head:
            object.__setattr__(self, "head", (DenseLayer(self.horizon),))
        if self.head[-1].units != self.horizon:
            raise QlstmError(
                f"the head's last Dense layer has {self.head[-1].units} units, expected horizon k={self.horizon}"
            )
        if self.input_channels < 1:
            raise QlstmError(f"input_channels={self.input_channels} must be >= 1")
        if not self.layers:
            raise QlstmError("at least one recurrent layer is required")
        if not 0.0 <= self.dropout < 1.0:
            raise QlstmError(f"dropout {self.dropout} outside [0, 1)")

    def n_in(self, i: int) -> int:
        return self.input_channels if i == 0 else self.layers[i - 1].units

    @property
    def simple_head(self) -> bool:
        """One linear Dense layer (the head every stage has supported from the start)."""
        return len(self.head) == 1 and self.head[0].activation == "linear"

    def head_names(self) -> tuple[str, ...]:
        """``dense0`` ... ``head``: the names of the head's layers (:func:`head_name`)."""
        return tuple(head_name(j, len(self.head)) for j in range(len(self.head)))

    def head_n_in(self, j: int) -> int:
        return self.layers[-1].units if j == 0 else self.head[j - 1].units

    def check_windows(self, x: np.ndarray, where: str = "inputs") -> np.ndarray:
        """The one input-window check: ``x`` must be finite numbers of shape (N > 0, L, C) for
        this architecture (normalised units). Returns them as float64.

        Raises QlstmError naming ``where`` for a non-numeric dtype, a wrong shape, no windows,
        or NaN/inf.
        """
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise QlstmError(f"{where}: holds {x.dtype} values, expected numbers")
        if x.ndim != 3 or x.shape[1:] != (self.history, self.input_channels):
            raise QlstmError(
                f"{where}: shape {x.shape}, expected (N, L={self.history}, C={self.input_channels}) windows "
                "for this run"
            )
        if x.shape[0] == 0:
            raise QlstmError(f"{where}: holds no windows (N = 0)")
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise QlstmError(f"{where}: holds NaN or inf")
        return x

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for i, layer in enumerate(self.layers):
            g = GATES[layer.cell] * layer.units
            shapes[f"rnn{i}.weight_ih"] = (g, self.n_in(i))
            shapes[f"rnn{i}.weight_hh"] = (g, layer.units)
            shapes[f"rnn{i}.bias_ih"] = (g,)
            shapes[f"rnn{i}.bias_hh"] = (g,)
        for j, (nm, d) in enumerate(zip(self.head_names(), self.head, strict=True)):
            shapes[f"{nm}.weight"] = (d.units, self.head_n_in(j))
            shapes[f"{nm}.bias"] = (d.units,)
        return shapes

    def n_parameters(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes().values())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        _check_keys(cls, d, "architecture")
        layers = tuple(RecurrentLayer(**layer) for layer in d["layers"])
        head = []
        for x in d.get("head", ()):
            _check_keys(DenseLayer, x, "architecture.head[]")
            head.append(DenseLayer(**x))
        return cls(**{**d, "layers": layers, "head": tuple(head)})


# ====================================================================== normalisation
@dataclass(frozen=True)
class Normalisation:
    """Min-max scaling to [0, 1] per channel, fitted on the training events only.

    ``normalised = (raw - lo) / (hi - lo)``. Channel ``target_channel`` is the predicted one.
    """

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    channel_names: tuple[str, ...]
    target_channel: int = 0
    #: Unit of each input channel as the training data stated it (``"V"``, ``"mV"``, ``""`` if
    #: none); the output's unit is ``units[target_channel]``. Recordings in other units are
    #: converted to these (or refused) by :func:`qlstm.data.load_for_model`. Optional: files
    #: written without it read as ``()``, and then no unit is checked.
    units: tuple[str, ...] = ()

    @property
    def target_unit(self) -> str:
        """Unit of the predicted channel (the network output after :meth:`invert_target`)."""
        return self.units[self.target_channel] if self.units else ""

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi) or len(self.lo) != len(self.channel_names):
            raise QlstmError("normalisation: lo, hi and channel_names must have one entry per channel")
        if any(h <= lo for lo, h in zip(self.lo, self.hi, strict=True)):
            raise QlstmError(
                "normalisation: every channel needs hi > lo (a constant channel cannot be scaled)"
            )

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """(..., C) raw values -> normalised float32-compatible float64."""
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        return (np.asarray(raw, dtype=np.float64) - lo) / (hi - lo)

    def invert_target(self, y: np.ndarray) -> np.ndarray:
        lo, hi = self.lo[self.target_channel], self.hi[self.target_channel]
        return np.asarray(y, dtype=np.float64) * (hi - lo) + lo

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisation:
        _check_keys(cls, d, "normalisation")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ====================================================================== standardisation
#: Why a channel (or the target) was left unscaled by the training standardisation.
CONSTANT_IN_WINDOWS = "constant over the training windows"


@dataclass(frozen=True)
class Standardisation:
    """The training standardisation actually applied, per input channel and for the target.

    The network trained on ``(x - in_shift) * in_scale`` (per channel, normalised units) and its
    output was mapped back by ``* out_scale + out_shift`` (one pair for all ``k`` steps: they are
    one channel). Both maps are already folded into ``rnn0``'s input kernel and bias and into the
    head (:func:`qlstm.train.model.to_weights`): this is a record of what training did, never
    applied again by a later stage. ``mode`` is the configured ``training.standardise``;
    ``unscaled`` names the input channels that got scale 1 (and shift = their constant value)
    because they are constant over the training windows (the rule:
    :func:`qlstm.train.dataset.standardisation`).
    """

    mode: str
    in_shift: tuple[float, ...]
    in_scale: tuple[float, ...]
    out_shift: float = 0.0
    out_scale: float = 1.0
    unscaled: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.in_shift) != len(self.in_scale):
            raise QlstmError("standardisation: one shift and one scale per input channel")
        if not all(s > 0 and math.isfinite(s) for s in (*self.in_scale, self.out_scale)):
            raise QlstmError("standardisation: every scale must be positive and finite")

    @property
    def applied(self) -> bool:
        """Anything but the identity was applied."""
        return (
            any(v != 0 for v in self.in_shift)
            or any(v != 1 for v in self.in_scale)
            or (self.out_shift != 0 or self.out_scale != 1)
        )

    def fold_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`qlstm.train.model.Predictor`."""
        return {
            "in_shift": np.asarray(self.in_shift, dtype=np.float64),
            "in_scale": np.asarray(self.in_scale, dtype=np.float64),
            "out_shift": self.out_shift,
            "out_scale": self.out_scale,
        }

    def summary(self, channel_names: tuple[str, ...]) -> str:
        """One line saying what was standardised, e.g. for ``qlstm train``'s output."""
        if self.mode == "none":
            return "standardisation: none (configured)"
        done = [
            f"{n} (scale {s:.3g})"
            for n, s in zip(channel_names, self.in_scale, strict=True)
            if n not in self.unscaled
        ]
        text = f"standardisation ({self.mode}): inputs {', '.join(done) or 'none'} standardised"
        if self.unscaled:
            text += f"; {', '.join(self.unscaled)} left unscaled ({CONSTANT_IN_WINDOWS})"
        if self.mode == "both":
            text += f"; target standardised (std {self.out_scale:.3g})"
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardisation:
        _check_keys(cls, d, "standardisation")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ====================================================================== quantization
@dataclass(frozen=True)
class TableSpec:
    """A sigmoid/tanh lookup table of hls4ml: ``size`` entries stored as ``type``."""

    size: int
    type: FixedType

    def __post_init__(self) -> None:
        if self.size < 2 or self.size & (self.size - 1):
            raise QlstmError(f"activation table size {self.size} must be a power of two >= 2")


@dataclass(frozen=True)
class RecurrentQuant:
    """Fixed-point types of one LSTM/GRU layer, named as hls4ml's layer config names them."""

    weight: FixedType
    recurrent_weight: FixedType
    bias: FixedType
    recurrent_bias: FixedType
    accum: FixedType
    state: FixedType  # hls4ml res_T: h and (LSTM) c, and the layer output
    table: TableSpec


@dataclass(frozen=True)
class DenseQuant:
    """Fixed-point types of one Dense layer of the head (hls4ml's names).

    ``result``: the Dense output (``res_T`` of ``dense_latency``); ``act_result``: the output of
    its activation layer (None when linear); ``table``: that layer's ``table_t``/``table_size``
    (sigmoid and tanh only).
    """

    weight: FixedType
    bias: FixedType
    accum: FixedType
    result: FixedType
    act_result: FixedType | None = None
    table: TableSpec | None = None

    @property
    def output(self) -> FixedType:
        """The layer's output type: the activation's result, or the Dense result when linear."""
        return self.result if self.act_result is None else self.act_result


@dataclass(frozen=True)
class AlarmQuant:
    """Fixed-point types of the quench-precursor alarm behind the network (``qlstm.detect``).

    ``residual``: target minus prediction per step ahead (normalised units); ``score``: the
    combined residual and the running score (EWMA/CUSUM) computed from it; ``threshold``: the
    calibrated alarm threshold; ``counter``: the run-length counter of samples above it.
    """

    residual: FixedType
    score: FixedType
    threshold: FixedType
    counter: FixedType

    @classmethod
    def default_for(cls, q: Quantization) -> AlarmQuant:
        """Types for a run whose description has none (the one place they are derived).

        The residual keeps every fractional bit of the input and output types (the difference
        is then exact) in 18 bits, saturating (a wrapped residual would hide a large one); the
        score and threshold have 8 more fractional bits (an EWMA of weight 2**-n, n <= 8, then
        keeps the bits its division shifts out) in 24 bits, unsigned, saturating; the counter
        is ``ap_uint<8>`` saturating (run lengths up to 255 samples).
        """
        frac = max(q.input.frac, q.output.frac)
        sfrac = frac + 8
        return cls(
            residual=FixedType(18, 18 - frac, True, "AP_TRN", "AP_SAT"),
            score=FixedType(24, 24 - sfrac, False, "AP_TRN", "AP_SAT"),
            threshold=FixedType(24, 24 - sfrac, False, "AP_TRN", "AP_SAT"),
            counter=FixedType(8, 8, False, "AP_TRN", "AP_SAT"),
        )


@dataclass(frozen=True)
class Quantization:
    """Every quantization point of the firmware dataflow."""

    input: FixedType
    layers: tuple[RecurrentQuant, ...]
    #: the head's last (output) Dense layer; its ``output`` is the network output type
    dense: DenseQuant
    #: Brevitas/PTQ bookkeeping: how the integer bits were chosen (free text, for humans).
    method: str = "ptq"
    bits: int = 16
    #: The alarm's types (optional: descriptions written before it existed have none, and
    #: :meth:`alarm_types` then derives them with :meth:`AlarmQuant.default_for`).
    alarm: AlarmQuant | None = None
    #: the head's Dense layers before the last (``dense0`` ...), empty for a one-layer head
    hidden: tuple[DenseQuant, ...] = ()

    @property
    def head(self) -> tuple[DenseQuant, ...]:
        """Every head layer's types, in order (``hidden`` then ``dense``)."""
        return (*self.hidden, self.dense)

    @property
    def output(self) -> FixedType:
        """The network output type (the last head layer's output)."""
        return self.dense.output

    def alarm_types(self) -> AlarmQuant:
        """The alarm's types: the description's own, or the default derived from this one."""
        return self.alarm if self.alarm is not None else AlarmQuant.default_for(self)

    def points(self) -> dict[str, FixedType]:
        """Flat, named view of every fixed-point type (for reports and checks)."""
        out = {"input": self.input}
        for i, q in enumerate(self.layers):
            for name in ("weight", "recurrent_weight", "bias", "recurrent_bias", "accum", "state"):
                out[f"rnn{i}.{name}"] = getattr(q, name)
            out[f"rnn{i}.table"] = q.table.type
        for nm, dq in zip(_head_names(len(self.head)), self.head, strict=True):
            for name in ("weight", "bias", "accum", "result", "act_result"):
                if getattr(dq, name) is not None:
                    out[f"{nm}.{name}"] = getattr(dq, name)
            if dq.table is not None:
                out[f"{nm}.table"] = dq.table.type
        if self.alarm is not None:
            for name in ("residual", "score", "threshold", "counter"):
                out[f"alarm.{name}"] = getattr(self.alarm, name)
        return out

    def weight_type(self, name: str) -> FixedType:
        """The type of weight array ``name`` (a key of ``Architecture.weight_shapes()``)."""
        layer, key = name.split(".")
        names = _head_names(len(self.head))
        if layer in names:
            return getattr(self.head[names.index(layer)], key)
        lq = self.layers[int(layer.removeprefix("rnn"))]
        return {
            "weight_ih": lq.weight,
            "weight_hh": lq.recurrent_weight,
            "bias_ih": lq.bias,
            "bias_hh": lq.recurrent_bias,
        }[key]

    def to_dict(self) -> dict[str, Any]:
        d = _types_to_json(asdict(self))
        if self.alarm is None:  # absent, not null: older descriptions (and their fingerprints) unchanged
            del d["alarm"]
        if not self.hidden:
            del d["hidden"]
        for dd in (d["dense"], *d.get("hidden", ())):
            for k in ("act_result", "table"):
                if dd[k] is None:
                    del dd[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quantization:
        _check_keys(cls, d, "quantization")

        def ft(v: Any) -> FixedType:
            return FixedType.from_ap(v)

        def rq(x: dict[str, Any]) -> RecurrentQuant:
            _check_keys(RecurrentQuant, x, "quantization.layers[]")
            t = x["table"]
            _check_keys(TableSpec, t, "quantization.layers[].table")
            return RecurrentQuant(
                **{k: ft(v) for k, v in x.items() if k != "table"},
                table=TableSpec(int(t["size"]), ft(t["type"])),
            )

        def dq(x: dict[str, Any], where: str) -> DenseQuant:
            _check_keys(DenseQuant, x, where)
            t = x.get("table")
            if t is not None:
                _check_keys(TableSpec, t, f"{where}.table")
            return DenseQuant(
                **{k: ft(v) for k, v in x.items() if k != "table"},
                table=None if t is None else TableSpec(int(t["size"]), ft(t["type"])),
            )

        return cls(
            input=ft(d["input"]),
            layers=tuple(rq(x) for x in d["layers"]),
            dense=dq(d["dense"], "quantization.dense"),
            method=d.get("method", "ptq"),
            bits=int(d.get("bits", 16)),
            alarm=_alarm_from_dict(d.get("alarm")),
            hidden=tuple(dq(x, "quantization.hidden[]") for x in d.get("hidden", ())),
        )


def _head_names(n: int) -> tuple[str, ...]:
    return tuple(head_name(j, n) for j in range(n))


def _alarm_from_dict(d: dict[str, Any] | None) -> AlarmQuant | None:
    if d is None:
        return None
    _check_keys(AlarmQuant, d, "quantization.alarm")
    return AlarmQuant(**{k: FixedType.from_ap(v) for k, v in d.items()})


def _types_to_json(obj: Any) -> Any:
    """asdict() turns FixedType into dicts; write them as ap_fixed strings instead."""
    if isinstance(obj, dict):
        if set(obj) == {"width", "integer", "signed", "rounding", "overflow"}:
            return FixedType(**obj).describe()
        return {k: _types_to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_types_to_json(v) for v in obj]
    return obj


# ====================================================================== the description
@dataclass(frozen=True)
class ModelDescription:
    """Everything a later stage needs to rebuild the model, besides the weight arrays."""

    architecture: Architecture
    normalisation: Normalisation
    quantization: Quantization | None = None
    #: Where the data came from (path as given, sha256) and the event split, for reports.
    data: dict[str, Any] = field(default_factory=dict)
    qlstm_version: str = __version__
    format: str = FORMAT
    #: The training standardisation that was applied (a record: already folded into the
    #: weights); None for runs written before it was recorded and for imported models.
    standardisation: Standardisation | None = None

    @property
    def quantized(self) -> bool:
        return self.quantization is not None

    def with_quantization(self, q: Quantization | None) -> ModelDescription:
        if q is not None:
            check_quantization(self.architecture, q)
        return replace(self, quantization=q)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": self.format,
            "qlstm_version": self.qlstm_version,
            "architecture": asdict(self.architecture),
            "normalisation": asdict(self.normalisation),
            "quantization": None if self.quantization is None else self.quantization.to_dict(),
            "data": self.data,
        }
        if self.standardisation is not None:  # absent otherwise: older descriptions keep their fingerprint
            d["standardisation"] = asdict(self.standardisation)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model description") -> ModelDescription:
        fmt = d.get("format")
        if fmt in OLD_FORMATS:  # an older file: rename its keys, then read it as the current format
            d = {OLD_FORMATS[fmt].get(k, k): v for k, v in d.items()} | {"format": FORMAT}
        elif fmt != FORMAT:
            raise QlstmError(f"{where}: not a {FORMAT} file (format={fmt!r})")
        _check_keys(cls, d, where)
        q = d.get("quantization")
        arch = Architecture.from_dict(d["architecture"])
        quant = None if q is None else Quantization.from_dict(q)
        if quant is not None:
            check_quantization(arch, quant, where)
        st = d.get("standardisation")
        std = None if st is None else Standardisation.from_dict(st)
        if std is not None and len(std.in_scale) != arch.input_channels:
            raise QlstmError(
                f"{where}: standardisation has {len(std.in_scale)} input channels, the model {arch.input_channels}"
            )
        return cls(
            architecture=arch,
            normalisation=Normalisation.from_dict(d["normalisation"]),
            quantization=quant,
            data=d.get("data", {}),
            qlstm_version=d.get("qlstm_version", "?"),
            standardisation=std,
        )

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: caches (e.g. compiled C simulations) key on it."""
        import hashlib  # here: loading OpenSSL costs every command's start-up ~2 ms

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def check_quantization(arch: Architecture, q: Quantization, where: str = "quantization") -> None:
    """The types must match the architecture: one set per recurrent and per head layer, an
    ``act_result`` exactly for head layers with an activation, a ``table`` for sigmoid/tanh.
    Raises QlstmError naming the first mismatch."""
    if len(q.layers) != len(arch.layers):
        raise QlstmError(f"{where}: quantization has a different number of layers than the architecture")
    if len(q.head) != len(arch.head):
        raise QlstmError(
            f"{where}: quantization has {len(q.head)} head layer(s), the architecture {len(arch.head)}"
        )
    for nm, d, dq in zip(arch.head_names(), arch.head, q.head, strict=True):
        if (dq.act_result is None) != (d.activation == "linear"):
            raise QlstmError(
                f"{where}: head layer {nm!r} ({d.activation}): act_result must be given exactly for an activation"
            )
        if (dq.table is None) == (d.activation in TABLE_ACTIVATIONS):
            raise QlstmError(
                f"{where}: head layer {nm!r} ({d.activation}): a table is needed exactly for sigmoid/tanh"
            )


def save(run_dir: Path, desc: ModelDescription, weights: dict[str, np.ndarray]) -> None:
    """Write ``model.json`` and ``weights.npz`` atomically, after checking the weight shapes."""
    check_weights(desc, weights)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, dtype=np.float64) for k, v in weights.items()})
    atomic_write_bytes(run_dir / WEIGHTS_FILE, buf.getvalue())
    atomic_write_text(run_dir / DESCRIPTION_FILE, json.dumps(desc.to_dict(), indent=2) + "\n")


def load(run_dir: Path) -> tuple[ModelDescription, dict[str, np.ndarray]]:
    """Read a run folder's ``model.json`` and ``weights.npz`` (the contract every stage reads).

    Returns the description and the weights (float64 arrays named ``rnn{i}.weight_ih`` ...
    ``head.bias``, shapes in the module docstring), checked by :func:`check_weights`.
    Raises QlstmError when either file is missing, corrupt or truncated, or the weights do not
    fit the description.
    """
    run_dir = Path(run_dir)
    dpath, wpath = run_dir / DESCRIPTION_FILE, run_dir / WEIGHTS_FILE
    if not dpath.is_file():
        from qlstm.pipeline import ROOT_MARKER

        if (run_dir / ROOT_MARKER).is_file():  # a `qlstm run` folder: name the models inside it
            models = sorted(p.parent for p in run_dir.glob(f"*/*/{DESCRIPTION_FILE}"))
            quantized = [str(p) for p in models if p.parent.name == "quantize"]
            found = quantized or [str(p) for p in models]
            raise QlstmError(
                f"{run_dir}: a `qlstm run` folder, not one model; pass one of its "
                + (f"quantized runs: {', '.join(quantized)}" if quantized else
                   f"models: {', '.join(found)}" if found else "models once its quantize step has run")
            )  # fmt: skip
        raise QlstmError(
            f"{run_dir}: no {DESCRIPTION_FILE}; not a qlstm run folder (train or quantize first)"
        )
    try:
        desc = ModelDescription.from_dict(json.loads(read_text(dpath)), where=str(dpath))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise QlstmError(f"{dpath}: corrupt model description ({exc})") from None
    if not wpath.is_file():
        raise QlstmError(f"{run_dir}: no {WEIGHTS_FILE}; the run holds no trained model")
    try:
        with np.load(wpath, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        raise QlstmError(
            f"{wpath}: corrupt or truncated weights file ({type(exc).__name__}: {exc})"
        ) from None
    check_weights(desc, weights, where=str(wpath))
    return desc, weights


def check_weights(desc: ModelDescription, weights: dict[str, np.ndarray], where: str = "weights") -> None:
    """Check that ``weights`` are exactly the arrays ``desc`` needs: the names and shapes of
    :meth:`Architecture.weight_shapes`, finite, and (for a quantized description) every value on
    the grid of its ``ap_fixed`` type, so a stage never computes with weights the firmware could
    not hold. Raises QlstmError naming ``where`` and the first offending array."""
    expected = desc.architecture.weight_shapes()
    if set(weights) != set(expected):
        missing, extra = set(expected) - set(weights), set(weights) - set(expected)
        raise QlstmError(
            f"{where}: weight names do not match the architecture (missing {sorted(missing)}, extra {sorted(extra)})"
        )
    for k, shape in expected.items():
        if tuple(np.shape(weights[k])) != shape:
            raise QlstmError(f"{where}: {k} has shape {np.shape(weights[k])}, expected {shape}")
        if not np.all(np.isfinite(weights[k])):
            raise QlstmError(f"{where}: {k} holds NaN or inf")
    q = desc.quantization
    if q is None:
        return
    for name in expected:
        _check_on_grid(weights[name], q.weight_type(name), f"{where}: {name}")


def _check_on_grid(a: np.ndarray, t: FixedType, where: str) -> None:
    a = np.asarray(a, dtype=np.float64)
    if not np.array_equal(t.quantize(a), a):
        raise QlstmError(f"{where} is not representable as {t.describe()}")
