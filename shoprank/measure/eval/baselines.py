"""Baselines a ranker must beat, scored on the same rows as the variants: random order (every
metric averaged over RANDOM_SEEDS shuffles), BM25 on the product text, and the zero-shot base
model (cosine of mean-pooled embeddings, no fine-tuning)."""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...quality import metrics
from ...training.model import default_base_model

RANDOM_SEEDS = 10
BM25_K1, BM25_B = 1.2, 0.75
ZERO_SHOT_MAX_LENGTH = 128   # tokens per text for the bi-encoder baseline; titles are far shorter


_TOKEN = re.compile(r"\w+")


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits ("1/2-in." -> ["1", "2", "in"])."""
    return _TOKEN.findall(str(text).lower())


class BM25:
    """Okapi BM25 over a corpus of product texts (each distinct text is one document).

    score(q, d) = sum over distinct query terms t of
        idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))   (never negative; Lucene's form)
    with N documents, n_t of them containing t, |d| and avgdl in tokens.
    """

    def __init__(self, corpus: Sequence[str], k1: float = BM25_K1, b: float = BM25_B):
        docs = [bm25_tokens(t) for t in dict.fromkeys(corpus)]  # distinct texts, first-seen order
        if not docs:
            raise ValueError("BM25 needs at least one document")
        self.k1, self.b, self.n = k1, b, len(docs)
        self.avgdl = sum(len(d) for d in docs) / self.n or 1.0
        self.doc_freq = Counter(t for d in docs for t in set(d))

    def idf(self, term: str) -> float:
        n_t = self.doc_freq.get(term, 0)
        return math.log(1.0 + (self.n - n_t + 0.5) / (n_t + 0.5))

    def score(self, query: str, text: str) -> float:
        tokens = bm25_tokens(text)
        tf, norm = Counter(tokens), self.k1 * (1.0 - self.b + self.b * len(tokens) / self.avgdl)
        return float(sum(self.idf(t) * tf[t] * (self.k1 + 1.0) / (tf[t] + norm)
                         for t in dict.fromkeys(bm25_tokens(query)) if tf[t]))


def bm25_scores(df, k1: float = BM25_K1, b: float = BM25_B) -> np.ndarray:
    """BM25 of each row's query against its product text, idf over the frame's distinct texts."""
    model = BM25(df["text"].tolist(), k1, b)
    return np.array([model.score(q, t) for q, t in zip(df["query"], df["text"])], dtype=np.float64)


def mean_pooled_embeddings(texts: Sequence[str], model, tokenizer, batch_size: int = 128,
                           max_length: int = ZERO_SHOT_MAX_LENGTH) -> np.ndarray:
    """Mean of the last hidden states over the attention mask (sentence-transformers' pooling)."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).float().numpy())
    width = model.config.hidden_size
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def zero_shot_scores(df, base_model: str | Path | None = None) -> np.ndarray:
    """Cosine of the base encoder's mean-pooled query and product-text embeddings (no fine-tuning).
    Each distinct query and text is embedded once."""
    from transformers import AutoModel, AutoTokenizer

    base = str(base_model or default_base_model())
    tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    model = AutoModel.from_pretrained(base).eval()
    queries, q_pos = np.unique(df["query"].to_numpy(dtype=object).astype(str), return_inverse=True)
    texts, t_pos = np.unique(df["text"].to_numpy(dtype=object).astype(str), return_inverse=True)
    q_emb = _unit(mean_pooled_embeddings(queries.tolist(), model, tokenizer))
    t_emb = _unit(mean_pooled_embeddings(texts.tolist(), model, tokenizer))
    return np.einsum("ij,ij->i", q_emb[q_pos], t_emb[t_pos]).astype(np.float64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def random_metrics(df, seeds: int = RANDOM_SEEDS, k: int = 10) -> dict:
    """Every metric of evaluate() averaged over `seeds` random orders (seed i: the same shuffle
    as metrics.random_baseline, so NDCG equals it)."""
    runs = [metrics.evaluate(df, np.random.default_rng(seed).random(len(df)), k) for seed in range(seeds)]
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float) or value is None:
            values = [r[key] for r in runs if r[key] is not None]
            out[key] = float(np.mean(values)) if values else None
    return out
