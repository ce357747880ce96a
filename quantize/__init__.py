"""Fixed-point quantisation with Brevitas (imported as ``qlstm.quantize``)."""
