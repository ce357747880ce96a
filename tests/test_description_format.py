"""model.json formats: qlstm-model/2 spells the quantization section with a z; qlstm-model/1 files
(the section spelt with an s) still read, to the same description (issue 13, item 7)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from qlstm import description
from qlstm.errors import QlstmError
from qlstm.testing import random_model, uniform_quantization


def test_old_format_reads_to_the_same_description(tmp_path):
    desc, w = random_model(
        ("lstm",), (3,), history=4, horizon=2, quantization=uniform_quantization(1), init="uniform", seed=1
    )
    description.save(tmp_path / "new", desc, w)
    d = json.loads((tmp_path / "new" / "model.json").read_text())
    assert d["format"] == description.FORMAT == "qlstm-model/3" and "quantization" in d
    old_key = "quantisation"  # the section's key in qlstm-model/1
    old = {(old_key if k == "quantization" else k): v for k, v in d.items()}
    old["format"] = "qlstm-model/1"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.json").write_text(json.dumps(old))
    np.savez(tmp_path / "old" / "weights.npz", **w)
    loaded, _ = description.load(tmp_path / "old")
    assert loaded == description.load(tmp_path / "new")[0]
    assert loaded.fingerprint() == desc.fingerprint()


def test_format_2_reads_as_one_linear_head(tmp_path):
    """qlstm-model/2 files have no architecture.head: they read as one linear Dense layer, to the
    same description as a qlstm-model/3 file, and their weights keep the names head.*."""
    desc, w = random_model(("gru",), (4,), history=3, horizon=2, quantization=uniform_quantization(1), seed=2)
    description.save(tmp_path / "new", desc, w)
    d = json.loads((tmp_path / "new" / "model.json").read_text())
    assert d["format"] == "qlstm-model/3"
    assert d["architecture"]["head"] == [{"units": 2, "activation": "linear"}]
    assert "hidden" not in d["quantization"] and "act_result" not in d["quantization"]["dense"]
    del d["architecture"]["head"]
    d["format"] = "qlstm-model/2"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.json").write_text(json.dumps(d))
    np.savez(tmp_path / "old" / "weights.npz", **w)
    loaded, _ = description.load(tmp_path / "old")
    assert loaded == desc and loaded.architecture.simple_head


def test_multi_layer_head_round_trips(tmp_path):
    head = ((5, "relu"), (3, "tanh"), (2, "sigmoid"))
    q = uniform_quantization(1, head=("relu", "tanh", "sigmoid"))
    desc, w = random_model(("lstm",), (4,), history=3, horizon=2, quantization=q, seed=3, head=head)
    assert set(w) >= {"dense0.weight", "dense0.bias", "dense1.weight", "head.weight"}
    assert w["dense1.weight"].shape == (3, 5) and w["head.weight"].shape == (2, 3)
    description.save(tmp_path / "r", desc, w)
    loaded, lw = description.load(tmp_path / "r")
    assert loaded == desc and loaded.fingerprint() == desc.fingerprint()
    points = loaded.quantization.points()
    assert {"dense0.act_result", "dense1.table", "head.table", "head.act_result"} <= set(points)
    assert "dense0.table" not in points  # relu has no table


def test_head_quantization_must_match_the_architecture(tmp_path):
    head = ((5, "relu"), (2, "sigmoid"))
    q = uniform_quantization(1, head=("relu", "sigmoid"))
    desc, w = random_model(("lstm",), (4,), history=3, horizon=2, quantization=q, seed=3, head=head)
    with pytest.raises(QlstmError, match="head layer 'dense0' \\(relu\\): act_result"):
        desc.with_quantization(replace(q, hidden=(replace(q.hidden[0], act_result=None),)))
    with pytest.raises(QlstmError, match="head layer 'head' \\(sigmoid\\): a table"):
        desc.with_quantization(replace(q, dense=replace(q.dense, table=None)))
    with pytest.raises(QlstmError, match="1 head layer\\(s\\), the architecture 2"):
        desc.with_quantization(replace(q, hidden=()))
    with pytest.raises(QlstmError, match="unknown head activation 'gelu'"):
        description.DenseLayer(3, "gelu")
    with pytest.raises(QlstmError, match="last Dense layer has 3 units, expected horizon k=2"):
        description.Architecture(1, 3, 2, desc.architecture.layers, head=(description.DenseLayer(3),))
