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
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    order = np.argsort(-logits, kind="stable")
    if top_k:
        order = order[:top_k]
    return order.astype(np.int32), sigmoid(logits[order])
