"""The time column of a recording: find it by name and turn any usual encoding into seconds.

Found by name (case-insensitive, a unit suffix ``time [ms]`` / ``time (s)`` / ``time_ms`` allowed):
:data:`TIME_NAMES`, or the column named by ``time_column`` (``--time-column``). Encodings:

* float or integer numbers: seconds, unless a unit is given (``--time-unit``, then a header unit
  ``time [ms]``); integers and floats whose first value is an epoch (dates 1980-2100) in
  exactly one of s / ms / us / ns take that unit (an int64 column of epoch nanoseconds named
  ``time_s`` is nanoseconds: ``time_s`` is only qlstm's default name); otherwise a name suffix
  ``_s`` ``_ms`` ``_us`` ``_ns``; otherwise seconds;
* datetime types (Arrow timestamps, NumPy datetime64; zone-aware ones are UTC) and ISO 8601
  text (with or without a UTC offset or ``Z``): seconds since 1970-01-01 (UTC if a zone is given);
* float32 time columns are refused when float32 cannot resolve 1 % of their sampling step at
  their magnitude (float32 epoch seconds: 128 s), naming float32 precision as the cause.

The sampling interval is then checked for plausibility and a local-time clock that steps back
one hour (end of daylight saving) is detected, both in :mod:`qlstm.data.events`.
"""

from __future__ import annotations

import logging

import numpy as np

from qlstm.data.units import is_other_than_time
from qlstm.errors import QlstmError

log = logging.getLogger(__name__)

#: Column names taken as the time column, in order of preference (compared case-insensitively,
#: after removing a header unit).
TIME_NAMES = (
    "time_s", "time", "t", "timestamp", "datetime", "date_time", "time_stamp", "elapsed_s",
    "elapsed", "time_ms", "time_us", "time_ns", "t_s", "t_ms", "t_us", "t_ns", "epoch", "date",
)  # fmt: skip
#: seconds per unit of the time units accepted (name suffixes, --time-unit, header units).
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}
#: First-sample magnitudes that are epochs from 1980-01-01 to 2100-01-01 in each unit.
_EPOCH = {"s": (315532800.0, 4102444800.0)}
_EPOCH |= {
    u: (lo / TIME_UNITS[u], hi / TIME_UNITS[u]) for u in ("ms", "us", "ns") for lo, hi in [_EPOCH["s"]]
}


def find_time_column(
    names: list[str], option: str | None, where: str, units: dict[str, str] | None = None
) -> str:
    """The name of the time column among ``names`` (bare names, units already split off).

    ``units`` (bare name -> header unit): a name whose header unit is not a time unit
    (``T [°C]``, ``t [V]``) is a channel, not a time column."""
    if option is not None:
        if option not in names:
            raise QlstmError(
                f"{where}: --time-column {option!r} is not a column (columns: {', '.join(names)})"
            )
        return option
    lower = {n.lower(): n for n in names}
    found = [lower[c] for c in TIME_NAMES if c in lower]
    found = [n for n in found if not is_other_than_time((units or {}).get(n, ""))]
    if not found:
        raise QlstmError(
            f"{where}: no time column (looked for {', '.join(TIME_NAMES[:6])} ...; columns: "
            f"{', '.join(names) or 'none'}); name it with --time-column"
        )
    if len(found) > 1:
        raise QlstmError(
            f"{where}: several time columns ({', '.join(found)}); name the one to use with --time-column"
        )
    return found[0]


def _suffix_unit(name: str) -> str | None:
    for u in ("ms", "us", "ns", "s"):
        if name.lower().endswith("_" + u):
            return u
    return None


def unit_seconds(unit: str, where: str) -> float:
    if unit not in TIME_UNITS:
        raise QlstmError(f"{where}: time unit {unit!r} not understood; use one of {', '.join(TIME_UNITS)}")
    return TIME_UNITS[unit]


def _epoch_unit(first: float) -> str | None:
    hits = [u for u, (lo, hi) in _EPOCH.items() if lo <= abs(first) <= hi]
    return hits[0] if len(hits) == 1 else None


def to_seconds(values, name: str, header_unit: str, option_unit: str | None, where: str) -> np.ndarray:
    """The time column ``values`` (NumPy or Arrow array) as float64 seconds (see module doc)."""
    col = f"time column {name!r}"
    a = _datetime_ns(values, col, where)
    if a is not None:
        return a.astype(np.float64) * 1e-9
    a = np.asarray(values)
    if a.dtype.kind not in "fiu":
        raise QlstmError(f"{where}: {col} holds {a.dtype} values, neither numbers nor ISO 8601 text")
    if a.size == 0:
        return a.astype(np.float64)
    if a.dtype == np.float32:
        _check_float32(a, col, where)
    first = float(a[0])
    if option_unit is not None:
        unit, why = option_unit, "--time-unit"
    elif header_unit:
        unit, why = header_unit, "its header"
    elif (e := _epoch_unit(first)) is not None:
        unit, why = e, f"its values are epoch {e} ({first:.6g} = {_date(first, e)})"
    elif (s := _suffix_unit(name)) is not None:
        unit, why = s, "its name"
    else:
        unit, why = "s", "the default"
    scale = unit_seconds(unit, f"{where}: {col}")
    if unit != "s":
        log.info("%s: %s read in %s (from %s)", where, col, unit, why)
    if a.dtype.kind in "iu" and scale < 1:
        # exact integer arithmetic first: int64 epoch ns do not fit float64's 53 bits
        per = round(1 / scale)
        whole = a // per
        return whole.astype(np.float64) + (a - whole * per).astype(np.float64) * scale
    a = a.astype(np.float64, copy=False)
    return a * scale if scale != 1 else a


def _date(v: float, unit: str) -> str:
    return str(np.datetime64(int(v * TIME_UNITS[unit]), "s"))


def _check_float32(a: np.ndarray, col: str, where: str) -> None:
    """Refuse a float32 time column too coarse for its own sampling step (the real cause of the
    "duplicated timestamp" or irregular steps it would otherwise produce)."""
    big = float(np.max(np.abs(a)))
    ulp = float(np.spacing(np.float32(big)))
    t = a.astype(np.float64)
    # the step the file means: its span over its sample count (the float32 differences themselves
    # are multiples of the resolution, so their median would name the resolution again)
    step = float(t.max() - t.min()) / (t.size - 1) if t.size > 1 else 0.0
    if step <= 0 or ulp > 0.01 * step:
        meant = (
            f"a sampling step of about {step:.3g} s (time span / samples)"
            if step > 0
            else f"any step below {ulp:.3g} s (all times collapse to one float32 value)"
        )
        raise QlstmError(
            f"{where}: {col} is float32: at {big:.6g} its resolution is {ulp:.3g} s, too coarse for "
            f"{meant} (float32 keeps 24 bits: steps below {100 * ulp:.3g} s are not resolved to 1 %); "
            "store time as float64 "
            "seconds, int64 epochs or datetimes"
        )


def _datetime_ns(values, col: str, where: str) -> np.ndarray | None:
    """int64 nanoseconds since 1970 (UTC for zone-aware input) for datetime or text columns;
    None for numeric columns."""
    if type(values).__module__.startswith("pyarrow"):  # no pyarrow import for NumPy input (HDF5)
        import pyarrow as pa
        import pyarrow.compute as pc

        t = values.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return pc.cast(values, pa.timestamp("ns", tz=getattr(t, "tz", None))).to_numpy().view(np.int64)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return _parse_iso(values, col, where)
        if pa.types.is_dictionary(t):
            return _datetime_ns(pc.cast(values, t.value_type), col, where)
        return None
    a = np.asarray(values)
    if a.dtype.kind == "M":
        return a.astype("datetime64[ns]").view(np.int64)
    if a.dtype.kind in "SUO":
        if a.dtype.kind == "O":
            raise QlstmError(f"{where}: {col} holds Python objects; refused")
        import pyarrow as pa

        return _parse_iso(pa.array(a.astype(str)), col, where)
    return None


def _parse_iso(values, col: str, where: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    for target in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
        try:
            return pc.cast(values, target).to_numpy().view(np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    first = values[0].as_py() if len(values) else ""
    raise QlstmError(
        f"{where}: {col} holds text that is not ISO 8601 date-time (first value {first!r}); "
        "write seconds, epochs or ISO 8601 (2026-03-01T12:00:00.4+01:00)"
    )
