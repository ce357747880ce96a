"""Every command's output path is checked before any work (a new user's trial: ``qlstm run --out
/proc/foo``, ``predict --out /proc/foo.npy`` after an 18 s RTL build, ``data generate --out
/proc/foo.npz`` and ``export --out /proc/foo`` printed tracebacks): one error line from the shared
checks :func:`qlstm.io.check_out_folder` / :func:`qlstm.io.check_out_file`, a non-zero exit, no
output on stdout, nothing created. The work each command would do first is replaced by a function
that fails the test, so a check that comes after it is caught, not timed.

Tests run as root, where a read-only folder mode stops nothing: a place where nothing can be
created is ``/proc``, or a path under an existing file.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from qlstm import description
from qlstm.cli import main
from qlstm.errors import QlstmError
from qlstm.io import check_out_file, check_out_folder
from qlstm.testing import detection_run, random_model, random_windows


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A quantized run over a small labelled recording, a float run, windows and a model file."""
    root = tmp_path_factory.mktemp("inputs")
    desc, weights = random_model(("lstm",), (4,), history=6, horizon=2, bits=8, seed=3)
    qrun, events, _, desc = detection_run(root, "qrun", desc, weights)
    fdesc, fweights = random_model(("lstm",), (4,), history=6, horizon=2, bits=None, seed=4)
    description.save(root / "float", fdesc, fweights)
    np.save(root / "x.npy", random_windows(desc, 5))
    (root / "model.onnx").write_bytes(b"never read: the output is refused first")
    return {
        "QRUN": str(qrun),
        "FLOAT": str(root / "float"),
        "EVENTS": str(events),
        "XNPY": str(root / "x.npy"),
        "MODEL": str(root / "model.onnx"),
    }


# (argv with OUT for the output path, "folder" or the output file's suffix, the first work: "module:function")
COMMANDS = {
    "data-generate": (["data", "generate", "--short", "--out", "OUT"], ".npz", "qlstm.data.synthetic:generate"),
    "data-inspect-png": (["data", "inspect", "EVENTS", "--png", "OUT"], ".png", "qlstm.data.formats:load_events"),
    "train": (["train", "--data", "EVENTS", "--out", "OUT", "--no-progress"], "folder", "qlstm.train.trainer:prepare"),
    "train-grid": (["train", "--grid", "--data", "EVENTS", "--out", "OUT"], "folder", "qlstm.train.grid:atomic_write_text"),
    "import": (["import", "MODEL", "--out", "OUT"], "folder", "qlstm.importers:read_model"),
    "quantize": (["quantize", "FLOAT", "--out", "OUT", "--no-progress"], "folder", "qlstm.quantize.core:run_windows"),
    "quantize-calibration": (["quantize", "FLOAT", "--calibration", "XNPY", "--out", "OUT"], "folder",
                             "qlstm.quantize.calibration:load_windows"),
    "quantize-sweep": (["quantize", "FLOAT", "--sweep", "6,8", "--out", "OUT"], "folder", "qlstm.quantize.core:run_windows"),
    "export": (["export", "QRUN", "--out", "OUT"], ".onnx", "qlstm.export.api:build_model"),
    "hls": (["hls", "QRUN", "--target", "zynq7045", "--out", "OUT"], "folder", "qlstm.hls.project:heldout_windows"),
    "firmware-trace": (["firmware", "trace", "QRUN", "--inputs", "XNPY", "--out", "OUT"], ".npz",
                       "qlstm.firmware_sim.backend:load_firmware"),
    "rtl": (["rtl", "QRUN", "--target", "zynq7045", "--out", "OUT"], "folder", "qlstm.rtl.api:design"),
    "predict-firmware": (["predict", "QRUN", "--backend", "firmware", "--inputs", "XNPY", "--out", "OUT"], ".npy",
                         "qlstm.predict:run_backend"),
    "predict-rtl": (["predict", "QRUN", "--backend", "rtl", "--inputs", "XNPY", "--out", "OUT"], ".npy",
                    "qlstm.predict:run_backend"),
    "predict-metrics": (["predict", "QRUN", "--backend", "firmware", "--data", "EVENTS", "--metrics", "OUT"], ".json",
                        "qlstm.predict:_windows_from_data"),
    "detect": (["detect", "QRUN", "--data", "EVENTS", "--out", "OUT", "--no-progress"], "folder", "qlstm.detect.run:detect"),
    "report": (["report", "QRUN", "--out", "OUT"], "folder", "qlstm.report.build:load_inputs"),
    "report-estimate-json": (["report", "estimate", "QRUN", "--target", "zynq7045", "--json", "OUT"], ".json",
                             "qlstm.hls.estimate:estimate"),
    "run": (["run", "--out", "OUT"], "folder", "qlstm.pipeline:_prepare_root"),
    "explore": (["explore", "--trials", "1", "--workers", "1", "--no-progress", "--out", "OUT"], "folder",
                "qlstm.explore.study:_Created"),
}  # fmt: skip

# where nothing can be created, and the message naming why ({afile}, {adir}: an existing file, folder)
PLACES = {
    "proc": ("/proc/qlstm_out_test", "cannot create a {what} in /proc (No such file or directory)"),
    "under-a-file": ("{afile}/out", "{afile} is a file, not a folder"),
    "wrong-kind": (None, None),  # a folder output given an existing file, a file output a folder
}


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("place", PLACES, ids=PLACES)
@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS)
def test_bad_output_path_is_one_line_before_any_work(command, place, inputs, tmp_path, monkeypatch, capsys):
    argv, kind, work = COMMANDS[command]
    suffix = "" if kind == "folder" else kind
    afile, adir = tmp_path / "afile", tmp_path / f"adir{suffix}"  # the suffix its command asks for
    afile.write_text("not a folder\n")
    adir.mkdir()
    out, message = PLACES[place]
    if out is None:
        out, message = (
            (str(afile), f"--out {afile}: exists and is not a folder")
            if kind == "folder"
            else (str(adir), f"{adir}: is a folder; give a file name")
        )
    else:
        out = out.format(afile=afile) + suffix
        message = message.format(afile=afile, what="folder" if kind == "folder" else "file")

    module, func = work.split(":")

    def no_work(*args, **kwargs):
        raise AssertionError(f"{work} ran before the output path was checked")

    monkeypatch.setattr(importlib.import_module(module), func, no_work)
    monkeypatch.chdir(tmp_path)  # a relative path a command might write lands where it is seen
    before = _tree(tmp_path)
    code = main([{**inputs, "OUT": out}.get(a, a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"qlstm {argv[0]}: error: ") and err.endswith(message), err
    assert captured.out == ""
    assert _tree(tmp_path) == before


def test_the_checks_leave_nothing_and_pass_good_paths(tmp_path):
    """The probes remove what they create; a file's missing folder is created later unless the
    command wants it to exist (export: a typo, not something to create silently)."""
    check_out_file(tmp_path / "new" / "deeper" / "y.npy")
    check_out_file(tmp_path / "y.npy")
    check_out_file(None)
    check_out_folder(tmp_path / "new" / "deeper")
    assert _tree(tmp_path) == []
    (tmp_path / "y.npy").write_bytes(b"old")
    check_out_file(tmp_path / "y.npy")  # an existing file is replaced atomically
    with pytest.raises(QlstmError, match=r"--json .*/missing/e.json: folder .*/missing does not exist"):
        check_out_file(tmp_path / "missing" / "e.json", "--json", parent_must_exist=True)
    with pytest.raises(QlstmError, match="exists and is not a regular file"):
        check_out_file("/dev/null")
    with pytest.raises(QlstmError, match=r"--metrics /proc/m.json: cannot create a file in /proc"):
        check_out_file("/proc/m.json", "--metrics")
    with pytest.raises(QlstmError, match=r"cannot create a folder in /proc"):
        check_out_file("/proc/a/b.npy")
    assert _tree(tmp_path) == ["y.npy"]
