"""Issue #13: a config key the run would not use given the other settings is refused in one line
naming it (qlstm.run_config.check_ignored), for `qlstm run --config` and the stage commands."""

from __future__ import annotations

import pytest
import yaml

from qlstm.cli import main
from qlstm.config import to_mapping
from qlstm.errors import QlstmError
from qlstm.run_config import RunConfig, load_run_config, read_section

NO_QAT_REPORT = {"report": {"sweep": [], "compare_methods": ["ptq"]}}

IGNORED = [
    # (config, section read by a stage command, the key named)
    ({"train": {"data": {"source": "file", "sine_samples": 999}}}, "train", "train.data.sine_samples"),
    ({"train": {"data": {"sine_t_max": 5.0}}}, "train", "train.data.sine_t_max"),
    ({"quantize": {"method": "ptq", "qat": {"epochs": 5}}, **NO_QAT_REPORT}, "quantize", "quantize.qat"),
    ({"quantize": {"accum_bits": 20, "max_accum_bits": 24}}, "quantize", "quantize.max_accum_bits"),
    ({"train": {"training": {"head_ridge": 0.1}}}, "train", "train.training.head_ridge"),
    ({"train": {"model": {"layers": [8], "dropout": 0.2}}}, "train", "train.model.dropout"),
    ({"data": {"precursor_spike_v": 0.01}}, "data", "data.precursor_spike_v"),
]


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("cfg, section, key", IGNORED, ids=[i[2] for i in IGNORED])
def test_ignored_key_refused_naming_it(tmp_path, cfg, section, key):
    path = _write(tmp_path, cfg)
    for read in (lambda: load_run_config(path), lambda: read_section(path, section)):
        with pytest.raises(QlstmError, match=rf"{key} would be ignored: .*; remove the key") as exc:
            read()
        assert "\n" not in str(exc.value)


def test_run_and_quantize_commands_refuse_in_one_line(tmp_path, capsys):
    path = _write(tmp_path, {"quantize": {"method": "ptq", "qat": {"epochs": 5}}, **NO_QAT_REPORT})
    assert main(["run", "--config", path, "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip()
    assert "quantize.qat would be ignored" in err and "nothing uses QAT" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
    assert main(["quantize", str(tmp_path / "nope"), "--config", path, "--out", str(tmp_path / "q")]) != 0
    assert "quantize.qat would be ignored" in capsys.readouterr().err
    # the hls C simulation's window count without the C simulation: refused by the run
    path = _write(tmp_path, {"hls": {"target": "zynq7020", "csim": False, "csim_windows": 10}})
    with pytest.raises(QlstmError, match="hls.csim_windows would be ignored: hls.csim is false"):
        load_run_config(path)


@pytest.mark.parametrize(
    "cfg",
    [
        {"train": {"data": {"source": "sine", "sine_samples": 999}}},  # used by `qlstm train`
        {"quantize": {"method": "ptq", "qat": {"epochs": 5}}},  # the default report sweeps QAT
        {"quantize": {"method": "qat", "qat": {"epochs": 5}}, **NO_QAT_REPORT},
        {"train": {"model": {"layers": [8, 8], "dropout": 0.2}}},
        {"train": {"model": {"layers": [8], "dropout": 0.0}}},  # the default value is harmless
        {"data": {"precursor_kinds": ["spikes"], "precursor_spike_v": 0.01}},
    ],
)
def test_used_keys_accepted(tmp_path, cfg):
    read_section(_write(tmp_path, cfg), next(iter(cfg)))


def test_a_full_dump_of_the_settings_is_accepted(tmp_path):
    """A run folder's config (every key at its value) re-reads: keys at their defaults pass."""
    cfg = RunConfig()
    dump = {s: to_mapping(getattr(cfg, s)) for s in ("data", "train", "quantize", "hls", "firmware")}
    dump["report"] = {"sweep": [], "compare_methods": ["ptq"], "budget_us": 1.0}
    dump["quantize"]["method"] = "ptq"
    dump["quantize"]["qat"] = to_mapping(type(cfg.quantize)().qat)
    load_run_config(_write(tmp_path, dump))


def test_a_bare_train_section_says_where_its_keys_go(tmp_path):
    # a train-section file written without its `train:` line (an older layout, case B13's yaml)
    path = tmp_path / "bare.yaml"
    path.write_text("history: 8\nhorizon: 1\nmodel: {cell: lstm, layers: [4]}\ntraining: {epochs: 3}\n")
    with pytest.raises(
        QlstmError, match=r"history, horizon, model, training are `train:` settings: indent them"
    ):
        read_section(path, "train")
