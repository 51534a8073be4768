"""The systems `make bench` measures, each behind one interface (System: a factory of rank
functions, one per client thread): what a user would run (naive PyTorch, sentence-transformers'
CrossEncoder), our bare engine without a server, and our Triton ensemble. Infinity: infinity.py."""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import config
from ...serving.client import RankClient, scores_in_request_order
from ...serving.engine import OrtEngine, sigmoid
from ...serving.server import run_triton
from ...serving.sorter import rank_logits
from ...serving.tokenizer import PairEncoder
from ...serving.triton.repository import build_repository

RankFn = Callable[[str, Sequence[str]], tuple[np.ndarray, np.ndarray]]
"""(query, texts) -> (positions best first, a score per text in the texts' order)."""


@dataclass
class System:
    key: str                    # stable id, e.g. "triton-int8-grpc" (bench.json keys)
    label: str                  # table text
    kind: str                   # "in-process" | "server"
    engine: str                 # "fp32", "int8", ... for overhead pairs
    make_client: Callable[[], RankFn]  # one per client thread (a connection for servers)
    close: Callable[[], None] = lambda: None
    server_pids: Callable[[], list[int]] = lambda: []
    notes: list[str] = field(default_factory=list)
    # Cumulative server-side time per step (e.g. Triton's per-model statistics), or None.
    step_stats: Callable[[], dict] | None = None


def order_by_score(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")


def naive_pytorch(model_dir: Path, max_length: int) -> System:
    """What a user writes first: tokenizer + FP32 model + sort, default settings."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()

    def rank(query, texts):
        batch = tokenizer([query] * len(texts), list(texts), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits.reshape(-1)
        order = torch.argsort(logits, descending=True).numpy()
        return order, sigmoid(logits.numpy())

    return System("naive-pytorch", "naive PyTorch FP32 (HF)", "in-process", "torch-fp32", lambda: rank)


def crossencoder(model_dir: Path, max_length: int) -> System:
    """sentence-transformers CrossEncoder.predict with its defaults (batch_size 32)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), max_length=max_length, device="cpu")

    def rank(query, texts):
        scores = np.asarray(model.predict([(query, t) for t in texts], show_progress_bar=False), dtype=np.float32)
        return order_by_score(scores), scores

    return System("crossencoder", "sentence-transformers CrossEncoder", "in-process", "torch-fp32", lambda: rank)


def bare_engine(model_dir: Path, max_length: int, onnx_path: Path, engine: str) -> System:
    """Our engine without any server: the floor Triton's overhead is measured against."""
    encoder = PairEncoder.from_dir(model_dir, max_length=max_length)
    ort_engine = OrtEngine(onnx_path)

    def rank(query, texts):
        logits = ort_engine.logits(encoder.encode(query, texts))
        order, _ = rank_logits(logits, 0)
        return order, sigmoid(logits)

    return System(f"ort-{engine}-inprocess", f"bare engine ORT {engine.upper()} (in-process)", "in-process",
                  engine, lambda: rank)


class TritonVariant:
    """Our ensemble serving one engine file from a repository of its own; `start` runs it (through
    serving.server.run_triton) until `stop`."""

    def __init__(self, model_dir: Path, onnx_path: Path, engine: str, ports: tuple[int, int, int],
                 work_dir: Path, cache_bytes: int = 0, **render_kwargs):
        self.model_dir, self.onnx_path, self.engine = model_dir, onnx_path, engine
        self.ports, self.work_dir, self.render_kwargs = ports, work_dir, render_kwargs
        self.cache_bytes = cache_bytes  # Triton's response cache (head-heavy rows: cache.py)
        self.name = f"{engine}-cache" if cache_bytes else engine
        self._running = contextlib.ExitStack()
        self.server = None

    def start(self) -> None:
        repo = self.work_dir / f"repo-{self.name}"
        shutil.rmtree(repo, ignore_errors=True)
        build_repository(self.model_dir, self.onnx_path, repo, target="python", **self.render_kwargs)
        folder = self.work_dir / f"triton-{self.name}"
        (folder / "tritonserver.log").unlink(missing_ok=True)
        self.server = self._running.enter_context(run_triton(repo, work_dir=folder, ports=self.ports,
                                                             cache_bytes=self.cache_bytes))
        self.endpoints = self.server.endpoints

    def stop(self) -> None:
        self._running.close()
        self.server = None

    def system(self, protocol: str) -> System:
        url = self.endpoints.grpc if protocol == "grpc" else self.endpoints.http

        def make_client():
            client = RankClient(url, protocol)

            def rank(query, texts):
                indices, scores = client.infer_raw(query, texts, 0)
                return indices, scores_in_request_order(indices, scores, len(texts))

            return rank

        cached = ", response cache" if self.cache_bytes else ""
        label = f"Triton ensemble ORT {self.engine.upper()}{cached} ({protocol})"
        return System(f"triton-{self.name}-{protocol}", label,
                      "server", self.engine, make_client, server_pids=lambda: [self.server.pid] if self.server else [],
                      step_stats=self.step_stats)

    def step_stats(self) -> dict:
        """Triton's cumulative statistics per model: requests, executions and ns spent queued
        and computing (input, infer, output)."""
        import tritonclient.grpc as api

        client = api.InferenceServerClient(self.endpoints.grpc)
        out = {}
        try:
            for model in (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL):
                stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
                inference = stats["inference_stats"]
                out[model] = {"requests": int(inference["success"]["count"]),
                              "success": int(inference["success"]["ns"]),
                              "executions": int(stats.get("execution_count", 0)),
                              **{k: int(inference[k]["ns"]) for k in
                                 ("queue", "compute_input", "compute_infer", "compute_output")}}
        finally:
            client.close()
        return out
