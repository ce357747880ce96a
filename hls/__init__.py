"""hls4ml projects and the compiled C-simulation oracle (imported as ``qlstm.hls``)."""
