"""A complete hls4ml project for a Vivado/Vitis user: ``qlstm hls QRUN_DIR --out PRJ_DIR``.

The folder holds what hls4ml writes (``build_prj.tcl`` + ``project.tcl`` with the part and the
clock, ``firmware/`` with the weights in headers for synthesis and in ``.txt`` files for the C
simulation, the test bench) plus:

* ``tb_data/tb_input_features.dat`` - real held-out windows (the run's test split, or the
  user's ``--tb-inputs``), already on the input type's grid and exact in float32, because
  hls4ml's test bench reads them as ``float`` before converting to ``input_t``;
* ``tb_data/tb_output_predictions.dat`` - the C simulation's outputs for those windows, so
  ``csim_design`` and ``cosim_design`` run unchanged and their logs can be diffed exactly;
* ``qlstm_hls.json`` - target (part, clock, device resources), options, the type of every
  quantization point, and where the numbers came from;
* ``estimate.json`` - latency/resource ESTIMATES of this model per report target, the budget
  search's candidates and the paper comparisons (:mod:`.estimate.summary`), which the run report
  renders instead of running the estimator;
* with ``--csim``: ``csim_predictions.npy`` on up to ``--csim-windows`` held-out windows, their
  RMSE and the quantized model's on the same windows.

The C simulation itself is compiled once per model and options in the content-hash cache
(:mod:`qlstm.hls.csim`); the project's ``firmware/`` sources are checked to be identical to the
compiled ones (apart from hls4ml's tracing hooks), so what is synthesised is what was simulated.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from qlstm import description, runs
from qlstm.description import ModelDescription
from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig, check_reuse, valid_reuse_factors
from qlstm.io import atomic_path, atomic_write_text, check_out_folder, staged_dir

from .csim import CSim, build_csim, write_project
from .estimate.summary import write_summary
from .graph import PROJECT_NAME
from .targets import Target
from .verify import check_project_types

log = logging.getLogger(__name__)

PROJECT_FORMAT = "qlstm-hls-project/1"
METADATA = runs.HLS_PROJECT_FILE
TB_INPUTS = "tb_data/tb_input_features.dat"
TB_OUTPUTS = "tb_data/tb_output_predictions.dat"
CSIM_PREDICTIONS = "csim_predictions.npy"

_TRACE_BLOCK = re.compile(r"#ifndef __SYNTHESIS__\n(?:\s*nnet::save_layer_output<[^\n]*\n)+#endif\n")


def firmware_sha256(project_dir: Path) -> str:
    """Hash of the sources under ``firmware/`` (no compiled library; tracing hooks removed)."""
    fw = Path(project_dir) / "firmware"
    h = hashlib.sha256()
    for path in sorted(p for p in fw.rglob("*") if p.is_file() and p.suffix != ".so"):
        data = path.read_bytes()
        if path.name == f"{PROJECT_NAME}.cpp":
            data = _TRACE_BLOCK.sub("", data.decode()).encode()
        h.update(str(path.relative_to(fw)).encode() + b"\0" + data + b"\0")
    return h.hexdigest()


# ====================================================================== windows
def heldout_windows(run_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The test-split windows x (N, L, C) and targets y (N, k) of a quantized run: its float
    parent's ``windows.npz`` read through :mod:`qlstm.runs`, as float64.

    Raises QlstmError (suggesting ``--tb-inputs``) when there is no parent, no saved windows or
    an empty test split.
    """
    run = runs.QuantRun(Path(run_dir))
    if not (run.path / runs.PARENT_FILE).is_file():
        raise QlstmError(
            f"{run_dir}: no {runs.PARENT_FILE}, so it has no held-out windows; pass --tb-inputs X.npy"
        )
    try:
        parent = run.parent
        test = parent.heldout().test
    except QlstmError as exc:
        raise QlstmError(f"{exc}; or pass --tb-inputs X.npy") from None
    if len(test) == 0:
        raise QlstmError(f"{parent.path}: the test split holds no windows; pass --tb-inputs X.npy")
    return (
        np.asarray(test.x, dtype=np.float64),
        np.asarray(test.y, dtype=np.float64),
        f"test split of {parent.path}",
    )


def load_inputs(path: Path, desc: ModelDescription) -> np.ndarray:
    """``--tb-inputs X.npy``: (N, L, C) finite numbers matching the model."""
    path = Path(path)
    if not path.is_file():
        raise QlstmError(f"--tb-inputs {path}: file not found")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError, OSError, EOFError ...
        raise QlstmError(f"--tb-inputs {path}: not a readable .npy file ({type(exc).__name__})") from None
    return desc.architecture.check_windows(x, f"--tb-inputs {path}")


def testbench_inputs(x: np.ndarray, desc: ModelDescription, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` windows spread over ``x``, on the input grid and exact in float32 (see module doc)."""
    idx = np.unique(np.linspace(0, len(x) - 1, num=min(count, len(x))).round().astype(int))
    q = desc.quantization.input  # type: ignore[union-attr]
    xt = q.quantize(x[idx]).astype(np.float32).astype(np.float64)
    return xt, idx


def _dat(rows: np.ndarray) -> str:
    """One window per line, values space-separated, each printed exactly (repr round-trips)."""
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows.reshape(len(rows), -1))


# ====================================================================== the project
def _output_folder(out: Path, overwrite: bool, inputs: tuple[Path | None, ...] = ()) -> None:
    out = Path(out)
    check_out_folder(out, overwrite, inputs)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise QlstmError(
                f"{out} already exists and is not empty; choose another folder or pass --overwrite"
            )
        if not (out / METADATA).is_file():
            raise QlstmError(
                f"{out} holds something other than a qlstm hls project; refusing to overwrite it"
            )


def generate(
    run_dir: Path,
    out: Path,
    target: Target,
    opts: HlsConfig,
    *,
    tb_inputs: Path | None = None,
    tb_count: int = 100,
    csim: bool = False,
    csim_windows: int = 5000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the project folder ``out`` for the quantized run ``run_dir``; return its metadata."""
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise QlstmError(f"{run_dir}: run folder not found")
    desc, weights = description.load(run_dir)
    if desc.quantization is None:
        raise QlstmError(
            f"{run_dir}: not a quantized run (no quantization in model.json); run qlstm quantize"
        )
    if not (isinstance(tb_count, int) and tb_count >= 1):
        raise QlstmError(f"--tb-count must be an integer >= 1, got {tb_count!r}")
    if not (isinstance(csim_windows, int) and csim_windows >= 1):
        raise QlstmError(f"--csim-windows must be an integer >= 1, got {csim_windows!r}")
    check_reuse(desc, opts.reuse_factor)
    _output_folder(out, overwrite, (run_dir, tb_inputs))

    y_eval: np.ndarray | None = None
    if tb_inputs is not None:
        x_eval, source = load_inputs(tb_inputs, desc), f"--tb-inputs {tb_inputs}"
    else:
        x_eval, y_eval, source = heldout_windows(run_dir)

    sim = build_csim(desc, weights, opts, part=target.part, clock_ns=target.clock_ns)
    x_tb, idx = testbench_inputs(x_eval, desc, tb_count)
    y_tb = sim.predict(x_tb)

    meta: dict[str, Any] = {
        "format": PROJECT_FORMAT,
        "run": str(run_dir.resolve()),
        "model_fingerprint": desc.fingerprint(),
        "top_function": PROJECT_NAME,
        "target": {
            "name": target.name,
            "part": target.part,
            "clock_ns": target.clock_ns,
            "clock_mhz": target.clock_mhz,
            "family": target.family,
            "resources": asdict(target.resources),
        },
        "options": opts.to_dict(),
        "valid_reuse_factors": valid_reuse_factors(desc),
        "hls4ml": _hls4ml_version(),
        "testbench": {
            "windows": len(x_tb),
            "source": source,
            "indices": idx.tolist(),
            "inputs": TB_INPUTS,
            "expected_outputs": TB_OUTPUTS,
            "expected_from": "C simulation (inputs quantized to the input type, exact in float32)",
        },
        "csim": {"cache_key": sim.key, "library": str(sim.lib_path)},
    }
    if csim:
        meta["csim"].update(_evaluate(sim, x_eval, y_eval, weights, csim_windows, opts))

    with staged_dir(out, overwrite=overwrite, inputs=(run_dir, tb_inputs)) as stage:
        write_project(desc, weights, opts, stage, part=target.part, clock_ns=target.clock_ns, trace=False)
        fw = firmware_sha256(stage)
        if fw != firmware_sha256(sim.project_dir):
            raise RuntimeError("project firmware differs from the compiled C simulation's firmware")
        meta["firmware_sha256"] = fw
        meta["types"] = {k: v for k, v in check_project_types(stage, desc).items() if "(" not in k}
        atomic_write_text(stage / TB_INPUTS, _dat(x_tb))
        atomic_write_text(stage / TB_OUTPUTS, _dat(y_tb))
        cfg_yml = stage / "hls4ml_config.yml"
        if cfg_yml.is_file():  # hls4ml records the staging folder as OutputDir
            atomic_write_text(cfg_yml, cfg_yml.read_text().replace(str(stage), str(out.resolve())))
        if csim:
            with atomic_path(stage / CSIM_PREDICTIONS) as tmp:
                np.save(tmp, meta["csim"].pop("_predictions"))
            meta["csim"]["predictions"] = CSIM_PREDICTIONS
        write_summary(stage, desc, weights, target)
        runs.write_json(stage / METADATA, meta)
    log.info("wrote hls4ml project %s for %s (%s)", out, target.name, target.part)
    return meta


def _evaluate(
    sim: CSim,
    x: np.ndarray,
    y: np.ndarray | None,
    weights: dict[str, np.ndarray],
    limit: int,
    opts: HlsConfig,
) -> dict[str, Any]:
    """The C simulation on up to ``limit`` held-out windows (spread over the set), its RMSE, and
    the quantized model (the bit-exact ``firmware_sim`` forward, ``qlstm predict --backend
    firmware``) on the same windows, simulated with the project's own options ``opts`` (the
    resource strategy's summation order changes the numbers of a saturating accumulator)."""
    from qlstm.firmware_sim.simulate import Firmware

    idx = np.unique(np.linspace(0, len(x) - 1, num=min(limit, len(x))).round().astype(int))
    xs = x[idx]
    pred = sim.predict(xs)
    # firmware_sim models io_parallel only; an io_stream project is compared with the io_parallel
    # firmware of its other options (and says so)
    simulated = opts if opts.io_type == "io_parallel" else replace(opts, io_type="io_parallel")
    quant = Firmware(sim.desc, weights, simulated).predict(xs)
    agree = runs.compare(pred, quant, sim.desc.quantization.output.lsb)  # type: ignore[union-attr]
    res: dict[str, Any] = {
        "windows": len(idx),
        "of_windows": len(x),
        "_predictions": pred,
        "max_abs_diff_to_quantized_lsb": agree.max_diff_lsb,
        "identical_to_quantized": agree.bit_exact,
        "quantized_simulated_with": f"firmware_sim, {opts.strategy} strategy, reuse factor {opts.reuse_factor}"
        + ("" if simulated is opts else f", io_parallel (the project is {opts.io_type})"),
    }
    if y is None:
        return res
    m, mq = runs.rmse_metrics(pred, y[idx]), runs.rmse_metrics(quant, y[idx])
    res["metrics"] = m.to_dict()
    res["rmse"] = m.rmse
    res["rmse_per_step"] = list(m.rmse_per_step)
    res["quantized_model_rmse"] = mq.rmse
    if mq.rmse > 0:
        res["rmse_ratio_to_quantized"] = m.rmse / mq.rmse
    return res


def _hls4ml_version() -> str:
    import hls4ml

    return hls4ml.__version__
