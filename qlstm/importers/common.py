"""What every front end of ``qlstm import`` shares: the imported network, the gate-order
conversions into the description's layout, and the writer of the float run folder.

A front end reads a foreign file into an :class:`Imported` (recurrent layers in PyTorch layout
and gate order, then a head of Dense layers, each with an activation of
:data:`qlstm.description.HEAD_ACTIVATIONS`) or raises :func:`refuse` with one line naming the layer
and the reason. Gate orders and bias layouts (sources: Keras ``LSTMCell``/``GRUCell``, PyTorch
``nn.LSTM``/``nn.GRU`` docs, ONNX operator spec ``LSTM``/``GRU``):

=========  ======================  ==============================  ==========================
cell       Keras kernel columns    PyTorch / description rows      ONNX ``W``/``R`` rows
=========  ======================  ==============================  ==========================
LSTM       i, f, c, o              i, f, g, o                      i, o, f, c
GRU        z, r, h                 r, z, n                         z, r, h
=========  ======================  ==============================  ==========================

Biases: Keras LSTM has one bias (the description's ``bias_hh`` is then zero); Keras GRU with
``reset_after=True`` has ``(2, 3H)``: input bias then recurrent bias; PyTorch keeps
``bias_ih``/``bias_hh``; ONNX ``B`` is ``Wb`` then ``Rb`` (``(1, 2*G*H)``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm.description import (
    GATES,
    HEAD_ACTIVATIONS,
    Architecture,
    DenseLayer,
    ModelDescription,
    Normalisation,
    RecurrentLayer,
    head_name,
)
from qlstm.errors import QlstmError
from qlstm.io import atomic_write_text, read_text, staged_dir

IMPORT_FILE = "import.json"

#: Block permutations into PyTorch order: new block j is source block PERM[j].
KERAS_TO_TORCH = {"lstm": (0, 1, 2, 3), "gru": (1, 0, 2)}
ONNX_TO_TORCH = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2)}


def refuse(where: str, layer: str, kind: str, reason: str) -> QlstmError:
    """The one-line refusal every front end raises: file, layer name and type, reason."""
    return QlstmError(f"{where}: layer {layer!r} ({kind}): {reason}")


def activation_name(where: str, layer: str, kind: str, name: str) -> str:
    """A head activation's name in the description (``HEAD_ACTIVATIONS``), or a refusal."""
    n = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax", "linear": "linear"}.get(
        str(name).lower()
    )
    if n is None:
        raise refuse(
            where, layer, kind,
            f"activation {name!r} is not supported in the head (supported: {', '.join(HEAD_ACTIVATIONS)})",
        )  # fmt: skip
    return n


def permute_gates(a: np.ndarray, cell: str, units: int, perm: tuple[int, ...], axis: int = 0) -> np.ndarray:
    """Reorder the ``G`` gate blocks of ``a`` along ``axis``: block j of the result is block
    ``perm[j]`` of ``a``."""
    a = np.asarray(a, dtype=np.float64)
    g = GATES[cell]
    if a.shape[axis] != g * units:
        raise QlstmError(f"{cell} gate axis has {a.shape[axis]} entries, expected {g} x {units}")
    blocks = np.split(a, g, axis=axis)
    return np.concatenate([blocks[k] for k in perm], axis=axis)


@dataclass
class Imported:
    """A network read from a foreign file, in the description's layout (float64 arrays)."""

    fmt: str
    cells: list[str] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    input_channels: int = 0
    history: int | None = None  # None: the file leaves the sequence length open
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    #: source layer names, in order (recurrent layers, then the head), for import.json
    layer_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the head's Dense layers: [source name, weight (units, n_in), bias (units,), activation]
    dense: list[list[Any]] = field(default_factory=list)

    def add_recurrent(
        self, name: str, cell: str, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray
    ) -> None:
        """Append a layer given in PyTorch layout: ``w_ih (G*H, n_in)``, ``w_hh (G*H, H)``."""
        i = len(self.cells)
        units = int(np.shape(w_hh)[1])
        self.cells.append(cell)
        self.units.append(units)
        self.layer_names.append(name)
        for key, v in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
            self.weights[f"rnn{i}.{key}"] = np.asarray(v, dtype=np.float64)

    def add_dense(self, name: str, weight: np.ndarray, bias: np.ndarray, activation: str = "linear") -> None:
        """Append a head Dense layer in PyTorch layout: ``weight (units, n_in)``, ``bias (units,)``."""
        self.layer_names.append(name)
        w = np.asarray(weight, dtype=np.float64)
        self.dense.append([name, w, np.asarray(bias, dtype=np.float64), activation])

    def set_head(self, name: str, weight: np.ndarray, bias: np.ndarray) -> None:
        """One linear Dense layer (the head of earlier importers): :meth:`add_dense`."""
        self.add_dense(name, weight, bias)

    def add_activation(self, where: str, name: str, kind: str, activation: str) -> None:
        """A separate activation layer (Keras ``Activation``, ONNX ``Relu``...) after the last
        Dense layer, which must not have one already; a linear one is an identity."""
        if activation == "linear":
            return
        if not self.dense:
            raise refuse(where, name, kind, "an activation before the first Dense layer is not supported")
        if self.dense[-1][3] != "linear":
            raise refuse(
                where, name, kind,
                f"a second activation after Dense layer {self.dense[-1][0]!r} ({self.dense[-1][3]}) "
                "is not supported (one activation per Dense layer)",
            )  # fmt: skip
        self.dense[-1][3] = activation
        self.layer_names.append(name)

    def architecture(self, where: str, history: int | None) -> Architecture:
        """The description's architecture; ``history`` (``--history``) fills or must match L."""
        if history is not None and self.history is not None and history != self.history:
            raise QlstmError(
                f"{where}: --history {history} differs from the model's fixed input length {self.history}"
            )
        length = history if history is not None else self.history
        if length is None:
            raise QlstmError(f"{where}: the model does not fix its sequence length; pass --history L")
        if not self.dense:
            raise QlstmError(f"{where}: no Dense layer after the recurrent layers; qlstm needs at least one")
        n = len(self.dense)
        for j, (_, w, b, _) in enumerate(self.dense):
            self.weights[f"{head_name(j, n)}.weight"] = w
            self.weights[f"{head_name(j, n)}.bias"] = b
        k = int(self.dense[-1][1].shape[0])
        try:
            arch = Architecture(
                input_channels=self.input_channels,
                history=int(length),
                horizon=k,
                layers=tuple(RecurrentLayer(c, u) for c, u in zip(self.cells, self.units, strict=True)),
                head=tuple(DenseLayer(int(w.shape[0]), act) for _, w, _, act in self.dense),
            )
        except QlstmError as exc:
            raise QlstmError(f"{where}: {exc}") from None
        probe = ModelDescription(arch, identity_normalisation(self.input_channels))
        try:
            description.check_weights(probe, self.weights, where=where)
        except QlstmError as exc:
            raise QlstmError(f"{exc} (layers do not chain: check the layer sizes)") from None
        return arch


def identity_normalisation(channels: int) -> Normalisation:
    """``--normalisation none``: the model reads its inputs as given (lo 0, hi 1 per channel)."""
    return Normalisation(
        lo=(0.0,) * channels, hi=(1.0,) * channels, channel_names=tuple(f"x{i}" for i in range(channels))
    )


def read_normalisation(spec: str | None, channels: int) -> Normalisation:
    """``--normalisation FILE|none``: a JSON/YAML file with ``lo``, ``hi``, ``channel_names``
    (optional ``target_channel``, ``units``), or a qlstm run folder's ``model.json``."""
    if spec is None or spec == "none":
        return identity_normalisation(channels)
    path = Path(spec)
    if not path.is_file():
        raise QlstmError(f"--normalisation {spec}: file not found (give a JSON/YAML file or 'none')")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(read_text(path))
        else:
            data = json.loads(read_text(path))
    except QlstmError:  # bytes that are not text: file, byte offset, encoding
        raise
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError
        raise QlstmError(f"--normalisation {spec}: not readable JSON/YAML ({type(exc).__name__})") from None
    if isinstance(data, dict) and data.get("format") == description.FORMAT:
        data = data.get("normalisation")
    if not isinstance(data, dict):
        raise QlstmError(f"--normalisation {spec}: expected a mapping with lo, hi and channel_names")
    try:
        norm = Normalisation.from_dict(data)
    except (QlstmError, TypeError) as exc:
        raise QlstmError(f"--normalisation {spec}: {exc}") from None
    if len(norm.lo) != channels:
        raise QlstmError(
            f"--normalisation {spec}: {len(norm.lo)} channel(s), but the model reads {channels} input channel(s)"
        )
    if not 0 <= norm.target_channel < channels:
        raise QlstmError(
            f"--normalisation {spec}: target_channel {norm.target_channel} outside 0-{channels - 1}"
        )
    return norm


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_run(
    out: Path,
    imp: Imported,
    source: Path,
    history: int | None,
    normalisation: str | None,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
) -> ModelDescription:
    """Write the float run folder (``model.json``, ``weights.npz``, ``import.json``) atomically."""
    from qlstm.io import sha256_file

    where = str(source)
    arch = imp.architecture(where, history)
    norm = read_normalisation(normalisation, arch.input_channels)
    sha = sha256_file(source) if source.is_file() else None
    desc = ModelDescription(
        architecture=arch,
        normalisation=norm,
        data={"source": "import", "model": str(source), "format": imp.fmt, "sha256": sha},
    )
    info = {
        "source": str(source),
        "format": imp.fmt,
        "sha256": sha,
        "layers": imp.layer_names,
        "notes": imp.notes,
        **(extra or {}),
    }
    with staged_dir(out, overwrite=overwrite, inputs=(source,)) as stage:
        description.save(stage, desc, imp.weights)
        atomic_write_text(stage / IMPORT_FILE, json.dumps(info, indent=2) + "\n")
    return desc
