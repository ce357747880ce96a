"""The distribution installs as a regular (non-editable) wheel with the design card's layout:
top-level stage folders (train/, quantize/, hls/, firmware_sim/) import as qlstm.<stage>."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "quantize", "hls", "firmware_sim", "rtl")


@pytest.mark.slow
def test_regular_install_maps_stage_folders(tmp_path):
    # build from a copy without build/ and egg-info: setuptools reuses a stale build/lib, which
    # packs modules deleted since (found when hls/testing.py moved to qlstm/testing.py)
    src = tmp_path / "src"
    junk = (
        "build",
        "*.egg-info",
        ".venv",
        ".git",
        "__pycache__",
        ".pytest_cache",
        ".hypothesis",
        ".ruff_cache",
        "runs",  # run folders of `make run`
    )
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*junk))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp_path / "w"),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "w").glob("qlstm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for stage in STAGES:
        sources = {p.name for p in (ROOT / stage).glob("*.py")}
        packaged = {Path(n).name for n in names if n.startswith(f"qlstm/{stage}/") and n.endswith(".py")}
        assert sources == packaged, stage
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # -I: isolated mode, so the editable install of the work tree cannot be what gets imported.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib; "
        + "mods = [importlib.import_module('qlstm.' + s) for s in sys.argv[2:]]; "
        + "print('\\n'.join(m.__file__ for m in mods))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(target), *STAGES], check=True, capture_output=True, text=True
    ).stdout.split()
    for stage, path in zip(STAGES, out, strict=True):
        assert Path(path).is_relative_to(target / "qlstm" / stage), path
