"""How many threads qlstm uses, and how they wait: chosen once per process, before torch loads.

On a shared machine (login nodes, batch nodes, CI runners) threads that spin while they wait
for each other steal the cores other processes need, and an OpenMP barrier waits for its slowest
thread - one that the kernel has descheduled. So qlstm

* uses the cores this process may run on (``os.sched_getaffinity``, which follows ``taskset``,
  cgroups' cpusets and batch schedulers), or the number given by ``qlstm --threads N`` or the
  environment variable ``QLSTM_THREADS``;
* makes OpenMP threads sleep while they wait (``OMP_WAIT_POLICY=PASSIVE``; libgomp, which
  PyTorch's CPU wheels use, reads it once when it loads, so it must be in the environment
  before ``import torch``: :func:`configure` is the first thing ``qlstm.cli.main`` does);
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


def configure(threads: int | None = None) -> int:
    """Set the thread count and passive waiting for every library; returns the count.

    Call before ``torch`` (and ideally NumPy) is imported: the environment variables are read
    when the libraries load. Libraries already loaded are set through their APIs as well.
    """
    if threads is not None:
        os.environ[ENV] = str(_check(threads, "--threads"))
    n = count()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
