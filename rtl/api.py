"""The Python API of the RTL stage: build, simulate, synthesise, choose a pipeline depth.

``build(desc, weights, part=..., clock_ns=..., pipeline=D, out=...)`` traces the firmware with
da4ml, pipelines it at latency cutoff ``D`` and writes the folder (:mod:`.verilog`);
``simulate(result, x)`` runs windows in Verilator and checks every output against
``firmware_sim`` by exact integer equality; ``synthesize(result)`` runs Yosys. ``rtl.json``
(:meth:`RtlResult.summary`) labels every figure: cycles *measured in RTL simulation*, resources
*after Yosys synthesis, not placed*, the clock *assumed*.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import __version__
from qlstm.description import ModelDescription
from qlstm.errors import QlstmError
from qlstm.io import atomic_write_text

from . import sim as _sim
from . import synth as _synth
from . import trace as _trace
from . import verilog as _verilog

log = logging.getLogger(__name__)

#: da4ml latency cutoff used when none is given (see docs/rtl.md for the measured trade-off).
DEFAULT_PIPELINE = 4.0
#: Delay of a variable product (a DSP48) when the step is cut into stages, in da4ml's units; None:
#: da4ml's own LUT-multiplier model (see :func:`qlstm.rtl.verilog.pipeline`, docs/rtl.md).
DEFAULT_PRODUCT_LATENCY: float | None = 4.0
#: Cutoffs ``choose_pipeline`` tries for a latency budget.
CANDIDATES = (3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)
RTL_JSON = "rtl.json"


@dataclass
class RtlResult:
    """A generated RTL folder and what was measured on it (``sim``/``synth`` when run)."""

    out: Path
    design: _verilog.Design
    part: str
    target: str | None
    clock_ns: float
    capacity: dict[str, int] | None = None
    sim: dict[str, Any] | None = None
    synth: _synth.SynthResult | None = None
    notes: list[str] = field(default_factory=list)
    #: sha256 of the weights the folder implements (:func:`qlstm.io.weights_sha256`): with the
    #: description's fingerprint, rtl.json names its model so a report refuses another model's RTL
    weights_sha256: str | None = None
    #: where the simulated windows (and the testbench's vectors) came from, as printed
    windows_source: str | None = None
    #: ``--budget-us``/``rtl.budget_us`` and the candidates :func:`choose_pipeline` tried
    budget_us: float | None = None
    candidates: list[dict[str, Any]] | None = None

    @property
    def desc(self) -> ModelDescription:
        return self.design.traced.desc

    def summary(self) -> dict[str, Any]:
        """The content of ``rtl.json``."""
        d = self.design
        s: dict[str, Any] = {
            "format": "qlstm-rtl/1",
            "qlstm_version": __version__,
            "target": self.target,
            "part": self.part,
            "clock_ns": self.clock_ns,
            "clock_source": "assumed (no place and route was run)",
            "model_fingerprint": self.desc.fingerprint(),
            "weights_sha256": self.weights_sha256,
            "windows_source": self.windows_source,
            "pipeline": d.pipeline,
            "product_latency": d.product_latency,
            "stages_per_step": d.stages,
            "head_stages": d.head_stages,
            "passes": _trace.iterations(self.desc),
            "cycles_by_construction": d.cycles,
            "cycles_per_step": d.stages,
            "da4ml_estimate": {
                "lut": round(float(d.step_pipe.cost) + float(d.head_pipe.cost)),  # type: ignore[attr-defined]
                "register_bits": d.register_bits,
                "source": "estimated by da4ml before synthesis",
            },
            "cycles_min": None,
            "cycles_max": None,
            "ii": None,
            "latency_us": None,
            "bit_exact": None,
            "windows": 0,
        }
        if self.sim is not None:
            cmax = self.sim["cycles_max"]
            s.update(
                cycles_min=self.sim["cycles_min"],
                cycles_max=cmax,
                ii=cmax + 1,
                latency_us=round(cmax * self.clock_ns / 1000.0, 6),
                bit_exact=self.sim["bit_exact"],
                windows=self.sim["windows"],
                mismatches=self.sim["mismatches"],
                cycles_source="measured in RTL simulation (Verilator 5.48.0), start edge to done edge",
                ii_note="one window at a time: the next start is accepted the cycle after done",
                sim_seconds={"build": self.sim["build_s"], "run": self.sim["run_s"]},
            )
            if "testbench" in self.sim:  # tb/tb_qlstm.v's own check of tb/tb_expected.hex
                s["testbench_check"] = self.sim["testbench"]
        if self.synth is not None:
            y = self.synth
            s.update(
                lut=y.lut,
                ff=y.ff,
                dsp=y.dsp,
                bram18=y.bram18,
                carry=y.carry,
                muxf=y.muxf,
                logic_depth=y.logic_depth,
                resources_source=f"after Yosys 0.70 ({y.engine}) synth_xilinx -family {y.family} {y.flags}, not placed",
                logic_depth_source="longest register-to-register path in LUT/INV/CARRY/MUXF cells (a proxy, not an Fmax)",
                logic_path=y.logic_path,
                yosys_cells=y.cells,
                synth_seconds=y.seconds,
                synth_cpu_seconds=y.cpu_seconds,
            )
            if self.capacity:
                s["capacity"] = self.capacity
                s["utilisation"] = {
                    "lut": round(y.lut / self.capacity["lut"], 4),
                    "ff": round(y.ff / self.capacity["ff"], 4),
                    "dsp": round(y.dsp / self.capacity["dsp"], 4),
                    "bram18": round(y.bram18 / self.capacity["bram_18k"], 4),
                }
                s["fits"] = all(v <= 1.0 for v in s["utilisation"].values())
        if self.budget_us is not None:
            s["budget_us"] = self.budget_us
            s["budget_met"] = None if s["latency_us"] is None else s["latency_us"] <= self.budget_us
            s["budget_source"] = (
                "not simulated: the chosen cutoff meets it by construction (cycles_by_construction x assumed clock)"
                if self.sim is None
                else "measured cycles (cycles_max) x assumed clock"
            )
        if self.candidates is not None:
            s["candidates"] = [
                {"cutoff": r["pipeline"], "stages_per_step": r["stages_per_step"],
                 "cycles": r["cycles"], "latency_us": round(r["latency_us"], 6),
                 "lut": round(r["lut_estimate"]), "ff": r["register_bits"], "binding": r["binding"],
                 "cost": round(r["cost"], 6), "chosen": bool(r.get("chosen", False))}
                for r in self.candidates
            ]  # fmt: skip
            s["candidates_source"] = (
                "the cutoffs tried for budget_us (CANDIDATES): cycles and latency_us by construction at the assumed "
                "clock; lut and ff (register bits) estimated by da4ml before synthesis; cost: the binding one as a "
                "fraction of the part (docs/rtl.md)"
            )
        if d.alarm is not None:
            s["alarm"] = d.alarm.summary()  # type: ignore[attr-defined]
            if self.sim is not None and "alarm" in self.sim:
                s["alarm"].update(self.sim["alarm"])
        if self.notes:
            s["notes"] = self.notes
        return s

    def write_json(self) -> None:
        atomic_write_text(self.out / RTL_JSON, json.dumps(self.summary(), indent=2) + "\n")


def design(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    pipeline: float,
    alarm_rule=None,
    solver: dict | None = None,
    product_latency: float | None | str = "default",
) -> _verilog.Design:
    """Trace and pipeline (no files); ``solver``: da4ml's constant-matrix solver options,
    ``product_latency``: see :data:`DEFAULT_PRODUCT_LATENCY` (``"default"``: that value, at most
    the cutoff); with the precursor alarm (:mod:`.alarm`) when ``alarm_rule`` (a
    ``qlstm.detect.alarm.AlarmRule``) is given or the description carries the alarm's types."""
    pl = product_latency
    if pl == "default":  # the default never exceeds the cutoff (a product within one stage)
        pl = None if DEFAULT_PRODUCT_LATENCY is None else min(DEFAULT_PRODUCT_LATENCY, pipeline)
    d = _verilog.pipeline(_trace.trace(desc, weights, solver), pipeline, pl)  # type: ignore[arg-type]
    return with_alarm(d, alarm_rule)


def with_alarm(d: _verilog.Design, alarm_rule=None) -> _verilog.Design:
    """``d`` with the alarm traced and pipelined at ``d``'s cutoff: for ``alarm_rule``, or for the
    default rule when the description carries ``quantization.alarm``; ``d`` unchanged otherwise."""
    from . import alarm as _alarm

    desc = d.traced.desc
    if alarm_rule is None:
        if desc.quantization is None or desc.quantization.alarm is None:
            return d
        from qlstm.detect.alarm import AlarmRule

        alarm_rule = AlarmRule()
    # half the cutoff: the alarm has slack (it runs beside the steps), so its paths stay shorter than theirs
    d.alarm = _alarm.pipeline(_alarm.trace_alarm(desc, alarm_rule), max(1.0, d.pipeline / 2))
    if d.alarm.cycles > d.cycles:  # type: ignore[attr-defined]
        raise QlstmError(
            f"the alarm needs {d.alarm.cycles} cycles, more than the window's {d.cycles}"  # type: ignore[attr-defined]
        )
    return d


#: RAMB18 aspect ratios (depth, width) of 7-series and UltraScale block RAM (Xilinx UG473, UG573).
_RAMB18_ASPECTS = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: ROMs with fewer entries than this are taken as LUT RAM (Yosys put the 256-entry tables of an
#: 8-bit LSTM(8) in LUTs and the 1,024-entry ones in block RAM, 2026-12-01).
_BRAM_MIN_ENTRIES = 512


def table_bram18_estimate(folder: Path) -> int:
    """RAMB18 the folder's table ROMs need if each ``lookup_table`` instance gets its own block
    RAM (estimated before synthesis, the best aspect ratio per instance; ROMs below
    :data:`_BRAM_MIN_ENTRIES` entries counted as LUT RAM). Checked against Yosys ``synth_xilinx``
    on LSTM(8): 8 bits 32 estimated, 32 synthesised; 16 bits (65,536-entry tables) 2,560
    estimated, 2,512 synthesised."""
    import math
    import re

    total = 0
    for f in sorted((Path(folder) / "src").glob("*.v")):
        for m in re.finditer(r"lookup_table\s*#\(\s*(\d+)\s*,\s*(\d+)\s*,", f.read_text()):
            entries, width = 1 << int(m[1]), int(m[2])
            if entries >= _BRAM_MIN_ENTRIES:
                total += min(math.ceil(entries / d) * math.ceil(width / w) for d, w in _RAMB18_ASPECTS)
    return total


def build(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    *,
    part: str,
    clock_ns: float,
    pipeline: float = DEFAULT_PIPELINE,
    out: Path,
    target: str | None = None,
    capacity: dict[str, int] | None = None,
    traced_design: _verilog.Design | None = None,
) -> RtlResult:
    """Write the RTL folder of a quantized description into ``out`` (which must exist and be empty)."""
    if not clock_ns > 0:
        raise QlstmError(f"--clock-ns {clock_ns}: the clock period must be positive")
    d = traced_design or design(desc, weights, pipeline)
    _verilog.write(d, Path(out), part, clock_ns)
    from qlstm import description

    description.save(Path(out) / "model", desc, weights)  # the model the folder implements
    from qlstm.io import weights_sha256

    res = RtlResult(Path(out), d, part, target, clock_ns, capacity, weights_sha256=weights_sha256(weights))
    res.write_json()
    return res


def simulate(res: RtlResult, x: np.ndarray, *, jobs: int = 1, opt: str = _sim.DEFAULT_OPT) -> dict[str, Any]:
    """Build the Verilator testbench, run windows ``x`` (N, L, C) and compare every output with
    ``firmware_sim`` (exact integer equality). Stores and returns the figures. ``opt``: the C++
    optimisation level of the Verilator build (``-O0`` compiles faster and simulates slower: for a
    few windows, e.g. per trial of ``qlstm explore --rtl``); cycles and outputs do not depend on it."""
    from qlstm.firmware_sim.simulate import Firmware

    tr = res.design.traced
    t0 = time.perf_counter()
    binary = _sim.build(res.out, jobs=jobs, opt=opt)
    t1 = time.perf_counter()
    xm = tr.input_t.to_int(np.asarray(x, dtype=np.float64))
    ad = res.design.alarm
    if ad is not None:  # the windows as one stream through the alarm, checked against alarm_fixed
        from . import alarm as _alarm

        clear, consts, ref, want = _alarm_vectors(res, x)
        r = _alarm.run(binary, res.out, xm, clear, ad, consts, io_dir=res.out / "tb", expected=(ref, want))  # type: ignore[arg-type]
        bad_alarm = int(
            ((r.score != want["score"]) | (r.counter != want["counter"]) | (r.alarm != want["alarm"])).sum()
        )
        alarm_fig = {
            "windows": int(len(xm)),
            "bit_exact": bad_alarm == 0,
            "mismatches": bad_alarm,
            "constants": consts.__dict__,
            "alarms": int(r.alarm.sum()),
            "cycles_min": int(r.alarm_cycles.min()),
            "cycles_max": int(r.alarm_cycles.max()),
            "cycles_source": "measured in RTL simulation: start edge to alarm_valid (beside the window's steps)",
            "reference": "qlstm.detect.alarm.alarm_fixed on firmware_sim's outputs (exact integer equality)",
        }
    else:  # the folder's own vectors: the testbench checks them too (tb: PASS/FAIL)
        ref = Firmware(res.desc, _load_weights(res.out)).run(x).y_m
        r = _sim.run(
            binary, res.out, xm, tr.input_t, tr.result_t, ref.shape[1], io_dir=res.out / "tb", expected=ref
        )
    t2 = time.perf_counter()
    bad = int(np.any(r.y_m != ref, axis=1).sum())
    res.sim = {
        "windows": int(xm.shape[0]),
        "cycles_min": int(r.cycles.min()),
        "cycles_max": int(r.cycles.max()),
        "bit_exact": bad == 0,
        "mismatches": bad,
        "build_s": round(t1 - t0, 1),
        "run_s": round(t2 - t1, 1),
    }
    if ad is not None:
        res.sim["alarm"] = alarm_fig
        res.sim["bit_exact"] = bad == 0 and bad_alarm == 0
    if r.check is not None:  # the testbench's own verdict must be Python's
        res.sim["testbench"] = r.check
        if r.check.startswith("tb: PASS") != res.sim["bit_exact"]:
            raise QlstmError(
                f"the testbench's own check disagrees with the exact comparison: {r.check}; "
                f"bit_exact={res.sim['bit_exact']}"
            )
    res.write_json()
    return res.sim


def keep_log(exc: QlstmError, out: Path) -> QlstmError:
    """``exc`` pointing to a copy of the log it names (``(log: PATH)``, :func:`qlstm.rtl.sim.build`'s
    ``verilator.log``, :func:`qlstm.rtl.synth.synthesize`'s ``yosys.log``) beside the output folder
    ``out`` (``<out>.verilator.log``, ``<out>.yosys.log``): the staging folder holding it is deleted
    on failure. Without such a log, the pointer is dropped; ``exc`` unchanged without a pointer."""
    import re

    from qlstm.io import atomic_write_bytes

    msg = str(exc)
    m = re.search(r" \(log: ([^)]*)\)", msg)
    if m is None:
        return exc
    log_file = Path(m[1])
    if log_file.is_file():
        kept = Path(f"{out}.{log_file.name}")
        atomic_write_bytes(kept, log_file.read_bytes())
        msg = msg.replace(m[0], f" (log: {kept})")
    else:
        msg = msg.replace(m[0], "")
    return QlstmError(msg, exc.exit_code)


def write_vectors(res: RtlResult, x: np.ndarray) -> np.ndarray:
    """Write the self-checking testbench's vectors into ``res.out/tb``: windows ``x`` (N, L, C,
    normalised) and firmware_sim's outputs as result-type raw bits (:func:`qlstm.rtl.sim.write_vectors`;
    with the alarm, the windows as one stream, its constants and expected registers:
    :func:`qlstm.rtl.alarm.write_vectors`). Returns firmware_sim's outputs (N, k) mantissas."""
    from qlstm.firmware_sim.simulate import Firmware

    tr = res.design.traced
    xm = tr.input_t.to_int(np.asarray(x, dtype=np.float64))
    if res.design.alarm is not None:
        from . import alarm as _alarm

        clear, consts, ref, want = _alarm_vectors(res, x)
        _alarm.write_vectors(res.out / "tb", xm, clear, res.design.alarm, consts, (ref, want))  # type: ignore[arg-type]
        return ref
    ref = Firmware(res.desc, _load_weights(res.out)).run(x).y_m
    _sim.write_vectors(res.out / "tb", xm, tr.input_t, ref, tr.result_t)
    return ref


def _alarm_vectors(res: RtlResult, x: np.ndarray):
    """The windows ``x`` as one stream through a design with the alarm (clear on the first):
    (clear (N,), constants :func:`qlstm.rtl.alarm.check_constants_for`, firmware_sim's outputs
    (N, k), :func:`qlstm.rtl.alarm.reference`'s score, counter and alarm)."""
    from qlstm.firmware_sim.simulate import Firmware

    from . import alarm as _alarm

    ad, tr = res.design.alarm, res.design.traced
    xm = tr.input_t.to_int(np.asarray(x, dtype=np.float64))
    ref = Firmware(res.desc, _load_weights(res.out)).run(x).y_m
    consts = _alarm.check_constants_for(ad, xm, ref)  # type: ignore[arg-type]
    clear = np.zeros(len(xm), dtype=bool)
    clear[0] = True
    want = _alarm.reference(
        ad.types,
        ad.rule,
        tr.input_t,
        tr.result_t,
        _alarm.newest_target(ad, xm),
        ref,
        clear,
        consts,  # type: ignore[union-attr]
    )
    return clear, consts, ref, want


def run_folder(
    binary: Path, out: Path, desc: ModelDescription, x: np.ndarray
) -> tuple[_sim.SimResult, np.ndarray]:
    """(RTL simulation, firmware_sim's output mantissas (N, k)) of windows ``x`` (N, L, C) on the
    compiled testbench ``binary`` of folder ``out`` (a design without the alarm)."""
    from qlstm.firmware_sim.simulate import Firmware

    q = desc.quantization
    xm = q.input.to_int(np.asarray(x, dtype=np.float64))  # type: ignore[union-attr]
    r = _sim.run(binary, out, xm, q.input, q.output, desc.architecture.horizon)  # type: ignore[union-attr]
    return r, Firmware(desc, _load_weights(out)).run(x).y_m


def _load_weights(out: Path) -> dict[str, np.ndarray]:
    from qlstm import description

    return description.load(out / "model")[1]


def synthesize(
    res: RtlResult,
    *,
    flags: tuple[str, ...] | None = None,
    engine: str | None = None,
    mapper: str | None = None,
    work: Path | None = None,
    keep_netlist: bool = False,
) -> _synth.SynthResult:
    """Yosys synthesis of the folder for its part's family (``flags``, ``engine``, ``mapper``: see
    :func:`qlstm.rtl.synth.synthesize`); stores and returns the counts."""
    res.synth = _synth.synthesize(
        res.out, res.part, work, flags=flags, engine=engine, mapper=mapper, keep_netlist=keep_netlist
    )
    res.write_json()
    return res.synth


#: Candidates whose binding resource is within this factor of the least are taken as equal
#: (da4ml's estimate orders close designs wrongly: measured 2026-12-01 on an 8-bit LSTM(8), cutoff
#: 16 estimated below cutoff 4 but 7,379 against 7,056 LUT after Yosys); among them the smallest
#: cutoff wins, the shortest logic path per stage, the likeliest to meet the assumed clock.
BUDGET_TIE = 1.05
#: Flip-flops per LUT assumed when no part capacity is known (7-series and UltraScale slices: 8 FF
#: beside 4 or 8 LUTs; the XC7Z045 has 437,200 FF and 218,600 LUT).
FF_PER_LUT = 2.0


def choose_pipeline(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    budget_us: float,
    clock_ns: float,
    product_latency: float | None | str = "default",
    capacity: dict[str, int] | None = None,
) -> tuple[_verilog.Design, list[dict[str, Any]]]:
    """The latency cutoff meeting ``budget_us`` at ``clock_ns`` with the fewest resources.

    Every candidate of :data:`CANDIDATES` is pipelined; its cycles follow from the stage counts
    (the simulation then measures them). Its resources are da4ml's estimates: LUTs (the adder
    graphs' cost) and register bits, each as a fraction of the part's ``capacity`` (``lut``,
    ``ff``; without one, :data:`FF_PER_LUT` flip-flops per LUT); the larger fraction (the binding
    resource) is the candidate's cost. Candidates within :data:`BUDGET_TIE` of the least cost are
    equal, and the smallest cutoff among them is chosen (the shortest logic path: larger cutoffs
    save register bits but lengthen the path, docs/rtl.md). Raises QlstmError when no candidate
    meets the budget. Returns the design and the table of candidates.
    """
    if not budget_us > 0:
        raise QlstmError(f"--budget-us {budget_us}: the budget must be positive")
    tr = _trace.trace(desc, weights)
    pl = DEFAULT_PRODUCT_LATENCY if product_latency == "default" else product_latency
    lut_cap = float(capacity["lut"]) if capacity else 1.0
    ff_cap = float(capacity["ff"]) if capacity else FF_PER_LUT
    rows, meeting = [], []
    for cut in CANDIDATES:
        d = _verilog.pipeline(tr, cut, None if pl is None else min(float(pl), cut))  # type: ignore[arg-type]
        us = d.cycles * clock_ns / 1000.0
        lut = float(d.step_pipe.cost) + float(d.head_pipe.cost)  # type: ignore[attr-defined]
        frac = {"lut": lut / lut_cap, "ff": d.register_bits / ff_cap}
        binding = max(frac, key=frac.get)  # type: ignore[arg-type]
        row = {"pipeline": cut, "stages_per_step": d.stages, "cycles": d.cycles, "latency_us": us,
               "lut_estimate": lut, "register_bits": d.register_bits, "binding": binding,
               "cost": frac[binding]}  # fmt: skip
        rows.append(row)
        if us <= budget_us:
            meeting.append((row, d))
    if not meeting:
        fastest = min(rows, key=lambda r: r["cycles"])
        raise QlstmError(
            f"no pipeline depth meets {budget_us:g} us at {clock_ns:g} ns: the fewest cycles are "
            f"{fastest['cycles']} ({fastest['latency_us']:.3f} us, cutoff {fastest['pipeline']:g})"
        )
    least = min(r["cost"] for r, _ in meeting)
    row, d = min(
        ((r, d) for r, d in meeting if r["cost"] <= least * BUDGET_TIE), key=lambda rd: rd[0]["pipeline"]
    )
    row["chosen"] = True
    return d, rows


def default_windows_source(n: int, seed: int = 0) -> str:
    """How :func:`default_windows` made ``n`` windows (``rtl.json`` ``windows_source``)."""
    n1, n2 = n // 2, n // 4
    return (
        f"{n:,} generated windows (seed {seed}): {n1:,} random over the normalised range widened by 25 %, "
        f"{n2:,} random over the input type, {n - n1 - n2:,} saturating at its extremes"
    )


def default_windows(desc: ModelDescription, n: int, seed: int = 0) -> np.ndarray:
    """Random and saturating windows (N, L, C): half uniform over the normalised range widened by
    25 % each side, a quarter uniform over the whole input type, a quarter at its two extremes."""
    q = desc.quantization
    assert q is not None
    a = desc.architecture
    rng = np.random.default_rng(seed)
    shape = (a.history, a.input_channels)
    n1, n2 = n // 2, n // 4
    n3 = n - n1 - n2
    t = q.input
    x = np.concatenate(
        [
            rng.uniform(-0.25, 1.25, (n1, *shape)),
            rng.uniform(t.min_value, t.max_value, (n2, *shape)),
            rng.choice([t.min_value, t.max_value], (n3, *shape)),
        ]
    )
    return x
