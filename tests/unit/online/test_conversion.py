"""The conversion head (shoprank.online.conversion): learned from a feedback log only, and the
honest choice of (conversion model, value_weight) on the tuning seeds."""
from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from shoprank.online import conversion
from shoprank.online.conversion import ConversionHead, _cloglog_fit, choose, click_rows, fit_conversion, fit_head
from shoprank.online.feedback import FeedbackStore, read_frames
from shoprank.serving.client import Shown


def test_cloglog_fit_recovers_the_coefficients():
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(20000), rng.normal(size=20000), rng.random(20000) < 0.3])
    theta = np.array([-1.5, 0.8, -1.0])
    y = (rng.random(20000) < -np.expm1(-np.exp(x @ theta))).astype(float)
    np.testing.assert_allclose(_cloglog_fit(x, y, penalty=1e-6), theta, atol=0.1)


def catalog() -> pd.DataFrame:
    rows = []
    for i in range(40):
        rows.append({"id": f"p{i}", "text": f"product {i}", "price": 20.0 + 5 * (i % 7), "in_stock": float(i % 5 != 0),
                     "rating": 4.0, "category": "paint" if i % 2 else "tools"})
    return pd.DataFrame(rows)


def write_log(path, frame, p_click, requests=3000, seed=0):
    """Every shown product clicked; bought with 0.5 x p(click) x (3 if p7) x in stock: the truth
    the head must find without seeing it."""
    rng = random.Random(seed)
    texts = list(frame["text"])
    stock = dict(zip(frame["text"], frame["in_stock"]))
    with FeedbackStore(path, pseudonym_key_file=path.parent / "key") as store:
        for r in range(requests):
            query = f"q{r % 10}"
            shown = rng.sample(range(len(texts)), 4)
            rid = f"r{r}"
            store.record_impression(rid, query, [Shown(i, texts[i]) for i in shown], user_id=f"u{r % 50}")
            for position, i in enumerate(shown):
                store.record_event(rid, position, "click")
                rate = 0.5 * p_click(query, texts[i]) * (3.0 if texts[i] == "product 7" else 1.0) * stock[texts[i]]
                if rng.random() < rate:
                    store.record_event(rid, position, "purchase")
            if r % 200 == 199:
                store.flush()  # the store's queue is bounded: a burst beyond it is dropped
        store.flush()


def test_the_head_learns_click_probability_stock_and_a_products_own_rate_from_the_log(tmp_path):
    frame = catalog()
    text_to_id = dict(zip(frame["text"], frame["id"]))

    def p_click(query, text):  # the model's click probability of (query, product): varies with both
        return 0.1 + 0.8 * ((int(query[1:]) * 7 + int(text.split()[1]) * 3) % 10) / 10

    write_log(tmp_path / "f.sqlite", frame, p_click)
    frames = read_frames(tmp_path / "f.sqlite")
    rows = click_rows(frames, text_to_id, p_click)
    assert len(rows["pid"]) == 12000 and 0 < sum(rows["bought"]) < 12000
    assert set(rows["p_click"]) <= {p_click(f"q{q}", f"product {i}") for q in range(10) for i in range(40)}
    head, fit = fit_head(frames, text_to_id, frame, p_click, seed=0)
    assert 0.7 < head.gamma < 1.3                      # purchases rise with the request's p(click)
    assert fit["coefficients"]["out_of_stock"] < -2    # never bought
    assert head.rate("p7") > 2 * head.rate("p9")       # its own rate, beyond the features (same price)
    low, high = head.probability(["p1", "p1"], np.array([0.2, 0.8]))
    assert high / low == pytest.approx(4 ** head.gamma, rel=0.2)
    # chosen on held-out clicks, and better there than the per-product rates on the same clicks
    assert fit["heldout_clicks"] > 1000 and fit["clicks"] == 12000
    _, per_product = fit_conversion(frames, text_to_id, dict(zip(frame["id"], frame["category"])), seed=0)
    assert max(fit["heldout_loglik_per_click"].values()) > max(per_product["heldout_loglik_per_click"].values())


def test_the_catalog_column_is_the_rate_at_click_probability_one():
    frame = catalog()
    head = ConversionHead(frame)
    head.theta = np.r_[math.log(0.3), 0.5, np.zeros(len(head.names))]
    assert head.rate("p3") == pytest.approx(0.3)
    assert head.probability(["p3"], np.array([0.25]))[0] == pytest.approx(-math.expm1(-0.3 * 0.25 ** 0.5))


def curve(points: dict) -> tuple[dict, dict]:
    """A tuning summary and its sweep from {(objective, model, x): (mean lift, mean loss)}."""
    sweep = {conversion.setting_name(o, x, m): conversion.setting(o, x, m) for o, m, x in points}
    tuning = {conversion.setting_name(o, x, m): {"revenue_lift": {"mean": lift}, "ndcg_loss": {"mean": loss}}
              for (o, m, x), (lift, loss) in points.items()}
    return tuning, sweep


def test_choose_takes_the_best_revenue_within_the_budget():
    points = {("expected_value", "product_rate", 0.01): (0.04, 0.001),
              ("expected_value", "product_rate", 0.02): (0.07, 0.009),
              ("expected_value", "product_rate", 0.03): (0.20, 0.02),  # over the budget: never chosen, however good
              ("expected_value", "head", 0.01): (0.05, 0.002), ("expected_value", "head", 0.02): (0.09, 0.004),
              ("expected_value", "head", 0.03): (0.08, 0.008),
              ("page_value", "head", 0.9): (0.30, 0.011), ("page_value", "head", 0.95): (0.11, 0.0099)}
    chosen, others = choose(*curve(points))
    assert chosen == "page_value(relevance_share=0.95)[head]"
    assert sorted(others) == ["expected_value(value_weight=0.02)[head]",
                              "expected_value(value_weight=0.02)[product_rate]"]
    over = {k: (lift, 1.0 + k[2]) for k, (lift, _) in points.items()}
    chosen, _ = choose(*curve(over))
    assert chosen == "expected_value(value_weight=0.01)[product_rate]"  # nothing within: the smallest loss


def test_choose_keeps_to_the_budget_with_its_standard_error():
    tuning, sweep = curve({("expected_value", "head", 0.01): (0.05, 0.002),
                           ("page_value", "head", 0.95): (0.11, 0.009)})
    assert choose(tuning, sweep)[0] == "page_value(relevance_share=0.95)[head]"
    tuning["page_value(relevance_share=0.95)[head]"]["ndcg_loss"]["se"] = 0.002  # 0.009 + 0.002 > 0.01
    assert choose(tuning, sweep)[0] == "expected_value(value_weight=0.01)[head]"
