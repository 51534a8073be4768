"""The simulated shop: the catalogue of the synthetic default data (same seed, so the same ~2,000
products), new queries typed the same way, each with a fixed set of candidates from retrieval
(matches, near misses of the same category, random others), and a hidden TRUE relevance in
[0, 1] for every (query, product): synthetic's own relevance function, the truth behind the
default data's clicks.

Shoppers look at position k with probability examination(k) = 1 / (k + 1) ** eta (position bias)
and click an examined product with synthetic.click_probability(relevance). Traffic queries are
on the training side of the query split; evaluation queries, on the validation side, are never
sent by shoppers, so no update trains on them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..data import synthetic
from ..data.split import is_valid_query
from ..quality import metrics


class WorldConfig(Protocol):
    seed: int
    traffic_queries: int
    eval_queries: int
    candidates: int


@dataclass
class SimQuery:
    query: str
    texts: list
    relevance: np.ndarray  # true relevance per candidate
    weight: float = 1.0    # popularity


def build_world(cfg: WorldConfig) -> tuple[list[SimQuery], list[SimQuery]]:
    """(traffic, evaluation) queries, deterministic in cfg.seed. Traffic queries are on the
    training side of the query split, evaluation queries on the validation side."""
    products = synthetic.build_catalogue(random.Random(0))  # the default data's products
    by_category: dict[str, list] = {}
    for p in products:
        by_category.setdefault(p.category, []).append(p)
    rnd = random.Random(cfg.seed)
    traffic, evaluation, seen = [], [], set()
    while len(traffic) < cfg.traffic_queries or len(evaluation) < cfg.eval_queries:
        target = rnd.choice(products)
        query, intent = synthetic.make_query(rnd, target)
        if query in seen:
            continue
        seen.add(query)
        is_eval = is_valid_query(query)
        bucket = evaluation if is_eval else traffic
        if len(bucket) >= (cfg.eval_queries if is_eval else cfg.traffic_queries):
            continue
        items = synthetic.candidate_set(rnd, intent, by_category[target.category], products, (2, 4), (6, 10),
                                        cfg.candidates)[: cfg.candidates]
        rnd.shuffle(items)  # retrieval order carries no signal
        bucket.append(SimQuery(query, [p.text for p in items],
                               np.array([synthetic.relevance(intent, p) for p in items])))
    for rank, q in enumerate(traffic):  # Zipf-like popularity: a few head queries, a long tail
        q.weight = 1.0 / (rank + 1) ** 0.5
    return traffic, evaluation


def examination(position: int, eta: float) -> float:
    return 1.0 / (position + 1) ** eta


def oracle_ndcg(queries: list[SimQuery], k: int = 10) -> float:
    return float(np.mean([metrics.ndcg_at_k(q.relevance, q.relevance, k) for q in queries]))
