"""``qlstm quantize``: fixed-point quantization of a float run (PTQ or Brevitas QAT), or a sweep."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from qlstm.errors import QlstmError

log = logging.getLogger(__name__)

#: CLI option -> QuantizeConfig field (the options override the config file).
_WIDTH_OPTIONS = (
    "input_bits",
    "weight_bits",
    "bias_bits",
    "state_bits",
    "accum_bits",
    "result_bits",
    "table_bits",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="fixed-point quantization (PTQ or Brevitas QAT)",
        description=(
            "Choose an ap_fixed type for every quantization point of a float run's firmware (PTQ from "
            "ranges profiled on its training windows, or on --calibration windows for an imported model; or Brevitas "
            "quantization-aware fine-tuning) and "
            "write a quantized run folder, or sweep bit widths (CSV + PNG of test RMSE)."
        ),
    )
    p.add_argument("run_dir", type=Path, help="float run folder written by `qlstm train` or `qlstm import`")
    p.add_argument("--out", type=Path, required=True, help="quantized run folder (or sweep folder)")
    p.add_argument("--bits", type=int, help="width of every type not set otherwise (default 8)")
    p.add_argument(
        "--method", choices=("ptq", "qat"), help="post-training or quantization-aware (default ptq)"
    )
    p.add_argument("--sweep", help="comma-separated widths, e.g. 6,8,10,12,14,16: PTQ and QAT at each")
    for opt in _WIDTH_OPTIONS:
        p.add_argument(f"--{opt.replace('_', '-')}", type=int, help=f"width of the {opt[:-5]} types")
    p.add_argument("--table-size", type=int, help="entries of each sigmoid/tanh table (power of two)")
    p.add_argument("--headroom", type=int, help="extra integer bits for input, states, output (default 0)")
    p.add_argument("--accum-headroom", type=int, help="extra integer bits for accumulators (default 1)")
    p.add_argument(
        "--state-integer-bits",
        type=int,
        help="integer bits of the h/c state types, 1-3 (default: PTQ the profiled range capped at 3, QAT 1)",
    )
    p.add_argument("--rounding", help="rounding mode of non-accumulator types (default AP_RND_CONV)")
    p.add_argument("--overflow", help="overflow mode of non-accumulator types (default AP_SAT)")
    p.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="POINT=TYPE",
        help=(
            "force one point's type, e.g. rnn0.state=ap_fixed<12,3,AP_RND_CONV,AP_SAT> (repeatable); "
            "'*=ap_fixed<16,6>' sets every point but the tables (hls4ml's model-wide default precision), "
            "named points override it"
        ),
    )
    p.add_argument("--epochs", type=int, help="QAT epochs (default 8)")
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="X.npy|FILE",
        help="PTQ ranges from these normalised windows (.npy, shape (N, L, C)) or from a recording "
        "(.csv .h5 .parquet .npz, windowed with the run's normalisation and L) instead of the run's "
        "training data (for imported models); metrics are then the deviation from the float model on them",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a qlstm config file; its `quantize:` section (QuantizeConfig fields and `types`) is read, "
        "the same section `qlstm run` reads; the options above override it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The ``quantize:`` section of --config (or the defaults) with the options merged in:
    the :class:`QuantizeConfig` and the forced types."""
    from qlstm.config import merge
    from qlstm.run_config import QuantizeSection, read_section

    base = read_section(args.config, "quantize") if args.config is not None else QuantizeSection()
    where = f"{args.config}: quantize" if args.config is not None else "quantize options"
    types = dict(base.types)
    for item in args.type:
        name, sep, text = item.partition("=")
        if not sep:
            raise QlstmError(f"--type {item!r}: expected POINT=TYPE")
        types[name.strip()] = text.strip()
    over: dict[str, Any] = {}
    for opt in (
        "bits",
        "method",
        "table_size",
        "headroom",
        "accum_headroom",
        "state_integer_bits",
        "rounding",
        "overflow",
        *_WIDTH_OPTIONS,
    ):
        v = getattr(args, opt)
        if v is not None:
            over[opt] = v
    if args.epochs is not None:
        over["qat"] = {"epochs": args.epochs}
    cfg = merge(base, over, where) if over else base
    return cfg.config(), {str(k): str(v) for k, v in types.items()}


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise QlstmError(f"--sweep {text!r}: expected comma-separated integers, e.g. 6,8,10") from None
    if not widths:
        raise QlstmError("--sweep: no widths given")
    return widths


def run(args: argparse.Namespace) -> int:
    from qlstm.quantize import core

    cfg, types = _settings(args)
    progress = not args.no_progress and sys.stderr.isatty()
    if args.calibration is not None:
        if args.sweep:
            raise QlstmError("--calibration cannot be combined with --sweep (a sweep scores test targets)")
        from qlstm.quantize.calibration import quantize_calibrated

        m = quantize_calibrated(
            args.run_dir, args.out, args.calibration, cfg, types, args.overwrite, progress
        )
        print(json.dumps({"method": cfg.method, "bits": cfg.bits, **m["calibration"]}))
        print(f"wrote {args.out}")
        return 0
    if args.sweep:
        if types:
            raise QlstmError("--type cannot be combined with --sweep")
        methods = (args.method,) if args.method else ("ptq", "qat")
        rows = core.sweep(args.run_dir, args.out, _widths(args.sweep), cfg, methods, args.overwrite, progress)
        cols = list(rows[0])
        print(" ".join(f"{c:>11}" for c in cols))
        for r in rows:
            print(" ".join(f"{r[c]:>11.4g}" if isinstance(r[c], float) else f"{r[c]:>11}" for c in cols))
        print(f"wrote {args.out / 'sweep.csv'} and {args.out / 'sweep.png'}")
        return 0
    metrics = core.quantize_run(args.run_dir, args.out, cfg, types, args.overwrite, progress)
    t, f = metrics["test"], metrics["float_test"]
    print(
        json.dumps(
            {
                "method": cfg.method,
                "bits": cfg.bits,
                "test_rmse": t["rmse"],
                "float_rmse": f["rmse"],
                "ratio": metrics["rmse_ratio_to_float"],
                **({"kept": metrics["qat"]["kept"]} if "qat" in metrics else {}),
            }
        )
    )
    if metrics.get("qat", {}).get("kept") == "ptq":
        print("QAT did not beat the PTQ model on validation: the PTQ model is kept (metrics.json: qat)")
    print(f"wrote {args.out}")
    return 0
