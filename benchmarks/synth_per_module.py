"""Yosys synthesis of a `qlstm rtl` folder one module at a time (benchmark, not CI).

Why: on the paper model (LSTM(128), 8 bits) the flat `synth_xilinx -flatten` of
`qlstm.rtl.synth.synthesize` stalled in `XILINX_DSP` on the top module's stage registers (one
`$dff` of up to 256,953 bits; docs/rtl.md, "The paper model, third sitting"), while each stage
module alone passed in seconds. Since 2026-12-01 `rtl/verilog.py` writes one register per traced
value and the flat run no longer has that cell (docs/rtl.md, "Stage registers one per value");
this script remains a per-module breakdown of the resources. It runs the same `synth_xilinx` steps as
`qlstm.rtl.synth` (classic ABC, pyosys) on each stage module as top (flattened on its own), then
on `qlstm_top` with the stages as black boxes (`-nodsp -nosrl`: the top has no products), and
prints per module the LUT/FF/CARRY/DSP/BRAM/MUXF counts (`qlstm.rtl.synth.resource_counts`), the
module's logic depth (`critical_path`), Yosys CPU seconds and peak RSS, then the sum.

The stages are combinational and meet only at the top's registers, so the sum is the design's
count with two differences from a flat run: the table ROMs have their address register outside
their module, so Yosys builds them from LUTs instead of block RAM, and nothing is optimised
across a register. Resources after Yosys synthesis, not placed.

usage: synth_per_module.py RTL_DIR --work WORK [MODULE ...]   (results in WORK/modules.json; a
module already in it is not run again, so a stopped run resumes)
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from qlstm.rtl import synth


def prepare(rtl_dir: Path, work: Path) -> list[str]:
    """The folder's Verilog (da4ml's rom_style attribute removed, as in synthesize) and ROM files."""
    work.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sorted((rtl_dir / "src").glob("*.v")):
        text = re.sub(r"\(\*\s*rom_style[^*]*\*\)", "", p.read_text())
        (work / p.name).write_text(text)
        names.append(p.name)
    for p in (rtl_dir / "src").glob("*.mem"):
        shutil.copy(p, work / p.name)
    return names


def synth_module(work: Path, srcs: list[str], top: str, family: str) -> dict:
    w = work / top
    w.mkdir(exist_ok=True)
    for n in srcs + [p.name for p in work.glob("*.mem")]:
        if not (w / n).exists():
            (w / n).symlink_to(work / n)
    stage_files = [s for s in srcs if s.startswith(("step_stage", "head_stage"))]
    if top == synth.TOP:  # the stages as black boxes; no products in the top, its shift registers stay FFs
        own = [s for s in srcs if s not in stage_files]
        read = ["read_verilog -defer " + " ".join(own), "read_verilog -lib " + " ".join(stage_files)]
        extra = " -nodsp -nosrl"
    else:
        read = ["read_verilog -defer " + " ".join(srcs)]
        extra = ""
    cmd = f"synth_xilinx -family {family} -top {top} -flatten -noiopad{extra}"
    steps = [f"{cmd} -run :map_luts", *synth._MAP_LUTS_ABC, f"{cmd} -run finalize:"]
    script = [*read, *steps, "tee -q -o stat.json stat -json", "write_json netlist.json"]
    (w / "synth.ys").write_text("\n".join(script) + "\n")
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", synth._PYOSYS_RUN], cwd=w, capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0 or not (w / "stat.json").exists():
        raise SystemExit(f"{top}: Yosys failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    stat = json.loads((w / "stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items() if not k.startswith("$")}
    row = synth.resource_counts(cells)
    module = json.loads((w / "netlist.json").read_text())["modules"][top]
    path = synth.path_names(module, synth.critical_path(module))
    (w / "netlist.json").unlink()
    row.update(
        logic_depth=max(len(path) - 2, 0),
        logic_path=path,
        cells=cells,
        wall_s=round(time.perf_counter() - t0, 1),
        cpu_s=round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 1),
        max_rss_kb=r1.ru_maxrss,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rtl_dir", type=Path, help="a `qlstm rtl` folder (its src/ is read)")
    ap.add_argument(
        "--work", type=Path, required=True, help="working folder (per-module Yosys runs, modules.json)"
    )
    ap.add_argument("--part", default="xc7z045ffg900-2", help="the part (its family: xc7 or xcu)")
    ap.add_argument("modules", nargs="*", help="modules to synthesise (default: every stage, then qlstm_top)")
    a = ap.parse_args()
    srcs = prepare(a.rtl_dir, a.work)
    stages = sorted(Path(s).stem for s in srcs if s.startswith(("step_stage", "head_stage")))
    out = a.work / "modules.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    for top in a.modules or [*stages, synth.TOP]:
        if top in res:
            continue
        res[top] = synth_module(a.work, srcs, top, synth.yosys_family(a.part))
        out.write_text(json.dumps(res, indent=1))
        shown = {k: v for k, v in res[top].items() if k not in ("cells", "logic_path")}
        print(top, "(after Yosys synthesis, not placed):", shown, flush=True)
    total = {k: sum(r[k] for r in res.values()) for k in ("lut", "ff", "carry", "dsp", "bram18", "muxf")}
    depth = max(r["logic_depth"] for r in res.values())
    print(
        f"sum over {len(res)} modules (after Yosys synthesis, not placed): {total}; deepest module {depth} cells"
    )


if __name__ == "__main__":
    main()
