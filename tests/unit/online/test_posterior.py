"""The posterior diagnostic (online.posterior): the simulator's preference space with its prior,
and a Bayes posterior that, from one simulated shopper's logged pages, finds their hidden
preferences, and knows nothing of them without history."""
from __future__ import annotations

import math

import numpy as np

from shoprank.online.feedback import FeedbackStore, read_frames
from shoprank.online.personalize import _brands_by_category, _read_log
from shoprank.online.posterior import (
    PRICE_CENTRE_POINTS,
    PRICE_TOLERANCE_POINTS,
    ItemTable,
    hypotheses,
    posterior_features,
    request_posteriors,
)
from shoprank.online.sessions import query_pool, simulate_days
from shoprank.online.shop import ShopConfig


def test_the_hypotheses_are_the_simulators_preferences_with_its_prior():
    brands = {"a": ["X", "Y", "Z"], "b": ["Y", "W"], "c": ["V"]}
    hyp = hypotheses(brands, ShopConfig())
    grid = PRICE_CENTRE_POINTS * PRICE_TOLERANCE_POINTS
    assert len(hyp.prior) == (3 + 3 + 2 + 1 + 1) * grid and math.isclose(hyp.prior.sum(), 1.0)
    for c in range(3):   # the favourite category is uniform
        assert math.isclose(hyp.prior[hyp.category == c].sum(), 1 / 3)
    a = hyp.category == hyp.categories.index("a")
    two = a & (hyp.brands.sum(1) == 2)
    assert math.isclose(hyp.prior[two].sum(), hyp.prior[a].sum() / 2)   # 1 or 2 brands, half each
    y = hyp.brands[:, hyp.brand_index["Y"]]
    assert y[hyp.category == hyp.categories.index("c")].sum() == 0       # brands of the category only
    assert hyp.brands[hyp.category == hyp.categories.index("c")].sum(1).max() == 1


def _one_shopper(tmp_path, sessions: int):
    """One shopper (no arrivals, no drift) shopping `sessions` times, logged to a real feedback store."""
    cfg = ShopConfig(seed=11, shoppers=1, new_per_day=0, returning_share=1.0, drift_share=0.0,
                     sessions_per_day=sessions, explore_share=0.5)
    pool = query_pool(per_category=3, candidates=20)
    scores = {q.query: -np.arange(len(q.texts), dtype=np.float32) for q in pool}
    db, key = tmp_path / "feedback.sqlite", tmp_path / "key"
    with FeedbackStore(db, pseudonym_key_file=key) as store:
        requests, products = simulate_days(cfg, 1, pool, lambda q: scores[q.query], store)
    return cfg, requests, products, _read_log(read_frames(db), requests, key)


def test_the_posterior_finds_a_shoppers_preferences_from_their_log(tmp_path):
    cfg, requests, products, logged = _one_shopper(tmp_path, 250)
    first, last = requests[0], requests[-1]
    post, alone = posterior_features(logged, products, _brands_by_category(products), cfg, 0.8,
                                     {first.request_id, last.request_id})
    np.testing.assert_allclose(post[first.request_id], alone[first.request_id], atol=1e-6)   # no history yet
    truth = last.shopper
    texts = last.query.texts
    fav = np.array([products[t]["brand"] in truth.brands for t in texts])
    same_category = np.array([products[t]["category"] == truth.category for t in texts])
    learned, prior = post[last.request_id], alone[last.request_id]
    assert learned[same_category, 1].min() > 0.95                        # the favourite category
    if fav.any() and (~fav).any():                                      # the favourite brand over the others
        assert learned[fav, 0].min() > learned[~fav, 0].max()           # a 1.4x lift: slow to learn, but learned
        assert learned[fav, 0].mean() > 2 * prior[fav, 0].mean()
    # the price band: the expected centre moves from the category's typical price towards the truth
    table = ItemTable(hypotheses(_brands_by_category(products), cfg), products, cfg)
    posts = {it.request.request_id: p for it, p in request_posteriors(logged, table, cfg, 0.8)}
    hyp = table.hyp
    same = hyp.category == hyp.categories.index(truth.category)
    before = hyp.prior[same] @ hyp.centre[same] / hyp.prior[same].sum()
    after = posts[last.request_id] @ hyp.centre
    assert abs(after - truth.price_centre) < abs(before - truth.price_centre)
