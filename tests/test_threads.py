"""The thread policy (qlstm/threads.py, ``qlstm --threads``): counts from the affinity mask or the
option, passive OpenMP waiting set before torch loads, and what results do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from qlstm import threads
from qlstm.cli import main
from qlstm.errors import QlstmError


@pytest.fixture
def clean_env(monkeypatch):
    for var in (threads.ENV, "OMP_WAIT_POLICY", *threads.THREAD_VARS, *threads.SERIAL_VARS):
        monkeypatch.delenv(var, raising=False)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield monkeypatch
    if torch is not None:
        torch.set_num_threads(before)  # configure() gave the loaded torch another count


def test_default_is_the_cores_this_process_may_use(clean_env):
    assert threads.count() == len(os.sched_getaffinity(0)) == threads.available_cores()


def test_option_and_environment(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert threads.count() == 3  # the user's OpenMP setting is respected
    clean_env.setenv(threads.ENV, "5")
    assert threads.count() == 5
    assert threads.configure(2) == 2
    assert os.environ[threads.ENV] == "2"
    assert all(os.environ[v] == "2" for v in threads.THREAD_VARS)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"  # firmware_sim's own threads parallelise


@pytest.mark.parametrize("busy", [True, False])
def test_wait_policy_follows_the_machine(clean_env, busy):
    """Passive waiting beside other work, libgomp's default (spin, then sleep) on an idle machine."""
    clean_env.setattr(threads, "machine_busy", lambda n: busy)
    threads.configure(2)
    assert os.environ.get("OMP_WAIT_POLICY") == ("PASSIVE" if busy else None)
    # the decision, as qlstm -v logs it: the count, its source, the policy and whether Adapt can act
    d = threads.decision
    assert d.startswith("2 thread(s) (--threads/QLSTM_THREADS); ")
    assert (
        ("busy at start-up" in d and "training/QAT keep the count (sleeping threads" in d)
        if busy
        else ("idle" in d and "1 torch thread" in d)
    )


def test_decision_is_logged_with_verbose(clean_env, caplog):
    import logging

    from qlstm.cli import main

    cases = [
        ({"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
         "1 thread(s) (OMP_NUM_THREADS); OMP_WAIT_POLICY=PASSIVE (set by the user)"),
        ({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE", "QLSTM_ADAPT": "0"},
         "2 thread(s) (OMP_NUM_THREADS); OMP_WAIT_POLICY=ACTIVE (set by the user); "
         "training/QAT keep the count (QLSTM_ADAPT=0)"),
    ]  # fmt: skip
    for env, said in cases:
        for k, v in env.items():
            clean_env.setenv(k, v)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="qlstm.threads"):
            main(["-v", "predict", "no-such-run", "--backend", "firmware", "--inputs", "no.npy"])
        assert [r.getMessage() for r in caplog.records if r.name == "qlstm.threads"] == [said]


@pytest.mark.parametrize(
    ("load1", "runnable", "extra", "busy"),
    [
        (0.0, 1, 0, False),  # idle: only this process runs
        (0.0, 2, 0, True),  # another thread wants a core now
        (0.0, 1, 1, True),  # more threads than cores
        (None, 1, 0, True),  # work that comes and goes: 1-minute load above half the cores
        ("unreadable", 1, 0, True),  # passive is the safe choice
    ],
)
def test_machine_busy_reads_the_kernel_load(clean_env, tmp_path, load1, runnable, extra, busy):
    cores = threads.available_cores()
    path = tmp_path / "loadavg"
    if load1 != "unreadable":
        load = cores / 2 + 0.5 if load1 is None else load1
        path.write_text(f"{load:.2f} 0.50 0.40 {runnable}/350 999\n")
    clean_env.setattr(threads, "LOADAVG", str(path))
    assert threads.machine_busy(cores + extra) is busy


def test_user_wait_policy_is_kept(clean_env):
    clean_env.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.configure(None)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_bad_counts_are_one_line_errors(clean_env, bad, capsys):
    clean_env.setenv(threads.ENV, bad)
    with pytest.raises(QlstmError, match="thread count must be an integer >= 1"):
        threads.count()
    clean_env.delenv(threads.ENV)
    if bad != "two":
        assert main(["--threads", bad, "--version"]) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--threads" in err


@pytest.mark.parametrize("busy", [True, False])
def test_wait_policy_reaches_openmp_before_torch_loads(tmp_path, busy):
    """In a fresh `qlstm` process torch's OpenMP runtime sees the chosen policy and the count."""
    code = (
        "import sys; from qlstm.cli import main; import qlstm.predict as p; import qlstm.threads as t\n"
        f"t.machine_busy = lambda n: {busy}\n"
        "def probe(args):\n"
        "    import os, torch\n"
        "    print(os.environ.get('OMP_WAIT_POLICY', 'unset'), torch.get_num_threads(), 'torch' in sys.modules)\n"
        "    return 0\n"
        "p.run = probe\n"
        "sys.exit(main(['--threads', '2', 'predict', 'x', '--inputs', 'x.npy']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.stdout.split() == ["PASSIVE" if busy else "unset", "2", "True"], out.stderr


TINY = {
    "history": 8,
    "horizon": 2,
    "data": {"source": "sine", "sine_samples": 1500, "sine_t_max": 15.0},
    "model": {"layers": [16]},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.01},
}


@pytest.mark.slow
def test_training_with_one_and_two_threads(tmp_path):
    """Guaranteed: the same thread count gives bit-identical weights; another count changes only
    the float32 rounding of parallel reductions (measured max |dw| 9e-8 after 2 epochs of an
    LSTM(32), docs/train.md) - asserted here at 1e-6 on this smaller model."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"train": TINY}))  # the train: section of a qlstm config
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", threads.ENV)}

    def train(n: int, name: str) -> dict[str, np.ndarray]:
        out = tmp_path / name
        cmd = [sys.executable, "-m", "qlstm.cli", "--threads", str(n), "train", "--config", str(cfg)]
        subprocess.run([*cmd, "--out", str(out)], check=True, env=env, capture_output=True)
        with np.load(out / "weights.npz") as z:
            return {k: z[k] for k in z.files}

    one, two, two_again = train(1, "t1"), train(2, "t2"), train(2, "t2b")
    for k in one:
        np.testing.assert_array_equal(two[k], two_again[k])
        assert float(np.max(np.abs(one[k] - two[k]))) <= 1e-6, k


@pytest.mark.parametrize("command", ["predict", "firmware"])
def test_threads_after_the_command_names_where_it_goes(command, capsys):
    """`qlstm predict ... --threads 2`: one error line saying --threads is an option of qlstm itself;
    every command's --help names the global options."""
    from qlstm.cli import build_parser

    argv = {
        "predict": ["predict", "RUN", "--inputs", "x.npy"],
        "firmware": ["firmware", "check", "RUN", "--inputs", "x.npy"],
    }
    parser = build_parser(argv[command])
    with pytest.raises(SystemExit) as e:
        parser.parse_args([*argv[command], "--threads", "2"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unrecognized arguments: --threads 2" in err
    assert "(--threads is an option of qlstm itself: qlstm --threads N <command> ...)" in err
    stage = parser._subparsers._group_actions[0].choices[command]
    assert "qlstm [-v] [--threads N] <command>" in " ".join(stage.format_help().split())


def _fake_proc(tmp_path, runnable: int, states: list[str]):
    """A /proc/loadavg with ``runnable`` threads and a /proc/self/task with one thread per state."""
    (tmp_path / "loadavg").write_text(f"3.10 2.50 2.40 {runnable}/350 999\n")
    for i, st in enumerate(states):
        (tmp_path / "task" / str(100 + i)).mkdir(parents=True)
        # a command name with spaces and a parenthesis, as the kernel may write it
        (tmp_path / "task" / str(100 + i) / "stat").write_text(f"{100 + i} (py (x) y) {st} 1 100 100 0 -1\n")
    return str(tmp_path / "loadavg"), str(tmp_path / "task")


@pytest.mark.parametrize(
    ("runnable", "states", "others"),
    [
        (5, ["R", "S", "R"], 3),  # two of this process's threads running (e.g. spinning OpenMP workers)
        (3, ["S", "S"], 2),  # the reading thread counts once even when its stat says sleeping
        (1, ["R", "R", "R"], 0),  # never negative (the two readings are not one instant)
    ],
)
def test_other_runnable_excludes_this_process(clean_env, tmp_path, runnable, states, others):
    loadavg, tasks = _fake_proc(tmp_path, runnable, states)
    clean_env.setattr(threads, "LOADAVG", loadavg)
    clean_env.setattr(threads, "TASKS", tasks)
    assert threads.other_runnable() == others
    clean_env.setattr(threads, "LOADAVG", str(tmp_path / "missing"))
    assert threads.other_runnable() is None


def test_adapt_switches_on_confirmed_readings_only(clean_env, caplog):
    """1 torch thread after 2 contended readings, back after 2 free ones, logged once at INFO; nothing
    happens under the passive policy or with QLSTM_ADAPT=0."""
    import logging

    import torch

    torch.set_num_threads(2)
    clean_env.setattr(threads, "available_cores", lambda: 2)
    readings = iter([1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0])
    a = threads.Adapt(interval=0.0, sense=lambda: next(readings))
    seen = []
    with caplog.at_level(logging.DEBUG, logger="qlstm.threads"):
        for _ in range(13):
            a.tick()
            seen.append(torch.get_num_threads())
    assert seen == [2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2]
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG, logging.DEBUG, logging.DEBUG]
    torch.set_num_threads(2)
    a = threads.Adapt(interval=0.0, sense=lambda: None)  # unreadable: contended (the safe side)
    a.check(), a.check()
    assert torch.get_num_threads() == 1
    a.close()
    assert torch.get_num_threads() == 2
    for var, value in (("OMP_WAIT_POLICY", "passive"), ("QLSTM_ADAPT", "0")):
        clean_env.setenv(var, value)
        a = threads.Adapt(interval=0.0, sense=lambda: 5)
        a.check(), a.check()
        assert not a.active and torch.get_num_threads() == 2
        clean_env.delenv(var)


@pytest.mark.slow
def test_adaptive_switch_keeps_results(clean_env, tmp_path):
    """Training and QAT with the switch: a machine that stays free gives bit-identical weights to no
    switch; a busy signal (1 thread from the second reading on) gives bit-identical weights on
    repeat and differs from the unswitched run only in float32 rounding (as another thread count,
    test_training_with_one_and_two_threads)."""
    import torch

    torch.set_num_threads(2)
    clean_env.setattr(threads, "ADAPT_INTERVAL", 0.0)
    clean_env.setattr(threads, "available_cores", lambda: 2)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"train": TINY}))

    def train(name: str, others: int | None, adapt: str = "1") -> dict[str, np.ndarray]:
        clean_env.setenv("QLSTM_ADAPT", adapt)
        clean_env.setattr(threads, "other_runnable", lambda: others)
        out = tmp_path / name
        assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
        assert torch.get_num_threads() == 2  # restored after the loop
        with np.load(out / "weights.npz") as z:
            return {k: z[k] for k in z.files}

    fixed, free = train("fixed", 5, adapt="0"), train("free", 0)
    busy, busy_again = train("busy", 5), train("busy2", 5)
    for k in fixed:
        np.testing.assert_array_equal(free[k], fixed[k])
        np.testing.assert_array_equal(busy[k], busy_again[k])
        assert float(np.max(np.abs(busy[k] - fixed[k]))) <= 1e-6, k
