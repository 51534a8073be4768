"""Conversion-aware ordering, measured on simulated shoppers (`make conversion`).

Per seed: the simulated shop (world.py's queries and candidates, shop.py's products and
shoppers) serves pages ordered by relevance (with an exploration share) for `log_days` days,
logging impressions, clicks, add-to-carts and purchases with pseudonymous user ids into a
FeedbackStore. Two conversion models p(purchase | click) are learned from that log, only from
what a server knows: ConversionModel (per product, shrunk towards its category's rate, Beta /
empirical Bayes) and ConversionHead (a complementary log-log model of every logged click: the
request's p(click), stock, price against its category, rating, category, and the product's own
shrunk ratio); each is written into a catalog's `conversion` column. Then, for `eval_days` more
days of the same shoppers and queries (every policy meets the same shopper and query; clicks,
purchases and revenue are the page's expectations, not draws), each policy orders the pages:
relevance, each objective of SWEEPS (expected_value item by item, page_value position by
position) at every setting with either model, and the chosen one + rules. The setting is chosen
on the tuning seeds, never on the reported ones (`choose`). Reported: revenue and margin per
1,000 requests, CTR, purchases, NDCG@10 of the order against the TRUE relevance,
share of out-of-stock items shown, distinct brands in the top 10.

Scoring is in-process: the demo model's ONNX engine through the serving code's own pair encoder
and rules (shoprank.serving.rules.apply_rules, what the sorter runs), not through Triton.
"""
from __future__ import annotations

import json
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..data.synthetic import click_probability
from ..quality import metrics
from ..serving.catalog import ATTRIBUTES, Catalog, load_catalog
from ..serving.client import Shown
from ..serving.engine import sigmoid
from ..serving.rules import MAX_CLICK_EXPONENT, apply_rules, parse_rules
from .feedback import experiment_log, read_frames
from .shop import ShopConfig, Shoppers, click_lift, purchase_probability, simulate_page, synthetic_catalog
from .world import build_world, examination

# The settings tried on the tuning seeds: each objective's trade-off parameter (rules.py).
SWEEPS = {"expected_value": ("value_weight", (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.12)),
          "page_value": ("relevance_share", (0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98))}
LOSS_BUDGET = 0.01  # the target's NDCG@10 loss: the choice is the best mean revenue on the tuning seeds within it
MODELS = ("product_rate", "head")  # the conversion models compared: ConversionModel, ConversionHead


def setting_name(objective: str, x: float, model: str) -> str:
    return f"{objective}({SWEEPS[objective][0]}={x:g})[{model}]"


def setting(objective: str, x: float | None, model: str) -> dict:
    """A policy: {"model": whose catalog (conversion) it reads, "rules": RULES JSON}; x None: the
    objective at its plain setting (expected_value: the expected revenue itself)."""
    return {"model": model, "objective": objective, "x": x,
            "rules": {"objective": objective, **({} if x is None else {SWEEPS[objective][0]: x})}}


def sweep_policies() -> dict:
    """Relevance, and every objective at every setting of its sweep with every conversion model."""
    return {"relevance": {"model": MODELS[0], "rules": {}},
            **{setting_name(o, x, m): setting(o, x, m) for o, (_, xs) in SWEEPS.items() for m in MODELS for x in xs}}


def policies(chosen: str, sweep: dict, others: list) -> dict:
    """The reported policies: relevance, expected revenue itself, the chosen setting, the best
    setting of each other (objective, model), and the chosen setting with business rules. The
    head's learned click_exponent is added per seed (run_seed)."""
    spec = sweep[chosen]
    with_rules = {**spec, "rules": {**spec["rules"], "filter": {"in_stock_only": True},
                                    "diversity": {"max_per_brand": 3, "top_n": 10},
                                    "boost": {"attribute": "margin", "strength": 0.05}}}
    return {"relevance": {"model": spec["model"], "rules": {}},
            f"expected_value[{spec['model']}]": setting("expected_value", None, spec["model"]),
            chosen: spec, **{name: sweep[name] for name in others}, f"{chosen}+rules": with_rules}


def _upper(loss: dict) -> float:
    """Mean NDCG@10 loss over the tuning seeds plus its standard error: the budget is a limit, so a
    setting must keep to it with some confidence, not only on average over three or six worlds."""
    return loss["mean"] + loss.get("se", 0.0)


def choose(tuning: dict, sweep: dict) -> tuple[str, list]:
    """The sweep setting with the best mean revenue lift on the tuning seeds among those whose
    NDCG@10 loss there is within LOSS_BUDGET (mean + standard error; none within: the smallest),
    and the same choice within each other (objective, model), shown beside it."""
    def best(names):
        within = [n for n in names if _upper(tuning[n]["ndcg_loss"]) <= LOSS_BUDGET]
        if within:
            return max(within, key=lambda n: tuning[n]["revenue_lift"]["mean"])
        return min(names, key=lambda n: tuning[n]["ndcg_loss"]["mean"])

    names = [n for n in sweep if n != "relevance"]
    chosen = best(names)
    groups = {(sweep[n]["objective"], sweep[n]["model"]) for n in names}
    others = [best([n for n in names if (sweep[n]["objective"], sweep[n]["model"]) == g]) for g in sorted(groups)]
    return chosen, [n for n in others if n != chosen]


PRIOR_STRENGTHS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # pseudo-clicks of the category prior, chosen on held-out log


@dataclass
class ConversionConfig:
    seeds: tuple = (7, 8, 9)
    tune_seeds: tuple = (1, 2, 3, 4, 5, 6)  # the setting is chosen on these, never on the reported seeds
    model_dir: str = str(config.MODEL_DIR)
    engine: str = str(config.onnx_file("int8"))
    report_dir: str = str(config.REPORTS_DIR)
    traffic_queries: int = 80
    candidates: int = 20
    log_days: int = 6
    eval_days: int = 10            # revenue per request is noisy (few, price-skewed purchases): many requests
    threads: int = 1
    shop: ShopConfig = field(default_factory=ShopConfig)


class ConversionModel:
    """p(purchase | click) per product: (purchases + k * category rate) / (clicks + k), the
    category rate itself shrunk towards the global rate the same way (empirical Bayes)."""

    def __init__(self, clicks: dict, purchases: dict, category_of: dict, strength: float):
        self.strength = strength
        total_c, total_p = sum(clicks.values()), sum(purchases.values())
        self.global_rate = (total_p + 1.0) / (total_c + 2.0)
        cat_c: dict = {}
        cat_p: dict = {}
        for pid, c in clicks.items():
            cat = category_of.get(pid, "")
            cat_c[cat] = cat_c.get(cat, 0) + c
            cat_p[cat] = cat_p.get(cat, 0) + purchases.get(pid, 0)
        k = max(strength, 1.0)
        self.category_rate = {cat: (cat_p[cat] + k * self.global_rate) / (cat_c[cat] + k) for cat in cat_c}
        self.clicks, self.purchases, self.category_of = clicks, purchases, category_of

    def rate(self, pid: str) -> float:
        prior = self.category_rate.get(self.category_of.get(pid, ""), self.global_rate)
        c = self.clicks.get(pid, 0)
        if self.strength == 0.0:
            return self.purchases.get(pid, 0) / c if c else prior
        return (self.purchases.get(pid, 0) + self.strength * prior) / (c + self.strength)


HEAD_PENALTY = 1.0  # L2 on the head's coefficients (not the intercept): keeps "never bought" finite
HEAD_PENALTIES = (0.1, 1.0, 10.0)  # the L2 strengths tried, chosen on held-out log (with the shrinkage)


def product_features(frame) -> tuple[tuple, np.ndarray]:
    """What the head knows of a product, all from the catalog: out of stock, log price relative
    to its category's mean log price (and its square: shoppers buy near a typical price), rating
    and category (one-hot)."""
    log_price = np.log(np.maximum(frame["price"].to_numpy(dtype=float), 0.01))
    categories = frame["category"].astype(str).to_numpy()
    mean = {c: log_price[categories == c].mean() for c in np.unique(categories)}
    rel = log_price - np.array([mean[c] for c in categories])
    rating = np.nan_to_num(frame["rating"].to_numpy(dtype=float), nan=4.0) - 4.0
    names = ["out_of_stock", "log_price_vs_category", "log_price_vs_category^2", "rating-4"]
    columns = [1.0 - frame["in_stock"].to_numpy(dtype=float), rel, rel ** 2, rating]
    for c in sorted(mean)[1:]:  # the first category is the intercept's
        names.append(f"category={c}")
        columns.append((categories == c).astype(float))
    return tuple(names), np.column_stack(columns)


def _cloglog_fit(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Coefficients of P(y=1) = 1 - exp(-exp(x @ theta)) by penalized maximum likelihood; the first
    column is the intercept (not penalized). For small rates exp(x @ theta) is the rate itself, so
    the fitted terms multiply (what the served formula does)."""
    from scipy.optimize import minimize

    mask = np.r_[0.0, np.ones(x.shape[1] - 1)]

    def loss(theta):
        eta = np.clip(x @ theta, -30.0, 3.0)
        mu = np.exp(eta)
        ll = np.where(y > 0, np.log(-np.expm1(-mu)), -mu)
        d = np.where(y > 0, mu / np.expm1(mu), -mu)
        return -ll.sum() + 0.5 * penalty * (mask * theta ** 2).sum(), -(x.T @ d) + penalty * mask * theta

    start = np.zeros(x.shape[1])
    start[0] = math.log(max(y.mean(), 1e-3))
    return minimize(loss, start, jac=True, method="L-BFGS-B").x


class ConversionHead:
    """p(purchase | click) of one (request, product) = 1 - exp(-mu), mu = exp(b0 + beta . product
    features) x p(click) ** gamma x the product's own ratio; p(click) is the model's, for this
    query, so the head separates how relevant a clicked product was from how well it sells. The
    product's ratio is (purchases + k) / (expected purchases + k) over its logged clicks
    (Poisson-gamma shrinkage towards 1). Served: the catalog's `conversion` column holds
    exp(b0 + beta . features) x ratio, RULES `click_exponent` holds gamma."""

    def __init__(self, frame, rows: dict | None = None, penalty: float = HEAD_PENALTY):
        self.names, self.features = product_features(frame)
        self.row = {pid: i for i, pid in enumerate(frame["id"])}
        self.ids = list(frame["id"])
        self.penalty = penalty
        self.theta = None
        self.strength = 0.0
        self.ratio: dict = {}
        self.counts: dict = {}
        if rows:
            self.fit(rows)

    def design(self, pids, p_click) -> np.ndarray:
        f = self.features[[self.row[p] for p in pids]]
        return np.column_stack([np.ones(len(f)), np.log(np.maximum(p_click, 1e-6)), f])

    def fit(self, rows: dict) -> ConversionHead:
        """rows: {"pid": [...], "p_click": [...], "bought": [...]}, one per logged click."""
        x = self.design(rows["pid"], np.asarray(rows["p_click"]))
        y = np.asarray(rows["bought"], dtype=float)
        self.theta = _cloglog_fit(x, y, self.penalty)
        expected = -np.expm1(-np.exp(np.clip(x @ self.theta, -30.0, 3.0)))
        self.counts: dict = {}
        for pid, e, b in zip(rows["pid"], expected, y):
            o = self.counts.setdefault(pid, [0.0, 0.0])
            o[0] += b
            o[1] += e
        return self.shrink(self.strength)

    def shrink(self, strength: float) -> ConversionHead:
        """The products' own ratios with k = strength pseudo-purchases (0: none, the features alone)."""
        self.strength = strength
        self.ratio = ({pid: (o + strength) / (e + strength) for pid, (o, e) in self.counts.items()}
                      if strength > 0 else {})
        return self

    @property
    def gamma(self) -> float:
        return float(self.theta[1])

    def rate(self, pid: str) -> float:
        """The catalog's conversion column: the rate at p(click) = 1 (times p ** gamma when served)."""
        i = self.row[pid]
        eta = self.theta[0] + self.features[i] @ self.theta[2:]
        return float(math.exp(eta) * self.ratio.get(pid, 1.0))

    def probability(self, pids, p_click) -> np.ndarray:
        mu = np.array([self.rate(p) for p in pids]) * np.power(np.maximum(p_click, 1e-6), self.gamma)
        return -np.expm1(-mu)

    def coefficients(self) -> dict:
        return {"intercept": round(float(self.theta[0]), 4), "log_p_click (gamma)": round(self.gamma, 4),
                **{n: round(float(v), 4) for n, v in zip(self.names, self.theta[2:])}}


def click_purchase_counts(frames, text_to_id: dict, requests: set | None = None) -> tuple[dict, dict]:
    """Per product id: clicks and purchases in the feedback log (read_frames; optionally of some
    requests)."""
    _, shown, events = frames
    if requests is not None:
        shown = shown[shown["request_id"].isin(requests)]
        events = events[events["request_id"].isin(requests)]
    where = {(r, p): text_to_id[t] for r, p, t in zip(shown["request_id"], shown["position"], shown["text"])}
    clicks: dict = {}
    purchases: dict = {}
    for r, p, kind in zip(events["request_id"], events["position"], events["kind"]):
        pid = where.get((r, p))
        if pid is None:
            continue
        if kind == "click":
            clicks[pid] = clicks.get(pid, 0) + 1
        elif kind == "purchase":
            purchases[pid] = purchases.get(pid, 0) + 1
    return clicks, purchases


def fit_conversion(frames, text_to_id: dict, category_of: dict, seed: int) -> tuple[ConversionModel, dict]:
    """Choose the prior strength on a held-out fifth of the logged requests (log-likelihood of
    purchase given click), then fit on everything. frames: the feedback log (read_frames)."""
    ids, held = heldout_split(frames, seed)
    fit_c, fit_p = click_purchase_counts(frames, text_to_id, set(ids) - held)
    test_c, test_p = click_purchase_counts(frames, text_to_id, held)
    scores = {}
    for strength in PRIOR_STRENGTHS:
        model = ConversionModel(fit_c, fit_p, category_of, strength)
        ll = 0.0
        for pid, c in test_c.items():
            q = min(max(model.rate(pid), 1e-4), 1 - 1e-4)
            bought = min(test_p.get(pid, 0), c)
            ll += bought * math.log(q) + (c - bought) * math.log(1 - q)
        scores[strength] = ll / max(1, sum(test_c.values()))
    best = max(scores, key=scores.get)
    clicks, purchases = click_purchase_counts(frames, text_to_id)
    return ConversionModel(clicks, purchases, category_of, best), {
        "heldout_loglik_per_click": {str(k): round(v, 5) for k, v in scores.items()}, "prior_strength": best,
        "clicks": sum(clicks.values()), "purchases": sum(purchases.values())}


def heldout_split(frames, seed: int) -> tuple[list, set]:
    """All logged request ids and the held-out fifth (the same for every model compared)."""
    imps, _, _ = frames
    ids = sorted(imps["request_id"])
    random.Random(seed).shuffle(ids)
    return ids, set(ids[: len(ids) // 5])


def click_rows(frames, text_to_id: dict, p_click, requests: set | None = None) -> dict:
    """One row per logged click of the feedback log (read_frames): the product id, the model's
    p(click) for the request's query and that product (p_click(query, text)), and whether it was
    bought."""
    imps, shown, events = frames
    if requests is not None:
        shown = shown[shown["request_id"].isin(requests)]
        events = events[events["request_id"].isin(requests)]
    query = dict(zip(imps["request_id"], imps["query"]))
    text = {(r, p): t for r, p, t in zip(shown["request_id"], shown["position"], shown["text"])}
    bought = {(r, p) for r, p, k in zip(events["request_id"], events["position"], events["kind"]) if k == "purchase"}
    rows: dict = {"pid": [], "p_click": [], "bought": []}
    for r, p, kind in zip(events["request_id"], events["position"], events["kind"]):
        if kind != "click" or (r, p) not in text:
            continue
        rows["pid"].append(text_to_id[text[r, p]])
        rows["p_click"].append(p_click(query[r], text[r, p]))
        rows["bought"].append(float((r, p) in bought))
    return rows


def _loglik(q: np.ndarray, y) -> float:
    q = np.clip(q, 1e-4, 1 - 1e-4)
    y = np.asarray(y, dtype=float)
    return float(np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))) if len(y) else 0.0


def fit_head(frames, text_to_id: dict, frame, p_click, seed: int) -> tuple[ConversionHead, dict]:
    """The head on the held-out split of fit_conversion (the same clicks, so their held-out
    log-likelihoods compare): coefficients on four fifths, the L2 penalty and the products'
    shrinkage strength chosen by held-out log-likelihood per click, then everything refit.
    frames: the feedback log (read_frames)."""
    ids, held = heldout_split(frames, seed)
    train = click_rows(frames, text_to_id, p_click, set(ids) - held)
    test = click_rows(frames, text_to_id, p_click, held)
    scores = {}
    for penalty in HEAD_PENALTIES:
        head = ConversionHead(frame, train, penalty)
        for strength in PRIOR_STRENGTHS:
            head.shrink(strength)
            scores[penalty, strength] = _loglik(head.probability(test["pid"], np.asarray(test["p_click"])),
                                                test["bought"])
    penalty, best = max(scores, key=scores.get)
    everything = click_rows(frames, text_to_id, p_click)
    head = ConversionHead(frame, everything, penalty).shrink(best)
    return head, {"heldout_loglik_per_click": {f"{p:g}/{k:g}": round(v, 5) for (p, k), v in scores.items()},
                  "penalty": penalty, "prior_strength": best, "clicks": len(everything["pid"]),
                  "purchases": int(sum(everything["bought"])), "coefficients": head.coefficients(),
                  "heldout_clicks": len(test["pid"])}


class Scorer:
    """The demo model in-process: logits of (query, text) pairs, cached per request."""

    def __init__(self, model_dir: str, engine: str, threads: int):
        from ..model_card import model_max_length
        from ..serving.engine import OrtEngine
        from ..serving.tokenizer import PairEncoder

        self.encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(Path(model_dir)), buckets=())
        self.engine = OrtEngine(engine, threads=threads)
        self.cache: dict = {}

    def logits(self, query: str, texts: list) -> np.ndarray:
        key = (query, tuple(texts))  # a query's candidates differ between seeds' worlds
        if key not in self.cache:
            self.cache[key] = self.engine.logits(self.encoder.encode(query, texts))
        return self.cache[key]


@dataclass
class _WorldCfg:
    seed: int
    traffic_queries: int
    eval_queries: int
    candidates: int


def _page_metrics(order: np.ndarray, q, shown_n: int, attrs: np.ndarray, shopper, products: list,
                  cfg: ShopConfig) -> dict:
    """One page's outcome for one shopper. Clicks, purchases, revenue and margin are their
    expectations under the simulator (position bias x click probability x purchase probability),
    not draws: revenue rests on few, price-skewed purchases, and draws would add their noise to
    every comparison (as personalization's report, the same simulator)."""
    shown = order[:shown_n]
    out = {"shown": len(shown), "clicks": 0.0, "purchases": 0.0, "revenue": 0.0, "margin": 0.0,
           "oos": int(sum(attrs[i, ATTRIBUTES.index("in_stock")] == 0 for i in shown)),
           "brands": len({products[i]["brand"] for i in shown})}
    scores = np.full(len(q.relevance), -1e9)  # filtered: never shown
    scores[order] = -np.arange(len(order), dtype=float)
    out["ndcg"] = metrics.ndcg_at_k(scores, q.relevance, 10)
    for position, i in enumerate(shown):
        p = products[i]
        lift = click_lift(shopper, p["brand"], p["category"], p["price"], cfg)
        click = examination(position, cfg.eta) * min(1.0, click_probability(q.relevance[i]) * lift)
        purchase = click * purchase_probability(q.relevance[i], p, shopper, cfg)
        out["clicks"] += click
        out["purchases"] += purchase
        out["revenue"] += purchase * p["price"]
        out["margin"] += purchase * p["margin"]
    return out


def run_seed(cfg: ConversionConfig, seed: int, scorer: Scorer, work: Path, policies: dict, log=print) -> dict:
    from copy import copy

    shop = ShopConfig(**{**asdict(cfg.shop), "seed": seed})
    frame = synthetic_catalog(shop)
    truth = {r.text: r._asdict() for r in frame.itertuples(index=False)}
    text_to_id = dict(zip(frame["text"], frame["id"]))
    category_of = dict(zip(frame["id"], frame["category"]))
    brands_by_category = frame.groupby("category")["brand"].agg(lambda b: sorted(set(b))).to_dict()
    traffic, _ = build_world(_WorldCfg(seed, cfg.traffic_queries, 1, cfg.candidates))
    weights = [q.weight for q in traffic]
    rnd = random.Random(seed)
    people = Shoppers(shop, brands_by_category, rnd)

    # 1. log: relevance order with exploration, into a feedback store (pseudonymous user ids)
    db = work / f"feedback-{seed}.sqlite"
    base_rules = parse_rules({})
    with experiment_log(db, work / "user_id.key") as store:
        for day in range(cfg.log_days):
            for s in range(shop.sessions_per_day):
                shopper, q = people.pick(), rnd.choices(traffic, weights)[0]
                order = apply_rules(scorer.logits(q.query, q.texts), 0, base_rules).indices
                randomized = rnd.random() < shop.explore_share
                shown = list(order[: shop.top_k])
                if randomized:
                    rnd.shuffle(shown)
                rid = f"{seed}-{day}-{s}"
                ts = 1.7e9 + day * 86400 + s
                store.record_impression(rid, q.query, [Shown(int(i), q.texts[i]) for i in shown],
                                        user_id=shopper.user_id, randomized=randomized, ts=ts)
                simulate_page(shopper, q, shown, truth, shop, rnd, store, rid, ts)
            people.next_day()

    # 2. learn p(purchase | click) both ways (per product; the head), each into a catalog (SQLite)
    p_click = {(q.query, t): float(v) for q in traffic
               for t, v in zip(q.texts, sigmoid(scorer.logits(q.query, q.texts)))}
    frames = read_frames(db)  # the log, read once for both models
    model, fit = fit_conversion(frames, text_to_id, category_of, seed)
    head, head_fit = fit_head(frames, text_to_id, frame, lambda query, text: p_click[query, text], seed)
    rates = {"product_rate": np.array([model.rate(pid) for pid in frame["id"]]),
             "head": np.array([head.rate(pid) for pid in frame["id"]])}
    exponent = {"product_rate": 0.0, "head": round(min(max(head.gamma, 0.0), MAX_CLICK_EXPONENT), 4)}
    fits = {"product_rate": fit, "head": {**head_fit, "click_exponent": exponent["head"]}}
    catalogs = {}
    for name, column in rates.items():
        frame["conversion"] = column
        csv_path = work / f"catalog-{seed}-{name}.csv"
        frame.drop(columns=["appeal"]).to_csv(csv_path, index=False)
        catalogs[name] = Catalog(load_catalog(csv_path, work / f"catalog-{seed}-{name}.sqlite")["catalog"])
    # Diagnostics only (the hidden truth never reaches a model): the per-product rate against the
    # true appeal x in stock, and the served conversion of every traffic query's candidates against
    # the true in stock x relevance^2 x appeal (the shopper's price fit and brand aside).
    row = {pid: i for i, pid in enumerate(frame["id"])}
    appeal_stock = frame["appeal"].to_numpy() * frame["in_stock"].to_numpy()
    pairs = [(row[text_to_id[t]], p_click[q.query, t], r) for q in traffic for t, r in zip(q.texts, q.relevance)]
    rows_, ps, rel = (np.array(c) for c in zip(*pairs))
    for name, column in rates.items():
        fits[name]["corr_with_true_appeal_x_stock"] = round(float(np.corrcoef(column, appeal_stock)[0, 1]), 3)
        served = column[rows_] * np.power(ps, exponent[name])
        fits[name]["corr_pairs_with_true_conversion"] = round(float(np.corrcoef(
            served, appeal_stock[rows_] * rel ** 2)[0, 1]), 3)

    # 3. evaluate every policy on the same sessions
    sessions = []
    for _day in range(cfg.eval_days):
        for _ in range(shop.sessions_per_day):
            shopper, q = copy(people.pick()), rnd.choices(traffic, weights)[0]
            sessions.append((shopper, q))
        people.next_day()
    lookups: dict = {name: {} for name in catalogs}
    for name, catalog in catalogs.items():
        for q in traffic:
            ids = [text_to_id[t] for t in q.texts]
            _, attrs = catalog.lookup(ids)
            lookups[name][q.query] = (ids, attrs, [truth[t] for t in q.texts])
    result: dict = {"fit": fits, "rules": {}}
    for name, spec in policies.items():
        rules_json = {**spec["rules"], **({"click_exponent": exponent["head"]} if spec["model"] == "head" else {})}
        result["rules"][name] = rules_json
        rules = parse_rules(rules_json)
        pages = {}
        totals: dict = {}
        ndcgs = []
        for shopper, q in sessions:
            ids, attrs, products = lookups[spec["model"]][q.query]
            if q.query not in pages:
                pages[q.query] = apply_rules(scorer.logits(q.query, q.texts), 0, rules, attrs, ids).indices
            m = _page_metrics(pages[q.query], q, shop.top_k, attrs, shopper, products, shop)
            ndcg = m.pop("ndcg")
            if ndcg is not None:
                ndcgs.append(ndcg)
            for k, v in m.items():
                totals[k] = totals.get(k, 0) + v
        n = len(sessions)
        result[name] = {"requests": n, "revenue_per_1000": 1000 * totals["revenue"] / n,
                        "margin_per_1000": 1000 * totals["margin"] / n, "ctr": totals["clicks"] / totals["shown"],
                        "purchases": totals["purchases"], "true_ndcg@10": float(np.mean(ndcgs)),
                        "oos_share_shown": totals["oos"] / totals["shown"],
                        "brands_in_top10": totals["brands"] / n}
        log(f"seed {seed} {name:<32} revenue/1000 {result[name]['revenue_per_1000']:9.1f}  "
            f"NDCG@10 {result[name]['true_ndcg@10']:.4f}  purchases {totals['purchases']:.1f}")
    return result


def run(cfg: ConversionConfig, log=print) -> dict:
    started = time.time()
    scorer = Scorer(cfg.model_dir, cfg.engine, cfg.threads)
    sweep = sweep_policies()
    with tempfile.TemporaryDirectory(prefix="shoprank-conversion-") as tmp:
        tuning = _summarize({seed: run_seed(cfg, seed, scorer, Path(tmp), sweep, lambda *a: None)
                             for seed in cfg.tune_seeds}, sweep)
        name, others = choose(tuning, sweep)
        log(f"chosen: {name} (best mean revenue with NDCG@10 loss <= {LOSS_BUDGET} on seeds {cfg.tune_seeds}); "
            f"the others at their best: {', '.join(others)}")
        chosen = policies(name, sweep, others)
        per_seed = {seed: run_seed(cfg, seed, scorer, Path(tmp), {**chosen, **sweep}, log) for seed in cfg.seeds}
    curve = _summarize(per_seed, sweep)
    summary = {"config": {**asdict(cfg), "shop": asdict(cfg.shop)}, "policies": chosen, "per_seed": per_seed,
               "chosen": name, "model": sweep[name]["model"],
               "sweep": {k: {f: v[f] for f in ("model", "objective", "x")} for k, v in sweep.items()
                         if k != "relevance"},
               "tuning": {k: {m: v[m] for m in ("revenue_lift", "ndcg_loss")} for k, v in tuning.items()
                          if k != "relevance"},
               "reported_curve": {k: {m: v[m] for m in ("revenue_lift", "ndcg_loss")} for k, v in curve.items()
                                  if k != "relevance"},
               "seconds": round(time.time() - started, 1)}
    summary["summary"] = _summarize(per_seed, chosen)
    report_dir = Path(cfg.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "conversion.json").write_text(json.dumps(summary, indent=2, default=float))
    (report_dir / "conversion.md").write_text(render_report(summary))
    plot(summary, report_dir / "conversion.png")
    return summary


METRICS = ("revenue_per_1000", "margin_per_1000", "ctr", "purchases", "true_ndcg@10", "oos_share_shown",
           "brands_in_top10")


def _summarize(per_seed: dict, policies: dict) -> dict:
    out = {}
    for name in policies:
        out[name] = {}
        for metric in METRICS:
            values = np.array([per_seed[s][name][metric] for s in per_seed], dtype=float)
            out[name][metric] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
        if name != "relevance":
            lift = [per_seed[s][name]["revenue_per_1000"] / per_seed[s]["relevance"]["revenue_per_1000"] - 1
                    for s in per_seed]
            loss = [per_seed[s]["relevance"]["true_ndcg@10"] - per_seed[s][name]["true_ndcg@10"] for s in per_seed]
            out[name]["revenue_lift"] = {"mean": float(np.mean(lift)), "min": float(np.min(lift)),
                                         "max": float(np.max(lift))}
            out[name]["ndcg_loss"] = {"mean": float(np.mean(loss)), "min": float(np.min(loss)),
                                      "max": float(np.max(loss)),
                                      "se": float(np.std(loss, ddof=1) / np.sqrt(len(loss))) if len(loss) > 1 else 0.0}
    return out


def _spread(v: dict, scale: float = 1.0, fmt: str = ".4f", sign: str = "") -> str:
    return (f"{scale * v['mean']:{sign}{fmt}} [{scale * v['min']:{sign}{fmt}}, {scale * v['max']:{sign}{fmt}}]")


def render_report(summary: dict) -> str:
    s, seeds = summary["summary"], list(summary["per_seed"])
    tune = summary["config"]["tune_seeds"]
    n = summary["per_seed"][seeds[0]]["relevance"]["requests"]
    lines = ["# Conversion-aware ordering (`make conversion`)", "",
             f"Simulated shoppers (docs/simulator.md), {len(seeds)} reported seeds ({', '.join(map(str, seeds))}), "
             f"{n} evaluated requests each; mean over seeds [min, max]. Scored in-process with the demo model's "
             "ONNX engine and the serving code's rules (not through Triton). Every policy meets the same shoppers "
             "and queries; clicks, purchases, revenue and margin are each page's expectations under the simulator "
             "(position bias x click x purchase probability), not draws. `[model]`: the conversion model whose "
             "catalog column the policy reads (product_rate: per product, shrunk to the category; head: the "
             "learned head).", "",
             "| policy | revenue / 1000 req | margin / 1000 req | CTR | purchases | true NDCG@10 | "
             "out-of-stock shown | brands in top 10 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in summary["policies"]:
        m = s[name]
        lines.append(f"| {name} | {_spread(m['revenue_per_1000'], fmt='.0f')} | "
                     f"{_spread(m['margin_per_1000'], fmt='.0f')} | {_spread(m['ctr'])} | "
                     f"{_spread(m['purchases'], fmt='.0f')} | {_spread(m['true_ndcg@10'])} | "
                     f"{_spread(m['oos_share_shown'], fmt='.3f')} | {_spread(m['brands_in_top10'], fmt='.2f')} |")
    lines += ["", "Against relevance ordering (target: revenue +10% at an NDCG@10 loss <= 0.01, means over seeds):",
              ""]
    for name in summary["policies"]:
        if name == "relevance":
            continue
        lift, loss = s[name]["revenue_lift"], s[name]["ndcg_loss"]
        ok = lift["mean"] >= 0.10 and loss["mean"] <= 0.01
        lines.append(f"- {name}: revenue {_spread(lift, 100, '.1f', '+')} %, NDCG@10 loss {_spread(loss)} "
                     f"-> target {'met' if ok else 'NOT met'}")
    lines += ["", f"## The choice: `{summary['chosen']}`", "",
              f"Chosen on the tuning seeds {tuple(tune)} only: of every setting below (objective x its trade-off "
              f"parameter x conversion model), the best mean revenue lift whose NDCG@10 loss there is <= "
              f"{LOSS_BUDGET} with some confidence (mean + its standard error over the seeds). The whole "
              "trade-off curves, revenue lift % and NDCG@10 loss (mean [min, max] over "
              "seeds), on the tuning seeds and, for reference only, on the reported seeds. expected_value sorts item "
              "by item (value_weight); page_value assigns the first positions together (relevance_share; "
              "docs/conversion.md):", "",
              "| objective | model | parameter | tuning: revenue lift % | tuning: NDCG@10 loss | tuning: loss + SE | "
              "reported: revenue lift % | reported: NDCG@10 loss |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, t in summary["tuning"].items():
        r, spec = summary["reported_curve"][name], summary["sweep"][name]
        mark = " **chosen**" if name == summary["chosen"] else ""
        lines.append(f"| {spec['objective']} | {spec['model']} | {SWEEPS[spec['objective']][0]} {spec['x']:g}{mark} | "
                     f"{_spread(t['revenue_lift'], 100, '.1f', '+')} | {_spread(t['ndcg_loss'])} | "
                     f"{_upper(t['ndcg_loss']):.4f} | "
                     f"{_spread(r['revenue_lift'], 100, '.1f', '+')} | {_spread(r['ndcg_loss'])} |")
    lines += ["", "## Conversion models, per reported seed", "",
              "Held-out log-likelihood of purchase given click (a fifth of the logged requests, the same clicks "
              "for both models; best over the shrinkage strength k), and as a diagnostic only the correlation with "
              "the simulator's hidden truth: per product against appeal x in stock, and per (query, candidate) of the "
              "traffic against in stock x relevance^2 x appeal.", "",
              "| seed | clicks / purchases | product_rate: held-out LL (k) | head: held-out LL (L2 / k) | "
              "corr per product: product_rate / head | corr per pair: product_rate / head | head: click_exponent |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for seed, r in summary["per_seed"].items():
        pr, hd = r["fit"]["product_rate"], r["fit"]["head"]
        best_pr = max(pr["heldout_loglik_per_click"].items(), key=lambda kv: kv[1])
        best_hd = max(hd["heldout_loglik_per_click"].items(), key=lambda kv: kv[1])
        lines.append(f"| {seed} | {pr['clicks']} / {pr['purchases']} | {best_pr[1]:.4f} ({float(best_pr[0]):g}) | "
                     f"{best_hd[1]:.4f} ({best_hd[0]}) | {pr['corr_with_true_appeal_x_stock']} / "
                     f"{hd['corr_with_true_appeal_x_stock']} | {pr['corr_pairs_with_true_conversion']} / "
                     f"{hd['corr_pairs_with_true_conversion']} | {hd['click_exponent']} |")
    lines += ["", "Head coefficients (complementary log-log, so exp(term) multiplies the rate), per reported seed:", ""]
    for seed, r in summary["per_seed"].items():
        c = r["fit"]["head"]["coefficients"]
        shown = [f"{k} {v:+.3f}" for k, v in c.items() if not k.startswith("category=")]
        lines.append(f"- seed {seed}: " + ", ".join(shown))
    lines += ["", "Rules of each policy (RULES JSON; the head's click_exponent is learned per seed, shown for "
              f"seed {seeds[0]}):", ""]
    lines += [f"- {name}: `{json.dumps(summary['per_seed'][seeds[0]]['rules'][name])}`" for name in summary["policies"]]
    lines += ["", f"Run time {summary['seconds']} s.", ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["policies"])
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.4))
    for ax, metric, title in zip(axes, ("revenue_per_1000", "true_ndcg@10", "oos_share_shown"),
                                 ("revenue per 1,000 requests", "true NDCG@10", "out-of-stock share shown")):
        for x, name in enumerate(names):
            values = [summary["per_seed"][s][name][metric] for s in summary["per_seed"]]
            ax.bar(x, np.mean(values), color=f"C{x}", alpha=0.7)
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(names)), [n.replace("(", "\n(").replace("[", "\n[").replace("+", "\n+") for n in names],
                      rotation=15, fontsize=7)
        ax.set_title(title)
    ax = axes[3]  # the trade-off curves: one point per setting
    groups = sorted({(v["objective"], v["model"]) for v in summary["sweep"].values()})
    for i, (objective, model) in enumerate(groups):
        for curve, style in (("tuning", "o-"), ("reported_curve", "s--")):
            points = [(v["ndcg_loss"]["mean"], 100 * v["revenue_lift"]["mean"]) for k, v in summary[curve].items()
                      if (summary["sweep"][k]["objective"], summary["sweep"][k]["model"]) == (objective, model)]
            ax.plot(*zip(*sorted(points)), style, color=f"C{i}", markersize=4,
                    label=f"{objective}[{model}], {curve.split('_')[0]} seeds")
    ax.axvline(LOSS_BUDGET, color="grey", lw=0.8)
    ax.axhline(10, color="grey", lw=0.8)
    ax.set_xlabel("NDCG@10 loss")
    ax.set_ylabel("revenue lift %")
    ax.set_title("trade-off per setting")
    ax.legend(fontsize=7)
    fig.suptitle("Relevance vs expected value vs expected value + rules (simulated shoppers; dots = seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
