"""``qlstm rtl``: Verilog of the firmware, simulated cycle by cycle and synthesised with open tools.

``qlstm rtl QRUN_DIR --target NAME|--part PART [--clock-ns C] --out RTL_DIR [--pipeline D |
--budget-us B] [--sim] [--synth]`` writes a folder for a user with Vivado (sources, ROM files,
testbench, XDC, build script) and ``rtl.json``; ``--sim`` measures cycles and checks bit-exactness
against firmware_sim in Verilator, ``--synth`` counts resources with Yosys. The folder is built
in a staging folder and appears only when everything asked for succeeded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from qlstm.errors import QlstmError
from qlstm.runs import rtl_verdict

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rtl",
        help="Verilog of the firmware (da4ml), cycle-accurate simulation (Verilator), synthesis (Yosys)",
        description=(
            "Trace one recurrent step of a quantized run's firmware with da4ml, pipeline it, wrap it in a "
            "recurrent controller and write a folder for Vivado (sources, ROM .mem files, XDC with the clock, "
            "build_vivado.tcl: out-of-context synthesis by default, -tclargs ooc_impl|full for more) and rtl.json, "
            "with a self-checking testbench (tb/tb_qlstm.v: the --inputs or --windows windows and firmware_sim's "
            "outputs as raw hex, compared by exact equality, one tb: PASS/FAIL line; tb/run_xsim.sh runs it in "
            "xsim). Cycles are measured in RTL simulation (--sim), resources after Yosys synthesis, not placed "
            "(--synth); the clock is an assumption. See docs/rtl.md."
        ),
    )
    p.add_argument(
        "run_dir", type=Path, metavar="QRUN_DIR", help="quantized run folder (qlstm quantize output)"
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--target", metavar="NAME", help="named target of qlstm hls (zynq7020, zynq7045, ku060, kintex7)"
    )
    where.add_argument(
        "--part", metavar="PART", help="any Xilinx part, e.g. xc7z045ffg900-2 (no capacity check)"
    )
    p.add_argument(
        "--clock-ns",
        type=float,
        metavar="C",
        help="assumed clock period in ns (default: the target's; required with --part)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RTL_DIR",
        help="output folder (must not exist or be empty)",
    )
    depth = p.add_mutually_exclusive_group()
    depth.add_argument(
        "--pipeline",
        type=float,
        metavar="D",
        help="da4ml latency cutoff in its delay units (about one adder level each): smaller D, more stages "
        f"per step and shorter logic paths (default {api_default_pipeline()})",
    )
    depth.add_argument(
        "--budget-us",
        type=float,
        metavar="B",
        help="choose the cutoff that meets B microseconds at the clock with the fewest resources "
        "(da4ml estimate); cycles are then measured with --sim",
    )
    p.add_argument(
        "--product-latency",
        metavar="P",
        help="delay given to a variable product (a DSP48) when cutting the step into stages, in da4ml's "
        "units, or 'da4ml' for da4ml's own LUT-multiplier model (as many adder levels as the wider operand "
        f"has bits); default {api_default_product_latency()}; at most the cutoff (with --budget-us: at most the "
        "largest cutoff tried, capped at the one chosen, as the printed line says)",
    )
    p.add_argument(
        "--sim",
        action="store_true",
        help="simulate in Verilator: cycles per window measured, every output compared exactly with firmware_sim "
        "(in Python and by the self-checking testbench tb/tb_qlstm.v itself)",
    )
    p.add_argument(
        "--synth",
        action="store_true",
        help="synthesise with Yosys: LUT/FF/CARRY/DSP/BRAM, logic depth (a proxy, not an Fmax)",
    )
    p.add_argument(
        "--inputs",
        type=Path,
        metavar="X.npy",
        help="normalised windows (N, L, C) for the testbench's vectors (tb/tb_inputs.hex, with firmware_sim's "
        "outputs in tb/tb_expected.hex) and for --sim (default: --windows random and saturating windows)",
    )
    p.add_argument(
        "--windows",
        type=int,
        default=2000,
        metavar="N",
        help="without --inputs: random and saturating windows for the testbench's vectors and --sim (default 2000)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, metavar="J", help="parallel compile jobs for Verilator (default 1)"
    )
    p.add_argument(
        "--alarm",
        choices=("instant", "ewma", "cusum"),
        metavar="SCORE",
        help="add the quench-precursor alarm of qlstm detect behind the head (score instant, ewma or cusum; "
        "on by default with ewma when the description carries quantization.alarm): residual, score, threshold "
        "compare and run-length counter in the description's alarm types; --sim checks it against "
        "firmware_sim's alarm (docs/rtl.md, 'The alarm')",
    )
    p.add_argument(
        "--alarm-ewma-shift",
        type=int,
        default=7,
        metavar="N",
        help="--alarm ewma: weight 2**-N (default 7, as qlstm detect)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty RTL_DIR")
    p.set_defaults(func=run)


def api_default_pipeline() -> str:
    from .api import DEFAULT_PIPELINE

    return f"{DEFAULT_PIPELINE:g}"


def api_default_product_latency() -> str:
    from .api import DEFAULT_PRODUCT_LATENCY

    return "da4ml" if DEFAULT_PRODUCT_LATENCY is None else f"{DEFAULT_PRODUCT_LATENCY:g}"


def _product_latency(text: str | None) -> float | None | str:
    if text is None:
        return "default"
    if text == "da4ml":
        return None
    import math

    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise QlstmError(
            f"--product-latency {text!r}: a finite number > 0 (at most the cutoff) of da4ml delay units, or 'da4ml'"
        )
    return v


def _target(args: argparse.Namespace) -> tuple[str, str | None, float, dict[str, int] | None]:
    from qlstm.hls.targets import check_part, get_target

    if args.target is not None:
        t = get_target(args.target)
        cap = {
            "lut": t.resources.lut,
            "ff": t.resources.ff,
            "dsp": t.resources.dsp,
            "bram_18k": t.resources.bram_18k,
        }
        return t.part, t.name, t.clock_ns if args.clock_ns is None else args.clock_ns, cap
    part = check_part(args.part)
    if args.clock_ns is None:
        raise QlstmError("--part needs --clock-ns (the assumed clock period)")
    known = {t.part: t for t in __import__("qlstm.hls.targets", fromlist=["TARGETS"]).TARGETS.values()}
    t = known.get(part)
    cap = None
    if t is not None:
        cap = {
            "lut": t.resources.lut,
            "ff": t.resources.ff,
            "dsp": t.resources.dsp,
            "bram_18k": t.resources.bram_18k,
        }
    return part, None, args.clock_ns, cap


#: The shortest clock period accepted (ns): 2 GHz, twice any Xilinx fabric clock. The global
#: clock tree limits it: FMAX_BUFG 628 MHz on Spartan-7 -2 (DS189 Table 32, read 2026-12-01);
#: UltraScale+ BUFGCE stays under 1 GHz at -3 (DS923, 891 MHz as recalled, not re-read here).
MIN_CLOCK_NS = 0.5


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse zero, negative and non-finite numeric options in one line before any work (an
    explicit 0 is never turned into a default), and a clock period below :data:`MIN_CLOCK_NS`."""
    import math

    if args.clock_ns is not None and math.isfinite(args.clock_ns) and 0 < args.clock_ns < MIN_CLOCK_NS:
        raise QlstmError(
            f"--clock-ns {args.clock_ns:g}: a clock above {1 / MIN_CLOCK_NS:g} GHz (period < {MIN_CLOCK_NS:g} ns) "
            "is beyond any FPGA fabric; give the period in ns (5 = 200 MHz)"
        )

    for flag, v in (
        ("--clock-ns", args.clock_ns),
        ("--pipeline", args.pipeline),
        ("--budget-us", args.budget_us),
    ):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise QlstmError(f"{flag} {v:g}: must be a finite number > 0")
    for flag, n in (("--windows", args.windows), ("--jobs", args.jobs)):
        if n < 1:
            raise QlstmError(f"{flag} {n}: must be >= 1")


def _n(count: int, noun: str) -> str:
    """``1 stage``, ``2 stages``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    from qlstm import description
    from qlstm.io import check_out_folder, staged_dir

    from . import api
    from .synth import yosys_family

    _check_numbers(args)
    pl = _product_latency(args.product_latency)
    cut = api.DEFAULT_PIPELINE if args.pipeline is None else args.pipeline
    if isinstance(pl, float) and args.budget_us is None and pl > cut:
        raise QlstmError(f"--product-latency {pl:g}: must be > 0 and at most the cutoff {cut:g}")
    if isinstance(pl, float) and args.budget_us is not None and pl > max(api.CANDIDATES):
        # every cutoff tried would cap it (a new user's trial: 20 was accepted and silently capped)
        raise QlstmError(
            f"--product-latency {pl:g}: must be > 0 and at most the cutoff; --budget-us tries cutoffs up to "
            f"{max(api.CANDIDATES):g}"
        )
    check_out_folder(args.out, args.overwrite, (args.run_dir, args.inputs))
    part, target, clock_ns, cap = _target(args)
    yosys_family(part)  # refuse an unknown part before any work, with or without --synth
    desc, weights = description.load(args.run_dir)
    if not desc.quantized:
        raise QlstmError(f"{args.run_dir}: not a quantized run; qlstm rtl needs the output of qlstm quantize")
    from qlstm.predict import _load_npy

    a = desc.architecture
    if args.inputs is not None:  # the testbench's vectors, and what --sim simulates
        x = a.check_windows(_load_npy(args.inputs), f"--inputs {args.inputs}")
    else:
        x = api.default_windows(desc, args.windows)
    if args.sim:  # the tools are checked before anything is written
        from .sim import verilator_env

        verilator_env()
    if args.synth:
        from .synth import _yosys

        _yosys()
    rule = None
    if args.alarm is not None:
        from qlstm.detect.alarm import AlarmRule

        rule = AlarmRule(score=args.alarm, ewma_shift=args.alarm_ewma_shift)
    rows = None
    if args.budget_us is not None:
        d, rows = api.choose_pipeline(
            desc, weights, args.budget_us, clock_ns, product_latency=pl, capacity=cap
        )
        d = api.with_alarm(d, rule)
    else:
        d = api.design(
            desc,
            weights,
            api.DEFAULT_PIPELINE if args.pipeline is None else args.pipeline,
            rule,
            product_latency=pl,
        )
    with staged_dir(args.out, overwrite=args.overwrite, inputs=(args.run_dir, args.inputs)) as stage:
        res = api.build(
            desc,
            weights,
            part=part,
            clock_ns=clock_ns,
            out=stage,
            target=target,
            capacity=cap,
            traced_design=d,
        )
        res.windows_source = (
            f"--inputs {args.inputs} ({len(x):,} windows)"
            if args.inputs is not None
            else api.default_windows_source(len(x))
        )
        res.budget_us, res.candidates = args.budget_us, rows
        brams = api.table_bram18_estimate(stage)
        if cap and brams > cap["bram_18k"]:
            res.notes.append(
                f"the sigmoid/tanh tables need ~{brams:,} RAMB18 (estimated before synthesis, one block RAM per "
                f"table instance) of the part's {cap['bram_18k']:,}: by this estimate the design will not fit; a smaller table_size "
                "(fewer table index bits) shrinks them"
            )
            log.warning("%s", res.notes[-1])
        capped = ""
        if isinstance(pl, float) and pl > d.pipeline:  # --budget-us chose a cutoff below it
            capped = f" (--product-latency {pl:g} capped at this cutoff: {d.product_latency:g})"
        print(
            f"RTL: {len(desc.architecture.layers)} layer(s), da4ml cutoff {d.pipeline:g}{capped}: {_n(d.stages, 'stage')} per "
            f"step, {d.head_stages} for the head, {d.cycles:,} cycles per window by construction"
        )
        if not args.sim:
            api.write_vectors(res, np.asarray(x))
            print(
                f"testbench vectors: {res.windows_source} and firmware_sim's outputs in tb/ (tb/tb_qlstm.v checks them; "
                "run it with --sim, or in Vivado: docs/rtl.md)"
            )
        if args.sim:
            try:
                s = api.simulate(res, np.asarray(x), jobs=args.jobs)
            except QlstmError as exc:
                raise api.keep_log(exc, args.out) from None
            verdict = rtl_verdict(s)
            if "alarm" in s:
                al = s["alarm"]
                print(
                    f"alarm (Verilator): {al['windows']} windows as one stream, {al['alarms']} with the alarm set, "
                    f"{al['mismatches']} differing from firmware_sim's alarm; written {al['cycles_min']}-"
                    f"{al['cycles_max']} cycles after start (measured, beside the steps)"
                )
            print(
                f"simulated (Verilator): {res.windows_source}, cycles start->done {s['cycles_min']}-{s['cycles_max']} "
                f"(measured), {s['cycles_max'] * clock_ns / 1000:.3f} us at an assumed {clock_ns:g} ns clock; "
                f"{verdict} with firmware_sim"
            )
            if "testbench" in s:
                print(f"self-checking testbench (Verilator, {len(x):,} windows in tb/): {s['testbench'][4:]}")
            if args.budget_us is not None:
                us = s["cycles_max"] * clock_ns / 1000
                print(
                    f"budget {args.budget_us:g} us: {'met' if us <= args.budget_us else 'MISSED'} on measured cycles ({us:.3f} us)"
                )
        if args.synth:
            try:
                y = api.synthesize(res)
            except QlstmError as exc:
                raise api.keep_log(exc, args.out) from None
            fit = ""
            if cap:
                fit = (
                    f" of {cap['lut']:,} / {cap['ff']:,} / {cap['dsp']:,} / {cap['bram_18k']:,}"
                    f" ({'fits' if res.summary().get('fits') else 'does NOT fit'})"
                )
            print(
                f"synthesised (Yosys {y.family}, not placed): {y.lut:,} LUT, {y.ff:,} FF, {y.dsp:,} DSP, "
                f"{y.bram18:,} BRAM18{fit}; {y.carry:,} CARRY; logic depth {y.logic_depth} cells (a proxy for the "
                "critical path, not an Fmax)"
            )
        res.write_json()
    print(
        f"wrote {args.out} (rtl.json, src/, tb/ with the self-checking testbench, constraints/ (clock {clock_ns:g} ns, "
        "assumed), build_vivado.tcl: out-of-context synthesis by default)"
    )
    if args.sim and not res.sim["bit_exact"]:  # type: ignore[index]
        return 1
    return 0
