"""The one place ``qlstm.rtl`` imports hls4ml's sigmoid/tanh tables from.

The tables and their index computation live in ``qlstm.firmware_sim.tables`` today; when they move
into the core, only this import changes.
"""

from __future__ import annotations

from qlstm.firmware_sim.tables import table, table_index

__all__ = ["table", "table_index"]
