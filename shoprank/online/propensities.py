"""Position bias and the training pairs learnt from logs.

Position bias. Shoppers click what they see, and they see the top of the page most. We use
the examination model P(click at position k) = theta_k * P(click | examined):

  * Propensities theta_k come from the exploration traffic, a small share of requests shown
    in a random order (RankClient(explore_share=...), `randomized` = 1 in the store). Under a
    random order every position holds the same mix of products, so the click rate at position k
    is c * theta_k. We fit theta_k = (k + 1) ** -eta (theta_0 = 1) by maximum likelihood over
    the clicks per position (one parameter: stable with a few hundred randomized pages, where
    per-position rates are noise), floored at PROPENSITY_FLOOR.
  * Inverse-propensity labels: a (query, product) pair with clicks C over impressions at
    positions k_i is labelled C / E with E = sum(theta_k_i), its expected number of examinations
    -- each click counts 1 / theta_k impressions, the self-normalised inverse-propensity
    ("clicks over expected clicks") estimate of P(click | examined) -- and trained with weight E:
    weighted BCE then is C * log-loss(positive) + (E - C) * log-loss(negative), so an unclicked
    impression counts as negative evidence only as far as it was likely seen (theta_k), and a
    click counts fully wherever it was. When C > E (lucky clicks low on the page), label 1 and
    weight C: bounded, never a negative weight. Its expectation is P(click | examined), the
    quantity the model was first trained on (clicks under random order).
  * The naive variant sets every theta to 1: label = clicks / impressions, weight = impressions.
    It learns theta_k * relevance, so whatever the model already shows high looks relevant and
    whatever it shows low looks irrelevant -- it learns to repeat its own ranking.

Any event (click, add_to_cart, purchase) at a shown position makes it a positive.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

PROPENSITY_FLOOR = 0.05    # smallest examination propensity: bounds how little a low impression counts
MIN_RANDOMIZED_CLICKS = 20  # fewer clicks on randomized traffic: propensities are not estimated


def _clicked(shown: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """shown rows with `clicked` (any event at that position of that request)."""
    hits = events[["request_id", "position"]].drop_duplicates().assign(clicked=1)
    out = shown.merge(hits, on=["request_id", "position"], how="left")
    out["clicked"] = out["clicked"].fillna(0).astype(np.int64)
    return out


def position_ctr(impressions: pd.DataFrame, shown: pd.DataFrame, events: pd.DataFrame,
                 randomized: bool | None = True) -> pd.DataFrame:
    """Per shown position: impressions, clicks, ctr (of randomized traffic only by default)."""
    if randomized is not None:
        keep = impressions.loc[impressions["randomized"] == int(randomized), "request_id"]
        shown = shown[shown["request_id"].isin(keep)]
    table = _clicked(shown, events).groupby("position")["clicked"].agg(["count", "sum"])
    table = table.rename(columns={"count": "impressions", "sum": "clicks"})
    table["ctr"] = table["clicks"] / table["impressions"]
    return table.reset_index()


def estimate_propensities(impressions, shown, events, floor: float = PROPENSITY_FLOOR,
                          min_clicks: int = MIN_RANDOMIZED_CLICKS) -> np.ndarray:
    """theta[k] = (k + 1) ** -eta for k = 0..max shown position, eta by maximum likelihood on the
    randomized impressions (see module doc)."""
    table = position_ctr(impressions, shown, events, randomized=True)
    clicks = int(table["clicks"].sum()) if len(table) else 0
    if clicks < min_clicks:
        raise ValueError(f"not enough exploration traffic to estimate position bias: {clicks} clicks on "
                         f"randomized impressions (need >= {min_clicks}); raise the client's explore_share, "
                         "wait for more traffic, or pass fixed propensities")
    eta = fit_power_law(table["position"].to_numpy(), table["impressions"].to_numpy(), table["clicks"].to_numpy())
    positions = np.arange(int(table["position"].max()) + 1)
    return np.clip((positions + 1.0) ** -eta, floor, 1.0)


ETA_GRID = np.linspace(0.0, 3.0, 601)


def fit_power_law(positions, impressions, clicks, etas=ETA_GRID) -> float:
    """eta maximising sum_k clicks_k log p_k + (n_k - clicks_k) log(1 - p_k), p_k = c (k+1)^-eta,
    with c at its maximum-likelihood value for each eta (a grid: one parameter, no optimiser)."""
    k, n, c = (np.asarray(a, dtype=np.float64) for a in (positions, impressions, clicks))
    best, best_ll = 0.0, -np.inf
    for eta in etas:
        shape = (k + 1.0) ** -eta
        scale = min(c.sum() / max((n * shape).sum(), 1e-12), 1.0 / shape.max() - 1e-9)
        p = np.clip(scale * shape, 1e-12, 1 - 1e-12)
        ll = float((c * np.log(p) + (n - c) * np.log1p(-p)).sum())
        if ll > best_ll:
            best, best_ll = float(eta), ll
    return best


def log_pairs(impressions: pd.DataFrame, shown: pd.DataFrame, events: pd.DataFrame,
              propensities: np.ndarray | None = None, floor: float = PROPENSITY_FLOOR) -> pd.DataFrame:
    """One row per (query, product text): label, weight, impressions, clicks, examinations.

    propensities None: naive (every theta 1). Otherwise label = clicks / max(E, clicks) and
    weight = max(E, clicks), E = the sum of theta over the pair's impressions (module doc);
    positions beyond the estimated curve use its last value."""
    rows = _clicked(shown, events).merge(impressions[["request_id", "query"]], on="request_id")
    if propensities is None:
        rows["theta"] = 1.0
    else:
        theta = np.maximum(np.asarray(propensities, dtype=np.float64), floor)
        rows["theta"] = theta[np.minimum(rows["position"].to_numpy(), len(theta) - 1)]
    pairs = rows.groupby(["query", "text"], sort=False).agg(
        impressions=("clicked", "size"), clicks=("clicked", "sum"), examinations=("theta", "sum")).reset_index()
    weight = np.maximum(pairs["examinations"].to_numpy(), pairs["clicks"].to_numpy())
    pairs["label"] = (pairs["clicks"].to_numpy() / weight).astype(np.float32)
    pairs["weight"] = weight
    return pairs
