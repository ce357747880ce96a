"""benchmarks/bench_firmware.py's command line: checks of its parser only (no timing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_firmware.py"
    spec = importlib.util.spec_from_file_location("bench_firmware", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("option", ["--repeats", "--chunk", "--threads", "--windows", "--units"])
@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_counts_below_one_are_refused_with_one_line(bench, capsys, option, value):
    with pytest.raises(SystemExit) as e:
        bench.build_parser().parse_args([f"{option}={value}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"bench_firmware.py: error: argument {option}: "), err
    assert "Traceback" not in "\n".join(err)


def test_predict_windows_zero_skips_the_part(bench):
    assert bench.build_parser().parse_args(["--predict-windows", "0"]).predict_windows == 0


def test_verdicts_only_for_the_target_configuration(bench):
    p = bench.build_parser()
    assert bench.is_target(p.parse_args([]))
    for argv in (
        ["--units", "32"],
        ["--history", "8"],
        ["--bits", "8"],
        ["--cell", "gru"],
        ["--threads", "2"],
    ):
        assert not bench.is_target(p.parse_args(argv)), argv


def test_help_explains_every_option_with_its_default(bench):
    text = bench.build_parser().format_help()
    assert "hls4ml's default" in text  # --accum's kinds are explained in --help itself
    assert "see above" not in text
    assert "recurrent cell" in text  # --cell has a help
    for default in ("(default: 128)", "(default: 512)", "(default: 32,64,128)", "(default: 16384)"):
        assert default in text, default
    assert "interleaved" in text and "part 1" in text  # --repeats covers both parts


def test_cpu_time_caption_fits_the_thread_count(bench):
    assert "one-thread" in bench.CPU_CAPTION[1]
    assert "one-thread" not in bench.CPU_CAPTION[2] and "summed" in bench.CPU_CAPTION[2]
