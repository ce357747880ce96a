"""``qlstm report``: the run report, and latency/resource ESTIMATES of the hls4ml firmware.

Two forms share one parser (argparse cannot mix a positional folder and a sub-command):

* ``qlstm report QRUN_DIR --out REPORT_DIR`` writes ``report.md`` and a self-contained
  ``report.html`` (plots embedded as base64 PNG);
* ``qlstm report estimate RUN_DIR --target NAME|--part PART ... [--budget-us B]`` prints the
  estimate of one hls4ml configuration, or the budget search's choice.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="the run report (report.md + report.html) and latency/resource estimates",
        description=(
            "`qlstm report QRUN_DIR --out REPORT_DIR` writes the run report; "
            "`qlstm report estimate RUN_DIR --target zynq7045 --clock-ns 5 --reuse 1` prints an ESTIMATE "
            "of the hls4ml firmware's latency and resources (no synthesis; see docs/estimator.md)."
        ),
    )
    p.add_argument(
        "paths", nargs="+", metavar="[estimate] RUN_DIR", help="a run folder (quantised for the report)"
    )
    p.add_argument("--out", type=Path, help="report folder to write (report form)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="QRUN_DIR",
        help="another quantised run of the same float run to list (e.g. PTQ beside QAT)",
    )
    p.add_argument(
        "--sweep", type=Path, help="the quantize sweep CSV (default: sweep*.csv found beside QRUN_DIR)"
    )
    g = p.add_argument_group("estimate options (also used by the report's latency section)")
    g.add_argument("--target", help="named target: zynq7020, zynq7045, ku060, kintex7 (estimate form)")
    g.add_argument("--part", help="any Xilinx part string; give its --lut --ff --dsp --bram18k")
    for name in ("lut", "ff", "dsp", "bram18k"):
        g.add_argument(f"--{name}", type=int, help=f"{name.upper()} capacity of --part")
    g.add_argument("--clock-ns", type=float, help="clock period in ns (default: the target's)")
    g.add_argument("--reuse", type=int, default=1, help="hls4ml reuse factor (default 1)")
    g.add_argument("--strategy", choices=("latency", "resource"), default="latency")
    g.add_argument("--non-static", action="store_true", help="hls4ml static=False: one cell per time step")
    g.add_argument("--budget-us", type=float, help="find the smallest configuration meeting this latency")
    g.add_argument("--json", type=Path, help="also write the estimate as JSON (estimate form)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.paths[0] == "estimate":
        if len(args.paths) != 2:
            raise QlstmError("usage: qlstm report estimate RUN_DIR --target NAME [--clock-ns C] [--reuse R]")
        return run_estimate(args, Path(args.paths[1]))
    if len(args.paths) != 1:
        raise QlstmError(f"expected one run folder, got {' '.join(args.paths)}")
    if args.out is None:
        raise QlstmError("--out REPORT_DIR is required to write a report")
    from qlstm.report.build import write_report

    out = write_report(
        Path(args.paths[0]),
        args.out,
        overwrite=args.overwrite,
        budget_us=args.budget_us,
        others=args.also,
        sweep_csv=args.sweep,
    )
    print(f"report written: {out / 'report.md'} and {out / 'report.html'}")
    return 0


def resolve_target(args: argparse.Namespace):
    from qlstm.hls.targets import Resources, Target, get_target

    if args.target and args.part:
        raise QlstmError("give --target or --part, not both")
    if args.part:
        caps = [args.lut, args.ff, args.dsp, args.bram18k]
        if any(c is None for c in caps):
            raise QlstmError(f"--part {args.part}: give its capacity with --lut --ff --dsp --bram18k")
        return Target.custom(args.part, Resources(*caps))
    if not args.target:
        raise QlstmError("give --target NAME or --part PART")
    return get_target(args.target)


def run_estimate(args: argparse.Namespace, run_dir: Path) -> int:
    from qlstm import description
    from qlstm.hls.estimate import HlsSettings, estimate, search_budget

    desc, weights = description.load(run_dir)
    target = resolve_target(args)
    clock = target.clock_ns if args.clock_ns is None else args.clock_ns
    if args.budget_us is not None:
        statics = (True, False) if args.non_static else (True,)
        res = search_budget(desc, target, clock, args.budget_us, weights, statics=statics)
        print(f"budget search (ESTIMATES) over {len(res.candidates)} configurations: {res.verdict}")
        chosen = res.chosen
        if chosen is not None:
            print("\n".join(chosen.lines()))
        payload = {"budget_us": args.budget_us, "verdict": res.verdict,
                   "chosen": None if chosen is None else chosen.to_dict()}  # fmt: skip
    else:
        settings = HlsSettings(target, clock, args.reuse, args.strategy, not args.non_static)
        e = estimate(desc, settings, weights)
        print("\n".join(e.lines()))
        payload = e.to_dict()
    if args.json:
        from qlstm.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0
