"""Channel units: read them from column headers, and convert a recording to a run's units.

A column header may carry its channel's unit as ``U_res [mV]``, ``U_res (mV)`` or ``U_res / mV``
(the ISO 80000-1 "quantity / unit" notation; spaces around ``/`` optional, as ``U_res/mV``).
Square brackets always hold a unit; a parenthesised or slash suffix is a unit only if pint knows
it (``U (probe 2)`` stays a channel name). Units are kept as the strings the file wrote.

A recording whose channel unit differs from the run's (the ``units`` of the description's
:class:`~qlstm.description.Normalisation`) is converted with pint (``mV`` -> ``V``: x 1e-3; offset
units such as ``degC`` -> ``K`` too) before normalisation; units of different dimensions (``A``
against ``V``) or a unit pint does not know are refused in one line naming both units. A channel
without a unit on either side is taken as it is (nothing to check).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import numpy as np

from qlstm.errors import QlstmError

log = logging.getLogger(__name__)

_BRACKET = re.compile(r"^\s*(?P<name>.*?)\s*\[(?P<unit>[^\[\]]*)\]\s*$")
_PAREN = re.compile(r"^\s*(?P<name>.*?)\s*\((?P<unit>[^()]*)\)\s*$")
_SLASH = re.compile(r"^\s*(?P<name>[^/]*?)\s*/\s*(?P<unit>[^/]+?)\s*$")


@lru_cache(maxsize=1)
def registry():
    """pint's default unit registry (built once: it takes ~0.3 s)."""
    import pint

    return pint.UnitRegistry()


def _is_unit(text: str) -> bool:
    text = text.strip()
    if not text or text[0].isdigit():
        return False
    try:
        registry().parse_units(text)
    except Exception:  # pint's UndefinedUnitError, its parser's errors on free text
        return False
    return True


def is_other_than_time(unit: str) -> bool:
    """True if ``unit`` is a unit pint knows whose dimension is not time (``°C``, ``V``, ``A``).

    A column such as ``T [°C]`` (a temperature channel) is then not taken for the time column
    ``t``; an empty unit or one pint does not know (``[UTC]``) says nothing and gives False."""
    if not unit or not _is_unit(unit):
        return False
    return registry().parse_units(unit.strip()).dimensionality != registry().parse_units("s").dimensionality


def split_header(header: str) -> tuple[str, str]:
    """``"U_res [mV]"`` -> ``("U_res", "mV")``; a header without a unit -> ``(header, "")``.

    A byte-order mark (U+FEFF) is dropped first: a file decoded without its mark (a CSV converted
    to Parquet/NPZ by a reader that kept it, case B10) glues it to the first name, which must still
    match ``event`` or ``time_s``."""
    header = header.replace("\ufeff", "")
    m = _BRACKET.match(header)
    if m and m["name"]:
        return m["name"], m["unit"].strip()
    for pattern in (_PAREN, _SLASH):
        m = pattern.match(header)
        if m and m["name"] and _is_unit(m["unit"]):
            return m["name"], m["unit"].strip()
    return header.strip(), ""


def conversion(src: str, dst: str, where: str):
    """A function raw values in ``src`` -> values in ``dst``; identity if the strings are equal.

    Raises QlstmError (one line naming both units) for different dimensions or unknown units.
    """
    if src == dst or not src or not dst:
        return None
    reg = registry()
    try:
        a, b = reg.parse_units(src), reg.parse_units(dst)
    except Exception:
        raise QlstmError(
            f"{where}: unit {src!r} of the recording and {dst!r} of the run differ and "
            f"{src!r} or {dst!r} is not a unit pint knows; cannot convert"
        ) from None
    if a == b:
        return None
    if a.dimensionality != b.dimensionality:
        raise QlstmError(
            f"{where}: the recording is in {src}, the run was trained in {dst}; "
            "units of different dimensions, no conversion"
        )

    def convert(x: np.ndarray) -> np.ndarray:
        return np.asarray(reg.Quantity(np.asarray(x, dtype=np.float64), a).to(b).magnitude, dtype=np.float64)

    return convert


def to_run_units(es, units: tuple[str, ...], where: str = ""):
    """``es`` with every channel converted to ``units`` (the run's, one per channel).

    Returns ``es`` itself when nothing changes; a run that recorded no units (old model.json
    files) is not checked. Logs one INFO line per converted channel.
    """
    from qlstm.data.events import Event, EventSet

    where = where or es.source
    if not units:
        return es
    if len(units) != len(es.channel_names):
        raise QlstmError(f"{where}: {len(es.channel_names)} channels but the run records {len(units)} units")
    funcs = []
    for ch, src, dst in zip(es.channel_names, es.units, units, strict=True):
        f = conversion(src, dst, f"{where}: channel {ch}")
        if f is not None:
            log.info("%s: channel %s converted from %s to %s (the run's unit)", where, ch, src, dst)
        funcs.append(f)
    if all(f is None for f in funcs):
        if tuple(es.units) == tuple(units):
            return es
        return EventSet(es.events, es.channel_names, tuple(units), es.dt, es.source, dict(es.meta))
    events = []
    for e in es.events:
        x = e.x.copy()
        for c, f in enumerate(funcs):
            if f is not None:
                x[:, c] = f(x[:, c])
        events.append(Event(e.name, e.t, x, e.quench_index, e.filled))
    meta = {**es.meta, "converted_from": list(es.units)}
    return EventSet(tuple(events), es.channel_names, tuple(units), es.dt, es.source, meta)
