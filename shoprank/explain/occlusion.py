"""Word-level leave-one-out, pure numpy over a scoring callable.

score_group(query, texts) -> logits [len(texts)] is one rank request's worth of work (one query,
many products), so the served `explain` model runs it as tokenizer -> ranker -> sorter calls and
the attribution is of whatever production computes, on any engine. Removing a word of a product
changes only that row; removing a query word changes every row, so a request of N products with
Q query words costs 1 + Q calls and N + sum(product words) + Q * N scored pairs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .words import PairAttribution, join_words, split_words

ScoreGroup = Callable[[str, Sequence[str]], np.ndarray]


def without(words: Sequence[str], position: int, field_name: str) -> str:
    return join_words([w for i, w in enumerate(words) if i != position], field_name)


def occlusion_groups(query: str, texts: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The rank requests occlusion needs: the query against every text and every product variant,
    then each query variant against the texts. Independent: a server may score them at once."""
    texts = list(texts)
    variants = [without(words, i, "text") for words in map(split_words, texts) for i in range(len(words))]
    query_words = split_words(query)
    return [(query, texts + variants)] + [(without(query_words, i, "query"), texts) for i in range(len(query_words))]


def attributions(query: str, texts: Sequence[str], logits: Sequence[np.ndarray]) -> list[PairAttribution]:
    """Attributions from the logits of occlusion_groups(query, texts), in that order: base logit
    minus the logit with the word removed, one PairAttribution per text, in order."""
    texts = list(texts)
    text_words = [split_words(t) for t in texts]
    first = np.asarray(logits[0], dtype=np.float64).reshape(-1)
    expected = len(texts) + sum(map(len, text_words))
    if len(first) != expected:
        raise ValueError(f"the first group has {len(first)} logits for {expected} texts")
    base, rest = first[:len(texts)], first[len(texts):]
    query_scores = np.stack([base - np.asarray(g, dtype=np.float64).reshape(-1) for g in logits[1:]], axis=1) \
        if len(logits) > 1 else np.zeros((len(texts), 0))
    out, start = [], 0
    for row, (text, words) in enumerate(zip(texts, text_words)):
        text_scores = base[row] - rest[start:start + len(words)]
        start += len(words)
        out.append(PairAttribution(query, text, query_scores[row].copy(), text_scores, float(base[row]),
                                   "occlusion"))
    return out


def occlusion(query: str, texts: Sequence[str], score_group: ScoreGroup) -> list[PairAttribution]:
    """Attributions of every word of the query and of each product, the groups scored one by one."""
    return attributions(query, texts, [score_group(q, ts) for q, ts in occlusion_groups(query, texts)])
