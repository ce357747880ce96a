"""qlstm.io.run_tool: an interrupted build tool is killed with its children (trial of #16)."""

from __future__ import annotations

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
