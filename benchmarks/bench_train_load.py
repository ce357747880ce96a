"""Training on a shared machine: 5 epochs of `qlstm run`'s default training alone, then beside
CPU-bound processes, in one sitting; prints wall and CPU time and the slowdown ratio.

    nice .venv/bin/python benchmarks/bench_train_load.py [--epochs 5] [--spinners 2] [--threads N ...]

The data step runs once (not timed); each timed run is ``qlstm [--threads N] run --from train
--to train`` on that folder, in a fresh process (so the thread policy of ``qlstm.threads``
applies from the start). The spinners are ``python -c 'while True: pass'`` at nice 0, started
before and killed after each loaded run. Heavy (minutes); by hand, not in the test suite.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
QLSTM = [sys.executable, "-m", "qlstm.cli"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--spinners", type=int, default=2, help="CPU-bound processes beside the loaded run")
    p.add_argument(
        "--threads", type=int, nargs="*", default=[0], help="qlstm --threads values (0: qlstm's default)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs per condition (the upper median is printed: of 2, the slower)",
    )
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    cfg = yaml.safe_load((ROOT / "configs" / "run_default.yaml").read_text())
    cfg["train"]["training"]["epochs"] = args.epochs
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "QLSTM_THREADS")}
    print(f"cores this process may use: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="qlstm-bench-load-") as tmp:
        conf = Path(tmp) / "run.yaml"
        conf.write_text(yaml.safe_dump(cfg))
        out = Path(tmp) / "run"
        subprocess.run([*QLSTM, "run", "--config", str(conf), "--out", str(out), "--to", "data"], check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
        for n in args.threads:
            glob = ["--threads", str(n)] if n else []
            cmd = [*QLSTM, *glob, "run", "--config", str(conf), "--out", str(out), "--from", "train", "--to", "train"]  # fmt: skip
            res = {}
            for cond in ("alone", "loaded"):
                walls, cpus = [], []
                for _ in range(args.repeat):
                    spin = []
                    if cond == "loaded":
                        spin = [
                            subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            for _ in range(args.spinners)
                        ]
                        time.sleep(0.5)
                    try:
                        w, c = timed(cmd, env)
                    finally:
                        for s in spin:
                            s.kill()
                            s.wait()
                    walls.append(w)
                    cpus.append(c)
                walls.sort()
                cpus.sort()
                res[cond] = (walls[len(walls) // 2], cpus[len(cpus) // 2])
                print(
                    f"threads {n or 'default'} {cond:<6}: wall {res[cond][0]:7.1f} s, CPU {res[cond][1]:7.1f} s "
                    f"(measured; load average {os.getloadavg()[0]:.2f})"
                )
            print(
                f"threads {n or 'default'}: loaded / alone = {res['loaded'][0] / res['alone'][0]:.2f}x "
                f"(beside {args.spinners} CPU-bound processes; target <= 2.5x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
