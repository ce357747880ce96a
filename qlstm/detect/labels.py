"""Anomaly labels: which stretches of which events are precursors, from a file or the recording.

A label is an anomaly window ``(start_s, end_s)`` on an event's time axis, ends included
(e.g. precursor onset to quench). Sources, in order of precedence:

1. ``--labels FILE``: JSON ``{"event_0001": [[start_s, end_s], ...], ...}`` (or a list of
   ``{"event": ..., "start_s": ..., "end_s": ...}`` records), or CSV with columns
   ``event,start_s,end_s``. Events of the recording absent from the file have no anomaly.
2. the recording's own windows (``Event.anomalies``: the ``anomaly`` column that
   ``qlstm data generate`` writes);
3. the quench markers: the window ``[t_q - quench_window_s, t_q]`` (an assumption: the onset is
   unknown, stated in the results).

Refused with one line: an event that is not in the recording, a window outside the event's
time span, a reversed (start > end) or non-finite window, overlapping windows of one event.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qlstm.data.events import EventSet
from qlstm.errors import QlstmError
from qlstm.io import read_text

#: Default anomaly window before a quench marker when no onset is labelled, s (10 min).
QUENCH_WINDOW_S = 600.0


@dataclass(frozen=True)
class Labels:
    """Anomaly windows per event name (seconds, ends included) and where they came from."""

    windows: dict[str, tuple[tuple[float, float], ...]]
    source: str  # "file:<path>", "recording", "quench markers (<w> s before)", "none"

    @property
    def any(self) -> bool:
        return any(self.windows.values())


def read_labels_file(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Parse a labels file (JSON or CSV, see the module docstring) without checking it."""
    path = Path(path)
    if not path.is_file():
        raise QlstmError(f"--labels {path}: file not found")
    suffix = path.suffix.lower()
    out: dict[str, list[tuple[float, float]]] = {}
    try:
        if suffix == ".json":
            data = json.loads(read_text(path))
            if isinstance(data, dict) and "windows" in data and isinstance(data["windows"], dict | list):
                data = data["windows"]
            if isinstance(data, dict):
                for name, wins in data.items():
                    for w in wins:
                        if len(w) != 2:
                            raise ValueError(f"event {name!r}: window {w!r} is not [start_s, end_s]")
                        out.setdefault(str(name), []).append((float(w[0]), float(w[1])))
            elif isinstance(data, list):
                for rec in data:
                    out.setdefault(str(rec["event"]), []).append((float(rec["start_s"]), float(rec["end_s"])))
            else:
                raise ValueError("expected an object {event: [[start_s, end_s], ...]} or a list of records")
        elif suffix == ".csv":
            # a byte-order mark dropped, Windows-1252 read (Excel exports), as recordings
            with io.StringIO(read_text(path, legacy=True), newline="") as fh:
                reader = csv.DictReader(fh)
                reader.fieldnames = [f.strip() for f in reader.fieldnames or []] or None
                need = {"event", "start_s", "end_s"}
                if not reader.fieldnames or not need <= set(reader.fieldnames):
                    raise ValueError(f"columns {reader.fieldnames} must include event, start_s, end_s")
                for row in reader:
                    out.setdefault(row["event"], []).append((float(row["start_s"]), float(row["end_s"])))
        else:
            raise QlstmError(f"--labels {path}: unknown extension {suffix!r}; use .json or .csv")
    except QlstmError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise QlstmError(f"--labels {path}: not a readable labels file ({exc})") from None
    return out


def check_windows(
    where: str, es: EventSet, windows: dict[str, list[tuple[float, float]]]
) -> dict[str, tuple[tuple[float, float], ...]]:
    """Refuse unknown events, non-finite, reversed, out-of-span or overlapping windows; sort them."""
    names = set(es.names)
    events = {e.name: e for e in es.events}
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    for name, wins in windows.items():
        if name not in names:
            known = ", ".join(list(es.names)[:5]) + (" ..." if len(es.names) > 5 else "")
            raise QlstmError(f"{where}: event {name!r} is not in the recording (events: {known})")
        e = events[name]
        t0, t1 = float(e.t[0]), float(e.t[-1])
        tol = 0.5 * es.dt
        for a, b in wins:
            if not (math.isfinite(a) and math.isfinite(b)):
                raise QlstmError(f"{where}: event {name!r}: window [{a}, {b}] is not finite")
            if a > b:
                raise QlstmError(f"{where}: event {name!r}: window [{a}, {b}] is reversed (start > end)")
            if a < t0 - tol or b > t1 + tol:
                raise QlstmError(
                    f"{where}: event {name!r}: window [{a:g}, {b:g}] s is outside the event's time span "
                    f"[{t0:g}, {t1:g}] s"
                )
        s = sorted(wins)
        for (a0, b0), (a1, b1) in zip(s, s[1:], strict=False):
            if a1 <= b0:
                raise QlstmError(
                    f"{where}: event {name!r}: windows [{a0:g}, {b0:g}] and [{a1:g}, {b1:g}] s overlap"
                )
        out[name] = tuple(s)
    return out


def resolve_labels(
    es: EventSet, labels_file: Path | None = None, quench_window_s: float = QUENCH_WINDOW_S
) -> Labels:
    """The anomaly windows of ``es`` from ``labels_file``, the recording, or its quench markers."""
    if labels_file is not None:
        wins = check_windows(f"--labels {labels_file}", es, read_labels_file(labels_file))
        return Labels({e.name: wins.get(e.name, ()) for e in es.events}, f"file:{labels_file}")
    if any(e.anomalies for e in es.events):
        raw = {e.name: list(e.anomalies) for e in es.events}
        return Labels(check_windows(es.source, es, raw), "recording")
    if any(e.quench_index is not None for e in es.events):
        if not quench_window_s > 0:
            raise QlstmError(f"--quench-window-s {quench_window_s}: must be > 0")
        wins = {}
        for e in es.events:
            if e.quench_index is None:
                wins[e.name] = ()
                continue
            tq = float(e.t[e.quench_index])
            wins[e.name] = ((max(float(e.t[0]), tq - quench_window_s), tq),)
        return Labels(wins, f"quench markers ({quench_window_s:g} s before)")
    return Labels({e.name: () for e in es.events}, "none")


def window_indices(t: np.ndarray, windows: tuple[tuple[float, float], ...]) -> list[tuple[int, int]]:
    """Windows in seconds -> inclusive sample-index ranges ``(first, last)`` on the grid ``t``."""
    out = []
    for a, b in windows:
        i0 = int(np.searchsorted(t, a - 1e-9 * max(1.0, abs(a)), side="left"))
        i1 = int(np.searchsorted(t, b + 1e-9 * max(1.0, abs(b)), side="right")) - 1
        if i1 >= i0:
            out.append((i0, i1))
    return out
