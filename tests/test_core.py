"""The shared core: model description round trips and refusals, typed configs, atomic files, CLI."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

import numpy as np
import pytest

from qlstm import description as D
from qlstm.cli import main
from qlstm.config import from_mapping, merge, to_mapping
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.io import atomic_path, atomic_write_text, staged_dir
from qlstm.testing import random_weights


def _arch(cells=("lstm",), units=(8,)):
    layers = tuple(D.RecurrentLayer(c, u) for c, u in zip(cells, units, strict=True))
    return D.Architecture(input_channels=2, history=16, horizon=4, layers=layers)


def _norm():
    return D.Normalisation(lo=(0.0, -1.0), hi=(1.0, 600.0), channel_names=("U_res", "I"), units=("V", "A"))


def _weights(arch, rng, t=None):
    w = random_weights(arch, init="normal", scale=0.3, seed=rng)
    return {k: t.quantize(v) for k, v in w.items()} if t else w


def _quant(n_layers, t):
    rq = D.RecurrentQuant(t, t, t, t, FixedType(24, 10), t, D.TableSpec(1024, FixedType(18, 8)))
    return D.Quantization(
        t, (rq,) * n_layers, D.DenseQuant(t, t, FixedType(24, 10), t), method="ptq", bits=t.width
    )


@pytest.mark.parametrize(
    ("cells", "units", "n_params"),
    [
        (("lstm",), (8,), 4 * 8 * (2 + 8 + 2) + 8 * 4 + 4),
        (("gru",), (8,), 3 * 8 * (2 + 8 + 2) + 8 * 4 + 4),
        (("lstm", "lstm"), (8, 4), 4 * 8 * 12 + 4 * 4 * (8 + 4 + 2) + 4 * 4 + 4),
    ],
    ids=["lstm", "gru", "stacked"],
)
def test_parameter_count(cells, units, n_params):
    assert _arch(cells, units).n_parameters() == n_params


def test_paper_network_parameter_count():
    """One LSTM(128) on one channel with a Dense(1) head, as hls4ml builds it (two bias vectors)."""
    arch = D.Architecture(1, 16, 1, (D.RecurrentLayer("lstm", 128),))
    assert arch.n_parameters() == 4 * 128 * (1 + 128 + 2) + 128 + 1


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "quantized"])
def test_save_load_round_trip(tmp_path, quantized):
    rng = np.random.default_rng(0)
    arch = _arch(("lstm", "gru"), (8, 4))
    t = FixedType(10, 3) if quantized else None
    desc = D.ModelDescription(
        arch, _norm(), _quant(2, t) if quantized else None, data={"source": "synthetic"}
    )
    w = _weights(arch, rng, t)
    D.save(tmp_path, desc, w)
    desc2, w2 = D.load(tmp_path)
    assert desc2 == desc
    assert desc2.fingerprint() == desc.fingerprint()
    for k in w:
        np.testing.assert_array_equal(w2[k], w[k])


def test_off_grid_weights_are_refused(tmp_path):
    arch = _arch()
    desc = D.ModelDescription(arch, _norm(), _quant(1, FixedType(8, 2)))
    with pytest.raises(QlstmError, match="not representable"):
        D.save(tmp_path, desc, _weights(arch, np.random.default_rng(1)))
    assert not (tmp_path / D.DESCRIPTION_FILE).exists()


def test_truncated_weights_are_refused(tmp_path):
    arch = _arch()
    D.save(tmp_path, D.ModelDescription(arch, _norm()), _weights(arch, np.random.default_rng(2)))
    data = (tmp_path / D.WEIGHTS_FILE).read_bytes()
    (tmp_path / D.WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(QlstmError, match="corrupt or truncated"):
        D.load(tmp_path)


def test_unknown_description_key_is_refused(tmp_path):
    arch = _arch()
    D.save(tmp_path, D.ModelDescription(arch, _norm()), _weights(arch, np.random.default_rng(3)))
    d = json.loads((tmp_path / D.DESCRIPTION_FILE).read_text())
    d["architecture"]["hiden_units"] = 3
    (tmp_path / D.DESCRIPTION_FILE).write_text(json.dumps(d))
    with pytest.raises(QlstmError, match="unknown key.*hiden_units"):
        D.load(tmp_path)


def test_missing_run_folder_is_refused(tmp_path):
    with pytest.raises(QlstmError, match="not a qlstm run folder"):
        D.load(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"history": 0}, "history"),
        ({"history": 129}, "history"),
        ({"horizon": 33}, "horizon"),
        ({"layers": ()}, "at least one"),
    ],
    ids=["L=0", "L=129", "k=33", "no-layers"],
)
def test_architecture_ranges(kwargs, message):
    base = {"input_channels": 1, "history": 16, "horizon": 1, "layers": (D.RecurrentLayer("lstm", 4),)}
    with pytest.raises(QlstmError, match=message):
        D.Architecture(**{**base, **kwargs})


def test_normalisation_round_trip():
    n = _norm()
    raw = np.array([[0.5, 299.5], [1.0, 600.0]])
    z = n.apply(raw)
    np.testing.assert_allclose(z, [[0.5, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(n.invert_target(z[:, 0]), raw[:, 0])


def test_points_names_every_type():
    q = _quant(2, FixedType(8, 3))
    names = set(q.points())
    assert {"input", "rnn0.accum", "rnn1.state", "rnn1.table", "head.result"} <= names
    assert len(names) == 1 + 2 * 7 + 4


# ---------------------------------------------------------------- config
@dataclass(frozen=True)
class _Inner:
    units: int = 8
    cell: str = "lstm"


@dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    layers: tuple[int, ...] = (8,)
    inner: _Inner = field(default_factory=_Inner)
    name: str | None = None


def test_config_builds_nested_dataclasses():
    cfg = from_mapping(_Cfg, {"lr": 1, "layers": [4, 4], "inner": {"units": 3}})
    assert cfg == _Cfg(lr=1.0, layers=(4, 4), inner=_Inner(units=3))
    assert from_mapping(_Cfg, to_mapping(cfg)) == cfg
    assert merge(cfg, {"inner": {"cell": "gru"}}).inner == _Inner(3, "gru")


def test_merge_leaves_nested_mapping_fields_alone():
    """A free-form mapping field (like `qlstm run`'s train section) is copied, not updated in
    place: merging overrides once must not change the defaults of every later config."""

    @dataclass(frozen=True)
    class _Run:
        train: dict = field(default_factory=lambda: {"training": {"epochs": 30, "patience": 30}})

    base = _Run()
    merged = merge(base, {"train": {"training": {"epochs": 1}}})
    assert merged.train == {"training": {"epochs": 1, "patience": 30}}
    assert base.train == {"training": {"epochs": 30, "patience": 30}}
    assert to_mapping(base)["train"] is not base.train


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lrr": 1}, "unknown key.*lrr"),
        ({"inner": {"unit": 3}}, "inner: unknown key.*unit"),
        ({"lr": "fast"}, "expected a number"),
        ({"layers": 4}, "expected a list"),
        ({"inner": {"units": 2.5}}, "expected an integer"),
    ],
    ids=["typo", "nested-typo", "bad-float", "bad-list", "bad-int"],
)
def test_config_refuses_bad_keys_and_types(data, message):
    with pytest.raises(QlstmError, match=message):
        from_mapping(_Cfg, data)


# ---------------------------------------------------------------- files
def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        np.save(tmp, np.zeros(3))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        np.save(tmp, np.ones(3))
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.zeros(1))
        with staged_dir(tmp_path / "run") as stage:
            atomic_write_text(stage / "c.txt", "y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.npy").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755


def test_staged_dir(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(RuntimeError), staged_dir(final) as stage:
        atomic_write_text(stage / "a.txt", "x")
        raise RuntimeError("boom")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with staged_dir(final) as stage:
        atomic_write_text(stage / "a.txt", "x")
    assert (final / "a.txt").read_text() == "x"
    with pytest.raises(QlstmError, match="not empty"), staged_dir(final):
        pass
    with staged_dir(final, overwrite=True) as stage:
        atomic_write_text(stage / "b.txt", "y")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_staged_dir_removes_a_killed_writers_staging(tmp_path):
    """A writer killed outright (SIGKILL) leaves its hidden staging folder; the next writer of the
    same folder removes it, but not the staging of a writer that is still alive, nor other names."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is now free (reuse within this test is vanishingly unlikely)
    dead = tmp_path / f".run.staging.{proc.pid}.abc123"
    alive = tmp_path / f".run.staging.{os.getpid()}.def456"
    other = tmp_path / f".rundown.staging.{proc.pid}.ghi789"
    for d in (dead, alive, other):
        d.mkdir()
        (d / "half.txt").write_text("x")
    with staged_dir(tmp_path / "run") as stage:
        assert stage.name.startswith(f".run.staging.{os.getpid()}.")
        atomic_write_text(stage / "a.txt", "x")
    assert not dead.exists() and alive.is_dir() and other.is_dir()


# ---------------------------------------------------------------- CLI
def test_cli_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "train", "quantize", "export", "hls", "firmware", "predict", "report", "run"):
        assert f"    {command}" in out


def test_cli_every_subcommand_has_help(capsys):
    for command in ("data", "train", "quantize", "export", "hls", "firmware", "predict", "report", "run"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0, command
        assert "usage: qlstm" in capsys.readouterr().out


def test_sigterm_removes_staged_output(tmp_path, monkeypatch, capsys):
    """A terminated command unwinds like Ctrl-C: exit 130 and no staging folder left behind."""
    import argparse
    import signal

    import qlstm.cli as cli

    def killed(args):
        with staged_dir(tmp_path / "run") as stage:
            atomic_write_text(stage / "half.txt", "x")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0  # pragma: no cover - never reached

    def build_parser(argv=None):
        p = argparse.ArgumentParser(prog="qlstm")
        p.add_argument("-v", "--verbose", action="count", default=0)
        p.set_defaults(func=killed, command="fake")
        return p

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "build_parser", build_parser)
    monkeypatch.setattr(signal, "getsignal", lambda s: signal.SIG_DFL)
    try:
        assert cli.main([]) == 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []
    assert "interrupted" in capsys.readouterr().err


def test_weight_type_names_every_weight_array():
    q = _quant(2, FixedType(8, 3))
    q = D.Quantization(
        q.input, q.layers, D.DenseQuant(FixedType(9, 2), FixedType(10, 2), q.dense.accum, q.dense.result)
    )
    arch = _arch(("lstm", "gru"), (8, 4))
    assert {n: q.weight_type(n).width for n in arch.weight_shapes()} == {
        **{f"rnn{i}.{k}": 8 for i in range(2) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
        "head.weight": 9,
        "head.bias": 10,
    }
