"""``qlstm firmware``: bit-exact firmware simulation: trace and deviation check

``qlstm firmware check QRUN_DIR (--inputs X.npy | --data FILE)`` simulates the firmware on the
windows and prints, for every tensor of the dataflow, the largest deviation from the same network
in float64 (in LSBs of the tensor's type) and every overflow that occurred (count, steps, first
window and step). ``qlstm firmware trace QRUN_DIR --inputs X.npy --out trace.npz`` saves every
intermediate (gates before/after activation, states, per step and layer) as float64 arrays.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "firmware",
        help="bit-exact firmware simulation: trace and deviation check",
        description=(
            "Simulate the hls4ml firmware of a quantized run bit for bit (the same numbers as the "
            "compiled C simulation, vectorised over windows): check its deviation from float, or trace it."
        ),
    )
    fsub = p.add_subparsers(dest="firmware_command", metavar="<action>", required=True)

    c = fsub.add_parser(
        "check",
        help="largest deviation from float per tensor (LSBs) and every overflow",
        description=(
            "Run the firmware simulation and the float64 network (same weights) on the windows; print per "
            "tensor the largest deviation in LSBs of its fixed-point type and where it occurs, and every "
            "quantization point that overflowed (count, time steps, first window and step)."
        ),
    )
    c.add_argument(
        "run_dir", metavar="QRUN_DIR", type=Path, help="quantized run folder (qlstm quantize output)"
    )
    _add_inputs(c)
    c.add_argument("--stride", type=int, default=1, help="window stride with --data (default 1)")
    c.add_argument(
        "--hls-project",
        type=Path,
        metavar="PRJ_DIR",
        help="simulate this `qlstm hls` project's firmware (strategy, reuse factor, static, io type); "
        "default hls4ml's io_parallel, latency, reuse factor 1",
    )
    c.add_argument(
        "--max-windows", type=int, default=None, help="use at most this many windows (the first ones)"
    )
    c.add_argument(
        "--fail-on-overflow",
        action="store_true",
        help="exit with status 1 if any quantization point overflowed",
    )
    c.set_defaults(func=run_check)

    t = fsub.add_parser(
        "trace",
        help="save every intermediate of the firmware to an .npz file",
        description=(
            "Simulate the firmware on the windows of X.npy and save every intermediate (float64, exact) "
            "to an .npz: input, rnn{i}.x_acc/h_acc/preact/gates/c/tanh_c/r_h/h, rnn{i}, head.acc, head; "
            "the key __types__ holds each tensor's fixed-point type as JSON."
        ),
    )
    t.add_argument(
        "run_dir", metavar="QRUN_DIR", type=Path, help="quantized run folder (qlstm quantize output)"
    )
    t.add_argument("--inputs", type=Path, required=True, help="(N, L, C) normalised windows, .npy")
    t.add_argument("--out", type=Path, required=True, help="output .npz file")
    t.add_argument(
        "--hls-project",
        type=Path,
        metavar="PRJ_DIR",
        help="simulate this `qlstm hls` project's firmware (strategy, reuse factor, static, io type)",
    )
    t.set_defaults(func=run_trace)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--inputs", type=Path, help="(N, L, C) normalised windows, .npy")
    g.add_argument(
        "--data", type=Path, help="a recording (.csv .h5 .parquet .npz), windowed with the run's L and k"
    )


def load_inputs(path: Path) -> np.ndarray:
    """An (N, L, C) array from an .npy file; one clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise QlstmError(f"{path}: inputs file not found")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled / bad header), OSError, EOFError
        raise QlstmError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise QlstmError(f"{path}: expected an (N, L, C) array, got shape {getattr(x, 'shape', '?')}")
    return x


def _windows(args: argparse.Namespace, desc) -> tuple[np.ndarray, np.ndarray | None]:
    """The windows to check and, with --data, their targets."""
    arch = desc.architecture
    if args.inputs is not None:
        return load_inputs(args.inputs), None
    from qlstm.data import load_for_model, make_windows

    norm = desc.normalisation
    es = load_for_model(args.data, desc, min_length=arch.history + arch.horizon)  # in the run's units
    w = make_windows(es, norm, history=arch.history, horizon=arch.horizon, stride=args.stride)
    return w.x, w.y


def _where(dev: np.ndarray) -> str:
    idx = np.unravel_index(int(np.argmax(dev)), dev.shape)
    names = ("window", "step", "unit") if dev.ndim == 3 else ("window", "unit")
    return ", ".join(f"{n} {int(i)}" for n, i in zip(names, idx, strict=False))


def run_check(args: argparse.Namespace) -> int:
    from qlstm import description
    from qlstm.float_reference import float_trace

    from .simulate import Firmware

    desc, weights = description.load(args.run_dir)
    if not desc.quantized:
        raise QlstmError(
            f"{args.run_dir}: not a quantized run; `qlstm firmware` needs the output of `qlstm quantize`"
        )
    if args.stride < 1:
        raise QlstmError(f"--stride {args.stride} must be >= 1")
    x, y = _windows(args, desc)
    if args.max_windows is not None:
        if args.max_windows < 1:
            raise QlstmError(f"--max-windows {args.max_windows} must be >= 1")
        x = x[: args.max_windows]
        y = None if y is None else y[: args.max_windows]
    if x.shape[0] == 0:
        raise QlstmError("no windows to check")
    config = None
    if args.hls_project is not None:
        from qlstm.predict import hls_project_config

        config = hls_project_config(args.hls_project, args.run_dir)
    fw = Firmware(desc, weights, config)
    try:
        run = fw.run(x, trace=True, record=True)
    except QlstmError as exc:
        src = args.inputs if args.inputs is not None else args.data
        raise QlstmError(f"{src}: {exc}") from None
    ref = float_trace(desc.architecture, weights, x)
    values = run.values()
    arch = desc.architecture
    o = fw.config
    print(
        f"firmware check of {args.run_dir}: {x.shape[0]} windows, L={arch.history}, "
        f"C={arch.input_channels}, k={arch.horizon}; {o.io_type}, {o.strategy}, reuse factor "
        f"{o.reuse_factor}{'' if o.static else ', non-static'} (simulated)"
    )
    print(f"{'tensor':<16} {'type':<36} {'max |fw - float|':>18} {'LSB':>10}  at")
    for name, t in run.types.items():
        dev = np.abs(values[name] - ref[name])
        worst = float(dev.max()) if dev.size else 0.0
        print(
            f"{name:<16} {t.describe():<36} {worst:>18.6g} {worst / t.lsb:>10.1f}  {_where(dev) if dev.size else ''}"
        )
    hits = {k: e for k, e in run.overflows.items() if e.count}
    if not hits:
        print("overflow: none")
    else:
        print("overflow:")
        for name, e in hits.items():
            steps = ",".join(str(s) for s in sorted(e.steps)) if e.steps else "-"
            at = f"window {e.first_window}" + (
                f", step {e.first_step}" if e.first_step is not None else " (after the last step)"
            )
            print(f"  {name:<22} {e.count} of {e.total} values; steps {steps}; first in {at}")
    if y is not None:
        ref_y = ref["head"]
        rmse_fw = float(np.sqrt(np.mean((run.y - y) ** 2)))
        rmse_fl = float(np.sqrt(np.mean((ref_y - y) ** 2)))
        print(f"RMSE vs targets (normalised): firmware {rmse_fw:.6g}, float {rmse_fl:.6g}")
    return 1 if (hits and args.fail_on_overflow) else 0


def run_trace(args: argparse.Namespace) -> int:
    from qlstm.io import atomic_path, check_out_file

    from .backend import load_firmware

    if args.out.suffix != ".npz":
        raise QlstmError(f"--out {args.out}: the trace is written as .npz; give a file name ending in .npz")
    check_out_file(args.out)
    config = None
    if args.hls_project is not None:
        from qlstm.predict import hls_project_config

        config = hls_project_config(args.hls_project, args.run_dir)
    fw = load_firmware(args.run_dir, config)
    x = load_inputs(args.inputs)
    try:
        run = fw.run(x, trace=True)
    except QlstmError as exc:
        raise QlstmError(f"{args.inputs}: {exc}") from None
    arrays = run.values()
    types = np.array(json.dumps({k: t.describe() for k, t in run.types.items()}))
    with atomic_path(args.out) as tmp:
        np.savez(tmp, __types__=types, **arrays)
    print(f"wrote {len(arrays)} traced tensors of {x.shape[0]} windows to {args.out}")
    return 0
