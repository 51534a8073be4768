"""Business rules of the sorter (shoprank.serving.rules): every rule, its errors, and the
properties that must hold for any request (hypothesis)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprank import config
from shoprank.errors import RequestError
from shoprank.serving.catalog import ATTRIBUTES, COLUMN, code, id_code
from shoprank.serving.rules import _descending, apply_rules, parse_json, parse_rules, trace_json
from shoprank.serving.sorter import rank_logits

BRANDS = ("DEWALT", "Makita", "RYOBI")
CATEGORIES = ("tools", "paint")


def attributes(n: int, rng: np.random.Generator) -> np.ndarray:
    a = np.zeros((n, len(ATTRIBUTES)))
    a[:, COLUMN["price"]] = rng.uniform(1, 500, n).round(2)
    a[:, COLUMN["margin"]] = a[:, COLUMN["price"]] * rng.uniform(0.1, 0.4, n)
    a[:, COLUMN["in_stock"]] = rng.random(n) < 0.8
    a[:, COLUMN["rating"]] = rng.uniform(1, 5, n)
    a[:, COLUMN["conversion"]] = rng.uniform(0.05, 0.5, n)
    a[:, COLUMN["brand_code"]] = [code(BRANDS[i]) for i in rng.integers(0, len(BRANDS), n)]
    a[:, COLUMN["category_code"]] = [code(CATEGORIES[i]) for i in rng.integers(0, len(CATEGORIES), n)]
    return a


def request(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"p{i}" for i in range(n)]
    attrs = attributes(n, rng)
    attrs[:, COLUMN["id_code"]] = [id_code(i) for i in ids]  # as the catalog's lookup gives them
    return rng.normal(size=n).astype(np.float32), attrs, ids


def test_no_rules_is_todays_order_and_scores():
    logits, attrs, ids = request(50)
    logits[3] = logits[7]  # a tie keeps request order
    page = apply_rules(logits, 10, parse_rules({}), attrs, ids)
    indices, scores = rank_logits(logits, 10)
    np.testing.assert_array_equal(page.indices, indices)
    np.testing.assert_array_equal(page.relevance, scores)


def test_filters_drop_what_they_name():
    logits, attrs, ids = request(60)
    rules = parse_rules({"filter": {"exclude_ids": ["p1", "p2"], "in_stock_only": True, "price_min": 50,
                                    "price_max": 300, "categories": ["Tools"]}})
    page = apply_rules(logits, 0, rules, attrs, ids)
    assert len(page.indices) > 0
    for i in page.indices:
        assert ids[i] not in ("p1", "p2")
        assert attrs[i, COLUMN["in_stock"]] == 1
        assert 50 <= attrs[i, COLUMN["price"]] <= 300
        assert attrs[i, COLUMN["category_code"]] == code("tools")


def test_pins_land_at_their_positions():
    logits, attrs, ids = request(30)
    worst = ids[int(np.argmin(logits))]
    page = apply_rules(logits, 10, parse_rules({"pins": [{"id": worst, "position": 0},
                                                          {"id": "p5", "position": 4}]}), attrs, ids)
    assert ids[page.indices[0]] == worst and ids[page.indices[4]] == "p5"
    assert len(page.indices) == 10


def test_boost_is_bounded_and_reorders_near_ties_only():
    logits = np.array([2.0, 1.99, -3.0], np.float32)
    attrs = attributes(3, np.random.default_rng(0))
    attrs[:, COLUMN["margin"]] = [1.0, 50.0, 100.0]
    page = apply_rules(logits, 0, parse_rules({"boost": {"attribute": "margin", "strength": 0.5}}), attrs)
    assert list(page.indices) == [1, 0, 2]  # the near-tie flips; the far one stays last
    assert np.all(page.final <= page.relevance * 1.5 + 1e-6)


def test_diversity_caps_a_brand_in_the_top_n():
    logits, attrs, ids = request(40)
    attrs[:20, COLUMN["brand_code"]] = code("DEWALT")
    logits[:20] += 10  # one brand dominates by relevance
    page = apply_rules(logits, 10, parse_rules({"diversity": {"max_per_brand": 4, "top_n": 10}}), attrs, ids)
    brands = attrs[page.indices, COLUMN["brand_code"]]
    assert max((brands == code(b)).sum() for b in BRANDS) <= 4
    assert len(page.indices) == 10
    # too few brands to fill the top n: the best deferred items fill it, nothing is lost
    page = apply_rules(logits, 0, parse_rules({"diversity": {"max_per_brand": 1, "top_n": 10}}), attrs, ids)
    assert sorted(page.indices) == list(range(40))


def test_expected_value_weighs_conversion_and_value():
    logits = np.zeros(3, np.float32)
    attrs = attributes(3, np.random.default_rng(0))
    attrs[:, COLUMN["price"]] = [10.0, 100.0, 50.0]
    attrs[:, COLUMN["conversion"]] = [0.5, 0.1, 0.5]
    page = apply_rules(logits, 0, parse_rules({"objective": "expected_value"}), attrs)
    assert list(page.indices) == [2, 1, 0]  # 25, 10, 5
    np.testing.assert_allclose(page.final, [0.5 * 25, 0.5 * 10, 0.5 * 5], rtol=1e-5)


def test_click_exponent_makes_conversion_follow_the_requests_click_probability():
    logits = np.array([2.0, 0.0, -1.0], np.float32)
    attrs = attributes(3, np.random.default_rng(0))
    attrs[:, COLUMN["price"]] = [10.0, 100.0, 50.0]
    attrs[:, COLUMN["conversion"]] = [0.5, 0.1, 0.5]
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    rules = {"objective": "expected_value", "value_weight": 0.5, "click_exponent": 0.7}
    page = apply_rules(logits, 0, parse_rules(rules), attrs)
    expected = p * (attrs[:, COLUMN["conversion"]] * p ** 0.7 * attrs[:, COLUMN["price"]]) ** 0.5
    np.testing.assert_allclose(page.final, expected[page.indices], rtol=1e-5)
    assert list(page.indices) == list(np.argsort(-expected))
    # without the key, or with 0, the catalog's rate alone (RULES from before the key: unchanged)
    plain = apply_rules(logits, 0, parse_rules({"objective": "expected_value", "value_weight": 0.5}), attrs)
    zero = apply_rules(logits, 0, parse_rules({**rules, "click_exponent": 0}), attrs)
    np.testing.assert_array_equal(plain.final, zero.final)
    np.testing.assert_allclose(plain.final, (p * (attrs[:, COLUMN["conversion"]] * attrs[:, COLUMN["price"]]) ** 0.5)[
        plain.indices], rtol=1e-5)
    # relevance ordering ignores it
    relevance = apply_rules(logits, 0, parse_rules({"click_exponent": 2}), attrs)
    assert list(relevance.indices) == [0, 1, 2]
    assert parse_rules({}).click_exponent == 0.0
    assert parse_rules({}, {"click_exponent": 0.4}).click_exponent == 0.4  # a server default


def test_exploration_shuffles_a_share_and_says_so():
    logits, attrs, ids = request(20)
    shuffled = [apply_rules(logits + s, 0, parse_rules({"explore": {"share": 0.3, "seed": 1}}), attrs, ids)
                for s in np.linspace(0, 1, 200, dtype=np.float32)]
    share = np.mean([p.randomized for p in shuffled])
    assert 0.15 < share < 0.45
    plain = [p for p in shuffled if not p.randomized][0]
    assert list(plain.indices) == sorted(plain.indices, key=lambda i: -plain.final[list(plain.indices).index(i)])


def test_trace_names_the_rules_that_moved_an_item():
    logits, attrs, ids = request(10)
    worst = ids[int(np.argmin(logits))]
    page = apply_rules(logits, 3, parse_rules({"pins": [{"id": worst, "position": 0}], "trace": True}), attrs, ids)
    trace = json.loads(trace_json(page.trace))  # as the sorter sends it
    assert trace["id"][0] == worst and trace["moved_by"][0] == "pin" and trace["relevance_position"][0] == 9
    assert trace["moved_by"][1:] == ["", ""] and trace["relevance_position"][1:] == [0, 1]  # pushed down by one
    # index, relevance and final are the INDICES, SCORES and FINAL_SCORES outputs: not repeated
    assert set(trace) == {"id", "relevance_position", "moved_by", "randomized"}
    assert all(len(trace[k]) == 3 for k in ("id", "relevance_position", "moved_by"))
    ev = json.loads(trace_json(apply_rules(logits, 0, parse_rules({"objective": "expected_value", "trace": True}),
                                           attrs, ids).trace))
    assert any(m == "objective" for m in ev["moved_by"])


def test_defaults_apply_and_a_request_key_replaces_them():
    defaults = {"filter": {"in_stock_only": True}, "trace": True}
    assert parse_rules({}, defaults).in_stock_only
    assert not parse_rules({"filter": {}}, defaults).in_stock_only
    assert parse_rules({}, defaults).trace


def _page_objective(order, value, gain, share: float, positions: int, bias: float) -> float:
    """The page_value objective of an order, written out from its definition (rules.py)."""
    k = min(positions, len(order))
    examination = 1.0 / np.arange(1, k + 1) ** bias
    discount = 1.0 / np.log2(np.arange(k) + 2)
    best_v = np.sort(value)[::-1][:k] @ examination
    best_g = np.sort(gain)[::-1][:k] @ discount
    return ((1 - share) * value[order[:k]] @ examination / best_v + share * gain[order[:k]] @ discount / best_g)


@pytest.mark.parametrize("seed", range(6))
def test_page_value_finds_the_best_first_positions(seed):
    """No order of the candidates scores better on the page objective (brute force over all of them)."""
    from itertools import permutations

    logits, attrs, ids = request(7, seed)
    rules = {"objective": "page_value", "relevance_share": 0.6, "positions": 4, "position_bias": 1.0}
    page = apply_rules(logits, 0, parse_rules(rules), attrs, ids)
    value = apply_rules(logits, 0, parse_rules({"objective": "expected_value"}), attrs, ids)
    ev = np.empty(7)
    ev[value.indices] = value.final
    gain = 1 / (1 + np.exp(-logits.astype(np.float64)))
    got = _page_objective(page.indices, ev, gain, 0.6, 4, 1.0)
    best = max(_page_objective(np.array(p), ev, gain, 0.6, 4, 1.0) for p in permutations(range(7), 4))
    assert got == pytest.approx(best, rel=1e-5)
    # after the chosen positions: the rest in relevance order
    rest = page.indices[4:]
    assert list(rest) == sorted(rest, key=lambda i: -logits[i])


def test_page_value_at_its_ends_is_relevance_and_expected_value():
    logits, attrs, ids = request(40, 3)
    relevance = apply_rules(logits, 0, parse_rules({}), attrs, ids).indices
    only_ndcg = apply_rules(logits, 0, parse_rules({"objective": "page_value", "relevance_share": 1.0}), attrs, ids)
    np.testing.assert_array_equal(only_ndcg.indices, relevance)
    value = apply_rules(logits, 0, parse_rules({"objective": "expected_value"}), attrs, ids)
    only_value = apply_rules(logits, 0, parse_rules({"objective": "page_value", "relevance_share": 0.0}), attrs, ids)
    np.testing.assert_array_equal(only_value.indices[:10], value.indices[:10])
    np.testing.assert_array_equal(only_value.indices[10:], [i for i in relevance if i not in value.indices[:10]])
    # in between it trades: some value moves up, and the page keeps more relevance than value alone
    mid = apply_rules(logits, 0, parse_rules({"objective": "page_value", "relevance_share": 0.5}), attrs, ids)
    assert list(mid.indices[:10]) not in (list(relevance[:10]), list(value.indices[:10]))


@pytest.mark.parametrize("rules,field", [
    ({"objective": "profit"}, "RULES.objective"),
    ({"value": "weight"}, "RULES.value"),
    ({"value_weight": 2}, "RULES.value_weight"),
    ({"click_exponent": -0.5}, "RULES.click_exponent"),
    ({"click_exponent": 5}, "RULES.click_exponent"),
    ({"click_exponent": "high"}, "RULES.click_exponent"),
    ({"filter": {"price_min": "cheap"}}, "RULES.filter.price_min"),
    ({"filter": {"price_min": 10, "price_max": 5}}, "RULES.filter.price_min"),
    ({"filter": {"in_stock_only": "yes"}}, "RULES.filter.in_stock_only"),
    ({"filter": {"colour": "red"}}, "RULES.filter.colour"),
    ({"filter": {"exclude_ids": "p1"}}, "RULES.filter.exclude_ids"),
    ({"pins": [{"id": "p1", "position": -1}]}, "RULES.pins[0].position"),
    ({"pins": [{"id": "p1", "position": 0}, {"id": "p2", "position": 0}]}, "RULES.pins[1].position"),
    ({"pins": [{"id": 3, "position": 0}]}, "RULES.pins[0].id"),
    ({"boost": {"attribute": "colour", "strength": 0.1}}, "RULES.boost.attribute"),
    ({"boost": {"attribute": "margin", "strength": 5}}, "RULES.boost.strength"),
    ({"diversity": {"max_per_brand": 0}}, "RULES.diversity.max_per_brand"),
    ({"explore": {"share": 1.5}}, "RULES.explore.share"),
    ({"trace": 1}, "RULES.trace"),
    ({"relevance_share": 1.5}, "RULES.relevance_share"),
    ({"positions": 0}, "RULES.positions"),
    ({"positions": 2.5}, "RULES.positions"),
    ({"position_bias": -1}, "RULES.position_bias"),
    ({"sort": "price"}, "RULES.sort"),
])
def test_a_bad_rule_is_a_request_error_naming_the_field(rules, field):
    with pytest.raises(RequestError, match=field.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_rules(parse_json(json.dumps(rules)))


def test_rules_that_need_ids_or_attributes_say_so():
    logits = np.zeros(3, np.float32)
    with pytest.raises(RequestError, match=config.CANDIDATE_IDS):
        apply_rules(logits, 0, parse_rules({"objective": "expected_value"}))
    with pytest.raises(RequestError, match=config.CANDIDATE_IDS):
        apply_rules(logits, 0, parse_rules({"pins": [{"id": "a", "position": 0}]}))
    with pytest.raises(RequestError, match="not valid JSON"):
        parse_json(b"{nope")


# --- properties ------------------------------------------------------------------------------

rule_sets = st.fixed_dictionaries({}, optional={
    "objective": st.sampled_from(["relevance", "expected_value", "page_value"]),
    "relevance_share": st.floats(0, 1),
    "positions": st.integers(1, 60),
    "value_weight": st.floats(0, 1),
    "click_exponent": st.floats(0, 4),
    "filter": st.fixed_dictionaries({}, optional={
        "exclude_ids": st.lists(st.sampled_from([f"p{i}" for i in range(40)]), max_size=10),
        "in_stock_only": st.booleans(),
        "price_min": st.floats(0, 300), "categories": st.lists(st.sampled_from(CATEGORIES), max_size=2)}),
    "pins": st.lists(st.fixed_dictionaries({"id": st.sampled_from([f"p{i}" for i in range(40)]),
                                            "position": st.integers(0, 45)}),
                     max_size=4, unique_by=(lambda p: p["id"], lambda p: p["position"])),
    "boost": st.fixed_dictionaries({"attribute": st.sampled_from(["margin", "rating", "price", "conversion"]),
                                    "strength": st.floats(0, 1)}),
    "diversity": st.fixed_dictionaries({"max_per_brand": st.integers(1, 5), "top_n": st.integers(1, 40)}),
    "explore": st.fixed_dictionaries({"share": st.floats(0, 1), "seed": st.integers(0, 2**32 - 1)}),
    "trace": st.booleans(),
})


@settings(max_examples=200, deadline=None)
@given(rules=rule_sets, n=st.integers(1, 40), top_k=st.integers(0, 50), seed=st.integers(0, 1000))
def test_properties_of_any_valid_request(rules, n, top_k, seed):
    logits, attrs, ids = request(n, seed)
    parsed = parse_rules(parse_json(json.dumps(rules)))
    page = apply_rules(logits, top_k, parsed, attrs, ids)
    returned = [ids[i] for i in page.indices]
    # top-k never exceeds N, no item twice
    assert len(returned) <= (min(top_k, n) if top_k else n)
    assert len(set(returned)) == len(returned)
    # a filtered item never comes back
    excluded = set(rules.get("filter", {}).get("exclude_ids", []))
    assert not excluded & set(returned)
    if rules.get("filter", {}).get("in_stock_only"):
        assert all(attrs[i, COLUMN["in_stock"]] for i in page.indices)
    if "price_min" in rules.get("filter", {}):
        assert all(attrs[i, COLUMN["price"]] >= rules["filter"]["price_min"] for i in page.indices)
    # pins land where asked when allowed: a candidate that passed the filters, the page long enough
    allowed = apply_rules(logits, 0, parse_rules({"filter": rules.get("filter", {})}), attrs, ids).indices
    allowed_ids = {ids[i] for i in allowed}
    for pin in rules.get("pins", []):
        if pin["id"] in allowed_ids and pin["position"] < len(returned):
            assert returned[pin["position"]] == pin["id"]
    # the same request and seed give the same page
    again = apply_rules(logits, top_k, parse_rules(parse_json(json.dumps(rules))), attrs, ids)
    np.testing.assert_array_equal(page.indices, again.indices)
    assert page.randomized == again.randomized


@settings(max_examples=300, deadline=None)
@given(rules=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(
                              st.sampled_from(["objective", "filter", "pins", "boost", "diversity", "explore",
                                               "trace", "id", "position", "share", "price_min", "attribute",
                                               "strength", "max_per_brand", "x"]), c, max_size=4),
                          max_leaves=10))
def test_any_json_is_a_page_or_a_request_error_never_a_crash(rules):
    logits, attrs, ids = request(12)
    try:
        apply_rules(logits, 5, parse_rules(parse_json(json.dumps(rules))), attrs, ids)
    except RequestError as exc:
        assert str(exc).startswith(config.RULES)


def greedy_diversity(order, brands, per_brand, top_n):
    """The rule as written: walk the order, take an item while its brand has room, defer the rest."""
    counts, head, deferred = {}, [], []
    for i in order:
        if len(head) >= top_n:
            break
        b = brands[i]
        if b == 0 or counts.get(b, 0) < per_brand:
            counts[b] = counts.get(b, 0) + (b != 0)
            head.append(i)
        else:
            deferred.append(i)
    return head + deferred + [i for i in order if i not in head and i not in deferred]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), per_brand=st.integers(1, 4), top_n=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_diversity_is_the_greedy_rule(n, per_brand, top_n, seed):
    logits, attrs, ids = request(n, seed)
    rng = np.random.default_rng(seed)
    attrs[:, COLUMN["brand_code"]] = rng.choice([0.0, code("a"), code("b"), code("c")], n, p=[0.1, 0.6, 0.2, 0.1])
    page = apply_rules(logits, 0, parse_rules({"diversity": {"max_per_brand": per_brand, "top_n": top_n}}), attrs)
    relevance_order = list(np.argsort(-logits, kind="stable"))
    assert page.indices.tolist() == greedy_diversity(relevance_order, attrs[:, COLUMN["brand_code"]], per_brand, top_n)


def test_ids_as_bytes_give_the_same_page_as_str():
    logits, attrs, ids = request(30)
    rules = parse_rules({"filter": {"exclude_ids": ["p3"]}, "pins": [{"id": "p9", "position": 1}],
                         "explore": {"share": 0.5, "seed": 2}, "trace": True})
    as_str = apply_rules(logits, 10, rules, attrs, ids)
    as_bytes = apply_rules(logits, 10, rules, attrs, [i.encode() for i in ids])
    assert as_str.indices.tolist() == as_bytes.indices.tolist()
    assert trace_json(as_str.trace) == trace_json(as_bytes.trace)


@pytest.mark.parametrize("share", [0.3, 0.9])
def test_page_value_on_a_long_list_is_as_good_as_the_full_assignment(share):
    """Past 20 x positions candidates the assignment only looks at the items that can win a position;
    its page scores the same as the assignment over every candidate."""
    from scipy.optimize import linear_sum_assignment

    logits, attrs, ids = request(1000, 5)
    rules = {"objective": "page_value", "relevance_share": share, "positions": 10}
    page = apply_rules(logits, 0, parse_rules(rules), attrs, ids)
    value = apply_rules(logits, 0, parse_rules({"objective": "expected_value"}), attrs, ids)
    ev = np.empty(1000)
    ev[value.indices] = value.final
    gain = 1 / (1 + np.exp(-logits.astype(np.float64)))
    examination, discount = 1.0 / np.arange(1, 11), 1.0 / np.log2(np.arange(10) + 2)
    benefit = ((1 - share) * np.outer(ev, examination) / (np.sort(ev)[::-1][:10] @ examination)
               + share * np.outer(gain, discount) / (np.sort(gain)[::-1][:10] @ discount))
    rows, cols = linear_sum_assignment(benefit, maximize=True)
    full = np.empty(10, dtype=int)
    full[cols] = rows
    got = _page_objective(page.indices, ev, gain, share, 10, 1.0)
    assert got == pytest.approx(_page_objective(full, ev, gain, share, 10, 1.0), rel=1e-6)


def test_client_puts_back_the_columns_the_trace_does_not_repeat():
    from shoprank.serving.client import full_trace

    logits, attrs, ids = request(10)
    page = apply_rules(logits, 4, parse_rules({"objective": "expected_value", "trace": True}), attrs)
    sent = json.loads(trace_json(page.trace))  # the sorter's TRACE: no id, index or score columns
    trace = full_trace(sent, page.indices, page.relevance, page.final, [i.encode() for i in ids])
    assert trace["index"] == page.indices.tolist() and trace["id"] == [ids[i] for i in page.indices]
    assert trace["relevance"] == pytest.approx(page.relevance.tolist(), abs=1e-6)
    assert trace["final"] == pytest.approx(page.final.tolist(), abs=1e-6)
    assert trace["moved_by"] == sent["moved_by"] and trace["relevance_position"] == sent["relevance_position"]
    assert "final" not in full_trace(sent, page.indices, page.relevance, None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-1.5, 0.0, 0.25, 3.0]) | st.floats(-5, 5, allow_nan=False), max_size=60),
       st.sampled_from([np.float32, np.float64]))
def test_descending_is_the_stable_sort_ties_included(values, dtype):
    values = np.asarray(values, dtype=dtype)
    assert _descending(values).tolist() == np.argsort(-values, kind="stable").tolist()
