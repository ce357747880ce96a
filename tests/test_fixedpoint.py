"""The shared fixed-point type: exact tables of every rounding and overflow mode, properties, and a
cross-check against the real ``ap_fixed`` headers compiled with g++ (the ground truth)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from qlstm.errors import QlstmError
from qlstm.fixedpoint import (
    OVERFLOW_MODES,
    ROUNDING_MODES,
    FixedType,
    cast,
    fits_int64_product,
    shift_round,
    would_overflow,
)

# Inputs in units of 1/4: ties at +-0.5, +-1.5, +-2.5 and non-ties at +-0.25, +-0.75.
QUARTERS = np.array([-10, -6, -3, -2, -1, 0, 1, 2, 3, 6, 10])  # x = q / 4
#                 -2.5 -1.5 -0.75 -0.5 -0.25 0 0.25 0.5 0.75 1.5 2.5
EXPECTED_ROUNDING = {
    "AP_TRN": [-3, -2, -1, -1, -1, 0, 0, 0, 0, 1, 2],
    "AP_TRN_ZERO": [-2, -1, 0, 0, 0, 0, 0, 0, 0, 1, 2],
    "AP_RND": [-2, -1, -1, 0, 0, 0, 0, 1, 1, 2, 3],
    "AP_RND_ZERO": [-2, -1, -1, 0, 0, 0, 0, 0, 1, 1, 2],
    "AP_RND_MIN_INF": [-3, -2, -1, -1, 0, 0, 0, 0, 1, 1, 2],
    "AP_RND_INF": [-3, -2, -1, -1, 0, 0, 0, 1, 1, 2, 3],
    "AP_RND_CONV": [-2, -2, -1, 0, 0, 0, 0, 0, 1, 2, 2],
}


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_rounding_table_on_mantissas(rounding):
    dst = FixedType(8, 8, rounding=rounding)
    assert_array_equal(cast(QUARTERS, 2, dst), EXPECTED_ROUNDING[rounding])


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_rounding_table_on_reals(rounding):
    dst = FixedType(8, 8, rounding=rounding)
    assert_array_equal(dst.to_int(QUARTERS / 4.0), EXPECTED_ROUNDING[rounding])


def test_rnd_conv_is_numpy_round():
    x = np.arange(-40, 41) / 4.0
    assert_array_equal(FixedType(10, 10, rounding="AP_RND_CONV").to_int(x), np.round(x).astype(np.int64))


def test_trn_is_floor_not_trunc():
    assert FixedType(8, 8).to_int(-0.25) == -1


# ap_fixed<4,4>: range [-8, 7]; unsigned ap_ufixed<4,4>: [0, 15].
OVERFLOW_IN = np.array([-17, -9, -8, -7, 0, 7, 8, 9, 16, 17])
EXPECTED_OVERFLOW = {
    ("AP_WRAP", True): [-1, 7, -8, -7, 0, 7, -8, -7, 0, 1],
    ("AP_SAT", True): [-8, -8, -8, -7, 0, 7, 7, 7, 7, 7],
    ("AP_SAT_ZERO", True): [0, 0, -8, -7, 0, 7, 0, 0, 0, 0],
    ("AP_SAT_SYM", True): [-7, -7, -7, -7, 0, 7, 7, 7, 7, 7],
    ("AP_WRAP", False): [15, 7, 8, 9, 0, 7, 8, 9, 0, 1],
    ("AP_SAT", False): [0, 0, 0, 0, 0, 7, 8, 9, 15, 15],
    ("AP_SAT_ZERO", False): [0, 0, 0, 0, 0, 7, 8, 9, 0, 0],
    ("AP_SAT_SYM", False): [0, 0, 0, 0, 0, 7, 8, 9, 15, 15],
}


@pytest.mark.parametrize(("overflow", "signed"), list(EXPECTED_OVERFLOW), ids=lambda v: str(v))
def test_overflow_table(overflow, signed):
    dst = FixedType(4, 4, signed=signed, overflow=overflow)
    assert_array_equal(cast(OVERFLOW_IN, 0, dst), EXPECTED_OVERFLOW[(overflow, signed)])


def test_bounds_and_lsb():
    t = FixedType(8, 3)
    assert (t.frac, t.lsb, t.min_value, t.max_value) == (5, 2**-5, -4.0, 4.0 - 2**-5)
    u = FixedType(8, 0, signed=False)
    assert (u.min_value, u.max_value) == (0.0, 1.0 - 2**-8)
    assert FixedType(6, -2).lsb == 2**-8  # negative integer bits: only small fractions


def test_would_overflow():
    t = FixedType(4, 4)
    assert_array_equal(would_overflow(np.array([-9, -8, 7, 8]), 0, t), [True, False, False, True])


def test_shift_left_is_exact():
    assert_array_equal(shift_round(np.array([-3, 5]), -3, "AP_TRN"), [-24, 40])


@pytest.mark.parametrize(
    "text",
    [
        "ap_fixed<16,6>",
        "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
        "ap_ufixed<10,0,AP_RND>",
        "ap_fixed<12,-2>",
        "ap_fixed<32,16,AP_TRN_ZERO,AP_SAT_SYM>",
    ],
)
def test_ap_string_round_trip(text):
    t = FixedType.from_ap(text)
    assert FixedType.from_ap(t.ap()) == t
    assert FixedType.from_ap(t.describe()) == t


def test_ap_int_strings():
    assert FixedType.from_ap("ap_int<8>") == FixedType(8, 8)
    assert FixedType.from_ap("ap_uint<5>") == FixedType(5, 5, signed=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 1, "integer": 1}, "outside 2-32"),
        ({"width": 33, "integer": 1}, "outside 2-32"),
        ({"width": 8, "integer": 9}, "larger than the width"),
        ({"width": 8, "integer": 3, "rounding": "AP_ROUND"}, "unknown rounding mode"),
        ({"width": 8, "integer": 3, "overflow": "AP_CLIP"}, "unknown overflow mode"),
    ],
    ids=["width-too-small", "width-too-large", "integer-gt-width", "bad-rounding", "bad-overflow"],
)
def test_bad_types_are_refused(kwargs, message):
    with pytest.raises(QlstmError, match=message):
        FixedType(**kwargs)


@pytest.mark.parametrize("text", ["ap_fixed<16>", "float", "ap_fixed<a,b>", "ap_fixed<8,3,AP_TRN,AP_WRAP,2>"])
def test_malformed_strings_are_refused(text):
    with pytest.raises(QlstmError):
        FixedType.from_ap(text)


def test_non_finite_values_are_refused():
    with pytest.raises(QlstmError, match="non-finite"):
        FixedType(8, 3).to_int(np.array([1.0, np.nan]))


def test_qonnx_attributes():
    a = FixedType(8, 3, rounding="AP_RND_CONV", overflow="AP_SAT").qonnx_quant_attributes()
    assert a == {
        "scale": 2**-5,
        "zero_point": 0.0,
        "bitwidth": 8.0,
        "signed": 1,
        "narrow": 0,
        "rounding_mode": "ROUND",
        "offset_lsb": 0.0,
    }


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_qonnx_rounding_matches_qonnx_int_quant(rounding):
    """QONNX's own rounding functions, fed x + offset, reproduce every ap_fixed mode on ties."""
    from qonnx.custom_op.general.intquant import resolve_rounding_mode

    t = FixedType(8, 8, rounding=rounding)
    a = t.qonnx_quant_attributes()
    x = QUARTERS / 4.0
    got = resolve_rounding_mode(a["rounding_mode"])(x + a["offset_lsb"] * a["scale"])
    assert_array_equal(got.astype(np.int64), EXPECTED_ROUNDING[rounding])


def test_fits_int64_product():
    assert fits_int64_product(FixedType(16, 6), FixedType(16, 6), 129)
    assert not fits_int64_product(FixedType(32, 6), FixedType(32, 6), 2)


# ---------------------------------------------------------------- properties (Hypothesis)
@st.composite
def fixed_types(draw):
    width = draw(st.integers(2, 24))
    return FixedType(
        width,
        draw(st.integers(-min(width, 4), width)),
        draw(st.booleans()),
        draw(st.sampled_from(ROUNDING_MODES)),
        draw(st.sampled_from(OVERFLOW_MODES)),
    )


types = fixed_types()
reals = st.lists(st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False), min_size=1, max_size=50)


@settings(max_examples=300, deadline=None)
@given(types, reals)
def test_quantize_is_idempotent_and_in_range(t, xs):
    q = t.quantize(np.array(xs))
    assert_array_equal(t.quantize(q), q)
    m = t.to_int(np.array(xs))
    assert np.all((m >= t.min_int) & (m <= t.max_int))


@settings(max_examples=300, deadline=None)
@given(types.filter(lambda t: t.overflow != "AP_WRAP" and t.overflow != "AP_SAT_ZERO"), reals)
def test_saturating_quantize_is_monotone(t, xs):
    x = np.sort(np.array(xs))
    assert np.all(np.diff(t.to_int(x)) >= 0)


@settings(max_examples=300, deadline=None)
@given(types, st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50), st.integers(0, 20))
# found by this test in CI: m << 26 leaves int64 (it wrapped to a large positive value, saturated
# to the maximum instead of 0); the same value under every overflow mode and both signs
@example(FixedType(22, -4, False, "AP_TRN", "AP_SAT"), [-(2**37) - 1, 2**37 + 1], 0)
@example(FixedType(22, -4, True, "AP_TRN", "AP_SAT_SYM"), [-(2**37) - 1, 2**37 + 1], 0)
@example(FixedType(22, -4, True, "AP_TRN", "AP_SAT_ZERO"), [-(2**37) - 1, 2**37 + 1], 0)
@example(FixedType(22, -4, True, "AP_RND", "AP_WRAP"), [-(2**37) - 1, 2**37 + 1], 0)
def test_cast_of_mantissas_equals_cast_of_reals(t, ms, src_frac):
    m = np.array(ms, dtype=np.int64)
    assert_array_equal(cast(m, src_frac, t), t.to_int(m * 2.0**-src_frac))


@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
def test_would_overflow_when_the_left_shift_leaves_int64(overflow):
    t = FixedType(22, -4, True, "AP_TRN", overflow)  # 26 fractional bits: m << 26
    m = np.array([-(2**37) - 1, 2**37 + 1, -(2**36), 2**36, 0], dtype=np.int64)
    assert_array_equal(would_overflow(m, 0, t), [True, True, True, True, False])


@settings(max_examples=200, deadline=None)
@given(types, reals)
def test_rounding_error_is_below_one_lsb(t, xs):
    x = np.array(xs)
    inside = (x >= t.min_value) & (x <= t.max_value)
    err = np.abs(t.quantize(x) - x)[inside]
    bound = 1.0 if t.rounding.startswith("AP_TRN") else 0.5
    assert np.all(err <= bound * t.lsb)


# ---------------------------------------------------------------- against the real ap_fixed
AP_TYPES = Path(__import__("hls4ml").__file__).parent / "templates" / "vivado" / "ap_types"


def _cpp_source() -> str:
    """One program casting every input to all 2 x 7 x 4 destination types (one compile)."""
    casts = []
    for signed in (True, False):
        kind = "ap_fixed" if signed else "ap_ufixed"
        for rounding in ROUNDING_MODES:
            for overflow in OVERFLOW_MODES:
                casts.append(f"emit<{kind}<6,3,{rounding},{overflow}>, {int(signed)}>(x);")
    body = "\n        ".join(casts)
    return f"""
#include <cstdio>
#include "ap_fixed.h"
template <class T, int S> void emit(const ap_fixed<48, 41>& x) {{
    T y = x;  // the assignment under test: quantization mode, then overflow mode
    long long out = y.range(5, 0).to_int64();
    if (S && ((out >> 5) & 1)) out -= 64;
    std::printf("%lld ", out);
}}
int main() {{
    long long m;
    while (std::scanf("%lld", &m) == 1) {{
        ap_fixed<48, 41> x;  // 7 fractional bits
        x.range(47, 0) = m;
        {body}
        std::printf("\\n");
    }}
    return 0;
}}
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is required to compile the ap_fixed oracle")
def test_cast_matches_real_ap_fixed(tmp_path):
    """Every rounding x overflow mode x signedness, against g++ and Xilinx's ap_fixed.h."""
    rng = np.random.default_rng(0)
    m = np.concatenate([np.arange(-600, 600), rng.integers(-(2**20), 2**20, 2000)])
    src, exe = tmp_path / "cast.cpp", tmp_path / "cast"
    src.write_text(_cpp_source())
    subprocess.run(
        ["g++", "-O0", "-std=c++14", f"-I{AP_TYPES}", str(src), "-o", str(exe)],
        check=True,
        capture_output=True,
    )
    run = subprocess.run([str(exe)], input="\n".join(map(str, m)), capture_output=True, text=True, check=True)
    expected = np.array([line.split() for line in run.stdout.splitlines()], dtype=np.int64)
    column = 0
    for signed in (True, False):
        for rounding in ROUNDING_MODES:
            for overflow in OVERFLOW_MODES:
                dst = FixedType(6, 3, signed=signed, rounding=rounding, overflow=overflow)
                assert_array_equal(cast(m, 7, dst), expected[:, column], err_msg=dst.describe())
                column += 1
