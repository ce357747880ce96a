"""The quench-precursor alarm in RTL: residual, score, threshold and run-length counter.

The alarm of :mod:`qlstm.detect.alarm` (``alarm_fixed``, the bit-exact reference) computed by the
generated design behind the network's output, with the types of the description's
:class:`~qlstm.description.AlarmQuant` (``quantization.alarm``, or the default derived from the
description):

* **Interface: a stream of windows.** Consecutive ``start``s are consecutive windows of one
  recording (window ``n`` holds samples ``n .. n+L-1``). The measured sample the residual needs is
  the newest sample of the window just latched (step ``L-1``, the target channel, input type): it
  is the sample that windows ``n-1 .. n-k`` forecast ``1 .. k`` steps ahead, whose outputs the
  wrapper keeps (``k`` past outputs, ``k`` result-type values each). No extra input port is
  needed. ``alarm_clear`` (sampled with ``start``) begins a new recording: the alarm state is
  zeroed and the window is window 0 again. The alarm's output for window ``n`` is the alarm of
  sample ``n + L - 1``; it is valid (non-zero) from window ``k`` on, exactly where every step's
  residual exists (``alarm_fixed``'s ``valid``).
* **Arithmetic** (traced with da4ml, one graph, pipelined at the design's cutoff):
  ``r_j = (residual_t)(y - yhat_j)``, ``a = min((score_t) sum_j |r_j|, clip)``, the score update
  (``instant``: ``a``; ``ewma``: ``(score_t)((s (2**n - 1) + a) / 2**n)``; ``cusum``:
  ``(score_t) max(0, s + a - kappa)``) and ``above = s' >= theta``.
* **State** (written in the wrapper, like the recurrent state): the score register, the run-length
  counter (``above ? min(c + 1, c_max) : 0``, ``c_max`` the counter type's largest value), the
  alarm bit ``c >= M`` and the window count since the last clear, all registered.
* **Constants are ports** (``alarm_theta`` threshold type, ``alarm_clip`` and ``alarm_kappa`` score
  type, ``alarm_min_run`` counter type; latched with ``start``): a re-calibrated threshold needs
  no rebuild. ``clip`` = the score type's largest value means no clip.
* **Timing**: the alarm graph reads only registers that are stable from the ``start`` edge (the
  latched window, the kept outputs, the score), so it runs beside the recurrent steps:
  ``score``/``alarm_count``/``alarm`` are written ``A`` cycles after the ``start`` edge
  (``alarm_valid`` pulses then; ``A`` = the alarm graph's stages + 1, a register between the graph
  and the counter) and the window's output ``y``
  enters the kept outputs at ``done``. ``A`` must not exceed the window's cycles (checked), so the
  alarm adds no cycle to the window's latency.

:func:`interpret` runs the traced graph with da4ml's interpreter in this schedule;
:func:`reference` computes the same outputs with ``alarm_fixed`` (the firmware's alarm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qlstm.description import AlarmQuant, ModelDescription
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType

from . import trace as _trace

#: Bump when the generated alarm logic changes (the RTL cache of ``detect --backend rtl`` is keyed by it).
ALARM_FORMAT = 4
#: the graph's inputs, in order: y, yhat_0 .. yhat_{k-1}, then these
_CONSTS = ("score", "clip", "kappa", "theta")


@dataclass
class AlarmDesign:
    """The traced and pipelined alarm graph ``[y, yhat_0..k-1, s, clip, kappa, theta] -> [s', above]``."""

    rule: object  # qlstm.detect.alarm.AlarmRule (score kind, ewma_shift, min_run default)
    types: AlarmQuant
    input_t: FixedType
    result_t: FixedType
    horizon: int
    history: int
    channels: int
    target_channel: int
    comb: object  # da4ml CombLogic
    pipe: object | None = None  # da4ml Pipeline
    #: the graph's values are the real values times ``2**shift`` (:func:`qlstm.rtl.trace.graph_shift`):
    #: the same mantissas, every constant exact in da4ml
    shift: int = 0

    @property
    def stages(self) -> int:
        return len(self.pipe.solutions) if self.pipe is not None else 0  # type: ignore[attr-defined]

    @property
    def cycles(self) -> int:
        """Cycles from the ``start`` edge to ``alarm_valid``: the graph's stages, then one register
        before the counter (so the counter's increment and compare are a path of their own)."""
        return self.stages + 1

    def summary(self) -> dict:
        t = self.types
        return {
            "score": self.rule.score,  # type: ignore[attr-defined]
            "ewma_shift": self.rule.ewma_shift,  # type: ignore[attr-defined]
            "types": {n: getattr(t, n).describe() for n in ("residual", "score", "threshold", "counter")},
            "stages": self.stages,
            "cycles_by_construction": self.cycles,
            "interface": "stream of consecutive windows; y = newest sample of the window (target channel); "
            "alarm_clear with start begins a recording",
        }


def _types(desc: ModelDescription) -> AlarmQuant:
    q = desc.quantization
    if q is None:
        raise QlstmError("the alarm needs a quantized description")
    types = q.alarm_types()
    for name in ("residual", "score", "threshold", "counter"):
        _trace.check_expressible(getattr(types, name), f"alarm.{name}")
    if types.score.frac != types.threshold.frac:
        raise QlstmError(
            f"alarm: score {types.score.describe()} and threshold {types.threshold.describe()} need the same "
            "fractional bits"
        )
    if types.counter.frac != 0 or types.counter.signed:
        raise QlstmError(
            f"alarm.counter {types.counter.describe()}: the RTL counter must be an unsigned integer"
        )
    return types


def trace_alarm(desc: ModelDescription, rule) -> AlarmDesign:
    """Trace the alarm's arithmetic for ``desc``'s types and ``rule`` (an ``AlarmRule``)."""
    t = _trace._da4ml()
    types = _types(desc)
    q = desc.quantization
    assert q is not None
    a_ = desc.architecture
    k = a_.horizon
    rt, st, tt = types.residual, types.score, types.threshold
    # traced scaled by 2**sh: a 24-bit model's score has 36 fraction bits, more than da4ml keeps
    # in a constant (the saturation bound); the scaled graph has the same mantissas
    sh = _trace.graph_shift((q.input, q.output, rt, st, tt))
    y = _trace._inputs(t, q.input, 1, sh)[0]
    p = _trace._inputs(t, q.output, k, sh)
    s_prev, clip, kappa = _trace._inputs(t, st, 3, sh)
    theta = _trace._inputs(t, tt, 1, sh)[0]
    r = [_trace.cast(y - pj, rt, sh) for pj in p]  # the difference is exact, then one cast
    a = _trace.cast(_trace._tree_sum([abs(v) for v in r]), st, sh)  # exact sum, one cast
    a = a.min_of(clip)
    if rule.score == "instant":
        s = a
    elif rule.score == "ewma":
        n = rule.ewma_shift
        s = _trace.cast((s_prev * ((1 << n) - 1) + a) * 2.0**-n, st, sh) if n else a
    else:
        s = _trace.cast((s_prev + a - kappa).max_of(0.0), st, sh)
    above = s >= theta
    comb = t.comb_trace([y, *p, s_prev, clip, kappa, theta], [s, above], keep_dead_inputs=True)
    return AlarmDesign(
        rule, types, q.input, q.output, k, a_.history, a_.input_channels,
        desc.normalisation.target_channel, comb, shift=sh,
    )  # fmt: skip


def pipeline(ad: AlarmDesign, cutoff: float) -> AlarmDesign:
    """Split the alarm graph into stages at da4ml latency ``cutoff`` (the design's)."""
    from da4ml.trace import to_pipeline

    ad.pipe = to_pipeline(ad.comb, cutoff, verbose=False)  # type: ignore[arg-type]
    return ad


# ====================================================================== the schedule, in Python
@dataclass(frozen=True)
class Constants:
    """The alarm's runtime constants as mantissas (the ports ``alarm_theta`` ... ``alarm_min_run``)."""

    theta: int
    clip: int
    kappa: int
    min_run: int


def _check_constants(ad: AlarmDesign, c: Constants) -> None:
    st, tt, ct = ad.types.score, ad.types.threshold, ad.types.counter
    for name, v, t in (
        ("theta", c.theta, tt),
        ("clip", c.clip, st),
        ("kappa", c.kappa, st),
        ("min_run", c.min_run, ct),
    ):
        if not t.min_int <= v <= t.max_int:
            raise QlstmError(f"alarm {name} {v} outside {t.describe()} (mantissa {t.min_int}..{t.max_int})")


def interpret(
    ad: AlarmDesign, y_m: np.ndarray, p_m: np.ndarray, clear: np.ndarray, c: Constants
) -> dict[str, np.ndarray]:
    """The alarm over a stream of windows with da4ml's interpreter, in the wrapper's schedule.

    ``y_m`` (N,) the newest target sample of each window (input-type mantissas), ``p_m`` (N, k)
    each window's outputs (result-type mantissas), ``clear`` (N,) bool (a recording starts).
    Returns int64 ``score``, ``counter`` and bool ``alarm`` (N,): the registers after window ``n``.
    """
    _check_constants(ad, c)
    k, st, tt = ad.horizon, ad.types.score, ad.types.threshold
    cmax = ad.types.counter.max_int
    n = len(y_m)
    out_s = np.zeros(n, dtype=np.int64)
    out_c = np.zeros(n, dtype=np.int64)
    out_a = np.zeros(n, dtype=bool)
    hist: list[np.ndarray] = []
    s = cnt = nwin = 0
    for i in range(n):
        valid = (not clear[i]) and nwin >= k
        nwin = 1 if clear[i] else min(nwin + 1, k)
        if valid:
            row = [y_m[i] * ad.input_t.lsb] + [hist[j][j] * ad.result_t.lsb for j in range(k)]
            row += [s * st.lsb, c.clip * st.lsb, c.kappa * st.lsb, c.theta * tt.lsb]
            row = [v * 2.0**ad.shift for v in row]  # the graph's scale (exact: a power of two)
            s_new, above = ad.comb.predict(np.array([row], dtype=np.float64))[0]  # type: ignore[attr-defined]
            s = int(_trace.to_mantissa(np.array([s_new]), st, ad.shift)[0])
            cnt = min(cnt + 1, cmax) if above == 1 else 0
            if above not in (0, 1):
                raise AssertionError(f"alarm compare gave {above}")
        else:
            s = cnt = 0
        out_s[i], out_c[i], out_a[i] = s, cnt, cnt >= c.min_run
        hist = [np.asarray(p_m[i])] + hist[: k - 1]
    return {"score": out_s, "counter": out_c, "alarm": out_a}


def reference(
    types: AlarmQuant, rule, input_t: FixedType, result_t: FixedType, y_m, p_m, clear, c: Constants
) -> dict[str, np.ndarray]:
    """The same outputs from :func:`qlstm.detect.alarm.alarm_fixed` (the firmware's alarm): each
    recording's windows become its samples (window ``n`` -> sample ``n + L - 1``; the forecasts
    aligned to the sample they target), exactly as ``qlstm detect --backend firmware`` feeds it."""
    from dataclasses import replace

    from qlstm.detect.alarm import alarm_fixed

    y_m, p_m, clear = (
        np.asarray(y_m, dtype=np.int64),
        np.asarray(p_m, dtype=np.int64),
        np.asarray(clear, bool),
    )
    n, k = p_m.shape
    r = replace(rule, min_run=c.min_run)
    starts = list(np.flatnonzero(clear)) if clear.any() else []
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = [*starts, n]
    out = {"score": np.zeros(n, np.int64), "counter": np.zeros(n, np.int64), "alarm": np.zeros(n, bool)}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        m = b - a
        pa = np.zeros((m, k), dtype=np.int64)
        valid = np.arange(m) >= k
        for j in range(k):
            src = np.arange(m) - 1 - j  # window n-1-j forecast sample n+L-1 j+1 steps ahead
            ok = src >= 0
            pa[ok, j] = p_m[a + src[ok], j]
        res = alarm_fixed(
            y_m[a:b], input_t.frac, pa, result_t.frac, valid, types, r, c.kappa, c.theta, c.clip
        )
        for key in out:
            out[key][a:b] = res[key]
    return out


#: Share of windows with a non-zero CUSUM score that :func:`check_constants_for` aims at.
CUSUM_ACTIVE_SHARE = 0.1


def check_constants_for(ad: AlarmDesign, xm: np.ndarray, y_ref: np.ndarray) -> Constants:
    """Constants for checking the RTL on arbitrary windows (``qlstm rtl --sim``): the clip at half
    the score type's range; the CUSUM drift the largest of ``max_int >> k`` (k = 3, 4, ...) that
    leaves a non-zero score on at least :data:`CUSUM_ACTIVE_SHARE` of the windows (0 if none does),
    so that the accumulate, drift and floor paths are all exercised (a fixed eighth of the range
    left every score 0 on random windows: a check that could not fail); the threshold at the
    median of the non-zero reference scores (so the alarm takes both states); ``M`` of the rule.
    """
    st = ad.types.score
    clip = st.max_int // 2
    m = ad.rule.min_run  # type: ignore[attr-defined]
    m = min(m, ad.types.counter.max_int)
    clear = np.zeros(len(xm), dtype=bool)
    clear[0] = True
    y = newest_target(ad, xm)

    def scores(kappa: int) -> np.ndarray:
        top = Constants(ad.types.threshold.max_int, clip, kappa, m)
        return reference(ad.types, ad.rule, ad.input_t, ad.result_t, y, y_ref, clear, top)["score"]

    kappa, s = 0, scores(0)
    if ad.rule.score == "cusum":  # type: ignore[attr-defined]
        for k in range(3, st.width):
            sk = scores(st.max_int >> k)
            if np.count_nonzero(sk) >= CUSUM_ACTIVE_SHARE * len(sk):
                kappa, s = st.max_int >> k, sk
                break
    pos = s[s > 0]
    theta = int(np.median(pos)) if len(pos) else 1
    return Constants(min(theta, ad.types.threshold.max_int), clip, kappa, m)


def newest_target(ad: AlarmDesign, xm: np.ndarray) -> np.ndarray:
    """(N, L, C) input-type mantissas -> (N,) the newest sample's target channel (what the RTL reads)."""
    return np.asarray(xm, dtype=np.int64)[:, -1, ad.target_channel]


def stream_windows(z: np.ndarray, history: int) -> np.ndarray:
    """(T, C) normalised samples -> every window (T - L + 1, L, C), window ``n`` = samples ``n..n+L-1``."""
    v = np.lib.stride_tricks.sliding_window_view(np.asarray(z), history, axis=0)  # (N, C, L)
    return np.ascontiguousarray(np.moveaxis(v, -1, 1))


# ====================================================================== Verilog
def ports(ad: AlarmDesign) -> list[str]:
    st, tt, ct = ad.types.score, ad.types.threshold, ad.types.counter
    return [
        "    input  alarm_clear,  // with start: this window begins a new recording",
        f"    input  [{tt.width - 1}:0] alarm_theta,  // threshold, {tt.describe()} mantissa",
        f"    input  [{st.width - 1}:0] alarm_clip,  // largest combined residual, {st.describe()}",
        f"    input  [{st.width - 1}:0] alarm_kappa,  // CUSUM drift, {st.describe()}",
        f"    input  [{ct.width - 1}:0] alarm_min_run,  // M: samples at or above theta to alarm",
        f"    output reg [{st.width - 1}:0] score,  // {st.describe()} mantissa",
        f"    output reg [{ct.width - 1}:0] alarm_count,  // run length, {ct.describe()}",
        "    output reg alarm,",
        "    output reg alarm_valid  // one cycle: score/alarm_count/alarm of this window written",
    ]


def body(ad: AlarmDesign, *, x_bits: int, head_stages: int, cw: int, cycles: int) -> list[str]:
    """The alarm's registers and graph inside ``qlstm_top`` (after the head)."""
    from .verilog import Field, _chain, convert, fields

    if ad.pipe is None:
        raise AssertionError("pipeline the alarm first")
    n_st = ad.stages
    if ad.cycles > cycles:
        raise QlstmError(
            f"the alarm needs {ad.cycles} cycles, more than the window's {cycles}; raise the pipeline cutoff"
        )
    k = ad.horizon
    wx, wy = ad.input_t.width, ad.result_t.width
    st, tt, ct = ad.types.score, ad.types.threshold, ad.types.counter
    L = ad.history
    nw = max(1, math.ceil(math.log2(k + 1)))
    aw = max(1, math.ceil(math.log2(n_st + 2)))
    lines = [
        "// ---- the alarm (qlstm.rtl.alarm): residual, score, threshold, run-length counter",
        f"reg [{k * k * wy - 1}:0] ahist;  // entry j: the outputs of the window j+1 before this one",
        f"reg [{nw - 1}:0] anwin;  // windows since the last clear (saturates at k)",
        "reg avalid, apend, a_above_q;",
        f"reg [{st.width - 1}:0] a_s_q;  // the graph's outputs, registered before the counter",
        f"reg [{aw - 1}:0] acyc;",
        f"reg [{tt.width - 1}:0] a_theta;",
        f"reg [{st.width - 1}:0] a_clip, a_kappa;",
        f"reg [{ct.width - 1}:0] a_min_run;",
    ]
    y_off = ad.target_channel * wx  # in xbuf_{L - 1}, the window's newest time step (rtl.verilog)
    srcs = [(f"xbuf_{L - 1}[{y_off + wx - 1}:{y_off}]", ad.input_t)]
    for j in range(k):
        lo = (j * k + j) * wy
        srcs.append((f"ahist[{lo + wy - 1}:{lo}]", ad.result_t))
    srcs += [("score", st), ("a_clip", st), ("a_kappa", st), ("a_theta", tt)]
    in_f = fields(ad.pipe.solutions[0].inp_qint)  # type: ignore[attr-defined]
    parts = []
    for (expr, t), f in zip(srcs, in_f, strict=True):
        if f.width == 0:
            continue
        if (f.k, f.i, f.f) != _trace.kif(t, ad.shift):
            raise AssertionError(f"alarm input field {f} is not {t.describe()}")
        parts.append(expr)
    # the packed input goes straight into stage 0's port: no wire as wide as all of them (issue #16)
    chain, outs, out_f = _chain(ad.pipe, "alarm", "{" + ", ".join(reversed(parts)) + "}")
    lines += chain
    s_next = convert(outs[0], out_f[0], Field(0, *_trace.kif(st, ad.shift)), own=True)  # type: ignore[arg-type]
    lines.append(f"wire [{st.width - 1}:0] a_s_next = {s_next};")
    lines.append(f"wire a_above = {convert(outs[1], out_f[1], Field(0, 0, 1, 0), own=True)};")  # type: ignore[arg-type]
    cmax = ct.max_int
    lines.append(
        f"wire [{ct.width - 1}:0] a_cnt_next = a_above_q ? ((alarm_count == {ct.width}'d{cmax}) ? "
        f"{ct.width}'d{cmax} : alarm_count + 1'b1) : {ct.width}'d0;"
    )
    kk = f"{nw}'d{k}"
    lines += [
        "always @(posedge clk) begin",
        "    alarm_valid <= 1'b0;",
        "    if (rst) begin",
        f"        anwin <= 0; apend <= 1'b0; avalid <= 1'b0; acyc <= 0; score <= {st.width}'d0;",
        f"        alarm_count <= {ct.width}'d0; alarm <= 1'b0;",
        "    end else if (start && !running && !heading) begin",
        "        a_theta <= alarm_theta; a_clip <= alarm_clip; a_kappa <= alarm_kappa; a_min_run <= alarm_min_run;",
        f"        avalid <= !alarm_clear && anwin >= {kk};",
        f"        anwin <= alarm_clear ? {nw}'d1 : (anwin >= {kk} ? anwin : anwin + 1'b1);",
        "        apend <= 1'b1; acyc <= 0;",
        "    end else if (apend) begin",
        f"        if (acyc == {aw}'d{n_st - 1}) begin a_s_q <= a_s_next; a_above_q <= a_above; end",
        f"        if (acyc == {aw}'d{n_st}) begin",
        "            apend <= 1'b0; alarm_valid <= 1'b1;",
        "            if (avalid) begin",
        "                score <= a_s_q; alarm_count <= a_cnt_next; alarm <= a_cnt_next >= a_min_run;",
        f"            end else begin score <= {st.width}'d0; alarm_count <= {ct.width}'d0; alarm <= 1'b0; end",
        "        end else acyc <= acyc + 1'b1;",
        "    end",
        "end",
        "// the window's outputs join the kept outputs when it is done",
        f"always @(posedge clk) if (!rst && heading && cyc == {cw}'d{head_stages - 1})",
        f"    ahist <= {{ahist[{(k - 1) * k * wy - 1}:0], y_next}};" if k > 1 else "    ahist <= y_next;",
    ]
    return lines


#: The alarm constants of the self-checking testbench's default run (``tb/``, hex: theta clip kappa min_run).
TB_CONSTANTS = "tb_constants.hex"


def testbench(widths: dict[str, int], ad: AlarmDesign, clock_ns: float, cycles: int) -> str:
    """The self-checking testbench of the alarm design (:func:`qlstm.rtl.verilog.self_checking_tb`):
    ``+in=FILE`` lines ``<clear> <x hex>``, constants from ``+theta= +clip= +kappa= +min_run=``
    (hex; without ``+in=`` from ``../tb/tb_constants.hex``); writes per window ``<cycles
    start->done> <y hex> <cycles start->alarm_valid> <score hex> <alarm_count> <alarm>`` and
    compares ``y``, ``score``, ``alarm_count`` and ``alarm`` with the expected file's line ``<y
    hex> <score hex> <alarm_count hex> <alarm>`` by exact equality."""
    from .verilog import TB_EXPECTED, TB_INPUTS, TB_OUTPUTS, TOP, self_checking_tb

    st, tt, ct = ad.types.score, ad.types.threshold, ad.types.counter
    yb = widths["y_bits"]
    return self_checking_tb(
        clock_ns,
        cycles,
        header=f"""// The design with the quench-precursor alarm: the windows are one stream. Without plusargs: windows
// from ../tb/{TB_INPUTS} ("<clear> <x hex>" per line), the alarm constants from ../tb/{TB_CONSTANTS}
// ("<theta> <clip> <kappa> <min_run>", hex mantissas), expected "<y hex> <score hex> <alarm_count hex>
// <alarm>" per window from ../tb/{TB_EXPECTED} (raw bits, computed by qlstm's firmware_sim and its
// alarm), compared by exact equality. Writes "<cycles> <y hex> <alarm cycles> <score hex> <alarm_count>
// <alarm>" per window to ../tb/{TB_OUTPUTS}. Plusargs +theta= +clip= +kappa= +min_run= (hex) override.""",
        decls=f"""reg clr = 1'b0;
reg [{widths["x_bits"] - 1}:0] x = 0;
reg [{tt.width - 1}:0] theta = 0;
reg [{st.width - 1}:0] clip = 0, kappa = 0;
reg [{ct.width - 1}:0] min_run = 0;
wire busy, done, alarm, alarm_valid;
wire [{yb - 1}:0] y;
wire [{st.width - 1}:0] score;
wire [{ct.width - 1}:0] alarm_count;
reg [{yb - 1}:0] y_exp = 0;
reg [{st.width - 1}:0] score_exp = 0;
reg [{ct.width - 1}:0] count_exp = 0;
reg alarm_exp = 1'b0;
integer c, acycles, fcon;
{TOP} dut (.clk(clk), .rst(rst), .start(start), .x(x), .busy(busy), .done(done), .y(y),
    .alarm_clear(clr), .alarm_theta(theta), .alarm_clip(clip), .alarm_kappa(kappa), .alarm_min_run(min_run),
    .score(score), .alarm_count(alarm_count), .alarm(alarm), .alarm_valid(alarm_valid));""",
        setup=f"""    if (defaults) begin
        fcon = $fopen("../tb/{TB_CONSTANTS}", "r");
        code = 0;
        if (fcon != 0) code = $fscanf(fcon, "%h %h %h %h\\n", theta, clip, kappa, min_run);
        if (code != 4) begin
            $display("tb: FAIL cannot read ../tb/{TB_CONSTANTS}");
            $fatal(1, "tb: FAIL");
        end
    end
    if ($value$plusargs("theta=%h", theta)) ;
    if ($value$plusargs("clip=%h", clip)) ;
    if ($value$plusargs("kappa=%h", kappa)) ;
    if ($value$plusargs("min_run=%h", min_run)) ;
""",
        read_in=('"%d %h\\n", c, x', 2),
        on_start=" clr = (c != 0);",
        before_wait="\n        acycles = -1;",
        per_cycle="\n            if (alarm_valid) acycles = cycles;",
        out_line='"%0d %h %0d %h %0d %0d", cycles, y, acycles, score, alarm_count, alarm',
        read_exp=('"%h %h %h %h\\n", y_exp, score_exp, count_exp, alarm_exp', 4),
        differs="y !== y_exp || score !== score_exp || alarm_count !== count_exp || alarm !== alarm_exp",
        show='"tb: window %0d: y score count alarm = %h %h %h %h, expected %h %h %h %h", n, '
        "y, score, alarm_count, alarm, y_exp, score_exp, count_exp, alarm_exp",
    )


def write_vectors(
    tb_dir, xm: np.ndarray, clear: np.ndarray, ad: AlarmDesign, c: Constants, expected=None
) -> tuple:
    """Write the alarm testbench's vectors into ``tb_dir``: the stream (``<clear> <x hex>`` per
    window) as ``tb_inputs.hex``, the constants as :data:`TB_CONSTANTS` and, with ``expected`` =
    (``y_m`` (N, k) firmware_sim's outputs, ``want`` :func:`reference`'s dict), the expected
    ``<y hex> <score hex> <alarm_count hex> <alarm>`` per window as ``tb_expected.hex``. Returns
    (inputs, expected or None) paths."""
    from pathlib import Path

    from qlstm.io import atomic_write_text

    from .sim import _hex_words, _y_words
    from .verilog import TB_EXPECTED, TB_INPUTS

    tb_dir = Path(tb_dir)
    words = _hex_words(np.asarray(xm), ad.input_t)
    fin = tb_dir / TB_INPUTS
    atomic_write_text(
        fin, "".join(f"{int(cl)} {w}\n" for cl, w in zip(np.asarray(clear, bool), words, strict=True))
    )
    atomic_write_text(tb_dir / TB_CONSTANTS, f"{c.theta:x} {c.clip:x} {c.kappa:x} {c.min_run:x}\n")
    if expected is None:
        return fin, None
    y_m, want = expected
    st, ct = ad.types.score, ad.types.counter
    ys = _y_words(y_m, ad.result_t)
    lines = [
        f"{y} {int(s) & ((1 << st.width) - 1):x} {int(n) & ((1 << ct.width) - 1):x} {int(a)}\n"
        for y, s, n, a in zip(ys, want["score"], want["counter"], want["alarm"], strict=True)
    ]
    fexp = tb_dir / TB_EXPECTED
    atomic_write_text(fexp, "".join(lines))
    return fin, fexp


def _signed(v: int, t: FixedType) -> int:
    v &= (1 << t.width) - 1
    return v - (1 << t.width) if t.signed and v >> (t.width - 1) else v


@dataclass(frozen=True)
class AlarmSim:
    """Per window (measured in RTL simulation): cycles start->done, ``y`` (N, k) mantissas, cycles
    start->alarm_valid, ``score`` and ``counter`` mantissas, ``alarm`` bits."""

    cycles: np.ndarray
    y_m: np.ndarray
    alarm_cycles: np.ndarray
    score: np.ndarray
    counter: np.ndarray
    alarm: np.ndarray
    check: str | None = None


def run(
    binary,
    folder,
    xm: np.ndarray,
    clear: np.ndarray,
    ad: AlarmDesign,
    c: Constants,
    io_dir=None,
    expected=None,
) -> AlarmSim:
    """Simulate a stream of windows ``xm`` (N, L, C) input-type mantissas with ``clear`` (N,);
    with ``expected`` (see :func:`write_vectors`) the testbench checks every window itself and
    its ``tb: PASS``/``tb: FAIL`` line is returned in ``check``."""
    from pathlib import Path

    from .sim import run_testbench

    _check_constants(ad, c)
    sim = Path(io_dir or Path(folder) / "sim")
    fin, fexp = write_vectors(sim, xm, clear, ad, c, expected)
    fout = sim / "tb_outputs.txt"
    args = (f"+theta={c.theta:x}", f"+clip={c.clip:x}", f"+kappa={c.kappa:x}", f"+min_run={c.min_run:x}")
    tok, check = run_testbench(binary, folder, fin, fout, args, expect=fexp)
    n_win = len(xm)
    if len(tok) != 6 * n_win:
        raise QlstmError(f"RTL simulation returned {len(tok) // 6} of {n_win} windows")
    k = ad.horizon
    wy, mask = ad.result_t.width, (1 << ad.result_t.width) - 1
    ys = np.empty((n_win, k), dtype=np.int64)
    for n, word in enumerate(tok[1::6]):
        v = int(word, 16)
        for j in range(k):
            m = (v >> (j * wy)) & mask
            ys[n, j] = m - (1 << wy) if (ad.result_t.signed and m >> (wy - 1)) else m
    return AlarmSim(
        cycles=np.array(tok[0::6], dtype=np.int64),
        y_m=ys,
        alarm_cycles=np.array(tok[2::6], dtype=np.int64),
        score=np.array([_signed(int(w, 16), ad.types.score) for w in tok[3::6]], dtype=np.int64),
        counter=np.array(tok[4::6], dtype=np.int64),
        alarm=np.array(tok[5::6], dtype=np.int64) == 1,
        check=check,
    )
