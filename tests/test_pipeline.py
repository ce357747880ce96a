"""`qlstm run`: config validation, named resumable steps, --from/--to, refusal of foreign folders."""

from __future__ import annotations

import json

import pytest

from qlstm import pipeline
from qlstm.cli import main
from qlstm.config import merge
from qlstm.errors import QlstmError

TINY = {
    "data": {"events": 6, "samples": 1200},
    "train": {
        "history": 4,
        "horizon": 2,
        "model": {"layers": [4]},
        "training": {"epochs": 1, "head_init": "random"},
        "data": {"max_train_windows": 1000, "max_eval_windows": 300},
    },
    "quantize": {"bits": 8, "methods": ["ptq"], "deploy": "ptq", "sweep": [6], "qat_epochs": 1},
    "firmware": {"windows": 40},
}


def tiny_config(**overrides) -> pipeline.RunConfig:
    return merge(pipeline.RunConfig(), {**TINY, **overrides})


def test_default_config_loads_and_names_every_step():
    cfg = pipeline.load_run_config(None)
    assert cfg == pipeline.RunConfig()  # the YAML and the built-in defaults agree
    assert cfg.quantize.deploy in cfg.quantize.methods
    assert pipeline.STEP_NAMES == ("data", "train", "quantize", "export", "hls", "firmware", "report")


@pytest.mark.parametrize(
    ("text", "match"),
    [("quantize: {bitz: 8}\n", "unknown key.*bitz"), ("quantize: {methods: [ptq], deploy: qat}\n", "deploy"),
     ("train: {history: 500}\n", "history L=500"), ("hls: {strategy: fast}\n", "not one of")],
    ids=["unknown-key", "deploy", "train-section", "literal"],
)  # fmt: skip
def test_bad_config(tmp_path, capsys, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err), err
    assert not (tmp_path / "r").exists()


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(QlstmError, match="not a `qlstm run` folder"):
        pipeline.execute(tiny_config(), tmp_path, echo=lambda m: None)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_from_needs_the_earlier_steps(tmp_path):
    with pytest.raises(QlstmError, match="step data has not been run"):
        pipeline.execute(tiny_config(), tmp_path / "r", start="train", echo=lambda m: None)


def test_to_before_from_refused(tmp_path):
    with pytest.raises(QlstmError, match="comes before"):
        pipeline.execute(tiny_config(), tmp_path / "r", start="quantize", stop="train", echo=lambda m: None)


@pytest.mark.slow
def test_steps_resume_and_rerun_on_change(tmp_path):
    root = tmp_path / "r"
    log: list[str] = []
    run = pipeline.execute(tiny_config(), root, stop="quantize", echo=log.append)
    assert [m.split()[1] for m in log if m.endswith("...")] == ["data", "train", "quantize"]
    for step in ("data", "train", "quantize"):
        done = json.loads((root / step / pipeline.DONE).read_text())
        assert done["key"] == run.keys[step] and done["outputs"] == run.outputs[step]
    assert not (root / "export").exists()
    mtime = (root / "train" / "float" / "weights.npz").stat().st_mtime_ns

    log.clear()  # same config: nothing re-runs
    pipeline.execute(tiny_config(), root, stop="quantize", echo=log.append)
    assert all("up to date" in m for m in log) and len(log) == 3
    assert (root / "train" / "float" / "weights.npz").stat().st_mtime_ns == mtime

    log.clear()  # a changed quantize section re-runs quantize only
    changed = tiny_config(quantize={"bits": 6, "methods": ["ptq"], "deploy": "ptq"})
    run = pipeline.execute(changed, root, stop="quantize", echo=log.append)
    assert [m.split()[1] for m in log if "up to date" in m] == ["data", "train"]
    assert run.outputs["quantize"]["deploy"].endswith("ptq6")
    assert not (root / "quantize" / "ptq8").exists()  # the stale result is gone

    log.clear()  # --from train forces train and what follows
    pipeline.execute(changed, root, start="train", stop="quantize", echo=log.append)
    assert [m.split()[1] for m in log if m.endswith("...")] == ["train", "quantize"]
    assert "reused" in log[0]


@pytest.mark.slow
def test_run_end_to_end_tiny(tmp_path, capsys):
    """The whole chain on a tiny config through the CLI: report written, firmware_sim bit-exact
    against the C simulation, headline figures printed from the report's summary."""
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))  # with a one-width PTQ/QAT sweep
    root = tmp_path / "r"
    assert main(["run", "--config", str(cfg), "--out", str(root)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert summary["bit_exact"]["available"] and summary["bit_exact"]["bit_exact"]
    assert summary["bit_exact"]["windows"] == 40
    assert (root / "report" / "report.html").stat().st_size > 10_000
    assert (root / "export" / "model.qonnx.onnx").is_file()
    sweep = (root / "quantize" / "sweep" / "sweep.csv").read_text().splitlines()
    assert sweep[0] == "bits,float_rmse,ptq_rmse,qat_rmse" and sweep[1].startswith("6,")
    assert "### Accuracy per bit width" in (root / "report" / "report.md").read_text()
    assert f"report: {root / 'report' / 'report.md'}" in out and "BIT-EXACT" in out
    check = json.loads((root / "firmware" / "firmware_check.json").read_text())
    assert check == summary["bit_exact"]
    assert main(["run", "--config", str(cfg), "--out", str(root)]) == 0  # everything up to date
    assert capsys.readouterr().out.count("up to date") == len(pipeline.STEP_NAMES)


@pytest.mark.slow
def test_default_training_beats_both_baselines(tmp_path):
    """The README's main job trains a model that beats persistence and the linear AR baseline at
    every step ahead on the held-out events (about a minute: the default data and train steps).
    A too-early stop on the noisy first epochs once left it behind AR at all four steps."""
    pipeline.execute(pipeline.RunConfig(), tmp_path, stop="train", echo=lambda m: None)
    test = json.loads((tmp_path / "train" / "float" / "metrics.json").read_text())["test"]
    model = test["model"]["rmse_per_step"]
    assert len(model) == pipeline.RunConfig().train["horizon"]
    for base in ("persistence", "linear_ar"):
        assert all(m < b for m, b in zip(model, test[base]["rmse_per_step"], strict=True)), (base, test)
