"""`make personalize`: the shopper's behaviour in the click model, trained from simulated logs and
measured against the non-personalized model and an oracle (reports/personalization.md + PNG).

Per simulator seed (shop.py's shoppers, sessions.py's days): shoppers shop for `days` days under
the logging policy (the non-personalized model, with exploration), and everything goes to a real
feedback log; the days before `test_from_day` are the training logs.
Two designs of f(X, Y) learn from that log with the position-bias correction of
online.propensities (a click counts 1; an unclicked impression at position k counts theta_k):

    fusion  late fusion: the cross-encoder's logit and the behaviour features
            (features.behaviour) in a small learned head (serving.head.ScoringHead): the
            θᵀ f(X, Y) of the formula, served in the sorter
    text    the behaviour as text in the cross-encoder's input: "query [SEP] summary" against
            the product, the cross-encoder fine-tuned on the logged pairs
and two feature sets on the fusion head that are measured, not served (each needs data the
sorter does not get): exposure (online.exposure: clicks on a brand against its exposure) and
catalog (online.catalog_affinity: catalog price and category).

Measured on the later days (held out): the returning shoppers' requests and those of new shoppers
(arrived on or after `test_from_day`: cold start at first), each ranked by every policy, against
the shopper's TRUE gain (sessions.shopper_gain: their click probability of each candidate once
examined, preferences included): NDCG@10, and the expected clicks and purchases of the page per
1,000 requests (position bias times click and purchase probabilities: expectations, not draws,
so policies compare without sampling noise).

The oracle (the ceiling) is the default design with its behaviour features replaced by the truth
they estimate: the same head, fit the same way on the same training logs, fed each shopper's
hidden preferences for each candidate (favourite brand, favourite category, price fit:
PREFERENCE_FEATURES). No estimate of the preferences from behaviour can tell the head more than
the preferences themselves, so what that head gains with them is the gap personalization can
close on top of this cross-encoder.

Two diagnostics bound what any estimator of the preferences could recover (online.posterior;
measured, never served): "posterior", the Bayes posterior of the shopper's preferences given
their logged history and the request's query, and "population", the same given the query
alone; both through the oracle's head. The returning shoppers' results are also split by how
many sessions they had before the test days (HISTORY_BUCKETS).
"""
from __future__ import annotations

import bisect
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..features.behaviour import BEHAVIOUR_FEATURES, behaviour_features, behaviour_summary
from ..quality import metrics
from ..serving.engine import OrtEngine
from ..serving.head import ScoringHead
from ..serving.personal import personal_logits
from ..serving.profiles import MAX_EVENTS
from ..serving.tokenizer import PairEncoder
from ..training.head import fit_offset_head
from .catalog_affinity import CATALOG_FEATURES, PriceScale, catalog_features, choose_shrinkage
from .exposure import EXPOSURE_FEATURES, choose_strength, click_rate_bins, exposure_features, history_counts
from .feedback import experiment_log
from .posterior import posterior_features
from .profile_feed import behaviour_from_frames
from .propensities import estimate_propensities
from .sessions import PoolQuery, Request, query_pool, simulate_days
from .shop import ShopConfig, Shopper, price_fit, purchase_chances, shopper_gain
from .world import examination

DESIGNS = ("fusion", "exposure", "catalog", "text")
SERVED_DESIGNS = ("fusion",)   # what the serving path runs; the others are measured only
DIAGNOSTIC = "posterior"   # the Bayes posterior of the preferences through the oracle's head (online.posterior)
POPULATION = "population"  # the same given the request's query alone: the prior, no history of the shopper
DIAGNOSTICS = (POPULATION, DIAGNOSTIC)
# sessions a returning shopper had before the test days -> bucket (inclusive bounds)
HISTORY_BUCKETS = {"0": (0, 0), "1-2": (1, 2), "3-5": (3, 5), "6-15": (6, 15), "16+": (16, 10 ** 9)}
TEXT_SEPARATOR = " [SEP] "
PREFERENCE_FEATURES = ("favourite_brand", "favourite_category", "price_fit")   # the oracle's: hidden truth
L2_HELDOUT_DAYS = 2    # the last training days, held out to choose the head's shrinkage


@dataclass
class PersonalizeConfig:
    model_dir: str = str(config.MODEL_DIR)
    engine: str = str(config.onnx_file("int8"))   # the served engine scores the logging policy
    work_dir: str = str(config.ARTIFACTS_DIR / "personalize")
    report_dir: str = str(config.REPORTS_DIR)
    seeds: tuple = (7, 8, 9)
    days: int = 14
    test_from_day: int = 11        # later days: held out
    favourite_share: float = 0.8   # of a shopper's sessions, the share in their favourite category
    per_category: int = 20
    candidates: int = 20
    top_k: int = 10
    explore_share: float = 0.2
    eta: float = 1.0
    l2_grid: tuple = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # the personal head's shrinkage, chosen on held-out days
    designs: tuple = DESIGNS
    text_steps: int = 200          # fine-tuning steps of the text design
    text_max_length: int = 96      # the text design's pairs are longer: query + summary + product
    shop: ShopConfig = field(default_factory=lambda: ShopConfig(shoppers=200, new_per_day=10, sessions_per_day=300,
                                                                explore_share=0.2))


def _profiles_at(log: dict, requests: list[Request]) -> list[list[tuple[str, str]]]:
    """For each request: the shopper's behaviour logged before it, newest first (what the
    profile store holds when the request arrives)."""
    by_user = {u: sorted(events, key=lambda e: e.ts) for u, events in log.items()}
    stamps = {u: [e.ts for e in events] for u, events in by_user.items()}
    out = []
    for r in requests:
        events = by_user.get(r.user, [])
        cut = bisect.bisect_left(stamps.get(r.user, []), r.ts)
        out.append([(e.kind, e.text) for e in reversed(events[max(0, cut - MAX_EVENTS):cut])])
    return out


@dataclass
class Logged:
    request: Request
    profile: list
    shown: list          # candidate indices in page order
    clicked: set         # positions clicked
    bought: set = field(default_factory=set)   # positions bought


def _read_log(frames, requests: list[Request], key_file: Path) -> list[Logged]:
    """The requests with their logged pages, clicks and profiles; `frames`: feedback.read_frames."""
    from ..data.pseudonym import load_or_create_key, pseudonym

    key = load_or_create_key(key_file)
    for r in requests:
        r.user = pseudonym(r.shopper.user_id, key)
    profiles = _profiles_at(behaviour_from_frames(*frames), requests)
    _, shown, events = frames
    pages = shown.sort_values(["request_id", "position"]).groupby("request_id")["candidate_index"].apply(list)
    clicks = events[events["kind"] == "click"].groupby("request_id")["position"].apply(set)
    bought = events[events["kind"] == "purchase"].groupby("request_id")["position"].apply(set)
    return [Logged(r, p, pages.get(r.request_id, []), clicks.get(r.request_id, set()),
                   bought.get(r.request_id, set())) for r, p in zip(requests, profiles)]


def preference_features(shopper: Shopper, texts: list, products: dict) -> np.ndarray:
    """[len(texts), 3]: the shopper's hidden preferences for each candidate (PREFERENCE_FEATURES),
    what shop.click_lift multiplies: only the oracle sees them."""
    return np.array([[float(products[t]["brand"] in shopper.brands), float(products[t]["category"] == shopper.category),
                      price_fit(shopper, products[t]["price"])] for t in texts], np.float32)


def _training_rows(logged: list[Logged], base: dict, theta: np.ndarray, products: dict | None = None):
    """(base logits, behaviour features, labels, weights, days, queries, texts, summaries, and the
    oracle's preference features when `products` is given) of every shown item of the training
    requests with a non-empty profile."""
    rows = {k: [] for k in ("logit", "x", "y", "w", "day", "true", "query", "text", "summary", "rid", "index")}
    for item in logged:
        if not item.profile:
            continue
        q = item.request.query
        feats = behaviour_features(item.profile, q.texts)
        truth = preference_features(item.request.shopper, q.texts, products) if products else None
        summary = behaviour_summary(item.profile)
        for pos, i in enumerate(item.shown):
            clicked = pos in item.clicked
            rows["logit"].append(base[q.query][i])
            rows["x"].append(feats[i])
            rows["y"].append(float(clicked))
            rows["w"].append(1.0 if clicked else float(theta[min(pos, len(theta) - 1)]))
            rows["day"].append(item.request.day)
            rows["true"].append(truth[i] if truth is not None else np.zeros(len(PREFERENCE_FEATURES), np.float32))
            rows["query"].append(q.query)
            rows["text"].append(q.texts[i])
            rows["summary"].append(summary)
            rows["rid"].append(item.request.request_id)
            rows["index"].append(i)
    return rows


def fit_personal_head(rows, features: str, names: tuple, l2_grid: tuple, seed: int = 0) -> tuple[ScoringHead, dict]:
    """The personal head (training.head.fit_offset_head): the cross-encoder's logit calibrated to
    the logged clicks as a fixed offset, plus a linear term of `features` ("x": the behaviour
    features, "true": the oracle's preferences), inverse-propensity weighted. Every weight is
    non-negative (each feature is an affinity of the shopper for the candidate: more of it can only
    mean more clicks); the shrinkage is chosen from `l2_grid` on the last L2_HELDOUT_DAYS training
    days, fit on the days before, then refit on all."""
    logit, y, w = (np.asarray(rows[k], np.float32) for k in ("logit", "y", "w"))
    x = np.asarray(rows[features], np.float32).reshape(len(y), len(names))
    day = np.asarray(rows["day"])
    held = day >= (day.max() - L2_HELDOUT_DAYS + 1) if len(day) else day.astype(bool)
    grid = l2_grid if held.any() and not held.all() and len(l2_grid) > 1 else l2_grid[:1]
    head = fit_offset_head(logit, x, y, names, w, seed=seed, l2=grid, holdout=held, nonneg=True)
    head.meta.update({"rows": int(len(y))})
    return head, {"rows": int(len(y)), "clicks": int(y.sum()), "theta_per_unit": head.meta["theta_per_unit"],
                  "l2": head.meta["l2"], "logit_slopes": head.meta["logit_slopes"]}


def fit_fusion(rows, seed: int = 0, l2_grid: tuple = PersonalizeConfig.l2_grid) -> tuple[ScoringHead, dict]:
    """The late-fusion head: the personal head over the behaviour features."""
    head, fit = fit_personal_head(rows, "x", BEHAVIOUR_FEATURES, l2_grid, seed)
    head.meta["design"] = "fusion"
    return head, fit


def fusion_logits(head: ScoringHead, base_logits: np.ndarray, behaviour: np.ndarray) -> np.ndarray:
    """What the sorter does (serving.personal.personal_logits)."""
    return personal_logits(head, np.asarray(base_logits, np.float32).reshape(-1), behaviour)


def text_query(query: str, profile: list) -> str:
    summary = behaviour_summary(profile)
    return query + TEXT_SEPARATOR + summary if summary else query


def fit_text(cfg: PersonalizeConfig, rows, out_dir: Path, seed: int) -> dict:
    import pandas as pd

    from .update import weighted_finetune

    pairs = pd.DataFrame({"query": [q + TEXT_SEPARATOR + s for q, s in zip(rows["query"], rows["summary"])],
                          "text": rows["text"], "label": rows["y"], "weight": rows["w"]})
    return weighted_finetune(cfg.model_dir, pairs, out_dir, steps=cfg.text_steps, lr=3e-5, batch_size=16,
                             seed=seed, max_length=cfg.text_max_length)


def _page_value(order: np.ndarray, gain: np.ndarray, buy: np.ndarray, k: int, eta: float) -> tuple[float, float]:
    exam = np.array([examination(pos, eta) for pos in range(min(k, len(order)))])
    top = order[:k]
    click = exam * gain[top]
    return float(click.sum()), float((click * buy[top]).sum())


def per_request(items: list[Logged], policies: dict, cfg: PersonalizeConfig, products: dict,
                shop: ShopConfig) -> dict:
    """Per policy, per request: NDCG@10 against the shopper's true relevance (NaN for a page with
    nothing relevant: it ranks alike under every policy), expected clicks and purchases of the page."""
    out = {name: {"ndcg": [], "clicks": [], "purchases": []} for name in policies}
    for item in items:
        r = item.request
        true_rel = shopper_gain(r.shopper, r.query, products, shop)
        buy = purchase_chances(r.shopper, r.query, products, shop)
        for name, policy in policies.items():
            scores = policy(item)
            order = np.argsort(-scores, kind="stable")
            ndcg = metrics.ndcg_at_k(scores, true_rel, cfg.top_k)
            out[name]["ndcg"].append(np.nan if ndcg is None else ndcg)
            c, b = _page_value(order, true_rel, buy, cfg.top_k, cfg.eta)
            out[name]["clicks"].append(c)
            out[name]["purchases"].append(b)
    return {name: {k: np.asarray(v, np.float64) for k, v in values.items()} for name, values in out.items()}


def aggregate(values: dict, mask: np.ndarray | None = None) -> dict:
    """per_request's values (of the requests in `mask`) -> per policy: mean NDCG@10, clicks and
    purchases per 1,000 requests, and how many requests had an NDCG."""
    out = {}
    for name, v in values.items():
        keep = np.ones(len(v["ndcg"]), bool) if mask is None else np.asarray(mask, bool)
        ndcg = v["ndcg"][keep]
        ndcg = ndcg[~np.isnan(ndcg)]
        out[name] = {"ndcg": float(ndcg.mean()) if len(ndcg) else float("nan"),
                     "clicks_per_1000": 1000 * float(v["clicks"][keep].mean()) if keep.any() else float("nan"),
                     "purchases_per_1000": 1000 * float(v["purchases"][keep].mean()) if keep.any() else float("nan"),
                     "requests": int(len(ndcg))}
    return out


def evaluate(items: list[Logged], policies: dict, cfg: PersonalizeConfig, products: dict, shop: ShopConfig) -> dict:
    """Per policy: NDCG@10 against the shopper's true relevance, expected clicks and purchases per
    1,000 requests."""
    return aggregate(per_request(items, policies, cfg, products, shop))


def history_buckets(logged: list[Logged], items: list[Logged], test_from_day: int) -> dict:
    """{bucket label: bool mask over `items`}: how many sessions each request's shopper had before
    the test days (HISTORY_BUCKETS)."""
    before: dict[str, int] = {}
    for it in logged:
        if it.request.day < test_from_day:
            before[it.request.user] = before.get(it.request.user, 0) + 1
    counts = np.array([before.get(it.request.user, 0) for it in items])
    return {label: (counts >= lo) & (counts <= hi) for label, (lo, hi) in HISTORY_BUCKETS.items()}


def base_scores(cfg: PersonalizeConfig, pool: list[PoolQuery]) -> dict:
    engine = OrtEngine(cfg.engine)
    encoder = PairEncoder.from_dir(cfg.model_dir, max_length=_max_length(cfg.model_dir), buckets=None)
    return {q.query: engine.logits(encoder.encode(q.query, q.texts)).reshape(-1) for q in pool}


def _max_length(model_dir) -> int:
    from ..model_card import model_max_length

    return model_max_length(model_dir)


def run_seed(cfg: PersonalizeConfig, seed: int, pool: list[PoolQuery], base: dict, log=print) -> dict:
    from dataclasses import replace

    from .feedback import read_frames

    work = Path(cfg.work_dir) / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    db = work / "feedback.sqlite"
    db.unlink(missing_ok=True)
    key_file = work / "user_id.key"
    shop = replace(cfg.shop, seed=seed, top_k=cfg.top_k, eta=cfg.eta)
    started = time.time()
    with experiment_log(db, key_file) as store:
        requests, products = simulate_days(shop, cfg.days, pool, lambda q: base[q.query], store, cfg.favourite_share)
    frames = read_frames(db)
    logged = _read_log(frames, requests, key_file)
    theta = estimate_propensities(*frames)
    train = [it for it in logged if it.request.day < cfg.test_from_day]
    test = [it for it in logged if it.request.day >= cfg.test_from_day and not it.request.randomized]
    returning = [it for it in test if it.request.shopper.arrived < cfg.test_from_day]
    cold = [it for it in test if it.request.shopper.arrived >= cfg.test_from_day]
    rows = _training_rows(train, base, theta, products)
    log(f"seed {seed}: {len(requests)} requests simulated in {time.time() - started:.0f} s; "
        f"{len(rows['y'])} training rows, {int(sum(rows['y']))} clicks; test: {len(returning)} returning, "
        f"{len(cold)} new-shopper requests")
    head, fusion_fit = fit_fusion(rows, seed=seed, l2_grid=cfg.l2_grid)
    head.save(work / "fusion-head")
    oracle, oracle_fit = fit_personal_head(rows, "true", PREFERENCE_FEATURES, cfg.l2_grid, seed)

    started = time.time()
    wanted = {it.request.request_id for it in returning + cold}
    posterior, population = posterior_features(logged, products, _brands_by_category(products), shop,
                                               cfg.favourite_share, wanted)
    log(f"seed {seed}: posterior diagnostic in {time.time() - started:.0f} s")

    policies = {
        "non-personalized": lambda it: base[it.request.query.query],
        "fusion": lambda it: fusion_logits(head, base[it.request.query.query],
                                           behaviour_features(it.profile, it.request.query.texts)),
        POPULATION: lambda it: oracle.logits(base[it.request.query.query], population[it.request.request_id]),
        DIAGNOSTIC: lambda it: oracle.logits(base[it.request.query.query], posterior[it.request.request_id]),
        "oracle": lambda it: oracle.logits(base[it.request.query.query],
                                           preference_features(it.request.shopper, it.request.query.texts, products)),
    }
    fits = {"fusion": fusion_fit, "oracle": oracle_fit}
    if "exposure" in cfg.designs:
        policies["exposure"], fits["exposure"] = _exposure_design(rows, logged, train, returning + cold, base, theta,
                                                                  cfg, seed)
    if "catalog" in cfg.designs:
        policies["catalog"], fits["catalog"] = _catalog_design(rows, train, base, products, cfg, seed)
    if "text" in cfg.designs:
        text_dir = work / "text-model"
        fits["text"] = fit_text(cfg, rows, text_dir, seed)
        policies["text"] = _text_policy(text_dir, cfg)
    values = per_request(returning, {**policies, **_one_preference_policies(oracle, base, posterior, population,
                                                                           products)}, cfg, products, shop)
    decomposition = {name: aggregate({name: v})[name]["ndcg"] for name, v in values.items() if ":" in name}
    values = {name: v for name, v in values.items() if ":" not in name}
    buckets = {label: aggregate(values, mask) for label, mask in
               history_buckets(logged, returning, cfg.test_from_day).items()}
    results = {"returning": aggregate(values), "cold_start": evaluate(cold, policies, cfg, products, shop),
               "returning_by_history": buckets, "decomposition": decomposition}
    return {"seed": seed, "requests": len(requests), "training_rows": len(rows["y"]), "fits": fits,
            "propensities": [round(float(t), 4) for t in theta[:10]], **results}


def _exposure_design(rows, logged: list[Logged], train: list[Logged], test: list[Logged], base: dict,
                     theta: np.ndarray, cfg: PersonalizeConfig, seed: int):
    """Design "exposure" (online.exposure): the late-fusion head with the exposure-aware brand
    affinity as a 7th feature; click rates per logit bin and the shrinkage strength from the
    training days only. (policy, fit)"""
    logits, positions, clicked = [], [], []
    for it in train:
        for pos, i in enumerate(it.shown):
            logits.append(base[it.request.query.query][i])
            positions.append(pos)
            clicked.append(pos in it.clicked)
    edges, rates = click_rate_bins(np.array(logits), np.array(positions), np.array(clicked), theta)
    wanted = {it.request.request_id for it in train} | {it.request.request_id for it in test}
    counts, last_train = {}, {}
    for item, c in history_counts(logged, lambda it: base[it.request.query.query], edges, rates, theta):
        if item.request.request_id in wanted:
            counts[item.request.request_id] = c
        if item.request.day < cfg.test_from_day:
            last_train[item.request.user] = c
    a = choose_strength(v for c in last_train.values() for v in c.values())
    policy, fit = _with_extra_features(
        "exposure", rows, train, base, EXPOSURE_FEATURES, cfg, seed,
        lambda it: exposure_features(it.profile, counts[it.request.request_id], it.request.query.texts, a))
    fit["strength_a"] = a
    return policy, fit


def _catalog_design(rows, train: list[Logged], base: dict, products: dict, cfg: PersonalizeConfig, seed: int):
    """Design "catalog" (online.catalog_affinity): the late-fusion head with the catalog's price and
    category of each candidate against those of the shopper's clicked products; the price level's
    shrinkage from the training days' clicks. (policy, fit)"""
    scale = PriceScale(products)
    clicked: dict[str, list] = {}
    for it in train:
        for pos in it.clicked:
            d = scale.deviation(it.request.query.texts[it.shown[pos]])
            if d is not None:
                clicked.setdefault(it.request.user, []).append(d)
    k = choose_shrinkage(clicked.values())
    policy, fit = _with_extra_features("catalog", rows, train, base, CATALOG_FEATURES, cfg, seed,
                                       lambda it: catalog_features(scale, it.profile, it.request.query.texts, k))
    fit["shrinkage_k"] = k
    return policy, fit


def _with_extra_features(design: str, rows, train: list[Logged], base: dict, names: tuple, cfg: PersonalizeConfig,
                         seed: int, extra):
    """The late-fusion head fit with `extra(item)` ([candidates, len(names)]) beside the behaviour
    features, on the same training rows. (policy, fit)"""
    more = {it.request.request_id: extra(it) for it in train if it.profile}
    key = f"x_{design}"
    rows[key] = [np.concatenate([x, more[rid][i]]) for x, rid, i in zip(rows["x"], rows["rid"], rows["index"])]
    head, fit = fit_personal_head(rows, key, BEHAVIOUR_FEATURES + names, cfg.l2_grid, seed)
    head.meta["design"] = design

    def policy(it):
        features = np.concatenate([behaviour_features(it.profile, it.request.query.texts), extra(it)], axis=1)
        return fusion_logits(head, base[it.request.query.query], features)
    return policy, fit


def _one_preference_policies(oracle: ScoringHead, base: dict, posterior: dict, population: dict, products: dict):
    """"oracle:favourite_brand" etc.: the oracle's head fed one preference feature of the truth /
    posterior / population, the others zero: which preference the gap is made of."""
    sources = {"oracle": lambda it: preference_features(it.request.shopper, it.request.query.texts, products),
               DIAGNOSTIC: lambda it: posterior[it.request.request_id],
               POPULATION: lambda it: population[it.request.request_id]}

    def only(source, j):
        def policy(it):
            features = source(it)
            x = np.zeros_like(features)
            x[:, j] = features[:, j]
            return oracle.logits(base[it.request.query.query], x)
        return policy
    return {f"{name}:{feature}": only(source, j) for name, source in sources.items()
            for j, feature in enumerate(PREFERENCE_FEATURES)}


def _brands_by_category(products: dict) -> dict:
    out: dict[str, set] = {}
    for p in products.values():
        out.setdefault(p["category"], set()).add(p["brand"])
    return {c: sorted(b) for c, b in out.items()}


def _text_policy(model_dir: Path, cfg: PersonalizeConfig):
    from ..training.model import load_cross_encoder, torch_logits

    model = load_cross_encoder(model_dir)
    model.eval()
    encoder = PairEncoder.from_dir(model_dir, max_length=cfg.text_max_length, buckets=None)

    def score(item):
        q = item.request.query
        return torch_logits(model, encoder.encode(text_query(q.query, item.profile), q.texts)).reshape(-1)
    return score


def token_cost(cfg: PersonalizeConfig, pool: list[PoolQuery], profile: list) -> dict:
    """Mean tokens per pair without and with the behaviour summary (the text design's cost)."""
    encoder = PairEncoder.from_dir(cfg.model_dir, max_length=512, buckets=None)
    plain = [int(encoder.encode(q.query, q.texts)[config.ENGINE_INPUTS[1]].sum(1).mean()) for q in pool[:50]]
    text = [int(encoder.encode(text_query(q.query, profile), q.texts)[config.ENGINE_INPUTS[1]].sum(1).mean())
            for q in pool[:50]]
    return {"tokens_per_pair": float(np.mean(plain)), "tokens_per_pair_with_summary": float(np.mean(text))}


def summarize(per_seed: list[dict], designs) -> dict:
    policies = ["non-personalized", *designs, *DIAGNOSTICS, "oracle"]
    out = {}
    for group in ("returning", "cold_start"):
        out[group] = {}
        for p in policies:
            vals = {m: [s[group][p][m] for s in per_seed] for m in ("ndcg", "clicks_per_1000", "purchases_per_1000")}
            out[group][p] = {m: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                             for m, v in vals.items()}
    for d in [*designs, *DIAGNOSTICS]:
        recovered = []
        for s in per_seed:
            r = s["returning"]
            gap = r["oracle"]["ndcg"] - r["non-personalized"]["ndcg"]
            recovered.append((r[d]["ndcg"] - r["non-personalized"]["ndcg"]) / gap if gap > 0 else float("nan"))
        out.setdefault("gap_recovered", {})[d] = {"mean": float(np.mean(recovered)), "min": float(np.min(recovered)),
                                                  "max": float(np.max(recovered)), "per_seed": recovered}
        if d in DIAGNOSTICS:
            continue
        cold = [s["cold_start"][d]["ndcg"] - s["cold_start"]["non-personalized"]["ndcg"] for s in per_seed]
        out.setdefault("cold_start_delta", {})[d] = {"mean": float(np.mean(cold)), "per_seed": cold}
    out["returning_by_history"] = history_summary(per_seed, policies)
    parts = [s["decomposition"] for s in per_seed if "decomposition" in s]
    if parts:
        base_ndcg = np.mean([s["returning"]["non-personalized"]["ndcg"] for s in per_seed])
        gap = np.mean([s["returning"]["oracle"]["ndcg"] for s in per_seed]) - base_ndcg
        out["decomposition"] = {name: float((np.mean([p[name] for p in parts]) - base_ndcg) / gap) if gap > 0
                                else float("nan") for name in parts[0]}
    return out


def history_summary(per_seed: list[dict], policies: list) -> dict:
    """Per history bucket, the seeds pooled (each seed's mean weighted by its requests): requests,
    NDCG@10 per policy, the gap (oracle − non-personalized) and each other policy's share of it."""
    out = {}
    for label in HISTORY_BUCKETS:
        cells = [s["returning_by_history"][label] for s in per_seed if "returning_by_history" in s]
        n = sum(c["non-personalized"]["requests"] for c in cells)
        if not n:
            out[label] = {"requests": 0}
            continue
        ndcg = {p: sum(c[p]["ndcg"] * c[p]["requests"] for c in cells if c[p]["requests"]) / n for p in policies}
        gap = ndcg["oracle"] - ndcg["non-personalized"]
        out[label] = {"requests": n, "ndcg": ndcg, "gap": gap,
                      "recovered": {p: (ndcg[p] - ndcg["non-personalized"]) / gap if gap > 0 else float("nan")
                                    for p in policies if p not in ("non-personalized", "oracle")}}
    return out


def run(cfg: PersonalizeConfig, log=print) -> dict:
    started = time.time()
    pool = query_pool(cfg.per_category, cfg.candidates)
    base = base_scores(cfg, pool)
    per_seed = [run_seed(cfg, seed, pool, base, log) for seed in cfg.seeds]
    summary = summarize(per_seed, [d for d in DESIGNS if d in cfg.designs])
    sample_profile = [("purchase", pool[0].texts[0]), ("click", pool[1].texts[0]), ("query", pool[2].query),
                      ("click", pool[3].texts[1])]
    report = {"config": asdict(cfg), "pool_queries": len(pool), "diagnostics": list(DIAGNOSTICS),
              "served_designs": list(SERVED_DESIGNS),
              "summary": summary, "per_seed": per_seed, "token_cost": token_cost(cfg, pool, sample_profile),
              "seconds": round(time.time() - started, 1)}
    return report


def write_report(report: dict, report_dir: str | Path, latency: dict | None = None) -> Path:
    from .personalize_report import write

    return write(report, Path(report_dir), latency)
