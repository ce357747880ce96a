"""The ``quant`` backend of ``qlstm predict``: an alias of the ``firmware`` backend.

There is one firmware forward, :mod:`qlstm.firmware_sim` (issue 13); ``quant`` stays accepted so
scripts keep working. :data:`qlstm.predict.BACKENDS` maps ``quant`` to the simulator directly; this
module keeps ``from qlstm.quantize.backend import predict`` (``hls/project.py``) working until
those callers import :func:`qlstm.firmware_sim.backend.predict` themselves.
"""

from __future__ import annotations

from qlstm.firmware_sim.backend import predict

__all__ = ["predict"]
