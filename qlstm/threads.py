"""How many threads qlstm uses, and how they wait: chosen once per process, before torch loads.

On a shared machine (login nodes, batch nodes, CI runners) threads that spin while they wait
for each other steal the cores other processes need, and an OpenMP barrier waits for its slowest
thread - one that the kernel has descheduled. So qlstm

* uses the cores this process may run on (``os.sched_getaffinity``, which follows ``taskset``,
  cgroups' cpusets and batch schedulers), or the number given by ``qlstm --threads N`` or the
  environment variable ``QLSTM_THREADS``;
* makes OpenMP threads sleep while they wait (``OMP_WAIT_POLICY=PASSIVE``) when other work is
  running on the machine (:func:`machine_busy`), and leaves libgomp's default (spin a while, then
  sleep) on an idle one. libgomp, which PyTorch's CPU wheels use, reads the variable once when it
  loads, so it must be in the environment before ``import torch``: :func:`configure` is the
  first thing ``qlstm.cli.main`` does. Measured 2026-11-30 on 2 cores (docs/train.md): the
  default run's training took 22.8 s spinning and 105.8 s passive on an idle machine, and
  229.2 s spinning against 22.8 s passive (3 epochs) beside other agents' jobs (load 5-10);
* gives the same count to PyTorch (intra-op; one inter-op thread), OpenMP, MKL and the
  simulators (firmware_sim's threads over windows, which run its NumPy and numba kernels; the C
  simulation's worker processes); NumPy's OpenBLAS gets one thread (see :data:`SERIAL_VARS`).

Variables the user set explicitly (``OMP_WAIT_POLICY``, ``OMP_NUM_THREADS``, ...) are kept
unless ``--threads`` is given. Results do not depend on the count: see docs/train.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

from qlstm.errors import QlstmError

log = logging.getLogger(__name__)

#: Environment variable naming the thread count (as ``qlstm --threads``).
ENV = "QLSTM_THREADS"
#: Thread-count variables of the libraries qlstm loads (OpenMP, OpenBLAS, MKL). numba's kernels
#: (:mod:`qlstm.firmware_sim.jit`) are single-threaded; the simulator runs them in its own pool.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: NumPy's OpenBLAS gets one thread: firmware_sim runs its products in its own threads over
#: windows, and OpenBLAS threads that busy-wait beside them made a 2-thread `qlstm predict
#: --backend firmware` 1.5-3.5x slower than 1 thread on the loaded 2-core machine (measured
#: 2026-11-30: 3.18 s against 2.12 s, and 8.79 s against 2.46 s).
SERIAL_VARS = ("OPENBLAS_NUM_THREADS",)
#: The kernel's load figures (1-, 5-, 15-minute load averages, runnable/total threads, last pid).
LOADAVG = "/proc/loadavg"
#: This process's threads, one directory each with a ``stat`` file (state ``R`` = running).
TASKS = "/proc/self/task"
#: What :func:`configure` chose and why (one line; ``qlstm -v`` logs it), or None before it ran.
decision: str | None = None
#: Seconds between two readings of the machine in the training and QAT loops (:class:`Adapt`).
ADAPT_INTERVAL = 1.0


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _check(n: int, where: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise QlstmError(f"{where} {n!r}: the thread count must be an integer >= 1")
    return n


def requested() -> int | None:
    """The count from ``QLSTM_THREADS``, or None when unset."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        raise QlstmError(f"{ENV}={text!r}: the thread count must be an integer >= 1") from None
    return _check(n, ENV)


def count() -> int:
    """Threads this process uses: ``--threads``/``QLSTM_THREADS``, else ``OMP_NUM_THREADS`` if the
    user set it, else the cores it may run on."""
    n = requested()
    if n is not None:
        return n
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    return available_cores()


def machine_busy(n: int) -> bool:
    """True when ``n`` threads of this process would share its cores with other running work.

    Two signals, both from the kernel: the threads runnable right now (``/proc/loadavg``'s fourth
    field, this process's reading thread excluded) must leave ``n`` cores free, and the 1-minute
    load average must stay below half the cores (work that comes and goes). One read, no
    sampling: every ``qlstm`` command calls this at start-up. Where ``/proc/loadavg`` cannot be
    read the machine counts as busy (passive waiting is the safe choice: spinning threads on a
    shared machine were 10x slower, docs/train.md).
    """
    cores = available_cores()
    try:
        with open(LOADAVG) as f:
            fields = f.read().split()
        runnable = int(fields[3].split("/")[0])
        load1 = float(fields[0])
    except (OSError, ValueError, IndexError):
        return True
    others = runnable - 1  # this process is running while it reads
    return others + n > cores or load1 > cores / 2


def configure(threads: int | None = None) -> int:
    """Set the thread count and the OpenMP wait policy for every library; returns the count.

    The wait policy is ``PASSIVE`` when :func:`machine_busy`, else libgomp's default; a policy
    the user set (``OMP_WAIT_POLICY``) is kept. Call before ``torch`` (and ideally NumPy) is
    imported: the environment variables are read when the libraries load. Libraries already
    loaded are set through their APIs as well. Results do not depend on the wait policy.
    """
    if threads is not None:
        os.environ[ENV] = str(_check(threads, "--threads"))
    n = count()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    source = (
        "--threads/" + ENV
        if requested() is not None
        else "OMP_NUM_THREADS"
        if omp.isdigit() and int(omp) >= 1
        else "the cores this process may use"
    )
    global decision
    if "OMP_WAIT_POLICY" in os.environ:
        policy = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (set by the user)"
    elif machine_busy(n):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        policy = "waiting threads sleep (OMP_WAIT_POLICY=PASSIVE): the machine is busy at start-up"
    else:
        policy = "waiting threads spin, then sleep (libgomp's default): the machine is idle at start-up"
    if n == 1:
        adapt = ""
    elif "PASSIVE" in os.environ.get("OMP_WAIT_POLICY", "").upper():
        adapt = "; training/QAT keep the count (sleeping threads share the cores: no switch needed)"
    elif os.environ.get("QLSTM_ADAPT", "1").strip() == "0":
        adapt = "; training/QAT keep the count (QLSTM_ADAPT=0)"
    else:
        adapt = "; training/QAT drop to 1 torch thread while other work contends (QLSTM_ADAPT=0 to keep the count)"
    decision = f"{n} thread(s) ({source}); {policy}{adapt}"
    for var in THREAD_VARS:
        if threads is not None or var not in os.environ:
            os.environ[var] = str(n)
    for var in SERIAL_VARS:
        os.environ.setdefault(var, "1")
    apply_loaded(n)
    return n


def apply_loaded(n: int) -> None:
    """Give ``n`` to torch if it is already loaded (its own API)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # already set, or inter-op work already started
            torch.set_num_interop_threads(1)


def other_runnable() -> int | None:
    """Threads of OTHER processes that are runnable right now, or None where Linux's /proc is absent.

    ``/proc/loadavg``'s runnable count (fourth field) minus this process's threads in state ``R``
    (``/proc/self/task/*/stat``: its spinning OpenMP workers count as running, and the thread
    reading counts once at least). A spinning process beside qlstm is always runnable, so one
    reading sees it; :class:`Adapt` confirms it over consecutive readings.
    """
    try:
        with open(LOADAVG) as f:
            runnable = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir(TASKS):
            with contextlib.suppress(OSError), open(os.path.join(TASKS, task, "stat")) as f:
                # the state follows the command name in parentheses, which may hold spaces
                own += f.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, runnable - max(own, 1))


class Adapt:
    """Drops torch's intra-op threads to 1 while other work contends for the cores, and restores them.

    Why: libgomp reads its wait policy once, at start-up (:func:`configure`), so a long training
    that started on an idle machine keeps threads that spin at every barrier when other jobs
    arrive later - 10x slower beside them (docs/train.md) - while one thread has no barrier to
    spin on. Called from the training and QAT loops on every batch (:meth:`tick`, which reads the
    kernel at most once per ``interval`` seconds): ``confirm`` consecutive readings with
    ``other_runnable() + n > cores`` switch to 1 thread, as many free ones switch back. Nothing
    happens when the policy is ``PASSIVE`` (sleeping threads share the cores well: 2 passive
    threads beat 1 beside 2 spinners, docs/train.md) or when torch has 1 thread at the start.
    Another thread count changes only the float32 rounding of oneDNN's LSTM/GRU kernels
    (measured <= 1.2e-7 on weights, tests/test_threads.py), so a switched run is reproducible up
    to that rounding, not bit for bit; set ``QLSTM_ADAPT=0`` to keep the count fixed.
    """

    def __init__(self, interval: float | None = None, confirm: int = 2, sense=None) -> None:
        import torch

        self._torch = torch
        self.n = torch.get_num_threads()
        self.cores = available_cores()
        self.interval = ADAPT_INTERVAL if interval is None else interval
        self.confirm = confirm
        self.sense = sense or (lambda: other_runnable())  # looked up per call: tests replace it
        flag = os.environ.get("QLSTM_ADAPT", "1").strip()
        passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
        self.active = self.n > 1 and not passive and flag != "0"
        self.reduced = False
        self.switches = 0
        self._streak = 0
        self._next = time.monotonic() + self.interval

    def tick(self) -> None:
        """Cheap unless ``interval`` has passed: then one reading and, when confirmed, a switch."""
        if not self.active:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        self.check()

    def check(self) -> None:
        """One reading of the machine; switches after ``confirm`` consistent readings."""
        if not self.active:
            return
        others = self.sense()
        contended = others is None or others + self.n > self.cores
        self._streak = self._streak + 1 if contended != self.reduced else 0
        if self._streak < self.confirm:
            return
        self._streak = 0
        self.reduced = contended
        self._torch.set_num_threads(1 if contended else self.n)
        self.switches += 1
        say = log.info if self.switches == 1 else log.debug
        if contended:
            say("other work on the cores (%s runnable): 1 torch thread until they are free", others)
        else:
            say("cores free again: back to %d torch threads", self.n)

    def close(self) -> None:
        """Restore the chosen count (the loop ended while reduced)."""
        if self.reduced:
            self._torch.set_num_threads(self.n)
            self.reduced = False
