"""ONNX and QONNX export of float and quantized models, and their onnxruntime/qonnx backends."""
