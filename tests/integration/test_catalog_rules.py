"""Integration: product ids resolved against the catalog, business rules in the sorter, optional
inputs and outputs of the `rank` ensemble, catalog reloads under traffic (real tritonserver)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests

from shoprank import config
from shoprank.errors import RankError
from shoprank.online.shop import ShopConfig, synthetic_catalog
from shoprank.serving.catalog import load_catalog
from shoprank.serving.client import RankClient

QUERY = "cordless drill"


@pytest.fixture(scope="module")
def shop(tiny_model, onnx_int8, tmp_path_factory):
    """(catalog frame, RunningServer) over a repository whose tokenizer reads a catalog of ours."""
    from shoprank.serving.server import run_triton
    from shoprank.serving.triton.repository import build_repository

    work = tmp_path_factory.mktemp("catalog-rules")
    frame = synthetic_catalog(ShopConfig()).head(300).drop(columns=["appeal"])
    frame.to_csv(work / "catalog.csv", index=False)
    db = load_catalog(work / "catalog.csv", work / "catalog.sqlite")["catalog"]
    repo = build_repository(tiny_model, onnx_int8, work / "model_repository", target="python", catalog=db)
    with run_triton(repo, work_dir=work) as running:
        yield frame, running, work


@pytest.fixture(params=["grpc", "http"])
def shop_client(request, shop):
    _, running, _ = shop
    url = running.endpoints.grpc if request.param == "grpc" else running.endpoints.http
    with RankClient(url, request.param) as c:
        yield c


def ids_and_texts(frame, n=20, start=0):
    rows = frame.iloc[start:start + n]
    return rows["id"].tolist(), rows["text"].tolist()


def test_ids_rank_exactly_like_their_texts(shop, shop_client):
    frame, _, _ = shop
    ids, texts = ids_and_texts(frame)
    by_text = shop_client.infer_raw(QUERY, texts, 5)
    by_id = shop_client.rank_products(QUERY, ids, top_k=5)
    both = shop_client.rank_products(QUERY, ids, texts=texts, top_k=5)
    for response in (by_id, both):
        assert response.indices.tolist() == by_text[0].tolist()
        np.testing.assert_array_equal(response.scores, by_text[1])
        assert response.final_scores is None and response.trace is None and response.randomized is None


def test_a_plain_request_gets_exactly_todays_outputs(shop):
    """No outputs asked for: the response holds INDICES and SCORES only, as before."""
    frame, running, _ = shop
    _, texts = ids_and_texts(frame, 3)
    body = {"inputs": [{"name": config.QUERY, "datatype": "BYTES", "shape": [1], "data": [QUERY]},
                       {"name": config.CANDIDATES, "datatype": "BYTES", "shape": [3], "data": texts},
                       {"name": config.TOP_K, "datatype": "INT32", "shape": [1], "data": [2]}]}
    reply = requests.post(f"http://{running.endpoints.http}/v2/models/{config.ENSEMBLE_MODEL}/infer", json=body,
                          timeout=30).json()
    assert sorted(o["name"] for o in reply["outputs"]) == [config.INDICES, config.SCORES]


def test_unknown_id_is_invalid_arg_naming_the_first(shop, shop_client):
    frame, _, _ = shop
    ids, _ = ids_and_texts(frame, 4)
    with pytest.raises(RankError, match=r"CANDIDATE_IDS\[2\] = 'nope-1'") as err:
        shop_client.rank_products(QUERY, [ids[0], ids[1], "nope-1", "nope-2"])
    assert err.value.status in ("StatusCode.INVALID_ARGUMENT", "400")
    with pytest.raises(RankError, match="2 ids but CANDIDATES has 3"):
        shop_client.rank_products(QUERY, ids[:2], texts=["a", "b", "c"])
    with pytest.raises(RankError, match="send 1..1000"):
        shop_client.rank_products(QUERY, None, rules={"trace": True})
    assert len(shop_client.rank_products(QUERY, ids).indices) == 4  # still serving


def test_rules_filter_pin_trace_and_explore(shop, shop_client):
    frame, _, _ = shop
    ids, _ = ids_and_texts(frame, 40)
    stock = dict(zip(frame["id"], frame["in_stock"]))
    out_of_stock = [i for i in ids if not stock[i]]
    assert out_of_stock, "the test catalog should hold out-of-stock products"
    rules = {"filter": {"in_stock_only": True, "exclude_ids": [ids[0]]}, "pins": [{"id": ids[5], "position": 0}],
             "diversity": {"max_per_brand": 3, "top_n": 10}, "trace": True}
    response = shop_client.rank_products(QUERY, ids, top_k=10, rules=rules)
    returned = [ids[i] for i in response.indices]
    assert returned[0] == ids[5] and ids[0] not in returned and not set(out_of_stock) & set(returned)
    assert len(returned) == 10 == len(response.final_scores) == len(response.trace["id"])
    assert response.trace["id"][0] == ids[5] and "pin" in response.trace["moved_by"][0]
    explore = shop_client.rank_products(QUERY, ids, top_k=10, rules={"explore": {"share": 1.0, "seed": 3}})
    again = shop_client.rank_products(QUERY, ids, top_k=10, rules={"explore": {"share": 1.0, "seed": 3}})
    assert explore.randomized is True and explore.indices.tolist() == again.indices.tolist()


def test_expected_value_orders_by_conversion_times_price(shop, shop_client):
    frame, _, _ = shop
    ids, _ = ids_and_texts(frame, 30)
    response = shop_client.rank_products(QUERY, ids, rules={"objective": "expected_value"})
    price = dict(zip(frame["id"], frame["price"]))
    expected = [response.scores[k] * price[ids[i]] for k, i in enumerate(response.indices)]
    # no conversion in this catalog: every product gets the same (mean) rate, so price x p(click) orders
    assert np.all(np.diff(response.final_scores) <= 1e-6)
    assert np.all(np.diff(np.array(expected)) <= 1e-3 * max(expected))


def test_page_value_through_the_server_is_the_best_page(shop, shop_client):
    """The served page of the page objective scores as well as apply_rules' page on the scores the
    server returns (the same objective, written out here from its definition in rules.py)."""
    from shoprank.serving.catalog import Catalog
    from shoprank.serving.rules import apply_rules, parse_rules

    frame, _, work = shop
    ids, _ = ids_and_texts(frame, 30)
    rules = {"objective": "page_value", "relevance_share": 0.5, "positions": 5}
    served = shop_client.rank_products(QUERY, ids, rules=rules)
    p = np.zeros(len(ids))
    p[served.indices] = served.scores
    value = np.zeros(len(ids))
    value[served.indices] = served.final_scores  # the item's expected value
    examination, discount = 1.0 / np.arange(1, 6), 1.0 / np.log2(np.arange(5) + 2)

    def objective(order):
        return (0.5 * value[order[:5]] @ examination / (np.sort(value)[::-1][:5] @ examination)
                + 0.5 * p[order[:5]] @ discount / (np.sort(p)[::-1][:5] @ discount))

    _, attributes = Catalog(work / "catalog.sqlite").lookup(ids)
    logits = np.log(p / (1 - p)).astype(np.float32)
    best = apply_rules(logits, 0, parse_rules(rules), attributes).indices
    assert objective(served.indices) == pytest.approx(objective(best), rel=1e-4)
    assert sorted(served.indices.tolist()) == list(range(len(ids)))
    by_relevance = shop_client.rank_products(QUERY, ids).indices
    assert objective(by_relevance) < objective(served.indices)  # the objective moved the page


@pytest.mark.parametrize("rules,field", [
    ({"filter": {"price_min": "cheap"}}, "RULES.filter.price_min"),
    ({"pins": [{"id": "x", "position": -2}]}, r"RULES.pins\[0\].position"),
    ({"diversity": {"max_per_brand": 0}}, "RULES.diversity.max_per_brand"),
    ("{not json", "RULES is not valid JSON"),
])
def test_a_bad_rule_is_invalid_arg_naming_the_field(shop, shop_client, rules, field):
    frame, _, _ = shop
    ids, _ = ids_and_texts(frame, 5)
    with pytest.raises(RankError, match=field) as err:
        shop_client.rank_products(QUERY, ids, rules=rules)
    assert err.value.status in ("StatusCode.INVALID_ARGUMENT", "400")


def test_rules_on_texts_alone_work_until_they_need_the_catalog(shop, shop_client):
    frame, _, _ = shop
    _, texts = ids_and_texts(frame, 6)
    plain = shop_client.infer_raw(QUERY, texts, 0)
    response = shop_client.rank_products(QUERY, texts=texts, rules={"trace": True})
    assert response.indices.tolist() == plain[0].tolist()
    with pytest.raises(RankError, match="RULES filter needs product attributes: send CANDIDATE_IDS"):
        shop_client.rank_products(QUERY, texts=texts, rules={"filter": {"in_stock_only": True}})


def test_reloading_the_catalog_while_serving_loses_no_request(shop):
    frame, running, work = shop
    ids, texts = ids_and_texts(frame, 50)
    failures, done, stop = [], [0], threading.Event()

    def traffic(protocol):
        url = running.endpoints.grpc if protocol == "grpc" else running.endpoints.http
        with RankClient(url, protocol) as client:
            while not stop.is_set():
                try:
                    client.rank_products(QUERY, ids, top_k=10, rules={"filter": {"in_stock_only": True}})
                    done[0] += 1
                except Exception as exc:  # any failed request fails the test
                    failures.append(repr(exc))

    threads = [threading.Thread(target=traffic, args=(p,)) for p in ("grpc", "http")]
    for t in threads:
        t.start()
    renamed = frame.copy()
    for round_no in range(6):
        renamed["text"] = [f"{t} v{round_no}" for t in frame["text"]]
        renamed.to_csv(work / "reload.csv", index=False)
        load_catalog(work / "reload.csv", work / "catalog.sqlite")
        time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failures == [] and done[0] > 10
    with RankClient(running.endpoints.grpc, "grpc") as client:  # the last catalog is the one served
        now = client.rank_products(QUERY, ids[:5])
        sent = client.infer_raw(QUERY, [f"{t} v5" for t in texts[:5]], 0)
    assert now.indices.tolist() == sent[0].tolist()
    np.testing.assert_array_equal(now.scores, sent[1])
