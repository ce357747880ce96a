"""``qlstm hls``: generate an hls4ml project (and its C simulation) for a quantized run."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import DEFAULT_TARGET
from .targets import TARGETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hls",
        help="generate an hls4ml project and its C simulation",
        description=(
            "Generate a complete hls4ml Vivado/Vitis HLS project for a quantized run: every fixed-point "
            "type from the run's model description (checked in the generated headers), build_prj.tcl "
            "with the part and clock, and tb_data/ filled with held-out windows and the C simulation's "
            "outputs, so csim and cosim run unchanged. The C simulation is compiled with g++ once per "
            "model and options (cached by content hash under $QLSTM_CACHE/csim)."
        ),
    )
    p.add_argument(
        "run_dir", metavar="QRUN_DIR", type=Path, help="quantized run folder (from qlstm quantize)"
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
        help="hls4ml reuse factor of every layer (default 1); invalid values list the valid ones",
    )
    p.add_argument("--strategy", choices=("latency", "resource"), help="hls4ml strategy (default latency)")
    p.add_argument("--backend", choices=("vivado", "vitis"), help="hls4ml backend (default vivado)")
    p.add_argument("--io", choices=("parallel", "stream"), help="hls4ml io type (default parallel)")
    p.add_argument(
        "--static",
        action=argparse.BooleanOptionalAction,
        default=None,
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
    p.add_argument("--tb-count", type=int, metavar="N", help="number of test-bench windows (default 100)")
    p.add_argument(
        "--csim",
        action="store_true",
        default=None,
        help="also run the C simulation on held-out windows (see --csim-windows): csim_predictions.npy, "
        "its RMSE and the quantized model's on the same windows",
    )
    p.add_argument(
        "--csim-windows",
        type=int,
        metavar="N",
        help="with --csim: at most N held-out windows, spread over the set (default 5000; the C "
        "simulation of a 128-cell LSTM runs ~40 windows per CPU-second)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG.yaml",
        help="a qlstm config file; its `hls:` section (target, part, resources, clock_ns, options: "
        "{io_type, strategy, reuse_factor, static, backend}, tb_count, csim, csim_windows) is read, "
        "then the options above override it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing qlstm hls project folder")
    p.set_defaults(func=run)


def section(args: argparse.Namespace):
    """The ``hls:`` section from --config (or the defaults) with the command-line options applied;
    shared by ``qlstm hls`` and ``qlstm report estimate`` (one spelling of target, capacity,
    clock, reuse factor, strategy and static)."""
    from qlstm.config import merge
    from qlstm.run_config import read_section

    from .config import HlsSection, parse_resources

    base = read_section(args.config, "hls") if args.config is not None else HlsSection()
    over: dict = {}
    options: dict = {}
    for opt, key in (("target", "target"), ("part", "part"), ("clock_ns", "clock_ns"), ("tb_count", "tb_count"),
                     ("csim", "csim"), ("csim_windows", "csim_windows")):  # fmt: skip
        if getattr(args, opt, None) is not None:  # `qlstm report estimate` has no test-bench options
            over[key] = getattr(args, opt)
    if args.resources is not None:
        over["resources"] = list(parse_resources(args.resources))
    for opt, key in (("io", "io_type"), ("strategy", "strategy"), ("reuse", "reuse_factor"),
                     ("static", "static"), ("backend", "backend")):  # fmt: skip
        if getattr(args, opt, None) is not None:
            options[key] = getattr(args, opt)
    if options:
        over["options"] = options
    if args.part is not None and args.target is None:
        over["target"] = None  # --part replaces a named target of the config file
    return merge(base, over, where="qlstm hls options") if over else base


def run(args: argparse.Namespace) -> int:
    from .project import generate

    sec = section(args)
    target = sec.resolve_target()
    opts = sec.options
    out = args.out if args.out is not None else Path(args.run_dir) / f"hls_{target.name}"
    meta = generate(
        args.run_dir,
        out,
        target,
        opts,
        tb_inputs=args.tb_inputs,
        tb_count=sec.tb_count,
        csim=sec.csim,
        csim_windows=sec.csim_windows,
        overwrite=args.overwrite,
    )
    print(f"hls4ml project: {out}")
    print(f"  target {target.name} ({target.part}) at {target.clock_ns:g} ns ({target.clock_mhz:.1f} MHz)")
    print(f"  {opts.backend}, {opts.io_type}, {opts.strategy}, reuse factor {opts.reuse_factor}")
    print(f"  test bench: {meta['testbench']['windows']} windows from {meta['testbench']['source']}")
    c = meta["csim"]
    if "windows" in c:
        line = f"  C simulation on {c['windows']} of {c['of_windows']} windows -> {out / c['predictions']}"
        if "rmse" in c:
            line += f"; RMSE {c['rmse']:.6g}"
        if "rmse_ratio_to_quantized" in c:
            line += f" ({c['rmse_ratio_to_quantized']:.4f} x the quantized model's {c['quantized_model_rmse']:.6g})"
        print(line)
        same = (
            "identical"
            if c["identical_to_quantized"]
            else f"max {c['max_abs_diff_to_quantized_lsb']:g} LSB apart"
        )
        how = c.get("quantized_simulated_with", "firmware_sim")
        print(f"  C simulation vs the quantized model ({how}) on the same windows: {same}")
    return 0
