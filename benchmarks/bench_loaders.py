"""Peak memory of loading the same events from each file format (issue 14, fault 4, case B20).

Generates N synthetic 24 h events (216,000 samples each at 400 ms), writes them as HDF5, NPZ,
CSV and Parquet, then runs one operation on each file in a FRESH subprocess and reports its peak
resident size (``VmHWM``; ``ru_maxrss`` of a child would include the parent's) as a ratio to the
bytes of the samples (time + values as float64: 16 bytes per sample for one channel):

* above the subprocess's import baseline (the interpreter with numpy, pyarrow, h5py and
  qlstm.data imported, measured just before the operation: the baseline of case B20);
* above its warm-up baseline: the same operation on a tiny file of the same format first
  (6 events x 3,000 samples), so code pages and allocator pools touched on first use are not
  counted as data;
* with two or more ``--events`` values, per added sample: the growth of the peak between the
  smallest and the largest size over the growth of the samples' bytes (fixed costs cancel).

Operations (``--path``): ``load`` (:func:`qlstm.data.load_events`), ``inspect`` (``qlstm data
inspect FILE``: load + summary, the command of B20), ``train`` (the training data step,
:func:`qlstm.train.dataset.prepare` with the default train config: load, split, normalise and
window; its windows are capped by ``data.max_*_windows``). ``--reference-src DIR`` measures a
second source tree in the same run (``git archive <rev> qlstm | tar -x -C DIR``: its
``qlstm`` package comes first on the child's path), for before/after tables under one load.

    nice -n 10 .venv/bin/python benchmarks/bench_loaders.py [--events 5,20] [--channels U_res]
        [--path load|inspect|train] [--reference-src DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import contextlib, io, json, sys, time
import numpy, pyarrow, pyarrow.csv, pyarrow.parquet, h5py
import qlstm.data, qlstm.data.formats, qlstm.data.textfile, qlstm.data.timecol
def hwm():  # peak resident size of this process, bytes
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
what, path, tiny = sys.argv[1:4]
def run(p):
    if what == "load":
        return qlstm.data.load_events(p).n_samples
    if what == "inspect":
        from qlstm.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["data", "inspect", p]) == 0
        return None
    from qlstm.train.config import TrainConfig
    from qlstm.train.dataset import prepare
    return sum(len(e) for es in prepare(TrainConfig(), p).events.values() for e in es.events)
base = hwm()
run(tiny)
warm = hwm()
t0 = time.perf_counter()
samples = run(path)
t1 = time.perf_counter()
print(json.dumps({"base": base, "warm": warm, "peak": hwm(), "seconds": t1 - t0, "samples": samples,
                  "src": qlstm.data.__file__}))
"""


def _child(what: str, path: Path, tiny: Path, src: str | None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(path), str(tiny)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tempfile.gettempdir(),  # not the source tree: the child imports the tree asked for
    )
    if out.returncode != 0:
        raise SystemExit(f"{path.name} ({src or 'this tree'}) failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--events",
        default="20",
        help="comma-separated numbers of 24 h events (default 20, as in B20; two or more give the "
        "peak per added sample)",
    )
    p.add_argument("--hours", type=float, default=24.0, help="length of each event in hours")
    p.add_argument("--channels", default="U_res", help="comma-separated channels (U_res or U_res,I)")
    p.add_argument("--formats", default="h5,npz,csv,parquet", help="comma-separated extensions")
    p.add_argument(
        "--path",
        choices=("load", "inspect", "train"),
        default="load",
        help="operation measured: load_events, `qlstm data inspect`, or the training data step",
    )
    p.add_argument(
        "--reference-src",
        metavar="DIR",
        help="a second source tree holding a qlstm/ package, measured in the same run",
    )
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    import numpy as np
    import pyarrow as pa

    from qlstm.data import SyntheticConfig, generate, save_events

    sizes = sorted({int(n) for n in args.events.split(",")})
    formats = args.formats.split(",")
    channels = tuple(args.channels.split(","))
    trees = [("this tree", None)] + ([("reference", args.reference_src)] if args.reference_src else [])
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{now}; measured peak RSS (VmHWM) of `{args.path}` in a fresh subprocess per file; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (memory does not depend on load); "
        f"numpy {np.__version__}, pyarrow {pa.__version__} (pool {pa.default_memory_pool().backend_name})"
    )
    if args.reference_src:
        print(f"reference: {args.reference_src}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="qlstm-bench-loaders-") as tmp:
        tiny_es = generate(SyntheticConfig.short(channels=channels))
        tiny = {ext: save_events(tiny_es, Path(tmp) / f"tiny.{ext}") for ext in formats}
        for n_events in sizes:
            cfg = SyntheticConfig(
                n_events=n_events, duration_s=args.hours * 3600, seed=args.seed, channels=channels
            )
            es = generate(cfg)
            n = es.n_samples
            data_bytes = n * 8 * (1 + len(channels))
            paths = [save_events(es, Path(tmp) / f"events{n_events}.{ext}") for ext in formats]
            del es
            print(
                f"\n{n_events} events x {cfg.n_samples} samples = {n:,} samples, {len(channels)} channel(s); "
                f"samples as float64 time + values: {data_bytes / 1e6:.1f} MB"
            )
            print(
                f"{'format':8} {'tree':10} {'file MB':>8} {'s':>6} {'imports MB':>10} {'peak MB':>8} "
                f"{'above imports':>14} {'x samples':>9} {'above warm-up':>14} {'x samples':>9}"
            )
            for path in paths:
                for label, src in trees:
                    r = _child(args.path, path, tiny[path.suffix[1:]], src)
                    assert r["samples"] in (None, n), (r["samples"], n)
                    assert src is None or r["src"].startswith(str(Path(src).resolve())), r["src"]
                    above, above_warm = r["peak"] - r["base"], r["peak"] - r["warm"]
                    rows.append((path.suffix, label, n_events, data_bytes, above))
                    print(
                        f"{path.suffix:8} {label:10} {path.stat().st_size / 1e6:8.1f} {r['seconds']:6.2f} "
                        f"{r['base'] / 1e6:10.0f} {r['peak'] / 1e6:8.0f} {above / 1e6:11.0f} MB "
                        f"{above / data_bytes:9.2f} {above_warm / 1e6:11.0f} MB {above_warm / data_bytes:9.2f}"
                    )
                path.unlink()  # keep at most one size's files on disk
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        print(f"\nper added sample ({lo} -> {hi} events): growth of the peak / growth of the samples' bytes")
        for ext in formats:
            for label, _ in trees:
                a = next(r for r in rows if r[:3] == ("." + ext, label, lo))
                b = next(r for r in rows if r[:3] == ("." + ext, label, hi))
                print(f".{ext:7} {label:10} {(b[4] - a[4]) / (b[3] - a[3]):6.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
