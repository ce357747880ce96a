"""Exact fixed-point operations on float64 torch tensors, as the hls4ml firmware performs them.

A fixed-point value is held as a float64 holding ``mantissa * 2**-frac`` exactly. Sums and
products of such values are exact in float64 while every intermediate needs at most 53
significant bits; :func:`check_exact` refuses a computation that could exceed that (the callers
state the bound). Every cast goes through :meth:`qlstm.fixedpoint.FixedType.quantize`, the one
implementation of the rounding and overflow modes; the activation tables and their index come
from :mod:`qlstm.firmware_sim.tables`, the one implementation of hls4ml's lookup tables.

:func:`dense` mirrors ``nnet::dense_latency`` (``nnet_dense_latency.h``)::

    mult[ii * n_out + jj] = (accum_t)(data[ii] * weights[index]);   // each product cast
    acc[jj] = (accum_t)biases[jj];
    acc[jj] += mult[...];                                           // ii = 0 .. n_in-1, cast each time

A wrapping accumulator makes the order irrelevant (the sum is taken modulo ``2**width``), so the
whole sum is one matrix product. A saturating one is evaluated in that order, but only for the
rows whose partial sums can leave the range at all (bounded from above/below by the sums of the
positive/negative terms); the others equal the plain sum.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qlstm.description import TableSpec
from qlstm.errors import QlstmError
from qlstm.firmware_sim import kernels, tables
from qlstm.fixedpoint import FixedType

#: Elements of one (rows, n_in, n_out) product block when products must be cast one by one.
_BLOCK = 1 << 22


def cast(x: torch.Tensor, t: FixedType, src_frac: int | None = None) -> torch.Tensor:
    """``(t) x``: real float64 values converted to ``t`` (rounding, then overflow), no gradient.

    With ``src_frac`` (the values are known to lie on the grid ``2**-src_frac``) the cast runs on
    integer mantissas (:func:`qlstm.firmware_sim.kernels.fast_cast`, i.e. ``fixedpoint.cast``),
    and is skipped altogether when no rounding is needed and every value is in range."""
    if src_frac is None:
        return torch.from_numpy(t.quantize(x.detach().cpu().numpy()))
    if src_frac <= t.frac and x.numel() and float(x.min()) >= t.min_value and float(x.max()) <= t.max_value:
        return x.detach()
    r = kernels.fast_cast(mantissa(x, src_frac, check=False), src_frac, t)
    return torch.from_numpy(r.astype(np.float64) * t.lsb)


def mantissa(x: torch.Tensor, frac: int, check: bool = True) -> np.ndarray:
    """Integer mantissas of values known to lie on the grid ``2**-frac``."""
    m = x.detach().cpu().numpy() * (2.0**frac)  # exact: a power-of-two scaling
    out = m.astype(np.int64)
    if check and not np.array_equal(out, m):  # pragma: no cover - a programming error
        raise AssertionError(f"values are not on the 2**-{frac} grid")
    return out


def check_exact(bound: float, frac: int, what: str) -> None:
    """Refuse a float64 sum whose magnitude ``bound`` on the grid ``2**-frac`` needs > 53 bits."""
    if bound > 0 and math.log2(bound) + frac >= 53:
        raise QlstmError(
            f"{what}: the fixed-point types are too wide for exact float64 evaluation "
            f"(needs {math.log2(bound) + frac:.0f} significant bits > 53); narrow the types"
        )


def lut(kind: str, x: torch.Tensor, x_type: FixedType, spec: TableSpec) -> torch.Tensor:
    """hls4ml's ``sigmoid``/``tanh`` of values of type ``x_type``: the table entry (``spec.type``)."""
    m = mantissa(x, x_type.frac, check=False)
    table = tables.lookup(kind, m, x_type.frac, spec)  # type: ignore[arg-type]
    return torch.from_numpy(table.astype(np.float64) * spec.type.lsb)


def _max_abs(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0


def dense(
    x: torch.Tensor, xt: FixedType, w: torch.Tensor, wt: FixedType, b: torch.Tensor, acc: FixedType
) -> torch.Tensor:
    """``nnet::dense_latency`` with ``res_T = accum_t``: x (N, n_in) of type ``xt``, w (n_out, n_in)
    of type ``wt`` (PyTorch layout), b (n_out,); returns (N, n_out) values of type ``acc``."""
    n_in = x.shape[1]
    b_acc = cast(b, acc)
    pfrac = xt.frac + wt.frac
    xmax, wmax = _max_abs(x), _max_abs(w)
    check_exact(xmax * wmax, pfrac, "product of data and weight")
    exact_products = pfrac <= acc.frac and xmax * wmax <= acc.max_value
    if exact_products:
        frac = max(acc.frac, pfrac)
        check_exact(n_in * xmax * wmax + _max_abs(b_acc), frac, "dense accumulation")
        total = b_acc + x @ w.T
        if acc.overflow == "AP_WRAP":
            return cast(total, acc, acc.frac)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        hi = b_acc + xp @ wp.T + xn @ wn.T  # every partial sum is <= hi
        lo = b_acc + xp @ wn.T + xn @ wp.T  # and >= lo
        risky = ((hi > acc.max_value) | (lo < acc.min_value) | (b_acc > acc.max_value)).any(dim=1)
        out = total.clone()
        if bool(risky.any()):
            rows = torch.nonzero(risky).flatten()
            terms = x[rows][:, :, None] * w.T[None]
            out[rows] = _accumulate(b_acc, terms, acc)
        return out
    check_exact((n_in + 1) * max(abs(acc.min_value), acc.max_value), acc.frac, "dense accumulation")
    rows = max(1, _BLOCK // max(1, n_in * w.shape[0]))
    parts = []
    for s in range(0, x.shape[0], rows):
        terms = cast(x[s : s + rows, :, None] * w.T[None], acc, pfrac)  # mult[] = (accum_t)(data*weight)
        parts.append(_accumulate(b_acc, terms, acc))
    return torch.cat(parts) if parts else torch.zeros(0, w.shape[0], dtype=torch.float64)


def _accumulate(b_acc: torch.Tensor, terms: torch.Tensor, acc: FixedType) -> torch.Tensor:
    """``acc = bias; acc += terms[:, ii]`` for ii in order, each sum cast to ``acc``; terms on its grid."""
    total = b_acc + terms.sum(dim=1)
    if acc.overflow == "AP_WRAP":
        return cast(total, acc, acc.frac)  # modular: the order does not matter
    hi = b_acc + terms.clamp(min=0).sum(dim=1)
    lo = b_acc + terms.clamp(max=0).sum(dim=1)
    if not bool(((hi > acc.max_value) | (lo < acc.min_value)).any()):
        return total
    out = b_acc.expand(terms.shape[0], -1).clone()
    for ii in range(terms.shape[1]):
        out = cast(out + terms[:, ii, :], acc, acc.frac)
    return out
