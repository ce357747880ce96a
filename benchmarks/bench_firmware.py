"""Throughput of the firmware simulator against the compiled C simulation, bit-exact on the same windows.

Builds a random 16-bit quantised LSTM(128) -> Dense(1) with L = 16, 1 channel (the paper's best
network; ``--accum exact``: an accumulator wide enough to hold every product, ``narrow``:
hls4ml-style ``ap_fixed<16,6>`` accumulator whose products are rounded one by one), compiles its
C simulation (in a fresh cache, or in ``$QLSTM_CACHE`` if set), runs the same windows through

* ``qlstm.firmware_sim`` (vectorised NumPy; BLAS limited to ``--threads``),
* the compiled hls4ml C simulation (``CSim.predict``, one window per call, one core),
* the float model in PyTorch (float32 and the float64 ``float`` backend; ``--threads`` threads),

and prints windows/s of each, the ratio firmware_sim / C simulation (target >= 20x), the peak
memory of the simulation (tracemalloc, NumPy buffers) and whether the two are bit-exact (integer
mantissas equal on every window). The ratio, measured in one run on one machine, is the figure
to compare; absolute rates depend on the machine and its load.

    .venv/bin/python benchmarks/bench_firmware.py [--windows 20000] [--units 128] [--bits 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=20000, help="windows to simulate (default 20000)")
    p.add_argument(
        "--csim-windows", type=int, default=None, help="windows through the C simulation (default: all)"
    )
    p.add_argument("--units", type=int, default=128, help="LSTM cells (paper: 128)")
    p.add_argument("--history", type=int, default=16, help="history L (paper's best: 16)")
    p.add_argument("--bits", type=int, default=16, help="fixed-point width")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    p.add_argument(
        "--accum", default="exact", choices=("exact", "narrow"), help="accumulator type (see above)"
    )
    p.add_argument("--chunk", type=int, default=512, help="windows simulated together")
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (the C simulation uses one)")
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads BLAS

    import tracemalloc

    import numpy as np

    from qlstm.firmware_sim.examples import random_model, uniform_quantisation
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.fixedpoint import FixedType

    n = args.windows
    n_cs = min(n, args.csim_windows or n)
    integer = 6
    acc = None if args.accum == "exact" else FixedType(args.bits, integer)
    q = uniform_quantisation(1, width=args.bits, integer=integer, accum=acc)
    desc, w = random_model(
        (args.cell,), (args.units,), history=args.history, channels=1, horizon=1, quantisation=q,
        weight_range=0.25, seed=0,
    )  # fmt: skip
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(n, args.history, 1))
    lq = q.layers[0]
    print(
        f"model: {args.cell.upper()}({args.units}) -> Dense(1), L={args.history}, C=1; data/weights/state "
        f"{lq.weight.ap()}, accum {lq.accum.ap()}, table {lq.table.size} x {lq.table.type.ap()}"
    )
    print(f"windows: {n} (C simulation: {n_cs}); threads: {args.threads}; chunk: {args.chunk}")

    fw = Firmware(desc, w)
    fw.predict(x[:64], chunk=args.chunk)  # warm-up (tables, BLAS)
    t0 = time.perf_counter()
    y_fw = fw.run(x, chunk=args.chunk).y_m
    t_fw = time.perf_counter() - t0
    tracemalloc.start()
    fw.run(x, chunk=args.chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"firmware_sim:       {n / t_fw:12,.0f} windows/s  ({t_fw:.2f} s; peak NumPy memory {peak / 2**20:,.0f} MiB)"
    )

    with tempfile.TemporaryDirectory(prefix="qlstm-bench-fw-") as tmp:
        # a fresh cache unless QLSTM_CACHE is set (then a previous run's compile is reused)
        os.environ.setdefault("QLSTM_CACHE", tmp)
        from qlstm.hls.csim import build_csim

        t0 = time.perf_counter()
        cs = build_csim(desc, w)
        print(f"C simulation compiled in {time.perf_counter() - t0:.1f} s")
        cs.predict(x[:16])
        t0 = time.perf_counter()
        y_cs = cs.predict(x[:n_cs])
        t_cs = time.perf_counter() - t0
    print(f"C simulation:       {n_cs / t_cs:12,.0f} windows/s  ({t_cs:.2f} s)")
    mism = int(np.sum(fw.result_t.to_int(y_cs) != y_fw[:n_cs]))
    exact = mism == 0 and np.array_equal(fw.result_t.to_float(fw.result_t.to_int(y_cs)), y_cs)
    ratio = (n / t_fw) / (n_cs / t_cs)
    print(f"ratio firmware_sim / C simulation: {ratio:.1f}x (target >= 20x)")
    print(f"bit-exact on {n_cs} windows: {'yes' if exact else f'NO, {mism} mismatching outputs'}")

    import torch

    from qlstm.train.model import from_weights, predict_array

    torch.set_num_threads(args.threads)
    model = from_weights(desc.architecture, w).float().eval()
    xt = torch.from_numpy(x.astype(np.float32))
    with torch.no_grad():
        model(xt[:64])
        t0 = time.perf_counter()
        for s in range(0, n, 4096):
            model(xt[s : s + 4096])
        t_f32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    y_f64 = predict_array(model, x)
    t_f64 = time.perf_counter() - t0
    print(
        f"PyTorch float32:    {n / t_f32:12,.0f} windows/s  (firmware_sim is {t_f32 / t_fw:.2f}x its speed)"
    )
    print(
        f"PyTorch float64:    {n / t_f64:12,.0f} windows/s  (firmware_sim is {t_f64 / t_fw:.2f}x its speed)"
    )
    dev = float(np.max(np.abs(fw.result_t.to_float(y_fw)[:, 0] - y_f64[:, 0])))
    print(
        f"largest |firmware - float64| on these windows: {dev:.3g} ({dev / fw.result_t.lsb:.1f} LSB)",
        flush=True,
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
