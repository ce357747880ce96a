"""Standardisation per channel: a channel constant inside every training window gets scale 1 and
a warning, and the other channels (and the target) are still standardised (issue 14, fault 3, B13)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from qlstm.data import load_events
from qlstm.errors import QlstmError
from qlstm.train.config import load_config
from qlstm.train.dataset import WindowSet, standardisation
from qlstm.train.trainer import train_run


def _b13(path, kind: str):
    """8 events x 400 samples: U_res a noisy sine; I = 25 A flat, 24 A on the last sample
    ("laststep") or flat everywhere ("const"), as B13's make_nearconst.py writes them."""
    rng = np.random.default_rng(3)
    rows = []
    for e in range(8):
        t = np.arange(400) * 0.4
        u = 1e-3 * np.sin(t / (5 + e)) + 1e-4 * rng.standard_normal(400)
        i = np.full(400, 25.0)
        if kind == "laststep":
            i[-1] = 24.0
        rows += [f"ev{e},{a:.1f},{b:.6e},{c:.2f}" for a, b, c in zip(t, u, i, strict=True)]
    path.write_text("event,time_s,U_res [V],I [A]\n" + "\n".join(rows) + "\n")
    return path


def _cfg(channels, mode):
    return load_config(
        None,
        {
            "history": 8,
            "horizon": 1,
            "data": {"channels": channels, "max_train_windows": 5000, "max_eval_windows": 1000},
            "model": {"cell": "lstm", "layers": [4]},
            "training": {"epochs": 3, "batch_size": 64, "lr": 0.01, "patience": 3, "standardise": mode},
        },
    )


def test_flat_channel_scale_one_others_standardised(caplog):
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0.5, 0.1, (500, 8)), np.full((500, 8), 1.0)], axis=2).astype(np.float32)
    y = rng.normal(0.5, 0.2, (500, 1)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        s = standardisation(
            WindowSet(x, y, 1, np.zeros(len(x), int), np.arange(len(x))), "both", ("U_res", "I")
        )
    assert [r.getMessage().count("\n") for r in caplog.records] == [0]
    assert "I constant inside every training window" in caplog.records[0].getMessage()
    assert s["in_scale"][1] == 1.0 and s["in_shift"][1] == 0.0
    assert s["in_scale"][0] == pytest.approx(1 / x[:, :, 0].astype(np.float64).std())
    assert s["out_scale"] == pytest.approx(y.astype(np.float64).std())
    assert standardisation(WindowSet(x, y, 1, np.zeros(len(x), int), np.arange(len(x))), "none") == {}


@pytest.mark.slow
def test_b13_laststep_channel_does_not_switch_off_standardisation(tmp_path, caplog):
    data = _b13(tmp_path / "laststep_I.csv", "laststep")
    with caplog.at_level(logging.WARNING):
        both = train_run(_cfg(["U_res", "I"], "both"), tmp_path / "both", data_path=data)
    assert any("I constant inside every training window" in r.getMessage() for r in caplog.records)
    none = train_run(_cfg(["U_res", "I"], "none"), tmp_path / "none", data_path=data)
    wb = np.load(tmp_path / "both" / "weights.npz")
    wn = np.load(tmp_path / "none" / "weights.npz")
    assert any(not np.array_equal(wb[k], wn[k]) for k in wb.files)
    # B13: standardise none (= the old silent switch-off) scores 0.0549; U_res only 0.0052
    mse_both, mse_none = (
        json.loads((tmp_path / r / "metrics.json").read_text())["test"]["model"]["mse"]
        for r in ("both", "none")
    )
    assert mse_both < mse_none / 3, (mse_both, mse_none)
    assert both is not None and none is not None


def test_b13_channel_constant_everywhere_refused(tmp_path):
    data = _b13(tmp_path / "const_I.csv", "const")
    load_events(data)  # the file itself is fine
    with pytest.raises(QlstmError, match="channel\\(s\\) I are constant"):
        train_run(_cfg(["U_res", "I"], "both"), tmp_path / "r", data_path=data)
