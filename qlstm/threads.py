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
import os
import sys

from qlstm.errors import QlstmError

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
    if "OMP_WAIT_POLICY" not in os.environ and machine_busy(n):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
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
