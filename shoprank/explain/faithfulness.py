"""Deletion curves: does removing the words an explanation ranks highest hurt the score most?

For each pair the words (query and product together) are removed cumulatively in three orders
(top-attributed first, a random order, least-attributed first) and the pair is rescored after
each removal. The curve is the logit change from the full pair against the fraction of words
removed; its area (trapezoid over [0, 1]) is the number: a faithful explanation's top-first
area is well below random's, and least-first above it. An explanation that does not explain
shows up as top-first ≈ random.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .words import PairAttribution, join_words

ORDERS = ("top_first", "random", "least_first")
CURVE_POINTS = np.linspace(0.0, 1.0, 11)  # where mean curves are reported
ScorePairs = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # aligned (query, text) -> logits


def deletion_order(scores: np.ndarray, order: str, rng: np.random.Generator) -> np.ndarray:
    if order == "top_first":
        return np.argsort(-scores, kind="stable")
    if order == "least_first":
        return np.argsort(scores, kind="stable")
    if order == "random":
        return rng.permutation(len(scores))
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def deletion_steps(attribution: PairAttribution, removal: np.ndarray) -> list[tuple[str, str]]:
    """(query, text) after removing the first k words of `removal`, k = 0..all."""
    words = attribution.words()
    gone: set[int] = set()
    steps = []
    for k in range(len(words) + 1):
        if k:
            gone.add(int(removal[k - 1]))
        kept = [(f, w) for i, (f, _, w) in enumerate(words) if i not in gone]
        steps.append((join_words([w for f, w in kept if f == "query"], "query"),
                      join_words([w for f, w in kept if f == "text"], "text")))
    return steps


def area(curve: np.ndarray) -> float:
    x = np.linspace(0.0, 1.0, len(curve))
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(x)) / 2.0)


def deletion_curves(attributions: Sequence[PairAttribution], score_pairs: ScorePairs, seed: int = 0,
                    random_repeats: int = 2) -> dict:
    """Mean area and mean curve per order over all pairs (pairs without words are skipped).
    Every variant of every pair is scored in one score_pairs call."""
    rng = np.random.default_rng(seed)
    plans = []  # (order, pair index, first row, step count)
    queries: list[str] = []
    texts: list[str] = []
    for index, attribution in enumerate(attributions):
        scores = attribution.scores()
        if not len(scores):
            continue
        for order in ORDERS:
            for _ in range(random_repeats if order == "random" else 1):
                steps = deletion_steps(attribution, deletion_order(scores, order, rng))
                plans.append((order, index, len(queries), len(steps)))
                queries += [q for q, _ in steps]
                texts += [t for _, t in steps]
    logits = np.asarray(score_pairs(queries, texts), dtype=np.float64).reshape(-1) if queries else np.zeros(0)
    areas: dict[str, list[float]] = {o: [] for o in ORDERS}
    curves: dict[str, list[np.ndarray]] = {o: [] for o in ORDERS}
    for order, _, start, count in plans:
        curve = logits[start:start + count] - logits[start]
        areas[order].append(area(curve))
        curves[order].append(np.interp(CURVE_POINTS, np.linspace(0.0, 1.0, count), curve))
    return {"pairs": len({i for _, i, _, _ in plans}), "scored_pairs": len(queries),
            "auc": {o: float(np.mean(areas[o])) for o in ORDERS if areas[o]},
            "auc_sem": {o: float(np.std(areas[o], ddof=1) / np.sqrt(len(areas[o]))) for o in ORDERS
                        if len(areas[o]) > 1},
            "curve_x": CURVE_POINTS.tolist(),
            "curve": {o: np.mean(curves[o], axis=0).tolist() for o in ORDERS if curves[o]}}
