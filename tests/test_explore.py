"""qlstm explore (issue #19): the space format, the study on a LocalCluster and on separately
started Dask processes, resume after a kill, the front, failing trials, bad input."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qlstm.errors import QlstmError
from qlstm.explore.space import load_space, parse_space

TINY_SETTINGS = {"epochs": 1, "max_train_windows": 300, "max_eval_windows": 200, "n_events": 3,
                 "duration_s": 120.0, "population_size": 4}  # fmt: skip
TINY = {"cells": [4, 8], "history": [4, 6], "bits": {"low": 6, "high": 10}, "reuse_factor": [1, 2],
        "settings": TINY_SETTINGS}  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _folder(row: dict[str, str]) -> Path:
    """The trial folder a row's reproduce command names (a point proposed again names the first)."""
    return Path(row["reproduce"].split("--config ")[1].split()[0]).parent


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def _check_front(out: Path) -> None:
    """pareto.csv is exactly the non-dominated feasible completed trials (independent O(n^2))."""
    rows = [r for r in _rows(out / "trials.csv") if r["state"] == "COMPLETE"]
    feas = [r for r in rows if r["fits"] == "True" and r["meets_budget"] == "True"]
    vals = {int(r["number"]): [float(r[k]) for k in ("rmse", "latency_us", "resource_frac")] for r in feas}
    expect = {n for n, v in vals.items() if not any(_dominates(w, v) for m, w in vals.items() if m != n)}
    got = {int(r["number"]) for r in _rows(out / "pareto.csv")}
    assert got == expect
    assert got, "an empty front proves nothing"


def test_space_default_and_bad_input() -> None:
    sp = load_space(None)
    assert {"cells", "history", "bits", "reuse_factor"} <= set(sp.names)
    cases = {
        "unknown key 'celss'": {"celss": [8]},
        "empty range": {"cells": {"low": 9, "high": 8}},
        "empty list": {"bits": []},
        "unknown choice 'rnn'": {"cell": ["rnn"]},
        "settings: unknown key 'epoch'": {"bits": [8], "settings": {"epoch": 1}},
        "pipeline_depth is the RTL design's; give --rtl": {"pipeline_depth": [1]},
        "searches nothing": {},
        # the stages' own limits, refused at parse time instead of failing every trial
        "cells 0: recurrent layer units 0 outside 1-1024": {"cells": [0]},
        "bits 1: bits=1: bit width outside 2-32": {"bits": [1, 40]},
        "bits 40: bits=40: bit width outside 2-32": {"bits": {"low": 8, "high": 40}},
        "weight_bits 1: weight_bits=1": {"weight_bits": [1]},
        "reuse_factor 0: reuse factor must be an integer >= 1": {"reuse_factor": [0]},
        "history 500: history L=500 outside 1-128": {"history": [500]},
        "settings: training.epochs": {"bits": [8], "settings": {"epochs": -1}},
        "settings: data.stride, data.max_train_windows": {"bits": [8], "settings": {"max_train_windows": 0}},
        "settings: epochs must be an integer, got 'one'": {"bits": [8], "settings": {"epochs": "one"}},
        "settings: lr must be a number, got 'x'": {"bits": [8], "settings": {"lr": "x"}},
        "settings: seed must be an integer, got 1.5": {"bits": [8], "settings": {"seed": 1.5}},
        "settings: population_size 1 must be >= 2": {"bits": [8], "settings": {"population_size": 1}},
        "cells: a log range cannot have a step": {"cells": {"low": 4, "high": 8, "log": True, "step": 2}},
        "cells: low must be an integer, got 4.5": {"cells": {"low": 4.5, "high": 8}},
    }
    for msg, data in cases.items():
        with pytest.raises(QlstmError, match=msg) as exc:
            parse_space(data, "space.yaml")
        assert "\n" not in str(exc.value)


def test_cli_bad_space_and_unreachable_scheduler(tmp_path: Path, capsys) -> None:
    import yaml

    from qlstm.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("cells: {low: 8, high: 4}\n")
    assert main(["explore", "--space", str(bad), "--trials", "1", "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty range" in err[0]
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["explore", "--space", str(space), "--trials", "1", "--out", str(tmp_path / "y"),
               "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress"])  # fmt: skip
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.startswith("qlstm")]
    assert (
        rc != 0
        and len(err) == 1
        and f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}" in err[0]
    )


def test_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, capsys) -> None:
    import yaml

    from qlstm.cli import main

    # 3 s events (8 samples each) cannot hold a window of L 6 + k 4: refused inside every trial
    space = tmp_path / "short.yaml"
    space.write_text(
        yaml.safe_dump({**TINY, "history": [6], "settings": {**TINY_SETTINGS, "duration_s": 3.0}})
    )
    out = tmp_path / "out"
    rc = main(["explore", "--space", str(space), "--trials", "3", "--out", str(out), "--workers", "1",
               "--no-progress"])  # fmt: skip
    rows = _rows(out / "trials.csv")
    assert [r["state"] for r in rows] == ["FAIL"] * 3
    assert all(r["error"] and "\n" not in r["error"] for r in rows)
    cap = capsys.readouterr()
    # every trial of this invocation failed: exit 1, the count in the summary, the first error line
    assert rc == 1 and "3 of this run's trial(s) FAILED" in cap.out
    assert f"every trial of this run failed; the first: {rows[0]['error']}" in cap.err


def _cli_error(capsys, argv: list[str]) -> tuple[int, list[str]]:
    from qlstm.cli import main

    rc = main(argv)
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    return rc, err


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    """Issue #19's bad inputs: each is one error line, a non-zero exit, and --out is as before
    (absent, or with exactly the entries it had), so a later good run is not refused."""
    import yaml

    from qlstm.explore import study

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    (tmp_path / "notanpz.npz").write_text("hello")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "dup.yaml").write_text("cells: [4]\nbits: [6]\ncells: [8]\n")
    mute = socket.socket()  # a service that is not Dask: connects (the kernel's backlog), never answers
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    noisy = socket.socket()  # one that answers garbage (read as a Dask header it once asked for 3 EiB)
    noisy.bind(("127.0.0.1", 0))
    noisy.listen(16)

    def answer_garbage() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = noisy.accept()
                conn.sendall(b"\xff" * 64)

    import threading

    threading.Thread(target=answer_garbage, daemon=True).start()
    monkeypatch.setattr(study, "CONNECT_TIMEOUT_S", 2.0)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    cases = {
        "--data: /nonexist.npz: file not found": ["--data", "/nonexist.npz"],
        "notanpz.npz: not a readable NPZ file": ["--data", str(tmp_path / "notanpz.npz")],
        "--workers 0 must be >= 1": ["--workers", "0"],
        "--workers -1 must be >= 1": ["--workers", "-1"],
        "--storage bogus://x: ": ["--storage", "bogus://x"],
        "--target foo: unknown target; choose one of zynq": ["--target", "foo"],
        f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{mute.getsockname()[1]}": [
            "--scheduler", f"tcp://127.0.0.1:{mute.getsockname()[1]}"],
        f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{noisy.getsockname()[1]}": [
            "--scheduler", f"tcp://127.0.0.1:{noisy.getsockname()[1]}"],
        "binary.yaml: not a text file": ["--space", str(tmp_path / "binary.yaml")],
        "dup.yaml: duplicate key 'cells'": ["--space", str(tmp_path / "dup.yaml")],
    }  # fmt: skip
    try:
        for msg, extra in cases.items():
            for out in (tmp_path / "new" / "out", kept):
                argv = ["explore", "--space", str(space), "--trials", "1", "--out", str(out), "--no-progress"]
                rc, err = _cli_error(capsys, [*argv, *extra])
                assert rc != 0 and len(err) == 1 and msg in err[0], (msg, err)
                assert "--part" not in err[0]
                assert not (tmp_path / "new").exists(), msg
                assert [p.name for p in kept.iterdir()] == ["mine.txt"], msg
    finally:
        mute.close()
        noisy.close()
    for out, msg in (
        (tmp_path / "afile", "exists and is not a folder"),
        (Path("/proc/qlstm-x"), "cannot create"),
    ):
        rc, err = _cli_error(capsys, ["explore", "--space", str(space), "--trials", "1", "--out", str(out)])
        assert rc != 0 and len(err) == 1 and msg in err[0], err
    assert (tmp_path / "afile").read_text() == "x"


def test_a_failure_after_creation_removes_what_it_created(tmp_path: Path, monkeypatch) -> None:
    """A step that fails once --out exists (here the events step) undoes this invocation's
    folder and study.db; in an existing --out only the new entries go."""
    from qlstm.explore import study

    def broken(*a, **k):
        raise QlstmError("the events step failed")

    monkeypatch.setattr(study, "_events", broken)
    sp = parse_space(TINY, "space")
    for out in (tmp_path / "a" / "b", tmp_path / "kept"):
        with pytest.raises(QlstmError, match="the events step failed"):
            study.explore(sp, out, 1, workers=1, progress=False, echo=lambda m: None)
        assert not (tmp_path / "a").exists()
        (tmp_path / "kept").mkdir(exist_ok=True)
        (tmp_path / "kept" / "mine.txt").write_text("x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["mine.txt"]


@pytest.mark.slow
def test_local_cluster_two_workers_front_and_resume(tmp_path: Path) -> None:
    from qlstm.explore.study import explore
    from qlstm.run_config import load_run_config

    sp = parse_space(TINY, "space")
    res = explore(sp, tmp_path, 4, workers=2, progress=False, echo=lambda m: None)
    assert res["ran"] + res["reused"] == 4
    rows = _rows(tmp_path / "trials.csv")
    # the windows: built once per distinct L (one task, one artifact), the same in every trial of that L
    hists = {int(r["history"]) for r in rows}
    assert res["windows_built"] == len(hists)
    assert {p.name for p in (tmp_path / "windows").iterdir()} == {f"L{h}.npz" for h in hists}
    for r in rows:
        shared = np.load(tmp_path / "windows" / f"L{r['history']}.npz")
        own = np.load(_folder(r) / "train/float/windows.npz")
        assert all(np.array_equal(shared[k], own[k]) for k in shared.files)
    assert list(rows[0])[:6] == ["number", "state", "rmse", "latency_us", "latency_kind", "resource_frac"]
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    assert {r["latency_kind"] for r in rows} == {"estimate"}
    for f in ("pareto.csv", "pareto.png", "pareto.html"):
        assert (tmp_path / f).stat().st_size > 0
    page = (tmp_path / "pareto.html").read_text()
    assert "<title>trial #" in page and "<td>None</td>" not in page  # an empty cell is empty
    assert {r["resource_kind"] for r in rows} == {"estimate (hls4ml resource estimator: LUT, FF, DSP, BRAM)"}
    assert {r["latency_source"] for r in rows} == {"estimate (hls4ml latency estimator, hls/estimate)"}
    _check_front(tmp_path)
    # the events were generated once and every trial trained on that one file
    events = list(tmp_path.rglob("events.npz"))
    assert len(events) == 1
    for r in rows:
        cfg = load_run_config(Path(r["reproduce"].split("--config ")[1].split()[0]))
        assert cfg.train.history == int(r["history"]) and cfg.quantize.bits == int(r["bits"])
        assert cfg.hls.options.reuse_factor == int(r["reuse_factor_used"])
        assert str(events[0]) in (_folder(r) / "train/float/data.json").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("trials/*/run.yaml")}
    res = explore(sp, tmp_path, 5, workers=2, progress=False, echo=lambda m: None)  # resume: one more
    assert res["ran"] + res["reused"] == 1 and res["finished"] == 5  # reused: a point proposed again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no finished trial repeated
    assert [r["number"] for r in _rows(tmp_path / "trials.csv")] == ["0", "1", "2", "3", "4"]
    _check_front(tmp_path)
    # the reproduce command is a normal `qlstm run`: the same float and quantized weights, bit for bit
    r = rows[0]
    rep = tmp_path / "rep"
    cmd = r["reproduce"].replace("qlstm run", "run").split()
    cmd[cmd.index("--out") + 1] = str(rep)
    subprocess.run([sys.executable, "-m", "qlstm.cli", "--threads", "1", *cmd, "--to", "quantize"],
                   check=True, capture_output=True)  # fmt: skip
    trial = _folder(r)
    q = f"quantize/ptq{r['bits']}/weights.npz"
    for f in ("train/float/weights.npz", q):
        a, b = np.load(rep / f), np.load(trial / f)
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


def _states(out: Path) -> dict[int, str]:
    """The trials' states, read without writing: optuna.load_study would create the schema of a
    database the explorer is creating at that moment (the race test_concurrent_open_study covers)."""
    import sqlite3

    db = out / "study.db"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return dict(con.execute("SELECT number, state FROM trials").fetchall())
    except sqlite3.OperationalError:  # tables not created yet
        return {}


def _open_fresh(url: str, barrier, results) -> None:
    from qlstm.explore.study import open_study

    space = load_space(None)
    barrier.wait()
    try:
        open_study(url, space, {"k": 1})
        results.put("ok")
    except QlstmError as exc:
        results.put(str(exc))


def test_concurrent_open_study(tmp_path: Path) -> None:
    """Two explorers opening one new study at once both get it (optuna creates the schema
    unlocked; without the retry, 20 of 40 such openings failed here)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    for i in range(4):
        url = f"sqlite:///{tmp_path / f's{i}.db'}"
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh, args=(url, barrier, results)) for _ in range(3)]
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert got == ["ok"] * 3, got


def test_another_study_refusal_names_the_difference(tmp_path: Path) -> None:
    from qlstm.explore.study import open_study

    url, space = f"sqlite:///{tmp_path / 's.db'}", load_space(None)
    open_study(url, space, {"clock_ns": 5.0, "target": "zynq7045", "settings": {"epochs": 5}})
    with pytest.raises(QlstmError) as exc:
        open_study(url, space, {"clock_ns": 10.0, "target": "zynq7045", "settings": {"epochs": 6}})
    msg = str(exc.value)
    assert "clock_ns: stored 5.0, given 10.0" in msg and "settings.epochs: stored 5, given 6" in msg
    assert "target" not in msg.split("(")[1].split(")")[0] and "\n" not in msg


def test_concurrent_explorers_propose_different_points(tmp_path: Path) -> None:
    """Two explorers on one study, asking in turn: per-trial seeds give different points (one
    process-wide seed gave the same point pairwise); a fresh study with the same seed proposes the
    same points again (reproducible)."""
    import optuna

    from qlstm.explore.study import TrialSeededNSGAII

    def points(url: str, n_explorers: int, n: int) -> list[int]:
        studies = [optuna.create_study(study_name="s", storage=url, load_if_exists=True,
                                       sampler=TrialSeededNSGAII(4, 0), directions=["minimize"] * 2)
                   for _ in range(n_explorers)]  # fmt: skip
        return [studies[i % n_explorers].ask().suggest_int("x", 0, 10**9) for i in range(n)]

    shared = points(f"sqlite:///{tmp_path / 'a.db'}", 2, 6)
    assert len(set(shared)) == 6
    assert points(f"sqlite:///{tmp_path / 'b.db'}", 1, 6) == shared


@pytest.mark.slow
def test_two_explorers_started_together_share_n(tmp_path: Path) -> None:
    """Issue #19: two explorers with --trials 4 on one fresh --out, started together, ran 8 trials
    and proposed identical points pairwise. Now the study holds exactly 4 finished trials, at 4
    different points, and both explorers succeed (the creation phase is serialised on the folder)."""
    import yaml

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "qlstm.cli", "explore", "--space", str(space), "--trials", "4", "--out",
           str(out), "--workers", "1", "--no-progress"]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    rows = [r for r in _rows(out / "trials.csv") if r["state"] != "PRUNED"]  # PRUNED: a surplus ask
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    points = {(r["cells"], r["history"], r["bits"], r["reuse_factor"]) for r in rows}
    assert len(points) == 4


@pytest.mark.slow
def test_running_trials_of_another_explorer_count_towards_n(tmp_path: Path) -> None:
    """N counts the study's finished AND running trials (every explorer's), re-read before each
    submission: with another live explorer's trial running, --trials 2 runs one more, not two."""
    import optuna

    from qlstm.explore.study import STUDY_NAME, explore

    sp = parse_space({**TINY, "cells": [4], "history": [4], "bits": {"low": 6, "high": 16}}, "space")
    res = explore(sp, tmp_path, 1, workers=1, progress=False, echo=lambda m: None)  # makes the study
    assert res["ran"] == 1
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{tmp_path / 'study.db'}")
    other = study.ask()  # another explorer's trial, still running (its process is alive: ours' parent)
    other.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getppid()})
    res = explore(sp, tmp_path, 3, workers=1, progress=False, echo=lambda m: None)
    assert res["ran"] + res["reused"] == 1
    states = _states(tmp_path)
    assert sorted(states.values()) == ["COMPLETE", "COMPLETE", "RUNNING"]


@pytest.mark.slow
def test_kill_and_resume(tmp_path: Path) -> None:
    import yaml

    from qlstm.explore.study import explore

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "qlstm.cli", "explore", "--space", str(space), "--trials", "4", "--out",
           str(out), "--workers", "1", "--no-progress"]  # fmt: skip
    err = tmp_path / "stderr.txt"
    with open(err, "w") as errf:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and "COMPLETE" not in _states(out).values():
            assert proc.poll() is None, (
                f"the explorer ended before it could be killed: {err.read_text()[-2000:]}"
            )
            time.sleep(0.3)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group may have ended already
            os.killpg(proc.pid, signal.SIGKILL)  # the explorer, its cluster and its worker
        proc.wait(timeout=30)
    before = _states(out)
    done = [n for n, s in before.items() if s == "COMPLETE"]
    assert done and len(done) < 4
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/run.yaml")}
    res = explore(load_space(space), out, 4, workers=1, progress=False, echo=lambda m: None)
    assert res["ran"] + res["reused"] == 4 - len(done)
    after = _states(out)
    assert all(after[n] == "COMPLETE" for n in done)
    assert stamps and {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no finished trial re-run
    assert sum(1 for s in after.values() if s == "COMPLETE") == 4
    interrupted = [n for n, s in before.items() if s == "RUNNING"]
    assert all(after[n] == "FAIL" for n in interrupted)
    rows = {int(r["number"]): r for r in _rows(out / "trials.csv")}
    assert all(rows[n]["error"].startswith("interrupted") for n in interrupted)


@pytest.mark.slow
def test_separate_dask_scheduler_and_worker_processes(tmp_path: Path) -> None:
    from qlstm.explore.study import explore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                               "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        from dask.distributed import Client

        with Client(addr, timeout="60s") as c:
            c.wait_for_workers(1, timeout=120)
        res = explore(parse_space(TINY, "space"), tmp_path, 2, scheduler=addr, progress=False,
                      echo=lambda m: None)  # fmt: skip
        assert res["ran"] + res["reused"] == 2 and res["ran"] >= 1
        assert [r["state"] for r in _rows(tmp_path / "trials.csv")] == ["COMPLETE"] * 2
        _check_front(tmp_path)
    finally:
        for p in (worker, sched):
            p.terminate()
        for p in (worker, sched):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


@pytest.mark.slow
def test_data_file_and_its_reproduce_commands(tmp_path: Path, monkeypatch) -> None:
    from qlstm.data import generate, save_events
    from qlstm.data.synthetic import SyntheticConfig
    from qlstm.explore.study import explore

    events = save_events(generate(SyntheticConfig(n_events=3, duration_s=120.0, seed=5)), tmp_path / "ev.npz")
    out = tmp_path / "out"
    res = explore(
        parse_space(TINY, "space"), out, 1, data=events, workers=1, progress=False, echo=lambda m: None
    )
    assert res["ran"] == 1 and not (out / "data_run").exists()  # no data step: the given file
    monkeypatch.chdir(tmp_path)  # the same file by a relative path is the same exploration (resolved)
    again = explore(parse_space(TINY, "space"), out, 1, data=Path("ev.npz"), workers=1, progress=False,
                    echo=lambda m: None)  # fmt: skip
    assert again["ran"] == 0 and again["finished"] == 1
    (row,) = _rows(out / "trials.csv")
    assert row["state"] == "COMPLETE"
    cmds = [c.strip().split() for c in row["reproduce"].split("&&")]
    for c in cmds:
        subprocess.run([sys.executable, "-m", "qlstm.cli", "--threads", "1", *c[1:]], check=True,
                       capture_output=True, cwd=tmp_path)  # fmt: skip
    trial = out / "trials" / "00000"
    for mine, theirs in (("float", "train/float"), ("quantized", f"quantize/ptq{row['bits']}")):
        a, b = (
            np.load(tmp_path / "runs/explore-0" / mine / "weights.npz"),
            np.load(trial / theirs / "weights.npz"),
        )
        assert all(np.array_equal(a[k], b[k]) for k in b.files)


@pytest.mark.slow
def test_a_point_proposed_again_is_not_rerun(tmp_path: Path) -> None:
    from qlstm.explore.study import explore

    sp = parse_space({**TINY, "cells": [4], "history": [4], "bits": [6, 7], "reuse_factor": [1]}, "space")
    res = explore(sp, tmp_path, 4, workers=1, progress=False, echo=lambda m: None, prune_runs=True)
    rows = _rows(tmp_path / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    for r in rows:  # --prune-runs: the run.yaml is kept, the run folders are not
        assert (_folder(r) / "run.yaml").is_file() and not (_folder(r) / "train").exists()
    firsts = {}
    for r in rows:
        firsts.setdefault(r["bits"], r)
    dups = [r for r in rows if r["duplicate_of"]]
    assert res["reused"] == len(dups) == 4 - len(firsts) >= 2
    for r in dups:
        orig = firsts[r["bits"]]
        assert r["duplicate_of"] == orig["number"] and r["rmse"] == orig["rmse"]
        assert not (tmp_path / "trials" / f"{int(r['number']):05d}").exists()
    res = explore(sp, tmp_path, 6, workers=1, progress=False, echo=lambda m: None)  # resumed: still known
    assert res["ran"] == 0 and res["reused"] == 2


@pytest.mark.slow
def test_rtl_trials_measure_cycles_in_verilator(tmp_path: Path) -> None:
    from qlstm.explore.study import explore

    data = {**TINY, "cells": [4], "history": [4], "bits": [6], "reuse_factor": [1], "pipeline_depth": [4, 8],
            "settings": {**TINY_SETTINGS, "rtl_windows": 4}}  # fmt: skip
    with pytest.raises(QlstmError, match="give --rtl"):
        parse_space(data, "space")
    res = explore(parse_space(data, "space", rtl=True), tmp_path, 1, workers=1, rtl=True, progress=False,
                  echo=lambda m: None)  # fmt: skip
    (row,) = _rows(tmp_path / "trials.csv")
    assert res["ran"] == 1 and row["state"] == "COMPLETE", row["error"]
    assert row["latency_kind"] == "measured" and row["resource_kind"].startswith("estimate (da4ml")
    rtl = __import__("json").loads((_folder(row) / "rtl" / "rtl.json").read_text())
    assert rtl["bit_exact"] and rtl["windows"] == 4
    assert int(row["latency_cycles"]) == rtl["cycles_max"]
    assert float(row["latency_us"]) == pytest.approx(rtl["cycles_max"] * 10.0 / 1000.0)  # zynq7045: 10 ns
    assert (
        "qlstm rtl" in row["reproduce"] and f"--pipeline {float(row['pipeline_depth']):g}" in row["reproduce"]
    )


def test_rtl_trial_that_cannot_fit_is_not_simulated(tmp_path: Path) -> None:
    """A design over the part by da4ml's estimate cannot be on the front: no Verilator build, its
    latency is the schedule's cycle count labelled ``estimate``; a fitting one would be measured."""
    import json

    from hls.targets import Resources, Target
    from qlstm.explore import trial
    from tests.rtl_models import policy_model

    desc, weights = policy_model(("lstm",), (4,), 6, history=4)
    ctx = trial.Context(events="", trials_dir=str(tmp_path), target="tiny", clock_ns=5.0, budget_us=1.0,
                        settings={"rtl_windows": 4}, synthetic=True, rtl=True)  # fmt: skip
    tiny = Target.custom("xc7z045ffg900-2", Resources(lut=10, ff=10, dsp=1, bram_18k=1))
    x = np.zeros((4, 4, desc.architecture.input_channels))
    got = trial._rtl(tmp_path, desc, weights, x, tiny, 4.0, ctx)
    summary = json.loads((tmp_path / "rtl" / "rtl.json").read_text())
    assert not got["fits"] and got["resource_frac"] > 1.0
    assert got["latency_kind"] == "estimate" and got["rtl_bit_exact_windows"] == 0
    assert got["latency_cycles"] == summary["cycles_by_construction"] and summary["cycles_max"] is None
    assert not (tmp_path / "rtl" / "sim" / "obj_dir").exists()  # no Verilator build
    assert got["latency_us"] == pytest.approx(got["latency_cycles"] * 5.0 / 1000.0)
