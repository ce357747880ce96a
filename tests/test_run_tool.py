"""qlstm.io.run_tool: an interrupted build tool is killed with its children (trial of #16)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from qlstm.io import run_tool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its (re-parented) parent counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_output_and_return_code():
    r = run_tool(["bash", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


def test_interrupt_kills_the_grandchildren(tmp_path):
    pidfile = tmp_path / "pid"
    # bash starts a grandchild (like verilator's perl -> make -> g++) and waits for it
    script = f"sleep 60 & echo $! > {pidfile}; wait"

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_tool(["bash", "-c", script])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    grandchild = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)


def _wait_gone(pids: list[int], seconds: float = 15.0) -> list[int]:
    """The pids of ``pids`` still alive after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


# A tool in the main thread (the Verilator build) and one in a worker thread (Yosys), as qlstm
# run's rtl step runs them through qlstm.pipeline.beside; each bash writes its own pid and its
# grandchild's, then says it is ready.
BESIDE_SCRIPT = """
import signal
import sys
from pathlib import Path
from qlstm.io import run_tool
from qlstm.pipeline import beside

def terminate(signum, frame):  # SIGTERM as qlstm's CLI handles it
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, terminate)
d = Path(sys.argv[1])
def tool(name):
    return lambda: run_tool(["bash", "-c", f"sleep 300 & echo $$ $! > {d}/{name}.pids; wait"])
try:
    beside(tool("side"), tool("main"))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_kills_the_tool_of_the_worker_thread_too(tmp_path, sig):
    """SIGINT (Ctrl-C to the process group) or SIGTERM while a tool runs in the main thread and
    another in a worker thread: the command exits in seconds (it waited for the worker's tool
    before, 146 s with Yosys) and neither tool nor their children remain (the worker's was left
    with parent pid 1 by a second Ctrl-C)."""
    import subprocess
    import sys

    script = tmp_path / "beside.py"
    script.write_text(BESIDE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    files = [tmp_path / "side.pids", tmp_path / "main.pids"]
    deadline = time.monotonic() + 60
    while not all(f.is_file() and f.read_text().strip().count(" ") == 1 for f in files):
        assert time.monotonic() < deadline and proc.poll() is None, "the tools did not start"
        time.sleep(0.1)
    pids = [int(p) for f in files for p in f.read_text().split()]
    t0 = time.monotonic()
    os.killpg(proc.pid, sig)  # the terminal's Ctrl-C reaches the process group (not the tools' own)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    took = time.monotonic() - t0
    left = _wait_gone(pids)
    for pid in left:  # the test's own processes: not left to a failed test's machine
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in out, (proc.returncode, out)
    assert took < 20, took
    assert left == [], "a tool or its child outlived the interrupted command"
