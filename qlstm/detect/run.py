"""``qlstm.detect.run``: quench-precursor detection from a run's prediction residuals, scored.

Pipeline (docs/detect.md): load the recording and its anomaly windows; split its events into
calibration events (the run's training and validation events, from the run's description) and
evaluation events (all others: the held-out ones); predict every sample's ``k`` forecasts with the
chosen backend and with the persistence and linear-AR baselines; turn residuals into the alarm
score (:mod:`.alarm`); set each detector's threshold on the calibration events' normal running
for the target false-alarm rate; score the evaluation events (:mod:`.evaluate`). A plain voltage
threshold (``|U_res|`` with the same run-length rule) is calibrated and scored the same way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description
from qlstm.data.events import EventSet
from qlstm.detect.alarm import AlarmRule, alarm_fixed, alarm_float
from qlstm.detect.evaluate import EventTrack, calibrate, roc, score_at
from qlstm.detect.labels import QUENCH_WINDOW_S, Labels, resolve_labels, window_indices
from qlstm.errors import QlstmError

log = logging.getLogger(__name__)

BACKENDS = ("float", "firmware", "rtl")
BASELINES = ("persistence", "linear_ar", "voltage_threshold")


@dataclass(frozen=True)
class DetectConfig:
    """Everything ``detect`` chooses besides the run and the data."""

    rule: AlarmRule = AlarmRule()
    false_alarms_per_day: float = 1.0  #: target rate the thresholds are calibrated for
    quench_window_s: float = QUENCH_WINDOW_S  #: anomaly window before a bare quench marker, s
    cusum_factor: float = 2.0  #: CUSUM drift kappa = factor x median combined residual (normal running)
    clip_factor: float = 3.0  #: clip = factor x median combined residual (normal running); 0: no clip
    backend: str = "float"


@dataclass
class DetectionResult:
    """All figures of one ``detect`` run (``to_json`` is the ``detection.json`` schema)."""

    backend: str
    config: DetectConfig
    labels_source: str
    calibration_events: list[str]
    evaluation_events: list[str]
    detectors: dict[str, dict[str, Any]]  # "model", then BASELINES; and "float" with --backend firmware
    labelled: bool
    run_dir: str = ""
    data: str = ""
    tracks: dict[str, list[EventTrack]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        def brief(d: dict[str, Any]) -> dict[str, Any]:
            keep = (
                "detection_rate", "false_alarms_per_day", "false_alarms_per_day_upper95", "median_lead_time_s",
                "precursors", "detected", "false_alarms", "normal_hours", "lead_times_s", "threshold", "auc",
                "auc_calibration", "calibration", "alarms", "alarms_per_day", "kappa", "clip",
                "residual_rms_per_step", "alarm_types", "rtl",
            )  # fmt: skip
            out = {k: d[k] for k in keep if k in d}
            out["events"] = d.get("per_event", [])
            out["roc"] = (
                {k: d["roc"][k] for k in ("false_alarms_per_day", "detection_rate")} if d.get("roc") else None
            )
            return out

        m = brief(self.detectors["model"])
        figures = "simulated: detectors run on the recording (synthetic unless a real file is given)"
        if self.backend == "rtl":
            figures += (
                "; the model's forecasts, scores and alarm bits are the generated RTL's in RTL simulation "
                "(Verilator), checked equal to firmware_sim's alarm"
            )
        out = {
            "format": "qlstm-detection/1",
            "figures": figures,
            "run_dir": self.run_dir,
            "data": self.data,
            "backend": self.backend,
            "labelled": self.labelled,
            "labels_source": self.labels_source,
            "rule": asdict(self.config.rule),
            "target_false_alarms_per_day": self.config.false_alarms_per_day,
            "calibration_events": self.calibration_events,
            "evaluation_events": self.evaluation_events,
            **m,
            "baselines": {b: brief(self.detectors[b]) for b in BASELINES if b in self.detectors},
        }
        if "float" in self.detectors:
            f = brief(self.detectors["float"])
            out["float"] = f
            out["float_vs_firmware"] = self.detectors["model"].get("agreement", {})
        return out


# ====================================================================== forecasts per sample
def _event_windows(es: EventSet, norm, history: int):
    """Every history window of every event (s = 0 .. T-L-1) and each event's normalised target."""
    xs, zs = [], []
    for e in es.events:
        z = norm.apply(e.x).astype(np.float32)
        if len(z) <= history:
            raise QlstmError(
                f"{es.source}: event {e.name!r} has {len(z)} samples; detection needs more than L={history}"
            )
        v = np.lib.stride_tricks.sliding_window_view(z, history, axis=0)[: len(z) - history]  # (N, C, L)
        xs.append(np.ascontiguousarray(np.moveaxis(v, -1, 1)))
        zs.append(z[:, norm.target_channel].astype(np.float64))
    return xs, zs


def align(pred: np.ndarray, n_samples: int, history: int) -> np.ndarray:
    """(N, k) forecasts of windows s = 0..N-1 (window s predicts samples s+L .. s+L+k-1) ->
    (T, k): entry [t, j] is the forecast of sample t made j+1 steps ahead (NaN if none)."""
    n, k = pred.shape
    out = np.full((n_samples, k), np.nan)
    for j in range(k):
        t = np.arange(n) + history + j
        ok = t < n_samples
        out[t[ok], j] = pred[ok, j]
    return out


def _predict_all(fn, xs: list[np.ndarray], horizon: int) -> list[np.ndarray]:
    x = np.concatenate(xs).astype(np.float64)
    y = np.asarray(fn(x), dtype=np.float64)
    if y.shape != (len(x), horizon):
        raise RuntimeError(f"predictor returned {y.shape}, expected {(len(x), horizon)}")
    return np.split(y, np.cumsum([len(a) for a in xs])[:-1])


# ====================================================================== the detector
def _tracks(es: EventSet, labels: Labels, scores: list[np.ndarray]) -> list[EventTrack]:
    return [
        EventTrack(e.name, e.t, s, window_indices(e.t, labels.windows.get(e.name, ())), e.quench_index)
        for e, s in zip(es.events, scores, strict=True)
    ]


def _normal_median(a_list: list[np.ndarray], tracks: list[EventTrack]) -> float:
    """Median of the combined residual over the normal running of ``tracks``."""
    vals = np.concatenate([a[tr.normal_mask()] for a, tr in zip(a_list, tracks, strict=True)])
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else 0.0


def _detector(
    name: str,
    cal: tuple[EventSet, Labels, list[np.ndarray]],
    ev: tuple[EventSet, Labels, list[np.ndarray]],
    score_fn,
    cfg: DetectConfig,
    labelled: bool,
    lsb: float | None = None,
) -> tuple[dict[str, Any], list[EventTrack]]:
    """Calibrate ``score_fn(per-event input, kappa) -> (score, extra)`` on ``cal`` and score ``ev``."""
    rule = cfg.rule
    kappa, clip = 0.0, float("inf")
    if name != "voltage_threshold" and (rule.score == "cusum" or cfg.clip_factor > 0):
        a_cal = [score_fn(x, None)[1] for x in cal[2]]
        med = _normal_median(a_cal, _tracks(cal[0], cal[1], a_cal))  # of the unclipped combined residual
        kappa = cfg.cusum_factor * med if rule.score == "cusum" else 0.0
        clip = cfg.clip_factor * med if cfg.clip_factor > 0 else float("inf")
    par = (kappa, clip)
    cal_scores = [score_fn(x, par)[0] for x in cal[2]]
    cal_tracks = _tracks(cal[0], cal[1], cal_scores)
    c = calibrate(cal_tracks, cfg.false_alarms_per_day, rule.min_run, lsb=lsb)
    ev_scores = [score_fn(x, par)[0] for x in ev[2]]
    tracks = _tracks(ev[0], ev[1], ev_scores)
    res = score_at(tracks, c["threshold"], rule.min_run)
    res["calibration"] = c
    res["kappa"] = kappa
    res["clip"] = clip if np.isfinite(clip) else None
    if labelled:
        res["roc"] = roc(tracks, rule.min_run)
        res["auc"] = res["roc"]["auc"]
        if any(t.windows for t in cal_tracks):
            res["auc_calibration"] = roc(cal_tracks, rule.min_run)["auc"]
    else:
        hours = sum(float(np.isfinite(t.score).sum()) * (t.t[1] - t.t[0]) / 3600.0 for t in tracks)
        res["alarms_per_day"] = res["alarms"] / hours * 24.0 if hours > 0 else None
        for k in ("detection_rate", "median_lead_time_s"):
            res[k] = None
        res["auc"] = None
    return res, tracks


def _residual_score(rule: AlarmRule):
    def fn(r: np.ndarray, par: tuple[float, float] | None):
        use = rule if par is None else replace(rule, cusum_drift=par[0], clip=par[1])
        out = alarm_float(r, use, np.inf)
        return out["score"], out["a"]

    return fn


def _fixed_constants(par: tuple[float, float] | None, lsb: float) -> tuple[int, int | None]:
    """kappa and clip as score-type mantissas (floor: the constants are on the grid below)."""
    if par is None:
        return 0, None
    kappa, clip = par
    return int(np.floor(kappa / lsb)), (int(np.floor(clip / lsb)) if np.isfinite(clip) else None)


def _fixed_score(rule: AlarmRule, types, in_t, res_t):
    """Score of the firmware alarm (float values of exact mantissas) from (z, P) of one event."""
    lsb = types.score.lsb

    def fn(zp: tuple[np.ndarray, np.ndarray], par: tuple[float, float] | None):
        z, p = zp
        valid = np.isfinite(p).all(axis=1)
        y_m = in_t.to_int(z)
        p_m = res_t.to_int(np.nan_to_num(p))
        k_m, c_m = _fixed_constants(par, lsb)
        out = alarm_fixed(
            y_m, in_t.frac, p_m, res_t.frac, valid, types, rule, k_m, types.threshold.max_int + 1, c_m
        )
        score = np.where(valid, out["score"] * lsb, np.nan)
        a = np.where(valid, out["a"] * lsb, np.nan)
        return score, a

    return fn


def detect(
    run_dir: Path,
    data: Path,
    labels_file: Path | None = None,
    calibration_data: Path | None = None,
    cfg: DetectConfig = DetectConfig(),
    progress: bool = False,
) -> DetectionResult:
    """Detect precursors in ``data`` with the run's model (``cfg.backend``) and the baselines.

    Raises :class:`QlstmError` for a missing/foreign run, an unreadable recording or labels file,
    bad labels, or no calibration events.
    """
    from qlstm.data import load_events, make_windows
    from qlstm.data.baselines import LinearAR
    from qlstm.predict import get_backend

    if cfg.backend not in BACKENDS:
        raise QlstmError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    run_dir, data = Path(run_dir), Path(data)
    desc, _ = description.load(run_dir)
    if cfg.backend in ("firmware", "rtl") and not desc.quantized:
        raise QlstmError(
            f"{run_dir}: not a quantized run; --backend {cfg.backend} needs the output of `qlstm quantize`"
        )
    a, norm = desc.architecture, desc.normalisation
    channels = list(norm.channel_names)
    es = load_events(data, channels=channels)
    labels = resolve_labels(es, labels_file, cfg.quench_window_s)
    split = desc.data.get("split", {})
    fitted = set(split.get("train", [])) | set(split.get("val", []))
    if calibration_data is None and desc.data.get("path") and Path(desc.data["path"]).is_file():
        calibration_data = Path(desc.data["path"])
    if calibration_data is not None and Path(calibration_data).resolve() != data.resolve():
        ces = load_events(calibration_data, channels=channels)
        clab = resolve_labels(ces, None, cfg.quench_window_s)
    else:
        ces, clab = es, labels
    cal_idx = [i for i, e in enumerate(ces.events) if e.name in fitted] if fitted else list(range(len(ces)))
    if not cal_idx:
        raise QlstmError(
            f"no calibration events: none of the run's training events is in {calibration_data or data}; "
            "pass --calibration FILE with normal running of this machine"
        )
    # An event is held out unless it IS a calibration event (same name and the same samples):
    # another recording may reuse event names.
    cal_by_name = {ces.events[i].name: ces.events[i] for i in cal_idx}

    def used(e) -> bool:
        c = cal_by_name.get(e.name)
        return (
            c is not None and c.x.shape == e.x.shape and np.array_equal(c.x, e.x) and np.array_equal(c.t, e.t)
        )

    ev_idx = [i for i, e in enumerate(es.events) if not used(e)]
    if not ev_idx:
        raise QlstmError(
            f"--data {data}: every event was used to train the run; nothing held out to evaluate"
        )
    cal_es, ev_es = ces.subset(cal_idx), es.subset(ev_idx)
    labelled = labels.any
    log.info("calibration: %d events, evaluation: %d events", len(cal_es), len(ev_es))

    L, k = a.history, a.horizon
    cx, cz = _event_windows(cal_es, norm, L)
    ex, ez = _event_windows(ev_es, norm, L)

    def forecasts(fn):
        cp = [align(p, len(z), L) for p, z in zip(_predict_all(fn, cx, k), cz, strict=True)]
        ep = [align(p, len(z), L) for p, z in zip(_predict_all(fn, ex, k), ez, strict=True)]
        return cp, ep

    detectors: dict[str, dict[str, Any]] = {}
    tracks: dict[str, list[EventTrack]] = {}
    rule = cfg.rule

    def add(name, cal_in, ev_in, fn, lsb=None):
        res, tr = _detector(name, (cal_es, clab, cal_in), (ev_es, labels, ev_in), fn, cfg, labelled, lsb)
        if name != "voltage_threshold":  # per step ahead: residual RMS in normal running and in the windows
            res["residual_rms_per_step"] = _per_step_rms(ev_in, tr)
        detectors[name], tracks[name] = res, tr

    steps = ["model"] + (["float"] if cfg.backend != "float" else []) + list(BASELINES)
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(steps), desc="detect", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None

    def tick():
        if bar is not None:
            bar.update(1)

    resid = _residual_score(rule)
    rtl = None
    if cfg.backend == "rtl":  # the RTL with the alarm: forecasts of every event as one stream
        rtl = _RtlStreams(run_dir, desc, rule, cal_es, ev_es)
        cp, ep = rtl.forecasts(cz, ez)
    else:
        backend_fn = get_backend(cfg.backend)
        cp, ep = forecasts(lambda x: backend_fn(run_dir, x))
    if cfg.backend in ("firmware", "rtl"):
        q = desc.quantization
        types = q.alarm_types()
        fx = _fixed_score(rule, types, q.input, q.output)
        add("model", list(zip(cz, cp, strict=True)), list(zip(ez, ep, strict=True)), fx, types.score.lsb)
        detectors["model"]["alarm_types"] = {k2: v.describe() for k2, v in asdict_types(types).items()}
        _check_fixed_alarm(
            detectors["model"], tracks["model"], list(zip(ez, ep, strict=True)), types, q, rule
        )
        if rtl is not None:  # the held-out events again, the alarm at the calibrated constants
            detectors["model"]["rtl"] = rtl.alarms(detectors["model"], tracks["model"], types, rule)
        tick()
        fp_fn = get_backend("float")
        cpf, epf = forecasts(lambda x: fp_fn(run_dir, x))
        add("float", [z[:, None] - p for z, p in zip(cz, cpf, strict=True)],
            [z[:, None] - p for z, p in zip(ez, epf, strict=True)], resid)  # fmt: skip
        detectors["model"]["agreement"] = _agreement(tracks["float"], tracks["model"], detectors, rule)
        tick()
    else:
        add("model", [z[:, None] - p for z, p in zip(cz, cp, strict=True)],
            [z[:, None] - p for z, p in zip(ez, ep, strict=True)], resid)  # fmt: skip
        tick()
    # persistence: the last observed value for every step ahead
    cp, ep = forecasts(lambda x: np.repeat(x[:, -1, norm.target_channel][:, None], k, axis=1))
    add("persistence", [z[:, None] - p for z, p in zip(cz, cp, strict=True)],
        [z[:, None] - p for z, p in zip(ez, ep, strict=True)], resid)  # fmt: skip
    tick()
    ar = LinearAR.fit(make_windows(cal_es, norm, history=L, horizon=k, stride=1))
    cp, ep = forecasts(ar.predict)
    add("linear_ar", [z[:, None] - p for z, p in zip(cz, cp, strict=True)],
        [z[:, None] - p for z, p in zip(ez, ep, strict=True)], resid)  # fmt: skip
    tick()
    tgt = norm.target_channel

    def volt(e_x, kappa):
        s = np.abs(e_x)
        s[: L + k - 1] = np.nan  # scored over the same samples as the residual detectors
        return s, s

    add(
        "voltage_threshold",
        [e.x[:, tgt].copy() for e in cal_es.events],
        [e.x[:, tgt].copy() for e in ev_es.events],
        volt,
    )
    tick()
    if bar is not None:
        bar.close()
    return DetectionResult(
        backend=cfg.backend,
        config=cfg,
        labels_source=labels.source,
        calibration_events=list(cal_es.names),
        evaluation_events=list(ev_es.names),
        detectors=detectors,
        labelled=labelled,
        run_dir=str(run_dir),
        data=str(data),
        tracks=tracks,
    )


class _RtlStreams:
    """``detect --backend rtl``: the run's generated RTL with the alarm (:mod:`qlstm.rtl.alarm`) in
    Verilator, each event's windows as one stream (``alarm_clear`` on its first window, one window
    more than the other backends so the event's last sample gets its alarm too)."""

    def __init__(self, run_dir: Path, desc, rule: AlarmRule, cal_es: EventSet, ev_es: EventSet) -> None:
        from qlstm.rtl import alarm as rtl_alarm

        self.run_dir, self.desc, self.rule = run_dir, desc, rule
        q = desc.quantization
        self.in_t, self.res_t = q.input, q.output
        self.L = desc.architecture.history
        norm = desc.normalisation
        self.cal_xm = [self._windows(e, norm, rtl_alarm) for e in cal_es.events]
        self.ev_xm = [self._windows(e, norm, rtl_alarm) for e in ev_es.events]
        self.ev_y: list[np.ndarray] = []

    def _windows(self, e, norm, rtl_alarm) -> np.ndarray:
        z = norm.apply(e.x).astype(np.float32)  # as the other backends' windows (_event_windows)
        return self.in_t.to_int(rtl_alarm.stream_windows(z, self.L).astype(np.float64))

    def _run(self, xms: list[np.ndarray], constants):
        from qlstm.rtl.backend import alarm_stream

        xm = np.concatenate(xms)
        clear = np.zeros(len(xm), dtype=bool)
        clear[np.cumsum([0] + [len(a) for a in xms[:-1]])] = True
        r = alarm_stream(self.run_dir, self.rule, xm, clear, constants)
        return r, np.cumsum([len(a) for a in xms])[:-1]

    def forecasts(self, cz: list[np.ndarray], ez: list[np.ndarray]):
        """Pass 1 (the alarm's constants do not matter yet): every window's forecasts, aligned."""
        from qlstm.rtl.alarm import Constants

        types = self.desc.quantization.alarm_types()
        c = Constants(types.threshold.max_int, types.score.max_int, 0, self.rule.min_run)
        r, cuts = self._run(self.cal_xm + self.ev_xm, c)
        self.cycles = r.cycles
        ys = np.split(r.y_m, cuts)
        n_cal = len(self.cal_xm)
        self.ev_y = ys[n_cal:]
        out = [align(self.res_t.to_float(y[:-1]), len(z), self.L) for y, z in zip(ys, cz + ez, strict=True)]
        return out[:n_cal], out[n_cal:]

    def alarms(self, res: dict[str, Any], tracks: list[EventTrack], types, rule: AlarmRule) -> dict[str, Any]:
        """Pass 2: the held-out events at the calibrated threshold, clip and drift. The RTL's
        score and alarm bits per sample must equal the scored firmware alarm's (else RuntimeError)."""
        from qlstm.detect.alarm import counter_alarm
        from qlstm.detect.evaluate import fire_indices
        from qlstm.rtl.alarm import Constants

        lsb = types.score.lsb
        theta_m = int(round(res["threshold"] / lsb))
        clip = res["clip"] if res["clip"] is not None else float("inf")
        kappa_m, clip_m = _fixed_constants((res["kappa"], clip), lsb)
        if theta_m > types.threshold.max_int:
            raise QlstmError(
                f"--backend rtl: the calibrated threshold {res['threshold']:g} exceeds {types.threshold.describe()}"
            )
        c = Constants(theta_m, types.score.max_int if clip_m is None else clip_m, kappa_m, rule.min_run)
        r, cuts = self._run(self.ev_xm, c)
        samples = firings = 0
        parts = (
            np.split(r.score, cuts),
            np.split(r.alarm, cuts),
            np.split(r.counter, cuts),
            np.split(r.y_m, cuts),
        )
        for tr, s, al, cnt, y, y1 in zip(tracks, *parts, self.ev_y, strict=True):
            if not np.array_equal(y, y1):
                raise RuntimeError(f"RTL forecasts of {tr.name} differ between two simulations")
            full = np.zeros(len(tr.score), dtype=np.int64)
            full[self.L - 1 :] = s
            ok = np.isfinite(tr.score)
            want = np.where(ok, np.round(np.nan_to_num(tr.score) / lsb), 0).astype(np.int64)
            if not np.array_equal(full, want):
                raise RuntimeError(f"RTL score of {tr.name} differs from firmware_sim's alarm")
            alarm = np.zeros(len(tr.score), dtype=bool)
            alarm[self.L - 1 :] = al
            counter = np.zeros(len(tr.score), dtype=np.int64)
            counter[self.L - 1 :] = cnt
            want_c, want_a = counter_alarm(
                np.nan_to_num(tr.score, nan=-np.inf) >= res["threshold"], rule.min_run, types.counter.max_int
            )
            if not (np.array_equal(counter, want_c) and np.array_equal(alarm, want_a)):
                raise RuntimeError(f"RTL alarm counter or bit of {tr.name} differs from firmware_sim's alarm")
            fired = np.flatnonzero(np.diff(np.concatenate([[0], alarm.astype(np.int8)])) == 1)
            expect = fire_indices(np.nan_to_num(tr.score, nan=-np.inf) >= res["threshold"], rule.min_run)
            if not np.array_equal(fired, expect):
                raise RuntimeError(f"RTL alarm of {tr.name} fires where firmware_sim's alarm does not")
            samples += len(tr.score)
            firings += len(fired)
        return {
            "source": "RTL simulation (Verilator) of the generated design with the alarm; every held-out sample's "
            "score, run-length counter, alarm bit and firing equal to firmware_sim's alarm (exact integer equality)",
            "samples": samples,
            "firings": firings,
            "windows_simulated": int(len(self.cycles) + len(r.cycles)),
            "constants": c.__dict__,
            "cycles_per_window": [int(self.cycles.min()), int(self.cycles.max())],
            "alarm_cycles": [int(r.alarm_cycles.min()), int(r.alarm_cycles.max())],
        }


def _per_step_rms(ev_in: list, tracks: list[EventTrack]) -> dict[str, list[float] | None]:
    """RMS of each step's residual (normalised units) over normal running and over the anomaly
    windows of the evaluated events; ``ev_in`` holds residuals (T, k) or (z, forecasts) pairs."""
    sq: dict[str, list[np.ndarray]] = {"normal": [], "anomaly": []}
    for x, tr in zip(ev_in, tracks, strict=True):
        r = x[0][:, None] - x[1] if isinstance(x, tuple) else x
        normal = tr.normal_mask()
        inside = np.zeros(len(r), dtype=bool)
        for a, b in tr.windows:
            inside[a : b + 1] = True
        ok = np.isfinite(r).all(axis=1)
        sq["normal"].append(r[normal & ok] ** 2)
        sq["anomaly"].append(r[inside & ok] ** 2)
    out: dict[str, list[float] | None] = {}
    for key, parts in sq.items():
        a = np.concatenate(parts) if parts else np.empty((0, 0))
        out[key] = np.sqrt(a.mean(axis=0)).tolist() if len(a) else None
    return out


def asdict_types(types) -> dict[str, Any]:
    return {k: getattr(types, k) for k in ("residual", "score", "threshold", "counter")}


def _check_fixed_alarm(res, tracks, ev_in, types, q, rule) -> None:
    """The firmware alarm at the calibrated threshold (integer compare and counter in
    :func:`alarm_fixed`) must fire exactly where the scored firings are (a consistency check)."""
    from qlstm.detect.evaluate import fire_indices

    theta_m = int(round(res["threshold"] / types.score.lsb))
    clip = res["clip"] if res["clip"] is not None else float("inf")
    kappa_m, clip_m = _fixed_constants((res["kappa"], clip), types.score.lsb)
    for (z, p), tr in zip(ev_in, tracks, strict=True):
        valid = np.isfinite(p).all(axis=1)
        out = alarm_fixed(
            q.input.to_int(z), q.input.frac, q.output.to_int(np.nan_to_num(p)), q.output.frac,
            valid, types, rule, kappa_m, theta_m, clip_m,
        )  # fmt: skip
        fired = np.flatnonzero(
            np.diff(np.concatenate([[0], (out["counter"] == rule.min_run).astype(np.int8)])) == 1
        )
        expect = fire_indices(np.nan_to_num(tr.score, nan=-np.inf) >= res["threshold"], rule.min_run)
        if not np.array_equal(fired, expect):
            raise RuntimeError(f"firmware alarm of {tr.name} disagrees with its scored firings")


def _agreement(float_tracks, fw_tracks, detectors, rule) -> dict[str, Any]:
    """Sample-level agreement of the float and firmware alarm states, each at its own threshold."""
    from qlstm.detect.alarm import counter_alarm

    same = total = 0
    for f, w in zip(float_tracks, fw_tracks, strict=True):
        ok = np.isfinite(f.score) & np.isfinite(w.score)
        af = counter_alarm(
            np.nan_to_num(f.score, nan=-np.inf) >= detectors["float"]["threshold"], rule.min_run
        )[1]
        aw = counter_alarm(
            np.nan_to_num(w.score, nan=-np.inf) >= detectors["model"]["threshold"], rule.min_run
        )[1]
        same += int((af[ok] == aw[ok]).sum())
        total += int(ok.sum())
    return {"samples": total, "alarm_state_agreement": same / total if total else None}


def write(
    result: DetectionResult, out: Path, overwrite: bool = False, plots: bool = True, inputs: tuple = ()
) -> Path:
    """``out/detection.json`` and the plots, written all or nothing (a staged folder); ``inputs``
    (run folder, recordings) may not overlap ``out`` (:func:`qlstm.io.check_out_folder`)."""
    from qlstm.io import staged_dir

    with staged_dir(Path(out), overwrite=overwrite, inputs=inputs) as tmp:
        (tmp / "detection.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        if plots:
            from qlstm.detect.plots import plot_all

            plot_all(result, tmp)
    return Path(out)
