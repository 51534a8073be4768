"""How far two explanation methods agree: Spearman rank correlation over a pair's words."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .words import PairAttribution


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two attribution vectors over the same words (nan when either is
    constant or there are fewer than 3 words: no order to compare)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"attributions over different words: {len(a)} vs {len(b)}")
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def agreement(first: Sequence[PairAttribution], second: Sequence[PairAttribution]) -> dict:
    """Per-pair Spearman between two methods' attributions of the same pairs, summarised."""
    values = np.array([spearman(x.scores(), y.scores()) for x, y in zip(first, second, strict=True)])
    kept = values[~np.isnan(values)]
    if not len(kept):
        return {"pairs": 0, "skipped": int(len(values))}
    return {"pairs": int(len(kept)), "skipped": int(len(values) - len(kept)),
            "mean": float(kept.mean()), "median": float(np.median(kept)),
            "q25": float(np.quantile(kept, 0.25)), "q75": float(np.quantile(kept, 0.75)),
            "share_positive": float((kept > 0).mean())}
