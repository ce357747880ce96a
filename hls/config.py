"""The ``hls:`` config section: what ``qlstm hls`` (and the run's hls step) generates.

The same section is read by ``qlstm hls --config FILE`` and by ``qlstm run --config FILE``; the
command-line options override it field by field. Unknown keys are errors (:mod:`qlstm.config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig

from .targets import Resources, Target, check_part, get_target

DEFAULT_TARGET = "zynq7020"


@dataclass(frozen=True)
class HlsSection:
    """One hls4ml project: the FPGA target, hls4ml's options and the C-simulation checks."""

    #: named target (part, default clock, capacity): zynq7020, zynq7045, ku060, kintex7
    target: str | None = None
    #: any Xilinx part instead of ``target`` (then ``resources`` is required)
    part: str | None = None
    #: device capacity for ``part``: [LUT, FF, DSP, BRAM18] (for the estimator)
    resources: tuple[int, ...] | None = None
    #: clock period in ns (default: the target's; 5.0 for ``part``)
    clock_ns: float | None = None
    #: hls4ml's implementation options (io_type, strategy, reuse_factor, static, backend)
    options: HlsConfig = field(default_factory=HlsConfig)
    #: windows of the test bench (tb_data/), spread over the held-out test split
    tb_count: int = 100
    #: also run the C simulation on held-out windows (csim_predictions.npy, RMSE)
    csim: bool = False
    #: at most this many held-out windows for the C simulation
    csim_windows: int = 5000

    def __post_init__(self) -> None:
        if self.tb_count < 1:
            raise QlstmError(f"--tb-count must be an integer >= 1, got {self.tb_count!r}")
        if self.csim_windows < 1:
            raise QlstmError(f"--csim-windows must be an integer >= 1, got {self.csim_windows!r}")

    def resolve_target(self) -> Target:
        """The :class:`Target` from target / part / resources / clock_ns, validated (one line)."""
        clock = self.clock_ns
        if clock is not None and not (math.isfinite(clock) and clock > 0):
            raise QlstmError(f"--clock-ns must be > 0, got {clock}")
        if self.part is not None:
            if self.target is not None:
                raise QlstmError("give either a target or a part, not both")
            part = check_part(self.part)
            if self.resources is None:
                raise QlstmError(
                    "--part needs --resources LUT,FF,DSP,BRAM (the device capacity, for the estimator)"
                )
            return Target.custom(
                part, resources(self.resources), clock_ns=clock if clock is not None else 5.0
            )
        if self.resources is not None:
            raise QlstmError("--resources is only for --part; named targets know their resources")
        target = get_target(self.target or DEFAULT_TARGET)
        return target if clock is None else replace(target, clock_ns=clock)


def resources(values: tuple[int, ...]) -> Resources:
    """[LUT, FF, DSP, BRAM18] as :class:`Resources`; one QlstmError line otherwise."""
    if len(values) != 4:
        raise QlstmError(f"resources {list(values)}: expected four integers LUT,FF,DSP,BRAM")
    return Resources(*values)


def parse_resources(text: str) -> tuple[int, ...]:
    """``--resources LUT,FF,DSP,BRAM`` (also the estimator's capacity) as four integers."""
    parts = [t.strip() for t in text.split(",")]
    try:
        values = tuple(int(t) for t in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise QlstmError(
            f"--resources {text!r}: expected four integers LUT,FF,DSP,BRAM, e.g. 134600,269200,740,730"
        )
    return values
