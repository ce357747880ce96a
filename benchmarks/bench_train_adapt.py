"""Training when other work arrives mid-run: qlstm's idle start-up choice (spinning OpenMP threads)
with and without the adaptive switch (qlstm.threads.Adapt), and the passive choice, beside CPU-bound
processes that start a few seconds AFTER the training; and alone. Interleaved, in one sitting.

    .venv/bin/python benchmarks/bench_train_adapt.py [--epochs 2] [--spinners 2] [--delay 5] [--repeat 2]

Each timed run is ``qlstm run --from train --to train`` of ``configs/run_default.yaml`` (epochs
overridden) in a fresh process, with ``qlstm.threads.machine_busy`` forced (idle or busy) so the
start-up decision is the one under test whatever the machine's load; ``QLSTM_ADAPT=0`` is the code
before the switch. Spinners and training run at the same niceness (``--nice``). Heavy (minutes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WRAP = (
    "import sys, qlstm.threads as t; b = sys.argv.pop(1) == 'busy'; t.machine_busy = lambda n: b\n"
    "from qlstm.cli import main; sys.exit(main(sys.argv[1:]))\n"
)
CASES = {  # name: (start-up decision, adaptive switch on, spinners)
    "idle, no switch, spinners arrive": ("idle", False, True),
    "idle, switch, spinners arrive": ("idle", True, True),
    "passive, spinners arrive": ("busy", True, True),
    "idle, no switch, alone": ("idle", False, False),
    "idle, switch, alone": ("idle", True, False),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--spinners", type=int, default=2)
    p.add_argument("--delay", type=float, default=5.0, help="seconds after the training starts")
    p.add_argument("--repeat", type=int, default=2, help="rounds over all cases (interleaved)")
    p.add_argument("--nice", type=int, default=10, help="niceness of training and spinners alike")
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    os.nice(args.nice)  # children inherit it
    cfg = yaml.safe_load((ROOT / "configs" / "run_default.yaml").read_text())
    cfg["train"]["training"]["epochs"] = args.epochs
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "QLSTM_THREADS", "OMP_WAIT_POLICY")
    }
    print(f"cores: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()}; nice {args.nice}")
    walls: dict[str, list[float]] = {c: [] for c in CASES}
    with tempfile.TemporaryDirectory(prefix="qlstm-bench-adapt-") as tmp:
        conf = Path(tmp) / "run.yaml"
        conf.write_text(yaml.safe_dump(cfg))
        out = Path(tmp) / "run"
        q = [sys.executable, "-m", "qlstm.cli", "run", "--config", str(conf), "--out", str(out)]
        subprocess.run([*q, "--to", "data"], check=True, env=base, stdout=subprocess.DEVNULL)
        for r in range(args.repeat):
            for name, (decision, switch, spin) in CASES.items():
                env = dict(base, QLSTM_ADAPT="1" if switch else "0")
                cmd = [sys.executable, "-c", WRAP, decision, *q[3:], "--from", "train", "--to", "train"]
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                proc = subprocess.Popen(
                    cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
                spinners = []
                try:
                    if spin:
                        time.sleep(args.delay)
                        spinners = [
                            subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            for _ in range(args.spinners)
                        ]
                    err = proc.communicate()[1]
                finally:
                    for s in spinners:
                        s.kill()
                        s.wait()
                wall = time.perf_counter() - t0
                if proc.returncode:
                    raise SystemExit(f"{name}: exit {proc.returncode}: {err[-500:]}")
                walls[name].append(wall)
                print(
                    f"round {r + 1} {name:<34}: wall {wall:6.1f} s (measured; load average {load0:.2f} at start)"
                )
    med = {c: sorted(w)[len(w) // 2] for c, w in walls.items()}
    print("upper medians (measured):", {c: round(v, 1) for c, v in med.items()})
    alone = med["idle, switch, alone"]
    for c in (
        "idle, no switch, spinners arrive",
        "idle, switch, spinners arrive",
        "passive, spinners arrive",
    ):
        print(f"{c} / alone (switch) = {med[c] / alone:.2f}x (target <= 2.5x)")
    print(f"alone: switch / no switch = {alone / med['idle, no switch, alone']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
