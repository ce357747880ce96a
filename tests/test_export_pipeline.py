"""Export in the real pipeline: qlstm train -> quantize (6, 8, 16 bits) -> export -> predict.

The exported files run on the run's own held-out (test) windows and are compared with the
float backend (PyTorch float64, within 1e-5) and with the firmware backend (and its alias quant)
and the oracle of tests/oracle_firmware.py (exact).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from oracle_firmware import reference

from qlstm import description
from qlstm.cli import main
from qlstm.predict import get_backend
from qlstm.runs import open_float_run

TINY = """\
train:
  history: 8
  horizon: 2
  data:
    max_train_windows: 600
    max_eval_windows: 400
  model:
    cell: lstm
    layers: [8]
  training:
    epochs: 2
    batch_size: 64
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[int, Path], np.ndarray]:
    root = tmp_path_factory.mktemp("export_pipeline")
    (root / "tiny.yaml").write_text(TINY)
    data = root / "events.npz"
    assert (
        main(["data", "generate", "--out", str(data), "--events", "4", "--hours", "0.25", "--seed", "0"]) == 0
    )
    float_run = root / "float"
    argv = ["train", "--data", str(data), "--config", str(root / "tiny.yaml"), "--out", str(float_run)]
    assert main([*argv, "--no-progress"]) == 0
    qruns = {}
    for bits in (6, 8, 16):
        qruns[bits] = root / f"q{bits}"
        assert (
            main(
                ["quantize", str(float_run), "--out", str(qruns[bits]), "--bits", str(bits), "--no-progress"]
            )
            == 0
        )
    x_test = open_float_run(float_run).heldout().test.x
    return float_run, qruns, x_test


@pytest.mark.slow
def test_pipeline_float_onnx_matches_float_backend(runs, tmp_path):
    float_run, _, x = runs
    assert main(["export", str(float_run), "--format", "onnx"]) == 0
    y = get_backend("onnx")(float_run, x)
    np.testing.assert_allclose(y, get_backend("float")(float_run, x), rtol=0, atol=1e-5)
    # and through `qlstm predict --backend onnx`
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    assert (
        main(
            [
                "predict",
                str(float_run),
                "--backend",
                "onnx",
                "--inputs",
                str(tmp_path / "x.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(out), y)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [6, 8, 16], ids=lambda b: f"{b}bit")
def test_pipeline_qonnx_matches_the_oracle_and_firmware(runs, bits):
    _, qruns, x = runs
    run = qruns[bits]
    assert main(["export", str(run), "--format", "qonnx"]) == 0
    meta = {p.key: p.value for p in onnx.load_model(str(run / "model.qonnx.onnx")).metadata_props}
    desc, _ = description.load(run)
    assert json.loads(meta["qlstm.description"]) == json.loads(json.dumps(desc.to_dict()))
    y = get_backend("onnx")(run, x)
    lsb = desc.quantization.dense.result.lsb
    refs = {
        "oracle": reference(desc.architecture, description.load(run)[1], desc.quantization, x),
        "quant": get_backend("quant")(run, x),  # the alias of firmware, through qlstm predict
        "firmware": get_backend("firmware")(run, x),
    }
    for name, ref in refs.items():
        lsbs = np.abs(y - ref) / lsb
        print(
            f"{bits} bit, {len(x)} test windows vs {name}: exact {np.mean(lsbs == 0):.2%}, max {lsbs.max():g} LSB"
        )
        assert lsbs.max() <= 1
        np.testing.assert_array_equal(y, ref, err_msg=name)
