"""Business rules of the final ordering (the sorter step), pure numpy.

A request's RULES input is one JSON object; every key is optional, and a key it sends replaces
the server's default for that key (the sorter's `rules_defaults` config parameter):

    {
      "objective": "relevance" | "expected_value" | "page_value",  # default relevance: today's order
      "value": "price" | "margin",                    # what the objective weighs (default price)
      "value_weight": 1.0,                            # w in [0, 1]: p(click) x (conversion x value)^w
      "click_exponent": 0.0,                          # g in [0, 4]: conversion = catalog's x p(click)^g
      "relevance_share": 0.9,                         # page_value: a in [0, 1], the weight of NDCG
      "positions": 10,                                # page_value: top positions chosen together
      "position_bias": 1.0,                           # page_value: position k examined ~ 1 / (k + 1)^eta
      "filter": {"exclude_ids": ["p1", ...], "in_stock_only": true,
                 "price_min": 10, "price_max": 200, "categories": ["tools", ...]},
      "pins": [{"id": "p7", "position": 0}, ...],     # 0 = top of the page
      "boost": {"attribute": "margin" | "rating" | "price" | "conversion", "strength": 0.3},
      "diversity": {"max_per_brand": 2, "top_n": 10},
      "explore": {"share": 0.05, "seed": 7},
      "trace": true                                    # per returned item: scores, what moved it
    }

Order of application: score (objective) x boost -> filters -> best first -> exploration (a
shuffled page, flagged RANDOMIZED, no diversity) or diversity -> pins -> cut to TOP_K.
  * expected_value = p(click) x (conversion x value) ** value_weight, conversion =
    p(purchase | click) = the catalog's `conversion` x p(click) ** click_exponent (learned from
    logged purchases, so a product that does not sell, out of stock included, has a low one:
    shoprank.online.conversion). click_exponent 0 (the default) is the catalog's per-product rate
    alone; the conversion head learns one (purchases of a clicked product rise with its relevance,
    for which the request's p(click) stands in) and its catalog column is the rate at p(click) = 1,
    so a server serving such a catalog sets the learned exponent in its defaults. value_weight 1
    is the expected revenue itself; below 1 keeps relevance the base and lets value decide among
    near-equals. Stock is a business rule (filter.in_stock_only), not part of the objective.
  * page_value chooses the first `positions` items together instead of sorting item by item: the
    assignment of items to those positions that maximizes
        (1 - relevance_share) x page value / best page value + relevance_share x DCG / ideal DCG,
    page value = sum over positions k of examination(k) x expected_value of the item there
    (examination(k) = 1 / (k + 1) ** position_bias, the position-bias model of the feedback
    log's propensities), DCG over the items' p(click) with the usual 1 / log2(k + 2). Both parts
    are scaled by their own best so the share is unit-free. Examination falls faster than the
    DCG discount, so the value goes to the top few positions while the page keeps its relevant
    items: a better revenue for the same NDCG than the item-by-item blend (docs/conversion.md).
    Items after the first `positions` follow in relevance order.
  * boost multiplies by 1 + strength x (attribute scaled to [0, 1] over the candidates), strength
    in [0, MAX_BOOST]: bounded, it reorders near-ties, never buries relevance.
  * diversity: at most max_per_brand items of one brand in the first top_n; the rest keep their
    order after them (with too few brands to fill top_n, the best of the rest fill it).
  * a pin lands at its position when its id is a candidate that passed the filters and the page
    is long enough; otherwise it is placed as far up as the page allows.
  * exploration: share of requests shown in a random order, decided by a hash of (seed, the
    request's candidates and scores) and shuffled by a generator seeded with the same: the same
    request and seed give the same page.
Rules that read attributes (all but pins and exclude_ids) need CANDIDATE_IDS (the catalog's
attributes); pins and exclude_ids need CANDIDATE_IDS. A bad rule raises RequestError naming
the field (INVALID_ARG), never anything else.
"""
from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass, field

import numpy as np
import orjson

from .. import config
from ..errors import RequestError
from .catalog import COLUMN, code, id_code
from .engine import sigmoid

OBJECTIVES = ("relevance", "expected_value", "page_value")
VALUES = ("price", "margin")
BOOSTABLE = ("margin", "rating", "price", "conversion")
MAX_BOOST = 1.0        # boost multiplier at most 1 + MAX_BOOST
MAX_PINS = 100
MAX_CLICK_EXPONENT = 4.0  # a bound for a learned exponent, whose natural scale is about 1
MAX_POSITIONS = 100
MAX_POSITION_BIAS = 4.0
KEYS = ("objective", "value", "value_weight", "click_exponent", "relevance_share", "positions", "position_bias",
        "filter", "pins", "boost", "diversity", "explore", "trace")
FILTER_KEYS = ("exclude_ids", "in_stock_only", "price_min", "price_max", "categories")


@dataclass
class Rules:
    objective: str = "relevance"
    value: str = "price"
    value_weight: float = 1.0
    click_exponent: float = 0.0
    relevance_share: float = 0.9
    positions: int = 10
    position_bias: float = 1.0
    exclude_ids: frozenset = frozenset()
    in_stock_only: bool = False
    price_min: float | None = None
    price_max: float | None = None
    categories: tuple = ()
    pins: tuple = ()                 # (id, position), positions distinct
    boost: tuple | None = None       # (attribute, strength)
    diversity: tuple | None = None   # (max_per_brand, top_n)
    explore: tuple | None = None     # (share, seed)
    trace: bool = False
    given: dict = field(default_factory=dict)

    @property
    def needs_attributes(self) -> bool:
        return (self.objective != "relevance" or self.in_stock_only or self.price_min is not None
                or self.price_max is not None or bool(self.categories) or self.boost is not None
                or self.diversity is not None or self.needs_ids)

    @property
    def needs_ids(self) -> bool:
        return bool(self.exclude_ids) or bool(self.pins)


def _fail(path: str, problem: str):
    raise RequestError(f"{config.RULES}.{path} {problem}")


def _number(value, path: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        _fail(path, f"must be a number, got {json.dumps(value)[:60]}")
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(path, f"must be in [{low}, {high}], got {value}")
    return float(value)


def _integer(value, path: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"must be an integer, got {json.dumps(value)[:60]}")
    if value < low or (high is not None and value > high):
        _fail(path, f"must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return value


def _object(value, path: str, keys: tuple) -> dict:
    if not isinstance(value, dict):
        _fail(path, f"must be a JSON object, got {json.dumps(value)[:60]}")
    for key in value:
        if key not in keys:
            _fail(f"{path}.{key}" if path else key, f"is not a rule; known: {', '.join(keys)}")
    return value


def _strings(value, path: str) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(path, "must be a list of strings")
    return tuple(value)


def parse_json(text: str | bytes | None, what: str = config.RULES) -> dict:
    if text is None or text in (b"", ""):
        return {}
    try:
        value = orjson.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"{what} is not valid JSON: {exc}") from None
    return _object(value, "", KEYS)


def parse_rules(request: dict, defaults: dict | None = None) -> Rules:
    """Rules from a request's JSON object over the server's defaults (key by key)."""
    given = {**(defaults or {}), **request}
    rules = Rules(given=given)
    if "objective" in given:
        if given["objective"] not in OBJECTIVES:
            _fail("objective", f"must be one of {', '.join(OBJECTIVES)}, got {json.dumps(given['objective'])[:60]}")
        rules.objective = given["objective"]
    if "value" in given:
        if given["value"] not in VALUES:
            _fail("value", f"must be one of {', '.join(VALUES)}, got {json.dumps(given['value'])[:60]}")
        rules.value = given["value"]
    if "value_weight" in given:
        rules.value_weight = _number(given["value_weight"], "value_weight", 0.0, 1.0)
    if "click_exponent" in given:
        rules.click_exponent = _number(given["click_exponent"], "click_exponent", 0.0, MAX_CLICK_EXPONENT)
    if "relevance_share" in given:
        rules.relevance_share = _number(given["relevance_share"], "relevance_share", 0.0, 1.0)
    if "positions" in given:
        rules.positions = _integer(given["positions"], "positions", 1, MAX_POSITIONS)
    if "position_bias" in given:
        rules.position_bias = _number(given["position_bias"], "position_bias", 0.0, MAX_POSITION_BIAS)
    if "filter" in given:
        f = _object(given["filter"], "filter", FILTER_KEYS)
        if "exclude_ids" in f:
            rules.exclude_ids = frozenset(map(id_code, _strings(f["exclude_ids"], "filter.exclude_ids")))
        if "in_stock_only" in f:
            if not isinstance(f["in_stock_only"], bool):
                _fail("filter.in_stock_only", "must be true or false")
            rules.in_stock_only = f["in_stock_only"]
        if "price_min" in f:
            rules.price_min = _number(f["price_min"], "filter.price_min")
        if "price_max" in f:
            rules.price_max = _number(f["price_max"], "filter.price_max")
        if rules.price_min is not None and rules.price_max is not None and rules.price_min > rules.price_max:
            _fail("filter.price_min", f"must be <= filter.price_max ({rules.price_min} > {rules.price_max})")
        if "categories" in f:
            rules.categories = tuple(code(c) for c in _strings(f["categories"], "filter.categories"))
    if "pins" in given:
        pins = given["pins"]
        if not isinstance(pins, list) or len(pins) > MAX_PINS:
            _fail("pins", f"must be a list of at most {MAX_PINS} {{\"id\", \"position\"}} objects")
        seen_positions, seen_ids, out = set(), set(), []
        for i, pin in enumerate(pins):
            pin = _object(pin, f"pins[{i}]", ("id", "position"))
            if not isinstance(pin.get("id"), str):
                _fail(f"pins[{i}].id", "must be a string (a product id)")
            position = _integer(pin.get("position"), f"pins[{i}].position", 0, config.MAX_CANDIDATES - 1)
            if position in seen_positions:
                _fail(f"pins[{i}].position", f"{position} is already pinned")
            if pin["id"] in seen_ids:
                _fail(f"pins[{i}].id", f"{pin['id']!r} is pinned twice")
            seen_positions.add(position)
            seen_ids.add(pin["id"])
            out.append((id_code(pin["id"]), position))
        rules.pins = tuple(sorted(out, key=lambda p: p[1]))
    if "boost" in given and given["boost"] is not None:
        b = _object(given["boost"], "boost", ("attribute", "strength"))
        if b.get("attribute") not in BOOSTABLE:
            _fail("boost.attribute", f"must be one of {', '.join(BOOSTABLE)}, got {json.dumps(b.get('attribute'))}")
        rules.boost = (b["attribute"], _number(b.get("strength"), "boost.strength", 0.0, MAX_BOOST))
    if "diversity" in given and given["diversity"] is not None:
        d = _object(given["diversity"], "diversity", ("max_per_brand", "top_n"))
        rules.diversity = (_integer(d.get("max_per_brand"), "diversity.max_per_brand", 1),
                           _integer(d.get("top_n", 10), "diversity.top_n", 1, config.MAX_CANDIDATES))
    if "explore" in given and given["explore"] is not None:
        e = _object(given["explore"], "explore", ("share", "seed"))
        rules.explore = (_number(e.get("share"), "explore.share", 0.0, 1.0),
                         _integer(e.get("seed", 0), "explore.seed", 0, 2**32 - 1))
    if "trace" in given:
        if not isinstance(given["trace"], bool):
            _fail("trace", "must be true or false")
        rules.trace = given["trace"]
    return rules


@dataclass
class Page:
    indices: np.ndarray      # int32, positions in the request's candidates, best first
    relevance: np.ndarray    # float32, click probability of each
    final: np.ndarray        # float32, the score rules ordered by
    randomized: bool = False
    trace: dict | None = None
    probabilities: np.ndarray | None = None  # float32, every candidate's click probability (request order)


def apply_rules(logits: np.ndarray, top_k: int, rules: Rules, attributes: np.ndarray | None = None,
                ids: list | None = None) -> Page:
    """The final page of one request (module doc). ids (str or UTF-8 bytes) only name the items
    in the trace; rules match ids by the id codes in `attributes`."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    n = len(logits)
    if rules.needs_ids and attributes is None:
        raise RequestError(f"{config.RULES} {'pins' if rules.pins else 'filter.exclude_ids'} needs "
                           f"{config.CANDIDATE_IDS}")
    if rules.needs_attributes and attributes is None:
        raise RequestError(f"{config.RULES} {_attribute_rule(rules)} needs product attributes: send "
                           f"{config.CANDIDATE_IDS} (resolved against the catalog)")
    relevance = sigmoid(logits)  # float32
    final = relevance.astype(np.float64)
    if rules.objective in ("expected_value", "page_value"):
        a = attributes
        value = _filled(a[:, COLUMN[rules.value]], 0.0)
        conversion = a[:, COLUMN["conversion"]]
        conversion = _filled(conversion, lambda: np.nanmean(conversion) if np.isfinite(conversion).any() else 1.0)
        if rules.click_exponent:
            conversion = conversion * np.power(relevance.astype(np.float64), rules.click_exponent)
        final = final * np.power(np.maximum(conversion * value, 0.0), rules.value_weight)
    if rules.boost is not None:
        column = attributes[:, COLUMN[rules.boost[0]]]
        missing = np.isnan(column)
        known = column[~missing] if missing.any() else column
        low, high = (known.min(), known.max()) if len(known) else (0.0, 0.0)
        if high > low:  # unknown (NaN) scales to 0: no boost
            final = final * (1.0 + rules.boost[1] * np.where(missing, 0.0, (column - low) / (high - low)))
    keep = np.ones(n, dtype=bool)
    # Ids are matched by their codes (catalog.id_code) in ATTRIBUTES: no id string is decoded.
    codes = attributes[:, COLUMN["id_code"]] if rules.needs_ids else None
    if rules.exclude_ids:
        keep &= ~_among(codes, rules.exclude_ids)
    if attributes is not None:
        if rules.in_stock_only:
            keep &= ~(attributes[:, COLUMN["in_stock"]] <= 0)  # NaN (unknown) counts as in stock
        price = attributes[:, COLUMN["price"]]
        if rules.price_min is not None:
            keep &= price >= rules.price_min
        if rules.price_max is not None:
            keep &= price <= rules.price_max
        if rules.categories:
            keep &= _among(attributes[:, COLUMN["category_code"]], rules.categories)
    allowed = np.flatnonzero(keep)
    # Relevance alone sorts by the logits, as rank_logits does: the same order as without rules.
    by_relevance = None
    if rules.objective == "page_value":
        by_relevance = _by_relevance(allowed, logits)
        order = _page_order(by_relevance, relevance, final, rules)
    else:
        key = logits if rules.objective == "relevance" and rules.boost is None else final
        order = allowed[_descending(key[allowed])]
        if key is logits:
            by_relevance = order
    moved = np.zeros(n, dtype=np.int64)  # per candidate: bits of MOVED_BY, the rules that acted on it
    randomized = False
    if rules.explore is not None and rules.explore[0] > 0 and len(order) > 1:
        digest = zlib.crc32(logits.tobytes()) ^ (zlib.crc32(attributes[:, COLUMN["id_code"]].tobytes())
                                                 if attributes is not None else 0)
        # The decision is a hash of (seed, request), uniform in [0, 1): seeding a generator costs more
        # than the rest of the rules, so only a page that is shuffled builds one.
        draw = zlib.crc32(rules.explore[1].to_bytes(4, "little"), digest) / 2.0 ** 32
        if draw < rules.explore[0]:
            order = np.random.default_rng([rules.explore[1], digest]).permutation(order)
            randomized = True
            moved[order] |= BIT["explore"]
    if rules.diversity is not None and not randomized:
        order = _diversify(order, attributes[:, COLUMN["brand_code"]], *rules.diversity, moved)
    if rules.pins:
        order = _pin(order, rules.pins, codes, keep, moved)
    if top_k:
        order = order[:top_k]
    order = order.astype(np.int32)
    page = Page(order, relevance[order], final[order].astype(np.float32), randomized, probabilities=relevance)
    if rules.trace:
        if by_relevance is None:
            by_relevance = _by_relevance(allowed, logits)
        page.trace = _trace(page, len(logits), by_relevance, ids, rules, moved)
    return page


def prepare() -> None:
    """Imports what page_value needs (scipy.optimize: ~0.5 s), so that no request pays for it."""
    from scipy.optimize import linear_sum_assignment  # noqa: F401


def _filled(values: np.ndarray, fill) -> np.ndarray:
    """values with NaN replaced by fill (a number, or a function giving it, called only when
    there is a NaN): a catalog column is usually complete, and then this is one check."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    return np.where(missing, fill() if callable(fill) else fill, values)


def _best(values: np.ndarray, weights: np.ndarray) -> float:
    """sum of weights (decreasing) x the len(weights) largest values, in decreasing order."""
    k = len(weights)
    top = values if len(values) <= k else np.partition(values, len(values) - k)[-k:]
    return float(np.sort(top)[::-1] @ weights)


def _by_relevance(allowed: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The allowed items in relevance order (ties: request order, as rank_logits)."""
    return allowed[_descending(logits[allowed])]


def _descending(values: np.ndarray) -> np.ndarray:
    """Positions of values, largest first, ties in their order: a stable sort's result. numpy's
    default sort is a few times faster than its stable one at N = 1,000, and ties are rare (they
    fall back to the stable sort)."""
    order = np.argsort(-values)
    ranked = values[order]
    if (ranked[1:] == ranked[:-1]).any():
        return np.argsort(-values, kind="stable")
    return order


def _page_order(by_relevance: np.ndarray, relevance: np.ndarray, value: np.ndarray, rules: Rules) -> np.ndarray:
    """page_value (module doc): the best assignment of the allowed items to the first positions
    (an exact linear assignment), then the others by relevance."""
    from scipy.optimize import linear_sum_assignment

    k = min(rules.positions, len(by_relevance))
    if k == 0:
        return by_relevance
    v, g = value[by_relevance], relevance[by_relevance].astype(np.float64)
    examination, discount = _position_weights(k, rules.position_bias)
    best_v, best_g = _best(v, examination), float(g[:k] @ discount)  # g is in decreasing order already
    pool = np.arange(len(v))
    if len(v) > 20 * k:
        # Exact pruning: an item that k others beat on both value and relevance is never needed (one
        # of those k is left over to take its place). Beyond the 10k most relevant, that is every
        # item worth less than the k-th best value among them.
        head = 10 * k
        threshold = np.partition(v[:head], head - k)[head - k]
        pool = np.concatenate([pool[:head], head + np.flatnonzero(v[head:] >= threshold)])
    benefit = np.zeros((len(pool), k))
    if best_v > 0 and rules.relevance_share < 1:
        benefit += np.outer(v[pool] * ((1.0 - rules.relevance_share) / best_v), examination)
    if best_g > 0 and rules.relevance_share > 0:
        benefit += np.outer(g[pool] * (rules.relevance_share / best_g), discount)
    rows, positions = linear_sum_assignment(benefit, maximize=True)
    chosen = np.empty(k, dtype=np.int64)
    chosen[positions] = pool[rows]
    rest = np.ones(len(v), dtype=bool)
    rest[chosen] = False
    return np.concatenate([by_relevance[chosen], by_relevance[rest]])


@functools.lru_cache(maxsize=64)
def _position_weights(k: int, position_bias: float) -> tuple[np.ndarray, np.ndarray]:
    """page_value's examination 1 / (k + 1) ** position_bias and DCG discount 1 / log2(k + 2) of
    the first k positions (read-only: shared by the requests that ask for the same)."""
    examination = 1.0 / np.arange(1.0, k + 1.0) ** position_bias
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    examination.flags.writeable = discount.flags.writeable = False
    return examination, discount


def _among(values: np.ndarray, wanted) -> np.ndarray:
    """values isin wanted, by binary search in the sorted wanted codes: a few numpy calls whatever
    their number (np.isin sorts both sides; comparing one by one costs a call per code)."""
    wanted = np.sort(np.fromiter(wanted, dtype=values.dtype))
    at = np.minimum(np.searchsorted(wanted, values), len(wanted) - 1)
    return wanted[at] == values


def _attribute_rule(rules: Rules) -> str:
    if rules.objective != "relevance":
        return "objective"
    if rules.boost is not None:
        return "boost"
    if rules.diversity is not None:
        return "diversity"
    return "filter"


def _diversify(order: np.ndarray, brands: np.ndarray, per_brand: int, top_n: int, moved: np.ndarray) -> np.ndarray:
    """At most per_brand of a brand among the first top_n (an unknown brand, code 0 or NaN,
    counts as its own); deferred items follow in their order. Greedy: an item is eligible when
    fewer than per_brand of its brand come before it. Only the prefix that fills the first top_n
    is walked (a plain loop: it is short, and numpy's per-call cost would exceed the work)."""
    counts: dict = {}
    taken, deferred = [], []
    for position, brand in enumerate(brands[order].tolist()):
        if len(taken) == top_n:
            break
        if brand == 0 or brand != brand:  # unknown (0 or NaN): its own brand, always eligible
            taken.append(position)
            continue
        seen = counts.get(brand, 0)
        counts[brand] = seen + 1
        (taken if seen < per_brand else deferred).append(position)
    else:
        position = len(order)
    if not deferred:
        return order
    deferred_items = order[deferred]
    moved[deferred_items] |= BIT["diversity"]
    return np.concatenate([order[taken], deferred_items, order[position:]])


def _pin(order: np.ndarray, pins: tuple, codes: np.ndarray, keep: np.ndarray, moved: np.ndarray) -> np.ndarray:
    placed = []
    for pid, position in pins:  # (id code, position); a pinned id not among the candidates is skipped
        found = np.flatnonzero(codes == pid)
        if len(found) and keep[found[0]]:
            placed.append((int(found[0]), position))
    if not placed:
        return order
    pinned = np.array([i for i, _ in placed], dtype=order.dtype)
    moved[pinned] |= BIT["pin"]
    size = len(order)
    out = np.empty(size, dtype=order.dtype)
    exact = [(i, position) for i, position in placed if position < size]
    slots = np.ones(size, dtype=bool)
    for i, position in exact:
        out[position] = i
        slots[position] = False
    # Free slots take the others in order, then pins beyond the page (as far up as it allows).
    late = [i for i, position in placed if position >= size]
    is_pinned = np.zeros(len(codes), dtype=bool)
    is_pinned[pinned] = True
    out[slots] = np.concatenate([order[~is_pinned[order]], np.asarray(late, dtype=order.dtype)])
    return out


def _trace(page: Page, n: int, by_relevance, ids, rules: Rules, moved: np.ndarray) -> dict:
    """Columns (numpy arrays, lists for strings), one entry per returned item: id (when `ids` are
    given), relevance_position (its place in the relevance order of the allowed candidates) and
    moved_by (the rules that moved it there, "+"-joined; "" when it sits where relevance put it).
    The item's index, relevance and final score are the page's own arrays (the sorter's INDICES,
    SCORES and FINAL_SCORES outputs), not repeated: at N = 1,000 they were most of the trace's
    cost. RankClient.rank_products puts them back into its trace (client.full_trace)."""
    relevance_position = np.empty(n, dtype=np.int64)
    relevance_position[by_relevance] = np.arange(len(by_relevance))
    shown = page.indices
    position, bits = relevance_position[shown], moved[shown]
    stayed = (position == np.arange(len(shown))) & ((bits & BIT["pin"]) == 0)
    bits |= (BIT["objective"] if rules.objective != "relevance" else 0) | (
        BIT["boost"] if rules.boost is not None else 0)
    bits[stayed] = 0
    out = {}
    if ids is not None:
        out["id"] = [ids[i].decode("utf-8") if isinstance(ids[i], bytes) else ids[i] for i in shown]
    out.update(relevance_position=position, moved_by=MOVED_NAMES[bits].tolist(), randomized=page.randomized)
    return out


def trace_json(trace: dict) -> bytes:
    """The TRACE output: the trace as one JSON document (orjson: 1,000 traced items in a fraction
    of the standard library's time, which was most of the sorter's cost at N = 1,000)."""
    return orjson.dumps(trace, option=orjson.OPT_SERIALIZE_NUMPY)


MOVED_BY = ("objective", "boost", "diversity", "pin", "explore")
BIT = {name: 1 << i for i, name in enumerate(MOVED_BY)}
MOVED_NAMES = np.array(["+".join(name for name in MOVED_BY if mask & BIT[name]) for mask in range(1 << len(MOVED_BY))],
                       dtype=object)
