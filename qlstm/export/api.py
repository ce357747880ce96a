"""Export a run folder to ONNX (float) or QONNX (quantized), and prove the file computes the model.

``export(run_dir, fmt, out)`` builds the graph from ``model.json`` + ``weights.npz``, checks it
(``onnx.checker`` with full checking; the checker skips QONNX's custom ``Quant`` nodes, and the
lowered graph passes it too, see the tests), runs it on held-out-like windows (onnxruntime;
QONNX after :func:`qlstm.export.lower.lower_quant`), compares it with its reference
(:func:`verify`) and only then writes it atomically, with the verification in its metadata.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm.description import ModelDescription
from qlstm.errors import QlstmError
from qlstm.export.graph import read_metadata, save_model
from qlstm.io import check_out_file, weights_sha256

log = logging.getLogger(__name__)

FORMATS = ("onnx", "qonnx")
#: File names inside a run folder, used by ``qlstm predict --backend onnx``.
DEFAULT_FILES = {"onnx": "model.onnx", "qonnx": "model.qonnx.onnx"}


def default_format(desc: ModelDescription) -> str:
    return "qonnx" if desc.quantized else "onnx"


def build_model(desc: ModelDescription, weights: dict[str, np.ndarray], fmt: str) -> Any:
    """The ModelProto of ``desc`` in ``fmt``, checked and with the weights hash in its metadata."""
    import onnx
    from onnx import helper

    if fmt not in FORMATS:
        raise QlstmError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "qonnx":
        from qlstm.export import qonnx_export

        if not desc.quantized:
            raise QlstmError(
                "--format qonnx needs a quantized run (model.json has no quantization); "
                "run `qlstm quantize` first or export --format onnx"
            )
        model = qonnx_export.build(desc, weights)
        onnx.checker.check_model(model, full_check=True)
    else:
        from qlstm.export import float_onnx

        if desc.quantized:
            log.info("exporting a quantized run as float ONNX: on-grid weights, float arithmetic")
        model = float_onnx.build(desc, weights)
        onnx.checker.check_model(model, full_check=True)
    props = read_metadata(model) | {"qlstm.weights_sha256": weights_sha256(weights)}
    helper.set_model_props(model, props)
    return model


def session(model: Any) -> Any:
    """An onnxruntime session for an exported model (QONNX files are lowered first)."""
    import onnxruntime as ort

    from qlstm.export.lower import lower_quant

    if any(o.domain == "qonnx.custom_op.general" for o in model.opset_import):
        model = lower_quant(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def batch_size(desc: ModelDescription) -> int:
    """Windows per onnxruntime call: about 2**20 elements in the largest per-product tensor of
    a QONNX graph (N, n_in, G*H), which is both memory-safe and faster (cache) than big batches
    (measured: 128-cell LSTM, 16-bit, 11.6 s per 1000 windows at 16 per call, 18.3 s at 1024)."""
    a = desc.architecture
    if not desc.quantized:
        return 4096
    per_window = max(
        max(a.history * a.n_in(i), layer.units) * layer.units * (4 if layer.cell == "lstm" else 3)
        for i, layer in enumerate(a.layers)
    )
    return int(np.clip((1 << 20) // per_window, 1, 4096))


def run_session(sess: Any, x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """(N, L, C) windows -> (N, k) float64, in batches (input cast to the file's input type:
    float32 for float ONNX, float64 for QONNX, which quantizes the input as hls4ml's bridge does
    from double)."""
    inp = sess.get_inputs()[0]  # "x" in our files; tools such as qonnx's cleanup rename it
    x = np.asarray(x, dtype=np.float64 if inp.type == "tensor(double)" else np.float32)
    outs = [sess.run(None, {inp.name: x[s : s + batch]})[0] for s in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float64)


#: Tolerance of the float ONNX file against the PyTorch float64 model (float32 arithmetic).
FLOAT_ATOL = 1e-5


def verification_windows(desc: ModelDescription, n: int, seed: int = 0) -> np.ndarray:
    """``n`` windows shaped like normalised magnet voltage: slow random walks inside [0, 1]."""
    a = desc.architecture
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.03, (n, a.history, a.input_channels)).cumsum(axis=1)
    return np.clip(rng.uniform(0.2, 0.8, (n, 1, a.input_channels)) + steps, 0.0, 1.0)


def verify(
    desc: ModelDescription, weights: dict[str, np.ndarray], model: Any, x: np.ndarray
) -> dict[str, Any]:
    """Run ``model`` on ``x`` and compare with what it claims to be.

    Float ONNX: the PyTorch model (:mod:`qlstm.train.model`, float64), within
    :data:`FLOAT_ATOL`. QONNX: the bit-exact firmware simulation
    (:mod:`qlstm.firmware_sim`); agreement is stated in LSBs of the output type and must be
    exact unless a type overflows (Quant saturates where ``AP_WRAP`` wraps). ``firmware_sim`` is
    imported to evaluate only: it is the reference-semantics library layer below export
    (docs/quantize.md, "One firmware forward"); the table semantics come from the core.
    """
    y = run_session(session(model), x)
    quantized = any(o.domain == "qonnx.custom_op.general" for o in model.opset_import)
    if quantized:
        from qlstm.firmware_sim.simulate import Firmware

        ref = Firmware(desc, weights).predict(x)
        lsb = desc.quantization.output.lsb  # type: ignore[union-attr]
        diff = np.abs(y - ref) / lsb
        result = {
            "reference": "qlstm.firmware_sim (bit-exact hls4ml firmware)",
            "windows": len(x),
            "exact_fraction": float(np.mean(diff == 0)),
            "max_lsb": float(diff.max()),
            "ok": bool(np.all(diff == 0)),
        }
    else:
        from qlstm.train.model import from_weights, predict_array

        ref = predict_array(from_weights(desc.architecture, weights), x)
        err = float(np.abs(y - ref).max())
        result = {
            "reference": "qlstm.train.model (PyTorch, float64)",
            "windows": len(x),
            "max_abs_diff": err,
            "tolerance": FLOAT_ATOL,
            "ok": err <= FLOAT_ATOL,
        }
    return result


def summary(result: dict[str, Any]) -> str:
    """One-line summary of a :func:`verify` result."""
    if "exact_fraction" in result:
        return (
            f"{result['windows']} windows: {result['exact_fraction']:.2%} exact, "
            f"max {result['max_lsb']:g} LSB vs {result['reference']}"
        )
    return (
        f"{result['windows']} windows: max |diff| {result['max_abs_diff']:.2e} "
        f"(tolerance {result['tolerance']:g}) vs {result['reference']}"
    )


def export(run_dir: Path, fmt: str | None = None, out: Path | None = None, verify_windows: int = 256) -> Path:
    """Write ``run_dir``'s model as ``fmt`` to ``out`` (default: inside ``run_dir``).

    The file is first executed on ``verify_windows`` held-out-like windows and compared with its
    reference (:func:`verify`); the result is stored in its metadata (``qlstm.verified``), and a
    file that does not match is not written.
    """
    from onnx import helper

    if fmt is not None and fmt not in FORMATS:
        raise QlstmError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if verify_windows < 1:
        raise QlstmError(f"--verify {verify_windows}: at least one window is needed (the file is always run)")
    run_dir = Path(run_dir)
    desc, weights = description.load(run_dir)
    fmt = fmt or default_format(desc)
    out = Path(out) if out is not None else run_dir / DEFAULT_FILES[fmt]
    check_out_file(out, parent_must_exist=True)  # a missing folder is a typo, not created silently
    model = build_model(desc, weights, fmt)
    result = verify(desc, weights, model, verification_windows(desc, verify_windows))
    if not result["ok"]:
        hint = " (a type overflows: QONNX Quant saturates where AP_WRAP wraps; see `qlstm firmware check`)"
        raise QlstmError(
            f"{run_dir}: the exported {fmt} file does not match its reference on {summary(result)}, "
            f"so it was not written{hint if fmt == 'qonnx' else ''}"
        )
    helper.set_model_props(model, read_metadata(model) | {"qlstm.verified": json.dumps(result)})
    save_model(model, out)
    log.info("wrote %s (%s, %d nodes), verified: %s", out, fmt, len(model.graph.node), result)
    return out
