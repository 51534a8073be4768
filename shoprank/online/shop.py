"""The simulated shop's products and shoppers: every parameter in ShopConfig, the generative
story in docs/simulator.md. Used by `make conversion` (purchases, expected value, rules), by
`make catalog` (the example catalog's attributes) and meant for personalization (hidden
preferences, sessions over days, drift, cold start).

Products. Each product gets, reproducibly from (seed, its id), a price (log-normal around its
category's typical price), a margin (a share of the price), in stock or not, a rating and a
hidden `appeal` (how convincing it is once clicked) that only purchases reveal.

Shoppers. Each has hidden, persistent preferences: 1-2 favourite brands, a price band (a centre
on the log-price scale and a tolerance) and a favourite category. A session (one query, one
page) belongs to a day; each day some new shoppers arrive (cold start) and a share of existing
shoppers redraw their preferences (drift).

Behaviour on a page (world.py's examination model): position k is examined with probability
1 / (k + 1) ** eta; an examined product is clicked with synthetic.click_probability(relevance)
times a preference lift (favourite brand, favourite category, price in band), capped at 1. A
click becomes a purchase with
    P(purchase | click) = in_stock x base x relevance ** 2 x appeal x brand_lift x price_fit,
price_fit = exp(-(log price - centre)^2 / (2 tolerance^2)); some clicks add to cart without a
purchase.
"""
from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..data import synthetic
from .world import examination

# Typical price (dollars) per synthetic category; other categories (Home Depot) get DEFAULT_PRICE.
CATEGORY_PRICE = {"power tools": 150.0, "vanities": 450.0, "faucets": 160.0, "paint": 40.0}
DEFAULT_PRICE = 80.0


@dataclass
class ShopConfig:
    seed: int = 7
    # products
    price_sigma: float = 0.6         # log-normal spread of prices around the category's typical price
    margin_range: tuple = (0.10, 0.45)  # margin as a share of the price
    out_of_stock_share: float = 0.12
    appeal_sigma: float = 0.5        # hidden per-product purchase appeal, log-normal, mean ~1
    # shoppers
    shoppers: int = 300              # shoppers on day 0
    new_per_day: int = 20            # cold-start arrivals each day
    drift_share: float = 0.05        # share of shoppers who redraw their preferences each day
    sessions_per_day: int = 300
    returning_share: float = 0.8     # a session's shopper is an existing one (else a new arrival)
    price_tolerance: tuple = (0.5, 1.2)  # log-price tolerance of a shopper's band
    brand_click_lift: float = 1.4
    category_click_lift: float = 1.15
    # purchases
    base_purchase: float = 0.35
    brand_purchase_lift: float = 1.5
    cart_share: float = 0.5          # clicks that add to cart (a purchase always does)
    # pages
    top_k: int = 10
    eta: float = 1.0
    explore_share: float = 0.1
    extra: dict = field(default_factory=dict)


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def product_attributes(product_id: str, category: str, cfg: ShopConfig) -> dict:
    """Price, margin, in stock, rating and hidden appeal of one product: a function of (seed, id)."""
    rng = _rng(cfg.seed, product_id)
    price = CATEGORY_PRICE.get(category, DEFAULT_PRICE) * math.exp(cfg.price_sigma * rng.standard_normal())
    price = round(max(price, 1.0), 2)
    return {"price": price, "margin": round(price * rng.uniform(*cfg.margin_range), 2),
            "in_stock": float(rng.random() >= cfg.out_of_stock_share),
            "rating": round(float(np.clip(rng.normal(4.1, 0.5), 1.0, 5.0)), 1),
            "appeal": float(math.exp(cfg.appeal_sigma * rng.standard_normal() - cfg.appeal_sigma ** 2 / 2))}


def synthetic_catalog(cfg: ShopConfig):
    """The default data's products (synthetic.build_catalogue(Random(0)), as world.py uses them)
    with ids and attributes; `appeal` is the simulator's hidden truth, not a catalog column."""
    import pandas as pd

    rows = []
    for i, p in enumerate(synthetic.build_catalogue(random.Random(0))):
        pid = f"P{i:05d}"
        rows.append({"id": pid, "text": p.text, "brand": p.attrs.get("brand", ""), "category": p.category,
                     **product_attributes(pid, p.category, cfg)})
    return pd.DataFrame(rows)


def titles_catalog(titles, cfg: ShopConfig):
    """A catalog of free titles (Home Depot): brands are the learned leading phrases
    (shoprank.features.brands), the category is the title's last word (its product type)."""
    import pandas as pd

    from ..features.analysis import title_parts
    from ..features.brands import learn_brands

    titles = list(dict.fromkeys(str(t) for t in titles))
    parts = [title_parts(t) for t in titles]
    brands = {tuple(b.split()): n for b, n in learn_brands((p.lead, p.words) for p in parts).items()}
    rows = []
    for i, (title, p) in enumerate(zip(titles, parts)):
        pid = f"H{i:06d}"
        category = p.main[-1] if p.main else ""  # the product type ends the main part
        rows.append({"id": pid, "text": title, "brand": _maker(p.lead, brands),
                     "category": category, **product_attributes(pid, category, cfg)})
    return pd.DataFrame(rows)


def _maker(lead, brands: dict) -> str:
    """The shortest brand phrase a title starts with: the maker ("milwaukee"), not the product
    line ("milwaukee m18"), so diversity counts makers."""
    for n in range(1, min(3, len(lead)) + 1):
        if tuple(lead[:n]) in brands:
            return " ".join(lead[:n])
    return ""


@dataclass
class Shopper:
    user_id: str
    brands: tuple
    price_centre: float   # log price
    price_tolerance: float
    category: str
    arrived: int          # day


class Shoppers:
    """The shopper population over days: arrivals, drift, who shops next (module doc)."""

    def __init__(self, cfg: ShopConfig, brands_by_category: dict, rnd: random.Random):
        self.cfg, self.rnd, self.brands_by_category = cfg, rnd, brands_by_category
        self.categories = sorted(brands_by_category)
        self.population: list[Shopper] = []
        self.day = 0
        for _ in range(cfg.shoppers):
            self.population.append(self._new())

    def _preferences(self) -> dict:
        category = self.rnd.choice(self.categories)
        pool = self.brands_by_category[category] or [""]
        brands = tuple(self.rnd.sample(pool, min(len(pool), self.rnd.choice((1, 2)))))
        typical = CATEGORY_PRICE.get(category, DEFAULT_PRICE)
        return {"brands": brands, "category": category,
                "price_centre": math.log(typical) + self.rnd.gauss(0.0, self.cfg.price_sigma),
                "price_tolerance": self.rnd.uniform(*self.cfg.price_tolerance)}

    def _new(self) -> Shopper:
        return Shopper(f"shopper-{self.cfg.seed}-{len(self.population):06d}", arrived=self.day,
                       **self._preferences())

    def next_day(self) -> None:
        self.day += 1
        for s in self.population:
            if self.rnd.random() < self.cfg.drift_share:
                for key, value in self._preferences().items():
                    setattr(s, key, value)
        for _ in range(self.cfg.new_per_day):
            self.population.append(self._new())

    def pick(self) -> Shopper:
        if self.rnd.random() < self.cfg.returning_share:
            return self.rnd.choice(self.population)
        shopper = self._new()
        self.population.append(shopper)
        return shopper


def click_lift(shopper: Shopper, brand: str, category: str, price: float, cfg: ShopConfig) -> float:
    lift = cfg.brand_click_lift if brand in shopper.brands else 1.0
    lift *= cfg.category_click_lift if category == shopper.category else 1.0
    return lift * (0.7 + 0.3 * price_fit(shopper, price))


def price_fit(shopper: Shopper, price: float) -> float:
    if not price or price != price:
        return 1.0
    return math.exp(-((math.log(price) - shopper.price_centre) ** 2) / (2 * shopper.price_tolerance ** 2))


def purchase_probability(relevance: float, product: dict, shopper: Shopper, cfg: ShopConfig) -> float:
    """P(purchase | click), module doc."""
    if not product["in_stock"]:
        return 0.0
    p = cfg.base_purchase * relevance ** 2 * product["appeal"] * price_fit(shopper, product["price"])
    p *= cfg.brand_purchase_lift if product["brand"] in shopper.brands else 1.0
    return min(p, 0.95)


def shopper_gain(shopper: Shopper, q, products: dict, cfg: ShopConfig) -> np.ndarray:
    """The shopper's true click probability of each candidate once examined: the shop-wide
    relevance's click probability times their preference lift (shop.click_lift), capped at 1.
    The graded gain of the shopper's NDCG."""
    return np.array([min(1.0, synthetic.click_probability(r) * click_lift(
        shopper, products[t]["brand"], products[t]["category"], products[t]["price"], cfg))
        for t, r in zip(q.texts, q.relevance)])


def purchase_chances(shopper: Shopper, q, products: dict, cfg: ShopConfig) -> np.ndarray:
    return np.array([purchase_probability(r, products[t], shopper, cfg) for t, r in zip(q.texts, q.relevance)])


def simulate_page(shopper: Shopper, q, shown: list, products: dict, cfg: ShopConfig,
                  rnd: random.Random, store, request_id: str, ts: float) -> None:
    """What the shopper does on the page `shown` (candidate indices of q.texts, top first), logged as
    events in `store` (a FeedbackStore): steps 5-6 of the story. q: any query with .texts and
    .relevance; products: attributes by product text."""
    gain = shopper_gain(shopper, q, products, cfg)
    for position, i in enumerate(shown):
        if rnd.random() >= examination(position, cfg.eta) or rnd.random() >= gain[i]:
            continue
        store.record_event(request_id, position, "click", ts=ts + 1 + position)
        bought = rnd.random() < purchase_probability(q.relevance[i], products[q.texts[i]], shopper, cfg)
        if bought or rnd.random() < cfg.cart_share:
            store.record_event(request_id, position, "add_to_cart", ts=ts + 2 + position)
        if bought:
            store.record_event(request_id, position, "purchase", ts=ts + 3 + position)
