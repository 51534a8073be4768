"""Catalog features of the personal head: what it would gain if the sorter saw each candidate's
catalog attributes (price, category) and those of the products the shopper clicked. Measured by
`make personalize` (design "catalog"); not served: the personal head reads behaviour text only,
and catalog attributes reach the sorter only with CANDIDATE_IDS for business rules
(docs/personalization.md).

Per candidate, with d = log price − the median log price of its category in the catalog and s
the spread (standard deviation) of log prices there:
    price_typical    exp(-d² / 2s²): how ordinary the price is for its kind of product; the same
                     for every shopper (the population's price band)
    price_affinity   exp(-(d − m)² / 2s²), m the shopper's price level: the mean d of the products
                     they clicked, shrunk toward 0 (the category's median) by empirical Bayes,
                     m = Σ d / (n + k), k = within-shopper variance / between-shopper variance of
                     the clicked d on the training days (method of moments)
    category_share   the share of the shopper's clicked products in the candidate's category,
                     add-one smoothed over the catalog's categories: (n_c + 1) / (n + C)
Both are zero for a profile the behaviour features call empty (features.behaviour.MIN_PRODUCTS),
so a cold start keeps today's scores.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..features.behaviour import Profile

CATALOG_FEATURES = ("price_typical", "price_affinity", "category_share")


class PriceScale:
    """Median and spread of log prices per category of the catalog (`products`: text -> row)."""

    def __init__(self, products: dict):
        by_category: dict[str, list] = {}
        for row in products.values():
            if row["price"] and row["price"] > 0:
                by_category.setdefault(row["category"], []).append(math.log(row["price"]))
        self.median = {c: float(np.median(v)) for c, v in by_category.items()}
        self.spread = {c: max(float(np.std(v)), 1e-3) for c, v in by_category.items()}
        self.products = products

    def deviation(self, text: str) -> float | None:
        row = self.products.get(text)
        if row is None or not row["price"] or row["price"] <= 0 or row["category"] not in self.median:
            return None
        return math.log(row["price"]) - self.median[row["category"]]


def clicked_deviations(scale: PriceScale, profile: list) -> list[float]:
    return [d for kind, text in profile if kind == "click" and (d := scale.deviation(text)) is not None]


def clicked_categories(scale: PriceScale, profile: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, text in profile:
        if kind == "click" and text in scale.products:
            category = scale.products[text]["category"]
            out[category] = out.get(category, 0) + 1
    return out


def choose_shrinkage(per_shopper: Iterable[list[float]]) -> float:
    """k = within / between variance of the shoppers' clicked price deviations (shoppers with at
    least 2 clicks); a large k when the shoppers' levels do not differ beyond their noise."""
    groups = [np.asarray(g) for g in per_shopper if len(g) >= 2]
    if not groups:
        return 1.0
    within = float(np.mean([g.var(ddof=1) for g in groups]))
    means = np.array([g.mean() for g in groups])
    between = float(means.var(ddof=1) - within * np.mean([1.0 / len(g) for g in groups])) if len(groups) > 1 else 0.0
    return within / between if between > 1e-9 else 1e6


def catalog_features(scale: PriceScale, profile: list, texts, k: float) -> np.ndarray:
    """[len(texts), 3] CATALOG_FEATURES of the candidates for this shopper."""
    out = np.zeros((len(texts), len(CATALOG_FEATURES)), np.float32)
    if Profile(profile).empty:
        return out
    devs = clicked_deviations(scale, profile)
    level = sum(devs) / (len(devs) + k)
    categories = clicked_categories(scale, profile)
    clicks = sum(categories.values())
    for j, text in enumerate(texts):
        d = scale.deviation(text)
        if d is None:
            continue
        category = scale.products[text]["category"]
        s2 = 2 * scale.spread[category] ** 2
        out[j] = (math.exp(-d * d / s2), math.exp(-(d - level) ** 2 / s2),
                  (categories.get(category, 0) + 1) / (clicks + len(scale.median)))
    return out
