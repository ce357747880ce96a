"""hls4ml's sigmoid/tanh tables and index computation (qlstm.hls4ml_tables), and the fast
activation paths of the simulator, against independent references and the real C++ headers."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from qlstm import hls4ml_tables as tables
from qlstm.description import TableSpec
from qlstm.errors import QlstmError
from qlstm.firmware_sim.kernels import Activation
from qlstm.fixedpoint import FixedType

SPEC = TableSpec(1024, FixedType(18, 8))


def _reference_index(kind: str, m: int, frac: int, size: int) -> int:
    """``data * table_size / 16`` (tanh: ``/ 8``) truncated toward zero, plus half the table,
    clamped - written from the C++ with exact rationals (int() truncates toward zero)."""
    div = 16 if kind == "sigmoid" else 8
    data_round = int(Fraction(m, 2**frac) * size / div)
    return min(max(data_round + size // 2, 0), size - 1)


@pytest.mark.parametrize("kind", tables.KINDS)
@pytest.mark.parametrize(("frac", "size"), [(0, 2), (2, 4), (3, 16), (5, 64), (10, 1024)], ids=str)
def test_index_matches_rational_reference(kind, frac, size):
    spec = TableSpec(size, FixedType(18, 8))
    m = np.arange(-(20 << frac), (20 << frac) + 1, max(1, (1 << frac) // 8), dtype=np.int64)
    expected = [_reference_index(kind, int(v), frac, size) for v in m]
    assert_array_equal(tables.table_index(kind, m, frac, spec), expected)


def test_index_truncates_toward_zero_not_floor():
    # x = -0.25: -0.25 * 1024 / 16 = -16 exactly; x = -1/1024: -1/16 -> 0 (toward zero), not -1
    assert tables.table_index("sigmoid", np.array([-1]), 10, SPEC)[0] == 512
    assert tables.table_index("sigmoid", np.array([-256]), 10, SPEC)[0] == 512 - 16
    assert tables.table_index("tanh", np.array([-1]), 10, SPEC)[0] == 512


def test_table_known_entries():
    sig, tanh = tables.table("sigmoid", SPEC), tables.table("tanh", SPEC)
    assert sig.shape == tanh.shape == (1024,)
    assert sig[512] == 512  # sigmoid(0) = 0.5 with 10 fractional bits
    assert tanh[512] == 0
    assert sig[0] == 0  # sigmoid(-8) = 0.000335 floors to 0
    assert sig[1023] == 1023  # sigmoid(7.984) = 0.99966 floors to 1023/1024
    assert tanh[0] == -1024  # tanh(-4) = -0.99933 floors to -1
    assert np.all(np.diff(sig) >= 0) and np.all(np.diff(tanh) >= 0)


def test_table_is_cast_with_table_type_modes():
    rnd = tables.table("sigmoid", TableSpec(8, FixedType(4, 1, True, "AP_RND", "AP_SAT")))
    vals = tables.table_values("sigmoid", 8).astype(np.float64)
    assert_array_equal(rnd, np.clip(np.floor(vals * 8 + 0.5), -8, 7))


def test_tables_are_single_precision_values():
    # the float32 inputs hls4ml evaluates: k * 16 / N - 8 for sigmoid
    assert_array_equal(tables.table_inputs("sigmoid", 8), np.arange(-8, 8, 2, dtype=np.float32))
    v = tables.table_values("tanh", 1024)
    assert v.dtype == np.float32


def test_unknown_kind_is_an_error():
    with pytest.raises(QlstmError, match="unknown activation table"):
        tables.table("relu", SPEC)  # type: ignore[arg-type]


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        tables.table("tanh", SPEC)[0] = 3


# ---------------------------------------------------------------- the simulator's fast paths
@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(tables.KINDS),
    width=st.integers(17, 32),
    integer=st.integers(-4, 16),
    size_bits=st.integers(1, 14),
    seed=st.integers(0, 2**16),
)
def test_wide_input_fast_index_equals_table_index(kind, width, integer, size_bits, seed):
    in_t = FixedType(width, min(integer, width))
    spec = TableSpec(1 << size_bits, FixedType(12, 2, True, "AP_RND"))
    act = Activation(kind, spec, in_t, FixedType(20, 6))
    rng = np.random.default_rng(seed)
    m = np.concatenate(
        [
            rng.integers(in_t.min_int, in_t.max_int, size=500, endpoint=True),
            np.array([in_t.min_int, in_t.max_int, 0, -1, 1]),
        ]
    )
    assert_array_equal(act(m), act.table_out[act.index(m)])


@pytest.mark.parametrize("kind", tables.KINDS)
def test_direct_map_equals_table_index(kind):
    in_t = FixedType(12, 4, True, "AP_RND", "AP_SAT")
    act = Activation(kind, TableSpec(256, FixedType(10, 2)), in_t, FixedType(14, 4))
    assert act.direct is not None
    m = np.arange(in_t.min_int, in_t.max_int + 1)
    assert_array_equal(act(m), act.table_out[act.index(m)])


# ---------------------------------------------------------------- against the C++ headers
_ACT_CPP = r"""
#include "ap_fixed.h"
#include "ap_int.h"
#include "nnet_utils/nnet_code_gen.h"
#include "nnet_utils/nnet_helpers.h"
#include "nnet_utils/nnet_recurrent.h"
#include <cstdio>
typedef TABT tab_t;
typedef DATAT data_t;
typedef ap_fixed<48, 16> res_t;
struct cfg : nnet::activ_config { static const unsigned n_in = 1; static const unsigned table_size = TS; typedef tab_t table_t; };
int main() {
  const int W = data_t::width;
  for (long long m = -(1LL << (W - 1)); m < (1LL << (W - 1)); m++) {
    data_t d; d.range() = m;
    data_t in[1] = {d}; res_t o1[1], o2[1];
    nnet::sigmoid<data_t, res_t, cfg>(in, o1);
    nnet::tanh<data_t, res_t, cfg>(in, o2);
    printf("%lld %lld %lld\n", m, (long long)(o1[0].to_double() * 4294967296.0),
           (long long)(o2[0].to_double() * 4294967296.0));
  }
}
"""

CPP_CASES = [
    ("ap_fixed<10,4>", "ap_fixed<18,8>", 1024),
    ("ap_fixed<12,3,AP_RND,AP_SAT>", "ap_fixed<16,2,AP_RND_CONV>", 256),
    ("ap_fixed<8,6>", "ap_ufixed<8,0,AP_RND>", 8),
    ("ap_fixed<14,5>", "ap_fixed<28,2,AP_RND_CONV>", 65536),
]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed to compile the hls4ml headers")
@pytest.mark.parametrize(("data_t", "table_t", "size"), CPP_CASES, ids=lambda v: str(v))
def test_lookup_matches_compiled_hls4ml_headers(tmp_path: Path, data_t, table_t, size):
    import hls4ml

    tpl = Path(hls4ml.__file__).parent / "templates" / "vivado"
    src = tmp_path / "act.cpp"
    src.write_text(_ACT_CPP)
    exe = tmp_path / "act"
    subprocess.run(
        ["g++", "-O3", "-std=c++17", "-w", f"-I{tpl / 'ap_types'}", f"-I{tpl}", f"-DTABT={table_t}",
         f"-DDATAT={data_t}", f"-DTS={size}", str(src), "-o", str(exe)],
        check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    rows = np.array([line.split() for line in out.splitlines()], dtype=np.int64)
    dt, tt = FixedType.from_ap(data_t), FixedType.from_ap(table_t)
    spec = TableSpec(size, tt)
    for col, kind in ((1, "sigmoid"), (2, "tanh")):
        mine = tables.lookup(kind, rows[:, 0], dt.frac, spec) << (32 - tt.frac)
        assert_array_equal(mine, rows[:, col], err_msg=f"{kind} {data_t} {table_t} {size}")
