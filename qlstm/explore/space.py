"""The design space of ``qlstm explore``: a YAML file of searched parameters and fixed settings.

Each searched key is either a list of choices (``cell: [lstm, gru]``) or an integer range
(``cells: {low: 8, high: 64, step: 8, log: false}``); a key that is absent takes the run default.
``settings:`` holds what is fixed for every trial (epochs, windows, NSGA-II population).
docs/explore.md documents the format; :data:`DEFAULT_SPACE` is the default space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qlstm.config import read_yaml
from qlstm.errors import QlstmError

DEFAULT_SPACE = Path(__file__).resolve().parent / "default_space.yaml"

#: searched keys: (kind, allowed choices or None). "int" keys take ranges or integer lists.
KEYS: dict[str, tuple[str, tuple[Any, ...] | None]] = {
    "cell": ("choice", ("lstm", "gru")),
    "cells": ("int", None),  # units of every recurrent layer
    "layers": ("int", None),  # stacked recurrent layers
    "history": ("int", None),  # L
    "bits": ("int", None),  # global width (quantize.bits)
    "input_bits": ("int", None),  # per point group widths (override bits for that group)
    "weight_bits": ("int", None),
    "bias_bits": ("int", None),
    "state_bits": ("int", None),
    "result_bits": ("int", None),
    "method": ("choice", ("ptq", "qat")),
    "reuse_factor": ("int", None),
    "strategy": ("choice", ("latency", "resource")),
    "pipeline_depth": ("float", None),  # da4ml latency cutoff of the RTL design (with --rtl only)
}

#: fixed settings of every trial, with their defaults
SETTINGS: dict[str, Any] = {
    "epochs": 10,  # training epochs of each trial's float model
    "qat_epochs": 2,  # QAT epochs (method qat)
    "max_train_windows": 20000,
    "max_eval_windows": 4000,  # validation and test windows (the firmware RMSE uses all test windows)
    "horizon": 4,  # k
    "batch_size": 64,
    "lr": 0.003,
    "seed": 0,  # training seed and the sampler's seed
    "population_size": 10,  # NSGA-II population
    "n_events": 20,  # synthetic data (ignored with --data)
    "duration_s": 3600.0,
    "rtl_windows": 20,  # held-out test windows simulated in Verilator per trial (--rtl)
}


@dataclass(frozen=True)
class Param:
    name: str
    choices: tuple[Any, ...] | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    log: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The point of ``trial`` (an optuna Trial): ``{name: value}`` of every searched key."""
        return {p.name: p.suggest(trial) for p in self.params}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def _param(name: str, spec: Any, where: str) -> Param:
    kind, allowed = KEYS[name]
    if isinstance(spec, list | tuple):
        if not spec:
            raise QlstmError(f"{where}: {name}: empty list of choices")
        vals = tuple(spec)
        if allowed is not None and any(v not in allowed for v in vals):
            bad = [v for v in vals if v not in allowed]
            raise QlstmError(f"{where}: {name}: unknown choice {bad[0]!r}; choose from {', '.join(allowed)}")
        if kind == "int" and any(isinstance(v, bool) or not isinstance(v, int) for v in vals):
            raise QlstmError(f"{where}: {name}: choices must be integers, got {list(vals)}")
        if kind == "float" and any(
            isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in vals
        ):
            raise QlstmError(f"{where}: {name}: choices must be positive numbers, got {list(vals)}")
        return Param(name, choices=vals)
    if isinstance(spec, dict):
        if kind != "int":
            raise QlstmError(f"{where}: {name}: give a list of choices, not a range")
        unknown = set(spec) - {"low", "high", "step", "log"}
        if unknown:
            raise QlstmError(
                f"{where}: {name}: unknown key {sorted(unknown)[0]!r} (keys: low, high, step, log)"
            )
        if "low" not in spec or "high" not in spec:
            raise QlstmError(f"{where}: {name}: a range needs integer low and high")
        low, high, step, log = spec["low"], spec["high"], spec.get("step", 1), spec.get("log", False)
        for k, v in (("low", low), ("high", high), ("step", step)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise QlstmError(f"{where}: {name}: {k} must be an integer, got {v!r}")
        if not isinstance(log, bool):
            raise QlstmError(f"{where}: {name}: log must be true or false, got {log!r}")
        if high < low or step < 1:
            raise QlstmError(f"{where}: {name}: empty range low={low} high={high} step={step}")
        if log and low < 1:
            raise QlstmError(f"{where}: {name}: a log range needs low >= 1")
        if log and step != 1:  # Optuna's suggest_int refuses it (a log scale has no constant step)
            raise QlstmError(f"{where}: {name}: a log range cannot have a step (give log or step, not both)")
        return Param(name, low=low, high=high, step=step, log=log)
    if kind == "int" and isinstance(spec, int) and not isinstance(spec, bool):
        return Param(name, choices=(spec,))
    if allowed is not None and spec in allowed:
        return Param(name, choices=(spec,))
    raise QlstmError(f"{where}: {name}: give a list of choices or {{low, high}}, got {spec!r}")


def parse_space(data: dict[str, Any], where: str, rtl: bool = False) -> Space:
    """A :class:`Space` from a mapping; an unknown key or an empty range is one QlstmError line.
    ``pipeline_depth`` (a list of da4ml latency cutoffs) needs ``rtl`` (``--rtl``)."""
    if not isinstance(data, dict):
        raise QlstmError(f"{where}: the space must be a mapping of parameters")
    params = []
    settings = dict(SETTINGS)
    for name, spec in data.items():
        if name == "settings":
            if not isinstance(spec, dict):
                raise QlstmError(f"{where}: settings must be a mapping")
            for k, v in spec.items():
                if k not in SETTINGS:
                    raise QlstmError(f"{where}: settings: unknown key {k!r} (keys: {', '.join(SETTINGS)})")
                settings[k] = _setting(k, v, where)
            continue
        if name not in KEYS:
            raise QlstmError(f"{where}: unknown key {name!r} (keys: {', '.join(KEYS)}, settings)")
        if name == "pipeline_depth" and not rtl:
            raise QlstmError(
                f"{where}: pipeline_depth is the RTL design's; give --rtl (Verilator builds: minutes per trial)"
            )
        if name == "pipeline_depth" and isinstance(spec, dict):
            raise QlstmError(f"{where}: pipeline_depth: give a list of latency cutoffs, not a range")
        params.append(_param(name, spec, where))
    if not params:
        raise QlstmError(f"{where}: the space searches nothing (no parameter keys)")
    space = Space(tuple(params), settings)
    check_limits(space, where)
    return space


def _setting(key: str, value: Any, where: str) -> Any:
    """A fixed setting, of the type of its default (an integer setting refuses 1.5 and "one")."""
    default = SETTINGS[key]
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise QlstmError(f"{where}: settings: {key} must be an integer, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise QlstmError(f"{where}: settings: {key} must be a number, got {value!r}")
    lowest = {"seed": 0, "population_size": 2, "rtl_windows": 1}.get(key)  # Optuna's, numpy's, one window
    if lowest is not None and value < lowest:
        raise QlstmError(f"{where}: settings: {key} {value} must be >= {lowest}")
    return value


def check_limits(space: Space, where: str) -> None:
    """Refuse a space whose settings or extreme values the stages would refuse in every trial.

    Builds the run config of each searched value at the ends of its range (every choice of a
    list) over the fixed settings, with the same constructors a trial uses
    (:func:`qlstm.explore.trial.run_config`, ``architecture()``, ``quantize.config()``), so the
    limits are the stages' own (units 1-1024, L 1-128, bit width 2-32, reuse factor >= 1,
    epochs/windows >= 1 ...), not re-derived here. Raises QlstmError naming the key and value."""
    from qlstm.explore.trial import Context, run_config

    ctx = Context("", "", "zynq7045", 10.0, 1.0, dict(space.settings), True)

    def check(params: dict[str, Any], what: str) -> None:
        try:
            cfg = run_config(params, ctx)
            cfg.train.architecture()
            cfg.quantize.config()
            dict(cfg.quantize.types)
        except QlstmError as exc:
            raise QlstmError(f"{where}: {what}: {str(exc).splitlines()[0]}") from None

    check({"method": "qat"}, "settings")  # qat_epochs too, whether or not the space searches QAT
    for p in space.params:
        if p.name == "pipeline_depth":  # the RTL design's; checked as positive numbers above
            continue
        for v in p.choices if p.choices is not None else (p.low, p.high):
            check({p.name: v}, f"{p.name} {v}")


def load_space(path: Path | None, rtl: bool = False) -> Space:
    """The space in ``path`` (default: :data:`DEFAULT_SPACE`); raises QlstmError if invalid."""
    path = DEFAULT_SPACE if path is None else Path(path)
    return parse_space(read_yaml(path), str(path), rtl)
