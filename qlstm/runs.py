"""Run folders: the one module that names every file a stage writes and reads it back, typed.

A stage writes its folder through :mod:`qlstm.io`'s staged writers and the savers below; a later
stage (or the report) opens it with :func:`open_float_run` / :func:`open_quant_run`, never by
re-reading side files or re-running an earlier stage. The files:

=================  ==============  ============================================================
file               written by      read as
=================  ==============  ============================================================
model.json         train/quantize  :meth:`FloatRun.description` (:mod:`qlstm.description`)
weights.npz        train/quantize  :meth:`FloatRun.weights`
checkpoint.pt      train/quantize  (PyTorch state dict, for ``torch.load`` users)
config.yaml        train/quantize  the stage's own config section, as run
data.json          train           :attr:`FloatRun.data` (source, sha256, split event names)
windows.npz        train           :meth:`FloatRun.heldout` -> :class:`HeldOut`
metrics.json       train/quantize  :attr:`FloatRun.metrics` / :attr:`QuantRun.metrics`
parent.json        quantize        :attr:`QuantRun.parent` -> the :class:`FloatRun`
qlstm_hls.json     hls             :func:`read_hls_project` -> :class:`HlsProject`
firmware_check     firmware step   :func:`read_json` (an :class:`Agreement` and two RMSEs)
trace_predictions  firmware step   :func:`load_trace_predictions` (the report's quench figure)
estimate.json      hls             :func:`read_estimates` -> :class:`Estimates` (the report's
                                   latency/resource ESTIMATES; the report never estimates)
=================  ==============  ============================================================

``windows.npz`` holds the train/validation/test windows exactly as training used them (float32,
normalised), each with the index of its event in the split (``data.json``'s ``split``) and its
first sample, plus the quench trace the report draws. It is written ONCE, by ``qlstm train``;
quantize, hls, the firmware check and the report read it. Run folders written before it existed
(no ``windows.npz``) are refused with one line: re-train them.

One :class:`Metrics` type (RMSE/MAE per step ahead and over all steps, the largest error, the
number of windows) is written by train, quantize, hls and the firmware check, and read back here.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm.description import ModelDescription
from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig
from qlstm.io import atomic_write_bytes, atomic_write_text, read_text

MODEL_FILE = description.DESCRIPTION_FILE
WEIGHTS_FILE = description.WEIGHTS_FILE
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.json"
PARENT_FILE = "parent.json"
WINDOWS_FILE = "windows.npz"
CURVE_FILE = "training_curve.png"
HLS_PROJECT_FILE = "qlstm_hls.json"
FIRMWARE_CHECK_FILE = "firmware_check.json"
TRACE_PREDICTIONS_FILE = "trace_predictions.npz"
ESTIMATE_FILE = "estimate.json"
ESTIMATE_FORMAT = "qlstm-estimate/1"

WINDOWS_FORMAT = "qlstm-windows/1"
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metrics:
    """Errors of one model's predictions against the targets, in normalised units.

    ``rmse_per_step``/``mae_per_step`` have one entry per step ahead (k); ``rmse``/``mae``/``mse``
    are over all N x k outputs; ``max_abs_error`` the largest absolute error; ``windows`` is N.
    """

    rmse: float
    rmse_per_step: tuple[float, ...]
    mae: float
    mae_per_step: tuple[float, ...]
    mse: float
    max_abs_error: float
    windows: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rmse_per_step"], d["mae_per_step"] = list(self.rmse_per_step), list(self.mae_per_step)
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Metrics:
        if not isinstance(data, dict):
            raise QlstmError(f"{where}: expected a metrics mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise QlstmError(f"{where}: metrics lack {', '.join(missing)} (written by an older qlstm?)")
        try:
            return cls(
                rmse=float(data["rmse"]),
                rmse_per_step=tuple(float(v) for v in data["rmse_per_step"]),
                mae=float(data["mae"]),
                mae_per_step=tuple(float(v) for v in data["mae_per_step"]),
                mse=float(data["mse"]),
                max_abs_error=float(data["max_abs_error"]),
                windows=int(data["windows"]),
            )
        except (TypeError, ValueError) as exc:
            raise QlstmError(f"{where}: bad metrics value ({exc})") from None


def rmse_metrics(pred: np.ndarray, y: np.ndarray) -> Metrics:
    """The one error computation: predictions (N, k) against targets (N, k), in float64.

    Raises QlstmError when the shapes differ.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise QlstmError(f"predictions {p.shape} and targets {t.shape} must both be (N, k)")
    e = p - t
    n = len(e)
    se = np.mean(e**2, axis=0) if n else np.zeros(e.shape[1])
    ae = np.mean(np.abs(e), axis=0) if n else np.zeros(e.shape[1])
    mse = float(np.mean(e**2)) if n else 0.0
    return Metrics(
        rmse=float(np.sqrt(mse)),
        rmse_per_step=tuple(float(v) for v in np.sqrt(se)),
        mae=float(np.mean(np.abs(e))) if n else 0.0,
        mae_per_step=tuple(float(v) for v in ae),
        mse=mse,
        max_abs_error=float(np.max(np.abs(e))) if e.size else 0.0,
        windows=int(n),
    )


@dataclass(frozen=True)
class Agreement:
    """Two backends' outputs (N, k) compared exactly; differences in LSBs of the output type."""

    windows: int
    outputs: int
    equal: int
    max_diff_lsb: float
    bit_exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(a: np.ndarray, b: np.ndarray, lsb: float) -> Agreement:
    """The one backend comparison: exact equality of ``a`` and ``b`` (same shape), and the
    largest difference in units of ``lsb`` (the output type's LSB). Raises QlstmError on shapes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise QlstmError(f"cannot compare outputs of shapes {a.shape} and {b.shape}")
    diff = np.abs(a - b)
    return Agreement(
        windows=int(a.shape[0]),
        outputs=int(a.size),
        equal=int(np.count_nonzero(diff == 0)),
        max_diff_lsb=float(diff.max() / lsb) if diff.size else 0.0,
        bit_exact=bool(np.all(diff == 0)),
    )


# ----------------------------------------------------------------------------- held-out windows
@dataclass(frozen=True, eq=False)
class Split:
    """One split's windows: ``x`` (N, L, C) and ``y`` (N, k) float32 normalised; ``event`` (N,)
    index of the window's event in the split's event list; ``start`` (N,) its first sample."""

    x: np.ndarray
    y: np.ndarray
    event: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, eq=False)
class QuenchTrace:
    """The last samples of a test event up to its quench, for the report's figure: ``x`` (n, L, C)
    normalised windows (float64), ``truth`` (n,) the normalised target one step ahead, ``t`` (n,) seconds
    relative to the quench."""

    event: str
    x: np.ndarray
    truth: np.ndarray
    t: np.ndarray


@dataclass(frozen=True, eq=False)
class HeldOut:
    """The windows of one float run exactly as training cut them (``windows.npz``).

    ``events`` names the events of each split; ``event_lengths`` their lengths in samples;
    ``quenches`` how many test events carry a quench marker; ``trace`` is None when no test event
    has one.
    """

    train: Split
    val: Split
    test: Split
    events: dict[str, tuple[str, ...]]
    event_lengths: dict[str, tuple[int, ...]]
    quenches: int
    trace: QuenchTrace | None

    def save(self, path: Path) -> None:
        """Write ``windows.npz`` atomically (no pickle: plain arrays and unicode names)."""
        arrays: dict[str, np.ndarray] = {"format": np.array(WINDOWS_FORMAT)}
        for s in SPLITS:
            sp: Split = getattr(self, s)
            arrays |= {
                f"{s}_x": np.ascontiguousarray(sp.x, dtype=np.float32),
                f"{s}_y": np.ascontiguousarray(sp.y, dtype=np.float32),
                f"{s}_event": np.asarray(sp.event, dtype=np.int64),
                f"{s}_start": np.asarray(sp.start, dtype=np.int64),
                f"{s}_events": np.array(self.events[s], dtype=str),
                f"{s}_event_lengths": np.array(self.event_lengths[s], dtype=np.int64),
            }
        arrays["quenches"] = np.array(self.quenches, dtype=np.int64)
        if self.trace is not None:
            arrays |= {
                "trace_event": np.array(self.trace.event),
                "trace_x": np.asarray(self.trace.x, dtype=np.float64),
                "trace_truth": np.asarray(self.trace.truth, dtype=np.float64),
                "trace_t": np.asarray(self.trace.t, dtype=np.float64),
            }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> HeldOut:
        """Read ``windows.npz``; a missing, corrupt or foreign file is one QlstmError line."""
        path = Path(path)
        if not path.is_file():
            raise QlstmError(
                f"{path.parent}: no {WINDOWS_FILE}, so no training or held-out windows (an imported model, "
                "or a run written before qlstm stored them): give windows (e.g. quantize --calibration X.npy) "
                "or re-train it with this version of qlstm train"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError ...
            raise QlstmError(f"{path}: not a readable {WINDOWS_FILE} ({type(exc).__name__})") from None
        if str(a.get("format", "")) != WINDOWS_FORMAT:
            raise QlstmError(f"{path}: format {str(a.get('format', '?'))!r}, expected {WINDOWS_FORMAT!r}")
        try:
            splits = {s: Split(a[f"{s}_x"], a[f"{s}_y"], a[f"{s}_event"], a[f"{s}_start"]) for s in SPLITS}
            trace = (
                QuenchTrace(str(a["trace_event"]), a["trace_x"], a["trace_truth"], a["trace_t"])
                if "trace_x" in a
                else None
            )
            return cls(
                **splits,
                events={s: tuple(str(v) for v in a[f"{s}_events"]) for s in SPLITS},
                event_lengths={s: tuple(int(v) for v in a[f"{s}_event_lengths"]) for s in SPLITS},
                quenches=int(a["quenches"]),
                trace=trace,
            )
        except KeyError as exc:
            raise QlstmError(f"{path}: array {exc} missing") from None


# ----------------------------------------------------------------------------- run folders
def read_json(path: Path) -> dict[str, Any]:
    """A JSON mapping; a missing or corrupt file is one QlstmError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise QlstmError(f"{path}: not found")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise QlstmError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise QlstmError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(Path(path), json.dumps(data, indent=2, default=str) + "\n")


@dataclass(frozen=True)
class FloatMetrics:
    """``metrics.json`` of a float run: the model and both baselines on the test windows."""

    model: Metrics
    persistence: Metrics
    linear_ar: Metrics
    verdict: str
    raw: dict[str, Any]  # the whole file (training history, raw units ...)

    @property
    def test(self) -> Metrics:
        return self.model


@dataclass(frozen=True)
class QuantMetrics:
    """``metrics.json`` of a quantized run: its test metrics and the float model's."""

    test: Metrics
    float_test: Metrics
    method: str
    bits: int
    raw: dict[str, Any]


@dataclass(frozen=True)
class FloatRun:
    """A float run folder written by ``qlstm train``."""

    path: Path

    def description(self) -> ModelDescription:
        return description.load(self.path)[0]

    def load(self) -> tuple[ModelDescription, dict[str, np.ndarray]]:
        return description.load(self.path)

    def heldout(self) -> HeldOut:
        return HeldOut.load(self.path / WINDOWS_FILE)

    @property
    def data(self) -> dict[str, Any]:
        return read_json(self.path / DATA_FILE)

    @property
    def metrics(self) -> FloatMetrics:
        where = self.path / METRICS_FILE
        m = read_json(where)
        test = m.get("test", {})
        return FloatMetrics(
            model=Metrics.from_dict(test.get("model"), f"{where}: test.model"),
            persistence=Metrics.from_dict(test.get("persistence"), f"{where}: test.persistence"),
            linear_ar=Metrics.from_dict(test.get("linear_ar"), f"{where}: test.linear_ar"),
            verdict=str(m.get("verdict", "")),
            raw=m,
        )


@dataclass(frozen=True)
class QuantRun:
    """A quantized run folder written by ``qlstm quantize``."""

    path: Path

    def description(self) -> ModelDescription:
        return description.load(self.path)[0]

    def load(self) -> tuple[ModelDescription, dict[str, np.ndarray]]:
        return description.load(self.path)

    @property
    def parent(self) -> FloatRun:
        """The float run this run was quantized from, as ``parent.json`` names it."""
        where = self.path / PARENT_FILE
        info = read_json(where)
        p = info.get("path")
        if not isinstance(p, str):
            raise QlstmError(f"{where}: no `path` of the float run")
        return open_float_run(Path(p), where=str(where))

    def heldout(self) -> HeldOut:
        """The held-out windows of the float parent (the quantized run was fitted on them)."""
        return self.parent.heldout()

    @property
    def metrics(self) -> QuantMetrics:
        where = self.path / METRICS_FILE
        m = read_json(where)
        return QuantMetrics(
            test=Metrics.from_dict(m.get("test"), f"{where}: test"),
            float_test=Metrics.from_dict(m.get("float_test"), f"{where}: float_test"),
            method=str(m.get("method", "")),
            bits=int(m.get("bits", 0)),
            raw=m,
        )


def write_parent(stage: Path, parent: Path, fingerprint: str) -> None:
    """``parent.json`` of a quantized run: the absolute path and fingerprint of its float run."""
    write_json(Path(stage) / PARENT_FILE, {"path": str(Path(parent).resolve()), "fingerprint": fingerprint})


def open_float_run(path: Path, where: str | None = None) -> FloatRun:
    """A float run folder (model.json without quantization); one QlstmError line otherwise."""
    path = Path(path)
    tag = f"{where}: " if where else ""
    if not (path / MODEL_FILE).is_file():
        raise QlstmError(f"{tag}{path}: no {MODEL_FILE}; not a qlstm run folder (train first)")
    return FloatRun(path.resolve())


def open_quant_run(path: Path) -> QuantRun:
    """A quantized run folder; one QlstmError line when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise QlstmError(f"{path}: run folder not found")
    if not description.load(path)[0].quantized:
        raise QlstmError(f"{path}: not a quantized run (no quantization in model.json); run qlstm quantize")
    return QuantRun(path.resolve())


# ----------------------------------------------------------------------------- hls projects
@dataclass(frozen=True)
class HlsProject:
    """``qlstm_hls.json`` of an hls project: the quantized run it was made from, its target and
    its :class:`qlstm.hls_config.HlsConfig` (so other stages build the same C simulation)."""

    path: Path
    run: Path
    part: str
    clock_ns: float
    config: Any  # qlstm.hls_config.HlsConfig
    raw: dict[str, Any]


def read_hls_project(path: Path) -> HlsProject:
    from qlstm.config import from_mapping
    from qlstm.hls_config import HlsConfig

    path = Path(path)
    where = path / HLS_PROJECT_FILE
    m = read_json(where)
    try:
        cfg = from_mapping(HlsConfig, m["options"], where=f"{where}: options")
        return HlsProject(path, Path(m["run"]), m["target"]["part"], float(m["target"]["clock_ns"]), cfg, m)
    except (KeyError, TypeError) as exc:
        raise QlstmError(f"{where}: missing {exc} (not a qlstm hls project?)") from None


# ----------------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class EstimateRecord:
    """One hls4ml configuration's ESTIMATE as ``estimate.json`` stores it (``hls/estimate``: a
    model of hls4ml's scheduling, not synthesis). ``usage``: dsp, lut, ff, bram_18k."""

    target: str
    part: str
    clock_ns: float
    config: HlsConfig
    latency_cycles: int
    latency_us: float
    usage: dict[str, int]
    utilisation: dict[str, float]
    fits: bool
    synthesisable: bool
    peak_utilisation: float
    raw: dict[str, Any]


@dataclass(frozen=True)
class TargetEstimates:
    """One target at one clock: the ESTIMATE at hls4ml's defaults (reuse factor 1, latency,
    static) and every candidate configuration of the budget search."""

    target: str
    part: str
    clock_ns: float
    rf1: EstimateRecord
    candidates: tuple[EstimateRecord, ...]

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_ns


@dataclass(frozen=True)
class Estimates:
    """``estimate.json`` of an hls project (:mod:`qlstm.hls.estimate.summary`)."""

    path: Path
    model_fingerprint: str
    weights_sha256: str
    targets: tuple[TargetEstimates, ...]
    paper_model: TargetEstimates
    paper_architecture: str
    khoda: EstimateRecord
    khoda_band_us: tuple[float, float]
    raw: dict[str, Any]

    def at(self, target: str, clock_mhz: float) -> TargetEstimates | None:
        """The entry of ``target`` at ``clock_mhz`` (None: not estimated)."""
        return next(
            (t for t in self.targets if t.target == target and abs(t.clock_mhz - clock_mhz) < 1e-6), None
        )


def _estimate_record(d: dict[str, Any]) -> EstimateRecord:
    cfg = HlsConfig(strategy=d["strategy"], reuse_factor=int(d["reuse_factor"]), static=bool(d["static"]))
    return EstimateRecord(
        str(d["target"]), str(d["part"]), float(d["clock_ns"]), cfg, int(d["latency_cycles"]),
        float(d["latency_us"]), {k: int(v) for k, v in d["usage"].items()},
        {k: float(v) for k, v in d["utilisation"].items()}, bool(d["fits"]), bool(d["synthesisable"]),
        float(d["peak_utilisation"]), d,
    )  # fmt: skip


def _target_estimates(d: dict[str, Any]) -> TargetEstimates:
    return TargetEstimates(
        str(d["target"]), str(d["part"]), float(d["clock_ns"]), _estimate_record(d["rf1"]),
        tuple(_estimate_record(c) for c in d["candidates"]),
    )  # fmt: skip


def read_estimates(path: Path) -> Estimates:
    """The ``estimate.json`` in hls project folder ``path`` (or the file itself); one QlstmError
    line when it is missing, corrupt or not a qlstm estimate.json."""
    path = Path(path)
    where = path / ESTIMATE_FILE if path.is_dir() else path
    m = read_json(where)
    if m.get("format") != ESTIMATE_FORMAT:
        raise QlstmError(f"{where}: not a qlstm estimate.json (format {m.get('format')!r})")
    try:
        k = m["khoda"]
        return Estimates(
            where, str(m["model_fingerprint"]), str(m["weights_sha256"]), tuple(_target_estimates(t) for t in m["targets"]),
            _target_estimates(m["paper_model"]), str(m["paper_model"]["architecture"]),
            _estimate_record(k["estimate"]), (float(k["band_us"][0]), float(k["band_us"][1])), m,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise QlstmError(f"{where}: missing or bad field {exc}") from None


# ----------------------------------------------------------------------------- trace predictions
def save_trace_predictions(path: Path, preds: dict[str, np.ndarray]) -> None:
    """Each backend's (n, k) predictions on the quench trace's windows, in the given order."""
    names = list(preds)
    arrays = {f"p{i}": np.asarray(v, dtype=np.float64) for i, v in enumerate(preds.values())}
    buf = io.BytesIO()
    np.savez(buf, names=np.array(names, dtype=str), **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_trace_predictions(path: Path) -> dict[str, np.ndarray]:
    """``name -> (n, k)`` predictions written by :func:`save_trace_predictions`; one QlstmError
    line for a missing or corrupt file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {str(n): z[f"p{i}"] for i, n in enumerate(z["names"])}
    except Exception as exc:  # OSError, KeyError, BadZipFile, ValueError ...
        raise QlstmError(f"{path}: not a readable {TRACE_PREDICTIONS_FILE} ({type(exc).__name__})") from None


# ----------------------------------------------------------------------------- rtl and detect
RTL_FILE = "rtl.json"
DETECTION_FILE = "detection.json"


def rtl_verdict(sim: dict[str, Any]) -> str:
    """The verdict of an RTL simulation against firmware_sim, from ``rtl.json`` or the figures of
    ``qlstm.rtl.api.simulate``: the network's outputs (``mismatches`` windows differing) and,
    with the alarm, the alarm apart (``alarm.mismatches``): an alarm that differs does not make
    the network's outputs "NOT bit-exact (0 windows differ)"."""
    bad = int(sim.get("mismatches") or 0)
    al = sim.get("alarm") if isinstance(sim.get("alarm"), dict) else None
    bad_al = int(al.get("mismatches") or 0) if al else 0
    if bad == 0 and not bad_al and sim.get("bit_exact") is False:
        return "NOT bit-exact"
    net = "bit-exact" if bad == 0 else f"NOT bit-exact ({bad} windows differ)"
    if not bad_al:
        return net
    assert al is not None
    of = f" of {al['windows']:,}" if al.get("windows") else ""
    if bad == 0:
        return f"the network's outputs bit-exact, the alarm NOT bit-exact (differs on {bad_al:,}{of} windows)"
    return f"{net}; the alarm differs on {bad_al:,}{of} windows"


@dataclass(frozen=True)
class RtlSummary:
    """``rtl.json`` of an RTL folder (:mod:`rtl.api`): cycles *measured in RTL simulation*
    (None without a simulation), resources *after Yosys synthesis, not placed* (None without
    synthesis), the clock *assumed*."""

    path: Path
    target: str | None
    part: str
    clock_ns: float
    pipeline: float
    cycles_per_step: int
    cycles_by_construction: int
    cycles_min: int | None
    cycles_max: int | None
    latency_us: float | None
    bit_exact: bool | None
    windows: int
    mismatches: int | None
    lut: int | None
    ff: int | None
    dsp: int | None
    bram18: int | None
    carry: int | None
    logic_depth: int | None
    capacity: dict[str, int] | None
    utilisation: dict[str, float] | None
    fits: bool | None
    synth_family: str | None
    seconds: dict[str, float]
    raw: dict[str, Any]

    @property
    def budget_us(self) -> float | None:
        """The RTL's own latency budget (``qlstm rtl --budget-us``, ``rtl.budget_us`` of ``qlstm
        run``), which chose its cutoff; None when it had none."""
        v = self.raw.get("budget_us")
        return None if v is None else float(v)

    @property
    def budget_met(self) -> bool | None:
        """rtl.json's verdict on :attr:`budget_us` (measured cycles x assumed clock); None without
        a budget or without a simulation."""
        v = self.raw.get("budget_met")
        return None if v is None else bool(v)


def read_rtl(path: Path) -> RtlSummary:
    """The ``rtl.json`` in folder ``path`` (or the file itself); one QlstmError line when it is
    missing, corrupt or not an rtl.json."""
    path = Path(path)
    where = path / RTL_FILE if path.is_dir() else path
    m = read_json(where)
    if m.get("format") != "qlstm-rtl/1":
        raise QlstmError(f"{where}: not a qlstm rtl.json (format {m.get('format')!r})")
    try:
        fam = m.get("resources_source")
        secs = {f"sim_{k}": float(v) for k, v in (m.get("sim_seconds") or {}).items()}
        if m.get("synth_seconds") is not None:
            secs["synth"] = float(m["synth_seconds"])
        return RtlSummary(
            where, m.get("target"), str(m["part"]), float(m["clock_ns"]), float(m["pipeline"]),
            int(m["cycles_per_step"]), int(m["cycles_by_construction"]), m.get("cycles_min"), m.get("cycles_max"),
            m.get("latency_us"), m.get("bit_exact"), int(m.get("windows", 0)), m.get("mismatches"),
            m.get("lut"), m.get("ff"), m.get("dsp"), m.get("bram18"), m.get("carry"), m.get("logic_depth"),
            m.get("capacity"), m.get("utilisation"), m.get("fits"),
            fam.split("-family ")[1].split(",")[0] if fam and "-family " in fam else None, secs, m,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise QlstmError(f"{where}: missing or bad field {exc}") from None


def check_rtl_model(
    rtl: RtlSummary, desc: ModelDescription, weights: dict[str, np.ndarray], qrun: Path
) -> None:
    """Refuse (one QlstmError line) an RTL folder that implements another model than ``desc`` and
    ``weights`` (the quantized run ``qrun``): rtl.json's ``model_fingerprint`` and
    ``weights_sha256``, or, for an rtl.json written before they existed, the folder's ``model/``
    (the description and weights it implements, :func:`qlstm.rtl.api.build`)."""
    from qlstm.io import weights_sha256

    m = rtl.raw
    if m.get("model_fingerprint") and m.get("weights_sha256"):
        theirs = (str(m["model_fingerprint"]), str(m["weights_sha256"]))
    else:
        folder = rtl.path.parent / "model"
        if not (folder / "model.json").is_file():
            raise QlstmError(
                f"{rtl.path}: names no model (no model_fingerprint, no model/ folder); cannot tell it implements {qrun}"
            )

        d2, w2 = description.load(folder)
        theirs = (d2.fingerprint(), weights_sha256(w2))
    if theirs != (desc.fingerprint(), weights_sha256(weights)):
        raise QlstmError(
            f"{rtl.path}: RTL of another model than {qrun} (description or weights differ); "
            f"pass the RTL folder built from {qrun}"
        )


@dataclass(frozen=True)
class DetectorScores:
    """One detector's scores on the held-out events (``detection.json``; simulated on the recording)."""

    detection_rate: float | None
    false_alarms_per_day: float | None
    median_lead_time_s: float | None
    precursors: int | None
    detected: int | None
    auc: float | None
    threshold: float | None


@dataclass(frozen=True)
class DetectionSummary:
    """``detection.json`` of a detect folder (:func:`qlstm.detect.run.write`) and its plots."""

    path: Path
    backend: str
    labelled: bool
    target_false_alarms_per_day: float
    evaluation_events: list[str]
    model: DetectorScores
    float: DetectorScores | None
    baselines: dict[str, DetectorScores]
    plots: dict[str, Path]
    raw: dict[str, Any]


def _scores(d: dict[str, Any]) -> DetectorScores:
    return DetectorScores(
        d.get("detection_rate"), d.get("false_alarms_per_day"), d.get("median_lead_time_s"),
        d.get("precursors"), d.get("detected"), d.get("auc"), d.get("threshold"),
    )  # fmt: skip


def read_detection(path: Path) -> DetectionSummary:
    """The ``detection.json`` in folder ``path`` and the plots beside it (timelines, roc,
    lead_times: those present); one QlstmError line when missing, corrupt or foreign."""
    path = Path(path)
    where = path / DETECTION_FILE if path.is_dir() else path
    m = read_json(where)
    if m.get("format") != "qlstm-detection/1":
        raise QlstmError(f"{where}: not a qlstm detection.json (format {m.get('format')!r})")
    try:
        plots = {n: where.parent / f"{n}.png" for n in ("timelines", "roc", "lead_times")}
        return DetectionSummary(
            where, str(m["backend"]), bool(m["labelled"]), float(m["target_false_alarms_per_day"]),
            list(m.get("evaluation_events", [])), _scores(m),
            _scores(m["float"]) if isinstance(m.get("float"), dict) else None,
            {k: _scores(v) for k, v in (m.get("baselines") or {}).items()},
            {n: p for n, p in plots.items() if p.is_file()}, m,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise QlstmError(f"{where}: missing or bad field {exc}") from None
