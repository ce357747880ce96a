"""The ``firmware`` backend of ``qlstm predict``: the bit-exact simulation of a quantized run.

``predict(run_dir, x)`` returns exactly what the compiled hls4ml C simulation of the run returns
(the network output type converted to double); ``trace(run_dir, x)`` returns every
intermediate of the firmware (see :meth:`qlstm.firmware_sim.simulate.Firmware.trace_names`), as
exact float64 values, for finding where the firmware and the float model part ways.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlstm import description
from qlstm.errors import QlstmError
from qlstm.hls_config import HlsConfig

from .simulate import Firmware


def load_firmware(run_dir: Path, config: HlsConfig | None = None) -> Firmware:
    """The firmware of a quantized run folder (``model.json`` + ``weights.npz``), built with the
    hls project's implementation ``options`` (io_type, strategy, reuse, static, backend; default
    hls4ml's: io_parallel, latency, reuse factor 1)."""
    run_dir = Path(run_dir)
    desc, weights = description.load(run_dir)
    if not desc.quantized:
        raise QlstmError(
            f"{run_dir}: not a quantized run; the firmware backend needs the output of `qlstm quantize`"
        )
    return Firmware(desc, weights, config)


def predict(run_dir: Path, x: np.ndarray, config: HlsConfig | None = None) -> np.ndarray:
    """(N, L, C) normalised windows -> (N, k) float64, bit-identical to the C simulation."""
    return load_firmware(run_dir, config).predict(x)


def trace(run_dir: Path, x: np.ndarray, config: HlsConfig | None = None) -> dict[str, np.ndarray]:
    """Every intermediate per step and layer (float64, exact): ``rnn{i}.x_acc``, ``h_acc``,
    ``preact``, ``gates``, ``c``/``tanh_c`` (LSTM) or ``r_h`` (GRU), ``h``; ``rnn{i}`` and
    ``head`` as hls4ml's trace names them."""
    return load_firmware(run_dir, config).run(x, trace=True).values()
