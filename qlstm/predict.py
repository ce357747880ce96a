"""``qlstm predict``: run a run folder's model on windows or a recording with a chosen backend.

Every backend is a function ``predict(run_dir, x) -> y`` taking normalised windows x (N, L, C)
and returning (N, k) float64, listed in :data:`BACKENDS` as ``"module:function"`` and imported
only when asked for, so two backends can be compared on the same input without the others
being installed or built.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig

#: backend name -> "module:function"; the explicit list of what ``--backend`` accepts.
BACKENDS: dict[str, str] = {
    "float": "qlstm.train.backend:predict",
    "quant": "qlstm.firmware_sim.backend:predict",  # alias of firmware: one firmware forward
    "onnx": "qlstm.export.backend:predict",
    "csim": "qlstm.hls.backend:predict",
    "firmware": "qlstm.firmware_sim.backend:predict",
    "rtl": "qlstm.rtl.backend:predict",
}


def get_backend(name: str, attr: str | None = None) -> Callable[[Path, np.ndarray], np.ndarray]:
    """The function of backend ``name`` (``attr`` e.g. ``"trace"`` instead of ``predict``)."""
    if name not in BACKENDS:
        raise QlstmError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, func = BACKENDS[name].split(":")
    func = attr or func
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise QlstmError(f"backend {name!r} is not available: {module_name} is not there yet") from None
        raise
    fn = getattr(module, func, None)
    if not callable(fn):
        raise QlstmError(f"backend {name!r} is not available: {module_name} has no {func}()")
    return fn


#: Backends that simulate an hls4ml project and so take its implementation options.
PROJECT_BACKENDS = ("csim", "firmware")


def hls_project_config(project_dir: Path, run_dir: Path) -> HlsConfig:
    """The :class:`~qlstm.hls_config.HlsConfig` of the ``qlstm hls`` project ``project_dir``,
    checked to be generated from the run's model. Raises QlstmError otherwise."""
    from qlstm import description

    desc, _ = description.load(Path(run_dir))
    return get_backend("csim", "project_config")(Path(project_dir), desc)  # type: ignore[call-arg]


def run_backend(name: str, run_dir: Path, x: np.ndarray, config: HlsConfig | None = None) -> np.ndarray:
    """Run backend ``name`` on (N, L, C) windows and check it returned (N, k) float64 for the run;
    ``config``: the hls project's implementation options, for the csim and firmware backends."""
    from qlstm import description

    desc, _ = description.load(run_dir)
    a = desc.architecture
    x = a.check_windows(x, "inputs")
    fn = get_backend(name)
    if config is not None:
        if name not in PROJECT_BACKENDS:
            raise QlstmError(
                f"--hls-project applies to the {' and '.join(PROJECT_BACKENDS)} backends, not {name}"
            )
        y = np.asarray(fn(Path(run_dir), x, config=config), dtype=np.float64)  # type: ignore[call-arg]
    else:
        y = np.asarray(fn(Path(run_dir), x), dtype=np.float64)
    if y.shape != (x.shape[0], a.horizon):
        raise RuntimeError(f"backend {name} returned shape {y.shape}, expected {(x.shape[0], a.horizon)}")
    return y


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run a model on windows or a recording with a chosen backend",
        description=(
            "Run a run folder's model on normalised windows (--inputs X.npy, shape (N, L, C)) or on a "
            "recording (--data FILE: windowed and normalised with the run's normalisation, L and k, "
            "and scored with RMSE/MAE per step ahead against persistence)."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder written by train or quantize")
    p.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        default="float",
        help="float: PyTorch float64; quant: alias of firmware; onnx: onnxruntime on the exported "
        "model; csim: compiled hls4ml C simulation; firmware: bit-exact NumPy firmware simulator; "
        "rtl: the generated Verilog (qlstm rtl) in Verilator, built once and cached in $QLSTM_CACHE/rtl "
        "(the $QLSTM_RTL_CACHE_MAX, default 8, most recently used builds are kept; docs/rtl.md) (default float)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--inputs", type=Path, metavar="X.npy", help="normalised windows, float array (N, L, C)")
    src.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="a recording (.csv .h5 .hdf5 .parquet .npz) to window and score",
    )
    p.add_argument("--out", type=Path, metavar="Y.npy", help="write the predictions (N, k) float64 here")
    p.add_argument(
        "--hls-project",
        type=Path,
        metavar="PRJ_DIR",
        help="csim/firmware: simulate this `qlstm hls` project's firmware (its strategy, reuse factor, "
        "static, io type); default hls4ml's io_parallel, latency, reuse factor 1",
    )
    p.add_argument("--stride", type=int, default=1, help="--data: window stride (default 1)")
    p.add_argument(
        "--max-windows",
        type=int,
        metavar="N",
        help="--data: raise the stride so that at most about N windows are scored",
    )
    p.add_argument("--metrics", type=Path, metavar="FILE.json", help="--data: also write the metrics as JSON")
    p.set_defaults(func=run)


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise QlstmError(f"--inputs {path}: file not found")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":  # the .npy format's magic string (numpy.lib.format)
            raise QlstmError(f"--inputs {path}: not a NumPy .npy file (np.save writes one)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled / not .npy), OSError, EOFError
        first = str(exc).split(". ")[0]
        raise QlstmError(
            f"--inputs {path}: not a readable .npy array ({type(exc).__name__}: {first})"
        ) from None


def _windows_from_data(run_dir: Path, path: Path, stride: int, max_windows: int | None):
    import math

    from qlstm import description
    from qlstm.data import load_for_model, make_windows

    if stride < 1 or (max_windows is not None and max_windows < 1):
        raise QlstmError("--stride and --max-windows must be >= 1")
    if not path.is_file():
        raise QlstmError(f"--data {path}: file not found")
    desc, _ = description.load(run_dir)
    a, norm = desc.architecture, desc.normalisation
    es = load_for_model(path, desc)  # the run's channels, converted to the run's units
    span = a.history + a.horizon
    possible = sum(max(0, len(e.t) - span + 1) for e in es.events)
    if possible == 0:
        raise QlstmError(f"--data {path}: no event has the {span} samples one window of L + k needs")
    if max_windows is not None:
        stride = max(stride, math.ceil(possible / max_windows))
    w = make_windows(es, norm, history=a.history, horizon=a.horizon, stride=stride)
    return w.x, w.y


def _output_activation(run_dir: Path) -> str:
    """The activation of the run's output layer: ``linear`` for a regression of the target."""
    from qlstm import description

    desc, _ = description.load(run_dir)
    return desc.architecture.head[-1].activation


def run(args: argparse.Namespace) -> int:
    from qlstm.io import atomic_path, atomic_write_text, check_out_file

    if args.out is not None and args.out.suffix != ".npy":
        raise QlstmError(f"--out {args.out}: must end in .npy")
    if args.data is None and args.metrics is not None:
        raise QlstmError("--metrics needs --data (targets to score against)")
    check_out_file(args.out)  # before the backend runs (an rtl build and simulation can take minutes)
    check_out_file(args.metrics, "--metrics")
    if args.inputs is not None:
        x, y_true = _load_npy(args.inputs), None
        where = f"--inputs {args.inputs}"
    else:
        x, y_true = _windows_from_data(args.run_dir, args.data, args.stride, args.max_windows)
        where = f"--data {args.data}"
    config = None if args.hls_project is None else hls_project_config(args.hls_project, args.run_dir)
    # the objects of the imports live until this command's process exits: frozen, the cyclic
    # collector stops traversing them (a 20,000-window firmware run: 0.20 -> 0.18-0.19 s, 2026-12-01)
    gc.freeze()
    try:
        y = run_backend(args.backend, args.run_dir, x, config)
    except QlstmError as exc:
        msg = str(exc)
        raise QlstmError(
            f"{where}: {msg[len('inputs: ') :]}" if msg.startswith("inputs: ") else msg
        ) from None
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            np.save(tmp, y)
    out_act = _output_activation(args.run_dir)
    if y_true is not None and out_act != "linear":
        note = (
            f"regression metrics skipped: the model's output layer is {out_act} (a score, not a prediction "
            "of the target channel)"
        )
        print(f"{args.backend} backend on {args.data}: {len(y)} windows; {note}")
        if args.metrics is not None:
            atomic_write_text(
                args.metrics,
                json.dumps({"backend": args.backend, "windows": int(len(y)), "note": note}, indent=2) + "\n",
            )
        y_true = None
    if y_true is not None:
        from qlstm.train import metrics as M

        scores = {
            "backend": args.backend,
            "windows": int(len(y)),
            "model": M.errors(y, y_true),
            "persistence": M.errors(M.persistence(x, y.shape[1]), y_true),
        }
        print(f"{args.backend} backend on {args.data}: {len(y)} windows, normalised units")
        print(f"{'step':>4} {'RMSE':>11} {'MAE':>11} {'persist.':>11}")
        for j in range(y.shape[1]):
            print(
                f"{j + 1:>4} {scores['model']['rmse_per_step'][j]:11.6f} {scores['model']['mae_per_step'][j]:11.6f} "
                f"{scores['persistence']['rmse_per_step'][j]:11.6f}"
            )
        print(
            f"{'all':>4} {scores['model']['rmse']:11.6f} {scores['model']['mae']:11.6f} {scores['persistence']['rmse']:11.6f}"
        )
        if args.metrics is not None:
            atomic_write_text(args.metrics, json.dumps(scores, indent=2) + "\n")
    if args.out is not None:
        print(f"wrote {args.out} ({y.shape[0]} x {y.shape[1]} predictions)")
    elif y_true is None:
        print(f"{y.shape[0]} predictions computed; pass --out Y.npy to keep them")
    return 0
