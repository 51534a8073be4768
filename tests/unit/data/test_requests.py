"""The one generator of test requests (benchmarks, load tests, eval latency, the demo's timing)."""
import random

import pytest

from shoprank.data.load import load_default_or_shared
from shoprank.data.requests import RequestPool


@pytest.fixture(scope="module")
def pairs():
    return load_default_or_shared()


@pytest.fixture(scope="module")
def pool(pairs):
    return RequestPool(pairs)


def test_requests_are_distinct_queries_with_exactly_n_real_texts_and_reproducible(pairs, pool):
    requests = pool.distinct(50, 100)
    assert len({r.query for r in requests}) == 100
    titles = set(pairs["text"])
    for r in requests:
        assert len(r.texts) == 50 and len(set(r.texts)) == 50 and set(r.texts) <= titles
    assert pool.distinct(50, 100) == requests
    assert pool.distinct(50, 100, seed=1) != requests


def test_a_query_keeps_its_own_judged_products(pairs, pool):
    r = pool.distinct(50, 1)[0]
    own = set(pairs.loc[pairs["query"] == r.query, "text"])
    assert own <= set(r.texts)


def test_requests_draw_real_queries_with_their_own_products():
    pool = RequestPool.from_spec("default")
    own = dict(pool.groups)
    rng = random.Random(1)
    for _ in range(20):
        query, candidates = pool.draw(rng, 20)
        assert len(candidates) == 20 == len(set(candidates))
        assert set(own[query][:20]) <= set(candidates)


def test_impossible_requests_are_refused_with_the_reason(pool):
    with pytest.raises(ValueError, match="distinct product texts"):
        pool.draw(random.Random(0), len(pool.texts) + 1)
    with pytest.raises(ValueError, match="distinct requests wanted"):
        pool.distinct(10, len(pool.groups) + 1)


def test_head_heavy_traffic_repeats_popular_requests_exactly(pairs, pool):
    """Zipf over real queries: a query always comes with the same candidates, the top 1% of
    queries get the share the distribution says, and the stream is reproducible."""
    import numpy as np

    stream = pool.head_heavy(20, 3000, exponent=1.0)
    n = len(pool.groups)
    weights = 1.0 / np.arange(1, n + 1)
    assert stream.top1_share == pytest.approx(weights[:max(1, n // 100)].sum() / weights.sum())
    assert abs(stream.sampled_top1_share - stream.top1_share) < 0.05
    by_query = {}
    for r in stream.requests:
        assert len(r.texts) == 20 and by_query.setdefault(r.query, r) == r
    assert stream.distinct == len(by_query) < len(stream.requests) / 2
    assert pool.head_heavy(20, 3000, exponent=1.0).requests == stream.requests
    flatter = pool.head_heavy(20, 3000, exponent=0.5)
    assert flatter.top1_share < stream.top1_share and flatter.distinct > stream.distinct
    with pytest.raises(ValueError, match="Zipf exponent"):
        pool.head_heavy(20, 10, exponent=0)
