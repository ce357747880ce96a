"""model.json formats: qlstm-model/2 spells the quantization section with a z; qlstm-model/1 files
(the section spelt with an s) still read, to the same description (issue 13, item 7)."""

from __future__ import annotations

import json

import numpy as np

from qlstm import description
from qlstm.testing import random_model, uniform_quantization


def test_old_format_reads_to_the_same_description(tmp_path):
    desc, w = random_model(
        ("lstm",), (3,), history=4, horizon=2, quantization=uniform_quantization(1), init="uniform", seed=1
    )
    description.save(tmp_path / "new", desc, w)
    d = json.loads((tmp_path / "new" / "model.json").read_text())
    assert d["format"] == description.FORMAT == "qlstm-model/2" and "quantization" in d
    old_key = "quantisation"  # the section's key in qlstm-model/1
    old = {(old_key if k == "quantization" else k): v for k, v in d.items()}
    old["format"] = "qlstm-model/1"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.json").write_text(json.dumps(old))
    np.savez(tmp_path / "old" / "weights.npz", **w)
    loaded, _ = description.load(tmp_path / "old")
    assert loaded == description.load(tmp_path / "new")[0]
    assert loaded.fingerprint() == desc.fingerprint()
