"""From a fine-tuned model to engines: ONNX export (parity-checked), CPU INT8, QDQ INT8 and
TensorRT plans (polygraphy-checked), and the distilled student; every one gated on quality."""
