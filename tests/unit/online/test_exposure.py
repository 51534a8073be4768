"""Exposure-aware brand affinity (online.exposure) and the catalog features (online.catalog_affinity):
the candidate features `make personalize` measures next to the served late fusion."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from shoprank.online.catalog_affinity import PriceScale, catalog_features, choose_shrinkage
from shoprank.online.exposure import A_GRID, choose_strength, click_rate_bins, exposure_features, history_counts

PROFILE = [("click", "DEWALT drill"), ("click", "DEWALT saw"), ("purchase", "Makita drill")]   # not a cold start


def test_click_rates_per_logit_bin_divide_clicks_by_examination():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=20000)
    positions = rng.integers(0, 10, size=20000)
    theta = 1.0 / (np.arange(10) + 1)
    true_rate = np.where(logits > 0, 0.6, 0.1)
    clicked = rng.random(20000) < theta[positions] * true_rate
    edges, rates = click_rate_bins(logits, positions, clicked, theta, bins=4)
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.6, 0.6], atol=0.04)
    assert len(edges) == 3


def test_the_shrinkage_strength_follows_how_much_shoppers_differ():
    rng = np.random.default_rng(1)
    exposure = rng.uniform(1, 20, size=4000)
    alike = rng.poisson(exposure)                                   # every lift 1: no preference to find
    assert choose_strength(zip(alike, exposure)) >= 512
    differ = rng.poisson(exposure * rng.gamma(2.0, 1 / 2.0, size=4000))   # lifts Gamma(2, 2)
    assert choose_strength(zip(differ, exposure)) in (1.0, 2.0, 4.0)
    assert choose_strength([]) in A_GRID


def _item(user, ts, texts, shown, clicked):
    q = SimpleNamespace(texts=texts)
    return SimpleNamespace(request=SimpleNamespace(user=user, ts=ts, query=q), shown=shown, clicked=clicked)


def test_counts_come_from_the_pages_before_each_request_only():
    texts = ["DEWALT drill", "Makita drill"]
    log = [_item("u", 2.0, texts, [0, 1], {0}), _item("u", 1.0, texts, [1, 0], set()), _item("v", 1.5, texts, [0], {0})]
    theta = np.array([1.0, 0.5])
    seen = {it.request.ts: c for it, c in history_counts(log, lambda it: np.zeros(2), np.array([]),
                                                         np.array([0.2]), theta)}
    assert seen[1.0] == {} and seen[1.5] == {}                     # a shopper's first page: nothing before it
    assert seen[2.0] == {"dewalt": [0.0, 0.5 * 0.2], "makita": [0.0, 1.0 * 0.2]}


def test_exposure_affinity_rewards_clicks_beyond_exposure_and_keeps_cold_start():
    counts = {"dewalt": [4.0, 1.0], "makita": [0.0, 3.0]}
    x = exposure_features(PROFILE, counts, ["DEWALT impact driver", "Makita saw", "Bosch drill"], a=2.0)
    assert x[0, 0] > 0 > x[1, 0] and x[2, 0] == 0
    assert not exposure_features(PROFILE[:2], counts, ["DEWALT impact driver"], a=2.0).any()


def _catalog():
    rows = {}
    for i, price in enumerate((20.0, 40.0, 80.0, 160.0, 320.0)):
        rows[f"DEWALT drill {i}"] = {"price": price, "category": "power tools"}
        rows[f"BEHR paint {i}"] = {"price": price / 4, "category": "paint"}
    return rows


def test_catalog_features_read_the_shoppers_price_level_and_categories():
    scale = PriceScale(_catalog())
    profile = [("click", "DEWALT drill 4"), ("click", "DEWALT drill 4"), ("click", "DEWALT drill 3"),
               ("query", "drill")]
    x = catalog_features(scale, profile, ["DEWALT drill 2", "DEWALT drill 4", "BEHR paint 2", "unknown"], k=0.0)
    assert x[0, 0] == 1.0 and x[1, 0] < 1.0                        # the category's median price is typical
    assert x[1, 1] > x[0, 1]                                       # this shopper clicks the dear drills
    assert x[0, 2] > x[2, 2] > 0                                   # and power tools, not paint
    assert not x[3].any()                                          # a product the catalog lacks
    assert not catalog_features(scale, profile[:2], ["DEWALT drill 2"], k=0.0).any()   # cold start


def test_price_shrinkage_is_large_when_shoppers_do_not_differ():
    rng = np.random.default_rng(2)
    alike = [list(rng.normal(0, 1, 5)) for _ in range(400)]
    differ = [list(rng.normal(m, 0.3, 5)) for m in rng.normal(0, 1, 400)]
    assert choose_shrinkage(alike) > 10 * choose_shrinkage(differ)
