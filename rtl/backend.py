"""The ``rtl`` backend of ``qlstm predict``: the generated Verilog, simulated in Verilator.

The first call for a model writes the RTL (da4ml cutoff :data:`qlstm.rtl.api.DEFAULT_PIPELINE`)
and compiles its testbench (seconds for a few cells, minutes for 32); later calls, in any process,
reuse it from ``$QLSTM_CACHE/rtl`` (default ``~/.cache/qlstm/rtl``), keyed by the model and the
qlstm version. The outputs are the firmware's (and firmware_sim's) exactly. The cache keeps the
:data:`CACHE_MAX` most recently used builds (``$QLSTM_RTL_CACHE_MAX`` to change it): a build is
marked used whenever it is reused, and building a new one deletes the least recently used beyond
that count (a build of LSTM(32) with its compiled testbench takes tens of MB). A build in use by
another process (simulating, under a shared ``flock`` on ``<key>.lock`` beside it) is never
deleted: eviction takes the lock exclusively without waiting and skips the build if it cannot.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from qlstm import __version__, description
from qlstm.errors import QlstmError

from . import api, sim
from .verilog import TB

#: Bump when the generated RTL changes for the same model (invalidates the cache).
RTL_FORMAT = 5  # 2: x_t registered, product latency; 3: built with DEFAULT_PRODUCT_LATENCY, as qlstm rtl;
# 4: constants folded exactly (trace.exact_constants; 24-bit designs were off by one LSB);
# 5: constant factors of > 32 fraction bits or > 24 significant bits exact (trace.const_mul, _float32_parts)


#: Builds kept in the cache by default (the most recently used); ``$QLSTM_RTL_CACHE_MAX`` overrides.
CACHE_MAX = 8
CACHE_MAX_ENV = "QLSTM_RTL_CACHE_MAX"
#: A staging folder left by a killed build is deleted when older than this (seconds).
STALE_STAGING_S = 24 * 3600


def cache_max() -> int:
    """How many builds the cache keeps: ``$QLSTM_RTL_CACHE_MAX`` (an integer >= 1) or :data:`CACHE_MAX`."""
    text = os.environ.get(CACHE_MAX_ENV)
    if text is None or text.strip() == "":
        return CACHE_MAX
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise QlstmError(f"{CACHE_MAX_ENV}={text!r}: must be an integer >= 1 (RTL builds kept in the cache)")
    return n


def _touch(entry: Path) -> None:
    """Mark a cached build as just used (its folder's modification time orders the eviction)."""
    now = time.time_ns()
    os.utime(entry, ns=(now, now))


def _lock_path(entry: Path) -> Path:
    return entry.parent / f"{entry.name}.lock"


@contextlib.contextmanager
def _locked(entry: Path, exclusive: bool = False, wait: bool = True):
    """Hold ``flock`` on ``entry``'s lock file (shared: in use; exclusive: being deleted); yields
    False without waiting when ``wait`` is False and another process holds it."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(entry), "a") as fh:
        op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fh, op)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def evict(root: Path, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete the least recently used builds under ``root`` beyond the ``keep`` most recent (never
    ``protect``, never one another process holds in use: it stays, counted among those kept), and
    staging folders older than :data:`STALE_STAGING_S`. Returns what was deleted."""
    if not root.is_dir():
        return []
    gone = []
    entries = []
    for p in root.iterdir():
        if p.suffix == ".lock" and not p.is_dir():  # the lock of a build deleted long ago
            if not p.with_suffix("").exists() and time.time() - p.stat().st_mtime > STALE_STAGING_S:
                p.unlink(missing_ok=True)
            continue
        if p.suffix == ".log" and not p.is_dir():  # a failed build's log (_build_or_reuse), kept a while
            if time.time() - p.stat().st_mtime > STALE_STAGING_S:
                p.unlink(missing_ok=True)
            continue
        if not p.is_dir():
            continue
        st = p.stat()
        if p.name.startswith("."):
            if time.time() - st.st_mtime > STALE_STAGING_S:
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
        else:
            entries.append((st.st_mtime_ns, p))
    others = [p for _, p in sorted(entries, reverse=True) if p != protect]  # most recent first
    room = keep - (protect is not None and protect.is_dir())
    for p in others[max(room, 0) :]:
        with _locked(p, exclusive=True, wait=False) as free:
            if free:
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
    return gone


def cache_root() -> Path:
    base = os.environ.get("QLSTM_CACHE")
    return Path(base) / "rtl" if base else Path.home() / ".cache" / "qlstm" / "rtl"


def _key(desc, weights: dict[str, np.ndarray], pipeline: float, alarm_rule=None) -> str:
    h = hashlib.sha256()
    d = desc.to_dict()
    key = [
        d["architecture"],
        d["quantization"],
        pipeline,
        api.DEFAULT_PRODUCT_LATENCY,
        RTL_FORMAT,
        __version__,
    ]
    if alarm_rule is not None:  # the design with the alarm (qlstm detect --backend rtl)
        from .alarm import ALARM_FORMAT

        key.append(["alarm", ALARM_FORMAT, alarm_rule.score, alarm_rule.ewma_shift])
    h.update(json.dumps(key, sort_keys=True).encode())
    for k in sorted(weights):
        h.update(k.encode())
        h.update(np.ascontiguousarray(weights[k], dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


@contextlib.contextmanager
def compiled(run_dir: Path, pipeline: float = api.DEFAULT_PIPELINE, alarm_rule=None):
    """Context: (folder, result if built now, description) of the run's compiled RTL in the cache,
    held in use (not evicted by another process) until the block ends; with ``alarm_rule`` (an
    ``AlarmRule``) the design with the precursor alarm (:mod:`.alarm`)."""
    desc, weights = description.load(Path(run_dir))
    if not desc.quantized:
        raise QlstmError(
            f"{run_dir}: not a quantized run; the rtl backend needs the output of qlstm quantize"
        )
    keep = cache_max()
    entry = cache_root() / _key(desc, weights, pipeline, alarm_rule)
    with _locked(entry):
        yield _build_or_reuse(entry, desc, weights, pipeline, alarm_rule, keep)


def _build_or_reuse(entry: Path, desc, weights, pipeline: float, alarm_rule, keep: int):
    binary = entry / "sim" / "obj_dir" / f"V{TB}"
    if binary.is_file():
        _touch(entry)
        return entry, None, desc
    sim.verilator_env()
    entry.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        d = api.design(desc, weights, pipeline, alarm_rule)  # qlstm rtl's defaults (product latency)
        res = api.build(
            desc, weights, part="xc7z045ffg900-2", clock_ns=5.0, pipeline=pipeline, out=stage, traced_design=d
        )
        try:
            sim.build(stage)
        except QlstmError as exc:  # the log it names is in the staging folder deleted below
            raise api.keep_log(exc, entry) from None
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(stage, entry)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _touch(entry)
    evict(entry.parent, keep, protect=entry)
    return entry, res, desc


def predict(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64: the RTL's outputs in Verilator."""
    t0 = time.perf_counter()
    with compiled(run_dir) as (folder, res, desc), tempfile.TemporaryDirectory() as tmp:
        built_s = time.perf_counter() - t0
        q = desc.quantization  # type: ignore[attr-defined]
        xm = q.input.to_int(np.asarray(x, dtype=np.float64))
        binary = folder / "sim" / "obj_dir" / f"V{TB}"
        r = sim.run(binary, folder, xm, q.input, q.output, desc.architecture.horizon, io_dir=Path(tmp))  # type: ignore[attr-defined]
        print(describe(folder, res is not None, built_s, r.cycles))
    return q.output.to_float(r.y_m)


def describe(folder: Path, built: bool, built_s: float, cycles: np.ndarray) -> str:
    """One line: the design of the cached ``folder`` (its ``rtl.json``), whether it was built now
    or reused, where it is cached, and the ``cycles`` (N,) measured in RTL simulation."""
    s = json.loads((folder / api.RTL_JSON).read_text())
    how = f"built now in {built_s:.1f} s" if built else "reused"
    cmin, cmax = int(cycles.min()), int(cycles.max())
    pl = s.get("product_latency")
    n = cache_max()
    kept = "the most recently used build is kept" if n == 1 else f"the {n} most recently used builds are kept"
    return (
        f"rtl backend: da4ml cutoff {s['pipeline']:g} ({s['stages_per_step']} stages per step, {s['head_stages']} "
        f"for the head, product latency {'da4ml' if pl is None else format(pl, 'g')}), {s['part']}, clock "
        f"{s['clock_ns']:g} ns assumed; {how}, cached in {folder} ({kept}, ${CACHE_MAX_ENV}); cycles start->done {cmin}-{cmax} measured in RTL simulation (Verilator) "
        f"on {len(cycles):,} windows = {cmax * s['clock_ns'] / 1000:.3f} us at the assumed clock"
    )


def alarm_stream(
    run_dir: Path,
    alarm_rule,
    xm: np.ndarray,
    clear: np.ndarray,
    constants,
    pipeline: float = api.DEFAULT_PIPELINE,
):
    """Run a stream of windows (N, L, C input-type mantissas; ``clear`` (N,) where a recording
    starts) through the run's RTL with the alarm in Verilator -> :class:`qlstm.rtl.alarm.AlarmSim`
    (outputs, alarm registers and cycles per window, measured in RTL simulation)."""
    from . import alarm

    with compiled(run_dir, pipeline, alarm_rule) as (folder, _, desc), tempfile.TemporaryDirectory() as tmp:
        ad = alarm.trace_alarm(desc, alarm_rule)  # type: ignore[arg-type]
        binary = folder / "sim" / "obj_dir" / f"V{TB}"
        return alarm.run(binary, folder, xm, clear, ad, constants, io_dir=Path(tmp))
