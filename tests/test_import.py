"""``qlstm import``: every front end against an independent NumPy forward, each semantic rule
on its own, and every refusal as one line naming the layer and the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from import_models import keras_forward, stack, torch_forward, torch_params, write_keras2_h5, write_keras3
from torch import nn

from qlstm import description
from qlstm.cli import main
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.float_reference import float_predict
from qlstm.importers import import_model
from qlstm.importers.common import KERAS_TO_TORCH, ONNX_TO_TORCH, permute_gates
from qlstm.predict import run_backend

L, C = 7, 3
TOL = 1e-6  # absolute, float64 forward vs float64 NumPy on float32 weights


def windows(n: int = 16, seed: int = 1, history: int = L, channels: int = C) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, history, channels))


def predict_float(tmp_path, run, x) -> np.ndarray:
    np.save(tmp_path / "x.npy", x)
    assert (
        main(["predict", str(run), "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")])
        == 0
    )
    return np.load(tmp_path / "y.npy")


def refused(capsys, argv) -> str:
    """Run the CLI, expect QlstmError's exit status and exactly one error line; return it."""
    assert main(argv) == QlstmError("").exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


KERAS_WRITERS = {"h5": (write_keras2_h5, ".h5"), "keras": (write_keras3, ".keras")}
STACKS = {
    "lstm-gru": [("LSTM", {"units": 5, "return_sequences": True}), ("Dropout", {"rate": 0.2}),
                 ("GRU", {"units": 4}), ("Dense", {"units": 2})],
    "gru-lstm": [("GRU", {"units": 4, "return_sequences": True}), ("LSTM", {"units": 6}), ("Dense", {"units": 1})],
    "lstm-nobias": [("LSTM", {"units": 5, "use_bias": False}), ("Dense", {"units": 3, "use_bias": False})],
    "gru-unrolled": [("GRU", {"units": 3, "unroll": True}), ("Activation", {"activation": "linear"}),
                     ("Dense", {"units": 2, "activation": "linear"})],
    # heads of several Dense layers with activations (issue #17)
    "lstm-relu-sigmoid": [("LSTM", {"units": 5}), ("Dense", {"units": 6, "activation": "relu"}),
                          ("Dense", {"units": 2, "activation": "sigmoid"})],
    "gru-activation-layers": [("GRU", {"units": 4}), ("Dense", {"units": 5}), ("Activation", {"activation": "tanh"}),
                              ("Dropout", {"rate": 0.1}), ("Dense", {"units": 4}), ("Activation", {"activation": "relu"}),
                              ("Dense", {"units": 3, "activation": "softmax"})],
}  # fmt: skip


# ====================================================================== Keras
@pytest.mark.parametrize("fmt", KERAS_WRITERS)
@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("name", STACKS)
def test_keras_matches_numpy_keras_forward(tmp_path, fmt, functional, name):
    write, suffix = KERAS_WRITERS[fmt]
    layers = stack([(c, dict(cfg)) for c, cfg in STACKS[name]], C, seed=3)
    path = tmp_path / f"m{suffix}"
    write(path, layers, L, C, functional=functional)
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    ref = keras_forward(layers, x)
    assert np.max(np.abs(y - ref)) <= TOL
    assert np.max(np.abs(ref)) > 0.05  # the comparison is not trivially on zeros
    info = json.loads((tmp_path / "run" / "import.json").read_text())
    assert info["format"] == ("keras-h5" if fmt == "h5" else "keras")


def test_keras22_legacy_h5(tmp_path):
    """Keras 2.2 files: Sequential config as a plain list, weight names ``lstm_1/kernel:0``."""
    layers = stack([("LSTM", {"units": 4, "return_sequences": True, "name": "lstm_1"}),
                    ("GRU", {"units": 3, "name": "gru_1"}), ("Dense", {"units": 2, "name": "dense_1"})], C)  # fmt: skip
    write_keras2_h5(tmp_path / "m.h5", layers, L, C, legacy=True)
    assert main(["import", str(tmp_path / "m.h5"), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    assert np.max(np.abs(predict_float(tmp_path, tmp_path / "run", x) - keras_forward(layers, x))) <= TOL


def test_keras_gate_order_matters(tmp_path):
    """The conversion is sensitive: the same arrays read in PyTorch order give another model."""
    layers = stack(
        [("LSTM", {"units": 4, "return_sequences": True}), ("GRU", {"units": 3}), ("Dense", {"units": 1})], C
    )
    write_keras2_h5(tmp_path / "m.h5", layers, L, C)
    import_model(tmp_path / "m.h5", tmp_path / "run")
    desc, w = description.load(tmp_path / "run")
    x = windows()
    from qlstm.train.model import from_weights, predict_array

    good = predict_array(from_weights(desc.architecture, w), x)
    assert np.max(np.abs(good - keras_forward(layers, x))) <= TOL
    w2 = dict(w)
    for key in ("rnn1.weight_ih", "rnn1.weight_hh", "rnn1.bias_ih", "rnn1.bias_hh"):  # GRU: swap r/z again
        w2[key] = permute_gates(w[key], "gru", 3, KERAS_TO_TORCH["gru"])
    bad = predict_array(from_weights(desc.architecture, w2), x)
    assert np.max(np.abs(bad - keras_forward(layers, x))) > 1e-2


def test_gate_permutations_by_label():
    """Blocks labelled by gate name land in PyTorch order i, f, g, o / r, z, n."""
    keras_lstm = np.array(["i", "f", "c", "o"])
    assert list(permute_gates(np.arange(4.0), "lstm", 1, KERAS_TO_TORCH["lstm"])) == [0, 1, 2, 3]
    assert [
        keras_lstm[int(i)] for i in permute_gates(np.arange(4.0), "lstm", 1, KERAS_TO_TORCH["lstm"])
    ] == list("ifco")
    keras_gru = np.array(["z", "r", "h"])
    assert [
        keras_gru[int(i)] for i in permute_gates(np.arange(3.0), "gru", 1, KERAS_TO_TORCH["gru"])
    ] == list("rzh")
    onnx_lstm = np.array(["i", "o", "f", "c"])
    assert [
        onnx_lstm[int(i)] for i in permute_gates(np.arange(4.0), "lstm", 1, ONNX_TO_TORCH["lstm"])
    ] == list("ifco")
    onnx_gru = np.array(["z", "r", "h"])
    assert [onnx_gru[int(i)] for i in permute_gates(np.arange(3.0), "gru", 1, ONNX_TO_TORCH["gru"])] == list(
        "rzh"
    )


def test_keras_gru_biases_become_input_and_recurrent_bias(tmp_path):
    layers = stack([("GRU", {"units": 2}), ("Dense", {"units": 1})], C)
    write_keras3(tmp_path / "m.keras", layers, L, C)
    import_model(tmp_path / "m.keras", tmp_path / "run")
    _, w = description.load(tmp_path / "run")
    b = layers[0]["arrays"]["bias"].astype(np.float64)  # (2, 3H): z, r, h
    np.testing.assert_array_equal(w["rnn0.bias_ih"], np.concatenate([b[0, 2:4], b[0, 0:2], b[0, 4:6]]))
    np.testing.assert_array_equal(w["rnn0.bias_hh"], np.concatenate([b[1, 2:4], b[1, 0:2], b[1, 4:6]]))


REFUSALS = {
    "masking": ([("Masking", {"mask_value": 0.0}), ("LSTM", {"units": 3}), ("Dense", {"units": 1})],
                "'masking' (Masking): masking skips time steps"),
    "hard_sigmoid": ([("LSTM", {"units": 3, "recurrent_activation": "hard_sigmoid"}), ("Dense", {"units": 1})],
                     "'lstm' (LSTM): recurrent_activation 'hard_sigmoid'"),
    "reset_before": ([("GRU", {"units": 3, "reset_after": False}), ("Dense", {"units": 1})],
                     "'gru' (GRU): reset_after=False"),
    "go_backwards": ([("LSTM", {"units": 3, "go_backwards": True}), ("Dense", {"units": 1})],
                     "'lstm' (LSTM): go_backwards"),
    "stateful": ([("GRU", {"units": 3, "stateful": True}), ("Dense", {"units": 1})], "'gru' (GRU): stateful"),
    "relu_lstm": ([("LSTM", {"units": 3, "activation": "relu"}), ("Dense", {"units": 1})],
                  "'lstm' (LSTM): activation 'relu'"),
    "time_major": ([("LSTM", {"units": 3, "time_major": True}), ("Dense", {"units": 1})], "'lstm' (LSTM): time_major"),
    "bidirectional": ([("Bidirectional", {}), ("Dense", {"units": 1})], "(Bidirectional): bidirectional"),
    "conv": ([("Conv1D", {"filters": 2}), ("LSTM", {"units": 3}), ("Dense", {"units": 1})],
             "'conv1d' (Conv1D): not a supported layer type"),
    "last_returns_sequences": ([("LSTM", {"units": 3, "return_sequences": True}), ("Dense", {"units": 1})],
                               "'lstm' (LSTM): the last recurrent layer returns sequences"),
    "middle_returns_last": ([("LSTM", {"units": 3}), ("LSTM", {"units": 2}), ("Dense", {"units": 1})],
                            "'lstm' (LSTM): return_sequences is false"),
    "two_activations": ([("GRU", {"units": 3}), ("Dense", {"units": 1, "activation": "relu"}),
                         ("Activation", {"activation": "sigmoid"})],
                        "layer 'activation' (Activation): a second activation after Dense layer 'dense' (relu)"),
    "gelu_head": ([("GRU", {"units": 3}), ("Dense", {"units": 1, "activation": "gelu"})],
                  "layer 'dense' (Dense): activation 'gelu' is not supported in the head"),
    "no_head": ([("LSTM", {"units": 3})], "no Dense layer after the recurrent layers"),
}  # fmt: skip


@pytest.mark.parametrize("fmt", KERAS_WRITERS)
@pytest.mark.parametrize("case", REFUSALS)
def test_keras_refusals_are_one_line_naming_the_layer(tmp_path, capsys, fmt, case):
    spec, expected = REFUSALS[case]
    write, suffix = KERAS_WRITERS[fmt]
    layers = stack([(c, dict(cfg)) for c, cfg in spec], C)
    write(tmp_path / f"m{suffix}", layers, L, C)
    line = refused(capsys, ["import", str(tmp_path / f"m{suffix}"), "--out", str(tmp_path / "run")])
    assert expected in line, line
    assert line.startswith("qlstm import: error: ")
    assert not (tmp_path / "run").exists()


def test_keras_history_rules(tmp_path, capsys):
    layers = stack([("LSTM", {"units": 3}), ("Dense", {"units": 1})], C)
    write_keras2_h5(tmp_path / "open.h5", layers, None, C)
    line = refused(capsys, ["import", str(tmp_path / "open.h5"), "--out", str(tmp_path / "r")])
    assert "pass --history L" in line
    assert main(["import", str(tmp_path / "open.h5"), "--out", str(tmp_path / "r"), "--history", "9"]) == 0
    assert description.load(tmp_path / "r")[0].architecture.history == 9
    write_keras2_h5(tmp_path / "fixed.h5", layers, L, C)
    line = refused(
        capsys, ["import", str(tmp_path / "fixed.h5"), "--out", str(tmp_path / "r2"), "--history", "5"]
    )
    assert "--history 5 differs from the model's fixed input length 7" in line


def test_functional_branch_is_refused(tmp_path, capsys):
    layers = stack([("LSTM", {"units": 3}), ("Dense", {"units": 1})], C)
    write_keras2_h5(tmp_path / "m.h5", layers, L, C, functional=True)
    import h5py

    with h5py.File(tmp_path / "m.h5", "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][2]["inbound_nodes"] = [[["input_1", 0, 0, {}]]]  # Dense reads the input
        f.attrs["model_config"] = json.dumps(cfg).encode()
    line = refused(capsys, ["import", str(tmp_path / "m.h5"), "--out", str(tmp_path / "r")])
    assert "layer 'dense' (Dense): takes its input from ['input_1']" in line


def test_corrupt_and_weights_only_files(tmp_path, capsys):
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    assert "not a readable HDF5 file" in refused(
        capsys, ["import", str(tmp_path / "bad.h5"), "--out", str(tmp_path / "r")]
    )
    import h5py

    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_group("lstm")
    assert "no model_config attribute" in refused(
        capsys, ["import", str(tmp_path / "w.h5"), "--out", str(tmp_path / "r")]
    )
    (tmp_path / "bad.keras").write_bytes(b"PK nonsense")
    assert "not a readable .keras archive" in refused(
        capsys, ["import", str(tmp_path / "bad.keras"), "--out", str(tmp_path / "r")]
    )
    (tmp_path / "m.txt").write_text("x")
    assert "unknown model file type '.txt'" in refused(
        capsys, ["import", str(tmp_path / "m.txt"), "--out", str(tmp_path / "r")]
    )


def test_normalisation_file(tmp_path, capsys):
    layers = stack([("LSTM", {"units": 3}), ("Dense", {"units": 1})], C)
    write_keras3(tmp_path / "m.keras", layers, L, C)
    norm = {
        "lo": [0.0, -1.0, 2.0],
        "hi": [1.0, 1.0, 5.0],
        "channel_names": ["u", "i", "t"],
        "units": ["V", "A", "K"],
    }
    (tmp_path / "n.json").write_text(json.dumps(norm))
    assert (
        main(
            [
                "import",
                str(tmp_path / "m.keras"),
                "--out",
                str(tmp_path / "r"),
                "--normalisation",
                str(tmp_path / "n.json"),
            ]
        )
        == 0
    )
    assert description.load(tmp_path / "r")[0].normalisation.channel_names == ("u", "i", "t")
    (tmp_path / "n2.json").write_text(
        json.dumps({**norm, "lo": [0.0], "hi": [1.0], "channel_names": ["u"], "units": []})
    )
    line = refused(
        capsys,
        [
            "import",
            str(tmp_path / "m.keras"),
            "--out",
            str(tmp_path / "r2"),
            "--normalisation",
            str(tmp_path / "n2.json"),
        ],
    )
    assert "1 channel(s), but the model reads 3 input channel(s)" in line


# ====================================================================== PyTorch
class TorchNet(nn.Module):
    def __init__(
        self,
        head_layers: int = 1,
        bidirectional: bool = False,
        proj: int = 0,
        use_hn: bool = False,
        head_act=torch.relu,
    ) -> None:
        super().__init__()
        self.use_hn, self.head_act = use_hn, head_act
        self.lstm = nn.LSTM(C, 5, num_layers=2, batch_first=True, bidirectional=bidirectional, proj_size=proj)
        self.gru = nn.GRU(proj if proj else 5 * (2 if bidirectional else 1), 4, batch_first=True)
        self.fc = nn.Linear(4, 2)
        self.fc2 = nn.Linear(2, 1) if head_layers > 1 else None

    def forward(self, x):
        y, _ = self.lstm(x)
        y, h_n = self.gru(y)
        y = self.fc(h_n[-1] if self.use_hn else y[:, -1])
        return self.fc2(self.head_act(y)) if self.fc2 is not None else y


def _net(seed: int = 0, **kw) -> TorchNet:
    torch.manual_seed(seed)
    return TorchNet(**kw).eval()


def _yaml(tmp_path, net, extra: str = "") -> str:
    torch.save(net.state_dict(), tmp_path / "w.pt")
    text = (
        "state_dict: w.pt\nrecurrent:\n  - {module: lstm, cell: lstm}\n  - {module: gru, cell: gru}\nhead: fc\n"
        + extra
    )
    (tmp_path / "m.yaml").write_text(text)
    return str(tmp_path / "m.yaml")


def test_torch_state_dict_yaml_matches_numpy_and_torch(tmp_path):
    net = _net()
    assert main(["import", _yaml(tmp_path, net, f"history: {L}\n"), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    ref = torch_forward(torch_params(net), (net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy()), x)
    assert np.max(np.abs(y - ref)) <= TOL
    with torch.no_grad():
        y_torch = net.double()(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(y - y_torch)) <= TOL
    _, w = description.load(tmp_path / "run")
    np.testing.assert_array_equal(w["rnn1.bias_hh"], net.lstm.bias_hh_l1.detach().numpy())  # both biases kept


def _head_ref(net) -> list:
    """``[(W, b, activation), ...]`` of TorchNet's head (fc, then relu and fc2 if present)."""
    out = [(net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy(), "linear")]
    if net.fc2 is not None:
        out = [
            (*out[0][:2], "relu"),
            (net.fc2.weight.detach().numpy(), net.fc2.bias.detach().numpy(), "linear"),
        ]
    return out


def test_torch_state_dict_yaml_head_of_several_layers(tmp_path):
    net = _net(seed=2, head_layers=2)
    text = f"history: {L}\n"
    path = _yaml(tmp_path, net, text).replace("m.yaml", "m2.yaml")
    (tmp_path / "m2.yaml").write_text(
        (tmp_path / "m.yaml")
        .read_text()
        .replace("head: fc\n", "head: [{module: fc, activation: relu}, {module: fc2}]\n")
    )
    assert main(["import", path, "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    assert np.max(np.abs(y - torch_forward(torch_params(net), _head_ref(net), x))) <= TOL
    desc, _ = description.load(tmp_path / "run")
    assert [(d.units, d.activation) for d in desc.architecture.head] == [(2, "relu"), (1, "linear")]


def test_torch_yaml_refusals(tmp_path, capsys):
    out = ["--out", str(tmp_path / "r"), "--history", str(L)]
    line = refused(capsys, ["import", _yaml(tmp_path, _net(bidirectional=True)), *out])
    assert "layer 'lstm' (nn.LSTM): bidirectional=True" in line
    line = refused(capsys, ["import", _yaml(tmp_path, _net(proj=3)), *out])
    assert "layer 'lstm' (nn.LSTM): proj_size > 0" in line
    line = refused(capsys, ["import", _yaml(tmp_path, _net(head_layers=2)), *out])
    assert "state_dict entries the YAML does not describe: fc2.bias, fc2.weight" in line
    line = refused(
        capsys, ["import", _yaml(tmp_path, _net(), "head: [{module: fc, activation: hardtanh}]\n"), *out]
    )
    assert "layer 'fc' (nn.Linear): activation 'hardtanh' is not supported in the head" in line
    torch.save(_net(), tmp_path / "w.pt")  # a pickled module, not a state_dict: weights_only refuses it
    line = refused(capsys, ["import", str(tmp_path / "m.yaml"), *out])
    assert "not a state_dict loadable with weights_only=True" in line
    (tmp_path / "m.yaml").write_text("state_dict: w.pt\nrecurrent: []\nhead: fc\nlayers: 2\n")
    assert "unknown key(s) layers" in refused(capsys, ["import", str(tmp_path / "m.yaml"), *out])
    line = refused(capsys, ["import", _yaml(tmp_path, _net()), "--out", str(tmp_path / "r")])
    assert "pass --history L" in line


@pytest.mark.parametrize("use_hn", [False, True], ids=["out[:, -1]", "h_n[-1]"])
def test_torch_export_pt2_matches_numpy(tmp_path, use_hn):
    net = _net(seed=4, use_hn=use_hn)
    ep = torch.export.export(net, (torch.randn(2, L, C),))
    torch.export.save(ep, tmp_path / "m.pt2")
    assert main(["import", str(tmp_path / "m.pt2"), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    ref = torch_forward(torch_params(net), (net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy()), x)
    assert np.max(np.abs(y - ref)) <= TOL


def test_torch_export_pt2_head_of_several_layers(tmp_path):
    net = _net(seed=4, head_layers=2)
    torch.export.save(torch.export.export(net, (torch.randn(2, L, C),)), tmp_path / "m.pt2")
    assert main(["import", str(tmp_path / "m.pt2"), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    assert np.max(np.abs(y - torch_forward(torch_params(net), _head_ref(net), x))) <= TOL


def test_torch_export_pt2_refusals(tmp_path, capsys):
    for kw, expected in (
        (
            {"head_layers": 2, "head_act": torch.nn.functional.gelu},
            "(aten.gelu): not a supported head activation",
        ),
        ({"bidirectional": True}, "(aten.lstm): bidirectional=True"),
    ):
        net = _net(**kw)
        torch.export.save(torch.export.export(net, (torch.randn(2, L, C),)), tmp_path / "m.pt2")
        capsys.readouterr()  # torch.export's own warnings (printed once per process) are not qlstm's
        line = refused(capsys, ["import", str(tmp_path / "m.pt2"), "--out", str(tmp_path / "r")])
        assert expected in line, line


# ====================================================================== ONNX
@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_from_torch_export_matches_numpy(tmp_path, dynamo):
    net = _net(seed=5)
    kw = {} if dynamo else {"dynamic_axes": {"x": {0: "n"}}}
    torch.onnx.export(
        net, (torch.randn(2, L, C),), str(tmp_path / "m.onnx"), dynamo=dynamo, input_names=["x"], **kw
    )
    assert main(["import", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    ref = torch_forward(torch_params(net), (net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy()), x)
    assert np.max(np.abs(y - ref)) <= TOL
    info = json.loads((tmp_path / "run" / "import.json").read_text())
    assert any("verified against onnxruntime" in n for n in info["notes"])


def _onnx_gru(
    tmp_path, linear_before_reset: int, head_act: str | None = None, direction: str = "forward"
) -> str:
    """A hand-built ONNX graph: x (N, L, C) -> Transpose -> GRU -> Y_h[0] -> Gemm [-> act]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    h, nd = 3, 2 if direction == "bidirectional" else 1
    inits = [
        numpy_helper.from_array(rng.normal(size=(nd, 3 * h, C)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(nd, 3 * h, h)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.normal(size=(nd, 6 * h)).astype(np.float32), "B"),
        numpy_helper.from_array(rng.normal(size=(1, nd * h)).astype(np.float32), "Wd"),
        numpy_helper.from_array(np.zeros(1, np.float32), "bd"),
        numpy_helper.from_array(np.array([0], np.int64), "ax"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W", "R", "B"], ["Y", "Yh"], name="gru0", hidden_size=h,
                         linear_before_reset=linear_before_reset, direction=direction),
        helper.make_node("Squeeze", ["Yh", "ax"], ["hl"]) if nd == 1 else helper.make_node("Reshape", ["Yh", "shp"], ["hl"]),
        helper.make_node("Gemm", ["hl", "Wd", "bd"], ["y" if head_act is None else "z"], name="fc", transB=1),
    ]  # fmt: skip
    if nd == 2:
        inits.append(numpy_helper.from_array(np.array([-1, 2 * h], np.int64), "shp"))
    if head_act:
        nodes.append(helper.make_node(head_act, ["z"], ["y"], name="act"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", L, C])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], inits,
    )  # fmt: skip
    import onnx

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads (onnx's default IR is newer)
    onnx.save(model, tmp_path / "g.onnx")
    return str(tmp_path / "g.onnx")


@pytest.mark.parametrize("head_act", ["Relu", "Sigmoid", "Tanh", "Softmax"])
def test_onnx_head_activation_matches_numpy(tmp_path, head_act):
    from onnx import numpy_helper

    path = _onnx_gru(tmp_path, 1, head_act=head_act)
    assert main(["import", path, "--out", str(tmp_path / "run")]) == 0
    import onnx

    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(path).graph.initializer}
    w, r, b, h = init["W"][0], init["R"][0], init["B"][0], 3
    perm = np.r_[h : 2 * h, 0:h, 2 * h : 3 * h]  # ONNX z, r, h -> PyTorch r, z, n
    cell = {"w_ih": w[perm], "w_hh": r[perm], "b_ih": b[: 3 * h][perm], "b_hh": b[3 * h :][perm]}
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    ref = torch_forward([("gru", cell)], [(init["Wd"], init["bd"], head_act.lower())], x)
    assert np.max(np.abs(y - ref)) <= TOL


def test_onnx_refusals(tmp_path, capsys):
    out = ["--out", str(tmp_path / "r")]
    assert main(["import", _onnx_gru(tmp_path, 1), *out]) == 0  # the well-formed twin imports
    line = refused(capsys, ["import", _onnx_gru(tmp_path, 0), "--out", str(tmp_path / "r2")])
    assert "layer 'gru0' (GRU): linear_before_reset=0" in line
    line = refused(
        capsys, ["import", _onnx_gru(tmp_path, 1, head_act="HardSigmoid"), "--out", str(tmp_path / "r2")]
    )
    assert "layer 'act' (HardSigmoid): not a supported head activation (Relu, Sigmoid, Tanh, Softmax)" in line
    line = refused(
        capsys, ["import", _onnx_gru(tmp_path, 1, direction="bidirectional"), "--out", str(tmp_path / "r2")]
    )
    assert "layer 'gru0' (GRU): direction 'bidirectional'" in line


def test_onnx_wiring_is_verified_by_execution(tmp_path, capsys):
    """A graph whose head reads the FIRST step of the sequence is caught by onnxruntime."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(_onnx_gru(tmp_path, 1))
    g = model.graph
    idx = [i for i, n in enumerate(g.node) if n.op_type == "Squeeze"][0]
    g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "first"))
    g.node.remove(g.node[idx])
    g.node.insert(idx, helper.make_node("Gather", ["Y", "first"], ["y0"], axis=0))
    g.node.insert(idx + 1, helper.make_node("Reshape", ["y0", "shp2"], ["hl"]))
    g.initializer.append(numpy_helper.from_array(np.array([-1, 3], np.int64), "shp2"))
    onnx.save(model, tmp_path / "first.onnx")
    line = refused(capsys, ["import", str(tmp_path / "first.onnx"), "--out", str(tmp_path / "r")])
    assert "onnxruntime and the imported LSTM/GRU -> Dense chain disagree" in line


# ====================================================================== quantize --calibration
def test_quantize_calibration_errors(tmp_path, capsys):
    layers = stack([("LSTM", {"units": 3}), ("Dense", {"units": 1})], C)
    write_keras3(tmp_path / "m.keras", layers, L, C)
    import_model(tmp_path / "m.keras", tmp_path / "run")
    np.save(tmp_path / "cal.npy", windows(50))
    np.save(tmp_path / "bad.npy", windows(50, history=L + 1))
    base = ["quantize", str(tmp_path / "run"), "--out", str(tmp_path / "q")]
    line = refused(capsys, [*base, "--calibration", str(tmp_path / "bad.npy")])
    assert "shape (50, 8, 3), expected (N, L=7, C=3)" in line
    line = refused(capsys, [*base, "--calibration", str(tmp_path / "cal.npy"), "--method", "qat"])
    assert "only --method ptq" in line
    assert "no windows.npz" in refused(capsys, base)  # without --calibration: no training data to rebuild
    assert not (tmp_path / "q").exists()
    assert main([*base, "--calibration", str(tmp_path / "cal.npy"), "--bits", "12"]) == 0
    m = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert m["calibration"]["windows"] == 50
    # the recorded deviation is the firmware's (firmware_sim) from the float model on those windows
    x = np.load(tmp_path / "cal.npy")
    fdesc, fw = description.load(tmp_path / "run")
    dev = run_backend("firmware", tmp_path / "q", x) - float_predict(fdesc.architecture, fw, x)
    assert m["calibration"]["max_abs_deviation_from_float"] == float(np.max(np.abs(dev)))


def test_quantize_calibration_from_a_recording(tmp_path, capsys):
    """--calibration FILE windows a recording with the run's normalisation (here from --normalisation)."""
    from qlstm.data.events import Event, EventSet
    from qlstm.data.formats import save_events

    layers = stack([("GRU", {"units": 3}), ("Dense", {"units": 1})], 2)
    write_keras3(tmp_path / "m.keras", layers, L, 2)
    norm = {"lo": [0.0, -5.0], "hi": [2.0, 5.0], "channel_names": ["U_res", "I"]}
    (tmp_path / "n.json").write_text(json.dumps(norm))
    assert (
        main(
            [
                "import",
                str(tmp_path / "m.keras"),
                "--out",
                str(tmp_path / "run"),
                "--normalisation",
                str(tmp_path / "n.json"),
            ]
        )
        == 0
    )
    rng = np.random.default_rng(3)
    t = np.arange(60) * 0.4
    events = tuple(Event(name=f"e{i}", t=t, x=np.stack([rng.uniform(0, 2, 60), rng.uniform(-5, 5, 60)], axis=1))
                   for i in range(2))  # fmt: skip
    save_events(EventSet(events, ("U_res", "I"), ("V", "A"), 0.4), tmp_path / "rec.csv")
    base = ["quantize", str(tmp_path / "run"), "--out", str(tmp_path / "q"), "--bits", "12"]
    assert main([*base, "--calibration", str(tmp_path / "rec.csv")]) == 0
    m = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert m["calibration"]["windows"] == 2 * (60 - L - 1 + 1)
    (tmp_path / "bad.csv").write_text("time_s,V\n0,1\n0.4,2\n")
    line = refused(capsys, [*base[:3], str(tmp_path / "q2"), "--calibration", str(tmp_path / "bad.csv")])
    assert line.startswith("qlstm quantize: error: --calibration")


# ====================================================================== end to end (slow)
@pytest.fixture
def csim_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _keras_lstm20(tmp_path):
    """LSTM(20) -> Dense(1) on (20, 6) windows: the recurrent part of Khoda et al.'s model."""
    layers = stack([("LSTM", {"units": 20}), ("Dense", {"units": 1})], 6, seed=11)
    write_keras2_h5(tmp_path / "m.h5", layers, 20, 6)
    return tmp_path / "m.h5", 20, 6


def _onnx_stack(tmp_path):
    net = _net(seed=6)
    torch.onnx.export(net, (torch.randn(1, L, C),), str(tmp_path / "m.onnx"), dynamo=True, input_names=["x"])
    return tmp_path / "m.onnx", L, C


def _keras3_head(tmp_path):
    """GRU(6) -> Dense(5, tanh) -> Dense(4) + Activation(relu) -> Dense(2, sigmoid), Keras 3."""
    layers = stack(
        [("GRU", {"units": 6}), ("Dense", {"units": 5, "activation": "tanh"}), ("Dense", {"units": 4}),
         ("Activation", {"activation": "relu"}), ("Dense", {"units": 2, "activation": "sigmoid"})], C, seed=13,
    )  # fmt: skip
    write_keras3(tmp_path / "m.keras", layers, L, C)
    return tmp_path / "m.keras", L, C


def _pt2_head(tmp_path):
    """torch.export of LSTM(5) x 2 -> GRU(4) -> Linear(2) -> tanh -> Linear(1)."""
    net = _net(seed=7, head_layers=2, head_act=torch.tanh)
    torch.export.save(torch.export.export(net, (torch.randn(2, L, C),)), tmp_path / "m.pt2")
    return tmp_path / "m.pt2", L, C


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [_keras_lstm20, _onnx_stack, _keras3_head, _pt2_head],
    ids=["keras-lstm20", "onnx-lstm2-gru", "keras3-head-tanh-relu-sigmoid", "pt2-head-tanh"],
)
def test_imported_model_quantize_csim_firmware_bit_exact(tmp_path, capsys, csim_cache, make):
    """import -> quantize --calibration (PTQ, 16 bits) -> hls4ml C simulation == firmware_sim."""
    model, history, channels = make(tmp_path)
    assert main(["import", str(model), "--out", str(tmp_path / "run"), "--history", str(history)]) == 0
    rng = np.random.default_rng(2)
    np.save(tmp_path / "cal.npy", rng.uniform(0, 1, size=(256, history, channels)))
    q = tmp_path / "q"
    assert main(["quantize", str(tmp_path / "run"), "--out", str(q), "--calibration", str(tmp_path / "cal.npy"),
                 "--bits", "16", "--no-progress"]) == 0  # fmt: skip
    x = rng.uniform(0, 1, size=(200, history, channels))
    np.save(tmp_path / "x.npy", x)
    ys = {}
    for backend in ("csim", "firmware", "float"):
        out = tmp_path / f"y_{backend}.npy"
        run = tmp_path / "run" if backend == "float" else q
        assert (
            main(
                [
                    "predict",
                    str(run),
                    "--inputs",
                    str(tmp_path / "x.npy"),
                    "--backend",
                    backend,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        ys[backend] = np.load(out)
    desc, _ = description.load(q)
    lsb = desc.quantization.output.lsb
    ints = {k: ys[k] / lsb for k in ("csim", "firmware")}
    for v in ints.values():
        assert np.array_equal(v, np.round(v))  # on the result type's grid
    np.testing.assert_array_equal(ints["csim"].astype(np.int64), ints["firmware"].astype(np.int64))
    # the quantized model still computes the imported one (16-bit PTQ): recorded, loosely bounded
    assert np.max(np.abs(ys["firmware"] - ys["float"])) < 0.05
    # the export stage takes both folders (it verifies ONNX vs float64 and QONNX vs firmware_sim itself)
    assert main(["export", str(tmp_path / "run")]) == 0
    assert main(["export", str(q)]) == 0
    assert "100.00% exact" in capsys.readouterr().out


# ====================================================================== issue #17's done-when model
#: hls4ml's default precision (``ap_fixed<16,6>``: AP_TRN, AP_WRAP) for every quantization point,
#: tables of 1024 ``ap_fixed<18,8>`` entries: the configuration of Khoda et al.'s published builds.
HLS4ML_DEFAULT = "ap_fixed<16,6>"
KHODA_POINTS = [
    "input",
    *(f"rnn0.{r}" for r in ("weight", "recurrent_weight", "bias", "recurrent_bias", "accum", "state")),
    *(f"dense0.{r}" for r in ("weight", "bias", "accum", "result", "act_result")),
    *(f"head.{r}" for r in ("weight", "bias", "accum", "result", "act_result")),
]


def _keras_khoda(tmp_path):
    """LSTM(20) -> Dense(64, relu) -> Dense(1, sigmoid) on (20, 6) windows (Khoda et al., MLST 4
    (2023) 025004), a Keras 2 ``.h5`` written with h5py from seeded weights."""
    layers = stack(
        [("LSTM", {"units": 20}), ("Dense", {"units": 64, "activation": "relu"}),
         ("Dense", {"units": 1, "activation": "sigmoid"})], 6, seed=12,
    )  # fmt: skip
    write_keras2_h5(tmp_path / "m.h5", layers, 20, 6)
    return tmp_path / "m.h5", layers


@pytest.mark.slow
def test_khoda_lstm20_relu64_sigmoid_every_stage(tmp_path, capsys, csim_cache):
    """import -> float predict (vs NumPy) -> PTQ with --calibration and hls4ml's default types ->
    export (ONNX and QONNX, each executed by the stage) -> hls project + C simulation == firmware_sim
    (integers) -> predict on a classifier score -> estimate."""
    path, layers = _keras_khoda(tmp_path)
    run, q = tmp_path / "run", tmp_path / "q"
    assert main(["import", str(path), "--out", str(run)]) == 0
    assert "-> LSTM(20) -> Dense(64, relu) -> Dense(1, sigmoid)" in capsys.readouterr().out
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=(300, 20, 6))
    y_float = predict_float(tmp_path, run, x)
    assert np.max(np.abs(y_float - keras_forward(layers, x))) <= TOL
    assert y_float.min() > 0 and y_float.max() < 1 and np.ptp(y_float) > 0.05  # a sigmoid score
    np.save(tmp_path / "cal.npy", rng.uniform(0, 1, size=(256, 20, 6)))
    types = [a for p in KHODA_POINTS for a in ("--type", f"{p}={HLS4ML_DEFAULT}")]
    types += [
        "--type",
        "rnn0.table=ap_fixed<18,8>",
        "--type",
        "head.table=ap_fixed<18,8>",
        "--table-size",
        "1024",
    ]
    assert main(["quantize", str(run), "--out", str(q), "--calibration", str(tmp_path / "cal.npy"),
                 "--bits", "16", "--no-progress", *types]) == 0  # fmt: skip
    desc, _ = description.load(q)
    qz = desc.quantization
    assert {t for n, t in qz.points().items() if not n.endswith(".table")} == {
        FixedType.from_ap(HLS4ML_DEFAULT)
    }
    assert qz.dense.table == description.TableSpec(1024, FixedType.from_ap("ap_fixed<18,8>"))
    assert [(d.units, d.activation) for d in desc.architecture.head] == [(64, "relu"), (1, "sigmoid")]
    capsys.readouterr()
    assert main(["export", str(q)]) == 0
    assert "100.00% exact" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", x)
    proj = tmp_path / "proj"
    assert main(["hls", str(q), "--target", "ku060", "--tb-inputs", str(tmp_path / "x.npy"),
                 "--out", str(proj), "--csim"]) == 0  # fmt: skip
    ys = {}
    for backend in ("csim", "firmware"):
        out = tmp_path / f"y_{backend}.npy"
        assert main(["predict", str(q), "--inputs", str(tmp_path / "x.npy"), "--backend", backend,
                     "--out", str(out)]) == 0  # fmt: skip
        ys[backend] = np.load(out)
    m = {k: qz.output.to_int(v) for k, v in ys.items()}
    for k, v in ys.items():
        np.testing.assert_array_equal(qz.output.to_float(m[k]), v, err_msg=k)  # on the output grid
    np.testing.assert_array_equal(m["csim"], m["firmware"])
    assert len(np.unique(m["firmware"])) > 20  # the score is not saturated or constant
    assert np.max(np.abs(ys["firmware"] - y_float)) < 0.05  # 16-bit fixed point computes the same model
    info = json.loads((proj / "qlstm_hls.json").read_text())
    assert info is not None
    capsys.readouterr()
    est = tmp_path / "est.json"
    assert main(["report", "estimate", str(q), "--part", "xc7vx690t-ffg1761-2", "--resources",
                 "433200,866400,3600,2940", "--clock-ns", "5", "--reuse", "1", "--json", str(est)]) == 0  # fmt: skip
    e = json.loads(est.read_text())
    assert [layer["name"] for layer in e["layers"]] == ["rnn0", "dense0", "head"]


def test_softmax_head_imports_and_is_refused_at_quantization(tmp_path, capsys):
    """A softmax output layer: the float model imports and predicts (NumPy forward); quantization
    refuses it with one line naming the layer (hls4ml's softmax tables are not simulated)."""
    layers = stack([("LSTM", {"units": 4}), ("Dense", {"units": 3, "activation": "softmax"})], C, seed=4)
    write_keras2_h5(tmp_path / "m.h5", layers, L, C)
    assert main(["import", str(tmp_path / "m.h5"), "--out", str(tmp_path / "run")]) == 0
    x = windows()
    y = predict_float(tmp_path, tmp_path / "run", x)
    assert np.max(np.abs(y - keras_forward(layers, x))) <= TOL
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (
        main(["export", str(tmp_path / "run")]) == 0
    )  # float ONNX with a Softmax node, verified by running it
    np.save(tmp_path / "cal.npy", x)
    line = refused(capsys, ["quantize", str(tmp_path / "run"), "--out", str(tmp_path / "q"),
                            "--calibration", str(tmp_path / "cal.npy"), "--no-progress"])  # fmt: skip
    assert "head layer 'head' (softmax): not supported at quantization" in line
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("activation", ["linear", "sigmoid"])
def test_predict_on_a_recording_skips_regression_metrics_for_a_score(tmp_path, capsys, activation):
    """A classifier's score (a non-linear output layer) is predicted on a recording, and the RMSE
    against the target channel is skipped with a note; a linear output is still scored."""
    from qlstm.data.events import Event, EventSet
    from qlstm.data.formats import save_events

    layers = stack([("GRU", {"units": 3}), ("Dense", {"units": 4, "activation": "relu"}),
                    ("Dense", {"units": 1, "activation": activation})], 2)  # fmt: skip
    write_keras3(tmp_path / "m.keras", layers, L, 2)
    (tmp_path / "n.json").write_text(
        json.dumps({"lo": [0.0, -5.0], "hi": [2.0, 5.0], "channel_names": ["U_res", "I"]})
    )
    assert main(["import", str(tmp_path / "m.keras"), "--out", str(tmp_path / "run"),
                 "--normalisation", str(tmp_path / "n.json")]) == 0  # fmt: skip
    rng = np.random.default_rng(3)
    t = np.arange(40) * 0.4
    ev = Event(name="e0", t=t, x=np.stack([rng.uniform(0, 2, 40), rng.uniform(-5, 5, 40)], axis=1))
    save_events(EventSet((ev,), ("U_res", "I"), ("V", "A"), 0.4), tmp_path / "rec.csv")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "rec.csv"), "--out",
                 str(tmp_path / "y.npy"), "--metrics", str(tmp_path / "m.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "m.json").read_text())
    assert np.load(tmp_path / "y.npy").shape == (40 - L - 1 + 1, 1)
    if activation == "linear":
        assert "RMSE" in out and "rmse" in m["model"]
    else:
        assert "regression metrics skipped: the model's output layer is sigmoid" in out
        assert "model" not in m and "skipped" in m["note"]
