"""Verilog of the traced firmware: da4ml's pipeline stages inside a recurrent wrapper of our own.

da4ml splits the step graph (see :mod:`qlstm.rtl.trace`) into ``S`` combinational stages at a
latency cutoff ``D`` (``da4ml.trace.to_pipeline``) and writes each stage as a module
(``comb_logic_gen``) with its ROMs (``.mem`` files). da4ml has no recurrence, so the wrapper is
written here (module ``qlstm_top``):

* the state registers (every layer's ``h`` and LSTM ``c``) are stage 0's input registers; ``S - 1``
  banks of registers separate the stages and the last stage's output is written back into the state
  registers, so one recurrent step takes exactly ``S`` cycles;
* every register and wire holds one traced value (:func:`value_signals`), one time step of the
  window (``xbuf_t``) or the outputs: never a whole stage boundary as one vector, which Yosys made
  one flip-flop cell of up to 256,953 bits on the paper model and on which ``synth_xilinx`` stalled
  (issue #16; docs/rtl.md has the measurements);
* a pass ``j`` of the step graph runs layer ``l`` on time step ``j - l`` (a wavefront): a window
  takes ``L + layers - 1`` passes, each layer's state is written only on its own passes;
* the Dense head (its own ``S_h`` stages) reads the last layer's ``h`` after the last pass;
* handshake: ``start`` (one cycle, while ``busy`` is low) latches the whole window ``x``
  (``L * C`` input-type mantissas, time step 0 in the low bits) and clears the states; ``done``
  pulses for one cycle when ``y`` (``k`` result-type mantissas, held until the next ``done``) is
  valid. Cycles from the ``start`` edge to the ``done`` edge: ``(L + layers - 1) * S + S_h``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType

from .trace import Traced, iterations

TOP = "qlstm_top"
TB = "tb_qlstm"


@dataclass(frozen=True)
class Field:
    """One value inside a packed port: bit offset, width and da4ml's (signed, integer, fraction)."""

    offset: int
    k: int
    i: int
    f: int

    @property
    def width(self) -> int:
        return self.k + self.i + self.f


def fields(qints) -> list[Field]:
    """Packed layout of da4ml port values: value 0 in the low bits, each ``minimal_kif`` wide."""
    from da4ml.types import minimal_kif

    out, pos = [], 0
    for q in qints:
        k, i, f = (int(v) for v in minimal_kif(q))
        out.append(Field(pos, k, i, f))
        pos += k + i + f
    return out


def convert(src: str, a: Field, b: Field, own: bool = False) -> str:
    """Verilog expression: value ``a`` of bus ``src`` re-laid as field ``b`` (exact; ``b`` must
    hold every value of ``a``). ``own``: ``src`` is a signal holding value ``a`` alone (bits
    ``[a.width - 1:0]``, see :func:`value_signals`), not a packed bus with ``a`` at ``a.offset``."""
    if a.width == 0:
        return f"{b.width}'d0"
    if b.f < a.f or b.k + b.i < a.k + a.i or (a.k and not b.k):
        raise AssertionError(f"field {a} does not fit {b}")
    lo = 0 if own else a.offset
    bits = src if own else f"{src}[{lo + a.width - 1}:{lo}]"
    parts = []
    ext = (b.k + b.i) - (a.k + a.i)
    if ext:
        msb = f"{src}[{lo + a.width - 1}]" if a.k else "1'b0"
        parts.append(f"{{{ext}{{{msb}}}}}")
    parts.append(bits)
    if b.f > a.f:
        parts.append(f"{b.f - a.f}'d0")
    return "{" + ", ".join(parts) + "}" if len(parts) > 1 else bits


def value_signals(prefix: str, flds: list[Field]) -> list[str | None]:
    """One signal name per value of a packed port (``None`` for a value of width 0, which has no bits).

    Issue #16: a stage boundary emitted as one vector became one Yosys ``$dff`` of up to 256,953
    bits on the paper model, on which ``synth_xilinx``'s ``XILINX_DSP`` pass stalled; one register
    (and one wire) per traced value, as wide as the value, keeps every cell small."""
    return [f"{prefix}_{j}" if f.width else None for j, f in enumerate(flds)]


def concat(signals: list[str | None]) -> str:
    """The packed port of :func:`value_signals`: value 0 in the low bits (da4ml's layout)."""
    names = [s for s in signals if s is not None]
    if not names:
        raise AssertionError("a stage port without bits")
    return "{" + ", ".join(reversed(names)) + "}" if len(names) > 1 else names[0]


def type_field(t: FixedType, offset: int = 0) -> Field:
    return Field(offset, int(t.signed), t.integer - int(t.signed), t.frac)


@dataclass
class Design:
    """A traced model pipelined at latency cutoff ``pipeline``: ``stages`` per step, ``head_stages``."""

    traced: Traced
    pipeline: float
    step_pipe: object  # da4ml Pipeline
    head_pipe: object
    alarm: object | None = None  # qlstm.rtl.alarm.AlarmDesign: the precursor alarm behind the head
    product_latency: float | None = None

    @property
    def stages(self) -> int:
        return len(self.step_pipe.solutions)  # type: ignore[attr-defined]

    @property
    def head_stages(self) -> int:
        return len(self.head_pipe.solutions)  # type: ignore[attr-defined]

    @property
    def cycles(self) -> int:
        """Cycles from start to done by construction (the simulation measures them)."""
        return iterations(self.traced.desc) * self.stages + self.head_stages

    @property
    def register_bits(self) -> int:
        return int(self.step_pipe.reg_bits) + int(self.head_pipe.reg_bits)  # type: ignore[attr-defined]


def pipeline(traced: Traced, cutoff: float, product_latency: float | None = None) -> Design:
    """Split the step and head graphs into stages at da4ml latency ``cutoff`` (>= 1).

    ``product_latency``: the delay a variable product (a DSP48 multiplier) is given when splitting,
    in da4ml's units, instead of da4ml's own LUT-multiplier model (as many adder levels as the
    wider operand has bits, 8-12 here); None keeps da4ml's model (see :func:`relatency`)."""
    from da4ml.trace import to_pipeline

    if not cutoff >= 1:
        raise QlstmError(f"--pipeline {cutoff}: the latency cutoff must be >= 1 (da4ml delay units)")
    if product_latency is not None and not 0 < product_latency <= cutoff:
        raise QlstmError(
            f"--product-latency {product_latency}: must be > 0 and at most the cutoff {cutoff:g}"
        )
    try:
        if product_latency is None:
            step = to_pipeline(traced.step, cutoff, verbose=False)  # type: ignore[arg-type]
            head = to_pipeline(traced.head, cutoff, verbose=False)  # type: ignore[arg-type]
        else:
            step = _balanced(relatency(traced.step, product_latency), cutoff)
            head = _balanced(relatency(traced.head, product_latency), cutoff)
    except AssertionError as exc:
        raise QlstmError(f"--pipeline {cutoff}: da4ml cannot pipeline at this cutoff ({exc})") from None
    return Design(traced, float(cutoff), step, head, product_latency=product_latency)


def _operands(op) -> list[int]:
    """Buffer indices an operation of a da4ml ``CombLogic`` reads (``da4ml.codegen`` opcodes)."""
    if op.opcode == -1 or op.opcode == 5:  # input, constant
        return []
    if op.opcode in (6, -6):  # MSB mux: the key is in the low half of data
        return [op.data & 0xFFFFFFFF, op.id0, op.id1]
    if op.opcode in (0, 1, 7, 10):
        return [op.id0, op.id1]
    return [op.id0]


def relatency(comb, product_latency: float):
    """``comb`` with every operation's available time recomputed, variable products (opcode 7)
    taking ``product_latency`` and every other operation its own delay as da4ml traced it. The
    operations and so the values are unchanged: only where the pipeline cuts moves."""
    ops = list(comb.ops)
    old = [float(o.latency) for o in ops]
    const = [o.opcode == 5 for o in ops]
    new: list[float] = []
    for o in ops:
        ins = [i for i in _operands(o) if not const[i]]  # a constant is there at any time
        if not ins:
            new.append(0.0 if o.opcode == 5 else float(o.latency))
            continue
        base_old = max([old[i] for i in ins])
        base_new = max(new[i] for i in ins)
        delay = float(product_latency) if o.opcode == 7 else old[len(new)] - base_old
        new.append(base_new + max(delay, 0.0))
    # a constant is placed where its earliest reader's other operands are (never after a reader)
    when = [math.inf] * len(ops)
    for o in ops:
        others = [new[k] for k in _operands(o) if not const[k]]
        for i in _operands(o):
            if const[i]:
                when[i] = min(when[i], max(others) if others else 0.0)
    new = [(w if w < math.inf else 0.0) if c else t for t, c, w in zip(new, const, when, strict=True)]
    return comb._replace(ops=[o._replace(latency=t) for o, t in zip(ops, new, strict=True)])


def _balanced(comb, cutoff: float):
    """da4ml's ``to_pipeline`` at ``cutoff`` without its retiming (which re-traces with da4ml's own
    delays), then the smallest cutoff giving as few stages, to balance the stages (da4ml's
    retiming, by bisection on the cutoff)."""
    from da4ml.trace import to_pipeline

    best = to_pipeline(comb, cutoff, retiming=False, verbose=False)
    n = len(best.solutions)
    lat = max(float(comb.ops[i].latency) for i in comb.out_idxs if i >= 0) if comb.out_idxs else 0.0
    lo, hi = lat / n, float(cutoff)
    while hi - lo > 0.25:
        mid = (lo + hi) / 2
        cand = to_pipeline(comb, mid, retiming=False, verbose=False)
        if len(cand.solutions) <= n:
            best, hi = cand, mid
        else:
            lo = mid
    return best


def _stage_modules(pipe, name: str) -> tuple[dict[str, str], dict[str, str]]:
    from da4ml.codegen.rtl.verilog import comb_logic_gen
    from da4ml.codegen.rtl.verilog.comb import table_mem_gen

    mods, mems = {}, {}
    for i, sol in enumerate(pipe.solutions):
        mods[f"{name}_stage{i}"] = comb_logic_gen(sol, f"{name}_stage{i}", False, "`timescale 1ns / 1ps")
        mems.update(table_mem_gen(sol))
    return mods, mems


def _chain(pipe, name: str, inp: str) -> tuple[list[str], list[str | None], list[Field]]:
    """Instances and registers of a stage chain, one register and one wire per traced value
    (:func:`value_signals`); ``inp``: the packed input of stage 0 (a Verilog expression).
    Returns (lines, the last stage's output signals, their fields)."""
    sols = pipe.solutions
    lines = []
    outs: list[str | None] = []
    out_f: list[Field] = []
    for i, sol in enumerate(sols):
        in_f = fields(sol.inp_qint)
        src = inp
        if i > 0:
            if [f.width for f in in_f] != [f.width for f in out_f]:
                raise AssertionError(f"{name} stage {i}'s inputs are not stage {i - 1}'s outputs")
            regs = value_signals(f"{name}_r{i}", in_f)
            for r, o, f in zip(regs, outs, in_f, strict=True):
                if r is not None:
                    lines.append(f"reg  [{f.width - 1}:0] {r};")
                    lines.append(f"always @(posedge clk) {r} <= {o};")
            src = concat(regs)
        out_f = fields(sol.out_qint)
        outs = value_signals(f"{name}_o{i}", out_f)
        for o, f in zip(outs, out_f, strict=True):
            if o is not None:
                lines.append(f"wire [{f.width - 1}:0] {o};")
        lines.append(f"{name}_stage{i} u_{name}_stage{i} (.model_inp({src}), .model_out({concat(outs)}));")
    return lines, outs, out_f


def top_module(d: Design) -> tuple[str, dict[str, int]]:
    """The wrapper ``qlstm_top`` and its port widths."""
    tr = d.traced
    arch = tr.desc.architecture
    L, C, K = arch.history, arch.input_channels, arch.horizon
    in_f = fields(d.step_pipe.solutions[0].inp_qint)  # type: ignore[attr-defined]
    out_f = fields(d.step_pipe.solutions[-1].out_qint)  # type: ignore[attr-defined]
    head_in = fields(d.head_pipe.solutions[0].inp_qint)  # type: ignore[attr-defined]
    head_out = fields(d.head_pipe.solutions[-1].out_qint)  # type: ignore[attr-defined]
    wx = tr.input_t.width
    for fl in in_f[:C]:
        assert fl.width == wx, "the step graph's x inputs must be input-type wide"
    x_bits = sum(fl.width for fl in in_f[:C])
    st_f = in_f[C:]
    st = value_signals("st", st_f)  # the state registers, one per value: st[e] holds stage-0 input C + e
    wy = tr.result_t.width
    n_it = iterations(tr.desc)
    S, SH = d.stages, d.head_stages
    cw = max(1, math.ceil(math.log2(max(S, SH) + 1)))
    iw = max(1, math.ceil(math.log2(n_it + 1)))
    L_ = []
    a = L_.append
    a("`timescale 1ns / 1ps")
    a(f"// qlstm RTL wrapper: {len(arch.layers)} recurrent layer(s), L={L}, C={C}, k={K}; da4ml latency")
    a(
        f"// cutoff {d.pipeline:g}: {S} stage(s) per step, {SH} for the head; start->done = {n_it}*{S}+{SH} cycles."
    )
    a("//")
    a(
        f"// x: the window, {L} step(s) x {C} channel(s), each {tr.input_t.ap()} (two's complement, {wx} bits),"
    )
    a("//    normalised as the run's model.json states, then cast to this type (as firmware_sim does).")
    a(f"// y: {K} output(s), each {tr.result_t.ap()} ({wy} bits), in the normalised units of the target.")
    a("// Handshake: raise start for one cycle while busy is low; x is latched on that cycle. busy stays")
    a("// high until done, a one-cycle pulse; y is valid from done and held until the next done.")
    a("// rst: synchronous, active high; clears the control (busy, done), not y.")
    e = 0
    for li, layer in enumerate(arch.layers):
        for what in ("h", "c") if layer.cell == "lstm" else ("h",):
            a(f"// st_{e}..st_{e + layer.units - 1}: layer {li} ({layer.cell}) {what}[0..{layer.units - 1}]")
            e += layer.units
    a("// step_r<i>_<j>: value j entering pipeline stage i of one recurrent step (da4ml's order).")
    a(f"module {TOP} (")
    a("    input  clk,")
    a("    input  rst,")
    a("    input  start,")
    a(f"    input  [{L * x_bits - 1}:0] x,  // window: step t, channel c at bits [(t*{C}+c)*{wx} +: {wx}]")
    a("    output busy,")
    a("    output reg done,")
    a(
        f"    output reg [{K * wy - 1}:0] y{',' if d.alarm is not None else ''}  // output j at bits [j*{wy} +: {wy}]"
    )
    if d.alarm is not None:
        from . import alarm as _alarm

        L_ += _alarm.ports(d.alarm)  # type: ignore[arg-type]
    a(");")
    # the latched window, one register per time step (xbuf_t: step t, channel c at [c*wx +: wx])
    for t in range(L):
        a(f"reg [{x_bits - 1}:0] xbuf_{t};")
    a("// state registers: every layer's h (and c), one per value, stage 0's inputs after x_t")
    for r, fl in zip(st, st_f, strict=True):
        if r is not None:
            a(f"reg [{fl.width - 1}:0] {r};")
    a("reg running, heading;")
    a(f"reg [{cw - 1}:0] cyc;")
    a(f"reg [{iw - 1}:0] it;")
    a("assign busy = running | heading;")
    # x_t of the current pass sits in a register loaded at the end of the previous pass, so the
    # window read (a multiplexer over L steps) is not on the step's combinational path
    a(f"reg  [{x_bits - 1}:0] x_cur;")
    a(f"wire [{iw - 1}:0] it_nx = (it < {L - 1}) ? it + 1'b1 : {iw}'d0;")
    a(f"reg  [{x_bits - 1}:0] x_nx;")
    a("always @(*) begin")
    a("    case (it_nx)")
    for t in range(L):
        a(f"        {iw}'d{t}: x_nx = xbuf_{t};")
    a(f"        default: x_nx = {x_bits}'d0;  // it_nx < {L} always")
    a("    endcase")
    a("end")
    lines, outs, out_f2 = _chain(d.step_pipe, "step", concat(["x_cur", *st]))
    assert out_f2 == out_f
    L_ += lines
    # feedback: each state value from its output value, per layer with its pass enable
    upd = []
    for li, io in enumerate(tr.layers):
        pairs = [(io.h_in, io.h_out)] + ([(io.c_in, io.c_out)] if io.c_in is not None else [])
        upd.append(f"            if (it >= {li} && it < {L + li}) begin")
        for s_in, s_out in pairs:
            for e_in, e_out in zip(range(s_in.start, s_in.stop), range(s_out.start, s_out.stop), strict=True):
                fi, r = in_f[e_in], st[e_in - C]
                if r is not None:
                    upd.append(
                        f"                {r} <= {convert(outs[e_out], out_f[e_out], Field(0, fi.k, fi.i, fi.f), own=True)};"  # type: ignore[arg-type]
                    )
        upd.append("            end")
    last = tr.layers[-1]
    h_regs = st[last.h_in.start - C : last.h_in.stop - C]
    if [f.width for f in in_f[last.h_in]] != [f.width for f in head_in]:
        raise AssertionError("head input must be the last layer's h")
    lines, houts, _ = _chain(d.head_pipe, "head", concat(h_regs))
    L_ += lines
    ys = [convert(o, fo, type_field(tr.result_t), own=True) for o, fo in zip(houts, head_out, strict=True)]  # type: ignore[arg-type]
    a(f"wire [{K * wy - 1}:0] y_next = {{{', '.join(reversed(ys))}}};")
    a("always @(posedge clk) begin")
    a("    done <= 1'b0;")
    a("    if (rst) begin")
    a("        running <= 1'b0; heading <= 1'b0; cyc <= 0; it <= 0;")
    a("    end else if (start && !running && !heading) begin")
    a(f"        x_cur <= x[{x_bits - 1}:0]; it <= 0; cyc <= 0; running <= 1'b1;")
    a("        " + " ".join(f"xbuf_{t} <= x[{(t + 1) * x_bits - 1}:{t * x_bits}];" for t in range(L)))
    for r, fl in zip(st, st_f, strict=True):
        if r is not None:
            a(f"        {r} <= {fl.width}'d0;")
    a("    end else if (running) begin")
    a(f"        if (cyc == {cw}'d{S - 1}) begin")
    a("            cyc <= 0;")
    a("            it <= it + 1'b1;")
    a("            x_cur <= x_nx;")
    L_ += upd
    a(f"            if (it == {iw}'d{n_it - 1}) begin running <= 1'b0; heading <= 1'b1; end")
    a("        end else cyc <= cyc + 1'b1;")
    a("    end else if (heading) begin")
    a(f"        if (cyc == {cw}'d{SH - 1}) begin")
    a("            y <= y_next; done <= 1'b1; heading <= 1'b0; cyc <= 0;")
    a("        end else cyc <= cyc + 1'b1;")
    a("    end")
    a("end")
    if d.alarm is not None:
        L_ += _alarm.body(d.alarm, x_bits=x_bits, head_stages=SH, cw=cw, cycles=d.cycles)  # type: ignore[arg-type]
    a("endmodule")
    return "\n".join(L_) + "\n", {"x_bits": L * x_bits, "y_bits": K * wy, "wx": wx, "wy": wy}


#: Files of the self-checking testbench in ``tb/`` (read from ``src/``, where the ROMs are).
TB_INPUTS = "tb_inputs.hex"
TB_EXPECTED = "tb_expected.hex"
TB_OUTPUTS = "tb_outputs.txt"


def testbench(widths: dict[str, int], clock_ns: float, cycles: int) -> str:
    """The self-checking testbench (standard Verilog-2001 plus IEEE 1800 ``$fatal``; Verilator
    ``--timing``, xsim ``xvlog -sv``, Icarus ``-g2012``). Run in ``src/`` (the ROMs' ``$readmemh``
    paths are relative to it). It reads one window per line (hex, ``x`` of :func:`top_module`) from
    ``+in=`` (default ``../tb/tb_inputs.hex``), writes ``<cycles start->done> <y hex>`` per window
    to ``+out=`` (default ``../tb/tb_outputs.txt``) and, when ``+expect=`` is given or the default
    files are used, compares every ``y`` word with the line of ``../tb/tb_expected.hex`` (exact
    equality, ``!==``), prints one ``tb: PASS``/``tb: FAIL`` line with the window count,
    mismatches and the measured cycles, and ends with ``$finish`` (``$fatal(1)`` on a failure).
    A window without ``done`` within ``2 * cycles + 16`` cycles (``cycles``: by construction)
    fails."""
    xb, yb = widths["x_bits"], widths["y_bits"]
    return self_checking_tb(
        clock_ns,
        cycles,
        header=f"""// Without plusargs: windows from ../tb/{TB_INPUTS} (one hex word of {xb} bits per line, x of {TOP}),
// expected outputs from ../tb/{TB_EXPECTED} (one hex word of {yb} bits per line: y of {TOP}, i.e.
// the raw bits of the output ap_fixed, computed by qlstm's firmware_sim); every y is compared with its
// expected word by exact equality. Writes "<cycles start->done> <y hex>" per window to ../tb/{TB_OUTPUTS}.""",
        decls=f"""reg [{xb - 1}:0] x = 0;
reg [{yb - 1}:0] y_exp = 0;
wire busy, done;
wire [{yb - 1}:0] y;
{TOP} dut (.clk(clk), .rst(rst), .start(start), .x(x), .busy(busy), .done(done), .y(y));""",
        read_in=('"%h\\n", x', 1),
        out_line='"%0d %h", cycles, y',
        read_exp=('"%h\\n", y_exp', 1),
        differs="y !== y_exp",
        show='"tb: window %0d: y = %h, expected %h", n, y, y_exp',
    )


def self_checking_tb(
    clock_ns: float,
    cycles: int,
    *,
    header: str,
    decls: str,
    read_in: tuple[str, int],
    out_line: str,
    read_exp: tuple[str, int],
    differs: str,
    show: str,
    setup: str = "",
    on_start: str = "",
    before_wait: str = "",
    per_cycle: str = "",
) -> str:
    """The one self-checking testbench skeleton (the plain and the alarm design's): file handling,
    the start/done loop with the cycle count and a timeout, the exact comparison (``differs``, a
    Verilog expression true on a mismatch) and the ``tb: PASS``/``tb: FAIL`` line. ``read_in``,
    ``read_exp``: ``$fscanf`` format-and-arguments and the count of values a line holds; ``setup``
    runs after the files are open (``defaults``: no ``+in=`` given), ``on_start`` in the start
    cycle, ``before_wait`` after it, ``per_cycle`` after every clock edge while waiting for ``done``."""
    half = clock_ns / 2
    limit = 2 * cycles + 16
    fin_fmt, fin_n = read_in
    fexp_fmt, fexp_n = read_exp
    return f"""`timescale 1ns / 1ps
// Self-checking testbench of {TOP} (written by qlstm rtl). Run it from src/, where the ROM .mem files are.
{header}
// Plusargs: +in=FILE +out=FILE +expect=FILE (with +in and no +expect, nothing is checked).
// Ends with one line "tb: PASS ..." and $finish, or "tb: FAIL ..." and $fatal(1).
module {TB};
reg clk = 1'b0, rst = 1'b1, start = 1'b0;
{decls}
always #{half:g} clk = ~clk;
integer fin, fout, fexp, code, ecode, cycles, n, bad, cmin, cmax, check, defaults;
reg [8*4096-1:0] fname_in, fname_out, fname_exp;
initial begin
    check = 0;
    defaults = 0;
    fexp = 0;
    if (!$value$plusargs("in=%s", fname_in)) begin
        fname_in = "../tb/{TB_INPUTS}";
        fname_exp = "../tb/{TB_EXPECTED}";
        check = 1;
        defaults = 1;
    end
    if ($value$plusargs("expect=%s", fname_exp)) check = 1;
    if (!$value$plusargs("out=%s", fname_out)) fname_out = "../tb/{TB_OUTPUTS}";
    fin = $fopen(fname_in, "r");
    fout = $fopen(fname_out, "w");
    if (check) fexp = $fopen(fname_exp, "r");
    if (fin == 0 || fout == 0 || (check && fexp == 0)) begin
        $display("tb: FAIL cannot open the input, expected or output file (run from src/)");
        $fatal(1, "tb: FAIL");
    end
{setup}    n = 0;
    bad = 0;
    cmin = 0;
    cmax = 0;
    repeat (2) @(posedge clk);
    #1 rst = 1'b0;
    code = $fscanf(fin, {fin_fmt});
    while (code == {fin_n}) begin
        @(negedge clk) begin start = 1'b1;{on_start} end
        @(posedge clk);
        #1 start = 1'b0;
        cycles = 0;{before_wait}
        while (!done && cycles < {limit}) begin
            @(posedge clk);
            #1 cycles = cycles + 1;{per_cycle}
        end
        $fdisplay(fout, {out_line});
        if (n == 0 || cycles < cmin) cmin = cycles;
        if (cycles > cmax) cmax = cycles;
        if (!done) begin
            bad = bad + 1;
            if (bad <= 5) $display("tb: window %0d: no done within {limit} cycles", n);
        end else if (check) begin
            ecode = $fscanf(fexp, {fexp_fmt});
            if (ecode != {fexp_n}) begin
                bad = bad + 1;
                if (bad <= 5) $display("tb: window %0d: no expected output left in the file", n);
            end else if ({differs}) begin
                bad = bad + 1;
                if (bad <= 5) $display({show});
            end
        end
        n = n + 1;
        code = $fscanf(fin, {fin_fmt});
    end
    $fclose(fout);
    if (check) begin
        ecode = $fscanf(fexp, {fexp_fmt});
        if (ecode == {fexp_n}) begin
            bad = bad + 1;
            $display("tb: more expected outputs than windows");
        end
        if (n == 0) bad = bad + 1;
    end
    if (bad == 0 && check)
        $display("tb: PASS %0d windows, 0 mismatches; cycles start->done %0d-%0d (measured in RTL simulation)", n, cmin, cmax);
    else if (bad == 0)
        $display("tb: %0d windows, not checked (no +expect file); cycles start->done %0d-%0d (measured in RTL simulation)", n, cmin, cmax);
    else begin
        $display("tb: FAIL %0d windows, %0d mismatches; cycles start->done %0d-%0d (measured in RTL simulation)", n, bad, cmin, cmax);
        $fatal(1, "tb: FAIL");
    end
    $finish;
end
endmodule
"""


def xdc(clock_ns: float) -> str:
    return (
        f"# qlstm RTL: the clock is an assumption ({clock_ns:g} ns); no timing closure was run.\n"
        f"create_clock -period {clock_ns:g} -name clk [get_ports clk]\n"
    )


#: Modes of ``build_vivado.tcl`` (``-tclargs MODE``), the first the default.
VIVADO_MODES = ("ooc", "ooc_impl", "full")


def build_tcl(part: str, clock_ns: float, sources: list[str], mems: list[str]) -> str:
    """The Vivado non-project script: every source and ROM file named (``sources``, ``mems``:
    names inside ``src/``), modes :data:`VIVADO_MODES`. ``ooc`` (default): out-of-context
    synthesis of ``qlstm_top`` (its ports are not pins: the window input alone is wider than any
    package's I/O), utilisation and timing summary after synthesis; ``ooc_impl``: the same, then
    opt/place/route out of context and post-route reports; ``full``: the in-context flow (every
    port on a pin; small models only)."""
    src = "\n".join(f"    src/{n} \\" for n in sources)
    mem = "\n".join(f"    src/{n} \\" for n in mems)
    return f"""# Vivado (non-project mode) for {part}, written by qlstm rtl; the clock ({clock_ns:g} ns) is an assumption.
# Usage (from this folder):  vivado -mode batch -source build_vivado.tcl [-tclargs MODE]
#   ooc       (default) out-of-context synthesis of {TOP}: synth_design -mode out_of_context,
#             then reports/ooc_utilization.rpt and reports/ooc_timing_summary.rpt (after synthesis)
#   ooc_impl  the same, then opt_design/place_design/route_design out of context and
#             reports/ooc_impl_utilization.rpt, reports/ooc_impl_timing_summary.rpt (after routing)
#   full      in-context synthesis and implementation (every port of {TOP} on a package pin:
#             only small models fit the pins); reports/utilization.rpt, reports/timing.rpt
set mode ooc
if {{[llength $argv] > 0}} {{ set mode [lindex $argv 0] }}
if {{[lsearch -exact {{{" ".join(VIVADO_MODES)}}} $mode] < 0}} {{
    puts "ERROR: unknown mode $mode (choose one of {", ".join(VIVADO_MODES)})"
    exit 1
}}
set here [file dirname [file normalize [info script]]]
set part {part}
set top {TOP}
set sources [list \\
{src}
]
set mems [list \\
{mem}
]
foreach f $sources {{ read_verilog $here/$f }}
foreach m $mems {{ read_mem $here/$m }}
read_xdc $here/constraints/qlstm.xdc
file mkdir $here/reports
if {{$mode eq "full"}} {{
    synth_design -top $top -part $part
    opt_design
    place_design
    route_design
    report_utilization -file $here/reports/utilization.rpt
    report_timing_summary -file $here/reports/timing.rpt
}} else {{
    synth_design -mode out_of_context -top $top -part $part
    report_utilization -file $here/reports/ooc_utilization.rpt
    report_timing_summary -file $here/reports/ooc_timing_summary.rpt
    if {{$mode eq "ooc_impl"}} {{
        opt_design
        place_design
        route_design
        report_utilization -file $here/reports/ooc_impl_utilization.rpt
        report_timing_summary -file $here/reports/ooc_impl_timing_summary.rpt
    }}
}}
"""


def xsim_script() -> str:
    """``tb/run_xsim.sh``: the self-checking testbench in Vivado's simulator (xvlog/xelab/xsim)."""
    return f"""#!/bin/sh
# Runs the self-checking testbench in Vivado's simulator (written by qlstm rtl; needs Vivado on PATH).
# The ROM .mem files are read relative to src/, so everything runs there.
set -e
cd "$(dirname "$0")/../src"
xvlog -sv ../tb/{TB}.v *.v
xelab -debug off {TB} -s {TB}_sim
xsim {TB}_sim -R
# the last line printed is "tb: PASS ..." or "tb: FAIL ..." (xsim stops at $fatal)
"""


def write(d: Design, out: Path, part: str, clock_ns: float) -> dict[str, int]:
    """Write the complete folder: ``src/`` (Verilog, ROM ``.mem`` files), ``tb/``, ``constraints/``,
    ``build_vivado.tcl``. Returns the port widths."""
    import da4ml.codegen.rtl as rtlpkg

    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    (out / "tb").mkdir(exist_ok=True)
    (out / "constraints").mkdir(exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    mods, mems = _stage_modules(d.step_pipe, "step")
    m2, mem2 = _stage_modules(d.head_pipe, "head")
    mods.update(m2)
    mems.update(mem2)
    if d.alarm is not None:
        m3, mem3 = _stage_modules(d.alarm.pipe, "alarm")  # type: ignore[attr-defined]
        mods.update(m3)
        mems.update(mem3)
    for name, code in mods.items():
        (src / f"{name}.v").write_text(code)
    for name, mem in mems.items():
        (src / name).write_text(mem)
    for p in sorted((Path(rtlpkg.__file__).parent / "verilog" / "source").glob("*.v")):
        shutil.copy(p, src / p.name)
    top, widths = top_module(d)
    (src / f"{TOP}.v").write_text(top)
    if d.alarm is not None:
        from . import alarm as _alarm

        tb = _alarm.testbench(widths, d.alarm, clock_ns, d.cycles)  # type: ignore[arg-type]
    else:
        tb = testbench(widths, clock_ns, d.cycles)
    (out / "tb" / f"{TB}.v").write_text(tb)
    (out / "tb" / "run_xsim.sh").write_text(xsim_script())
    (out / "tb" / "run_xsim.sh").chmod(0o755)
    (out / "constraints" / "qlstm.xdc").write_text(xdc(clock_ns))
    sources = sorted(p.name for p in src.glob("*.v"))
    (out / "build_vivado.tcl").write_text(build_tcl(part, clock_ns, sources, sorted(mems)))
    return widths
