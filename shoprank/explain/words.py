"""Words of a (query, product) pair: what both explanation methods attribute to.

A word is a whitespace-separated piece of the text, as a merchandiser reads it; sub-word tokens
are summed into the word they came from (integrated_gradients), and occlusion removes whole words.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FIELDS = ("query", "text")
# The served tokenizer refuses an empty query, so removing a one-word query's only word leaves
# this placeholder instead (the BERT tokenizers map it to their mask token).
EMPTY_QUERY = "[MASK]"
_WORD = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each word."""
    return [m.span() for m in _WORD.finditer(text)]


def split_words(text: str) -> list[str]:
    return [text[a:b] for a, b in word_spans(text)]


def join_words(words: Sequence[str], field_name: str) -> str:
    joined = " ".join(words)
    return joined if joined or field_name != "query" else EMPTY_QUERY


@dataclass
class PairAttribution:
    """Word attributions of one (query, product) pair, in logit units: how much the pair's
    logit drops (positive) or rises (negative) because of each word."""

    query: str
    text: str
    query_scores: np.ndarray
    text_scores: np.ndarray
    logit: float
    method: str
    extra: dict = field(default_factory=dict)  # method-specific facts (IG: convergence delta, steps)

    @property
    def query_words(self) -> list[str]:
        return split_words(self.query)

    @property
    def text_words(self) -> list[str]:
        return split_words(self.text)

    def words(self) -> list[tuple[str, int, str]]:
        """(field, position in that field, word) for every word, query first: the order of scores()."""
        return ([("query", i, w) for i, w in enumerate(self.query_words)]
                + [("text", i, w) for i, w in enumerate(self.text_words)])

    def scores(self) -> np.ndarray:
        return np.concatenate([self.query_scores, self.text_scores]).astype(np.float64)

    def top_words(self, count: int = 3) -> list[tuple[str, str, float]]:
        """The `count` words with the largest attribution: (field, word, attribution)."""
        words, scores = self.words(), self.scores()
        order = np.argsort(-scores, kind="stable")[:count]
        return [(words[i][0], words[i][2], float(scores[i])) for i in order]

    def to_dict(self) -> dict:
        return {"query": self.query, "text": self.text, "logit": self.logit, "method": self.method,
                "query_words": [{"word": w, "attribution": float(s)}
                                for w, s in zip(self.query_words, self.query_scores)],
                "text_words": [{"word": w, "attribution": float(s)}
                               for w, s in zip(self.text_words, self.text_scores)],
                **({"extra": self.extra} if self.extra else {})}

    @classmethod
    def from_dict(cls, data: dict) -> PairAttribution:
        return cls(data["query"], data["text"],
                   np.array([w["attribution"] for w in data["query_words"]], dtype=np.float64),
                   np.array([w["attribution"] for w in data["text_words"]], dtype=np.float64),
                   float(data["logit"]), data.get("method", ""), dict(data.get("extra", {})))
