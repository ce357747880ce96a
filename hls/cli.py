"""``qlstm hls``: generate an hls4ml project (and its C simulation) for a quantised run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from qlstm.errors import QlstmError

from .targets import TARGETS, Resources, Target, check_part, get_target

DEFAULT_TARGET = "zynq7020"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hls",
        help="generate an hls4ml project and its C simulation",
        description=(
            "Generate a complete hls4ml Vivado/Vitis HLS project for a quantised run: every fixed-point "
            "type from the run's model description (checked in the generated headers), build_prj.tcl "
            "with the part and clock, and tb_data/ filled with held-out windows and the C simulation's "
            "outputs, so csim and cosim run unchanged. The C simulation is compiled with g++ once per "
            "model and options (cached by content hash under $QLSTM_CACHE/csim)."
        ),
    )
    p.add_argument(
        "run_dir", metavar="QRUN_DIR", type=Path, help="quantised run folder (from qlstm quantize)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        metavar="NAME",
        help=f"named FPGA target with its part, default clock and resources: {', '.join(TARGETS)} "
        f"(default {DEFAULT_TARGET})",
    )
    where.add_argument("--part", help="any Xilinx part string, e.g. xc7a200tfbg676-2 (needs --resources)")
    p.add_argument(
        "--resources",
        metavar="LUT,FF,DSP,BRAM",
        help="device capacity for --part: LUTs, flip-flops, DSP slices, 18Kb BRAM tiles (for the estimator)",
    )
    p.add_argument(
        "--clock-ns",
        type=float,
        metavar="NS",
        help="clock period in ns (default: the target's; 5.0 for --part)",
    )
    p.add_argument(
        "--reuse",
        type=int,
        metavar="R",
        default=1,
        help="reuse factor of every layer (default 1); invalid values list the valid ones",
    )
    p.add_argument(
        "--strategy",
        choices=("latency", "resource"),
        default="latency",
        help="hls4ml strategy (default latency)",
    )
    p.add_argument(
        "--backend", choices=("vivado", "vitis"), default="vivado", help="hls4ml backend (default vivado)"
    )
    p.add_argument(
        "--io", choices=("parallel", "stream"), default="parallel", help="hls4ml io type (default parallel)"
    )
    p.add_argument(
        "--static",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one recurrent cell instance reused over time steps (hls4ml's static; default on)",
    )
    p.add_argument(
        "--out", type=Path, metavar="PRJ_DIR", help="project folder to create (default QRUN_DIR/hls_<target>)"
    )
    p.add_argument(
        "--tb-inputs",
        type=Path,
        metavar="X.npy",
        help="test-bench windows (N, L, C) in the normalised space (default: the run's held-out test split)",
    )
    p.add_argument(
        "--tb-count", type=int, default=100, metavar="N", help="number of test-bench windows (default 100)"
    )
    p.add_argument(
        "--csim",
        action="store_true",
        help="also run the C simulation on held-out windows (see --csim-windows): csim_predictions.npy, "
        "its RMSE and the quantised model's on the same windows",
    )
    p.add_argument(
        "--csim-windows",
        type=int,
        default=5000,
        metavar="N",
        help="with --csim: at most N held-out windows, spread over the set (default 5000; the C "
        "simulation of a 128-cell LSTM runs ~40 windows per CPU-second)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing qlstm hls project folder")
    p.set_defaults(func=run)


def parse_resources(text: str) -> Resources:
    parts = [t.strip() for t in text.split(",")]
    try:
        values = [int(t) for t in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise QlstmError(
            f"--resources {text!r}: expected four integers LUT,FF,DSP,BRAM, e.g. 134600,269200,740,730"
        )
    return Resources(*values)


def resolve_target(args: argparse.Namespace) -> Target:
    """The target from --target / --part / --resources / --clock-ns, validated."""
    clock = args.clock_ns
    if clock is not None and not (math.isfinite(clock) and clock > 0):
        raise QlstmError(f"--clock-ns must be > 0, got {clock}")
    if args.part is not None:
        part = check_part(args.part)
        if args.resources is None:
            raise QlstmError(
                "--part needs --resources LUT,FF,DSP,BRAM (the device capacity, for the estimator)"
            )
        return Target.custom(
            part, parse_resources(args.resources), clock_ns=clock if clock is not None else 5.0
        )
    if args.resources is not None:
        raise QlstmError("--resources is only for --part; named targets know their resources")
    target = get_target(args.target or DEFAULT_TARGET)
    if clock is not None:
        from dataclasses import replace

        target = replace(target, clock_ns=clock)
    return target


def run(args: argparse.Namespace) -> int:
    from .graph import HlsOptions
    from .project import generate

    target = resolve_target(args)
    opts = HlsOptions(
        io_type=args.io, strategy=args.strategy, reuse=args.reuse, static=args.static, backend=args.backend
    )
    out = args.out if args.out is not None else Path(args.run_dir) / f"hls_{target.name}"
    meta = generate(
        args.run_dir,
        out,
        target,
        opts,
        tb_inputs=args.tb_inputs,
        tb_count=args.tb_count,
        csim=args.csim,
        csim_windows=args.csim_windows,
        overwrite=args.overwrite,
    )
    print(f"hls4ml project: {out}")
    print(f"  target {target.name} ({target.part}) at {target.clock_ns:g} ns ({target.clock_mhz:.1f} MHz)")
    print(f"  {opts.backend}, io_{args.io}, {opts.strategy}, reuse {opts.reuse}")
    print(f"  test bench: {meta['testbench']['windows']} windows from {meta['testbench']['source']}")
    c = meta["csim"]
    if "windows" in c:
        line = f"  C simulation on {c['windows']} of {c['of_windows']} windows -> {out / c['predictions']}"
        if "rmse" in c:
            line += f"; RMSE {c['rmse']:.6g}"
        if "rmse_ratio_to_quantised" in c:
            line += f" ({c['rmse_ratio_to_quantised']:.4f} x the quantised model's {c['quantised_model_rmse']:.6g})"
        print(line)
        same = (
            "identical"
            if c["identical_to_quantised"]
            else f"max {c['max_abs_diff_to_quantised_lsb']:g} LSB apart"
        )
        print(f"  C simulation vs the quantised model on the same windows: {same}")
    return 0
