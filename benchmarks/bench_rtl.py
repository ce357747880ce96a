"""RTL of the run-default and paper models: generated, simulated (Verilator), synthesised (Yosys).

For each model: da4ml trace and pipelining at ``--pipeline`` (wall time), the Verilator build and
the simulation of ``--windows`` random and saturating windows (cycles start->done, measured; every
output compared with firmware_sim by exact integer equality), and Yosys ``synth_xilinx`` for the
target's family (LUT/FF/CARRY/DSP/BRAM after synthesis, not placed; logic-depth proxy), with the
wall time of every step. The reference measured in the same run is firmware_sim on the same
windows: the RTL simulation's throughput is printed as a ratio to it.

Models: ``default`` is the run-default shape, LSTM(32), L = 16, k = 4, 8 bits (QAT types); give
``--run QRUN_DIR`` to use a trained quantized run (e.g. ``qlstm run --to quantize``), otherwise
random weights in +-0.3 with qlstm's type policy are used and the output says so. ``paper`` is
LSTM(128), L = 16, k = 8 at 8 bits (random weights, policy types).

    nice -n 10 .venv/bin/python benchmarks/bench_rtl.py --model default [--run QRUN_DIR] [--out DIR]
    # logic depth against the cutoff, two Yosys variants, no simulation:
    nice -n 10 .venv/bin/python benchmarks/bench_rtl.py --model default --cutoffs 5,6,8 --no-sim \\
        --yosys pyosys: --yosys pyosys,abc: --json depth.json

A large model in separate processes (the paper model: the trace takes minutes, the Verilator build
and Yosys each far longer): write the folder once, then simulate and synthesise it side by side:

    nice -n 19 .venv/bin/python benchmarks/bench_rtl.py --model paper --cutoffs 4 --no-sim --no-synth --out O
    nice -n 19 .venv/bin/python benchmarks/bench_rtl.py --folder O/paper/p4 --no-synth --verilator-opt=-O0 --json sim.json
    nice -n 19 .venv/bin/python benchmarks/bench_rtl.py --folder O/paper/p4 --no-sim --yosys pyosys,abc: --json synth.json

``--solver JSON`` passes da4ml constant-matrix solver options (adder graph only, never the values).
Every synthesis prints its critical path: the registers it starts and ends at and its cells.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _model(name: str, run: Path | None, bits: int, units: int | None = None):
    from rtl_models import policy_model

    from qlstm import description

    if run is not None:
        desc, w = description.load(run)
        return desc, w, f"trained run {run}"
    if name == "default":
        n = units or 32
        desc, w = policy_model(("lstm",), (n,), bits, history=16, horizon=4, method="qat", weight_range=0.3)
        return desc, w, f"LSTM({n}), random weights (+-0.3), qlstm's QAT type policy (NOT trained)"
    desc, w = policy_model(("lstm",), (128,), bits, history=16, horizon=8, method="qat", weight_range=0.15)
    return desc, w, "random weights (+-0.15), qlstm's QAT type policy (NOT trained)"


def path_text(logic_path: list[str]) -> str:
    """``from REG: LUT2 CARRY4x2 ... to REG``: the synthesised critical path, runs of a type merged."""
    if not logic_path:
        return "no combinational path"
    runs: list[list] = []
    for t in logic_path[1:-1]:
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    mid = " ".join(f"{t}x{n}" if n > 1 else t for t, n in runs)
    return f"{logic_path[0]}: {mid} {logic_path[-1]}"


def _variants(args) -> list[tuple[str | None, str | None, tuple[str, ...] | None]]:
    """(engine, mapper, synth_xilinx flags) to run: --yosys 'ENGINE[,MAPPER]:FLAGS' entries, or the default."""
    if not args.yosys:
        return [(None, None, None)]
    out = []
    for v in args.yosys:
        head, _, fl = v.partition(":")
        eng, _, mapper = head.partition(",")
        out.append((eng or None, mapper or None, tuple(fl.split())))
    return out


def _tag(engine: str | None, mapper: str | None, flags: tuple[str, ...] | None) -> str:
    """Folder name of one Yosys variant: ``synth_<tag>``."""
    return "_".join([engine or "auto", mapper or "", *(f.strip("-") for f in (flags or ()))]).strip("_")


def bench(name: str, args) -> list[dict]:
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.hls.targets import get_target
    from qlstm.rtl import api
    from qlstm.rtl import trace as rtl_trace
    from qlstm.rtl import verilog as rtl_verilog

    desc, w, what = _model(name, args.run if name == "default" else None, args.bits, args.units)
    t = get_target(args.target)
    clock = args.clock_ns or t.clock_ns
    solver = json.loads(args.solver) if args.solver else None
    t0 = time.perf_counter()
    tr = rtl_trace.trace(desc, w, solver)
    trace_s = round(time.perf_counter() - t0, 1)
    print(f"[{name}] {what}: traced in {trace_s} s (solver options {solver or 'default'}); step latency "
          f"{tr.step.latency} (da4ml units), da4ml cost {float(tr.step.cost):.0f} (estimate)", flush=True)  # fmt: skip
    rows = []
    base = Path(args.out) / name if args.out else Path(tempfile.mkdtemp(prefix=f"bench_rtl_{name}_"))
    for cut in args.cutoffs:
        row: dict = {"model": name, "weights": what, "target": t.name, "clock_ns": clock, "pipeline": cut,
                     "product_latency": args.product_latency, "solver": solver, "trace_s": trace_s}  # fmt: skip
        t0 = time.perf_counter()
        d = rtl_verilog.pipeline(tr, cut, args.product_latency)
        row["pipeline_s"] = round(time.perf_counter() - t0, 1)
        out = base / f"p{cut:g}"
        out.mkdir(parents=True, exist_ok=True)
        cap = {"lut": t.resources.lut, "ff": t.resources.ff, "dsp": t.resources.dsp,
               "bram_18k": t.resources.bram_18k}  # fmt: skip
        res = api.build(
            desc, w, part=t.part, clock_ns=clock, out=out, target=t.name, capacity=cap, traced_design=d
        )
        row.update(stages_per_step=d.stages, head_stages=d.head_stages, cycles_by_construction=d.cycles,
                   da4ml_lut_estimate=round(float(d.step_pipe.cost) + float(d.head_pipe.cost)),
                   register_bits=d.register_bits)  # fmt: skip
        print(f"[{name}] cutoff {cut:g}: {d.stages} stages/step, {d.head_stages} head, {d.cycles} cycles by "
              f"construction (pipelined in {row['pipeline_s']} s)", flush=True)  # fmt: skip
        if not args.no_sim:
            x = api.default_windows(desc, args.windows, seed=11)
            t0 = time.perf_counter()
            Firmware(desc, w).run(x)
            ref_s = time.perf_counter() - t0
            s = api.simulate(res, x, jobs=args.jobs, opt=args.verilator_opt)
            row.update({f"sim_{k}": v for k, v in s.items()})
            row["firmware_sim_s"] = round(ref_s, 3)
            row["rtl_sim_vs_firmware_sim_time"] = round(s["run_s"] / max(ref_s, 1e-9), 1)
            print(f"[{name}] Verilator build {s['build_s']} s; {s['windows']} windows: cycles {s['cycles_min']}-{s['cycles_max']} "
                  f"(measured), bit-exact {s['bit_exact']} ({s['mismatches']} windows differ); RTL sim {s['run_s']} s = "
                  f"{row['rtl_sim_vs_firmware_sim_time']} x firmware_sim's time", flush=True)  # fmt: skip
        if args.no_synth:
            rows.append(row)
            continue
        for engine, mapper, flags in _variants(args):
            r2 = dict(row)
            tag = _tag(engine, mapper, flags)
            y = api.synthesize(
                res, flags=flags, engine=engine, mapper=mapper, work=out / f"synth_{tag}", keep_netlist=True
            )
            r2.update({k: v for k, v in y.to_dict().items() if k != "cells"})
            summ = res.summary()
            r2["fits"] = summ.get("fits")
            r2["utilisation"] = summ.get("utilisation")
            print(f"[{name}] cutoff {cut:g}: Yosys {y.engine} {y.flags} {y.family} in {y.seconds} s wall, {y.cpu_seconds} s CPU (not placed): {y.lut:,} LUT, "
                  f"{y.ff:,} FF, {y.carry:,} CARRY, {y.dsp} DSP, {y.bram18} BRAM18; logic depth {y.logic_depth} cells; "
                  f"fits {t.name}: {r2['fits']}", flush=True)  # fmt: skip
            print(f"    critical path: {path_text(y.logic_path)}", flush=True)
            r2["folder"] = str(out)
            rows.append(r2)
            if args.json:  # partial results survive a stopped run
                args.json.write_text(json.dumps(args.rows_so_far + rows, indent=2, default=str) + "\n")
    return rows


def _cpu() -> tuple[float, float]:
    """(CPU seconds of this process, of its waited-for children: Verilator, g++, Yosys, ABC)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime, b.ru_utime + b.ru_stime


def on_folder(args) -> list[dict]:
    """``--folder``: simulate and/or synthesise a folder written before (``--no-sim --no-synth --out``),
    with wall and CPU time of every phase; the figures go to ``--json`` (``rtl.json`` is left as written)."""
    from qlstm import description
    from qlstm.firmware_sim.simulate import Firmware
    from qlstm.rtl import api
    from qlstm.rtl import sim as rtl_sim
    from qlstm.rtl import synth as rtl_synth

    folder = Path(args.folder)
    meta = json.loads((folder / api.RTL_JSON).read_text())
    if "alarm" in meta:
        raise SystemExit(f"{folder}: a design with the alarm; simulate it with qlstm detect --backend rtl")
    desc, w = description.load(folder / "model")
    base = {k: meta[k] for k in ("part", "target", "clock_ns", "pipeline", "product_latency", "stages_per_step",
                                 "head_stages", "cycles_by_construction", "da4ml_estimate")}  # fmt: skip
    base["folder"] = str(folder)
    rows = []
    if not args.no_sim:
        row = dict(base)
        x = api.default_windows(desc, args.windows, seed=11)
        t0, (s0, c0) = time.perf_counter(), _cpu()
        binary = rtl_sim.build(folder, jobs=args.jobs, opt=args.verilator_opt)
        t1, (s1, c1) = time.perf_counter(), _cpu()
        print(f"[folder] Verilator build ({args.verilator_opt}, {args.jobs} jobs) {t1 - t0:.1f} s wall, "
              f"{c1 - c0:.1f} s CPU (measured)", flush=True)  # fmt: skip
        r, ref = api.run_folder(binary, folder, desc, x)
        t2, (s2, c2) = time.perf_counter(), _cpu()
        Firmware(desc, w).run(x)
        ref_s = time.perf_counter() - t2
        bad = int(np.any(r.y_m != ref, axis=1).sum())
        row.update(sim_windows=int(len(x)), sim_cycles_min=int(r.cycles.min()), sim_cycles_max=int(r.cycles.max()),
                   sim_bit_exact=bad == 0, sim_mismatches=bad, verilator_opt=args.verilator_opt, jobs=args.jobs,
                   build_s=round(t1 - t0, 1), build_cpu_s=round(c1 - c0 + s1 - s0, 1),
                   run_s=round(t2 - t1, 1), run_cpu_s=round(c2 - c1 + s2 - s1, 1),
                   firmware_sim_s=round(ref_s, 3),
                   rtl_sim_vs_firmware_sim_time=round((t2 - t1) / max(ref_s, 1e-9), 1),
                   cycles_source="measured in RTL simulation (Verilator), start edge to done edge")  # fmt: skip
        print(f"[folder] {len(x)} windows: cycles {row['sim_cycles_min']}-{row['sim_cycles_max']} (measured), "
              f"bit-exact {bad == 0} ({bad} windows differ); simulation and check {row['run_s']} s wall", flush=True)  # fmt: skip
        rows.append(row)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    if not args.no_synth:
        cap = meta.get("capacity")
        if cap is None:
            from qlstm.hls.targets import get_target

            t = get_target(meta["target"] or args.target)
            cap = {"lut": t.resources.lut, "ff": t.resources.ff, "dsp": t.resources.dsp,
                   "bram_18k": t.resources.bram_18k}  # fmt: skip
        for engine, mapper, flags in _variants(args):
            row = dict(base)
            tag = _tag(engine, mapper, flags)
            y = rtl_synth.synthesize(folder, meta["part"], folder / f"synth_{tag}", flags=flags, engine=engine,
                                     mapper=mapper, keep_netlist=True)  # fmt: skip
            row.update({k: v for k, v in y.to_dict().items() if k != "cells"})
            util = {"lut": y.lut / cap["lut"], "ff": y.ff / cap["ff"], "dsp": y.dsp / cap["dsp"],
                    "bram18": y.bram18 / cap["bram_18k"]}  # fmt: skip
            row.update(capacity=cap, utilisation={k: round(v, 4) for k, v in util.items()},
                       fits=all(v <= 1.0 for v in util.values()),
                       resources_source="after Yosys synthesis, not placed")  # fmt: skip
            print(f"[folder] Yosys {y.engine} {y.flags} {y.family} in {y.seconds} s wall, {y.cpu_seconds} s CPU (not placed): "
                  f"{y.lut:,} LUT, {y.ff:,} FF, {y.carry:,} CARRY, {y.dsp} DSP, {y.bram18} BRAM18; logic depth "
                  f"{y.logic_depth} cells; fits: {row['fits']} ({row['utilisation']})", flush=True)  # fmt: skip
            print(f"    critical path: {path_text(y.logic_path)}", flush=True)
            rows.append(row)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return rows


def matrix(args) -> list[dict]:
    """Bit-exactness of the RTL in Verilator: 4-cell LSTM, GRU and LSTM+GRU at 6, 8, 16 bits."""
    from rtl_models import policy_model

    from qlstm.rtl import api

    rows = []
    for cells in (("lstm",), ("gru",), ("lstm", "gru")):
        for bits in (6, 8, 16):
            desc, w = policy_model(cells, tuple(4 for _ in cells), bits, history=16, horizon=4,
                                   method="qat" if bits < 16 else "ptq")  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:
                res = api.build(
                    desc, w, part="xc7z045ffg900-2", clock_ns=5.0, pipeline=args.pipeline, out=Path(tmp)
                )
                s = api.simulate(
                    res,
                    api.default_windows(desc, args.windows, seed=bits),
                    jobs=args.jobs,
                    opt=args.verilator_opt,
                )
            row = {"cells": "+".join(cells), "bits": bits, **s, "stages_per_step": res.design.stages}
            print(f"[matrix] {row['cells']} {bits} bits: {s['windows']} windows, bit-exact {s['bit_exact']} "
                  f"({s['mismatches']} differ), cycles {s['cycles_min']}-{s['cycles_max']} (measured)", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        choices=("default", "paper", "both", "matrix"),
        default="default",
        help="matrix: 4-cell LSTM/GRU/stacked at 6, 8, 16 bits in Verilator (bit-exactness only)",
    )
    p.add_argument("--run", type=Path, help="a trained quantized run for the default model")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--pipeline", type=float, default=None, help="da4ml latency cutoff (default: qlstm's)")
    p.add_argument("--cutoffs", help="comma-separated cutoffs to measure on one trace (overrides --pipeline)")
    p.add_argument(
        "--product-latency", type=float, help="delay of a DSP product when pipelining (da4ml units)"
    )
    p.add_argument("--units", type=int, help="cells of the default-shape model (default 32)")
    p.add_argument("--solver", help="da4ml constant-matrix solver options as JSON, e.g. '{\"hard_dc\": 2}'")
    p.add_argument("--yosys", action="append", metavar="ENGINE:FLAGS",
                   help="Yosys variant, repeatable: engine (pyosys|yowasp|empty=auto), optional LUT mapper "
                   "(abc9|abc) and extra synth_xilinx flags, e.g. 'pyosys,abc:' or 'yowasp:-nodsp'")  # fmt: skip
    p.add_argument("--target", default="zynq7045")
    p.add_argument("--clock-ns", type=float, default=5.0, help="assumed clock (default 5 ns = 200 MHz)")
    p.add_argument("--windows", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--verilator-opt", default=None,
                   help="g++ optimisation of the Verilated model, e.g. =-O0 (with the =; builds large designs faster) "
                   "or -O1 (qlstm's default)")  # fmt: skip
    p.add_argument("--folder", type=Path,
                   help="simulate/synthesise this RTL folder (written before with --no-sim --no-synth --out) "
                   "instead of tracing a model; --no-sim / --no-synth choose the phase")  # fmt: skip
    p.add_argument("--no-sim", action="store_true")
    p.add_argument("--no-synth", action="store_true")
    p.add_argument("--out", help="keep the RTL folders here (default: temporary folders)")
    p.add_argument("--json", type=Path, help="write the figures as JSON")
    args = p.parse_args(argv)
    from qlstm.rtl.api import DEFAULT_PIPELINE

    args.pipeline = args.pipeline or DEFAULT_PIPELINE
    args.cutoffs = [float(c) for c in args.cutoffs.split(",")] if args.cutoffs else [args.pipeline]
    args.rows_so_far = []
    from qlstm.rtl.sim import DEFAULT_OPT

    args.verilator_opt = args.verilator_opt or DEFAULT_OPT
    if args.folder is not None:
        rows = on_folder(args)
    elif args.model == "matrix":
        rows = matrix(args)
    else:
        rows = []
        for m in ("default", "paper") if args.model == "both" else (args.model,):
            rows += bench(m, args)
            args.rows_so_far = list(rows)
    print(json.dumps(rows, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
