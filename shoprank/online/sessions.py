"""Days of shopping sessions by the simulated shoppers of shop.py, logged like production traffic:
the personalization experiment's test bed (online.personalize; the story: docs/simulator.md).

The shop's query pool: per category of the synthetic catalogue, queries typed as data.synthetic
types them, each with the candidates retrieval would hand over and their shop-wide relevance.
Each day shop.Shoppers picks who shops (returning shoppers, new arrivals; a share drift); a
shopper searches their favourite category with probability `favourite_share`, else any. The page
is ordered by the logging policy (the non-personalized model; an exploration share in random
order) and simulate_page plays what the shopper does on it, as shop.py says (examination, a click
lifted by their preferences, add to cart, purchase), into a real FeedbackStore.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass

import numpy as np

from ..data import synthetic
from ..serving.client import Shown
from .feedback import FeedbackStore
from .shop import ShopConfig, Shopper, Shoppers, simulate_page, synthetic_catalog

DAY_S = 86400.0
T0 = 1.7e9   # the first simulated day's midnight (unix seconds)


@dataclass
class PoolQuery:
    query: str
    category: str
    texts: list               # candidate product texts, in retrieval order
    relevance: np.ndarray     # shop-wide relevance per candidate (synthetic.relevance)


def query_pool(per_category: int, candidates: int, seed: int = 0) -> list[PoolQuery]:
    """`per_category` distinct queries per category of the default data's catalogue, each with
    `candidates` candidates (synthetic.candidate_set)."""
    products = synthetic.build_catalogue(random.Random(0))
    by_category: dict[str, list] = {}
    for p in products:
        by_category.setdefault(p.category, []).append(p)
    rnd = random.Random(seed)
    pool, seen = [], set()
    for category in sorted(by_category):
        made, tries = 0, 0
        while made < per_category and tries < 50 * per_category:
            tries += 1
            query, intent = synthetic.make_query(rnd, rnd.choice(by_category[category]))
            if query in seen:
                continue
            seen.add(query)
            items = synthetic.candidate_set(rnd, intent, by_category[category], products, (2, 4), (8, 12),
                                            candidates)[:candidates]
            rnd.shuffle(items)
            pool.append(PoolQuery(query, category, [p.text for p in items],
                                  np.array([synthetic.relevance(intent, p) for p in items])))
            made += 1
    return pool


@dataclass
class Request:
    request_id: str
    shopper: Shopper           # a copy: the shopper's preferences when the request was made
    day: int
    ts: float
    query: PoolQuery
    randomized: bool
    user: str | None = None    # the shopper's pseudonym in the log (set when the log is read)


def simulate_days(cfg: ShopConfig, days: int, pool: list[PoolQuery], scores: Callable[[PoolQuery], np.ndarray],
                  store: FeedbackStore, favourite_share: float = 0.8) -> tuple[list[Request], dict]:
    """Run `days` days of cfg.sessions_per_day sessions; log to `store`; (requests in time order,
    the catalogue's attributes by product text)."""
    frame = synthetic_catalog(cfg)
    products = {r.text: r._asdict() for r in frame.itertuples(index=False)}
    brands_by_category = frame.groupby("category")["brand"].agg(lambda b: sorted(set(b))).to_dict()
    rnd = random.Random(cfg.seed)
    people = Shoppers(cfg, brands_by_category, rnd)
    by_category: dict[str, list[PoolQuery]] = {}
    for q in pool:
        by_category.setdefault(q.category, []).append(q)
    requests = []
    for day in range(days):
        for s in range(cfg.sessions_per_day):
            shopper = people.pick()
            category = (shopper.category if rnd.random() < favourite_share and shopper.category in by_category
                        else rnd.choice(sorted(by_category)))
            q = rnd.choice(by_category[category])
            randomized = rnd.random() < cfg.explore_share
            order = list(np.argsort(-scores(q), kind="stable"))[: cfg.top_k]
            if randomized:
                rnd.shuffle(order)
            rid = f"{cfg.seed}-d{day}-s{s}"
            ts = T0 + day * DAY_S + s * (DAY_S / (2 * cfg.sessions_per_day))
            store.record_impression(rid, q.query, [Shown(int(i), q.texts[i], None) for i in order],
                                    user_id=shopper.user_id, randomized=randomized, ts=ts)
            simulate_page(shopper, q, order, products, cfg, rnd, store, rid, ts)
            requests.append(Request(rid, copy(shopper), day, ts, q, randomized))
        people.next_day()
    store.flush()
    return requests, products
