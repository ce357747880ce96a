"""Fixed-point quantization with Brevitas (imported as ``qlstm.quantize``)."""
