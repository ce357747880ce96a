"""The report's figures (matplotlib, Agg) as PNG bytes; every axis says its units."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plot_per_step(series: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, vals in series.items():
        ax.plot(range(1, len(vals) + 1), vals, marker="o", ms=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step ahead k")
    ax.set_ylabel("test RMSE (normalised)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_sweep(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["bits"], r["rmse"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xlabel("bit width")
    ax.set_ylabel("test RMSE (normalised)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _plot_trace(
    t: np.ndarray, truth: np.ndarray, preds: dict[str, np.ndarray], quench_t: float | None
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, truth, color="k", lw=1.6, label="true")
    for name, p in preds.items():
        ax.plot(t, p, lw=1.0, label=name)
    if quench_t is not None:
        ax.axvline(quench_t, color="r", ls="--", lw=1, label="quench")
    ax.set_xlabel("time before the end of the event [s]")
    ax.set_ylabel("normalised U_res, 1 step ahead")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
