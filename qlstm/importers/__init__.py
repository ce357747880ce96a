"""``qlstm import``: bring a trained Keras, PyTorch or ONNX recurrent model into a float run folder.

One front end per file type (:mod:`.keras`, :mod:`.torch_model`, :mod:`.onnx_model`) reads the
file into :class:`~qlstm.importers.common.Imported` without executing code from it; the folder
written (``model.json``, ``weights.npz``, ``import.json``) is what ``qlstm train`` writes, so
``predict``, ``quantize --calibration``, ``export``, ``hls`` and ``firmware`` accept it. What
is supported and what is refused, and why: ``docs/import.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qlstm.errors import QlstmError

#: file suffix -> front end ("module:function"), the explicit list of what is accepted
FRONT_ENDS = {
    ".h5": "keras:read_h5",
    ".hdf5": "keras:read_h5",
    ".keras": "keras:read_keras",
    ".pt2": "torch_model:read_pt2",
    ".yaml": "torch_model:read_yaml",
    ".yml": "torch_model:read_yaml",
    ".onnx": "onnx_model:read",
}


def read_model(path: Path, history: int | None = None):
    """The file's network as an :class:`~qlstm.importers.common.Imported` (no files written)."""
    import importlib

    path = Path(path)
    front = FRONT_ENDS.get(path.suffix.lower())
    if front is None:
        raise QlstmError(
            f"{path}: unknown model file type {path.suffix!r}; accepted: {', '.join(FRONT_ENDS)}"
        )
    if not path.is_file():
        raise QlstmError(f"{path}: file not found")
    module, func = front.split(":")
    fn = getattr(importlib.import_module(f"qlstm.importers.{module}"), func)
    return fn(path, history) if module == "onnx_model" else fn(path)


def import_model(
    path: Path,
    out: Path,
    history: int | None = None,
    normalisation: str | None = None,
    overwrite: bool = False,
):
    """``qlstm import MODEL --out RUN_DIR``: read ``path`` and write the float run folder.
    Returns the :class:`~qlstm.description.ModelDescription` written. Raises QlstmError."""
    from qlstm.importers.common import write_run
    from qlstm.io import check_out_folder

    if history is not None and not 1 <= history <= 128:
        raise QlstmError(f"--history {history} outside 1-128")
    check_out_folder(Path(out), overwrite, (path,))  # before the model is read
    imp = read_model(path, history)
    return write_run(Path(out), imp, Path(path), history, normalisation, overwrite)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a trained Keras (.h5/.keras), PyTorch (.pt2 or YAML + state_dict) or ONNX model",
        description=(
            "Read a trained recurrent model - stacked LSTM/GRU layers, then Dense layers each with an activation "
            "(linear, relu, sigmoid, tanh; softmax in float only) - from a "
            "Keras .h5 or .keras file (no TensorFlow needed), a torch.export .pt2 archive, a YAML file naming "
            "a PyTorch state_dict's modules, or an ONNX file, and write a float run folder that predict, "
            "quantize --calibration, export, hls and firmware accept. Constructs the firmware cannot compute "
            "are refused with one line naming the layer (docs/import.md)."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="the model file: " + " ".join(FRONT_ENDS))
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="float run folder to write")
    p.add_argument(
        "--history",
        type=int,
        metavar="L",
        help="window length L (time steps); required when the model leaves its sequence length open, "
        "and must match it otherwise",
    )
    p.add_argument(
        "--normalisation",
        default="none",
        metavar="FILE|none",
        help="how raw recordings map to the model's inputs: a JSON/YAML file with lo, hi, channel_names "
        "(optional target_channel, units) or a run folder's model.json; 'none' (default): the model reads "
        "its inputs as given (lo 0, hi 1)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    desc = import_model(args.model, args.out, args.history, args.normalisation, args.overwrite)
    a = desc.architecture
    layers = " -> ".join(f"{layer.cell.upper()}({layer.units})" for layer in a.layers)
    head = " -> ".join(
        f"Dense({d.units}" + ("" if d.activation == "linear" else f", {d.activation}") + ")" for d in a.head
    )
    print(f"imported {args.model}: (N, {a.history}, {a.input_channels}) -> {layers} -> {head}")
    print(
        f"wrote {args.out} (float run folder; quantize it with: qlstm quantize {args.out} --calibration X.npy --out QRUN_DIR)"
    )
    return 0
