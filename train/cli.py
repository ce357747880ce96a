"""``qlstm train``: train a float LSTM/GRU predictor (or the paper's grid of L x k)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qlstm.errors import QlstmError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a float LSTM/GRU predictor",
        description=(
            "Train a float LSTM/GRU predictor of the normalised magnet voltage k steps ahead from L "
            "steps of history, and write a self-describing run folder (model.json, weights.npz, "
            "checkpoint.pt, config.yaml, metrics.json, training_curve.png, data.json). Test metrics "
            "are compared with persistence and a linear AR model on the same windows."
        ),
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="recording to train on (.csv .h5 .hdf5 .parquet .npz), e.g. from `qlstm data generate`; "
        "required unless the config sets train.data.source: sine",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="RUN_DIR", help="run folder to write (grid: grid folder)"
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG.yaml",
        help="a qlstm config file (see configs/); its `train:` section is read (the same section "
        "`qlstm run` reads); default: built-in defaults",
    )
    p.add_argument("--history", "-L", type=int, metavar="L", help="override the config's history length L")
    p.add_argument("--horizon", "-k", type=int, metavar="K", help="override the config's horizon k")
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--seed", type=int, help="override training.seed")
    p.add_argument("--overwrite", action="store_true", help="replace RUN_DIR if it holds a different run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
    g = p.add_argument_group("grid of history x horizon (the paper's experiment)")
    g.add_argument(
        "--grid",
        action="store_true",
        help="train every (L, k) of the grid into RUN_DIR/runs/, "
        "write RUN_DIR/grid.csv and the heat map RUN_DIR/grid_rmse.png; resumes a stopped grid",
    )
    g.add_argument(
        "--grid-history",
        type=_int_list,
        default=(1, 4, 8, 16, 32),
        metavar="L1,L2,..",
        help="history lengths of the grid (default 1,4,8,16,32)",
    )
    g.add_argument(
        "--grid-horizon",
        type=_int_list,
        default=(1, 2, 4, 8, 16, 32),
        metavar="K1,K2,..",
        help="horizons of the grid (default 1,2,4,8,16,32)",
    )
    g.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="grid cells trained in parallel (default 2)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from qlstm.description import check_history_horizon
    from qlstm.train.config import load_config
    from qlstm.train.metrics import table

    check_history_horizon(args.history, args.horizon, ("--history", "--horizon"))
    overrides: dict = {}
    if args.history is not None:
        overrides["history"] = args.history
    if args.horizon is not None:
        overrides["horizon"] = args.horizon
    training = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    if training:
        overrides["training"] = training
    cfg = load_config(args.config, overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise QlstmError(f"--threads {args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)
    if args.grid:
        from qlstm.description import HISTORY_RANGE, HORIZON_RANGE
        from qlstm.train.grid import run_grid

        for opt, values, (lo, hi) in (
            ("--grid-history", args.grid_history, HISTORY_RANGE),
            ("--grid-horizon", args.grid_horizon, HORIZON_RANGE),
        ):
            bad = [v for v in values if not lo <= v <= hi]
            if bad:
                raise QlstmError(f"{opt}: {bad} outside {lo}-{hi}")
        rows = run_grid(
            cfg, args.out, args.data, args.grid_history, args.grid_horizon, args.jobs, args.overwrite
        )
        print(f"{'L':>3} {'k':>3} {'RMSE':>10} {'persist.':>10} {'AR':>10}")
        for r in rows:
            print(
                f"{r['L']:>3} {r['k']:>3} {r['rmse']:10.6f} {r['persistence_rmse']:10.6f} {r['linear_ar_rmse']:10.6f}"
            )
        print(f"wrote {args.out / 'grid.csv'} and {args.out / 'grid_rmse.png'}")
        return 0

    from qlstm.train.trainer import train_run

    m = train_run(cfg, args.out, args.data, overwrite=args.overwrite, progress=not args.no_progress)
    t = m["test"]
    tr = m["training"]
    print(
        f"trained {m['n_parameters']} parameters in {tr['seconds']:.1f} s "
        f"({tr['epochs_run']} epochs, best {tr['best_epoch']}, {tr['train_windows']} training windows)"
    )
    print(m["standardisation"]["summary"])
    print(f"test events, {t['windows']} windows, normalised units:")
    print(table(t))
    ru = m["raw_units"]
    unit = f" {ru['unit']}^2" if ru["unit"] not in ("", "1") else ""
    print(
        f"test MSE {t['model']['mse']:.3g} (normalised), {ru['model_mse']:.3g}{unit} in {ru['channel']}'s own units"
    )
    print(m["verdict"])
    print(f"wrote {args.out}")
    return 0
