"""hls4ml's sigmoid and tanh lookup tables, rebuilt bit for bit, and their index computation.

Core semantics shared by every stage that computes with the tables: QAT's straight-through table
lookup (:mod:`qlstm.quantize.model`), the QONNX graph's table constants
(:mod:`qlstm.export.tables`) and the bit-exact simulator (:mod:`qlstm.firmware_sim.kernels`) all
import them from here, so there is one implementation and every import points down to the core.

The specification is ``nnet_utils/nnet_activation.h`` of hls4ml 1.3.0 (``init_sigmoid_table``,
``init_tanh_table``, ``sigmoid``, ``tanh``), compiled by the C simulation with g++ ``-O3``.
Every step below names the C++ line it mirrors.

Two float subtleties decide the last bits of a table entry:

* Both functions are evaluated in **single precision**: ``sigmoid_fcn_float`` calls
  ``std::exp(float)`` (``expf``) and adds ``1 + float`` in float before a *double* division whose
  result is returned as float; ``tanh(in_val)`` with a float argument resolves to ``tanhf``
  (verified against the compiled headers: a double ``tanh`` disagrees on ~98 % of entries of a
  30-fractional-bit table).
* ``expf``/``tanhf`` come from the C library. glibc's are not correctly rounded (its ``tanhf`` is
  off by one ULP on ~14 % of inputs, ``expf`` on a few dozen of 65,536), and NumPy's float32
  ``exp``/``tanh`` differ from glibc again. A single-ULP difference flips a table entry whenever it
  straddles a rounding boundary of ``table_t``, so the tables are evaluated with the very C library
  functions the C simulation calls (through :mod:`ctypes`, once per table). If no C math library
  can be loaded, correctly rounded values (float64 rounded to float32) are used and a warning is
  logged: the tables may then differ from the C simulation in rare entries.

The float value is then converted to ``table_t`` exactly as ``ap_fixed_base(float)`` does:
promoted to double (exact) and quantized with ``table_t``'s rounding and overflow modes, which is
:meth:`qlstm.fixedpoint.FixedType.to_int` on the float64 value.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Literal

import numpy as np

from qlstm.description import SIGMOID_RANGE, TANH_RANGE, TableSpec
from qlstm.errors import QlstmError

log = logging.getLogger(__name__)

Kind = Literal["sigmoid", "tanh"]
KINDS: tuple[str, ...] = ("sigmoid", "tanh")

#: Half-range of the table input per kind: sigmoid covers [-8, 8), tanh [-4, 4).
HALF_RANGE = {"sigmoid": SIGMOID_RANGE, "tanh": TANH_RANGE}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise QlstmError(f"unknown activation table {kind!r}; choose sigmoid or tanh")


@functools.lru_cache(maxsize=1)
def _libm() -> ctypes.CDLL | None:
    """The C math library the compiled C simulation links against, or None if unavailable.

    glibc's ``libm.so.6`` first: ``ctypes.util.find_library`` runs ``ldconfig`` in a subprocess
    (measured 11 ms, plus 45 ms importing ``ctypes.util``, on every ``qlstm predict``).
    """
    try:
        lib = ctypes.CDLL("libm.so.6")
    except OSError:
        from ctypes.util import find_library

        try:
            lib = ctypes.CDLL(find_library("m") or "libm.so.6")
        except OSError:
            lib = None
    try:
        if lib is None:
            raise OSError("no libm")
        for fn in ("expf", "tanhf"):
            getattr(lib, fn).restype = ctypes.c_float
            getattr(lib, fn).argtypes = [ctypes.c_float]
    except (OSError, AttributeError):
        log.warning(
            "no C math library found: activation tables use correctly rounded float values and "
            "may differ from the hls4ml C simulation in rare entries"
        )
        return None
    return lib


def _c_float_fn(name: str, x: np.ndarray) -> np.ndarray:
    """Apply the C library's single-precision ``name`` (``expf``/``tanhf``) to float32 values."""
    lib = _libm()
    if lib is None:
        exact = {"expf": np.exp, "tanhf": np.tanh}[name](x.astype(np.float64))
        return exact.astype(np.float32)
    fn = getattr(lib, name)
    return np.fromiter((fn(float(v)) for v in x), dtype=np.float32, count=x.size)


def table_inputs(kind: Kind, size: int) -> np.ndarray:
    """The float32 input of each table entry.

    Mirrors ``float in_val = 2 * 8.0 * (ii - float(N_TABLE) / 2.0) / float(N_TABLE);``
    (``4.0`` for tanh): evaluated in double, exact for power-of-two sizes, then stored as float.
    """
    _check_kind(kind)
    ii = np.arange(size, dtype=np.float64)
    return (2 * HALF_RANGE[kind] * (ii - float(size) / 2.0) / float(size)).astype(np.float32)


def table_values(kind: Kind, size: int) -> np.ndarray:
    """The float32 function values hls4ml stores, before the conversion to ``table_t``.

    sigmoid: ``return 1.0 / (1 + std::exp(-input));`` with ``float input`` and a float return:
    ``expf`` in float, ``1 + e`` in float, ``1.0 / (double)`` in double, rounded back to float.
    tanh: ``tanh(in_val)`` with a float argument, i.e. ``tanhf``.
    """
    x = table_inputs(kind, size)
    if kind == "sigmoid":
        e = _c_float_fn("expf", -x)  # std::exp(-input), float
        denom = np.float32(1) + e  # 1 + float -> float (IEEE single rounding)
        return (1.0 / denom.astype(np.float64)).astype(np.float32)  # double division, float return
    return _c_float_fn("tanhf", x)


@functools.lru_cache(maxsize=64)
def _table_cached(kind: str, spec: TableSpec) -> np.ndarray:
    values = table_values(kind, spec.size)  # type: ignore[arg-type]
    # typename CONFIG_T::table_t real_val = sigmoid_fcn_float(in_val);
    #   -> ap_fixed_base(float d) { *this = ap_fixed_base(double(d)); }: quantize the exact double
    out = spec.type.to_int(values.astype(np.float64))
    out.setflags(write=False)
    return out


def table(kind: Kind, spec: TableSpec) -> np.ndarray:
    """The lookup table as hls4ml's ``init_<kind>_table`` fills it: ``spec.size`` int64 mantissas
    of ``spec.type`` (read-only, cached)."""
    _check_kind(kind)
    return _table_cached(kind, spec)


def _wrap_int32(v: np.ndarray) -> np.ndarray:
    """C ``int`` arithmetic on x86-64: keep the low 32 bits, two's complement."""
    return ((v + (1 << 31)) & ((1 << 32) - 1)) - (1 << 31)


def _trunc_div_pow2(v: np.ndarray, shift: int) -> np.ndarray:
    """``v / 2**shift`` rounded toward zero (C integer division), for ``shift >= 0``."""
    if shift == 0:
        return v
    q = np.right_shift(np.abs(v), shift)
    return np.where(v < 0, -q, q)


def table_index(kind: Kind, m: np.ndarray, frac: int, spec: TableSpec) -> np.ndarray:
    """Indices into the table for inputs with mantissas ``m`` and ``frac`` fractional bits.

    Mirrors, for sigmoid (tanh: ``/ 8`` and ``4 *``)::

        data_round = data[ii] * CONFIG_T::table_size / 16;
        index = data_round + 8 * CONFIG_T::table_size / 16;
        if (index < 0) index = 0;
        if (index > CONFIG_T::table_size - 1) index = CONFIG_T::table_size - 1;

    ``data * table_size`` is an exact ``ap_fixed`` product (the unsigned constant is an
    ``ap_ufixed<32,32>``); ``/ 16`` is ``ap_fixed`` division by an ``ap_fixed<32,32>``, which keeps
    the dividend's fractional bits and truncates the mantissa quotient toward zero (``sdiv``);
    the assignment to ``int`` is ``to_int()``, which drops the fractional bits toward zero (C
    semantics, "Cnative") and keeps the low 32 bits.
    """
    _check_kind(kind)
    n = spec.size
    divisor = 16 if kind == "sigmoid" else 8
    m = np.asarray(m, dtype=np.int64)
    if np.any(np.abs(m) >= (1 << 40)):
        raise QlstmError("activation input mantissas exceed 40 bits; the index computation is not modelled")
    q = m * n  # data * table_size: exact, same fractional bits
    q = np.where(q < 0, -((-q) // divisor), q // divisor)  # ap_fixed '/' on mantissas: sdiv
    data_round = _trunc_div_pow2(q, frac) if frac > 0 else np.left_shift(q, -frac)  # to_int()
    data_round = _wrap_int32(data_round)
    # 8 * table_size / 16 is unsigned arithmetic; int + unsigned wraps, then back to int
    index = _wrap_int32(data_round + (int(HALF_RANGE[kind]) * n) // divisor)
    return np.clip(index, 0, n - 1)


def lookup(kind: Kind, m: np.ndarray, frac: int, spec: TableSpec) -> np.ndarray:
    """``sigmoid_table[index]`` / ``tanh_table[index]``: table mantissas (``spec.type``)."""
    return table(kind, spec)[table_index(kind, m, frac, spec)]
