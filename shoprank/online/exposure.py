"""Exposure-aware brand affinity: a shopper's clicks on a brand against how many clicks the brand's
shown items would have drawn from an average shopper, shrunk toward "no preference" by
empirical Bayes. A candidate feature of the late-fusion head, measured by `make personalize`
(design "exposure"); it needs the pages a shopper was SHOWN, which the profile store does not
hold (docs/personalization.md says what serving it would take).

Per shopper and brand (features.behaviour.brand_of of the title), over their logged pages:
    C_b  the clicks on the brand's items
    E_b  the expected clicks of the brand's shown items: Σ θ_position × ĉ(item), θ the
         examination propensities (online.propensities), ĉ the examined click rate of items
         whose cross-encoder logit lies in the same quantile bin (LOGIT_BINS), from the
         training days' log: an average shopper's click chance once the item is examined
A Gamma(a, a)-Poisson model, C_b ~ Poisson(λ_b E_b), λ_b ~ Gamma(a, a) (mean 1: most brands are
not favourites), gives the posterior mean lift (C_b + a) / (E_b + a); the feature is its log
(0 for a brand never shown; negative for a brand shown and passed over). The strength a is the
one of A_GRID that maximizes the marginal (negative binomial) likelihood of the training days'
(shopper, brand) counts: the population, not a hand, says how much one shopper's clicks mean.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..features.behaviour import Profile, brand_of

LOGIT_BINS = 10
A_GRID = tuple(2.0 ** j for j in range(-2, 13))   # 0.25 ... 4096
EXPOSURE_FEATURES = ("brand_exposure_lift",)


def click_rate_bins(logits: np.ndarray, positions: np.ndarray, clicked: np.ndarray, theta: np.ndarray,
                    bins: int = LOGIT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, examined click rate per bin) from logged shown items: clicks / Σ θ_position."""
    logits = np.asarray(logits, np.float64)
    edges = np.unique(np.quantile(logits, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, logits)
    exam = np.asarray(theta, np.float64)[np.minimum(np.asarray(positions), len(theta) - 1)]
    clicks = np.bincount(which, weights=np.asarray(clicked, np.float64), minlength=len(edges) + 1)
    examined = np.bincount(which, weights=exam, minlength=len(edges) + 1)
    return edges, np.clip(clicks / np.maximum(examined, 1e-9), 0.0, 1.0)


def history_counts(logged: Iterable, logits_of, edges: np.ndarray, rates: np.ndarray, theta: np.ndarray):
    """Yields (item, {brand: [C_b, E_b]}) for every request of `logged` in time order: the counts of
    the request's shopper from their pages before it. `logits_of(item)`: the cross-encoder's logits
    of the request's candidates; items: personalize.Logged."""
    state: dict[str, dict[str, list]] = {}
    for item in sorted(logged, key=lambda it: it.request.ts):
        r = item.request
        counts = state.setdefault(r.user, {})
        yield item, {b: list(v) for b, v in counts.items()}
        logits = logits_of(item)
        for pos, i in enumerate(item.shown):
            cell = counts.setdefault(brand_of(r.query.texts[i]), [0.0, 0.0])
            cell[0] += float(pos in item.clicked)
            cell[1] += float(theta[min(pos, len(theta) - 1)]) * float(rates[np.searchsorted(edges, logits[i])])


def choose_strength(counts: Iterable[tuple[float, float]], grid: tuple = A_GRID) -> float:
    """The a of `grid` maximizing Σ log NB(C | E, a) over (C, E) pairs, the marginal likelihood of
    C ~ Poisson(λ E), λ ~ Gamma(a, a)."""
    pairs = np.array([(c, e) for c, e in counts if e > 0], np.float64).reshape(-1, 2)
    if not len(pairs):
        return grid[len(grid) // 2]
    c, e = pairs[:, 0], pairs[:, 1]
    lgamma = np.vectorize(math.lgamma)

    def loglik(a: float) -> float:
        return float(np.sum(lgamma(c + a) - math.lgamma(a) + a * np.log(a / (a + e)) + c * np.log(e / (a + e))))
    return max(grid, key=loglik)


def exposure_features(profile: list, counts: dict, texts, a: float) -> np.ndarray:
    """[len(texts), 1]: log((C_b + a) / (E_b + a)) of each candidate's brand; all zeros for a
    profile the behaviour features call empty (features.behaviour.MIN_PRODUCTS: cold start)."""
    out = np.zeros((len(texts), len(EXPOSURE_FEATURES)), np.float32)
    if Profile(profile).empty:
        return out
    for j, text in enumerate(texts):
        c, e = counts.get(brand_of(text), (0.0, 0.0))
        out[j, 0] = math.log((c + a) / (e + a))
    return out
