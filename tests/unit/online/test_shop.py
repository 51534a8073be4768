"""The simulated shop (shoprank.online.shop) and the conversion model learned from its log."""
from __future__ import annotations

import random

import numpy as np
import pytest

from shoprank.online import shop
from shoprank.online.conversion import ConversionModel, click_purchase_counts, fit_conversion
from shoprank.online.feedback import FeedbackStore, read_frames
from shoprank.online.shop import ShopConfig, Shoppers, synthetic_catalog, titles_catalog
from shoprank.serving.client import Shown


def test_attributes_are_reproducible_per_seed_and_id():
    cfg = ShopConfig(seed=3)
    assert shop.product_attributes("P1", "paint", cfg) == shop.product_attributes("P1", "paint", ShopConfig(seed=3))
    assert shop.product_attributes("P1", "paint", cfg) != shop.product_attributes("P1", "paint", ShopConfig(seed=4))
    frame = synthetic_catalog(cfg)
    assert frame["id"].is_unique and len(frame) > 1000
    assert set(frame["in_stock"]) == {0.0, 1.0}
    assert 0.05 < 1 - frame["in_stock"].mean() < 0.2
    assert (frame["margin"] < frame["price"]).all() and (frame["brand"] != "").all()


def test_titles_get_learned_brands_and_a_category():
    titles = [f"RYOBI {kind} {i} in. saw" for i, kind in enumerate(["circular", "miter", "table", "jig"])]
    titles += [f"{i} in. white shelf" for i in range(3)]
    frame = titles_catalog(titles, ShopConfig())
    assert frame.loc[0, "brand"] == "ryobi" and frame.loc[0, "category"] == "saw"
    assert frame.loc[len(frame) - 1, "brand"] == ""


def shoppers(cfg=None):
    return Shoppers(cfg or ShopConfig(shoppers=50, new_per_day=5), {"paint": ["BEHR", "Glidden"],
                                                                    "power tools": ["DEWALT", "RYOBI"]},
                    random.Random(1))


def test_days_bring_new_shoppers_and_drift():
    people = shoppers(ShopConfig(shoppers=200, new_per_day=7, drift_share=0.2))
    before = [(s.brands, s.category, s.price_centre) for s in people.population]
    people.next_day()
    assert len(people.population) == 207 and people.population[-1].arrived == 1
    changed = sum(b != (s.brands, s.category, s.price_centre) for b, s in zip(before, people.population))
    assert 20 < changed < 60  # about 20 % of 200 redrew their preferences
    assert len({s.user_id for s in people.population}) == len(people.population)


def test_purchase_depends_on_stock_relevance_price_and_brand():
    cfg = ShopConfig()
    shopper = shoppers().population[0]
    product = {"in_stock": 1.0, "appeal": 1.0, "price": float(np.exp(shopper.price_centre)),
               "brand": shopper.brands[0]}
    p = shop.purchase_probability(1.0, product, shopper, cfg)
    assert p > shop.purchase_probability(0.5, product, shopper, cfg) > 0
    assert shop.purchase_probability(1.0, {**product, "in_stock": 0.0}, shopper, cfg) == 0
    assert shop.purchase_probability(1.0, {**product, "brand": "nobody"}, shopper, cfg) < p
    assert shop.purchase_probability(1.0, {**product, "price": product["price"] * 20}, shopper, cfg) < p
    assert shop.price_fit(shopper, product["price"]) == pytest.approx(1.0)


def test_conversion_model_shrinks_small_counts_towards_the_category():
    category_of = {"a": "x", "b": "x", "c": "y"}
    model = ConversionModel({"a": 100, "b": 1, "c": 10}, {"a": 50, "b": 1}, category_of, strength=10)
    assert model.rate("a") == pytest.approx((50 + 10 * model.category_rate["x"]) / 110)
    assert model.rate("b") < 0.7  # one click, one purchase: not a certain sale
    assert model.rate("unseen") == model.global_rate
    raw = ConversionModel({"b": 1}, {"b": 1}, category_of, strength=0)
    assert raw.rate("b") == 1.0


def test_conversion_is_learned_from_the_feedback_log(tmp_path):
    texts = {"good": "g", "bad": "b"}
    rng = random.Random(0)
    with FeedbackStore(tmp_path / "f.sqlite", pseudonym_key_file=tmp_path / "k") as store:
        for r in range(400):
            rid = f"r{r}"
            store.record_impression(rid, "q", [Shown(0, "good"), Shown(1, "bad")], user_id=f"user-{r % 7}")
            for position, rate in ((0, 0.6), (1, 0.1)):
                store.record_event(rid, position, "click")
                if rng.random() < rate:
                    store.record_event(rid, position, "purchase")
        store.flush()
    frames = read_frames(tmp_path / "f.sqlite")
    clicks, purchases = click_purchase_counts(frames, texts)
    assert clicks == {"g": 400, "b": 400}
    model, fit = fit_conversion(frames, texts, {"g": "c", "b": "c"}, seed=0)
    assert 0.5 < model.rate("g") < 0.7 and 0.05 < model.rate("b") < 0.15
    assert fit["purchases"] == sum(purchases.values())
