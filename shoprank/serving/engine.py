"""ONNX Runtime ranking engine: the CPU stand-in for TensorRT, shared by Triton and tools."""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import config


def engine_workers(threads: int = config.ENGINE_THREADS) -> int:
    """How many cores one engine call uses (0: every core)."""
    return max(1, threads or (os.cpu_count() or 1))


def session_options(threads: int = config.ENGINE_THREADS, spinning: bool = config.ENGINE_SPINNING):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = engine_workers(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        # Idle worker threads sleep instead of spinning: frees the cores for other processes
        # (the tokenizer, other instances) between calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def row_lengths(mask: np.ndarray) -> np.ndarray:
    """Per row, 1 + the last position the attention mask keeps (any padding side is safe)."""
    mask = np.asarray(mask)
    if mask.size == 0:
        return np.zeros(len(mask), dtype=np.int64)
    nonzero = mask != 0
    last = mask.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 1)


def length_chunks(lengths: np.ndarray, chunk_tokens: int) -> list[np.ndarray]:
    """Row indices grouped by length (shortest first), each group's rows x longest <= chunk_tokens
    (at least one row per group)."""
    order = np.argsort(lengths, kind="stable")
    chunks, start = [], 0
    while start < len(order):
        end = start + 1
        # Sorted ascending, so the last row of a group is its longest.
        while end < len(order) and (end + 1 - start) * int(lengths[order[end]]) <= chunk_tokens:
            end += 1
        chunks.append(order[start:end])
        start = end
    return chunks


class OrtEngine:
    """Scores engine inputs (int32 [N, L]) -> logits float32 [N].

    chunk_tokens > 0: length-aware execution (see config.ENGINE_CHUNK_TOKENS), the chunks run side by
    side on `threads` workers (0: one per core; the calling thread is one of them), each chunk on
    one core; 0: one call over the batch as padded, on `threads` cores. A row's logit depends only
    on that row, so it is the same whichever rows share its call or chunk (other candidates, other
    requests the batcher merged), up to float rounding (padding is masked), for FP32, static (QDQ)
    INT8 and `make int8`'s INT8, which quantizes activations with one scale per row
    (shoprank.convert.per_row). Not so for ONNX Runtime's plain dynamic INT8 (`shoprank int8
    --activations per-tensor`): its activation scale is taken over the whole call, so its scores
    move with the grouping and with the requests merged in (reports/isolation.md).
    """

    def __init__(self, onnx_path: str | Path, threads: int = config.ENGINE_THREADS,
                 chunk_tokens: int = config.ENGINE_CHUNK_TOKENS, spinning: bool = config.ENGINE_SPINNING,
                 disabled_optimizers: tuple[str, ...] = config.ENGINE_DISABLED_OPTIMIZERS):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.exists():
            raise FileNotFoundError(f"no ONNX engine at {self.path}")
        self.chunk_tokens = int(chunk_tokens)
        self.workers = engine_workers(threads) if self.chunk_tokens else 1
        # Chunks run side by side, one core each (config.ENGINE_THREADS says why); a session's
        # run() is safe to call from several threads at once.
        options = session_options(1 if self.chunk_tokens else threads, spinning)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=list(disabled_optimizers))
        # The calling thread scores chunks too, beside workers - 1 helpers: it is awake already,
        # where handing every chunk to a pool thread and sleeping until they finish adds a thread
        # wake at each end of the call (docs/benchmark.md, "What made it fast"). Chunks run at most
        # `workers` at a time, however many threads call at once.
        self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="engine") if self.workers > 1 else None
        self._cores = threading.BoundedSemaphore(self.workers)

    def _run(self, feeds: dict) -> np.ndarray:
        return self.session.run([config.ENGINE_OUTPUT], feeds)[0].reshape(-1).astype(np.float32)

    def logits(self, batch: dict) -> np.ndarray:
        feeds = {name: np.asarray(batch[name], dtype=config.ID_DTYPE) for name in config.ENGINE_INPUTS}
        rows = len(feeds[config.ENGINE_INPUTS[0]])
        if rows == 0:
            return np.zeros(0, np.float32)
        if not self.chunk_tokens:
            return self._run({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        lengths = row_lengths(feeds[config.ENGINE_INPUTS[1]])
        # A small request is still cut into one chunk per worker, so that every core has one.
        budget = min(self.chunk_tokens, max(int(lengths.max()), math.ceil(int(lengths.sum()) / self.workers)))
        chunks = length_chunks(lengths, budget)[::-1]   # longest first: the workers finish together

        out = np.empty(rows, dtype=np.float32)
        pending, lock = iter(chunks), threading.Lock()

        def score(idx: np.ndarray) -> None:
            width = int(lengths[idx[-1]])
            with self._cores:
                out[idx] = self._run({k: np.ascontiguousarray(v[idx, :width]) for k, v in feeds.items()})

        def score_pending() -> None:
            while True:
                with lock:
                    idx = next(pending, None)
                if idx is None:
                    return
                score(idx)

        first = next(pending)  # the caller's own, the longest: it starts before any helper wakes
        helpers = [self._pool.submit(score_pending) for _ in range(min(self.workers, len(chunks)) - 1)]
        score(first)
        score_pending()
        for helper in helpers:
            if not helper.cancel():  # one still queued behind other calls' helpers has nothing left
                helper.result()
        return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)
