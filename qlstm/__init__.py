"""qlstm: LSTM predictors of superconducting-magnet voltage, from training to bit-exact FPGA firmware.

The stages import as ``qlstm.data``, ``qlstm.train``, ``qlstm.quantize``, ``qlstm.hls`` and
``qlstm.firmware_sim``; this core package holds what they share: the fixed-point type
(:mod:`qlstm.fixedpoint`), the model description (:mod:`qlstm.description`), hls4ml's sigmoid/tanh
lookup tables (:mod:`qlstm.hls4ml_tables`), typed configuration
(:mod:`qlstm.config`), file helpers (:mod:`qlstm.io`) and the ``qlstm`` CLI (:mod:`qlstm.cli`).
"""

__version__ = "0.1.0"
