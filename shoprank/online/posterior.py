"""The information ceiling of personalization: what ANY estimator could know of a shopper's hidden
preferences from their logged history. A diagnostic of `make personalize`, not a servable design:
it knows the simulator's generative story (docs/simulator.md), which no real shop does.

For each shopper, the Bayes posterior over the simulator's finite space of preferences
(shop.Shoppers._preferences): a favourite category, 1 or 2 favourite brands of that category's
brands, a price band (centre on a grid of PRICE_CENTRE_POINTS around the category's typical log
price, tolerance on a grid of PRICE_TOLERANCE_POINTS over ShopConfig.price_tolerance), with the
simulator's prior. The evidence is everything the feedback log holds about the shopper, under the
simulator's exact likelihood:
    - each query's category (the favourite with probability favourite_share, else any category);
    - each shown item: clicked with probability examination(position) × gain, not clicked with the
      rest (gain = click_probability(relevance) × click_lift, capped at 1: shop.shopper_gain);
    - each click: bought or not with shop.purchase_probability (in stock, relevance, the hidden
      appeal, price fit, brand lift); carts without a purchase carry no preference information;
    - drift: between two days a shopper keeps their preferences with probability
      1 - drift_share, else redraws them from the prior (a forward filter over days).
At each request the posterior given the history before it (and the request's own query, which
the serving path has too) gives the expected preference features, E[PREFERENCE_FEATURES], fed to
the oracle's head. The same head fed the true features is the oracle; so the posterior's
recovery of the gap bounds what behaviour can buy at this history length.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..data.synthetic import click_probability
from .shop import CATEGORY_PRICE, DEFAULT_PRICE, ShopConfig
from .world import examination

PRICE_CENTRE_POINTS = 15     # the centre's grid: equal-probability bins of N(log typical, price_sigma)
PRICE_TOLERANCE_POINTS = 4   # the tolerance's grid: equal bins of ShopConfig.price_tolerance
_EPS = 1e-12


@dataclass
class Hypotheses:
    """The finite space of a shopper's preferences, one row per hypothesis."""
    category: np.ndarray      # [H] index into categories
    brands: np.ndarray        # [H, B] bool: favourite brands (by brand name)
    centre: np.ndarray        # [H] log price
    tolerance: np.ndarray     # [H]
    prior: np.ndarray         # [H] sums to 1
    categories: list
    brand_index: dict         # brand name -> column of `brands`


def _normal_bin_midpoints(n: int) -> np.ndarray:
    """n points of N(0, 1), each the median of an equal-probability bin (so each weighs 1/n)."""
    from statistics import NormalDist

    std = NormalDist()
    return np.array([std.inv_cdf((j + 0.5) / n) for j in range(n)])


def hypotheses(brands_by_category: dict, shop: ShopConfig, centre_points: int = PRICE_CENTRE_POINTS,
               tolerance_points: int = PRICE_TOLERANCE_POINTS) -> Hypotheses:
    """The preferences shop.Shoppers draws, with its prior: category uniform; 1 or 2 brands with
    probability 1/2 each, uniform among that many of the category's brands; price centre normal
    around the category's typical log price; tolerance uniform."""
    categories = sorted(brands_by_category)
    names = sorted({b for bs in brands_by_category.values() for b in (bs or [""])})
    brand_index = {b: j for j, b in enumerate(names)}
    z = _normal_bin_midpoints(centre_points)
    lo, hi = shop.price_tolerance
    tolerances = lo + (hi - lo) * (np.arange(tolerance_points) + 0.5) / tolerance_points
    cat, sets, centre, tol, prior = [], [], [], [], []
    for c, category in enumerate(categories):
        pool = sorted(brands_by_category[category] or [""])
        typical = math.log(CATEGORY_PRICE.get(category, DEFAULT_PRICE))
        choices = [(combo, 0.5 / math.comb(len(pool), k)) for k in (1, 2) if k <= len(pool)
                   for combo in itertools.combinations(pool, k)]
        if len(pool) == 1:   # random.sample of min(len, k) brands: a one-brand category always has it
            choices = [((pool[0],), 1.0)]
        for combo, p_brands in choices:
            mask = np.zeros(len(names), bool)
            mask[[brand_index[b] for b in combo]] = True
            for zc in z:
                for t in tolerances:
                    cat.append(c)
                    sets.append(mask)
                    centre.append(typical + shop.price_sigma * zc)
                    tol.append(t)
                    prior.append(p_brands / (len(categories) * len(z) * len(tolerances)))
    prior = np.array(prior)
    return Hypotheses(np.array(cat), np.array(sets), np.array(centre), np.array(tol), prior / prior.sum(),
                      categories, brand_index)


class ItemTable:
    """Per product text, what the likelihood needs of it (brand column, category, log price, and
    the purchase terms that do not depend on the shopper)."""

    def __init__(self, hyp: Hypotheses, products: dict, shop: ShopConfig):
        self.hyp, self.products, self.shop = hyp, products, shop
        self.cat_index = {c: i for i, c in enumerate(hyp.categories)}

    def preferences(self, texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[H, n] each: favourite brand (0/1), favourite category (0/1), price fit, per hypothesis
        and item: shop.click_lift's and the oracle's PREFERENCE_FEATURES."""
        hyp = self.hyp
        rows = [self.products[t] for t in texts]
        cols = np.array([hyp.brand_index.get(r["brand"], -1) for r in rows], dtype=int)
        brand = np.where(cols >= 0, hyp.brands[:, np.maximum(cols, 0)], False).astype(np.float64)
        cats = np.array([self.cat_index.get(r["category"], -1) for r in rows], dtype=int)
        category = (hyp.category[:, None] == cats[None, :]).astype(np.float64)
        price = np.array([r["price"] for r in rows], np.float64)
        valid = np.isfinite(price) & (price > 0)
        logp = np.log(np.where(valid, price, 1.0))
        fit = np.exp(-((logp[None, :] - hyp.centre[:, None]) ** 2) / (2 * hyp.tolerance[:, None] ** 2))
        fit = np.where(valid[None, :], fit, 1.0)
        return brand, category, fit

    def expected_features(self, posterior: np.ndarray, texts) -> np.ndarray:
        """[n, 3]: E[PREFERENCE_FEATURES] under `posterior` ([H])."""
        return np.stack([posterior @ f for f in self.preferences(texts)], axis=1).astype(np.float32)

    def page_loglik(self, texts, relevance, shown, clicked: set, bought: set) -> np.ndarray:
        """[H]: log P(the page's clicks and purchases | hypothesis); `shown`: candidate indices in
        page order, `clicked` / `bought`: positions."""
        shop = self.shop
        page = [texts[i] for i in shown]
        rel = np.array([relevance[i] for i in shown], np.float64)
        brand, category, fit = self.preferences(page)
        lift = np.where(brand > 0, shop.brand_click_lift, 1.0) * np.where(category > 0, shop.category_click_lift, 1.0)
        gain = np.minimum(1.0, np.array([click_probability(r) for r in rel])[None, :] * lift * (0.7 + 0.3 * fit))
        exam = np.array([examination(k, shop.eta) for k in range(len(shown))])
        out = np.zeros(len(self.hyp.prior))
        for k, text in enumerate(page):
            if k in clicked:
                out += np.log(np.maximum(gain[:, k], _EPS))
                p = self.products[text]
                buy = p["in_stock"] * shop.base_purchase * rel[k] ** 2 * p["appeal"] * fit[:, k]
                buy = np.minimum(0.95, buy * np.where(brand[:, k] > 0, shop.brand_purchase_lift, 1.0))
                out += np.log(np.maximum(buy if k in bought else 1.0 - buy, _EPS))
            else:
                out += np.log(np.maximum(1.0 - exam[k] * gain[:, k], _EPS))
        return out

    def query_loglik(self, category: str, favourite_share: float) -> np.ndarray:
        """[H]: log P(the query's category | hypothesis): the favourite with favourite_share, else
        uniform over the categories."""
        n = len(self.hyp.categories)
        same = self.hyp.category == self.cat_index.get(category, -1)
        return np.log(np.where(same, favourite_share, 0.0) + (1.0 - favourite_share) / n)


def _normalized(logp: np.ndarray) -> np.ndarray:
    p = np.exp(logp - logp.max())
    return p / p.sum()


def request_posteriors(logged: list, table: ItemTable, shop: ShopConfig, favourite_share: float):
    """Yields (item, posterior [H]) for every request of `logged` in time order: the posterior over
    table.hyp of the request's shopper given their logged history before it and its own query
    (a forward filter per shopper: drift mixes in the prior between days, then the query, then,
    after the yield, the page's clicks and purchases). `logged`: personalize.Logged items
    (request, shown, clicked, bought), any order; a shopper is their pseudonym."""
    hyp = table.hyp
    state: dict[str, tuple[np.ndarray, int]] = {}   # shopper -> (posterior, day of their last request)
    for item in sorted(logged, key=lambda it: it.request.ts):
        r = item.request
        post, last_day = state.get(r.user, (hyp.prior, r.day))
        keep = (1.0 - shop.drift_share) ** (r.day - last_day)   # no redraw on any day in between
        post = keep * post + (1.0 - keep) * hyp.prior
        q = r.query
        post = _normalized(np.log(np.maximum(post, 1e-300)) + table.query_loglik(q.category, favourite_share))
        yield item, post
        loglik = table.page_loglik(q.texts, q.relevance, item.shown, item.clicked, getattr(item, "bought", set()))
        state[r.user] = (_normalized(np.log(np.maximum(post, 1e-300)) + loglik), r.day)


def posterior_features(logged: list, products: dict, brands_by_category: dict, shop: ShopConfig,
                       favourite_share: float, wanted: set) -> tuple[dict, dict]:
    """({request_id: [n candidates, 3] E[PREFERENCE_FEATURES]} for the requests in `wanted`, each
    given its shopper's logged history before it and its own query (request_posteriors); the same
    given the query alone, no history: what knowing the population, not the shopper, is worth)."""
    table = ItemTable(hypotheses(brands_by_category, shop), products, shop)
    out, population = {}, {}
    for item, post in request_posteriors(logged, table, shop, favourite_share):
        r = item.request
        if r.request_id in wanted:
            out[r.request_id] = table.expected_features(post, r.query.texts)
            alone = _normalized(np.log(table.hyp.prior) + table.query_loglik(r.query.category, favourite_share))
            population[r.request_id] = table.expected_features(alone, r.query.texts)
    return out, population
