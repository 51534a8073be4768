"""Behaviour features of (recent behaviour, candidate): what each says, and a cold start's zeros."""
from __future__ import annotations

import numpy as np

from shoprank.features.behaviour import (
    BEHAVIOUR_FEATURES,
    MIN_PRODUCTS,
    behaviour_features,
    behaviour_summary,
    brand_of,
)

COL = {name: i for i, name in enumerate(BEHAVIOUR_FEATURES)}
TEXTS = ["DEWALT 20V MAX cordless drill kit", "Milwaukee M18 cordless drill kit", "Glidden white interior paint"]
DEWALT_BUYER = [("purchase", "DEWALT 20V cordless drill kit"), ("click", "DEWALT cordless drill kit"),
                ("click", "Milwaukee M12 cordless drill kit"), ("query", "cordless drill")]


def test_cold_start_and_thin_profiles_are_all_zeros():
    assert behaviour_features([], TEXTS).shape == (3, len(BEHAVIOUR_FEATURES))
    assert not behaviour_features([], TEXTS).any()
    thin = [("purchase", "DEWALT 20V cordless drill kit")] * (MIN_PRODUCTS - 1) + [("query", "drill")] * 5
    assert not behaviour_features(thin, TEXTS).any()


def test_brand_loyalty_among_related_products():
    x = behaviour_features(DEWALT_BUYER, TEXTS)
    assert x[0, COL["brand_share"]] > 0.5 > x[1, COL["brand_share"]] > 0      # bought DEWALT, clicked one Milwaukee
    assert x[2, COL["brand_share"]] == 0 and x[2, COL["related_weight"]] == 0  # paint: nothing related
    assert x[0, COL["brand_weight"]] > x[1, COL["brand_weight"]] > 0
    assert x[0, COL["style_match"]] > 0 and x[2, COL["style_match"]] == 0


def test_newer_behaviour_and_purchases_weigh_more():
    old_dewalt = [("click", "Milwaukee cordless drill kit")] * 3 + [("click", "DEWALT cordless drill kit")] * 3
    x = behaviour_features(old_dewalt, TEXTS)
    assert x[1, COL["brand_share"]] > x[0, COL["brand_share"]]                 # the newest come first
    bought = [("click", "Milwaukee cordless drill kit")] * 2 + [("purchase", "DEWALT cordless drill kit")]
    x = behaviour_features(bought, TEXTS)
    assert x[0, COL["brand_share"]] > x[1, COL["brand_share"]]                 # 3 x 0.81 > 1 + 0.9


def test_repeat_purchase_and_acted_before():
    x = behaviour_features([("click", TEXTS[1]), ("purchase", TEXTS[2].upper()), ("click", "drill bits")], TEXTS)
    assert x[:, COL["acted_before"]].tolist() == [0, 1, 1]
    assert x[:, COL["bought_before"]].tolist() == [0, 0, 1]
    assert np.all(x[:, COL["brand_weight"]] >= 0)


def test_brand_is_the_first_word_and_summary_is_compact():
    assert brand_of("The DEWALT 20V drill") == "dewalt"
    bought = "DEWALT 20V MAX impact driver kit with two batteries"
    summary = behaviour_summary([("query", "drill"), ("purchase", bought), ("click", "Milwaukee drill")])
    assert summary == "bought dewalt 20v max impact driver kit; milwaukee drill; searched drill"
