"""Plots of a detection run: alarm timelines around quenches, the ROC, lead-time histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = {
    "model": "model residual",
    "float": "float model residual",
    "persistence": "persistence residual",
    "linear_ar": "linear-AR residual",
    "voltage_threshold": "plain |U_res| threshold",
}


def _fig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(result, out: Path, max_events: int = 6, span_s: float = 1200.0) -> list[Path]:
    """Write ``timelines.png``, and with labels ``roc.png`` and ``lead_times.png``, into ``out``."""
    plt = _fig()
    out = Path(out)
    written = []
    names = [n for n in ("model", "voltage_threshold") if n in result.tracks]
    tracks = result.tracks["model"][:max_events]
    fig, axes = plt.subplots(len(tracks), 1, figsize=(10, 2.4 * len(tracks) + 0.5), squeeze=False)
    for ax, i in zip(axes[:, 0], range(len(tracks)), strict=True):
        tr = result.tracks["model"][i]
        t_end = tr.t[tr.quench_index] if tr.quench_index is not None else tr.t[-1]
        sel = tr.t >= t_end - span_s
        rel = tr.t[sel] - t_end
        for n, style in zip(names, ("C0", "C3"), strict=False):
            trn = result.tracks[n][i]
            thr = result.detectors[n]["threshold"]
            ratio = trn.score[sel] / thr if thr > 0 else trn.score[sel]
            ax.plot(rel, ratio, color=style, lw=0.8, label=f"{LABELS[n]} / threshold")
            ev = next(e for e in result.detectors[n]["per_event"] if e["event"] == tr.name)
            for ta in ev["alarm_times_s"]:
                if ta >= t_end - span_s:
                    ax.axvline(ta - t_end, color=style, ls=":", lw=1.2)
        for a, b in tr.windows:
            ax.axvspan(max(tr.t[a] - t_end, -span_s), tr.t[b] - t_end, color="orange", alpha=0.15)
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"{tr.name}: score / threshold (dotted: alarms; shaded: labelled precursor)", fontsize=9)
        ax.set_xlim(-span_s, 5)
    axes[-1, 0].set_xlabel("time relative to the quench (s)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    p = out / "timelines.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    if not result.labelled:
        return written
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for n, d in result.detectors.items():
        if not d.get("roc"):
            continue
        fa, det = np.asarray(d["roc"]["false_alarms_per_day"]), np.asarray(d["roc"]["detection_rate"])
        o = np.argsort(fa, kind="stable")
        # the best detection rate reachable at or below each false-alarm rate (what the AUC integrates;
        # at low thresholds an alarm already on before the onset does not fire again inside it)
        ax.step(fa[o], np.maximum.accumulate(det[o]), where="post", label=f"{LABELS[n]} (AUC {d['auc']:.2f})")
        ax.plot([d["false_alarms_per_day"]], [d["detection_rate"]], "o", ms=4)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("false alarms per day of normal running")
    ax.set_ylabel("precursors detected (fraction)")
    ax.set_title(
        "event-level ROC, best rate at each false-alarm rate (held-out; dots: calibrated)", fontsize=9
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "roc.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    fig, ax = plt.subplots(figsize=(6, 4))
    leads = {LABELS[n]: d.get("lead_times_s") or [] for n, d in result.detectors.items()}
    allv = [v for vs in leads.values() for v in vs]
    bins = np.linspace(0, max(allv) if allv else 1.0, 20)
    for lab, vs in leads.items():
        if vs:
            ax.hist(vs, bins=bins, histtype="step", label=f"{lab} (n={len(vs)})")
    ax.set_xlabel("lead time before the quench (s)")
    ax.set_ylabel("precursors")
    ax.set_title("lead times at the calibrated thresholds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "lead_times.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    return written
