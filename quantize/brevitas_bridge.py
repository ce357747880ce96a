"""FixedType <-> Brevitas fixed-point quantizer: the one mapping between the two.

A ``FixedType(W, I)`` is a signed ``W``-bit integer times the power-of-two scale ``2**-(W - I)``.
Brevitas' fixed-point quantizers (``brevitas.quant.fixed_point``) are exactly that: a ``W``-bit
integer quantizer whose scale is restricted to powers of two (``PerTensorPoTScaling8bit``, scale
``2**ceil(v) / 2**(W - 1)`` for a learned ``v``, initialised here from the type's range by
``Int8ActPerTensorFixedPointMinMaxInit``). Going back, ``frac = -log2(scale)`` and
``I = W - frac``.

Brevitas knows fewer modes than ``ap_fixed``; :data:`ROUNDING` and :data:`OVERFLOW` say how each
mode is trained. Rounding modes without an entry cannot be trained and are refused. Brevitas always
saturates, so a wrapping type (``AP_WRAP``, used for accumulators with guard bits, where it never
triggers on the profiled data) is trained as ``AP_SAT``; the evaluation (``firmware_sim``) wraps.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType

#: ap_fixed rounding mode -> Brevitas ``float_to_int_impl_type`` (name of FloatToIntImplType).
ROUNDING = {"AP_RND_CONV": "ROUND", "AP_TRN": "FLOOR", "AP_TRN_ZERO": "ROUND_TO_ZERO"}
#: ap_fixed overflow mode -> Brevitas ``narrow_range`` (clamp to [-max, max] when True).
OVERFLOW = {"AP_SAT": False, "AP_SAT_SYM": True, "AP_WRAP": False}


def check_trainable(t: FixedType, where: str) -> None:
    if not t.signed:
        raise QlstmError(f"{where}: {t.describe()}: unsigned types are not trained by QAT here")
    if t.rounding not in ROUNDING:
        raise QlstmError(
            f"{where}: rounding {t.rounding} has no Brevitas equivalent; QAT supports {', '.join(ROUNDING)}"
        )
    if t.overflow not in OVERFLOW:
        raise QlstmError(
            f"{where}: overflow {t.overflow} has no Brevitas equivalent; QAT supports {', '.join(OVERFLOW)}"
        )


def quantizer(t: FixedType, where: str = "quantizer") -> torch.nn.Module:
    """A Brevitas ``QuantIdentity`` with power-of-two scale initialised to ``t``'s scale."""
    from brevitas.inject.enum import FloatToIntImplType
    from brevitas.nn import QuantIdentity
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPointMinMaxInit

    check_trainable(t, where)
    top = 2.0 ** (t.integer - 1)  # ceil(log2(top)) = I - 1  ->  scale = 2**(I - 1) / 2**(W - 1)
    quant = Int8ActPerTensorFixedPointMinMaxInit.let(
        bit_width=t.width,
        min_val=-top,
        max_val=top,
        narrow_range=OVERFLOW[t.overflow],
        float_to_int_impl_type=getattr(FloatToIntImplType, ROUNDING[t.rounding]),
    )
    q = QuantIdentity(act_quant=quant, return_quant_tensor=False)
    got = read_type(q, t)
    if got != t:  # pragma: no cover - would mean Brevitas changed its scale convention
        raise AssertionError(f"Brevitas quantizer for {t.describe()} reads back as {got.describe()}")
    return q


def read_type(q: torch.nn.Module, like: FixedType) -> FixedType:
    """The FixedType a (trained) Brevitas fixed-point quantizer implements; modes from ``like``."""
    with torch.no_grad():
        scale = float(q.act_quant.scale().detach())
        width = int(round(float(q.act_quant.bit_width().detach())))
    exp = math.log2(scale)
    if exp != round(exp):
        raise QlstmError(f"Brevitas scale {scale} is not a power of two")
    frac = -int(round(exp))
    integer = min(max(width - frac, -width), width)
    return dataclasses.replace(like, width=width, integer=integer)
