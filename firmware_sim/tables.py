"""Re-export of :mod:`qlstm.hls4ml_tables`, where hls4ml's lookup tables now live (issue 13).

hls4ml's table semantics belong to the core, so that quantize, export and this simulator all
import them downward. This shim keeps ``from . import tables`` in :mod:`.kernels` working while
other branches merge; import :mod:`qlstm.hls4ml_tables` in new code.
"""

from qlstm.hls4ml_tables import KINDS, Kind, lookup, table, table_index, table_inputs, table_values

__all__ = ["KINDS", "Kind", "lookup", "table", "table_index", "table_inputs", "table_values"]
