"""The variants `make eval` scores: one model as PyTorch, as each ONNX engine, as TensorRT plans
and through the served ensemble. Each scores every row of the evaluated frame; engines one call
per query with its judged products, tokenized and padded as served."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import config
from ...data.split import query_groups
from ...model_card import model_max_length
from ...quality.gate import engine_rank_one, logits_as_served
from ...serving.client import RankClient, scores_in_request_order
from ...serving.engine import sigmoid
from ...serving.server import Endpoints, run_triton
from ...serving.tokenizer import PairEncoder
from ...serving.triton.repository import build_repository
from ...training.model import load_cross_encoder, predict_logits, predict_probs, torch_logits


@dataclass
class Variant:
    key: str
    label: str
    score: Callable[[object], np.ndarray]  # frame -> probability per row
    rank_one: Callable[[str, list], np.ndarray] | None = None  # one request, for latency
    note: str = ""


def pytorch_variant(model_dir: Path, head: bool = False) -> Variant:
    model = load_cross_encoder(model_dir).eval()
    # As in training: pad to the longest pair of each batch.
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir), buckets=None)
    plain = Variant("pytorch-fp32", "PyTorch FP32", lambda df: predict_probs(model, encoder, df),
                    lambda q, texts: torch_logits(model, encoder.encode(q, texts)))
    return head_variant(model_dir, plain, lambda df: predict_logits(model, encoder, df)) if head else plain


def onnx_variant(model_dir: Path, onnx_path: Path, key: str, label: str, head: bool = False) -> Variant:
    rank_one = engine_rank_one(model_dir, onnx_path)
    plain = Variant(key, label, lambda df: sigmoid(logits_as_served(df, rank_one)), rank_one, note=str(onnx_path))
    return head_variant(model_dir, plain, lambda df: logits_as_served(df, rank_one)) if head else plain


def tensorrt_variant(model_dir: Path, plan: Path, key: str, label: str) -> Variant:
    """A TensorRT plan run through polygraphy's TrtRunner (NVIDIA GPU only)."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
    runner = TrtRunner(EngineFromBytes(BytesFromPath(str(plan))))
    runner.activate()

    def logits(batch):
        feeds = {n: np.ascontiguousarray(batch[n], dtype=config.ID_DTYPE) for n in config.ENGINE_INPUTS}
        return np.asarray(runner.infer(feeds)[config.ENGINE_OUTPUT], dtype=np.float32).reshape(-1)

    def rank_one(query, texts):
        return logits(encoder.encode(query, texts))

    return Variant(key, label, lambda df: sigmoid(logits_as_served(df, rank_one)), rank_one, note=str(plan))


def head_variant(model_dir: Path, base: Variant, logits_of: Callable[[object], np.ndarray]) -> Variant:
    """`base` (its logits per row: logits_of(df); per request: base.rank_one) with the model's
    scoring head on top, the features computed per query as the tokenizer step does."""
    from ...features.index import LexicalIndex
    from ...features.pairs import pair_features
    from ...serving.head import ScoringHead, head_dir
    from ...training.head_build import frame_features

    folder = head_dir(model_dir)
    head, index = ScoringHead.load(folder), LexicalIndex.load(folder)

    def score(df):
        return sigmoid(head.logits(logits_of(df), frame_features(index, df)))

    def rank_one(query, texts):
        return head.logits(base.rank_one(query, texts), pair_features(index, query, texts))

    return Variant(f"{base.key}+head", f"{base.label} + scoring head", score, rank_one,
                   note=f"{head.meta.get('architecture', '')} head over {len(head.feature_names)} features")


def served_scores(df, url: str, protocol: str = "grpc") -> np.ndarray:
    """One request per query with all its judged products (TOP_K 0); each returned score is put
    back on its row through INDICES, so the order the server returns cannot hide a bug."""
    texts = df["text"].to_numpy(dtype=object)
    out = np.full(len(df), np.nan, dtype=np.float64)
    with RankClient(url, protocol) as client:
        for query, idx in query_groups(df):
            for start in range(0, len(idx), config.MAX_CANDIDATES):
                part = idx[start:start + config.MAX_CANDIDATES]
                indices, scores = client.infer_raw(query, texts[part].tolist(), 0)
                if sorted(indices.tolist()) != list(range(len(part))):
                    raise RuntimeError(f"server returned INDICES {indices.tolist()} for {len(part)} candidates "
                                       f"of query {query!r}")
                out[part] = scores_in_request_order(indices, scores, len(part))
    return out


def served_variant(url: str, label: str, protocol: str = "grpc", note: str = "") -> Variant:
    client = RankClient(url, protocol)

    def rank_one(query, texts):
        return client.infer_raw(query, texts, 0)[1]

    return Variant("served", label, lambda df: served_scores(df, url, protocol), rank_one, note)


@contextlib.contextmanager
def self_served(model_dir: Path, engine_path: Path, work_dir: Path,
                ports: Sequence[int] | None = None) -> Iterator[Endpoints]:
    """A tritonserver of our own, serving `engine_path` through the ensemble, for the duration."""
    repo = build_repository(model_dir, engine_path, Path(work_dir) / "model_repository", target="python")
    with run_triton(repo, work_dir=work_dir, ports=tuple(ports) if ports else None) as server:
        yield server.endpoints
