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
        "paths", nargs="+", metavar="[estimate] RUN_DIR", help="a run folder (quantized for the report)"
    )
    p.add_argument("--out", type=Path, help="report folder to write (report form)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="QRUN_DIR",
        help="another quantized run of the same float run to list (e.g. PTQ beside QAT)",
    )
    p.add_argument(
        "--sweep", type=Path, help="the quantize sweep CSV (default: sweep*.csv found beside QRUN_DIR)"
    )
    p.add_argument(
        "--hls",
        type=Path,
        metavar="PRJ_DIR",
        help="an hls project (`qlstm hls` or a run's hls/project) whose estimate.json holds the latency and "
        "resource ESTIMATES (default: none, those sections say so; the report never runs the estimator)",
    )
    p.add_argument(
        "--firmware",
        type=Path,
        metavar="FIRMWARE_DIR",
        help="a run's firmware/ folder: firmware_check.json (bit-exactness section) and trace_predictions.npz "
        "(quench figure) (default: none, those sections say so; the report never runs a backend)",
    )
    p.add_argument(
        "--rtl",
        type=Path,
        metavar="RTL_DIR",
        help="an RTL folder with rtl.json (`qlstm rtl` or a run's rtl/) for the RTL section "
        "(default: none, the section is omitted with a note; the report never runs Verilator or Yosys)",
    )
    p.add_argument(
        "--detect",
        type=Path,
        metavar="DETECT_DIR",
        help="a detect folder with detection.json (`qlstm detect` or a run's detect/) for the detection "
        "section (default: none, omitted with a note)",
    )
    g = p.add_argument_group(
        "estimate options (the same spelling as `qlstm hls`; also read from --config's `hls:` section)"
    )
    g.add_argument("--target", help="named target: zynq7020, zynq7045, ku060, kintex7 (estimate form)")
    g.add_argument("--part", help="any Xilinx part string (needs --resources)")
    g.add_argument(
        "--resources",
        metavar="LUT,FF,DSP,BRAM",
        help="device capacity for --part: LUTs, flip-flops, DSP slices, 18Kb BRAM tiles",
    )
    g.add_argument("--clock-ns", type=float, help="clock period in ns (default: the target's)")
    g.add_argument("--reuse", type=int, help="hls4ml reuse factor (default 1)")
    g.add_argument("--strategy", choices=("latency", "resource"), help="hls4ml strategy (default latency)")
    g.add_argument(
        "--static",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hls4ml static (default on); --no-static: one cell per time step (the budget search then "
        "tries both)",
    )
    g.add_argument("--config", type=Path, help="a qlstm config file: its `hls:` section (estimate form)")
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
        rtl_dir=args.rtl,
        detect_dir=args.detect,
        hls_dir=args.hls,
        **_firmware_files(args.firmware),
    )
    print(f"report written: {out / 'report.md'} and {out / 'report.html'}")
    return 0


def _firmware_files(folder: Path | None) -> dict[str, Path | None]:
    """``--firmware DIR``: its firmware_check.json and trace_predictions.npz (those present)."""
    from qlstm import runs

    if folder is None:
        return {}
    if not folder.is_dir():
        raise QlstmError(f"{folder}: firmware folder not found")
    check, trace = folder / runs.FIRMWARE_CHECK_FILE, folder / runs.TRACE_PREDICTIONS_FILE
    return {
        "firmware_check_file": check if check.is_file() else None,
        "trace_predictions_file": trace if trace.is_file() else None,
    }


def run_estimate(args: argparse.Namespace, run_dir: Path) -> int:
    """Print (and with --json write) the ESTIMATE of one configuration, or the budget search."""
    from qlstm import description
    from qlstm.hls.cli import section
    from qlstm.hls.estimate import estimate, search_budget
    from qlstm.io import check_out_file

    check_out_file(args.json, "--json")  # before the estimate is printed: no partial output
    desc, weights = description.load(run_dir)
    if args.target is None and args.part is None and args.config is None:
        raise QlstmError("give --target NAME, --part PART --resources LUT,FF,DSP,BRAM, or --config")
    sec = section(args)
    target = sec.resolve_target()
    if args.budget_us is not None:
        statics = (True,) if sec.options.static else (True, False)
        res = search_budget(desc, target, target.clock_ns, args.budget_us, weights, statics=statics)
        print(f"budget search (ESTIMATES) over {len(res.candidates)} configurations: {res.verdict}")
        chosen = res.chosen
        if chosen is not None:
            print("\n".join(chosen.lines()))
        payload = {"budget_us": args.budget_us, "verdict": res.verdict,
                   "chosen": None if chosen is None else chosen.to_dict()}  # fmt: skip
    else:
        e = estimate(desc, target, sec.options, weights)
        print("\n".join(e.lines()))
        payload = e.to_dict()
    if args.json:
        from qlstm.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0
