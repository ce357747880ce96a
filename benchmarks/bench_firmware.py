"""Throughput of the firmware simulator against the compiled C simulation, bit-exact on the same windows.

Part 1 builds a random 16-bit quantized LSTM(128) -> Dense(1) with L = 16, 1 channel (the
paper's best network) with each accumulator kind - ``exact``: wide enough to hold every product
(as ``qlstm quantize`` chooses), ``narrow``: hls4ml's default ``ap_fixed<16,6>`` everywhere, whose
products the C++ rounds one by one - compiles its C simulation (in a fresh cache, or in
``$QLSTM_CACHE`` if set) and runs the same windows through

* ``qlstm.firmware_sim`` (one thread: ``--threads``; BLAS limited to the same),
* the compiled hls4ml C simulation (``CSim.predict``, one window per call, one process),
* the float model in PyTorch (float32 and the float64 ``float`` backend; ``--threads`` threads),

firmware_sim, the C simulation and PyTorch float32 timed in ``--repeats`` interleaved rounds (a
change of load hits all three; every windows/s is the median of the rounds, every ratio the median
of the rounds' ratios; float64 once),

and prints windows/s of each, the ratios (targets: >= 20x the C simulation with the narrow
accumulator, >= PyTorch float32 with the exact one; verdicts only for the target configuration,
LSTM(128), L = 16, 16 bits, one thread), the peak memory of the simulation
(tracemalloc, NumPy buffers) against the chunk's int64 working set, and whether the two are
bit-exact (integer mantissas equal on every window).

Part 2 (``--predict-windows``) times whole ``qlstm predict`` processes on three LSTM(16), L = 16,
k = 4 models (``predict_models``): the compact model (8 bits, exact accumulator), the types
``qlstm quantize`` chose for the README flow's PTQ-8 model, and hls4ml's default ``ap_fixed<16,6>``
everywhere, with ``--backend firmware`` and ``--backend csim`` (compiled
beforehand: the cache is warm), with ``qlstm --threads 1`` and ``2``, ``--repeats`` pairs each,
interleaved (firmware, csim, firmware, csim, ...) so that a change of load hits both; prints
every time, the ratio of each pair and their median, and checks the outputs are identical
(target, per model: firmware >= 20x csim, the median at one thread). ``--step`` times the compiled LSTM step
alone (ns per cell, on the arguments of a real step of part 1's exact model). ``--scan`` adds firmware_sim's
windows/s over cells, accumulator kind, chunk size and 1 or 2 threads (a markdown table).
Each model's part prints how the recurrent product ``U h`` was formed: int16 products summed
modulo 2**32 with AVX-512 VNNI where that is exact and the CPU has it, else float32 BLAS / int64;
``--int16-products off`` measures the second on a CPU that has VNNI. Ratios measured in one run on one machine are the figures to compare; absolute
rates depend on the machine and its load.

    nice .venv/bin/python benchmarks/bench_firmware.py [--windows 20000] [--units 128] [--scan]
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


def working_set_bytes(fw, chunk: int) -> int:
    """int64 arrays one chunk needs across all steps: input mantissas (chunk, L, C), input
    products (chunk, L, G*H) and the h sequence (chunk, L, H) of the widest layer."""
    a = fw.desc.architecture
    g = max((4 if lay.cell == "lstm" else 3) * lay.units + lay.units for lay in a.layers)
    return chunk * a.history * (a.input_channels + g) * 8


def bench_model(args, accum: str, np) -> dict:
    import tracemalloc

    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.fixedpoint import FixedType
    from qlstm.hls.csim import build_csim
    from qlstm.testing import random_model, uniform_quantization

    n = args.windows
    n_cs = min(n, args.csim_windows or n)
    integer = 6
    acc = None if accum == "exact" else FixedType(args.bits, integer)
    q = uniform_quantization(1, width=args.bits, integer=integer, accum=acc)
    desc, w = random_model(
        (args.cell,), (args.units,), history=args.history, channels=1, horizon=1, quantization=q,
        init="uniform", scale=0.25, seed=0,
    )  # fmt: skip
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(n, args.history, 1))
    lq = q.layers[0]
    print(
        f"\n[{accum} accumulator] {args.cell.upper()}({args.units}) -> Dense(1), L={args.history}, C=1; "
        f"data/weights/state {lq.weight.ap()}, accum {lq.accum.ap()}, table {lq.table.size} x {lq.table.type.ap()}"
    )
    print(f"windows: {n} (C simulation: {n_cs}); threads: {args.threads}; chunk: {args.chunk}")
    fw = Firmware(desc, w)
    fw.compiled = True  # these runs are large: the automatic choice is the compiled step too
    fw.int16_products = None if args.int16_products == "auto" else False
    t0 = time.perf_counter()
    fw.predict(x[:64], chunk=args.chunk, threads=args.threads)  # warm-up (tables, BLAS, numba compile)
    kind = "float32 BLAS while exact, else int64"
    if fw._int16_weights(fw.layers[0]) is not None:
        kind = "int16 products summed modulo 2**32 (AVX-512 VNNI)"
    print(f"recurrent product U h: {kind} (--int16-products {args.int16_products})")
    print(
        f"first call (numba import and compile, or load from $NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR')}): "
        f"{time.perf_counter() - t0:.2f} s"
    )
    y_fw = fw.run(x, chunk=args.chunk, threads=args.threads).y_m
    tracemalloc.start()
    fw.run(x, chunk=args.chunk, threads=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ws = working_set_bytes(fw, min(args.chunk, n))
    print(
        f"firmware_sim peak NumPy memory (measured, tracemalloc, one thread): {peak / 2**20:,.1f} MiB "
        f"= {peak / ws:.2f}x the chunk's int64 working set of {ws / 2**20:,.1f} MiB"
    )
    t0 = time.perf_counter()
    cs = build_csim(desc, w)
    print(f"C simulation compiled (or loaded) in {time.perf_counter() - t0:.1f} s")
    y_cs = cs.predict(x[:n_cs])  # untimed: the outputs to compare, and the warm-up
    mism = int(np.sum(fw.result_t.to_int(y_cs) != y_fw[:n_cs]))
    exact = mism == 0 and np.array_equal(fw.result_t.to_float(fw.result_t.to_int(y_cs)), y_cs)
    print(f"bit-exact on {n_cs} windows: {'yes' if exact else f'NO, {mism} mismatching outputs'}")

    import torch

    from qlstm.train.model import from_weights, predict_array

    torch.set_num_threads(args.threads)
    model = from_weights(desc.architecture, w).float().eval()
    xt = torch.from_numpy(x.astype(np.float32))

    def torch_f32() -> float:
        with torch.no_grad():
            t0 = time.perf_counter()
            for s in range(0, n, 4096):
                model(xt[s : s + 4096])
            return time.perf_counter() - t0

    def fw_run() -> float:
        t0 = time.perf_counter()
        fw.run(x, chunk=args.chunk, threads=args.threads)
        return time.perf_counter() - t0

    def cs_run() -> float:
        t0 = time.perf_counter()
        cs.predict(x[:n_cs])
        return time.perf_counter() - t0

    torch_f32()  # warm-up
    # firmware_sim, PyTorch float32 and the C simulation interleaved, --repeats rounds: a change
    # of load hits all three; every ratio below is the median of the rounds' ratios
    runs = [(fw_run(), torch_f32(), cs_run()) for _ in range(args.repeats)]
    fmt = ", ".join
    t_fw = float(np.median([tw for tw, _, _ in runs]))
    t_f32 = float(np.median([tf for _, tf, _ in runs]))
    t_cs = float(np.median([tc for _, _, tc in runs]))
    f32_ratios = [tf / tw for tw, tf, _ in runs]
    cs_ratios = [(n / tw) / (n_cs / tc) for tw, _, tc in runs]
    ratio = float(np.median(cs_ratios))
    print(
        f"firmware_sim:       {n / t_fw:12,.0f} windows/s measured, median of {args.repeats} "
        f"({fmt(f'{n / tw:,.0f}' for tw, _, _ in runs)} windows/s; {args.threads} thread(s))"
    )
    print(
        f"C simulation:       {n_cs / t_cs:12,.0f} windows/s measured, median of {args.repeats} "
        f"({fmt(f'{n_cs / tc:,.0f}' for _, _, tc in runs)} windows/s; one process)"
    )
    print(
        f"ratio firmware_sim / C simulation (interleaved): {fmt(f'{r:.1f}' for r in cs_ratios)}x, median {ratio:.1f}x"
    )
    print(
        f"PyTorch float32:    {n / t_f32:12,.0f} windows/s measured, median of {args.repeats}; interleaved "
        f"with firmware_sim: firmware_sim is {fmt(f'{r:.2f}' for r in f32_ratios)}x its speed, "
        f"median {float(np.median(f32_ratios)):.2f}x"
    )
    t0 = time.perf_counter()
    predict_array(model, x)
    t_f64 = time.perf_counter() - t0
    print(
        f"PyTorch float64:    {n / t_f64:12,.0f} windows/s measured, one run "
        f"(firmware_sim's median is {t_f64 / t_fw:.2f}x its speed)"
    )
    return {
        "fw": n / t_fw, "csim": n_cs / t_cs, "ratio": ratio, "exact": exact,
        "f32": float(np.median(f32_ratios)), "f64": t_f64 / t_fw, "peak": peak / ws,
    }  # fmt: skip


def bench_step(args, np) -> None:
    """The compiled LSTM step alone: ns per cell on the paper model with exact accumulators.

    Runs ``--chunk`` windows of the model of part 1 (``exact``) through firmware_sim, keeps the
    arguments of the compiled step at step L/2 (real gate products, states and tables), then times
    that one call ``--step-repeats`` times x 20 (state arrays copied back before each call, not
    timed) and prints the best of each 20 in ns per cell (window x unit).
    """
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.testing import random_model, uniform_quantization

    q = uniform_quantization(1, width=args.bits, integer=6)
    desc, w = random_model(
        ("lstm",), (args.units,), history=args.history, channels=1, horizon=1, quantization=q,
        init="uniform", scale=0.25, seed=0,
    )  # fmt: skip
    fw = Firmware(desc, w)
    fw.compiled = True
    fw.int16_products = None if args.int16_products == "auto" else False
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(args.chunk, args.history, 1))
    kept: dict = {}
    make = fw._compiled_step

    def keeping(lay, common):
        step = make(lay, common)

        def call(*a):
            if a[4] == args.history // 2 and "args" not in kept:
                kept["args"] = [v.copy() if isinstance(v, np.ndarray) else v for v in a]
            return step(*a)

        kept["step"] = step
        return call

    fw._compiled_step = keeping
    fw.run(x, chunk=args.chunk, threads=1)
    a, step = kept["args"], kept["step"]
    cells = args.chunk * args.units
    best = []
    for _ in range(args.step_repeats):
        ts = []
        for _ in range(20):
            b = list(a)
            b[7], b[8], b[10] = a[7].copy(), a[8].copy(), a[10].copy()  # c, h, hf: updated in place
            t0 = time.perf_counter()
            step(*b)
            ts.append(time.perf_counter() - t0)
        best.append(min(ts) / cells * 1e9)
    print(
        f"\n[step] compiled LSTM step alone ({q.layers[0].accum.ap()}, {args.chunk} windows x {args.units} "
        f"cells, step {args.history // 2}), measured: {', '.join(f'{v:.2f}' for v in best)} ns per cell "
        f"(best of 20 calls each); min {min(best):.2f}; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )


def scan(args, np) -> None:
    """firmware_sim's windows/s over cells x accumulator kind x chunk x threads, in one run.

    The paper's network shape (LSTM(cells) -> Dense(1), L = 16, 16 bits, 1 channel) at each of
    ``--scan-cells``, both accumulator kinds, the compiled step (as for every large run), on
    ``--scan-windows`` windows; at each (cells, accumulator, chunk) one and two threads are
    timed back to back, ``--scan-repeats`` times, and the best of each is printed (the machine
    may be shared: the load average is printed before and after).
    """
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.fixedpoint import FixedType
    from qlstm.testing import random_model, uniform_quantization

    cells = [int(v) for v in args.scan_cells.split(",")]
    chunks = [int(v) for v in args.scan_chunks.split(",")]
    n = args.scan_windows
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(n, args.history, 1))
    print(
        f"\n[scan] firmware_sim (compiled step), {args.cell.upper()}(cells) -> Dense(1), L={args.history}, "
        f"{args.bits} bits, {n} windows; windows/s measured, best of {args.scan_repeats} per entry, 1 and 2 threads back to back; "
        f"load average at start {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print("| cells | accumulator | chunk | 1 thread (win/s) | 2 threads (win/s) | 2 / 1 |")
    print("|---|---|---|---|---|---|")
    for units in cells:
        for accum in ("exact", "narrow"):
            acc = None if accum == "exact" else FixedType(args.bits, 6)
            q = uniform_quantization(1, width=args.bits, integer=6, accum=acc)
            desc, w = random_model(
                (args.cell,), (units,), history=args.history, channels=1, horizon=1, quantization=q,
                init="uniform", scale=0.25, seed=0,
            )  # fmt: skip
            fw = Firmware(desc, w)
            fw.compiled = True
            fw.int16_products = None if args.int16_products == "auto" else False
            fw.run(x[:64], threads=1)  # numba: compile or load from the cache
            label = f"{q.layers[0].accum.ap()} ({accum})"
            for chunk in chunks:
                best = {1: float("inf"), 2: float("inf")}
                for _ in range(args.scan_repeats):
                    for th in (1, 2):
                        t0 = time.perf_counter()
                        fw.run(x, chunk=chunk, threads=th)
                        best[th] = min(best[th], time.perf_counter() - t0)
                print(
                    f"| {units} | {label} | {chunk} | {n / best[1]:,.0f} | {n / best[2]:,.0f} | "
                    f"{best[1] / best[2]:.2f}x |"
                )
    print(f"load average at the end of the scan: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def predict_models():
    """The whole-process part's models: name -> (description of the types, quantization). The
    compact model (8 bits, an accumulator holding every product: qlstm.testing's uniform
    default), the types ``qlstm quantize`` chose for the README flow's PTQ-8 LSTM(16)
    (:data:`qlstm.testing.README_PTQ8_TYPES`), and hls4ml's default ``ap_fixed<16,6>`` everywhere
    (accumulator included: every product rounded; hls4ml's default table ``ap_fixed<18,8>``)."""
    from qlstm.fixedpoint import FixedType
    from qlstm.testing import readme_ptq8_quantization, uniform_quantization

    return {
        "compact": ("8-bit ap_fixed<8,3>, exact accumulator", uniform_quantization(1, width=8, integer=3)),
        "readme-ptq8": ("README flow PTQ-8 types, accum ap_fixed<21,5>", readme_ptq8_quantization(1)),
        "hls4ml-default": (
            "hls4ml default ap_fixed<16,6> everywhere",
            uniform_quantization(1, width=16, integer=6, accum=FixedType(16, 6)),
        ),
    }


def bench_predict(args, np, tmp: Path) -> tuple[bool, dict[str, float]]:
    """Whole `qlstm predict` processes, firmware vs csim, on each of :func:`predict_models`'
    LSTM(16), L = 16, k = 4 models; returns (outputs identical everywhere, model -> median ratio
    at --threads 1)."""
    from qlstm.description import save
    from qlstm.hls.csim import build_csim
    from qlstm.testing import random_model

    xf = tmp / "x.npy"
    np.save(xf, np.random.default_rng(3).uniform(0.0, 1.0, size=(args.predict_windows, 16, 1)))
    env = dict(os.environ)
    # PYTHONDONTWRITEBYTECODE: byte code cached as after `pip install` (it compiles the .pyc files)
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "QLSTM_THREADS",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(var, None)
    same, ratios = True, {}
    for name, (what, q) in predict_models().items():
        desc, w = random_model(
            ("lstm",), (16,), history=16, horizon=4, quantization=q, init="uniform", scale=0.5, seed=2
        )
        run = tmp / f"{name}_qrun"
        save(run, desc, w)
        build_csim(desc, w)  # compile now: the timed processes load it from the cache
        print(
            f"\n[whole process] qlstm predict on {args.predict_windows} windows of the {name} model "
            f"(LSTM(16), L=16, k=4, {what}); C simulation already compiled (cache warm)"
        )
        for backend in ("firmware", "csim"):  # once untimed: byte code and numba caches written
            cmd = [sys.executable, "-m", "qlstm.cli", "predict", str(run), "--backend", backend]
            subprocess.run(
                cmd + ["--inputs", str(xf), "--out", str(tmp / "warm.npy")],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        for th in (1, 2):
            t: dict[str, list[float]] = {"firmware": [], "csim": []}
            cpu: dict[str, list[float]] = {"firmware": [], "csim": []}
            ys = {}
            ident = True
            # interleaved (firmware, csim, firmware, csim, ...): a change of load hits both backends
            for _ in range(args.repeats):
                for backend in ("firmware", "csim"):
                    out = tmp / f"{backend}{th}.npy"
                    cmd = [sys.executable, "-m", "qlstm.cli", "--threads", str(th), "predict", str(run)]
                    cmd += ["--backend", backend, "--inputs", str(xf), "--out", str(out)]
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
                    t[backend].append(time.perf_counter() - t0)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu[backend].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
                    ys[backend] = np.load(out)
                ident &= bool(np.array_equal(ys["firmware"], ys["csim"]))
            same &= ident
            pairs = [c / f for f, c in zip(t["firmware"], t["csim"], strict=True)]
            ratio = float(np.median(pairs))
            cpu_pairs = [c / f for f, c in zip(cpu["firmware"], cpu["csim"], strict=True)]
            ratios.setdefault(name, ratio)
            fmt = ", ".join
            print(
                f"--threads {th}: firmware {fmt(f'{v:.2f}' for v in t['firmware'])} s; csim "
                f"{fmt(f'{v:.2f}' for v in t['csim'])} s (whole processes, measured, interleaved); "
                f"ratio per pair {fmt(f'{v:.1f}' for v in pairs)}x, median {ratio:.1f}x; "
                f"outputs identical: {'yes' if ident else 'NO'}"
            )
            print(
                f"    CPU time (user + system, all processes): firmware {fmt(f'{v:.2f}' for v in cpu['firmware'])} s; "
                f"csim {fmt(f'{v:.2f}' for v in cpu['csim'])} s; ratio per pair {fmt(f'{v:.1f}' for v in cpu_pairs)}x, "
                f"median {float(np.median(cpu_pairs)):.1f}x ({CPU_CAPTION[th]})"
            )
    return same, ratios


#: What the CPU-time ratio of whole processes means, per --threads.
CPU_CAPTION = {
    1: "what one idle core would show for one-thread processes",
    2: "CPU time summed over all threads and processes: the work done, not the wall time",
}
#: The issue's paper model (LSTM(128), L = 16, 16 bits, one thread): the targets apply to it only.
TARGET = {"cell": "lstm", "units": 128, "history": 16, "bits": 16, "threads": 1}


def _int_at_least(lo: int, text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < lo:
        raise argparse.ArgumentTypeError(f"{n} must be >= {lo}")
    return n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (one clear line otherwise)."""
    return _int_at_least(1, text)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (0: skip the part)."""
    return _int_at_least(0, text)


def is_target(args) -> bool:
    """True when part 1 runs the issue's target configuration (:data:`TARGET`)."""
    return all(getattr(args, k) == v for k, v in TARGET.items())


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring verbatim as the description, and every option's default."""


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (its own function so tests can check it without timing)."""
    p = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--windows", type=positive_int, default=20000, help="windows to simulate")
    p.add_argument(
        "--csim-windows",
        type=positive_int,
        default=None,
        help="windows through the C simulation (None: all of --windows)",
    )
    p.add_argument("--units", type=positive_int, default=128, help="LSTM/GRU cells (paper: 128)")
    p.add_argument("--history", type=positive_int, default=16, help="history L (paper's best: 16)")
    p.add_argument(
        "--bits", type=positive_int, default=16, help="fixed-point width of data, weights and state"
    )
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru"), help="recurrent cell of part 1's model")
    p.add_argument(
        "--accum",
        default="both",
        choices=("both", "exact", "narrow", "none"),
        help="accumulator type of part 1: exact (wide enough for every product), narrow (hls4ml's default "
        "ap_fixed<16,6>), both in one run, or none: only the whole-process part",
    )
    p.add_argument(
        "--predict-windows",
        type=non_negative_int,
        default=20000,
        help="windows of each model of the whole-process `qlstm predict` comparison (0: skip)",
    )
    p.add_argument(
        "--scan",
        action="store_true",
        help="also measure firmware_sim's windows/s over cells x accumulator kind x chunk x threads "
        "1 and 2 (no C simulation; `--accum none --predict-windows 0 --scan`: only that)",
    )
    p.add_argument(
        "--step",
        action="store_true",
        help="also time the compiled LSTM step alone (ns per cell, exact accumulators, --chunk windows; "
        "`--accum none --predict-windows 0 --step`: only that)",
    )
    p.add_argument(
        "--step-repeats",
        type=positive_int,
        default=5,
        help="--step: timed rounds of 20 calls, each round's best printed",
    )
    p.add_argument("--scan-cells", default="32,64,128", help="--scan: cells, comma-separated")
    p.add_argument(
        "--scan-chunks", default="256,1024,4096,16384", help="--scan: chunk sizes (windows), comma-separated"
    )
    p.add_argument("--scan-windows", type=positive_int, default=16384, help="--scan: windows per run")
    p.add_argument(
        "--scan-repeats", type=positive_int, default=2, help="--scan: timed runs per entry, the best kept"
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        help="timed rounds, interleaved so that a change of load hits every side: part 1 times "
        "firmware_sim, PyTorch float32 and the C simulation once per round; the whole-process part "
        "times a (firmware, csim) pair per round and thread count; ratios are the medians of the rounds",
    )
    p.add_argument(
        "--int16-products",
        default="auto",
        choices=("auto", "off"),
        help="U h as int16 products with AVX-512 VNNI where exact and available (auto, the default), "
        "or off: the float32 BLAS / int64 product (the path of CPUs without VNNI)",
    )
    p.add_argument("--chunk", type=positive_int, default=512, help="windows simulated together")
    p.add_argument(
        "--threads", type=positive_int, default=1, help="firmware_sim / BLAS / torch threads in part 1"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads BLAS
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import numpy as np

    print(f"load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="qlstm-bench-fw-") as tmp:
        # a fresh cache unless QLSTM_CACHE is set (then a previous run's compile is reused)
        os.environ.setdefault("QLSTM_CACHE", str(Path(tmp) / "cache"))
        res = {}
        kinds = {"both": ("exact", "narrow"), "none": ()}.get(args.accum, (args.accum,))
        os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tmp) / "numba"))  # cold: compiled in this run
        for accum in kinds:
            res[accum] = bench_model(args, accum, np)
            ok &= res[accum]["exact"]
        if args.step:
            bench_step(args, np)
        if args.scan:
            scan(args, np)
        whole = None
        if args.predict_windows:
            same, whole = bench_predict(args, np, Path(tmp))
            ok &= same
    print("\nsummary (ratios measured in this run):")
    for accum, r in res.items():
        print(
            f"  {accum:<6}: firmware_sim {r['ratio']:.1f}x the C simulation, {r['f32']:.2f}x PyTorch float32, "
            f"{r['f64']:.2f}x float64; peak memory {r['peak']:.2f}x the chunk's working set; "
            f"bit-exact {'yes' if r['exact'] else 'NO'}"
        )
    print("targets (issue 15; one thread; ratios measured in this run):")
    if res and not is_target(args):
        print(
            f"  part 1: not the target configuration ({args.cell.upper()}({args.units}), L={args.history}, "
            f"{args.bits} bits, {args.threads} thread(s); the target is LSTM(128), L=16, 16 bits, 1 thread): no verdict"
        )
        res_targets = {}
    else:
        res_targets = res
    if "narrow" in res_targets:
        r = res["narrow"]["ratio"]
        print(
            f"  hls4ml default types, firmware_sim >= 20x C simulation (medians of {args.repeats} interleaved rounds): {r:.1f}x  {'met' if r >= 20 else 'MISSED'}"
        )
    if "exact" in res_targets:
        r = res["exact"]["f32"]
        print(
            f"  exact accumulators, firmware_sim >= PyTorch float32: {r:.2f}x  {'met' if r >= 1 else 'MISSED'}"
        )
    for name, ratio in (whole or {}).items():
        print(
            f"  qlstm predict --backend firmware >= 20x csim, {name} model (whole processes, --threads 1, "
            f"median of {args.repeats} pairs, measured): {ratio:.1f}x  {'met' if ratio >= 20 else 'MISSED'}"
        )
    for accum, r in res_targets.items():
        print(
            f"  peak memory <= 2x the chunk's int64 working set ({accum}): {r['peak']:.2f}x  {'met' if r['peak'] <= 2 else 'MISSED'}"
        )
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
