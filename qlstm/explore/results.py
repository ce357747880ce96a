"""The results of ``qlstm explore``, read back from the study: trials.csv, pareto.csv,
pareto.png (2-D projections) and pareto.html (the interactive front, self-contained SVG).

The front is Optuna's (``study.best_trials``: the non-dominated completed trials that satisfy
the constraints, fits the part and meets the budget). Every latency is labelled ``estimate``
(the hls4ml estimator) or ``measured`` (RTL cycles).
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from qlstm.io import atomic_path, atomic_write_text

COLUMNS = ("number", "state", "rmse", "latency_us", "latency_kind", "resource_frac")
EXTRA = ("fits", "meets_budget", "float_rmse", "reuse_factor_used", "latency_cycles", "seconds", "duplicate_of",
         "resource_kind", "latency_source", "rtl_bit_exact_windows", "error", "reproduce")  # fmt: skip


def reproduce_command(
    folder: str | None, number: int, events: str | None = None, rtl: str | None = None
) -> str:
    """The command that rebuilds trial ``number`` from its ``run.yaml``: ``qlstm run`` on the
    synthetic default; with ``--data`` (``events``) the train and quantize commands on that file."""
    if not folder:
        return ""
    cfg, out = f"{folder}/run.yaml", f"runs/explore-{number}"
    if events:
        return (f"qlstm train --config {cfg} --data {events} --out {out}/float && "
                f"qlstm quantize {out}/float --config {cfg} --out {out}/quantized")  # fmt: skip
    if rtl:  # the quantized run of `qlstm run`, then the RTL stage at the trial's pipeline depth
        return f"qlstm run --config {cfg} --out {out} --to quantize && " + rtl.format(out=out)
    return f"qlstm run --config {cfg} --out {out}"


def trials_table(study) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): one row per trial, the COLUMNS, then the parameters, then the details."""
    names: list[str] = []
    for t in study.trials:
        names += [n for n in t.params if n not in names]
    rows = []
    for t in study.trials:
        a = t.user_attrs
        v = t.values if t.values is not None else [None, None, None]
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "rmse": v[0], "latency_us": v[1],
                               "latency_kind": a.get("latency_kind"), "resource_frac": v[2]}  # fmt: skip
        row.update({n: t.params.get(n) for n in names})
        row.update({k: a.get(k) for k in EXTRA if k != "reproduce"})
        row["reproduce"] = reproduce_command(
            a.get("folder"), t.number, a.get("data_file"), a.get("rtl_command")
        )
        rows.append(row)
    return [*COLUMNS, *names, *EXTRA], rows


def front_lines(front) -> list[str]:
    """The current front as text lines (progress output)."""
    lines = [
        f"front ({len(front)} trial(s); RMSE simulated by firmware_sim, latency and resources as marked):"
    ]
    for t in sorted(front, key=lambda t: t.values[0]):
        lines.append(
            f"  #{t.number}: RMSE {t.values[0]:.4g}, {t.values[1]:.3f} us ({t.user_attrs.get('latency_kind')}), "
            f"resources {100 * t.values[2]:.1f} % ({str(t.user_attrs.get('resource_kind', 'estimate')).split(' (')[0]}), "
            f"{t.params}"
        )
    return lines


def write_results(study, out: Path, budget_us: float) -> dict[str, str]:
    """trials.csv, pareto.csv, pareto.png, pareto.html in ``out`` (each written atomically)."""
    out = Path(out)
    cols, rows = trials_table(study)
    front_numbers = {t.number for t in study.best_trials}
    pareto = sorted((r for r in rows if r["number"] in front_numbers), key=lambda r: r["rmse"])
    files = {"trials": out / "trials.csv", "pareto": out / "pareto.csv", "png": out / "pareto.png",
             "html": out / "pareto.html"}  # fmt: skip
    atomic_write_text(files["trials"], _csv(cols, rows))
    atomic_write_text(files["pareto"], _csv(cols, pareto))
    _plot(rows, pareto, files["png"], budget_us)
    atomic_write_text(files["html"], _html(cols, rows, pareto, budget_us))
    return {k: str(v) for k, v in files.items()}


def _csv(cols: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _col(rows: list[dict[str, Any]], name: str) -> list[Any]:
    return [r[name] for r in rows]


def _points(rows: list[dict[str, Any]], x: str, y: str) -> dict[tuple[float, float], list[int]]:
    """The trials at each distinct (x, y) position, in trial order (repeated points share one)."""
    at: dict[tuple[float, float], list[int]] = {}
    for r in sorted(rows, key=lambda r: r["number"]):
        at.setdefault((r[x], r[y]), []).append(r["number"])
    return at


def _plot(rows: list[dict[str, Any]], pareto: list[dict[str, Any]], path: Path, budget_us: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["state"] == "COMPLETE"]
    kinds = sorted({str(r["latency_kind"]) for r in ok}) or ["estimate"]
    marker = {"measured": "o", "estimate": "^"}
    pairs = (("latency_us", "rmse"), ("resource_frac", "rmse"), ("latency_us", "resource_frac"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (x, y) in zip(axes, pairs, strict=True):
        for kind in kinds:  # the marker says how the trial's latency was obtained
            mine = [r for r in ok if str(r["latency_kind"]) == kind]
            ax.scatter(_col(mine, x), _col(mine, y), s=18, c="0.6", marker=marker.get(kind, "s"),
                       label=f"completed trial ({kind} latency)")  # fmt: skip
            front = [r for r in pareto if str(r["latency_kind"]) == kind]
            if front:
                ax.scatter(_col(front, x), _col(front, y), s=36, c="tab:red", marker=marker.get(kind, "s"),
                       label=f"front ({kind} latency; feasible, non-dominated)")  # fmt: skip
        for (px, py), numbers in _points(pareto, x, y).items():  # a point proposed again: one label
            more = f" (+{len(numbers) - 1} same)" if len(numbers) > 1 else ""
            ax.annotate(
                f"#{numbers[0]}{more}", (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        if x == "latency_us":
            ax.axvline(budget_us, color="tab:blue", lw=0.8, ls="--", label=f"budget {budget_us:g} us")
        for axis, name in ((ax.xaxis, x), (ax.yaxis, y)):
            if name == "resource_frac":  # spans decades; 1 = the whole part
                (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
                (ax.axvline if axis is ax.xaxis else ax.axhline)(1.0, color="k", lw=0.8, ls=":")
        ax.set_xlabel(
            {
                "latency_us": f"latency, us ({' / '.join(kinds)})",
                "resource_frac": "resource fraction of the part (log; 1 = full)",
            }[x]
        )
        ax.set_ylabel({"rmse": "test RMSE, firmware_sim (normalised)",
                       "resource_frac": "resource fraction of the part (log; 1 = full)"}[y])  # fmt: skip
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"qlstm explore: {len(ok)} completed trials, {len(pareto)} on the front")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _html(cols: list[str], rows: list[dict[str, Any]], pareto: list[dict[str, Any]], budget_us: float) -> str:
    """A self-contained page (no executable script, no CDN; the front as a JSON data block): an SVG scatter of RMSE against latency whose
    points show the trial on hover (SVG <title>), and the front as a table."""
    ok = [r for r in rows if r["state"] == "COMPLETE"]
    w, h, m = 760, 440, 60
    if len(ok):
        x0, x1 = 0.0, max(max(_col(ok, "latency_us")), budget_us) * 1.05
        y0, y1 = min(_col(ok, "rmse")) * 0.95, max(_col(ok, "rmse")) * 1.05
    else:
        x0, x1, y0, y1 = 0.0, budget_us, 0.0, 1.0
    y1 = y1 if y1 > y0 else y0 + 1.0

    def sx(v: float) -> float:
        return m + (v - x0) / (x1 - x0) * (w - 2 * m)

    def sy(v: float) -> float:
        return h - m - (v - y0) / (y1 - y0) * (h - 2 * m)

    front = {r["number"] for r in pareto}
    kinds = ", ".join(sorted({str(r["latency_kind"]) for r in ok})) or "none"
    dots = []
    params = [c for c in cols if c not in (*COLUMNS, *EXTRA)]
    for r in ok:
        tip = (f"trial #{r['number']}: RMSE {r['rmse']:.4g}, {r['latency_us']:.3f} us ({r['latency_kind']}), "
               f"resources {100 * r['resource_frac']:.1f} %\n"
               + ", ".join(f"{p}={r[p]}" for p in params) + f"\n{r['reproduce']}")  # fmt: skip
        on = r["number"] in front
        dots.append(
            f'<circle cx="{sx(r["latency_us"]):.1f}" cy="{sy(r["rmse"]):.1f}" r="{6 if on else 4}" '
            f'fill="{"#d62728" if on else "#999"}"><title>{html.escape(tip)}</title></circle>'
        )
    bx = sx(budget_us)
    svg = (
        f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-size="12">'
        f'<rect x="{m}" y="{m}" width="{w - 2 * m}" height="{h - 2 * m}" fill="none" stroke="#444"/>'
        f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{m}" y2="{h - m}" stroke="#1f77b4" stroke-dasharray="4"/>'
        f'<text x="{bx + 3:.1f}" y="{m + 12}" fill="#1f77b4">budget {budget_us:g} us</text>'
        f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">latency, us ({kinds}) {x0:g} .. {x1:.3g}</text>'
        f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">'
        f"test RMSE (firmware_sim) {y0:.3g} .. {y1:.3g}</text>" + "".join(dots) + "</svg>"
    )
    shown = [c for c in cols if c != "error"]

    def cell(v: Any) -> str:  # an empty cell is empty, not "None"
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    table = (
        "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in shown) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in shown) + "</tr>" for r in pareto)
        + "</table>"
    )  # fmt: skip
    data = json.dumps(pareto, default=str)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>qlstm explore: Pareto front</title>"
        "<style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 5px}</style></head><body>"
        f"<h1>qlstm explore: {len(ok)} completed trials, {len(pareto)} on the front</h1>"
        "<p>Hover a point to see the trial, its parameters and the command that reproduces it. Red: the "
        "front (non-dominated in RMSE, latency, resources among the trials that fit the part and meet "
        f"the budget). Latencies: {kinds} (hls4ml estimate, or RTL cycles measured in Verilator).</p>"
        f"{svg}<h2>The front</h2>{table}"
        f"<script type='application/json' id='front'>{html.escape(data)}</script></body></html>\n"
    )
