"""qlstm.rtl without external tools: the da4ml trace equals firmware_sim bit for bit.

da4ml's own C++ interpreter (``CombLogic.predict``) runs the traced step and head graphs in the
RTL wrapper's schedule (:func:`qlstm.rtl.trace.interpret`); every output must equal
firmware_sim's integer mantissas exactly, on random and saturating windows.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from rtl_models import policy_model, windows

from qlstm.errors import QlstmError
from qlstm.firmware_sim.simulate import Firmware
from qlstm.fixedpoint import FixedType
from qlstm.fixedpoint import cast as np_cast
from qlstm.rtl import api, trace, verilog
from qlstm.testing import random_model, uniform_quantization

CELLS = {"lstm": ("lstm",), "gru": ("gru",), "stacked": ("lstm", "gru")}


def _check(desc, weights, n=1000):
    x = windows(desc, n)
    y = trace.interpret(trace.trace(desc, weights), x)
    ref = Firmware(desc, weights).run(x).y_m
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize(("name", "bits"), list(itertools.product(CELLS, (6, 8, 16))), ids=lambda v: str(v))
def test_trace_is_bit_exact_with_firmware_sim(name, bits):
    cells = CELLS[name]
    desc, weights = policy_model(cells, tuple(4 for _ in cells), bits, method="qat" if bits != 16 else "ptq")
    _check(desc, weights)


@pytest.mark.parametrize(
    ("rounding", "overflow"), [("AP_RND_CONV", "AP_SAT"), ("AP_RND", "AP_SAT_SYM"), ("AP_TRN", "AP_WRAP")]
)
def test_saturating_and_rounding_accumulators(rounding, overflow):
    """Accumulators with the same modes as the data: saturating sums in the C++ order, rounded
    products, a 16-entry table reached through the index arithmetic."""
    from qlstm.description import TableSpec

    q = uniform_quantization(
        2,
        width=8,
        integer=2,
        rounding=rounding,
        overflow=overflow,
        table=TableSpec(16, FixedType(8, 1, True, rounding, "AP_SAT")),
    )
    q = q.__class__(
        input=q.input,
        layers=tuple(
            lq.__class__(**{**lq.__dict__, "accum": FixedType(12, 5, True, rounding, overflow)})
            for lq in q.layers
        ),
        dense=q.dense,
        method=q.method,
        bits=q.bits,
    )
    desc, weights = random_model(
        ("lstm", "gru"), (3, 3), history=5, quantization=q, init="uniform", scale=1.5, seed=3
    )
    _check(desc, weights, 600)


@pytest.mark.parametrize("rounding", ["AP_TRN", "AP_RND", "AP_RND_CONV"])
@pytest.mark.parametrize("overflow", ["AP_WRAP", "AP_SAT", "AP_SAT_SYM"])
def test_cast_equals_ap_fixed_on_every_value(rounding, overflow):
    """Every value of a 9-bit source cast to 5 bits (4 fewer fraction bits: all ties occur)."""
    import da4ml.trace as dt

    src, dst = FixedType(9, 4), FixedType(5, 2, True, rounding, overflow)
    xs = dt.FixedVariableArray.from_kif(np.array([1]), np.array([3]), np.array([5]))._vars.ravel().tolist()
    comb = dt.comb_trace(xs, [trace.cast(xs[0], dst)])
    m = np.arange(src.min_int, src.max_int + 1)
    got = trace.to_mantissa(comb.predict(src.to_float(m)[:, None])[:, 0], dst)
    np.testing.assert_array_equal(got, np_cast(m, src.frac, dst))


def test_wavefront_schedule_by_construction():
    desc, weights = policy_model(("lstm", "gru", "lstm"), (3, 3, 3), 8, history=4)
    d = verilog.pipeline(trace.trace(desc, weights), 6)
    assert trace.iterations(desc) == 4 + 2
    assert d.cycles == 6 * d.stages + d.head_stages
    _check(desc, weights, 300)


@pytest.mark.parametrize(
    "solver", [{"search_all_decompose_dc": True}, {"columns": 3}], ids=["search", "columns"]
)
def test_solver_options_change_the_adder_graph_not_the_values(solver):
    desc, weights = policy_model(("lstm",), (4,), 8, history=8)
    x = windows(desc, 400)
    y = trace.interpret(trace.trace(desc, weights, solver), x)
    np.testing.assert_array_equal(y, Firmware(desc, weights).run(x).y_m)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_product_latency_moves_the_cuts_not_the_values(cell):
    """A DSP product given 4 delay units instead of da4ml's LUT-multiplier delay: fewer stages, and
    the stage chain still computes exactly what the step graph computes."""
    desc, weights = policy_model((cell,), (4,), 8, history=4)
    tr = trace.trace(desc, weights)
    base, fast = verilog.pipeline(tr, 5), verilog.pipeline(tr, 5, product_latency=4)
    assert fast.stages < base.stages
    rng = np.random.default_rng(0)
    for _ in range(40):
        v = [float(rng.integers(round(lo / st), round(hi / st) + 1) * st) for lo, hi, st in tr.step.inp_qint]
        ref = np.asarray(tr.step(v), dtype=np.float64)
        for d in (base, fast):
            np.testing.assert_array_equal(np.asarray(d.step_pipe(v), dtype=np.float64), ref)


def test_refuses_what_it_cannot_express():
    desc, weights = policy_model(("lstm",), (2,), 8)
    q = desc.quantization
    bad = q.__class__(
        input=q.input,
        layers=(
            q.layers[0].__class__(
                **{**q.layers[0].__dict__, "state": replace(q.layers[0].state, rounding="AP_RND_ZERO")}
            ),
        ),
        dense=q.dense,
    )
    with pytest.raises(QlstmError, match=r"rnn0\.state: .*AP_RND_ZERO, which the RTL backend cannot express"):
        trace.trace(desc.with_quantization(bad), weights)
    with pytest.raises(QlstmError, match="not quantized"):
        trace.trace(desc.with_quantization(None), weights)


def test_budget_chooses_a_depth_that_meets_it_or_says_why_not():
    desc, weights = policy_model(("lstm",), (4,), 8, history=6)
    d, rows = api.choose_pipeline(desc, weights, budget_us=1.0, clock_ns=5.0)
    assert d.cycles * 5.0 / 1000 <= 1.0
    meeting = [r for r in rows if r["latency_us"] <= 1.0]
    chosen = [r for r in rows if r.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["pipeline"] == d.pipeline
    # the binding resource's fraction (no capacity: 2 FF per LUT), ties within 5 % to the smallest cutoff
    lut = float(d.step_pipe.cost) + float(d.head_pipe.cost)
    assert chosen[0]["cost"] == pytest.approx(max(lut, d.register_bits / api.FF_PER_LUT))
    least = min(r["cost"] for r in meeting)
    assert chosen[0]["cost"] <= least * api.BUDGET_TIE
    assert all(r["pipeline"] >= d.pipeline for r in meeting if r["cost"] <= least * api.BUDGET_TIE)
    # with a part's capacity the costs are fractions of it
    cap = {"lut": 218_600, "ff": 437_200}
    d2, rows2 = api.choose_pipeline(desc, weights, budget_us=1.0, clock_ns=5.0, capacity=cap)
    for r in rows2:
        assert r["cost"] == pytest.approx(max(r["lut_estimate"] / cap["lut"], r["register_bits"] / cap["ff"]))
    with pytest.raises(QlstmError, match="no pipeline depth meets 0.01 us"):
        api.choose_pipeline(desc, weights, budget_us=0.01, clock_ns=5.0)


def test_unknown_part_is_refused(tmp_path):
    from qlstm.cli import main
    from qlstm.rtl.synth import yosys_family

    with pytest.raises(QlstmError, match="no family"):
        yosys_family("xc2v1000")
    assert yosys_family("xc7z045ffg900-2") == "xc7" and yosys_family("xcku060-ffva1156-2-e") == "xcu"
    assert (
        main(["rtl", str(tmp_path), "--part", "notapart", "--clock-ns", "5", "--out", str(tmp_path / "o")])
        == 2
    )
    assert main(["rtl", str(tmp_path), "--target", "nosuch", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_logic_depth_counts_lut_carry_mux_cells_between_registers():
    """LUT -> CARRY4 O[0] -> LUT -> the same CARRY4's S[3] -> CO[3] -> CARRY4 -> LUT -> INV between
    flip-flops: 7 cells (an INV left outside a LUT is one). A CARRY4's low outputs do not depend on its high inputs, so this is no
    loop (at whole-cell granularity, as Yosys's ltp sees it, it is one)."""
    from qlstm.rtl.synth import longest_path

    def lut(i, o):
        return {"type": "LUT2", "port_directions": {"I0": "input", "I1": "input", "O": "output"},
                "connections": {"I0": [i], "I1": ["0"], "O": [o]}}  # fmt: skip

    def carry(s, ci, o, co):
        return {"type": "CARRY4", "port_directions": {"S": "input", "DI": "input", "CI": "input", "CYINIT": "input",
                "O": "output", "CO": "output"},
                "connections": {"S": s, "DI": ["0"] * 4, "CI": [ci], "CYINIT": ["0"], "O": o, "CO": co}}  # fmt: skip

    cells = {
        "ff": {
            "type": "FDRE",
            "port_directions": {"D": "input", "Q": "output"},
            "connections": {"D": [98], "Q": [2]},
        },
        "inv": {
            "type": "INV",
            "port_directions": {"I": "input", "O": "output"},
            "connections": {"I": [99], "O": [98]},
        },
        "l1": lut(2, 3),
        "c1": carry([3, "0", "0", 41], "0", [10, 11, 12, 13], [14, 15, 16, 17]),
        "l3": lut(10, 41),
        "c2": carry(["0"] * 4, 17, [30, 31, 32, 33], [34, 35, 36, 37]),
        "l2": lut(33, 99),
    }
    assert longest_path({"cells": cells}) == 7


def test_cli_budget_writes_the_folder_without_tools(tmp_path, capsys):
    import json

    from qlstm import description
    from qlstm.cli import main

    desc, weights = policy_model(("gru",), (2,), 6, history=3, horizon=1)
    description.save(tmp_path / "q", desc, weights)
    out = tmp_path / "rtl"
    assert (
        main(
            [
                "rtl",
                str(tmp_path / "q"),
                "--target",
                "zynq7045",
                "--clock-ns",
                "5",
                "--out",
                str(out),
                "--budget-us",
                "1",
            ]
        )
        == 0
    )
    s = json.loads((out / "rtl.json").read_text())
    assert s["cycles_by_construction"] * 5 / 1000 <= 1 and s["cycles_max"] is None and s["bit_exact"] is None
    assert s["budget_us"] == 1.0 and [c["cutoff"] for c in s["candidates"] if c["chosen"]] == [s["pipeline"]]
    assert (out / "src" / "qlstm_top.v").is_file() and (out / "model" / "model.json").is_file()
    assert "by construction" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("head", "bits"),
    [(((6, "relu"), (2, "sigmoid")), 8), (((5, "tanh"), (3, "relu"), (2, "linear")), 10)],
    ids=["relu-sigmoid-8bit", "tanh-relu-linear-10bit"],
)
def test_head_of_several_layers_is_bit_exact(head, bits):
    """Dense layers with relu (a sign multiplexer) and sigmoid/tanh (ROMs) after the cell: da4ml's
    interpreter equals firmware_sim (issue #17)."""
    from qlstm.description import TableSpec

    q = uniform_quantization(
        1, width=bits, integer=3, rounding="AP_RND_CONV", overflow="AP_SAT",
        table=TableSpec(256, FixedType(bits, 1, True, "AP_RND", "AP_SAT")),
        head=tuple(a for _, a in head), act_result=FixedType(bits - 1, 2, True, "AP_RND", "AP_SAT"),
    )  # fmt: skip
    desc, weights = random_model(("lstm",), (4,), history=6, horizon=2, quantization=q, init="uniform", scale=1.5,
                                 seed=5, head=head)  # fmt: skip
    _check(desc, weights, n=500)
    run = Firmware(desc, weights).run(windows(desc, 500), trace=True)
    relu = next(f"dense{j}" for j, (_, a) in enumerate(head) if a == "relu")
    assert (run.mantissas[f"{relu}.result"] < 0).any() and (run.mantissas[relu] > 0).any()


def _declarations(verilog_text: str) -> list[tuple[str, int]]:
    """(name, width in bits) of every reg/wire declared in a module body (ports aside)."""
    import re

    out = []
    for m in re.finditer(r"^\s*(?:reg|wire)\s+(?:\[(\d+):(\d+)\]\s*)?([^;=]+)", verilog_text, re.M):
        width = int(m.group(1)) - int(m.group(2)) + 1 if m.group(1) is not None else 1
        out += [(n.strip(), width) for n in m.group(3).split(",")]
    return out


@pytest.mark.parametrize("alarm", [False, True], ids=["plain", "alarm"])
def test_no_register_or_wire_is_wider_than_one_value(alarm):
    """Issue #16: the stage registers were one vector per stage (256,953 bits on the paper model,
    one Yosys $dff on which synth_xilinx stalled). Now every register and wire of qlstm_top holds
    one traced value, one time step of the window (C input mantissas) or the outputs y (k result
    mantissas); each stage boundary's registers hold exactly da4ml's stage inputs, one per value."""
    import re

    from qlstm.detect.alarm import AlarmRule

    desc, weights = policy_model(("lstm", "gru"), (4, 4), 8, history=6, horizon=2)
    d = api.design(desc, weights, 4.0, AlarmRule(score="cusum") if alarm else None)
    text, widths = verilog.top_module(d)
    pipes = {"step": d.step_pipe, "head": d.head_pipe} | ({"alarm": d.alarm.pipe} if alarm else {})
    value_bits = max(
        f.width
        for p in pipes.values()
        for s in p.solutions
        for q in (s.inp_qint, s.out_qint)
        for f in verilog.fields(q)
    )
    bound = max(value_bits, widths["x_bits"] // desc.architecture.history, widths["y_bits"])
    if alarm:  # the alarm keeps the last k outputs of each of the last k windows (k * k mantissas)
        bound = max(bound, desc.architecture.horizon * widths["y_bits"])
    decl = dict(_declarations(text))
    assert len(decl) > 100 and max(decl.values()) <= bound <= 64, sorted(decl.items(), key=lambda kv: -kv[1])[
        :3
    ]
    for name, pipe in pipes.items():
        for i, sol in enumerate(pipe.solutions[1:], start=1):
            regs = {n: w for n, w in decl.items() if re.fullmatch(rf"{name}_r{i}_\d+", n)}
            flds = [f for f in verilog.fields(sol.inp_qint) if f.width]
            assert sorted(regs.values()) == sorted(f.width for f in flds), (name, i)
            assert all(f"always @(posedge clk) {n} <= {name}_o{i - 1}_" in text for n in regs)
    assert not any(re.fullmatch(r"(step|head)_r\d+", n) for n in decl)  # no packed stage register left


def test_top_module_states_its_port_types_handshake_and_state_names():
    # an FPGA engineer reads the ports' fixed-point types, the handshake and which st_ is which
    desc, weights = policy_model(("lstm",), (4,), 8, history=6)
    d = api.design(desc, weights, 4.0)
    text, _ = verilog.top_module(d)
    head = text.split("module qlstm_top")[0]
    tr = d.traced
    assert f"each {tr.input_t.ap()}" in head and f"each {tr.result_t.ap()}" in head
    assert "Handshake:" in head and "rst: synchronous, active high" in head
    assert "st_0..st_3: layer 0 (lstm) h[0..3]" in head and "st_4..st_7: layer 0 (lstm) c[0..3]" in head


def test_table_bram18_estimate_counts_each_rom_instance(tmp_path):
    # one RAMB18 per 1,024 x 9 table, 64 per 65,536 x 17 table (best aspect ratio), 256-entry
    # tables in LUT RAM; the figures Yosys gave for LSTM(8) at 8 and 16 bits are in the docstring
    src = tmp_path / "src"
    src.mkdir()
    (src / "step_stage2.v").write_text(
        'lookup_table #(10, 9, "a.mem") op_1 (v0, v1);\n'
        'lookup_table #(8, 10, "b.mem") op_2 (v2, v3);\n'
        'lookup_table #(16, 17, "c.mem") op_3 (v4, v5);\n'
    )
    (src / "head_stage0.v").write_text('lookup_table #(10, 18, "d.mem") op_1 (v0, v1);\n')
    assert api.table_bram18_estimate(tmp_path) == 1 + 0 + 64 + 1


def test_folded_constants_are_exact_beyond_28_decimal_digits():
    """A 24-bit model's head: ``(ap_fixed<28,0,AP_RND_CONV>)(x + b)`` with ``x + b`` on a 2^-31 grid.
    da4ml folds the bias and the cast's rounding constant in ``Decimal``; under Python's default
    28 digits the folded constant (31 digits) lost one LSB and 1 window in 8 of a 24-bit LSTM was
    off by one LSB in Verilog (found by a new user's trial of ``qlstm rtl --sim``, 2026-12-01).
    Evaluated by da4ml's Python evaluator (float64, exact here: every value has at most 34 bits)."""
    import da4ml.trace as dt

    src = FixedType(32, 1, True, "AP_TRN", "AP_WRAP")
    dst = FixedType(28, 0, True, "AP_RND_CONV", "AP_SAT")
    rng = np.random.default_rng(5)
    m = rng.integers(-(2**29), 2**29, 400)
    for b_m in rng.integers(2**28, 2**29, 12):  # biases 0.125..0.25: 29-31 significant digits
        xs = (
            dt.FixedVariableArray.from_kif(np.array([1]), np.array([-2]), np.array([31]))
            ._vars.ravel()
            .tolist()
        )
        with trace.exact_constants():
            comb = dt.comb_trace(xs, [trace.cast(xs[0] + float(b_m) * 2.0**-31, dst)])
        got = trace.to_mantissa(np.array([comb([v])[0] for v in src.to_float(m)], dtype=np.float64), dst)
        np.testing.assert_array_equal(got, np_cast(m + int(b_m), src.frac, dst))


def test_constant_factors_beyond_32_fraction_bits_and_24_significant_bits_are_exact():
    """``trace.dense`` on the two da4ml 0.6.0 limits of a constant factor (scan of 2026-12-01: a
    30-32-bit policy with small weights has ``ap_fixed<30,-3>`` weights, 33 fraction bits): its
    signed-digit constant multiplication keeps at most 32 fraction bits (3 * 2^-33 became 4 * 2^-33),
    its constant-matrix solver reads the matrix as float32 (mantissa 2^26 + 1 became 2^26). Both
    dense paths against numpy on integers, by da4ml's Python evaluator (float64, exact here)."""
    import da4ml.trace as dt

    x_t = FixedType(3, 1, True)
    rng = np.random.default_rng(7)
    xm = np.array([[a, b] for a in range(x_t.min_int, x_t.max_int + 1) for b in (-4, 3)])
    cases = (  # (weight type, accumulator): exact products and wrap = the adder graph; else one cast each
        (FixedType(30, 2, True), FixedType(32, 2, True)),
        (FixedType(24, -9, True), FixedType(32, 0, True)),
    )
    for w_t, acc_t in cases:
        w_m = rng.integers(w_t.min_int // 2, w_t.max_int // 2, (2, 3))
        w_m[0, 0] = 3
        xs = dt.FixedVariableArray.from_kif(
            np.array([1, 1]), np.array([0, 0]), np.array([2, 2])
        )._vars.ravel()
        with trace.exact_constants():
            out = trace.dense(list(xs), w_m, w_t, np.zeros(3, np.int64), w_t, x_t, acc_t)
            comb = dt.comb_trace(list(xs), out)
        got = trace.to_mantissa(np.array([comb(list(x_t.to_float(r))) for r in xm], dtype=np.float64), acc_t)
        pf = x_t.frac + w_t.frac
        prods = xm[:, :, None] * w_m[None]  # (N, in, out) exact products on a 2^-pf grid
        if acc_t.frac < pf:  # each product cast to the accumulator on its own
            prods = np_cast(prods, pf, acc_t)
            want = np_cast(prods.sum(axis=1), acc_t.frac, acc_t)
        else:
            want = np_cast(prods.sum(axis=1), pf, acc_t)
        np.testing.assert_array_equal(got, want, err_msg=f"{w_t.describe()} -> {acc_t.describe()}")


def test_cast_targets_of_more_than_32_fraction_bits_are_refused_before_tracing():
    desc, weights = policy_model(("lstm",), (2,), 8)
    q = desc.quantization
    lq = replace(q.layers[0], accum=FixedType(32, -1, True))
    with pytest.raises(
        QlstmError, match=r"rnn0\.accum ap_fixed<32,-1,AP_TRN,AP_WRAP> has 33 fraction bits: .* at most 32"
    ):
        trace.trace(desc.with_quantization(replace(q, layers=(lq,))), weights)


def test_verdict_keeps_the_network_and_the_alarm_apart():
    """An alarm that differs while every network output is exact was printed (CLI) and reported
    as ``NOT bit-exact (0 windows differ)`` (a new user's trial)."""
    from qlstm.runs import rtl_verdict

    alarm_bad = {"bit_exact": False, "mismatches": 0, "alarm": {"windows": 3000, "mismatches": 2996}}
    assert rtl_verdict(alarm_bad) == (
        "the network's outputs bit-exact, the alarm NOT bit-exact (differs on 2,996 of 3,000 windows)"
    )
    assert rtl_verdict({**alarm_bad, "mismatches": 5}) == (
        "NOT bit-exact (5 windows differ); the alarm differs on 2,996 of 3,000 windows"
    )
    assert (
        rtl_verdict({"bit_exact": True, "mismatches": 0, "alarm": {"windows": 9, "mismatches": 0}})
        == "bit-exact"
    )
    assert rtl_verdict({"bit_exact": False, "mismatches": 2}) == "NOT bit-exact (2 windows differ)"
