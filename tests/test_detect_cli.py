"""``qlstm detect`` end to end on a small random quantized model and generated events."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from qlstm import description
from qlstm.cli import main
from qlstm.data import SyntheticConfig, generate, save_events

pytestmark = pytest.mark.slow  # about 20 s: windows of 4 events through firmware_sim and PyTorch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from qlstm.testing import detection_run, random_model, uniform_quantization

    root = tmp_path_factory.mktemp("detect")
    model = random_model(
        history=8, horizon=2, units=(4,), quantization=uniform_quantization(1, width=16, integer=4),
        init="uniform", seed=3,
    )  # fmt: skip
    run, data, _, _ = detection_run(root, "q16", *model)
    return root, run, data


def test_detect_firmware_end_to_end(setup, capsys):
    root, run, data = setup
    out = root / "det_fw"
    assert main(["detect", str(run), "--data", str(data), "--backend", "firmware", "--out", str(out),
                 "--false-alarms-per-day", "5", "--no-progress"]) == 0  # fmt: skip
    d = json.loads((out / "detection.json").read_text())
    for key in ("detection_rate", "false_alarms_per_day", "median_lead_time_s", "events", "auc", "baselines"):
        assert key in d
    assert set(d["baselines"]) == {"persistence", "linear_ar", "voltage_threshold"}
    assert d["evaluation_events"] == ["event_0002", "event_0003"]
    assert d["calibration_events"] == ["event_0000", "event_0001"]
    assert d["labels_source"] == "recording" and d["precursors"] == 2
    assert "float" in d and 0.0 <= d["float_vs_firmware"]["alarm_state_agreement"] <= 1.0
    assert (
        len(d["residual_rms_per_step"]["normal"]) == 2
        and len(d["baselines"]["linear_ar"]["residual_rms_per_step"]["anomaly"]) == 2
    )
    for png in ("timelines.png", "roc.png", "lead_times.png"):
        assert (out / png).stat().st_size > 1000
    assert "plain |U_res| threshold" in capsys.readouterr().out


def test_detect_without_labels_reports_alarms_only(setup, tmp_path):
    root, run, _ = setup
    es = generate(SyntheticConfig.short(n_events=3, duration_s=300.0))
    bare = type(es)(
        tuple(replace(e, anomalies=(), quench_index=None) for e in es.events),
        es.channel_names,
        es.units,
        es.dt,
    )
    data = save_events(bare, tmp_path / "bare.npz")
    out = tmp_path / "det"
    assert main(["detect", str(run), "--data", str(data), "--calibration", str(root / "events.npz"),
                 "--out", str(out), "--no-plots", "--no-progress"]) == 0  # fmt: skip
    d = json.loads((out / "detection.json").read_text())
    assert d["labelled"] is False and d["detection_rate"] is None and d["auc"] is None
    assert d["alarms_per_day"] is not None and len(d["events"]) == 3


def test_bad_labels_cli_one_line_no_output(setup, tmp_path, capsys):
    root, run, data = setup
    labels = tmp_path / "l.csv"
    labels.write_text("event,start_s,end_s\nevent_0002,100,50\n")
    out = tmp_path / "det"
    assert main(["detect", str(run), "--data", str(data), "--labels", str(labels), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "reversed" in err
    assert not out.exists()


def test_firmware_backend_refuses_float_run(setup, tmp_path, capsys):
    root, run, data = setup
    desc, weights = description.load(run)
    float_run = tmp_path / "float"
    description.save(float_run, desc.with_quantization(None), {k: np.asarray(v) for k, v in weights.items()})
    assert (
        main(
            [
                "detect",
                str(float_run),
                "--data",
                str(data),
                "--backend",
                "firmware",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    assert "not a quantized run" in capsys.readouterr().err
