"""(query, product text) pair encoding, identical in training, export, serving and tests.

Uses the fast tokenizer's Rust core (`tokenizers`) directly: the Triton tokenizer model then
needs only `tokenizer.json`, and every caller truncates and pads the same way.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import config


def bucket_length(longest: int, buckets: Sequence[int] = config.SEQ_BUCKETS) -> int:
    """Smallest bucket holding `longest` tokens (the longest pair if beyond every bucket)."""
    for size in buckets:
        if longest <= size:
            return size
    return longest


def load_backend_tokenizer(model_dir: str | Path):
    """A `tokenizers.Tokenizer` from tokenizer.json, or converted from any HF tokenizer folder."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    return hf.backend_tokenizer


class PairEncoder:
    """Encodes one query against many product texts into int32 engine inputs."""

    def __init__(self, tokenizer, max_length: int = config.MAX_SEQ_LEN,
                 buckets: Sequence[int] | None = config.SEQ_BUCKETS):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        # Buckets above max_length are never needed; None pads to the longest pair.
        self.buckets = (None if buckets is None
                        else (*(b for b in buckets if b < self.max_length), self.max_length))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        padding = tokenizer.padding
        self.pad_id = padding["pad_id"] if padding else (tokenizer.token_to_id("[PAD]") or 0)

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs) -> PairEncoder:
        return cls(load_backend_tokenizer(model_dir), **kwargs)

    def encode_pairs(self, queries: Sequence[str], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Encode aligned (query, text) pairs; returns ENGINE_INPUTS -> int32 [N, L]."""
        pairs = [(q[: config.MAX_TEXT_CHARS], t[: config.MAX_TEXT_CHARS]) for q, t in zip(queries, texts)]
        encodings = self.tokenizer.encode_batch(pairs)
        longest = max((len(e.ids) for e in encodings), default=1)
        length = bucket_length(longest, self.buckets) if self.buckets else longest
        ids = np.full((len(encodings), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(encodings), length), dtype=np.int32)
        types = np.zeros((len(encodings), length), dtype=np.int32)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        input_ids, attention_mask, token_type_ids = config.ENGINE_INPUTS
        return {input_ids: ids, attention_mask: mask, token_type_ids: types}

    def encode(self, query: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Encode one query against each text."""
        return self.encode_pairs([query] * len(texts), texts)
