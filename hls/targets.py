"""FPGA targets: named parts with their default clock and device capacity.

Capacities are the device totals from the Xilinx data sheets (DS190 Zynq-7000, DS180 7 series,
DS890 UltraScale): LUTs, flip-flops, DSP slices and 18 Kb block-RAM tiles (a 36 Kb BRAM counts
as two). The paper's Table 6 platforms are zynq7020, zynq7045 and ku060.

Any other part string is accepted when the user gives its resources (``Target.custom``); a part
string that does not look like a Xilinx part is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qlstm.errors import QlstmError


@dataclass(frozen=True)
class Resources:
    lut: int
    ff: int
    dsp: int
    bram_18k: int

    def __post_init__(self) -> None:
        for name in ("lut", "ff", "dsp", "bram_18k"):
            if getattr(self, name) < 0:
                raise QlstmError(f"resource {name} cannot be negative")


@dataclass(frozen=True)
class Target:
    name: str
    part: str
    clock_ns: float  # default clock period
    resources: Resources
    family: str  # "zynq7", "kintex7", "kintexu" ... (selects DSP width rules in the estimator)

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_ns

    @staticmethod
    def custom(part: str, resources: Resources, clock_ns: float = 5.0, family: str | None = None) -> Target:
        check_part(part)
        return Target(
            name=part, part=part, clock_ns=clock_ns, resources=resources, family=family or family_of(part)
        )


TARGETS: dict[str, Target] = {
    # Zynq-7020 (paper, Table 6: 142 MHz). DS190: 53,200 LUT, 106,400 FF, 220 DSP48E1, 140 BRAM36.
    "zynq7020": Target(
        "zynq7020", "xc7z020clg400-1", 1000.0 / 142.0, Resources(53_200, 106_400, 220, 280), "zynq7"
    ),
    # Zynq-7045 (paper, Table 6: 100 MHz). DS190: 218,600 LUT, 437,200 FF, 900 DSP48E1, 545 BRAM36.
    "zynq7045": Target("zynq7045", "xc7z045ffg900-2", 10.0, Resources(218_600, 437_200, 900, 1_090), "zynq7"),
    # Kintex UltraScale KU060 (paper, Table 6: 200 MHz). DS890: 331,680 LUT, 663,360 FF,
    # 2,760 DSP48E2, 1,080 BRAM36.
    "ku060": Target(
        "ku060", "xcku060-ffva1156-2-e", 5.0, Resources(331_680, 663_360, 2_760, 2_160), "kintexu"
    ),
    # Kintex-7 325T (KC705 board). DS180: 203,800 LUT, 407,600 FF, 840 DSP48E1, 445 BRAM36.
    "kintex7": Target("kintex7", "xc7k325tffg900-2", 5.0, Resources(203_800, 407_600, 840, 890), "kintex7"),
}

_PART_RE = re.compile(r"^x[aqc][a-z0-9]+-?[a-z0-9]*(-[0-9a-z]+)*$", re.IGNORECASE)


def check_part(part: str) -> str:
    """Refuse strings that cannot be a Xilinx/AMD part number (e.g. ``xc7z020clg400-1``)."""
    if not isinstance(part, str) or not _PART_RE.match(part.strip()) or len(part) < 6:
        raise QlstmError(
            f"malformed part string {part!r}; expected a Xilinx part such as xc7z020clg400-1 "
            f"or a named target ({', '.join(TARGETS)})"
        )
    return part.strip().lower()


def family_of(part: str) -> str:
    p = part.lower()
    if p.startswith("xc7z"):
        return "zynq7"
    if p.startswith(("xc7k", "xc7a", "xc7v", "xc7s")):
        return "kintex7"
    if p.startswith(("xcku", "xcvu", "xczu", "xcau", "xcvc", "xcve", "xcu")):  # xcu: Alveo (UltraScale+)
        return "kintexu"
    return "unknown"


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise QlstmError(
            f"unknown target {name!r}; choose one of {', '.join(TARGETS)} or give --part"
        ) from None
