"""Issue 4 targets: test RMSE of PTQ and QAT against float at 6-16 bits on trained float runs.

    nice .venv/bin/python benchmarks/bench_quant.py --run compact=RUN_DIR --run paper=RUN_DIR \\
        [--widths 6,8,10,12,14,16] [--qat-epochs 3] [--qat-windows 20000] [--out DIR]

Each RUN_DIR is a float run of configs/<name>.yaml written by `qlstm train` (50 synthetic
events). For each run the script sweeps the widths with PTQ and QAT (test metrics simulated by
qlstm.firmware_sim, the one firmware forward, whose bit-exactness the tests establish against the
compiled C simulation and the oracle of tests/oracle_firmware.py), writes
SWEEP_DIR/<name>/sweep.csv + sweep.png, and prints
the targets: QAT RMSE <= 1.05 x float at 16 bits, <= 1.5 x float at 8 bits, QAT <= PTQ at every
width <= 10. Heavy (tens of minutes for paper): run by hand, not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--run", action="append", required=True, metavar="NAME=RUN_DIR", help="float run (repeatable)"
    )
    p.add_argument("--widths", default="6,8,10,12,14,16")
    p.add_argument("--qat-epochs", type=int, default=3)
    p.add_argument("--qat-windows", type=int, default=20_000, help="QAT training windows per epoch")
    p.add_argument("--out", type=Path, default=Path("runs/bench_quant"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from qlstm.quantize import core
    from qlstm.quantize.policy import QatConfig, QuantizeConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    widths = tuple(int(w) for w in args.widths.split(","))
    cfg = QuantizeConfig(
        qat=QatConfig(epochs=args.qat_epochs, max_train_windows=args.qat_windows, max_val_windows=5000),
    )
    summary = {}
    for item in args.run:
        name, _, run = item.partition("=")
        t0, c0 = time.perf_counter(), time.process_time()
        rows = core.sweep(Path(run), args.out / name, widths, cfg, overwrite=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        f = rows[0]["float_rmse"]
        print(f"\n== {name}: float test RMSE {f:.5g}  (sweep {wall:.0f} s wall, {cpu:.0f} s CPU)")
        print(f"{'bits':>5} {'PTQ':>10} {'QAT':>10} {'PTQ/float':>10} {'QAT/float':>10} {'QAT kept':>9}")
        for r in rows:
            met = json.loads((args.out / name / f"qat_{r['bits']}" / "metrics.json").read_text())
            print(
                f"{r['bits']:>5} {r['ptq_rmse']:>10.5g} {r['qat_rmse']:>10.5g} {r['ptq_rmse'] / f:>10.3f} "
                f"{r['qat_rmse'] / f:>10.3f} {met['qat']['kept']:>9}"
            )
        by = {r["bits"]: r for r in rows}
        checks = {}
        if 16 in by:
            checks["QAT16 <= 1.05 float"] = by[16]["qat_rmse"] <= 1.05 * f
        if 8 in by:
            checks["QAT8 <= 1.5 float"] = by[8]["qat_rmse"] <= 1.5 * f
        for w in widths:
            if w <= 10:
                checks[f"QAT{w} <= PTQ{w}"] = by[w]["qat_rmse"] <= by[w]["ptq_rmse"]
        for k, ok in checks.items():
            print(f"  {'MET ' if ok else 'MISS'} {k}")
        summary[name] = {"rows": rows, "checks": checks, "wall_s": wall, "cpu_s": cpu}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
