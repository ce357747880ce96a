"""Units in headers are read, kept in the run's description, and a recording in another unit is
converted at predict time (issue 14, fault 2, case B21) or refused naming both units."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from qlstm import description
from qlstm.cli import main
from qlstm.data import Event, EventSet, SyntheticConfig, generate, load_events, load_for_model, save_events
from qlstm.data.units import split_header
from qlstm.errors import QlstmError
from qlstm.train.config import load_config
from qlstm.train.trainer import train_run


@pytest.mark.parametrize(
    "header, name, unit",
    [
        ("U_res [mV]", "U_res", "mV"),
        ("U_res (V)", "U_res", "V"),
        ("U_res/mV", "U_res", "mV"),
        ("U_res / mV", "U_res", "mV"),
        ("I [kA]", "I", "kA"),
        ("T_he (K)", "T_he", "K"),
        ("U (probe 2)", "U (probe 2)", ""),  # not a unit: part of the name
        ("U_res", "U_res", ""),
    ],
)
def test_split_header(header, name, unit):
    assert split_header(header) == (name, unit)


@pytest.mark.parametrize("header", ["U_res [mV]", "U_res (mV)", "U_res/mV"])
def test_unit_read_from_every_header_form(tmp_path, header):
    path = tmp_path / "r.csv"
    path.write_text(f"time_s,{header}\n" + "".join(f"{i * 0.4:.1f},{i}\n" for i in range(10)))
    es = load_events(path)
    assert es.channel_names == ("U_res",) and es.units == ("mV",)


@pytest.fixture(scope="module")
def b21(tmp_path_factory):
    """A float run trained on U_res in volts and a recording written in V, mV and A (B21)."""
    d = tmp_path_factory.mktemp("b21")
    train_file = save_events(generate(SyntheticConfig.short(n_events=6, seed=0)), d / "short.h5")
    cfg = {
        "history": 8,
        "horizon": 2,
        "data": {"channels": ["U_res"], "max_train_windows": 2000, "max_eval_windows": 500},
        "model": {"cell": "lstm", "layers": [4]},
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    }
    train_run(load_config(None, cfg), d / "run_V", data_path=train_file)
    es = generate(dataclasses.replace(SyntheticConfig.short(), n_events=2, seed=7, channels=("U_res",)))
    save_events(es, d / "rec_V.csv")
    for unit, factor in (("mV", 1000.0), ("A", 1.0), ("uV", 1e6)):
        scaled = EventSet(
            tuple(Event(e.name, e.t, e.x * factor, e.quench_index) for e in es.events),
            es.channel_names,
            (unit,),
            es.dt,
            f"{unit} export",
        )
        save_events(scaled, d / f"rec_{unit}.csv")
    return d


def _metrics(d, name, capsys) -> dict:
    out = d / f"m_{name}.json"
    assert (
        main(["predict", str(d / "run_V"), "--data", str(d / f"rec_{name}.csv"), "--metrics", str(out)]) == 0
    )
    capsys.readouterr()
    return json.loads(out.read_text())


def test_b21_run_records_units(b21):
    desc, _ = description.load(b21 / "run_V")
    assert desc.normalisation.units == ("V",) and desc.normalisation.target_unit == "V"


def test_b21_mV_recording_scores_as_the_V_recording(b21, capsys, caplog):
    assert "U_res [mV]" in (b21 / "rec_mV.csv").read_text().splitlines()[0]
    v = _metrics(b21, "V", capsys)
    with caplog.at_level(logging.INFO, logger="qlstm.data.units"):
        mv = _metrics(b21, "mV", capsys)
    assert any("converted from mV to V" in r.getMessage() for r in caplog.records)
    uv = _metrics(b21, "uV", capsys)
    for other in (mv, uv):
        assert other["windows"] == v["windows"]
        # x * 1000 * 1e-3 differs from x by float rounding only
        np.testing.assert_allclose(other["model"]["rmse_per_step"], v["model"]["rmse_per_step"], rtol=1e-9)
        np.testing.assert_allclose(other["model"]["rmse"], v["model"]["rmse"], rtol=1e-9)


def test_b21_converted_values(b21):
    desc, _ = description.load(b21 / "run_V")
    a = load_for_model(b21 / "rec_V.csv", desc)
    b = load_for_model(b21 / "rec_mV.csv", desc)
    assert b.units == ("V",) and b.meta["converted_from"] == ["mV"]
    for x, y in zip(a.events, b.events, strict=True):
        np.testing.assert_allclose(y.x, x.x, rtol=1e-12, atol=0)


def test_b21_incompatible_unit_refused_in_one_line(b21, capsys):
    rc = main(["predict", str(b21 / "run_V"), "--data", str(b21 / "rec_A.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "in A" in err[0] and "in V" in err[0]


def test_other_sampling_step_refused(b21):
    desc, _ = description.load(b21 / "run_V")
    es = load_events(b21 / "rec_V.csv")
    slow = EventSet(
        tuple(Event(e.name, e.t * 10, e.x) for e in es.events), es.channel_names, es.units, 4.0, "slow"
    )
    save_events(slow, b21 / "slow.csv")
    with pytest.raises(QlstmError, match="sampled every 4 s.*every 0.4 s"):
        load_for_model(b21 / "slow.csv", desc)


def test_old_description_without_units_still_reads(b21, tmp_path):
    d = json.loads((b21 / "run_V" / "model.json").read_text())
    del d["normalisation"]["units"]
    desc = description.ModelDescription.from_dict(d)
    assert desc.normalisation.units == () and desc.normalisation.target_unit == ""
    assert load_for_model(b21 / "rec_V.csv", desc).units == ("V",)


def test_make_windows_refuses_unconverted_units(b21):
    from qlstm.data import make_windows

    desc, _ = description.load(b21 / "run_V")
    es = load_events(b21 / "rec_mV.csv")
    with pytest.raises(QlstmError, match="U_res in mV \\(normalisation in V\\)"):
        make_windows(es, desc.normalisation, history=8, horizon=2)


def test_firmware_check_converts_mV_like_predict(tmp_path, capsys):
    """The firmware check on a recording goes through the same conversion (B21, firmware time)."""
    from qlstm.description import save
    from qlstm.testing import random_model, uniform_quantization

    q = uniform_quantization(1, width=16, integer=4, rounding="AP_RND", overflow="AP_SAT")
    desc, w = random_model(("lstm",), (4,), history=6, horizon=2, quantization=q, init="uniform", scale=1.0)
    norm = dataclasses.replace(desc.normalisation, channel_names=("U_res",), units=("V",))
    save(tmp_path / "q", dataclasses.replace(desc, normalisation=norm), w)
    t = np.arange(300) * 0.4
    lines = {}
    for unit, factor in (("V", 1.0), ("mV", 1000.0), ("A", 1.0)):
        es = EventSet(
            (Event("e0", t, (0.5 + 0.3 * np.sin(t))[:, None] * factor),), ("U_res",), (unit,), 0.4, unit
        )
        save_events(es, tmp_path / f"r_{unit}.csv")
        rc = main(["firmware", "check", str(tmp_path / "q"), "--data", str(tmp_path / f"r_{unit}.csv")])
        cap = capsys.readouterr()
        lines[unit] = (rc, [x for x in cap.out.splitlines() if "RMSE vs targets" in x], cap.err)
    assert lines["V"][0] == 0 and lines["V"][1]
    assert lines["mV"][:2] == lines["V"][:2]  # the firmware computes on the same fixed-point inputs
    assert lines["A"][0] == 2 and "in A" in lines["A"][2] and "in V" in lines["A"][2]
