"""The compiled hls4ml C simulation of a quantized model: the oracle the rest is tested against.

:func:`build_csim` writes the hls4ml project of a quantized description, compiles its C
simulation with g++ (the ``build_lib.sh`` that hls4ml's ``compile()`` runs) and returns a
:class:`CSim` whose :meth:`CSim.predict` and :meth:`CSim.trace` call the compiled library through
ctypes, exactly as ``ModelGraph.predict`` / ``ModelGraph.trace`` do (inputs converted from double
to the input type inside the C++, outputs converted back to double).

Compiled libraries are cached by content hash under ``$QLSTM_CACHE/csim`` (default
``~/.cache/qlstm/csim``). The key covers what decides the generated C++: the architecture and the
quantization of the description (not its data provenance or normalisation, which the firmware
never sees), the exact weights, the :class:`~qlstm.hls_config.HlsConfig`, the hls4ml version,
the g++ version and this module's format number. The FPGA part and clock are not in the key:
they do not change the C++ of the kernels, so every target shares one compiled simulation.
A second call - in this process or another - loads the cached library without compiling.

The library is compiled with hls4ml's tracing hooks for every layer; they cost one branch per
layer while tracing is off, and let :meth:`CSim.trace` return every layer's output.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qlstm.description import ModelDescription, check_weights
from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig, check_reuse
from qlstm.io import atomic_write_text, new_staging, run_tool, weights_sha256

from .graph import HEAD_NAME, PROJECT_NAME, build_model_graph, head_layers, rnn_name
from .targets import TARGETS, check_part

log = logging.getLogger(__name__)

#: Bump when the generated project changes for the same inputs (invalidates every cache entry).
CSIM_FORMAT = "qlstm-csim/1"
MANIFEST = "csim.json"
DEFAULT_PART = TARGETS["zynq7020"].part
DEFAULT_CLOCK_NS = TARGETS["zynq7020"].clock_ns


def cache_root() -> Path:
    """``$QLSTM_CACHE/csim`` or ``~/.cache/qlstm/csim``."""
    base = os.environ.get("QLSTM_CACHE")
    root = Path(base) / "csim" if base else Path.home() / ".cache" / "qlstm" / "csim"
    return root.expanduser()


def gxx() -> str:
    """Path of g++, or a one-line error (exit code 3: a missing tool)."""
    path = shutil.which("g++")
    if path is None:
        raise QlstmError("g++ not found on PATH; the hls4ml C simulation needs a C++ compiler", exit_code=3)
    return path


def _gxx_version(path: str) -> str:
    out = subprocess.run(
        [path, "-dumpfullversion", "-dumpversion"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def firmware_fingerprint(desc: ModelDescription) -> str:
    """sha256 of what decides the firmware: architecture and quantization (not data provenance)."""
    d = desc.to_dict()
    keep = {"architecture": d["architecture"], "quantization": d["quantization"]}
    keep["architecture"].pop("dropout", None)  # training only
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def cache_key(desc: ModelDescription, weights: dict[str, np.ndarray], opts: HlsConfig, gxx_path: str) -> str:
    import hls4ml

    payload = {
        "format": CSIM_FORMAT,
        "firmware": firmware_fingerprint(desc),
        "weights": weights_sha256(weights),
        "options": opts.to_dict(),
        "hls4ml": hls4ml.__version__,
        "gxx": _gxx_version(gxx_path),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


# ====================================================================== compiling
_GCC_ERROR_RE = re.compile(r":\d+(?::\d+)?: (?:fatal )?error: ")
_ERROR_RE = re.compile(r"\berror\b", re.IGNORECASE)


def first_compiler_error(output: str) -> str:
    """g++'s first ``file:line:col: error:`` line; else the first line naming an error; else the last."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for pattern in (_GCC_ERROR_RE, _ERROR_RE):
        for ln in lines:
            if pattern.search(ln):
                return ln
    return lines[-1] if lines else "no output"


def compile_project(project_dir: Path) -> Path:
    """Run the project's ``build_lib.sh`` (g++); return the shared library it made.

    A failed compile raises a one-line :class:`QlstmError` with the compiler's first error.
    """
    gxx()
    t0 = time.perf_counter()
    proc = run_tool(["bash", "build_lib.sh"], cwd=project_dir)
    if proc.returncode != 0:
        raise QlstmError(
            f"C simulation failed to compile in {project_dir}: {first_compiler_error(proc.stdout + proc.stderr)}"
        )
    libs = sorted((project_dir / "firmware").glob(f"{PROJECT_NAME}-*.so"))
    if len(libs) != 1:
        raise QlstmError(f"{project_dir}: expected one compiled library, found {[p.name for p in libs]}")
    log.info("compiled %s in %.1f s", libs[0], time.perf_counter() - t0)
    return libs[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (another process building the same entry waits for it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: hls4ml 1.3.0's non-static ``nnet::lstm`` passes the ``accum_t`` arrays to ``nnet::dense<data_T,
#: res_T>``, which does not compile unless input, state and accumulator types are all equal (the
#: ``if (use_static)`` in ``lstm_stack`` is not ``if constexpr``, so both branches are
#: instantiated; hls4ml issue #1166). We give it the template arguments ``lstm_static`` uses.
#: For ``static=True`` (the default) the patched function is never called.
_LSTM_PATCH = (
    (
        "nnet::dense<data_T, res_T, typename CONFIG_T::mult_config1>(data, tmpres, param, param_b);",
        "nnet::dense<data_T, typename CONFIG_T::accum_t, typename CONFIG_T::mult_config1>(data, tmpres, param, param_b);",
    ),
    (
        "nnet::dense<data_T, res_T, typename CONFIG_T::mult_config2>(h_newstate, tmpres_state, param_r, param_br);",
        "nnet::dense<res_T, typename CONFIG_T::accum_t, typename CONFIG_T::mult_config2>(h_newstate, tmpres_state, param_r,\n"
        "                                                                                    param_br);",
    ),
)


def patch_recurrent_header(project_dir: Path) -> None:
    """Apply :data:`_LSTM_PATCH` to the project's copy of ``nnet_recurrent.h`` (exactly once each)."""
    path = Path(project_dir) / "firmware" / "nnet_utils" / "nnet_recurrent.h"
    text = path.read_text()
    for old, new in _LSTM_PATCH:
        if text.count(old) != 1:
            raise RuntimeError(f"{path}: expected one occurrence of {old!r}; hls4ml templates changed")
        text = text.replace(old, new)
    path.write_text(text)


def write_project(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    opts: HlsConfig,
    out_dir: Path,
    *,
    part: str,
    clock_ns: float,
    trace: bool,
) -> None:
    """Write the hls4ml project into ``out_dir`` (which must exist and be empty)."""
    model = build_model_graph(
        desc, weights, opts, output_dir=str(out_dir), part=part, clock_ns=clock_ns, trace=trace
    )
    model.write()
    patch_recurrent_header(out_dir)
    from .verify import check_project_types

    check_project_types(out_dir, desc)


# ====================================================================== the simulation
@dataclass(frozen=True)
class _LayerOut:
    name: str
    shape: tuple[int, ...]


class _TraceData(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p)]


class CSim:
    """A compiled hls4ml C simulation: ``predict`` and ``trace`` on (N, L, C) normalised inputs.

    Not thread-safe: the kernels keep their recurrent state in C++ ``static`` variables.
    """

    def __init__(self, desc: ModelDescription, lib_path: Path, project_dir: Path, key: str) -> None:
        self.desc = desc
        self.lib_path = Path(lib_path)
        self.project_dir = Path(project_dir)
        self.key = key
        arch = desc.architecture
        self._in_size = arch.history * arch.input_channels
        self._k = arch.horizon
        outs = []
        for i, layer in enumerate(arch.layers):
            seq = i != len(arch.layers) - 1
            outs.append(_LayerOut(rnn_name(i), (arch.history, layer.units) if seq else (layer.units,)))
        for (nm, dname, act), d in zip(head_layers(desc), arch.head, strict=True):
            outs.append(_LayerOut(dname, (d.units,)))
            if act != "linear":
                outs.append(_LayerOut(nm, (d.units,)))
        self.layer_outputs: tuple[_LayerOut, ...] = tuple(outs)
        self._lib = ctypes.CDLL(str(self.lib_path))
        self._fn = getattr(self._lib, f"{PROJECT_NAME}_double")
        self._fn.restype = None
        self._fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    def __repr__(self) -> str:
        return f"CSim(key={self.key}, project_dir={self.project_dir})"

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(self.desc.architecture.check_windows(x, "inputs"))  # the one window check
        return x.reshape(x.shape[0], self._in_size)

    def predict(self, x: np.ndarray, workers: int = 1) -> np.ndarray:
        """(N, L, C) float -> (N, k) float64, one call of the top function per window.

        ``workers > 1``: chunks of windows run in that many processes (the compiled kernels keep
        their state in C++ statics, so threads cannot share one library); each window is
        independent, so the result is the same. ``workers`` is capped at the cores this process
        may use (:func:`qlstm.threads.available_cores`; one warning line when it caps, shown without -v): more
        processes than cores only share them. Below :data:`PARALLEL_MIN` windows per worker the
        process start-up would cost more than it saves: one process.
        """
        from qlstm.threads import available_cores

        xf = self._check_x(x)
        n = xf.shape[0]
        workers, cores = int(workers), available_cores()
        if workers > cores:
            log.warning(
                "C simulation: %d workers requested, capped at the %d cores this process may use",
                workers,
                cores,
            )
            workers = cores
        workers = max(1, min(workers, n // PARALLEL_MIN))
        if workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            bounds = np.linspace(0, n, 4 * workers + 1).astype(int)
            chunks = [xf[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent (torch, BLAS)
            fn_name = f"{PROJECT_NAME}_double"
            with ProcessPoolExecutor(
                workers,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(str(self.lib_path), fn_name, self._k),
            ) as pool:
                return np.concatenate(list(pool.map(_worker_predict, chunks)))
        return _call_windows(self._fn, xf, self._k)

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output (hls4ml's trace): ``{"rnn0": (N, L, H) or (N, H), ..., "head": (N, k)}``;
        per head layer ``dense{j}``/``head`` its output and, with an activation, ``<name>.result``
        (the Dense layer's output, hls4ml's layer ``<name>_linear``): firmware_sim's trace names.

        Values are the fixed-point outputs converted to double, so they are exact.
        """
        xf = self._check_x(x)
        n = xf.shape[0]
        lib = self._lib
        lib.allocate_trace_storage.argtypes = [ctypes.c_size_t]
        lib.allocate_trace_storage.restype = None
        lib.free_trace_storage.argtypes = []
        lib.free_trace_storage.restype = None
        lib.collect_trace_output.argtypes = [ctypes.POINTER(_TraceData)]
        lib.collect_trace_output.restype = None
        out = {lo.name: np.zeros((n, *lo.shape), dtype=np.float64) for lo in self.layer_outputs}
        sizes = {lo.name: int(np.prod(lo.shape)) for lo in self.layer_outputs}
        y = np.zeros((n, self._k), dtype=np.float64)
        slots = (_TraceData * len(self.layer_outputs))()
        lib.allocate_trace_storage(ctypes.sizeof(ctypes.c_double))
        try:
            for i in range(n):
                self._fn(xf.ctypes.data + i * xf.strides[0], y.ctypes.data + i * y.strides[0])
                lib.collect_trace_output(slots)
                for slot in slots:
                    name = slot.name.decode()
                    if name not in out:
                        raise RuntimeError(f"C simulation traced an unexpected layer {name!r}")
                    buf = (ctypes.c_double * sizes[name]).from_address(slot.data)
                    out[name][i] = np.frombuffer(buf, dtype=np.float64).reshape(out[name].shape[1:])
        finally:
            lib.free_trace_storage()
        for nm, dname, act in head_layers(self.desc):
            if act != "linear":  # the Dense layer of a head layer with an activation
                out[f"{nm}.result"] = out.pop(dname)
        if not np.array_equal(out[HEAD_NAME], y):
            raise RuntimeError("traced head output differs from the returned prediction")
        return out


#: Fewest windows per worker process for :meth:`CSim.predict` to start processes. Measured
#: 2026-12-01 on the 2-core machine (load 1.7-3.8, LSTM(32), L = 16, 16 bits, spawn start-up
#: included; benchmarks/bench_csim_workers.py): 2 workers against 1 took 0.89x the speed on 2,000
#: windows, 1.01x on 5,000 and 0.96x on 10,000; a second run (load 3.4-6.7): 0.65x, 1.18x, 0.98x -
#: no gain below 2,500 windows per worker, on a loaded machine none that holds up to 10,000.
PARALLEL_MIN = 5000


def _call_windows(fn, xf: np.ndarray, k: int) -> np.ndarray:
    """The compiled top function on every row of ``xf`` (N, L*C) contiguous float64."""
    n = xf.shape[0]
    y = np.zeros((n, k), dtype=np.float64)
    xp, yp = xf.ctypes.data, y.ctypes.data
    xs, ys = xf.strides[0], y.strides[0]
    for i in range(n):
        fn(xp + i * xs, yp + i * ys)
    return y


_WORKER: dict[str, object] = {}


def _worker_init(lib_path: str, fn_name: str, k: int) -> None:
    """Worker process of :meth:`CSim.predict`: load the compiled library once."""
    lib = ctypes.CDLL(lib_path)
    fn = getattr(lib, fn_name)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    _WORKER.update(lib=lib, fn=fn, k=k)


def _worker_predict(xf: np.ndarray) -> np.ndarray:
    return _call_windows(_WORKER["fn"], np.ascontiguousarray(xf), int(_WORKER["k"]))  # type: ignore[arg-type]


# ====================================================================== entry point
def build_csim(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    config: HlsConfig | None = None,
    *,
    part: str = DEFAULT_PART,
    clock_ns: float = DEFAULT_CLOCK_NS,
    out_dir: Path | None = None,
) -> CSim:
    """Compile (or load from the cache) the C simulation of a quantized description.

    ``CSim.project_dir`` is the compiled hls4ml project in the cache; with ``out_dir`` its sources
    are also copied there for inspection (the folder must not exist or be empty; the library
    stays in the cache, where it reads its weights). Every precision comes from
    ``desc.quantization``; the generated headers are checked against it before compiling.
    """
    if desc.quantization is None:
        raise QlstmError(
            "the model is not quantized; run `qlstm quantize` first (hls needs fixed-point types)"
        )
    check_weights(desc, weights)
    opts = HlsConfig() if config is None else config
    part = check_part(part)
    if not (isinstance(clock_ns, int | float) and math.isfinite(clock_ns) and clock_ns > 0):
        raise QlstmError(f"clock period must be > 0 ns, got {clock_ns}")
    check_reuse(desc, opts.reuse_factor)
    if out_dir is not None:
        out_dir = Path(out_dir)
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise QlstmError(f"{out_dir} already exists and is not an empty folder; choose another folder")
    gxx_path = gxx()
    key = cache_key(desc, weights, opts, gxx_path)
    root = cache_root()
    entry = root / key
    with _locked(root / f"{key}.lock"):
        lib = _cached_library(entry)
        if lib is None:
            _build_entry(desc, weights, opts, entry, part=part, clock_ns=clock_ns, key=key)
            lib = _cached_library(entry)
            if lib is None:
                raise RuntimeError(f"{entry}: cache entry incomplete right after building it")
        else:
            log.info("C simulation %s found in the cache", key)
    project = entry
    if out_dir is not None:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        stage = new_staging(out_dir)
        try:
            shutil.copytree(entry, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.so", MANIFEST))
            os.chmod(stage, 0o755)
            if out_dir.exists():
                out_dir.rmdir()
            os.replace(stage, out_dir)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        project = out_dir
    return CSim(desc, lib, project, key)


def _cached_library(entry: Path) -> Path | None:
    """The compiled library of a complete cache entry, or None (absent, interrupted or corrupt)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        lib = entry / manifest["library"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return lib if manifest.get("format") == CSIM_FORMAT and lib.is_file() else None


def _build_entry(
    desc: ModelDescription,
    weights: dict[str, np.ndarray],
    opts: HlsConfig,
    entry: Path,
    *,
    part: str,
    clock_ns: float,
    key: str,
) -> None:
    """Write and compile a cache entry in place (the caller holds its lock).

    In place, because the library reads its weights from the absolute ``WEIGHTS_DIR`` that
    ``build_lib.sh`` compiles in. The manifest is written last: an entry without one (an
    interrupted or failed build) is removed and built again.
    """
    import hls4ml

    if entry.exists():
        shutil.rmtree(entry)
    entry.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        write_project(desc, weights, opts, entry, part=part, clock_ns=clock_ns, trace=True)
        lib = compile_project(entry)
        seconds = time.perf_counter() - t0
        atomic_write_text(
            entry / MANIFEST,
            json.dumps(
                {
                    "format": CSIM_FORMAT,
                    "key": key,
                    "library": str(lib.relative_to(entry)),
                    "options": opts.to_dict(),
                    "hls4ml": hls4ml.__version__,
                    "firmware_fingerprint": firmware_fingerprint(desc),
                    "build_seconds": round(seconds, 2),
                    "note": "C-simulation cache entry; part and clock here are not meaningful",
                },
                indent=2,
            )
            + "\n",
        )
    except BaseException:
        shutil.rmtree(entry, ignore_errors=True)
        raise
