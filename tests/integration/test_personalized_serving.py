"""The shopper in the served `rank` ensemble (docs/personalization.md), on a real tritonserver:
USER_ID looked up in the profile store (SQLite, and a real redis-server), USER_CONTEXT from the
caller, both optional over gRPC and HTTP; anonymous requests score exactly as a server without
personalization; bad input is INVALID_ARG naming the tensor; a store outage is a cold start,
counted, never a failed request."""
from __future__ import annotations

import urllib.request

import numpy as np
import pytest

from shoprank.data.pseudonym import load_or_create_key, pseudonym
from shoprank.errors import RankError
from shoprank.features.behaviour import BEHAVIOUR_FEATURES
from shoprank.serving.client import RankClient
from shoprank.serving.head import ScoringHead
from shoprank.serving.personal import personal_dir
from shoprank.serving.profiles import Behaviour, open_profiles
from shoprank.serving.redis_server import redis_binary, run_redis
from shoprank.serving.server import run_triton
from shoprank.serving.triton.repository import build_repository

CANDIDATES = ["DEWALT cordless drill", "RYOBI cordless drill", "white interior paint", "drill bit set"]
QUERY = "cordless drill"


def _personal_model(tiny_model, folder):
    """A model folder beside the tiny model's with a hand-set personal head: loyalty to the
    shopper's brand among related products moves a candidate up by 20 logits."""
    import shutil

    model = folder / "model"
    shutil.copytree(tiny_model, model)
    weights = np.zeros((1 + len(BEHAVIOUR_FEATURES), 1), np.float32)
    weights[0, 0] = 1.0
    weights[1 + BEHAVIOUR_FEATURES.index("brand_share"), 0] = 20.0
    n = 1 + len(BEHAVIOUR_FEATURES)
    ScoringHead(BEHAVIOUR_FEATURES, np.zeros(n, np.float32), np.ones(n, np.float32), [weights],
                [np.zeros(1, np.float32)], {"design": "fusion", "by": "test"}).save(personal_dir(model))
    return model


def _fill(store, key):
    for user, brand in (("alice", "DEWALT"), ("bob", "RYOBI")):
        store.add(pseudonym(user, key), [Behaviour(float(i), "purchase", f"{brand} cordless drill kit {i}")
                                         for i in range(3)] + [Behaviour(9.0, "query", "drill")])


@pytest.fixture(scope="module")
def personal_server(tiny_model, onnx_int8, tmp_path_factory):
    work = tmp_path_factory.mktemp("personal")
    key_file = work / "user_id.key"
    store_path = work / "profiles.sqlite"
    _fill(open_profiles(store_path), load_or_create_key(key_file))
    repo = build_repository(_personal_model(tiny_model, work), onnx_int8, work / "repo", target="python",
                            profile_store=str(store_path), pseudonym_key=key_file)
    with run_triton(repo, work_dir=work / "triton") as running:
        yield repo, running


@pytest.fixture(params=["grpc", "http"])
def personal_client(request, personal_server):
    endpoints = personal_server[1].endpoints
    url = endpoints.grpc if request.param == "grpc" else endpoints.http
    with RankClient(url, request.param) as c:
        yield c


def _top(client, **shopper):
    return CANDIDATES[int(client.infer_with_id(QUERY, CANDIDATES, 0, **shopper)[0][0])]


def test_config_declares_the_optional_shopper_inputs(personal_server):
    text = (personal_server[0] / "rank" / "config.pbtxt").read_text()
    assert '{ name: "USER_ID" data_type: TYPE_STRING dims: [ 1 ] optional: true }' in text
    assert 'input_map { key: "BEHAVIOUR" value: "BEHAVIOUR" }' in text


def test_two_shoppers_get_their_brand_first(personal_client):
    assert _top(personal_client, user_id="alice") == "DEWALT cordless drill"
    assert _top(personal_client, user_id="bob") == "RYOBI cordless drill"


def test_anonymous_and_unknown_score_exactly_as_without_personalization(personal_client, server):
    protocol = personal_client.protocol
    with RankClient(server.grpc if protocol == "grpc" else server.http, protocol) as plain:
        want_i, want_s, _ = plain.infer_with_id(QUERY, CANDIDATES)
    for shopper in ({}, {"user_id": "somebody-new"}, {"user_context": []}):
        got_i, got_s, _ = personal_client.infer_with_id(QUERY, CANDIDATES, 0, **shopper)
        assert got_i.tolist() == want_i.tolist() and np.array_equal(got_s, want_s)


def test_context_from_the_caller_personalizes_and_comes_first(personal_client):
    ryobi = [f"purchase:RYOBI cordless drill kit {i}" for i in range(3)]
    assert _top(personal_client, user_context=ryobi) == "RYOBI cordless drill"
    # alice's stored DEWALT purchases, outweighed by newer RYOBI context
    assert _top(personal_client, user_id="alice", user_context=ryobi * 3) == "RYOBI cordless drill"


def test_over_long_context_is_cut_and_bad_utf8_is_named(personal_client):
    long_context = [("purchase:RYOBI cordless drill " + "x" * 5000)] * 300
    assert _top(personal_client, user_context=long_context) in CANDIDATES
    with pytest.raises(RankError, match=r"USER_CONTEXT\[1\] is not valid UTF-8") as err:
        personal_client.infer_with_id(QUERY, CANDIDATES, 0, user_context=[b"fine", b"\xc3\x28"])
    assert not err.value.retryable
    with pytest.raises(RankError, match="USER_ID is not valid UTF-8"):
        personal_client.infer_with_id(QUERY, CANDIDATES, 0, user_id=b"\xff")
    assert _top(personal_client, user_id="alice") == "DEWALT cordless drill"   # still serving


def _outage_count(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("shoprank_profile_lookups_total") and 'source="outage"' in line)


@pytest.mark.skipif(redis_binary() is None,
                    reason="redis-server not installed (Debian package redis-server; make system)")
def test_redis_store_then_outage_is_a_counted_cold_start(tiny_model, onnx_int8, tmp_path):
    key_file = tmp_path / "user_id.key"
    redis_ctx = run_redis(tmp_path / "redis")
    url = redis_ctx.__enter__()
    try:
        _fill(open_profiles(url), load_or_create_key(key_file))
        repo = build_repository(_personal_model(tiny_model, tmp_path), onnx_int8, tmp_path / "repo",
                                target="python", profile_store=url, pseudonym_key=key_file)
        with run_triton(repo, work_dir=tmp_path / "triton") as running, \
                RankClient(running.endpoints.grpc, "grpc") as client:
            assert _top(client, user_id="alice") == "DEWALT cordless drill"
            assert _top(client, user_id="bob") == "RYOBI cordless drill"
            anonymous = client.infer_with_id(QUERY, CANDIDATES)[1]
            assert _outage_count(running.endpoints.metrics) == 0
            redis_ctx.__exit__(None, None, None)
            redis_ctx = None
            for _ in range(3):   # the store is gone: cold start, same scores as anonymous
                indices, scores, _ = client.infer_with_id(QUERY, CANDIDATES, 0, user_id="bob")
                assert np.array_equal(np.sort(scores), np.sort(anonymous))
            assert _outage_count(running.endpoints.metrics) >= 3
    finally:
        if redis_ctx is not None:
            redis_ctx.__exit__(None, None, None)


def test_the_demo_can_tell_whether_a_personal_head_is_served(personal_server, server):
    from shoprank.online.personal_demo import serves_personal_head

    endpoints = personal_server[1].endpoints
    assert serves_personal_head(endpoints.grpc, "grpc") and serves_personal_head(endpoints.http, "http")
    assert not serves_personal_head(server.grpc, "grpc")
