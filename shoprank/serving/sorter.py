"""Final ordering of scored candidates: the sorter step of the ensemble.

Kept apart from the Triton glue so business rules (filters, diversity, expected revenue) can be
added here and unit-tested without a server.
"""
from __future__ import annotations

import numpy as np

from .engine import sigmoid


def rank_logits(logits: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices best first, click probabilities) cut to top_k (0 = all).

    Ties keep the candidates' original order (stable sort), so results are deterministic.
    """
    indices, scores, _ = ranked(logits, top_k)
    return indices, scores


def ranked(logits: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rank_logits' (indices, scores) and every candidate's click probability in request order
    (the sorter's score histogram): the sigmoid runs once."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    order = np.argsort(-logits, kind="stable")
    if top_k:
        order = order[:top_k]
    probabilities = sigmoid(logits)
    return order.astype(np.int32), probabilities[order], probabilities
