"""The hls4ml implementation choices of a firmware: one frozen type and the one reuse-factor rule.

:class:`HlsConfig` holds what changes the generated C++ (and so the C simulation and the
schedule): hls4ml's ``IOType``, ``Strategy``, ``ReuseFactor``, the recurrent layers' ``static``
flag and the backend. The part and the clock do not change the C++ of the kernels; they live in
:class:`qlstm.hls.targets.Target`. One ``HlsConfig`` is used by the hls project, its C simulation,
the estimator and the run config's ``hls`` section, and is saved in the project's
``qlstm_hls.json`` (:mod:`qlstm.runs`) so later stages rebuild the same C simulation.

It lives in the core, not in ``hls/``, because ``firmware_sim`` (a layer below hls) states which
configurations it models by reading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from qlstm.description import GATES, ModelDescription
from qlstm.errors import QlstmError

IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("latency", "resource")
BACKENDS = ("Vivado", "Vitis")


@dataclass(frozen=True)
class HlsConfig:
    """hls4ml's implementation options (values are normalised: ``parallel`` -> ``io_parallel``,
    ``Latency`` -> ``latency``, ``vitis`` -> ``Vitis``). Raises QlstmError on an unknown value."""

    #: hls4ml IOType: ``io_parallel`` (arrays, fully partitioned) or ``io_stream`` (hls::stream)
    io_type: Literal["io_parallel", "io_stream", "parallel", "stream"] = "io_parallel"
    #: hls4ml Strategy: ``latency`` (all multipliers unrolled) or ``resource`` (multipliers shared)
    strategy: Literal["latency", "resource", "Latency", "Resource"] = "latency"
    #: hls4ml ReuseFactor of every layer (and RecurrentReuseFactor); see :func:`check_reuse`
    reuse_factor: int = 1
    #: hls4ml ``static``: one recurrent cell instance reused over the time steps
    static: bool = True
    #: hls4ml backend: ``Vivado`` or ``Vitis``
    backend: Literal["Vivado", "Vitis", "vivado", "vitis"] = "Vivado"

    def __post_init__(self) -> None:
        io = {"parallel": "io_parallel", "stream": "io_stream"}.get(self.io_type, self.io_type)
        if io not in IO_TYPES:
            raise QlstmError(f"unknown io type {self.io_type!r}; choose parallel or stream")
        strategy = str(self.strategy).lower()
        if strategy not in STRATEGIES:
            raise QlstmError(f"unknown strategy {self.strategy!r}; choose {' or '.join(STRATEGIES)}")
        backend = {b.lower(): b for b in BACKENDS}.get(str(self.backend).lower())
        if backend is None:
            raise QlstmError(f"unknown backend {self.backend!r}; choose vivado or vitis")
        rf = self.reuse_factor
        if isinstance(rf, bool) or not isinstance(rf, int | np.integer) or rf < 1:
            raise QlstmError(f"reuse factor must be an integer >= 1, got {rf!r}")
        object.__setattr__(self, "io_type", io)
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "reuse_factor", int(rf))
        object.__setattr__(self, "static", bool(self.static))

    def to_dict(self) -> dict[str, object]:
        return {
            "io_type": self.io_type,
            "strategy": self.strategy,
            "reuse_factor": self.reuse_factor,
            "static": self.static,
            "backend": self.backend,
        }


# ====================================================================== reuse factors
def valid_reuse_factor(n_in: int, n_out: int, rf: int) -> bool:
    """hls4ml's rule (``FPGABackend._validate_reuse_factor``) for a dense product n_in -> n_out."""
    multfactor = min(n_in, rf)
    multiplier_limit = -(-(n_in * n_out) // multfactor)
    ok = (multiplier_limit % n_out == 0) or rf >= n_in
    ok = ok and (rf % n_in == 0 or rf < n_in)
    return ok and (n_in * n_out) % rf == 0


def products(desc: ModelDescription) -> dict[str, tuple[int, int]]:
    """Every matrix-vector product of the network, ``name -> (n_in, n_out)``."""
    arch = desc.architecture
    out: dict[str, tuple[int, int]] = {}
    for i, layer in enumerate(arch.layers):
        g = GATES[layer.cell] * layer.units
        out[f"rnn{i} input kernel"] = (arch.n_in(i), g)
        out[f"rnn{i} recurrent kernel"] = (layer.units, g)
    for j, (nm, d) in enumerate(zip(arch.head_names(), arch.head, strict=True)):
        out[f"{nm} kernel"] = (arch.head_n_in(j), d.units)
    return out


def valid_reuse_factors(desc: ModelDescription) -> list[int]:
    """Reuse factors that every product of the network accepts (one reuse factor applies to all)."""
    prods = list(products(desc).values())
    limit = min(n_in * n_out for n_in, n_out in prods)
    return [rf for rf in range(1, limit + 1) if all(valid_reuse_factor(a, b, rf) for a, b in prods)]


def check_reuse(desc: ModelDescription, reuse_factor: int) -> None:
    """The one reuse-factor check: refuse a value hls4ml would silently replace by the "closest"
    valid one. Raises QlstmError naming the products it does not fit and the valid values."""
    bad = [
        f"{name} ({a}x{b})"
        for name, (a, b) in products(desc).items()
        if not valid_reuse_factor(a, b, reuse_factor)
    ]
    if bad:
        valid = valid_reuse_factors(desc)
        shown = ", ".join(map(str, valid[:24])) + (" ..." if len(valid) > 24 else "")
        raise QlstmError(
            f"reuse factor {reuse_factor} does not fit the {', '.join(bad)} products as hls4ml requires; "
            f"valid values for this model: {shown}"
        )
