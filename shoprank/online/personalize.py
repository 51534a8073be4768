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
from .feedback import FeedbackStore
from .profile_feed import behaviour_from_frames
from .propensities import estimate_propensities
from .sessions import PoolQuery, Request, query_pool, simulate_days
from .shop import ShopConfig, Shopper, price_fit, purchase_chances, shopper_gain
from .world import examination

DESIGNS = ("fusion", "text")
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
    return [Logged(r, p, pages.get(r.request_id, []), clicks.get(r.request_id, set()))
            for r, p in zip(requests, profiles)]


def preference_features(shopper: Shopper, texts: list, products: dict) -> np.ndarray:
    """[len(texts), 3]: the shopper's hidden preferences for each candidate (PREFERENCE_FEATURES),
    what shop.click_lift multiplies: only the oracle sees them."""
    return np.array([[float(products[t]["brand"] in shopper.brands), float(products[t]["category"] == shopper.category),
                      price_fit(shopper, products[t]["price"])] for t in texts], np.float32)


def _training_rows(logged: list[Logged], base: dict, theta: np.ndarray, products: dict | None = None):
    """(base logits, behaviour features, labels, weights, days, queries, texts, summaries, and the
    oracle's preference features when `products` is given) of every shown item of the training
    requests with a non-empty profile."""
    rows = {k: [] for k in ("logit", "x", "y", "w", "day", "true", "query", "text", "summary")}
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


def evaluate(items: list[Logged], policies: dict, cfg: PersonalizeConfig, products: dict, shop: ShopConfig) -> dict:
    """Per policy: NDCG@10 against the shopper's true relevance, expected clicks and purchases per
    1,000 requests."""
    out = {name: {"ndcg": [], "clicks": [], "purchases": []} for name in policies}
    for item in items:
        r = item.request
        true_rel = shopper_gain(r.shopper, r.query, products, shop)
        buy = purchase_chances(r.shopper, r.query, products, shop)
        for name, policy in policies.items():
            scores = policy(item)
            order = np.argsort(-scores, kind="stable")
            ndcg = metrics.ndcg_at_k(scores, true_rel, cfg.top_k)
            if ndcg is not None:  # a page with nothing relevant ranks alike under every policy
                out[name]["ndcg"].append(ndcg)
            c, b = _page_value(order, true_rel, buy, cfg.top_k, cfg.eta)
            out[name]["clicks"].append(c)
            out[name]["purchases"].append(b)
    return {name: {"ndcg": float(np.mean(v["ndcg"])), "clicks_per_1000": 1000 * float(np.mean(v["clicks"])),
                   "purchases_per_1000": 1000 * float(np.mean(v["purchases"])), "requests": len(v["ndcg"])}
            for name, v in out.items()}


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
    with FeedbackStore(db, pseudonym_key_file=key_file) as store:
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

    policies = {
        "non-personalized": lambda it: base[it.request.query.query],
        "fusion": lambda it: fusion_logits(head, base[it.request.query.query],
                                           behaviour_features(it.profile, it.request.query.texts)),
        "oracle": lambda it: oracle.logits(base[it.request.query.query],
                                           preference_features(it.request.shopper, it.request.query.texts, products)),
    }
    fits = {"fusion": fusion_fit, "oracle": oracle_fit}
    if "text" in cfg.designs:
        text_dir = work / "text-model"
        fits["text"] = fit_text(cfg, rows, text_dir, seed)
        policies["text"] = _text_policy(text_dir, cfg)
    results = {"returning": evaluate(returning, policies, cfg, products, shop),
               "cold_start": evaluate(cold, policies, cfg, products, shop)}
    return {"seed": seed, "requests": len(requests), "training_rows": len(rows["y"]), "fits": fits,
            "propensities": [round(float(t), 4) for t in theta[:10]], **results}


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
    policies = ["non-personalized", *designs, "oracle"]
    out = {}
    for group in ("returning", "cold_start"):
        out[group] = {}
        for p in policies:
            vals = {m: [s[group][p][m] for s in per_seed] for m in ("ndcg", "clicks_per_1000", "purchases_per_1000")}
            out[group][p] = {m: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                             for m, v in vals.items()}
    for d in designs:
        recovered = []
        for s in per_seed:
            r = s["returning"]
            gap = r["oracle"]["ndcg"] - r["non-personalized"]["ndcg"]
            recovered.append((r[d]["ndcg"] - r["non-personalized"]["ndcg"]) / gap if gap > 0 else float("nan"))
        out.setdefault("gap_recovered", {})[d] = {"mean": float(np.mean(recovered)), "min": float(np.min(recovered)),
                                                  "max": float(np.max(recovered)), "per_seed": recovered}
        cold = [s["cold_start"][d]["ndcg"] - s["cold_start"]["non-personalized"]["ndcg"] for s in per_seed]
        out.setdefault("cold_start_delta", {})[d] = {"mean": float(np.mean(cold)), "per_seed": cold}
    return out


def run(cfg: PersonalizeConfig, log=print) -> dict:
    started = time.time()
    pool = query_pool(cfg.per_category, cfg.candidates)
    base = base_scores(cfg, pool)
    per_seed = [run_seed(cfg, seed, pool, base, log) for seed in cfg.seeds]
    summary = summarize(per_seed, [d for d in DESIGNS if d in cfg.designs])
    sample_profile = [("purchase", pool[0].texts[0]), ("click", pool[1].texts[0]), ("query", pool[2].query),
                      ("click", pool[3].texts[1])]
    report = {"config": asdict(cfg), "pool_queries": len(pool),
              "summary": summary, "per_seed": per_seed, "token_cost": token_cost(cfg, pool, sample_profile),
              "seconds": round(time.time() - started, 1)}
    return report


def write_report(report: dict, report_dir: str | Path, latency: dict | None = None) -> Path:
    from .personalize_report import write

    return write(report, Path(report_dir), latency)
