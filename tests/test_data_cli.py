"""``qlstm data generate`` / ``qlstm data inspect`` through the real entry point."""

from __future__ import annotations

import numpy as np
import pytest

from qlstm.cli import main
from qlstm.data import Event, EventSet, load_events, save_events


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("qlstm data: error: ") and "Traceback" not in err
    for n in needles:
        assert n in lines[0]


def test_generate_then_inspect_with_png(tmp_path, capsys):
    out = tmp_path / "short.h5"
    code, stdout, _ = _run(capsys, "data", "generate", "--out", str(out), "--short", "--channels", "U_res,I")
    assert code == 0 and "6 synthetic events x 3000 samples" in stdout
    es = load_events(out)
    assert len(es) == 6 and es.channel_names == ("U_res", "I")
    png = tmp_path / "plots" / "events.png"
    code, stdout, _ = _run(capsys, "data", "inspect", str(out), "--png", str(png), "--plot-events", "2")
    assert code == 0
    assert (
        "events:   6" in stdout
        and "dt = 0.4 s" in stdout
        and "range U_res:" in stdout
        and "range I:" in stdout
    )
    assert "event_0005" in stdout and "quench:   6 of 6 events marked" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in png.parent.iterdir()) == ["events.png"]


def test_generate_options_and_seed_determinism(tmp_path, capsys):
    a, b, c = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    for path, seed in ((a, "5"), (b, "5"), (c, "6")):
        code, _, _ = _run(
            capsys,
            "data",
            "generate",
            "--out",
            str(path),
            "--events",
            "2",
            "--samples",
            "500",
            "--seed",
            seed,
        )
        assert code == 0
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    es = load_events(a)
    assert len(es) == 2 and all(len(e) == 500 for e in es.events) and es.channel_names == ("U_res",)


def test_generate_hours_and_config_file(tmp_path, capsys):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("synthetic:\n  n_events: 2\n  noise_std_v: 0.001\n  flat_top_fraction: [0.5, 0.6]\n")
    out = tmp_path / "g.npz"
    code, _, _ = _run(
        capsys, "data", "generate", "--out", str(out), "--config", str(cfg), "--hours", "0.1", "--events", "3"
    )
    assert code == 0
    es = load_events(out)
    assert len(es) == 3 and len(es.events[0]) == 900  # 0.1 h / 0.4 s; --events overrides the file


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--out", "{tmp}/x.xlsx"], ["unknown file extension '.xlsx'"]),
        (["--out", "{tmp}/x.csv", "--config", "{tmp}/bad.yaml"], ["bad.yaml", "unknown key(s) noise"]),
        (["--out", "{tmp}/x.csv", "--channels", "U_res,T"], ["unknown channel 'T'"]),
        (["--out", "{tmp}/x.csv", "--events", "0"], ["n_events=0"]),
        (["--out", "{tmp}/x.csv", "--samples", "1"], ["--samples 1"]),
        (["--out", "{tmp}/x.csv", "--config", "{tmp}/missing.yaml"], ["config file not found"]),
    ],
    ids=["extension", "unknown-config-key", "unknown-channel", "no-events", "one-sample", "missing-config"],
)
def test_generate_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, needles):
    (tmp_path / "bad.yaml").write_text("noise: 1\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = _run(capsys, "data", "generate", *argv)
    assert code == 2
    _one_error_line(err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_hours_and_samples_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "generate", "--out", str(tmp_path / "x.csv"), "--hours", "1", "--samples", "10"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def _gappy(tmp_path):
    t = np.r_[0:10, 12:40] * 0.4
    es = EventSet((Event("run_17", t, np.linspace(0, 1, 38)[:, None], 37),), ("U_res",), ("V",), 0.4, "t")
    return save_events(es, tmp_path / "gappy.parquet")


def test_inspect_refuses_gap_then_fills_it(tmp_path, capsys):
    path = _gappy(tmp_path)
    png = tmp_path / "g.png"
    code, stdout, err = _run(capsys, "data", "inspect", str(path), "--png", str(png))
    assert code == 2 and stdout == ""
    _one_error_line(err, str(path), "event 'run_17'", "gap of 2 missing sample(s)", "--fill-gaps")
    assert not png.exists()
    code, stdout, _ = _run(capsys, "data", "inspect", str(path), "--fill-gaps", "--png", str(png))
    assert code == 0 and "gaps:     2 samples filled in 1 event(s)" in stdout and png.exists()


def test_inspect_bad_file_one_line(tmp_path, capsys):
    path = tmp_path / "nan.csv"
    path.write_text("event,time_s,U_res\nA12,0,1\nA12,0.4,nan\nA12,0.8,1\n")
    code, _, err = _run(capsys, "data", "inspect", str(path))
    assert code == 2
    _one_error_line(err, str(path), "event 'A12'", "channel U_res holds nan at sample 1")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["{tmp}/none.csv"], "file not found"),
        (["{tmp}/x.csv", "--png", "{tmp}/x.jpg"], "must end in .png"),
        (["{tmp}/x.csv", "--channels", "I"], "missing column(s) I"),
    ],
    ids=["missing-file", "png-suffix", "missing-channel"],
)
def test_inspect_option_errors(tmp_path, capsys, argv, needle):
    (tmp_path / "x.csv").write_text("time_s,U_res\n0,1\n0.4,2\n")
    code, _, err = _run(capsys, "data", "inspect", *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    _one_error_line(err, needle)
    assert not (tmp_path / "x.jpg").exists()


def test_every_option_has_help(capsys):
    from qlstm.cli import build_parser

    parser = build_parser()
    data = parser._subparsers._group_actions[0].choices["data"]
    for name, sub in data._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"qlstm data {name} {action.option_strings or action.dest}: no help text"
