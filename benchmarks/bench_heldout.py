"""What writing the held-out windows once saves: ``prepare`` (the data preparation that quantize,
hls, the firmware step and the report each re-ran before ``windows.npz`` existed) against reading
``windows.npz`` through :mod:`qlstm.runs`, on the default run config's data.

    nice -n 10 .venv/bin/python benchmarks/bench_heldout.py [--config configs/run_default.yaml] [--repeat 3]

Both are timed in the same process (best of ``--repeat``, wall and CPU), so their RATIO holds on
a loaded machine; the absolute times do not. Before the redesign one default ``qlstm run``
prepared the data 7 times (train, quantize x3: ptq, qat, sweep; hls; firmware; report); now once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds, the best of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "run_default.yaml")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    from qlstm.data import generate, save_events
    from qlstm.run_config import load_run_config
    from qlstm.runs import HeldOut
    from qlstm.train.dataset import heldout, prepare

    cfg = load_run_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.npz"
        save_events(generate(cfg.data), events)
        prep = prepare(cfg.train, events)
        held = heldout(prep, cfg.train.history)
        held.save(Path(tmp) / "windows.npz")
        size_mb = (Path(tmp) / "windows.npz").stat().st_size / 1e6
        t_prep = best(lambda: prepare(cfg.train, events), args.repeat)
        t_load = best(lambda: HeldOut.load(Path(tmp) / "windows.npz"), args.repeat)
    n = {s: len(getattr(held, s)) for s in ("train", "val", "test")}
    print(
        f"data: {cfg.data.n_events} events x {cfg.data.n_samples} samples; windows {n}; windows.npz {size_mb:.1f} MB"
    )
    print(
        f"prepare (measured)         : {t_prep[0]:.3f} s wall, {t_prep[1]:.3f} s CPU (best of {args.repeat})"
    )
    print(
        f"read windows.npz (measured): {t_load[0]:.3f} s wall, {t_load[1]:.3f} s CPU (best of {args.repeat})"
    )
    print(f"ratio prepare / read       : {t_prep[1] / t_load[1]:.0f}x CPU, {t_prep[0] / t_load[0]:.0f}x wall")
    saved = 6 * (t_prep[1] - t_load[1])
    print(f"per default qlstm run, 6 preparations replaced by reads: {saved:.1f} s CPU saved (derived)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
