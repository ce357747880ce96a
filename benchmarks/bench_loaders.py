"""Peak memory of loading the same events from each file format (issue 14, fault 4, case B20).

Generates N synthetic 24 h events (216,000 samples each at 400 ms) once, writes them as HDF5,
NPZ, CSV and Parquet, then loads each file with :func:`qlstm.data.load_events` in a FRESH
subprocess and reports its peak resident size (``ru_maxrss``) above that subprocess's baseline
(the interpreter with numpy, pyarrow, h5py and qlstm.data imported, measured just before the
load), as a ratio to the bytes of the samples (time + values as float64, 16 bytes per sample).
Target: every format within about 3x.

    nice -n 10 .venv/bin/python benchmarks/bench_loaders.py [--events 20] [--channels U_res]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy, pyarrow, pyarrow.csv, pyarrow.parquet, h5py
import qlstm.data, qlstm.data.formats, qlstm.data.textfile, qlstm.data.timecol
def hwm():  # peak resident size of this process (VmHWM; ru_maxrss would include the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
base = hwm()
t0 = time.perf_counter()
es = qlstm.data.load_events(sys.argv[1])
t1 = time.perf_counter()
peak = hwm()
print(json.dumps({"base": base, "peak": peak, "seconds": t1 - t0, "samples": es.n_samples,
                  "events": len(es), "channels": len(es.channel_names)}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20, help="number of 24 h events (default 20, as in B20)")
    p.add_argument("--hours", type=float, default=24.0, help="length of each event in hours")
    p.add_argument("--channels", default="U_res", help="comma-separated channels (U_res or U_res,I)")
    p.add_argument("--formats", default="h5,npz,csv,parquet", help="comma-separated extensions")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    from qlstm.data import SyntheticConfig, generate, save_events

    cfg = SyntheticConfig(
        n_events=args.events,
        duration_s=args.hours * 3600,
        seed=args.seed,
        channels=tuple(args.channels.split(",")),
    )
    with tempfile.TemporaryDirectory() as tmp:
        es = generate(cfg)
        n = es.n_samples
        c = len(es.channel_names)
        data_bytes = n * 8 * (1 + c)
        paths = []
        for ext in args.formats.split(","):
            path = Path(tmp) / f"events.{ext}"
            save_events(es, path)
            paths.append(path)
        del es
        print(
            f"{args.events} events x {cfg.n_samples} samples = {n:,} samples, {c} channel(s); "
            f"samples as float64 time + values: {data_bytes / 1e6:.1f} MB (measured peak RSS, "
            "each load in a fresh subprocess)"
        )
        print(
            f"{'format':8} {'file MB':>8} {'load s':>7} {'baseline MB':>12} {'peak MB':>8} {'above':>8} {'x samples':>10}"
        )
        for path in paths:
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                print(f"{path.suffix:8} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout)
            assert r["samples"] == n
            above = r["peak"] - r["base"]
            print(
                f"{path.suffix:8} {path.stat().st_size / 1e6:8.1f} {r['seconds']:7.2f} {r['base'] / 1e6:12.0f} "
                f"{r['peak'] / 1e6:8.0f} {above / 1e6:8.0f} {above / data_bytes:10.2f}"
            )
            del t0
    return 0


if __name__ == "__main__":
    sys.exit(main())
