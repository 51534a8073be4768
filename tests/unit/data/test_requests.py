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
