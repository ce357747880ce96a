"""Bit-exact NumPy simulator of the hls4ml firmware (imported as ``qlstm.firmware_sim``)."""
