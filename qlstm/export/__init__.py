"""ONNX and QONNX export of float and quantised models, and their onnxruntime/qonnx backends."""
