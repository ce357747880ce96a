"""One config file format for every command: a mapping of typed sections, one per stage.

FINN's ``DataflowBuildConfig`` is the model (one typed, documented config), with sections: each
section IS the stage's own frozen dataclass, so ``qlstm run`` and the stage's own command read the
same schema. ``qlstm train --config F`` reads ``F``'s ``train:`` section, ``qlstm quantize
--config F`` its ``quantize:`` section, ``qlstm hls --config F`` its ``hls:`` section, and
``qlstm run --config F`` all of them. The whole file is always validated: an unknown key anywhere
is an error naming it (``from_mapping``), and so is a key the other settings make unused
(:func:`check_ignored`, rules in :data:`IGNORED_UNLESS`, e.g. ``train.data.sine_samples`` without
``source: sine``); ``qlstm run`` also refuses a key it would ignore (:meth:`RunConfig.check_run`,
e.g. ``train.data.source``: the run trains on the data step's events).

=========  ==============================================  =====================================
section    type                                            read by
=========  ==============================================  =====================================
data       :class:`qlstm.data.SyntheticConfig`             ``qlstm run`` (data step)
train      :class:`qlstm.train.config.TrainConfig`         ``qlstm train``, run (train step)
quantize   :class:`QuantizeSection` (QuantizeConfig+types) ``qlstm quantize``, run
hls        :class:`qlstm.hls.config.HlsSection`            ``qlstm hls``, run
firmware   :class:`FirmwareSection`                        run (firmware check)
rtl        :class:`RtlSection`                             run (rtl step: da4ml, Verilator, Yosys)
detect     :class:`DetectSection`                          run (detect step: precursor alarms)
report     :class:`ReportSection`                          run (what the report compares)
=========  ==============================================  =====================================
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qlstm.config import from_mapping, read_yaml, to_mapping
from qlstm.data.synthetic import SyntheticConfig
from qlstm.errors import QlstmError
from qlstm.hls.config import HlsSection
from qlstm.quantize.policy import QuantizeConfig
from qlstm.train.config import DataConfig, ModelConfig, TrainConfig, TrainingConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "run_default.yaml"


@dataclass(frozen=True)
class QuantizeSection(QuantizeConfig):
    """The ``quantize:`` section: :class:`QuantizeConfig` plus forced types of named points."""

    #: force one point's type, e.g. ``{rnn0.state: "ap_fixed<12,3,AP_RND_CONV,AP_SAT>"}``
    types: dict[str, str] = field(default_factory=dict)

    def config(self) -> QuantizeConfig:
        """The plain :class:`QuantizeConfig` (what the quantize functions and config.yaml take)."""
        names = [f.name for f in dataclasses.fields(QuantizeConfig)]
        return QuantizeConfig(**{n: getattr(self, n) for n in names})


@dataclass(frozen=True)
class FirmwareSection:
    #: held-out test windows compared bit for bit: firmware_sim against the C simulation of the
    #: project the hls step generated
    windows: int = 500

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise QlstmError(f"firmware.windows={self.windows} must be >= 1")


@dataclass(frozen=True)
class RtlSection:
    """The ``rtl:`` section: RTL of the deployed quantized model for the hls step's target and
    clock (:mod:`rtl.api`, docs/rtl.md). Cycles are measured in Verilator simulation, resources
    after Yosys synthesis (not placed), the clock assumed."""

    #: run the rtl step at all (false: the report omits the RTL section with a note)
    enabled: bool = True
    #: da4ml latency cutoff (pipeline depth); ignored when ``budget_us`` is given
    pipeline: float = 4.0
    #: choose the cutoff that meets this latency, microseconds, with the fewest resources (da4ml
    #: estimate); null: use ``pipeline``
    budget_us: float | None = None
    #: held-out test windows simulated in Verilator and compared exactly with firmware_sim
    windows: int = 500
    #: Yosys synth_xilinx for the target's family (LUT/FF/DSP/BRAM18/CARRY, logic depth); with the
    #: native pyosys wheel and the classic ABC mapper it took 197 CPU-s on LSTM(32) (docs/rtl.md,
    #: 2026-11-30; the WebAssembly wheel's ABC9 took > 16 CPU-min)
    synth: bool = True
    #: parallel compile jobs for the Verilator build
    jobs: int = 2

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise QlstmError(f"rtl.windows={self.windows} must be >= 1")
        if not self.pipeline > 0:
            raise QlstmError(f"rtl.pipeline={self.pipeline} must be > 0")
        if self.budget_us is not None and not self.budget_us > 0:
            raise QlstmError(f"rtl.budget_us={self.budget_us} must be > 0")
        if self.jobs < 1:
            raise QlstmError(f"rtl.jobs={self.jobs} must be >= 1")


@dataclass(frozen=True)
class DetectSection:
    """The ``detect:`` section: quench-precursor alarms from the prediction residuals of the
    deployed quantized run (firmware backend, which also scores the float model) and the
    baselines, calibrated on the training events (:mod:`qlstm.detect`, docs/detect.md)."""

    #: run the detect step (needs the data step's anomaly labels, which synthetic data carries)
    enabled: bool = True
    #: target false-alarm rate the thresholds are calibrated for, per day of normal running
    false_alarms_per_day: float = 1.0
    #: alarm score: "ewma" or "cusum" (qlstm.detect.alarm)
    score: str = "ewma"
    #: samples at or above the threshold before the alarm fires (1-255)
    min_run: int = 3
    #: write the timeline, ROC and lead-time plots
    plots: bool = True

    def __post_init__(self) -> None:
        if not self.false_alarms_per_day > 0:
            raise QlstmError(f"detect.false_alarms_per_day={self.false_alarms_per_day} must be > 0")
        from qlstm.detect.alarm import AlarmRule

        AlarmRule(score=self.score, min_run=self.min_run)  # validates score and min_run (one line)


@dataclass(frozen=True)
class ReportSection:
    #: latency budget of the estimator's search, microseconds
    budget_us: float = 1.0
    #: also quantize with these methods (at quantize.bits) for the report's PTQ-vs-QAT comparison
    compare_methods: tuple[Literal["ptq", "qat"], ...] = ("ptq",)
    #: widths of the sweep for the accuracy-per-bit-width table (empty: no sweep)
    sweep: tuple[int, ...] = (6, 8, 12, 16)
    #: methods of the sweep at each width (QAT costs ~50 s per width on 2 cores; PTQ seconds)
    sweep_methods: tuple[Literal["ptq", "qat"], ...] = ("ptq",)

    def __post_init__(self) -> None:
        if not self.budget_us > 0:
            raise QlstmError(f"report.budget_us={self.budget_us} must be > 0")


#: The run's defaults when no config file is found (configs/run_default.yaml states the same).
def _default_train() -> TrainConfig:
    return TrainConfig(
        history=16,
        horizon=4,
        data=DataConfig(max_train_windows=40000, max_eval_windows=10000),
        model=ModelConfig(cell="lstm", layers=(32,)),
        training=TrainingConfig(epochs=30, batch_size=64, lr=0.003, patience=30, standardise="both"),
    )


@dataclass(frozen=True)
class RunConfig:
    """Every setting of ``qlstm run``, one typed section per stage (see the module docstring)."""

    data: SyntheticConfig = field(default_factory=lambda: SyntheticConfig(n_events=20, duration_s=3600.0))
    train: TrainConfig = field(default_factory=_default_train)
    quantize: QuantizeSection = field(
        default_factory=lambda: QuantizeSection(
            method="qat", qat=dataclasses.replace(QuantizeConfig().qat, epochs=3)
        )
    )
    hls: HlsSection = field(default_factory=lambda: HlsSection(target="zynq7045", clock_ns=5.0, csim=True))
    firmware: FirmwareSection = field(default_factory=FirmwareSection)
    rtl: RtlSection = field(default_factory=RtlSection)
    detect: DetectSection = field(default_factory=DetectSection)
    report: ReportSection = field(default_factory=ReportSection)

    def check_run(self) -> None:
        """What ``qlstm run`` would otherwise ignore or trip over later: one QlstmError line."""
        if self.data.n_events < 3:
            raise QlstmError(f"data.n_events={self.data.n_events}: need at least 3 events (train, val, test)")
        if self.train.data.source != "file":
            raise QlstmError(
                f"train.data.source={self.train.data.source!r} would be ignored: the run trains on the data "
                "step's events; remove the key"
            )
        missing = [c for c in self.train.data.channels if c not in self.data.channels]
        if missing:
            raise QlstmError(f"train.data.channels {missing} are not generated by data.channels")
        if self.report.sweep and not self.report.sweep_methods:
            raise QlstmError("report.sweep_methods is empty: name ptq and/or qat, or set report.sweep: []")
        if self.quantize.types and self.report.sweep:
            raise QlstmError(
                "quantize.types cannot be combined with report.sweep (the sweep chooses its own types)"
            )


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def _uses_qat(c: RunConfig) -> str | None:
    if c.quantize.method == "qat" or "qat" in c.report.compare_methods or c.report.sweep:
        return None
    return (
        "nothing uses QAT (quantize.method is ptq, report.compare_methods has no qat, report.sweep is empty)"
    )


def _spikes(c: RunConfig) -> str | None:
    return None if "spikes" in c.data.precursor_kinds else "data.precursor_kinds has no 'spikes'"


#: Keys a config file may set that are used only under some other settings: (dotted key, whether
#: the rule holds for any reader of the file or only for ``qlstm run``, why it would be ignored or
#: None when it is used). A key set in the file (its sub-keys included) whose rule gives a reason is
#: refused in one line naming it (:func:`check_ignored`); keys left at their defaults never are.
IGNORED_UNLESS: tuple[tuple[str, str, Any], ...] = (
    ("train.data.sine_samples", "file", lambda c: None if c.train.data.source == "sine" else "train.data.source is not sine"),
    ("train.data.sine_t_max", "file", lambda c: None if c.train.data.source == "sine" else "train.data.source is not sine"),
    ("train.training.head_ridge", "file", lambda c: None if c.train.training.head_init == "lstsq" else "train.training.head_init is not lstsq"),
    ("train.model.dropout", "file", lambda c: "dropout acts between recurrent layers and train.model.layers has one" if c.train.model.dropout > 0 and len(c.train.model.layers) == 1 else None),
    ("quantize.qat", "file", _uses_qat),
    ("quantize.max_accum_bits", "file", lambda c: None if c.quantize.accum_bits is None else "quantize.accum_bits fixes the accumulator width"),
    ("data.precursor_spike_rate_per_s", "file", _spikes),
    ("data.precursor_spike_v", "file", _spikes),
    ("data.precursor_spike_decay_s", "file", _spikes),
    ("hls.csim_windows", "run", lambda c: None if c.hls.csim else "hls.csim is false"),
)  # fmt: skip


def _set_keys(data: Any, prefix: str = "") -> list[str]:
    """The dotted keys set in the mapping ``data`` (every level)."""
    if not isinstance(data, dict):
        return []
    out = []
    for k, v in data.items():
        out.append(f"{prefix}{k}")
        out += _set_keys(v, f"{prefix}{k}.")
    return out


def _value(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return to_mapping(obj)


def check_ignored(data: dict[str, Any], cfg: RunConfig, run: bool) -> None:
    """Refuse a key set in ``data`` to other than its default that ``cfg``'s other settings make
    unused (see :data:`IGNORED_UNLESS`; ``run``: also the rules of ``qlstm run``; a key at its
    default, e.g. a run folder's full config.yaml, is harmless); raises one QlstmError line."""
    keys = _set_keys(data)
    hints = typing.get_type_hints(RunConfig)
    for key, scope, why_ignored in IGNORED_UNLESS:
        if (scope == "run" and not run) or key not in keys:
            continue
        section, rest = key.split(".", 1)
        if _value(cfg, key) != _value(hints[section](), rest) and (why := why_ignored(cfg)):
            raise QlstmError(f"{key} would be ignored: {why}; remove the key")


def parse(data: dict[str, Any], where: str) -> RunConfig:
    """A :class:`RunConfig` from a mapping; unknown keys (at any depth) are one QlstmError line."""
    cfg = from_mapping(RunConfig, data, where)
    try:
        cfg.train.architecture()  # the layer sizes, dropout and L, k against the description's limits
    except QlstmError as exc:
        raise QlstmError(f"{where}: train: {exc}") from None
    try:
        check_ignored(data, cfg, run=False)
    except QlstmError as exc:
        raise QlstmError(f"{where}: {exc}") from None
    return cfg


def load_run_config(path: Path | None) -> RunConfig:
    """``path``, or configs/run_default.yaml when there (a source checkout), else the built-in
    defaults, which are the same settings."""
    if path is None and not DEFAULT_CONFIG.is_file():
        RunConfig().check_run()
        return RunConfig()
    path = DEFAULT_CONFIG if path is None else Path(path)
    data = read_yaml(path)
    cfg = parse(data, str(path))
    try:
        cfg.check_run()
        check_ignored(data, cfg, run=True)
    except QlstmError as exc:
        raise QlstmError(f"{path}: {exc}") from None
    return cfg


def _section_fields(name: str) -> set[str]:
    """The key names section ``name`` accepts (its dataclass fields)."""
    typ = type(getattr(RunConfig(), name))
    return {f.name for f in dataclasses.fields(typ)} if dataclasses.is_dataclass(typ) else set()


def read_section(path: Path, name: str) -> Any:
    """Section ``name`` of config file ``path``, typed; the whole file is validated first.

    Raises QlstmError when the file is missing or invalid, or has no ``name:`` section.
    """
    if name not in SECTIONS:
        raise RuntimeError(f"unknown section {name!r}")
    path = Path(path)
    data = read_yaml(path)
    if name not in data:
        fields = _section_fields(name)
        if isinstance(data, dict) and data and set(data) <= fields:
            # a bare section (an older layout): say where its keys go, do not guess
            raise QlstmError(
                f"{path}: no `{name}:` section; the keys {', '.join(data)} are `{name}:` settings: "
                f"indent them under a `{name}:` line"
            )
        raise QlstmError(f"{path}: no `{name}:` section (sections: {', '.join(SECTIONS)})")
    return getattr(parse(data, str(path)), name)
