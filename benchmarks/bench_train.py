"""Train configs/paper.yaml on its 50 synthetic 24 h events on 2 CPU threads and report
training time, peak memory and the test RMSE per step ahead against both baselines.

    nice .venv/bin/python benchmarks/bench_train.py [--config configs/paper.yaml] [--out runs/bench_paper]

Heavy (minutes): run it by hand, not in the test suite. Wall time depends on what else the
machine runs, so the CPU time of the process is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "paper.yaml", help="training config")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_paper", help="run folder (replaced)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)

    import torch

    from qlstm.data import generate, save_events
    from qlstm.run_config import read_section
    from qlstm.train.config import load_config
    from qlstm.train.metrics import table
    from qlstm.train.trainer import train_run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    syn = read_section(args.config, "data")  # the config's synthetic events
    wall0, cpu0 = time.perf_counter(), time.process_time()
    args.out.mkdir(parents=True, exist_ok=True)
    events = args.out.parent / f"{args.out.name}_events.npz"
    save_events(generate(syn), events)
    m = train_run(cfg, args.out, events, overwrite=True, progress=sys.stderr.isatty())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    tr, t = m["training"], m["test"]

    print(f"config            {args.config}")
    print(
        f"model             {cfg.model.cell.upper()}{list(cfg.model.layers)}, L={cfg.history}, k={cfg.horizon}, "
        f"{m['n_parameters']} parameters"
    )
    print(
        f"data              {syn.n_events} synthetic events x {syn.duration_s / 3600:g} h, "
        f"{tr['train_windows']} training windows, {t['windows']} test windows"
    )
    print(f"threads           {args.threads} (torch reports {tr['threads']})")
    print(
        f"training time     {tr['seconds']:.1f} s wall ({tr['epochs_run']} epochs, best {tr['best_epoch']}, "
        f"{tr['train_windows'] * tr['epochs_run'] / tr['seconds']:.0f} windows/s)"
    )
    print(
        f"whole run         {wall:.1f} s wall, {cpu:.1f} s CPU (data generation, training, evaluation, writing)"
    )
    print(f"peak memory       {peak_mb:.0f} MB (max RSS of this process)")
    print("test RMSE / MAE per step ahead (normalised units):")
    print(table(t))
    print(m["verdict"])
    summary = {
        "config": str(args.config),
        "train_seconds": tr["seconds"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_mb,
        "rmse_per_step": {k: t[k]["rmse_per_step"] for k in ("model", "persistence", "linear_ar")},
        "beats_persistence": t["beats_persistence"],
        "beats_linear_ar": t["beats_linear_ar"],
    }
    print(json.dumps(summary))
    return 0 if t["beats_persistence"] and t["beats_linear_ar"] else 1


if __name__ == "__main__":
    sys.exit(main())
