"""``qlstm explore``: the accuracy / latency / resources Pareto front, searched by Optuna's
NSGA-II with trials as Dask tasks (docs/explore.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from qlstm.data.formats import FORMATS
    from qlstm.hls.targets import TARGETS

    targets = ", ".join(f"{n} ({t.clock_ns:.3g} ns)" for n, t in TARGETS.items())
    p = sub.add_parser(
        "explore",
        help="design-space exploration: the RMSE / latency / resources Pareto front (Optuna NSGA-II on Dask)",
        description=(
            "Search cells, layers, history L, bit widths, QAT/PTQ, reuse factor and strategy for the "
            "Pareto front of firmware test RMSE (firmware_sim on held-out windows), latency (hls4ml "
            "estimate) and resources (largest LUT/FF/DSP/BRAM fraction of the part), subject to fitting "
            "the part and meeting the latency budget. Each trial trains, quantizes and simulates one "
            "model as a Dask task; the Optuna study lives in a database, so running again on the same "
            "--out with a larger --trials resumes it. Writes trials.csv, pareto.csv, pareto.png, "
            "pareto.html and a run.yaml per trial (reproduce a point with `qlstm run --config`)."
        ),
    )
    p.add_argument("--space", type=Path, help="the space YAML (default: qlstm/explore/default_space.yaml; "
                   "format in docs/explore.md)")  # fmt: skip
    p.add_argument("--data", type=Path,
                   help=f"an events file ({', '.join(sorted(FORMATS))}: the formats of `qlstm data`), read and "
                   "checked once before anything is created, instead of the synthetic default; repeat it "
                   "when resuming")  # fmt: skip
    p.add_argument(
        "--trials",
        type=int,
        required=True,
        help="trials the study should hold (N): finished plus running (every explorer's); a larger N resumes the study",
    )
    p.add_argument("--out", type=Path, required=True, help="exploration folder: study.db, trials/, results")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786 (one "
                     "error line if it does not answer as Dask within 15 s)")  # fmt: skip
    grp.add_argument(
        "--workers", type=int, default=2, help="worker processes of the local cluster (default 2)"
    )
    p.add_argument("--target", default="zynq7045",
                   help=f"FPGA target of the estimate (default zynq7045); one of {targets}")  # fmt: skip
    p.add_argument("--clock-ns", type=float,
                   help="clock period in ns (default: the TARGET's clock, 10 ns on zynq7045; `qlstm run` "
                   "assumes 5 ns, so give --clock-ns 5 to compare); repeat it when resuming")  # fmt: skip
    p.add_argument("--budget-us", type=float, default=1.0, help="latency budget in us (default 1.0)")
    p.add_argument("--storage", help="SQLAlchemy URL of the study database (default sqlite:///OUT/study.db)")
    p.add_argument("--prune-runs", action="store_true",
                   help="delete each trial's train/, quantize/ and rtl/ folders once it is recorded (keeps run.yaml)")  # fmt: skip
    p.add_argument("--rtl", action="store_true",
                   help="evaluate the RTL design (da4ml) instead of the hls4ml estimate: cycles measured in Verilator "
                   "(minutes per trial; Verilator must be installed on every worker), LUT/register bits estimated by "
                   "da4ml; the space may search pipeline_depth")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar and front lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qlstm.explore.space import load_space
    from qlstm.explore.study import explore

    space = load_space(args.space, args.rtl)
    res = explore(
        space, args.out, args.trials, data=args.data, scheduler=args.scheduler, workers=args.workers,
        target=args.target, clock_ns=args.clock_ns, budget_us=args.budget_us, storage=args.storage,
        prune_runs=args.prune_runs, rtl=args.rtl, progress=not args.no_progress,
    )  # fmt: skip
    dup = (
        f" and reused {res['reused']} duplicate point(s) (a finished trial's result)" if res["reused"] else ""
    )
    failed = f"; {res['failed']} of this run's trial(s) FAILED (trials.csv: error)" if res["failed"] else ""
    print(f"qlstm explore: ran {res['ran']} trial(s){dup} in {res['seconds']:.0f} s (wall){failed}; the study "
          f"holds {res['finished']} finished trial(s), {res['front']} on the front")  # fmt: skip
    for k, v in res["files"].items():
        print(f"  {k}: {v}")
    if res["all_failed"]:
        print(
            f"qlstm explore: every trial of this run failed; the first: {res['first_error']}", file=sys.stderr
        )
        return 1
    return 0
