"""Break-even of the C simulation's worker processes: 1 against 2 workers, one run (measured).

Times ``CSim.predict`` (process start-up included) on 2,000, 5,000 and 10,000 windows of an
LSTM(32), L = 16, 16-bit model, interleaved 1, 2, 1, 2 workers, and prints the best of each and
their ratio with the machine's load. The figure chose :data:`qlstm.hls.csim.PARALLEL_MIN`.
Usage: ``nice -n 10 python benchmarks/bench_csim_workers.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np


def main() -> None:
    import qlstm.hls.csim as csim
    from qlstm.testing import random_model

    csim.PARALLEL_MIN = 1  # measure the processes' raw cost
    desc, w = random_model(("lstm",), (32,), history=16, horizon=1, bits=16)
    cs = csim.build_csim(desc, w)
    rng = np.random.default_rng(0)
    with open("/proc/loadavg") as f:
        print(f"load before: {f.read().strip()}; cores {len(os.sched_getaffinity(0))}")
    for n in (2000, 5000, 10000):
        x = rng.uniform(-1, 1, size=(n, 16, 1))
        times: dict[int, list[float]] = {1: [], 2: []}
        for workers in (1, 2, 1, 2):
            t = time.perf_counter()
            cs.predict(x, workers=workers)
            times[workers].append(time.perf_counter() - t)
        best1, best2 = min(times[1]), min(times[2])
        print(
            f"{n} windows: 1 worker {best1:.3f} s, 2 workers {best2:.3f} s (measured, best of 2): "
            f"2 workers at {best1 / best2:.2f}x the speed of 1"
        )
    with open("/proc/loadavg") as f:
        print(f"load after: {f.read().strip()}")


if __name__ == "__main__":
    main()
