"""One fixed-point type, mirroring Xilinx ``ap_fixed<W, I, Q, O>`` exactly.

A value of type ``FixedType(W, I, signed)`` is an integer *mantissa* ``m`` with ``W`` bits and
the real value ``m * 2**-(W - I)``. Arithmetic in this module is done on integer mantissas held
in NumPy ``int64`` arrays, so it is exact; the only operation that loses information is
:func:`cast` (a shift with a rounding mode, then an overflow mode), exactly as an assignment to a
narrower ``ap_fixed`` in C++.

This module is the single place where precision strings are parsed or printed and where
rounding/overflow names are mapped to behaviour. Mode names follow Vivado HLS (UG902):

========================  =====================================================
``AP_TRN`` (default)      floor, toward minus infinity (NOT ``np.trunc``)
``AP_TRN_ZERO``           toward zero
``AP_RND``                to nearest, ties toward plus infinity
``AP_RND_ZERO``           to nearest, ties toward zero
``AP_RND_MIN_INF``        to nearest, ties toward minus infinity
``AP_RND_INF``            to nearest, ties away from zero
``AP_RND_CONV``           to nearest, ties to even (NumPy's ``round``)
``AP_WRAP`` (default)     keep the low W bits (two's complement wrap)
``AP_SAT``                clamp to [min, max]
``AP_SAT_ZERO``           overflowing values become 0
``AP_SAT_SYM``            clamp to [-max, max] (signed) / [0, max] (unsigned)
========================  =====================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from qlstm.errors import QlstmError

ROUNDING_MODES = (
    "AP_TRN",
    "AP_TRN_ZERO",
    "AP_RND",
    "AP_RND_ZERO",
    "AP_RND_MIN_INF",
    "AP_RND_INF",
    "AP_RND_CONV",
)
OVERFLOW_MODES = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")

#: Widths accepted anywhere in qlstm (ap_fixed itself allows more; our int64 arithmetic does not).
MIN_WIDTH, MAX_WIDTH = 2, 32

#: QONNX ``Quant`` rounding mode for each ap_fixed rounding mode, with an offset (in LSBs) to
#: add before the Quant node where QONNX has no exact equivalent. qonnx's names
#: (``intquant.resolve_rounding_mode``): ROUND = half-to-even, HALF_UP = ties away from zero,
#: HALF_DOWN = ties toward zero, DOWN = toward zero, FLOOR, CEIL. ``AP_RND`` (ties toward +inf)
#: is FLOOR(x + 1/2) and ``AP_RND_MIN_INF`` (ties toward -inf) is CEIL(x - 1/2).
QONNX_ROUNDING: dict[str, tuple[str, float]] = {
    "AP_TRN": ("FLOOR", 0.0),
    "AP_TRN_ZERO": ("DOWN", 0.0),
    "AP_RND": ("FLOOR", 0.5),
    "AP_RND_ZERO": ("HALF_DOWN", 0.0),
    "AP_RND_MIN_INF": ("CEIL", -0.5),
    "AP_RND_INF": ("HALF_UP", 0.0),
    "AP_RND_CONV": ("ROUND", 0.0),
}

_AP_RE = re.compile(
    r"^\s*(?P<kind>ap_fixed|ap_ufixed|ap_int|ap_uint)\s*<\s*(?P<args>[^>]*)>\s*$",
)


@dataclass(frozen=True, order=True)
class FixedType:
    """An ``ap_fixed<width, integer, rounding, overflow>`` (``ap_ufixed`` when unsigned).

    ``integer`` counts the sign bit for signed types, as ``ap_fixed`` does, and may be negative
    or larger than ``width`` (then the type has no fractional or no integer bits).
    """

    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    def __post_init__(self) -> None:
        if not isinstance(self.width, int | np.integer) or not MIN_WIDTH <= int(self.width) <= MAX_WIDTH:
            raise QlstmError(f"bit width {self.width} is outside {MIN_WIDTH}-{MAX_WIDTH}")
        if not isinstance(self.integer, int | np.integer):
            raise QlstmError(f"integer bits must be an integer, got {self.integer!r}")
        if self.integer > self.width:
            raise QlstmError(
                f"integer bits {self.integer} are larger than the width {self.width} in {self.describe()}"
            )
        if self.integer < -self.width:
            raise QlstmError(f"integer bits {self.integer} too small for width {self.width}")
        if self.rounding not in ROUNDING_MODES:
            raise QlstmError(
                f"unknown rounding mode {self.rounding!r}; choose one of {', '.join(ROUNDING_MODES)}"
            )
        if self.overflow not in OVERFLOW_MODES:
            raise QlstmError(
                f"unknown overflow mode {self.overflow!r}; choose one of {', '.join(OVERFLOW_MODES)}"
            )
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "integer", int(self.integer))

    # ------------------------------------------------------------------ properties
    @property
    def frac(self) -> int:
        """Fractional bits: the value is ``mantissa * 2**-frac``."""
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** (-self.frac)

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        return self.min_int * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_int * self.lsb

    # ------------------------------------------------------------------ text forms
    def ap(self) -> str:
        """The C++ type, e.g. ``ap_fixed<16,6,AP_RND_CONV,AP_SAT>``; default modes are omitted."""
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        if self.rounding == "AP_TRN" and self.overflow == "AP_WRAP":
            return f"{kind}<{self.width},{self.integer}>"
        if self.overflow == "AP_WRAP":
            return f"{kind}<{self.width},{self.integer},{self.rounding}>"
        return f"{kind}<{self.width},{self.integer},{self.rounding},{self.overflow}>"

    def describe(self) -> str:
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width},{self.integer},{self.rounding},{self.overflow}>"

    __str__ = ap

    @classmethod
    def from_ap(cls, text: str) -> FixedType:
        """Parse ``ap_fixed<W,I[,Q[,O[,N]]]>``, ``ap_ufixed<...>``, ``ap_int<W>`` or ``ap_uint<W>``."""
        match = _AP_RE.match(text)
        if not match:
            raise QlstmError(f"not an ap_fixed type: {text!r}")
        kind = match["kind"]
        args = [a.strip() for a in match["args"].split(",") if a.strip()]
        try:
            width = int(args[0])
            if kind in ("ap_int", "ap_uint"):
                if len(args) != 1:
                    raise ValueError
                return cls(width, width, kind == "ap_int")
            integer = int(args[1])
        except (ValueError, IndexError):
            raise QlstmError(f"malformed fixed-point type {text!r}") from None
        rounding = args[2] if len(args) > 2 else "AP_TRN"
        overflow = args[3] if len(args) > 3 else "AP_WRAP"
        if len(args) > 4 and int(args[4]) != 0:
            raise QlstmError(f"saturation bits are not supported: {text!r}")
        return cls(width, integer, kind == "ap_fixed", rounding, overflow)

    # ------------------------------------------------------------------ QONNX / Brevitas
    def qonnx_quant_attributes(self) -> dict[str, Any]:
        """Inputs and attributes of a QONNX ``Quant`` node representing this type.

        ``Quant(x + offset_lsb * scale, scale, zero_point, bitwidth)`` with scale ``2**-frac``;
        ``offset_lsb`` is non-zero for the two rounding modes QONNX lacks (see
        :data:`QONNX_ROUNDING`). QONNX ``Quant`` only knows saturating overflow, so a wrapping
        type is described by its saturating equivalent: callers must make sure no overflow
        happens (see :func:`would_overflow`) or say that it may.
        """
        mode, offset = QONNX_ROUNDING[self.rounding]
        return {
            "scale": float(self.lsb),
            "zero_point": 0.0,
            "bitwidth": float(self.width),
            "signed": int(self.signed),
            "narrow": int(self.overflow == "AP_SAT_SYM" and self.signed),
            "rounding_mode": mode,
            "offset_lsb": offset,
        }

    @property
    def brevitas_scale_exponent(self) -> int:
        """Brevitas power-of-two scale is ``2**exponent``; for this type ``exponent = -frac``."""
        return -self.frac

    # ------------------------------------------------------------------ conversions
    def to_int(self, x: np.ndarray | float) -> np.ndarray:
        """Quantize real values to mantissas with this type's rounding and overflow modes.

        Real inputs are first represented exactly as float64 (53 bits); values are scaled by a
        power of two (exact) and then rounded, so the result equals ``(T) x`` in C++ for any
        double ``x`` whose scaled value fits in float64 exactly.
        """
        scaled = np.asarray(x, dtype=np.float64) * (2.0**self.frac)
        if not np.all(np.isfinite(scaled)):
            raise QlstmError(f"cannot convert non-finite values to {self.describe()}")
        floor = np.floor(scaled)
        rem = scaled - floor  # in [0, 1), exact
        far = np.abs(floor) > 2.0**62  # beyond int64; integers there (rem == 0: no rounding)
        if far.any():  # AP_WRAP reads the low `width` bits (exact in float64), the others saturate
            near = np.mod(floor, 2.0**self.width) if self.overflow == "AP_WRAP" else np.sign(floor) * 2.0**62
            floor = np.where(far, near, floor)
        m = floor.astype(np.int64)
        m = m + _round_increment(m, rem > 0, rem == 0.5, rem > 0.5, self.rounding)
        return _overflow(m, self)

    def quantize(self, x: np.ndarray | float) -> np.ndarray:
        """Real values after conversion to this type (float64, exactly on the grid)."""
        return self.to_float(self.to_int(x))

    def to_float(self, m: np.ndarray) -> np.ndarray:
        return np.asarray(m, dtype=np.float64) * self.lsb


def _round_increment(
    floor: np.ndarray, inexact: np.ndarray, tie: np.ndarray, above: np.ndarray, rounding: str
) -> np.ndarray:
    """0/1 to add to the floor, given which values were inexact, exactly half, or above half.

    ``floor`` is the floor of the exact value; the sign of the exact value is negative iff
    ``floor < 0`` (an inexact value with floor -1 is in (-1, 0)).
    """
    negative = floor < 0
    if rounding == "AP_TRN":
        inc = np.zeros_like(inexact)
    elif rounding == "AP_TRN_ZERO":
        inc = inexact & negative
    elif rounding == "AP_RND":
        inc = above | tie
    elif rounding == "AP_RND_ZERO":
        inc = above | (tie & negative)
    elif rounding == "AP_RND_MIN_INF":
        inc = above
    elif rounding == "AP_RND_INF":
        inc = above | (tie & ~negative)
    elif rounding == "AP_RND_CONV":
        inc = above | (tie & ((floor & 1) == 1))
    else:  # pragma: no cover - FixedType validates the name
        raise QlstmError(f"unknown rounding mode {rounding!r}")
    return inc.astype(np.int64)


def _overflow(m: np.ndarray, t: FixedType) -> np.ndarray:
    """Apply ``t``'s overflow mode to integer mantissas that already have ``t``'s scale."""
    m = np.asarray(m, dtype=np.int64)
    lo, hi = t.min_int, t.max_int
    if t.overflow == "AP_WRAP":
        # Keep the low W bits, read back in [lo, hi]: one subtraction, mask and addition.
        return np.bitwise_and(m - lo, (1 << t.width) - 1) + lo
    if t.overflow == "AP_SAT":
        return np.clip(m, lo, hi)
    if t.overflow == "AP_SAT_SYM":
        return np.clip(m, -hi if t.signed else 0, hi)
    if t.overflow == "AP_SAT_ZERO":
        return np.where((m < lo) | (m > hi), 0, m).astype(np.int64)
    raise QlstmError(f"unknown overflow mode {t.overflow!r}")  # pragma: no cover


def shift_round(m: np.ndarray, shift: int, rounding: str) -> np.ndarray:
    """``m * 2**-shift`` rounded to an integer with ``rounding`` (exact integer arithmetic).

    ``shift <= 0`` multiplies exactly. This is the quantization half of an ``ap_fixed`` cast.
    """
    m = np.asarray(m, dtype=np.int64)
    if shift <= 0:
        return np.left_shift(m, -shift)
    if shift >= 62:
        raise QlstmError(f"shift of {shift} bits exceeds int64 arithmetic")
    floor = np.right_shift(m, shift)  # arithmetic shift == floor division
    if rounding == "AP_TRN":
        return floor
    rem = m - np.left_shift(floor, shift)  # in [0, 2**shift)
    half = 1 << (shift - 1)
    return floor + _round_increment(floor, rem > 0, rem == half, rem > half, rounding)


def _to_grid(m: np.ndarray, src_frac: int, dst: FixedType, *, wrap_bits: bool) -> np.ndarray:
    """:func:`shift_round` of ``m`` onto ``dst``'s grid. A left shift that int64 cannot hold
    (``|m| * 2**k >= 2**62``) gives ``sign(m) * 2**62``, outside every ``dst`` range (widths <=
    MAX_WIDTH), so saturation and the overflow test see the right side; with ``wrap_bits`` the
    int64 shift is kept as is (it wraps modulo 2**64, so its low ``dst.width`` bits, all AP_WRAP
    reads, are exact)."""
    shift = src_frac - dst.frac
    m = np.asarray(m, dtype=np.int64)
    if shift >= 0 or wrap_bits:
        return shift_round(m, shift, dst.rounding)
    k = -shift
    far = np.abs(m) > ((1 << 62) >> k if k < 62 else 0)
    if not far.any():
        return np.left_shift(m, k)
    return np.where(far, np.sign(m) << 62, np.left_shift(np.where(far, 0, m), k))


def cast(m: np.ndarray, src_frac: int, dst: FixedType) -> np.ndarray:
    """Assign mantissas with ``src_frac`` fractional bits to type ``dst``: round, then overflow.

    Equivalent to ``dst_t y = x;`` in C++ for an ``x`` wide enough to hold ``m`` exactly.
    """
    return _overflow(_to_grid(m, src_frac, dst, wrap_bits=dst.overflow == "AP_WRAP"), dst)


def would_overflow(m: np.ndarray, src_frac: int, dst: FixedType) -> np.ndarray:
    """Boolean mask: where casting ``m`` to ``dst`` hits the overflow mode (not rounding)."""
    r = _to_grid(m, src_frac, dst, wrap_bits=False)
    return (r < dst.min_int) | (r > dst.max_int)


def fits_int64_product(a: FixedType, b: FixedType, terms: int) -> bool:
    """Whether a sum of ``terms`` products of ``a`` and ``b`` mantissas cannot overflow int64."""
    bits = a.width + b.width + max(terms - 1, 0).bit_length()
    return bits <= 63
