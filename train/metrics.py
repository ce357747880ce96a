"""Per-step error metrics and the two baselines every trained model is measured against.

* persistence: the last observed target value is the prediction for every step ahead;
* linear AR: ``y = [x_flat, 1] @ W``, least squares on the training windows (same history L,
  all input channels), one column of ``W`` per step ahead.

All numbers are in normalised units (the model's own space); ``raw_scale`` converts an RMSE
to the target channel's physical units.
"""

from __future__ import annotations

import numpy as np

from qlstm.data.baselines import LinearAR, persistence
from qlstm.runs import rmse_metrics


def errors(pred: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """RMSE and MAE per step ahead and over all steps (:func:`qlstm.runs.rmse_metrics`, as JSON)."""
    return rmse_metrics(pred, y).to_dict()


def compare(model_pred: np.ndarray, x: np.ndarray, y: np.ndarray, ar: LinearAR) -> dict[str, object]:
    """Model vs persistence vs AR on the same windows, with an explicit verdict."""
    k = y.shape[1]
    out: dict[str, object] = {
        "windows": int(len(y)),
        "model": errors(model_pred, y),
        "persistence": errors(persistence(x, k), y),
        "linear_ar": errors(ar.predict(x), y),
    }
    m = out["model"]["rmse"]  # type: ignore[index]
    out["beats_persistence"] = bool(m < out["persistence"]["rmse"])  # type: ignore[index]
    out["beats_linear_ar"] = bool(m < out["linear_ar"]["rmse"])  # type: ignore[index]
    per_step = np.asarray(out["model"]["rmse_per_step"])  # type: ignore[index]
    for key in ("persistence", "linear_ar"):
        base = np.asarray(out[key]["rmse_per_step"])  # type: ignore[index]
        out[f"steps_beating_{key}"] = int(np.sum(per_step < base))
    return out


def verdict(cmp: dict[str, object]) -> str:
    """One line: does the model beat both baselines (RMSE over all k steps), and at how many steps?"""
    k = len(cmp["model"]["rmse_per_step"])  # type: ignore[index]
    parts = []
    for key, name in (("persistence", "persistence"), ("linear_ar", "the linear AR baseline")):
        word = "beats" if cmp[f"beats_{key}"] else "does NOT beat"
        parts.append(f"{word} {name} (better at {cmp[f'steps_beating_{key}']} of {k} steps)")
    return "model " + " and ".join(parts)


def table(cmp: dict[str, object]) -> str:
    """A plain-text table of RMSE/MAE per step for the model and both baselines."""
    rows = [f"{'step':>4} {'RMSE model':>11} {'persist.':>11} {'AR':>11} {'MAE model':>11}"]
    mod, per, ar = cmp["model"], cmp["persistence"], cmp["linear_ar"]
    for j, r in enumerate(mod["rmse_per_step"]):  # type: ignore[index]
        rows.append(
            f"{j + 1:>4} {r:11.6f} {per['rmse_per_step'][j]:11.6f} "  # type: ignore[index]
            f"{ar['rmse_per_step'][j]:11.6f} {mod['mae_per_step'][j]:11.6f}"  # type: ignore[index]
        )
    rows.append(
        f"{'all':>4} {mod['rmse']:11.6f} {per['rmse']:11.6f} {ar['rmse']:11.6f} {mod['mae']:11.6f}"  # type: ignore[index]
    )
    return "\n".join(rows)
