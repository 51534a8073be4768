"""ONNX Runtime ranking engine: the CPU stand-in for TensorRT, shared by Triton and tools."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import config


def session_options(threads: int = config.ENGINE_THREADS):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One call should use every core: a single rank request is one big batch.
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


class OrtEngine:
    """Scores engine inputs (int32 [N, L]) -> logits float32 [N]."""

    def __init__(self, onnx_path: str | Path, threads: int = config.ENGINE_THREADS):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.exists():
            raise FileNotFoundError(f"no ONNX engine at {self.path}")
        self.session = ort.InferenceSession(str(self.path), session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def logits(self, batch: dict) -> np.ndarray:
        feeds = {name: np.ascontiguousarray(batch[name], dtype=config.ID_DTYPE) for name in config.ENGINE_INPUTS}
        return self.session.run([config.ENGINE_OUTPUT], feeds)[0].reshape(-1).astype(np.float32)

    def score_pairs(self, encoder, queries, texts, chunk: int = 256) -> np.ndarray:
        """Logits for many aligned pairs, in chunks (keeps memory flat on big evaluation sets)."""
        out = [self.logits(encoder.encode_pairs(queries[i:i + chunk], texts[i:i + chunk]))
               for i in range(0, len(queries), chunk)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)
