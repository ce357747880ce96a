"""``qlstm detect``: quench-precursor alarms from a run's prediction residuals, scored."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="quench-precursor alarms from prediction residuals, scored against labels",
        description=(
            "Turn the model's prediction residuals into an alarm (score, threshold, minimum run length), "
            "calibrate the threshold on the run's training events' normal running for a target false-alarm "
            "rate, and score the held-out events: detection rate, lead time, false alarms per day, ROC and "
            "AUC, for the model and for persistence, linear AR and a plain |U_res| threshold. Writes "
            "DIR/detection.json and plots. See docs/detect.md."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder written by train or quantize")
    p.add_argument(
        "--data", type=Path, required=True, metavar="FILE", help="recording to run the detector on"
    )
    p.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="anomaly windows (JSON {event: [[start_s, end_s], ...]} or CSV event,start_s,end_s); default: "
        "the recording's own anomaly column (qlstm data generate writes it), else its quench markers",
    )
    p.add_argument(
        "--backend",
        choices=("float", "firmware", "rtl"),
        default="float",
        help="float: the run's model in float64 (PyTorch); firmware: the bit-exact firmware simulation of a "
        "quantized run with the alarm in fixed point, reported beside the float alarm; rtl: the generated "
        "Verilog with the alarm (qlstm rtl) in Verilator, each event as one stream of windows, its scores and "
        "alarm bits checked equal to the firmware's (builds and caches the RTL: minutes) (default float)",
    )
    p.add_argument(
        "--false-alarms-per-day",
        type=float,
        default=1.0,
        metavar="F",
        help="target false-alarm rate the thresholds are calibrated for (default 1.0)",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="recording holding the run's training events (default: the run's own data file, else --data)",
    )
    p.add_argument(
        "--score",
        choices=("instant", "ewma", "cusum"),
        default="ewma",
        help="score of the combined residual min(sum_j |r_j|, clip): instant, ewma (2**-n weight), cusum (drift = "
        "--cusum-factor x its median in normal running) (default ewma)",
    )
    p.add_argument(
        "--ewma-shift", type=int, default=7, metavar="N", help="EWMA weight 2**-N (default 7: 128 samples)"
    )
    p.add_argument("--cusum-factor", type=float, default=2.0, help="CUSUM drift in medians (default 2.0)")
    p.add_argument(
        "--clip-factor",
        type=float,
        default=3.0,
        help="clip the combined residual at this many medians of its normal running (0: no clip; default 3.0)",
    )
    p.add_argument(
        "--min-run",
        type=int,
        default=3,
        metavar="M",
        help="samples at or above the threshold to fire (default 3)",
    )
    p.add_argument(
        "--quench-window-s",
        type=float,
        default=600.0,
        help="with only quench markers: the anomaly window before each quench, s (default 600)",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder (detection.json, plots)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qlstm.detect.alarm import AlarmRule
    from qlstm.detect.run import DetectConfig, detect, write
    from qlstm.io import check_out_folder

    inputs = (args.run_dir, args.data, args.labels, args.calibration)
    check_out_folder(args.out, args.overwrite, inputs)  # before the slow part
    rule = AlarmRule(score=args.score, ewma_shift=args.ewma_shift, min_run=args.min_run)
    cfg = DetectConfig(
        rule=rule,
        false_alarms_per_day=args.false_alarms_per_day,
        quench_window_s=args.quench_window_s,
        cusum_factor=args.cusum_factor,
        clip_factor=args.clip_factor,
        backend=args.backend,
    )
    res = detect(args.run_dir, args.data, args.labels, args.calibration, cfg, progress=not args.no_progress)
    write(res, args.out, overwrite=args.overwrite, plots=not args.no_plots, inputs=inputs)
    print(summary_text(res))
    print(f"wrote {args.out}/detection.json")
    return 0


def summary_text(res) -> str:
    """A table of the detectors (figures simulated on the recording)."""
    from qlstm.detect.plots import LABELS

    lines = [
        f"detection on {len(res.evaluation_events)} held-out event(s) ({res.labels_source} labels), thresholds "
        f"calibrated on {len(res.calibration_events)} event(s) for {res.config.false_alarms_per_day:g} false "
        f"alarm(s)/day; backend {res.backend}; simulated",
        f"{'detector':<28} {'detected':>9} {'FA/day':>8} {'FA (h normal)':>14} {'median lead s':>14} {'AUC':>6}",
    ]
    for n, d in res.detectors.items():
        det = "-" if d.get("detection_rate") is None else f"{d['detected']}/{d['precursors']}"
        fa = d.get("false_alarms_per_day")
        lead = d.get("median_lead_time_s")
        auc = d.get("auc")
        lines.append(
            f"{LABELS[n]:<28} {det:>9} {'-' if fa is None else f'{fa:.2f}':>8} "
            f"{d['false_alarms']:>5} ({d['normal_hours']:.1f} h) {'-' if lead is None else f'{lead:.1f}':>14} "
            f"{'-' if auc is None else f'{auc:.3f}':>6}"
        )
    return "\n".join(lines)
