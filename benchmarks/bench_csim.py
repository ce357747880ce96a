"""Compile time and throughput of the hls4ml C simulation (the paper's network by default).

Builds a random 16-bit quantized LSTM(128) -> Dense(1) with L = 16 (the paper's best network),
compiles its C simulation in a fresh cache folder, and prints:

* the compile time (hls4ml project written + g++; wall time, and g++'s CPU time, which does
  not depend on how busy a shared machine is), and the time of a second ``build_csim``
  (a cache hit: no compile) - their ratio shows what the cache saves;
* the C simulation's throughput in windows/s through ``CSim.predict``, and through hls4ml's own
  ``ModelGraph.predict`` on the same compiled library in the same run (the reference); the
  ratio is machine-independent.

    .venv/bin/python benchmarks/bench_csim.py [--units 128] [--history 16] [--bits 16] [--windows 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=128, help="LSTM cells (paper: 128)")
    p.add_argument("--history", type=int, default=16, help="history L (paper's best: 16)")
    p.add_argument("--horizon", type=int, default=1, help="horizon k")
    p.add_argument("--bits", type=int, default=16, help="fixed-point width of the test model")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    p.add_argument("--windows", type=int, default=200, help="windows to simulate")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="qlstm-bench-csim-") as cache:
        os.environ["QLSTM_CACHE"] = cache
        from qlstm.hls.csim import build_csim
        from qlstm.hls.graph import build_model_graph
        from qlstm.hls_config import HlsConfig
        from qlstm.testing import random_model, random_windows

        desc, w = random_model(
            (args.cell,), (args.units,), history=args.history, horizon=args.horizon, bits=args.bits
        )
        x = random_windows(desc, args.windows)
        print(
            f"model: {args.cell.upper()}({args.units}) -> Dense({args.horizon}), L={args.history}, {args.bits} bits"
        )

        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        sim = build_csim(desc, w)
        t_compile = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_compile = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        t0 = time.perf_counter()
        sim = build_csim(desc, w)
        t_hit = time.perf_counter() - t0
        print(f"compile (write project + g++): {t_compile:8.1f} s wall, {cpu_compile:.1f} s CPU in g++")
        print(
            f"cached build_csim:             {t_hit:8.2f} s   (compile / cached = {t_compile / t_hit:,.0f}x)"
        )

        t0, c0 = time.perf_counter(), time.process_time()
        y = sim.predict(x)
        t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0

        # Reference: hls4ml's ModelGraph.predict on the same compiled library.
        graph = build_model_graph(
            desc,
            w,
            HlsConfig(),
            output_dir=str(sim.project_dir),
            part="xc7z020clg400-1",
            clock_ns=5.0,
            trace=True,
        )
        import ctypes

        graph._top_function_lib = ctypes.cdll.LoadLibrary(str(sim.lib_path))
        xr = x.reshape(len(x), -1).copy()
        t0, c0 = time.perf_counter(), time.process_time()
        y_ref = graph.predict(xr)
        t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
        same = bool((y_ref.reshape(y.shape) == y).all())
        n = len(x)
        print(
            f"CSim.predict:              {n / t_ours:10,.0f} windows/s wall, {n / c_ours:10,.0f} per CPU-second"
        )
        print(
            f"hls4ml ModelGraph.predict: {n / t_ref:10,.0f} windows/s wall, {n / c_ref:10,.0f} per CPU-second"
        )
        print(f"ratio CSim / hls4ml (CPU): {c_ref / c_ours:.2f}x; identical outputs: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
