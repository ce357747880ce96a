"""A PNG of a few events: the whole series and a zoom on the minutes before the quench."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlstm.data.events import EventSet
from qlstm.io import atomic_path

#: Length of the zoom panel before the quench (or the end of the event), s.
ZOOM_S = 600.0


def plot_events(es: EventSet, out: Path, max_events: int = 4) -> Path:
    """One row per event (the first ``max_events``): left the whole event, right its last
    ``ZOOM_S`` seconds; every channel on its own y axis, the quench as a red dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = es.events[:max_events]
    fig, axes = plt.subplots(len(shown), 2, figsize=(13, 2.6 * len(shown) + 0.6), squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    for row, e in zip(axes, shown, strict=True):
        t_end = e.t[e.quench_index] if e.quench_index is not None else e.t[-1]
        for ax, zoom in zip(row, (False, True), strict=True):
            sel = e.t >= t_end - ZOOM_S if zoom else slice(None)
            scale, unit = (1.0, "s") if zoom else (3600.0, "h")
            tt = (e.t[sel] - t_end) / scale
            host = ax
            for c, ch in enumerate(es.channel_names):
                a = host if c == 0 else host.twinx()
                if c > 1:
                    a.spines["right"].set_position(("axes", 1.0 + 0.1 * (c - 1)))
                col = colours[c % len(colours)]
                a.plot(tt, e.x[sel, c], lw=0.6, color=col)
                a.set_ylabel(f"{ch} [{es.units[c]}]" if es.units[c] else ch, color=col)
                a.tick_params(axis="y", colors=col)
            if e.quench_index is not None:
                host.axvline(0.0, color="red", ls="--", lw=1.0, label="quench")
                host.legend(loc="upper left", fontsize=8)
            host.set_xlabel(f"time to {'quench' if e.quench_index is not None else 'end'} [{unit}]")
            extra = f", {e.filled} filled" if e.filled else ""
            title = f"{e.name}: last {ZOOM_S:.0f} s" if zoom else f"{e.name}: {len(e)} samples{extra}"
            host.set_title(title, fontsize=9)
    fig.suptitle(f"{es.source} ({len(es)} events, dt = {es.dt:g} s)", fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(out)


def summary(es: EventSet, max_rows: int = 20) -> str:
    """Text summary: events, lengths, sampling, per-channel ranges, quench markers, filled gaps."""
    lengths = np.array([len(e) for e in es.events])
    lines = [
        f"source:   {es.source}",
        f"events:   {len(es)}",
        f"channels: {', '.join(f'{c} [{u}]' if u else c for c, u in zip(es.channel_names, es.units, strict=True))}",
        f"sampling: dt = {es.dt:g} s ({1 / es.dt:g} Hz)",
        f"samples:  {lengths.sum()} total; per event min {lengths.min()}, median {int(np.median(lengths))}, "
        f"max {lengths.max()} ({lengths.min() * es.dt / 3600:.3g}-{lengths.max() * es.dt / 3600:.3g} h)",
        f"quench:   {sum(e.quench_index is not None for e in es.events)} of {len(es)} events marked",
        f"gaps:     {sum(e.filled for e in es.events)} samples filled in "
        f"{sum(e.filled > 0 for e in es.events)} event(s)",
    ]
    for c, ch in enumerate(es.channel_names):
        lo = min(float(e.x[:, c].min()) for e in es.events)
        hi = max(float(e.x[:, c].max()) for e in es.events)
        lines.append(f"range {ch}: {lo:.6g} .. {hi:.6g} {es.units[c]}".rstrip())
    header = (
        f"{'event':<20} {'samples':>8} {'t0 [s]':>12} {'hours':>7} {'quench':>8} {'filled':>6}  "
        + "  ".join(f"{ch + ' range':>24}" for ch in es.channel_names)
    )
    lines += ["", header]
    for e in es.events[:max_rows]:
        ranges = "  ".join(
            f"{e.x[:, c].min():>11.5g} {e.x[:, c].max():>11.5g}" + " " for c in range(e.x.shape[1])
        )
        q = "-" if e.quench_index is None else str(e.quench_index)
        lines.append(
            f"{e.name[:20]:<20} {len(e):>8} {e.t[0]:>12.6g} {len(e) * es.dt / 3600:>7.3g} {q:>8} {e.filled:>6}  {ranges}"
        )
    if len(es) > max_rows:
        lines.append(f"... {len(es) - max_rows} more event(s)")
    return "\n".join(lines)
