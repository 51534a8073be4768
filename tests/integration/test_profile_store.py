"""The online profile store, both backends behind one interface: SQLite (embedded) and a real
redis-server (Debian's package; skipped, naming it, where it is not installed). Feeding from
the feedback log, bounded newest-first profiles, erasure and the outage path."""
from __future__ import annotations

import time

import pytest

from shoprank.serving.profiles import (
    MAX_EVENTS,
    Behaviour,
    ProfileUnavailable,
    RedisProfiles,
    lookup_cost,
    open_profiles,
)
from shoprank.serving.redis_server import redis_binary, run_redis

needs_redis = pytest.mark.skipif(redis_binary() is None,
                                 reason="redis-server not installed (Debian package redis-server; make system)")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if redis_binary() is None:
        pytest.skip("redis-server not installed (Debian package redis-server; make system)")
    with run_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=needs_redis)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_profiles(tmp_path / "profiles.sqlite", max_events=5)
    else:
        s = open_profiles(request.getfixturevalue("redis_url"), max_events=5)
    yield s
    s.close()


def test_newest_first_bounded_and_per_user(store):
    user = f"u_{time.time_ns()}"
    store.add(user, [Behaviour(100.0 + i, "click", f"product {i}") for i in range(8)])
    store.add(user, [Behaviour(50.0, "query", "an old query")])  # older than all kept: dropped
    got = store.recent(user)
    assert [e.text for e in got] == [f"product {i}" for i in (7, 6, 5, 4, 3)]
    assert [e.text for e in store.recent(user, limit=2)] == ["product 7", "product 6"]
    assert store.recent("u_unknown") == []
    store.add(user + "x", [Behaviour(1.0, "purchase", "other shopper's drill")])
    assert [e.kind for e in store.recent(user + "x")] == ["purchase"]
    assert store.users() >= 2


def test_forget_erases_one_shopper_only(store):
    a, b = f"u_a{time.time_ns()}", f"u_b{time.time_ns()}"
    store.add(a, [Behaviour(1.0, "query", "drill"), Behaviour(2.0, "click", "DEWALT drill")])
    store.add(b, [Behaviour(1.0, "query", "paint")])
    assert store.forget(a) == 2
    assert store.recent(a) == []
    assert store.forget(a) == 0
    assert [e.text for e in store.recent(b)] == ["paint"]


def test_bad_kind_and_bad_url_are_clear():
    with pytest.raises(ValueError, match="behaviour kind"):
        Behaviour(1.0, "wishlist", "x")
    with pytest.raises(ValueError, match="profile store URL"):
        open_profiles("mysql://host/db")


def test_lookup_cost_is_measured(store):
    users = [f"u_{i}" for i in range(50)]
    for u in users:
        store.add(u, [Behaviour(float(i), "click", f"product {i} of {u}") for i in range(MAX_EVENTS)])
    cost = lookup_cost(store, users, repeats=200)
    assert cost["lookups"] == 200 and 0 < cost["p50_us"] <= cost["p99_us"]


@needs_redis
def test_redis_outage_raises_profile_unavailable(tmp_path):
    with run_redis(tmp_path / "r") as url:
        store = RedisProfiles(url)
        store.add("u_x", [Behaviour(1.0, "query", "drill")])
        assert len(store.recent("u_x")) == 1
    # the server is gone: the store says so with its own error, quickly, not a hang
    started = time.perf_counter()
    with pytest.raises(ProfileUnavailable, match="profile store"):
        store.recent("u_x")
    assert time.perf_counter() - started < 2.0
    store.close()


def test_feed_from_feedback_log_and_forget_everywhere(tmp_path):
    from shoprank.data.pseudonym import load_or_create_key, pseudonym
    from shoprank.online.feedback import FeedbackStore, read_frames
    from shoprank.online.profile_feed import feed_profiles, forget
    from shoprank.serving.client import Shown

    key_file, db = tmp_path / "key", tmp_path / "feedback.sqlite"
    with FeedbackStore(db, pseudonym_key_file=key_file) as log:
        shown = [Shown(0, "DEWALT 20V drill", 0.9), Shown(1, "white paint", 0.2)]
        log.record_impression("r1", "cordless drill", shown, user_id="alice@example.com", ts=10.0)
        log.record_event("r1", 0, "click", ts=11.0)
        log.record_event("r1", 0, "purchase", ts=12.0)
        log.record_impression("r2", "paint", shown[::-1], user_id="bob", ts=20.0)
        log.record_event("r2", 0, "click", ts=21.0)
        log.record_impression("r3", "anonymous query", shown, ts=30.0)
        log.flush()
    store = open_profiles(tmp_path / "profiles.sqlite")
    assert feed_profiles(db, store) == {"shoppers": 2, "events": 5}
    alice = pseudonym("alice@example.com", load_or_create_key(key_file))
    assert [(e.kind, e.text) for e in store.recent(alice)] == [
        ("purchase", "DEWALT 20V drill"), ("click", "DEWALT 20V drill"), ("query", "cordless drill")]

    erased = forget("alice@example.com", db, store, key_file=key_file)
    assert erased == {"profile_events": 3, "impressions": 1, "shown": 2, "events": 2}
    assert store.recent(alice) == []
    imps, shown_rows, events = read_frames(db)
    assert alice not in set(imps["user_id"].dropna())
    assert sorted(imps["request_id"]) == ["r2", "r3"] and set(shown_rows["request_id"]) == {"r2", "r3"}
    assert list(events["request_id"]) == ["r2"]
    bob = pseudonym("bob", load_or_create_key(key_file))
    assert [e.kind for e in store.recent(bob)] == ["click", "query"]
    with pytest.raises(ValueError, match="non-empty"):
        forget("", db, store, key_file=key_file)
