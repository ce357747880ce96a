"""Synthesise the unit modules of docs/rtl.md's "time-multiplexed products in LUTs" estimate.

Usage: ``python benchmarks/rtl_unit_costs/run.py`` (pyosys from the project's venv). Prints the LUT,
CARRY4 and FDRE counts per module after ``synth_xilinx -family xc7 -nodsp`` with the classic ABC
LUT mapper, the flow of ``qlstm rtl --synth`` (synthesised, not placed).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from pyosys import libyosys as ys

HERE = Path(__file__).parent
TOPS = {"mul8": "signed 8x8 multiplier, registered", "mac8": "8x8 multiply-accumulate into 24 bits",
        "tree128": "128-input adder tree of 16-bit values into 23 bits"}  # fmt: skip


def main() -> None:
    for top, what in TOPS.items():
        d = ys.Design()
        ys.run_pass(f"read_verilog {HERE / 'unit_costs.v'}", d)
        ys.run_pass(f"synth_xilinx -family xc7 -nodsp -top {top} -run begin:map_luts", d)
        ys.run_pass("abc -luts 2:2,3,6:5,10,20 -dress", d)
        ys.run_pass("clean", d)
        ys.run_pass(f"synth_xilinx -family xc7 -nodsp -top {top} -run map_cells:", d)
        with tempfile.TemporaryDirectory() as tmp:
            ys.run_pass(f"tee -q -o {tmp}/stat.txt stat", d)
            text = Path(tmp, "stat.txt").read_text()
        cells = {m[2]: int(m[1]) for m in re.finditer(r"^\s+(\d+)\s+(\S+)$", text, re.M) for _ in [0]}
        luts = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c))
        print(
            f"{top:8s} {what}: {luts} LUT, {cells.get('CARRY4', 0)} CARRY4, {cells.get('FDRE', 0)} FDRE (synthesised)"
        )


if __name__ == "__main__":
    main()
