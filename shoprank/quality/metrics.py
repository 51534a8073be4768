"""Ranking metrics over the query groups of a judgments frame (see shoprank.data).

Conventions, the same in every function:
  * Ranking = stable sort on -score: equal scores keep their original row order, so a metric
    never depends on how a sort happens to break ties.
  * NDCG uses LINEAR gain (the gain itself, not 2**gain - 1) and the log2(rank + 1) discount.
  * A metric that is undefined for a group (no relevant item, one class only) returns None,
    and `evaluate` leaves such groups out of that metric's mean instead of counting a 0.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from ..data.split import query_groups


def _ranked(scores) -> np.ndarray:
    """Positions in ranked order: best score first, ties by original position."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def dcg_at_k(gains_in_ranked_order, k: int) -> float:
    """Sum over the first k ranks of gain / log2(rank + 1), ranks counted from 1."""
    g = np.asarray(gains_in_ranked_order, dtype=np.float64)[:k]
    return float(np.sum(g / np.log2(np.arange(2, g.size + 2))))


def ndcg_at_k(scores, gains, k: int = 10) -> float | None:
    """DCG@k of the order given by scores / DCG@k of the best order; None if that is 0."""
    gains = np.asarray(gains, dtype=np.float64)
    ideal = dcg_at_k(np.sort(gains)[::-1], k)
    if ideal <= 0.0:
        return None  # no relevant item: every order is equally (un)good
    return dcg_at_k(gains[_ranked(scores)], k) / ideal


def mrr(scores, relevant) -> float | None:
    """1 / rank of the first relevant item in score order; None if nothing is relevant."""
    hits = np.flatnonzero(np.asarray(relevant, dtype=bool)[_ranked(scores)])
    return None if hits.size == 0 else 1.0 / (hits[0] + 1)


def precision_at_k(scores, relevant, k: int) -> float:
    """Share of relevant items among the top k.

    Divides by min(k, n): a query with fewer than k candidates is not punished for the
    items it does not have.
    """
    rel = np.asarray(relevant, dtype=bool)[_ranked(scores)][:k]
    return float(rel.mean()) if rel.size else 0.0


def roc_auc(scores, binary_labels) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting 1/2.

    Computed from average ranks (Mann-Whitney U), so tied scores get the tie's mean rank.
    None when only one class is present.
    """
    y = np.asarray(binary_labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(np.asarray(scores, dtype=np.float64))  # average ranks for ties
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def rmse(pred, target) -> float:
    """Root mean squared error."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d)))


def spearman(a, b) -> float | None:
    """Spearman rank correlation; None when it is undefined (fewer than 2 items or a constant side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(stats.spearmanr(a, b)[0])


def topk_overlap(scores_a, scores_b, k: int = 10) -> float:
    """Share of items the two top-k sets have in common (of min(k, n) items)."""
    n = min(k, len(scores_a))
    if n == 0:
        return 1.0
    top_a, top_b = _ranked(scores_a)[:n], _ranked(scores_b)[:n]
    return len(np.intersect1d(top_a, top_b)) / n


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def _max_gain(df) -> float:
    """The gain of label 1.0: from the loader's attrs, else read off the rows themselves."""
    if "max_gain" in df.attrs:
        return float(df.attrs["max_gain"])
    pos = df["label"].to_numpy() > 0
    if pos.any():
        return float(np.median(df["gain"].to_numpy()[pos] / df["label"].to_numpy()[pos]))
    return 1.0


def evaluate(df, scores, k: int = 10) -> dict:
    """Quality of `scores` (probabilities in [0, 1], one per row of df, same order).

    Per query with >= 2 judged products: mean "ndcg@{k}", "mrr" and "p@5" (the last two over
    queries with a relevant product). Pooled over all rows: "auc" (scores vs `relevant`),
    "rmse_label" (scores vs label) and, for graded data (max_gain > 1), "rmse_grade" in gain
    units (predicted gain = score * max_gain; for Home Depot that equals the RMSE of
    1 + 2 * score against the 1..3 relevance). "queries" counts the queries behind each mean.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(df),):
        raise ValueError(f"expected {len(df)} scores, got shape {scores.shape}")
    gains, relevant = df["gain"].to_numpy(), df["relevant"].to_numpy(dtype=bool)
    per = {f"ndcg@{k}": [], "mrr": [], "p@5": []}
    for _, idx in query_groups(df):
        if idx.size < 2:
            continue  # a single product has no ranking to judge
        s, rel = scores[idx], relevant[idx]
        nd = ndcg_at_k(s, gains[idx], k)
        if nd is not None:
            per[f"ndcg@{k}"].append(nd)
        if rel.any():
            per["mrr"].append(mrr(s, rel))
            per["p@5"].append(precision_at_k(s, rel, 5))
    out = {name: _mean(values) for name, values in per.items()}
    out["auc"] = roc_auc(scores, relevant)
    out["rmse_label"] = rmse(scores, df["label"].to_numpy()) if len(df) else None
    max_gain = _max_gain(df)
    if max_gain > 1 and len(df):
        out["rmse_grade"] = rmse(scores * max_gain, gains)
    out["queries"] = {name: len(values) for name, values in per.items()}
    out["rows"] = len(df)
    return out


def agreement(scores_a, scores_b, df, k: int = 10) -> dict:
    """How closely two scorers agree (e.g. FP32 vs FP16 engine): pooled "spearman",
    mean per-query "topk_overlap" (queries with >= 2 rows) and "max_abs_diff"."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.shape != (len(df),):
        raise ValueError(f"score shapes {a.shape} and {b.shape} do not match {len(df)} rows")
    overlaps = [topk_overlap(a[idx], b[idx], k) for _, idx in query_groups(df) if idx.size >= 2]
    return {
        "spearman": spearman(a, b),
        "topk_overlap": _mean(overlaps),
        "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
    }


def per_query_ndcg(df, scores, k: int = 10) -> np.ndarray:
    """NDCG@k of each query with >= 2 rows, NaN where undefined (zero ideal DCG): the values
    whose mean is evaluate's "ndcg@k", in query_groups order."""
    scores = np.asarray(scores, dtype=np.float64)
    gains = df["gain"].to_numpy()
    out = [ndcg_at_k(scores[idx], gains[idx], k) for _, idx in query_groups(df) if idx.size >= 2]
    return np.array([np.nan if v is None else v for v in out], dtype=np.float64)


def ndcg_difference(df, scores_ref, scores, k: int = 10, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean NDCG@k of `scores` minus `scores_ref` over the same queries, with a 95% paired
    bootstrap interval (queries resampled with replacement). With ~6 judged products a query,
    per-query NDCG varies a lot: on ~800 queries two equally good rankers differ by up to
    ~0.003, and the interval says whether a difference is more than that."""
    diff = per_query_ndcg(df, scores, k) - per_query_ndcg(df, scores_ref, k)
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return {"mean": None, "low": None, "high": None, "queries": 0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "queries": int(diff.size)}


def random_baseline(df, k: int = 10, seeds: int = 10) -> float | None:
    """Mean NDCG@k of random orders (averaged over `seeds` shuffles): the floor a model must beat."""
    results = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        results.append(evaluate(df, rng.random(len(df)), k)[f"ndcg@{k}"])
    results = [r for r in results if r is not None]
    return _mean(results)
