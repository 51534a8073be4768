"""Days of sessions by shop.py's shoppers, logged like production traffic (the personalization
test bed): reproducible from the seed, preferences in the true gain, arrivals over days."""
from __future__ import annotations

import numpy as np

from shoprank.online.feedback import FeedbackStore, read_frames
from shoprank.online.sessions import query_pool, simulate_days
from shoprank.online.shop import ShopConfig, shopper_gain


def _run(path, key):
    pool = query_pool(per_category=2, candidates=10)
    scores = {q.query: np.arange(len(q.texts), dtype=np.float32)[::-1] for q in pool}
    cfg = ShopConfig(seed=5, shoppers=20, new_per_day=3, sessions_per_day=40, explore_share=0.3)
    with FeedbackStore(path, pseudonym_key_file=key) as store:
        requests, products = simulate_days(cfg, 3, pool, lambda q: scores[q.query], store)
    return cfg, requests, products, read_frames(path)


def test_sessions_are_logged_reproducibly_with_shoppers(tmp_path):
    cfg, reqs, products, (imps, shown, events) = _run(tmp_path / "a.sqlite", tmp_path / "key")
    _, again, _, (_, _, events2) = _run(tmp_path / "b.sqlite", tmp_path / "key")
    assert [r.request_id for r in reqs] == [r.request_id for r in again] and len(events) == len(events2)
    assert len(imps) == len(reqs) == 120 and imps["user_id"].notna().all() and imps["user_id"].nunique() > 10
    assert {"click", "add_to_cart"} <= set(events["kind"]) and imps["randomized"].sum() > 0
    assert max(r.shopper.arrived for r in reqs) == 2                 # new shoppers arrived over the days
    favourite = np.mean([r.query.category == r.shopper.category for r in reqs])
    assert favourite > 0.6                                           # most searches in the favourite category


def test_true_gain_lifts_the_shoppers_favourite_brand(tmp_path):
    cfg, reqs, products, _ = _run(tmp_path / "a.sqlite", tmp_path / "key")
    lifted = flat = 0
    for r in reqs:
        gain = shopper_gain(r.shopper, r.query, products, cfg)
        assert np.all((gain > 0) & (gain <= 1))
        for t, g, rel in zip(r.query.texts, gain, r.query.relevance):
            if rel == 1.0 and products[t]["brand"] in r.shopper.brands:
                lifted += 1
                assert g > 0.75   # click_probability(1) = 0.75, lifted by the brand
            elif rel == 1.0:
                flat += 1
    assert lifted and flat
