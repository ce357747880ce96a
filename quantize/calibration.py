"""PTQ from calibration windows alone: ``qlstm quantize RUN --calibration X.npy``.

An imported model (``qlstm import``) has no training data in its run folder, so the ranges of its
quantization points are profiled on windows the user gives: ``X.npy``, float (N, L, C),
normalised as the model expects, or a recording windowed with the run's normalisation. There are
no targets, so the figures written are how far the quantized model (firmware_sim, bit-exact with
the C simulation) moves from the float model on those same windows (in-sample: the windows also
set the ranges). QAT needs targets and is refused.

Seam: this path only feeds :func:`qlstm.quantize.core.quantize_model` and
:func:`qlstm.quantize.core.write_run` a :class:`~qlstm.quantize.core.Windows` whose training split
holds the calibration windows; when the run-folder module that hands quantize its held-out
windows lands, ``--calibration`` becomes one more source of those windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qlstm.description import Architecture
from qlstm.errors import QlstmError
from qlstm.float_reference import float_predict
from qlstm.io import staged_dir
from qlstm.quantize import core
from qlstm.quantize.policy import QuantizeConfig

#: A recording given as --calibration is windowed with a stride giving at most this many windows.
MAX_RECORDING_WINDOWS = 20_000


def load_windows(path: Path, arch: Architecture, run_dir: Path | None = None) -> np.ndarray:
    """Calibration windows as float64 (N, L, C): ``X.npy`` windows, or a recording (``.csv``
    ``.h5`` ``.parquet`` ``.npz``, schema in docs/data.md) windowed and normalised with the run's
    normalisation and L, at most :data:`MAX_RECORDING_WINDOWS`. One clear error otherwise."""
    from qlstm.predict import _windows_from_data

    path = Path(path)
    if not path.is_file():
        raise QlstmError(f"--calibration {path}: file not found")
    if path.suffix.lower() != ".npy":
        if run_dir is None:
            raise QlstmError(f"--calibration {path}: expected an .npy file of windows")
        try:
            x, _ = _windows_from_data(run_dir, path, 1, MAX_RECORDING_WINDOWS)
        except QlstmError as exc:
            raise QlstmError(f"--calibration {str(exc).removeprefix('--data ')}") from None
        return arch.check_windows(x, f"--calibration {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled / not .npy), OSError, EOFError
        raise QlstmError(f"--calibration {path}: not a readable .npy array ({type(exc).__name__})") from None
    return arch.check_windows(x, f"--calibration {path}")


def quantize_calibrated(
    run_dir: Path,
    out: Path,
    calibration: Path,
    cfg: QuantizeConfig,
    types: dict[str, str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """PTQ of the float run ``run_dir`` with ranges from ``calibration``; writes ``out`` and
    returns its metrics. Raises QlstmError (QAT, unreadable or mismatched windows)."""
    from qlstm.firmware_sim.simulate import Firmware

    if cfg.method != "ptq":
        raise QlstmError("--calibration gives windows without targets: only --method ptq can use them")
    desc, weights = core.load_float_run(run_dir)
    a = desc.architecture
    core._refuse_existing(out, overwrite, run_dir, calibration)
    x = load_windows(calibration, a, run_dir)
    empty = (x[:0], np.zeros((0, a.horizon)))
    win = core.Windows(train=(x, np.zeros((len(x), a.horizon))), val=empty, test=empty)
    q, qweights, extra = core.quantize_model(a, weights, win, cfg, types, progress)
    y_float = float_predict(a, weights, x)
    y_fw = Firmware(desc.with_quantization(q), qweights).predict(x)
    dev = y_fw - y_float
    metrics = {
        "calibration": {
            "path": str(calibration),
            "windows": len(x),
            "note": "no targets: deviation of the quantized model (firmware_sim) from the float model on the "
            "calibration windows themselves (in-sample)",
            "rms_deviation_from_float": float(np.sqrt(np.mean(dev**2))),
            "max_abs_deviation_from_float": float(np.max(np.abs(dev))),
            "max_abs_deviation_lsb": float(np.max(np.abs(dev)) / q.output.lsb),
        },
        **extra,
    }
    with staged_dir(out, overwrite=overwrite, inputs=(run_dir, calibration)) as stage:
        core.write_run(stage, run_dir, desc, q, qweights, metrics, cfg, types or {})
    return metrics
