"""Yosys ``synth_xilinx`` of a `qlstm rtl` folder step by step: wall and CPU time per step (benchmark).

Runs the same script as ``qlstm.rtl.synth.synthesize`` (pyosys, classic ABC mapper, ``-flatten
-noiopad``) but one ``synth_xilinx`` label at a time (``-run begin:prepare``, ``prepare:map_dsp``,
...; ``map_luts`` is the classic-ABC substitute of ``qlstm.rtl.synth``), in one pyosys process, and
prints per step the wall time, the process's CPU time and the CPU time of its child processes
(ABC); the resource counts at the end (``qlstm.rtl.synth.resource_counts``), but no netlist and
no logic depth (``synthesize`` loads the netlist's JSON into Python, gigabytes for the paper
model). After ``prepare`` (the design flattened, processes turned into cells) it records the widest
flip-flop cells (``stat -width``): the stage registers the issue #16 stall came from.

``--top-only``: synthesise ``qlstm_top`` with the stage modules as black boxes (the wrapper's own
registers and logic only; what stalled on the paper model).

Each step's line is printed when it ends (flushed), so a run stopped by ``timeout`` shows the last
step that finished; ``WORK/yosys_steps.log`` (Yosys's log) shows the pass it was in.

usage: yosys_steps.py RTL_DIR --work WORK [--top-only] [--family xc7] [--json OUT]
Resources after Yosys synthesis, not placed; times are measured on the machine used (state its load).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import sys
import time
from pathlib import Path

LABELS = ["begin", "prepare", "map_dsp", "coarse", "map_memory", "map_ffram", "fine", "map_cells", "map_ffs"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="a qlstm rtl folder (its src/)")
    p.add_argument("--work", type=Path, required=True, help="working folder (sources copied, logs)")
    p.add_argument("--family", default="xc7")
    p.add_argument("--top-only", action="store_true", help="stage modules as black boxes")
    p.add_argument("--json", type=Path, help="write the step times as JSON")
    args = p.parse_args(argv)

    from pyosys import libyosys as ys

    from qlstm.rtl import synth

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    srcs = []
    for f in sorted((args.folder / "src").glob("*.v")):
        (work / f.name).write_text(re.sub(r"\(\*\s*rom_style[^*]*\*\)", "", f.read_text()))
        srcs.append(f.name)
    for f in (args.folder / "src").glob("*.mem"):
        shutil.copy(f, work / f.name)
    stages = [s for s in srcs if re.match(r"(step|head|alarm)_stage\d+\.v$", s)]
    if args.top_only:
        reads = [
            "read_verilog -defer " + " ".join(s for s in srcs if s not in stages),
            "read_verilog -lib " + " ".join(stages),
        ]
    else:
        reads = ["read_verilog -defer " + " ".join(srcs)]
    sx = " ".join(["synth_xilinx", "-family", args.family, "-top", synth.TOP, *synth.BASE_FLAGS])
    steps: list[tuple[str, list[str]]] = [("read", reads)]
    for a, b in zip(LABELS, LABELS[1:] + ["map_luts"], strict=True):
        steps.append((a, [f"{sx} -run {a}:{b}"]))
    steps.append(("map_luts (classic abc)", list(synth._MAP_LUTS_ABC)))
    steps.append(("finalize", [f"{sx} -run finalize:"]))
    import os

    os.chdir(work)
    d = ys.Design()
    rows = []
    t_all = time.perf_counter()
    for name, cmds in steps:
        t0, c0 = time.perf_counter(), time.process_time()
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for i, c in enumerate(cmds):
            ys.run_pass(
                f"tee -q -a yosys_steps.log {c}" if i or name != "read" else f"tee -q -o yosys_steps.log {c}",
                d,
            )
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        row = {
            "step": name,
            "figures": "measured (time, memory)",
            "wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(time.process_time() - c0, 2),
            "child_cpu_s": round((ch1.ru_utime - ch0.ru_utime) + (ch1.ru_stime - ch0.ru_stime), 2),
            "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
        if name == "prepare":
            ys.run_pass("tee -q -o stat_prepare.txt stat -width", d)
            text = Path("stat_prepare.txt").read_text()
            row["widest_dff"] = [
                (int(w), int(n)) for n, w in re.findall(r"^\s+(\d+)\s+\$(?:a|s)?dff\w*_(\d+)\s*$", text, re.M)
            ]
            row["widest_dff"] = sorted(row["widest_dff"], reverse=True)[:5]
        rows.append(row)
        print(json.dumps(row), flush=True)
    ys.run_pass("tee -q -o stat.json stat -json", d)
    cells = {
        k: int(v)
        for k, v in json.loads(Path("stat.json").read_text())["design"]["num_cells_by_type"].items()
        if not k.startswith("$")
    }
    total = {
        "step": "total",
        "figures": "time measured; cell counts synthesised by Yosys, not placed",
        "wall_s": round(time.perf_counter() - t_all, 1),
        "cpu_s": round(sum(r["cpu_s"] + r["child_cpu_s"] for r in rows), 1),
        **synth.resource_counts(cells),
    }
    rows.append(total)
    print(json.dumps(total), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
