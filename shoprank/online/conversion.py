"""Conversion-aware ordering, measured on simulated shoppers (`make conversion`).

Per seed: the simulated shop (world.py's queries and candidates, shop.py's products and
shoppers) serves pages ordered by relevance (with an exploration share) for `log_days` days,
logging impressions, clicks, add-to-carts and purchases with pseudonymous user ids into a
FeedbackStore. A conversion model p(purchase | click) is learned from that log (ConversionModel:
per product, shrunk towards its category's rate, Beta/empirical Bayes) and written into the
catalog's `conversion` column. Then, for `eval_days` more days of the same shoppers and queries
(common random numbers: every policy meets the same shopper, query and dice), each policy
orders the pages: relevance, expected_value, expected_value + rules. Reported: revenue and
margin per 1,000 requests, CTR, purchases, NDCG@10 of the order against the TRUE relevance,
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
from ..serving.rules import apply_rules, parse_rules
from .feedback import FeedbackStore, read_frames
from .shop import ShopConfig, Shoppers, click_lift, purchase_probability, simulate_page, synthetic_catalog
from .world import build_world, examination

SWEEP = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12)  # value_weight candidates, tried on the tuning seeds
LOSS_BUDGET = 0.005  # the chosen value_weight: the largest whose mean NDCG@10 loss on the tuning seeds is within


def policies(weight: float) -> dict:
    """The compared policies (RULES JSON each), the tempered expected value at `weight`."""
    tempered = {"objective": "expected_value", "value_weight": weight}
    return {"relevance": {}, "expected_value": {"objective": "expected_value"},
            f"expected_value_w{weight:g}": tempered,
            f"expected_value_w{weight:g}+rules": {**tempered, "filter": {"in_stock_only": True},
                                                  "diversity": {"max_per_brand": 3, "top_n": 10},
                                                  "boost": {"attribute": "margin", "strength": 0.05}}}


PRIOR_STRENGTHS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # pseudo-clicks of the category prior, chosen on held-out log


@dataclass
class ConversionConfig:
    seeds: tuple = (7, 8, 9)
    tune_seeds: tuple = (1, 2, 3)   # value_weight is chosen on these, never on the reported seeds
    model_dir: str = str(config.MODEL_DIR)
    engine: str = str(config.onnx_file("int8"))
    report_dir: str = str(config.REPORTS_DIR)
    traffic_queries: int = 80
    candidates: int = 20
    log_days: int = 6
    eval_days: int = 3
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


def click_purchase_counts(path: Path, text_to_id: dict, requests: set | None = None) -> tuple[dict, dict]:
    """Per product id: clicks and purchases in the feedback store (optionally of some requests)."""
    _, shown, events = read_frames(path)
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


def fit_conversion(path: Path, text_to_id: dict, category_of: dict, seed: int) -> tuple[ConversionModel, dict]:
    """Choose the prior strength on a held-out fifth of the logged requests (log-likelihood of
    purchase given click), then fit on everything."""
    imps, _, _ = read_frames(path)
    ids = sorted(imps["request_id"])
    random.Random(seed).shuffle(ids)
    held = set(ids[: len(ids) // 5])
    fit_c, fit_p = click_purchase_counts(path, text_to_id, set(ids) - held)
    test_c, test_p = click_purchase_counts(path, text_to_id, held)
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
    clicks, purchases = click_purchase_counts(path, text_to_id)
    return ConversionModel(clicks, purchases, category_of, best), {
        "heldout_loglik_per_click": {str(k): round(v, 5) for k, v in scores.items()}, "prior_strength": best,
        "clicks": sum(clicks.values()), "purchases": sum(purchases.values())}


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
                  draws: np.ndarray, cfg: ShopConfig) -> dict:
    shown = order[:shown_n]
    out = {"shown": len(shown), "clicks": 0, "purchases": 0, "revenue": 0.0, "margin": 0.0,
           "oos": int(sum(attrs[i, ATTRIBUTES.index("in_stock")] == 0 for i in shown)),
           "brands": len({products[i]["brand"] for i in shown})}
    scores = np.full(len(q.relevance), -1e9)  # filtered: never shown
    scores[order] = -np.arange(len(order), dtype=float)
    out["ndcg"] = metrics.ndcg_at_k(scores, q.relevance, 10)
    for position, i in enumerate(shown):
        p = products[i]
        u_exam, u_click, u_buy = draws[position]
        if u_exam >= examination(position, cfg.eta):
            continue
        lift = click_lift(shopper, p["brand"], p["category"], p["price"], cfg)
        if u_click >= min(1.0, click_probability(q.relevance[i]) * lift):
            continue
        out["clicks"] += 1
        if u_buy < purchase_probability(q.relevance[i], p, shopper, cfg):
            out["purchases"] += 1
            out["revenue"] += p["price"]
            out["margin"] += p["margin"]
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
    with FeedbackStore(db, pseudonym_key_file=work / "user_id.key") as store:
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
        store.flush()

    # 2. learn p(purchase | click), write it into the catalog, load the catalog (SQLite)
    model, fit = fit_conversion(db, text_to_id, category_of, seed)
    frame["conversion"] = [model.rate(pid) for pid in frame["id"]]
    csv_path = work / f"catalog-{seed}.csv"
    frame.drop(columns=["appeal"]).to_csv(csv_path, index=False)
    catalog = Catalog(load_catalog(csv_path, work / f"catalog-{seed}.sqlite")["catalog"])
    true_conv = dict(zip(frame["id"], frame["appeal"]))
    learned = np.array([model.rate(p) for p in frame["id"]])
    fit["corr_with_true_appeal_x_stock"] = round(float(np.corrcoef(
        learned, [true_conv[p] * s for p, s in zip(frame["id"], frame["in_stock"])])[0, 1]), 3)

    # 3. evaluate every policy on the same sessions
    sessions = []
    for _day in range(cfg.eval_days):
        for _ in range(shop.sessions_per_day):
            shopper, q = copy(people.pick()), rnd.choices(traffic, weights)[0]
            sessions.append((shopper, q, np.array([[rnd.random() for _ in range(3)] for _ in range(shop.top_k)])))
        people.next_day()
    lookups = {}
    for q in traffic:
        ids = [text_to_id[t] for t in q.texts]
        _, attrs = catalog.lookup(ids)
        lookups[q.query] = (ids, attrs, [truth[t] for t in q.texts])
    result = {"fit": fit}
    for name, rules_json in policies.items():
        rules = parse_rules(rules_json)
        pages = {}
        totals: dict = {}
        ndcgs = []
        for shopper, q, draws in sessions:
            ids, attrs, products = lookups[q.query]
            if q.query not in pages:
                pages[q.query] = apply_rules(scorer.logits(q.query, q.texts), 0, rules, attrs, ids).indices
            m = _page_metrics(pages[q.query], q, shop.top_k, attrs, shopper, products, draws, shop)
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
        log(f"seed {seed} {name:<22} revenue/1000 {result[name]['revenue_per_1000']:9.1f}  "
            f"NDCG@10 {result[name]['true_ndcg@10']:.4f}  purchases {totals['purchases']}")
    return result


def run(cfg: ConversionConfig, log=print) -> dict:
    started = time.time()
    scorer = Scorer(cfg.model_dir, cfg.engine, cfg.threads)
    with tempfile.TemporaryDirectory(prefix="shoprank-conversion-") as tmp:
        sweep = {"relevance": {}, **{f"w{w:g}": {"objective": "expected_value", "value_weight": w} for w in SWEEP}}
        tuning = _summarize({seed: run_seed(cfg, seed, scorer, Path(tmp), sweep, lambda *a: None)
                             for seed in cfg.tune_seeds}, sweep)
        within = [w for w in SWEEP if tuning[f"w{w:g}"]["ndcg_loss"]["mean"] <= LOSS_BUDGET]
        weight = max(within) if within else min(SWEEP)
        log(f"value_weight {weight:g} (largest with NDCG@10 loss <= {LOSS_BUDGET} on seeds {cfg.tune_seeds})")
        chosen = policies(weight)
        per_seed = {seed: run_seed(cfg, seed, scorer, Path(tmp), chosen, log) for seed in cfg.seeds}
    summary = {"config": {**asdict(cfg), "shop": asdict(cfg.shop)}, "policies": chosen, "per_seed": per_seed,
               "value_weight": weight, "tuning": {k: {m: v[m]["mean"] for m in ("revenue_lift", "ndcg_loss")}
                                                  for k, v in tuning.items() if k != "relevance"},
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
                                      "max": float(np.max(loss))}
    return out


def render_report(summary: dict) -> str:
    s, seeds = summary["summary"], list(summary["per_seed"])
    lines = ["# Conversion-aware ordering (`make conversion`)", "",
             f"Simulated shoppers (docs/simulator.md), {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
             "mean over seeds [min, max]. Scored in-process with the demo model's ONNX engine and the serving "
             "code's rules (not through Triton). Common random numbers: every policy meets the same shoppers, "
             "queries and dice.", "",
             "| policy | revenue / 1000 req | margin / 1000 req | CTR | purchases | true NDCG@10 | "
             "out-of-stock shown | brands in top 10 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in summary["policies"]:
        def cell(metric, fmt, m=s[name]):
            v = m[metric]
            return f"{v['mean']:{fmt}} [{v['min']:{fmt}}, {v['max']:{fmt}}]"
        lines.append(f"| {name} | {cell('revenue_per_1000', '.0f')} | {cell('margin_per_1000', '.0f')} | "
                     f"{cell('ctr', '.4f')} | {cell('purchases', '.0f')} | {cell('true_ndcg@10', '.4f')} | "
                     f"{cell('oos_share_shown', '.3f')} | {cell('brands_in_top10', '.2f')} |")
    lines += ["", "Against relevance ordering (target: revenue +10% at an NDCG@10 loss <= 0.01):", ""]
    for name in summary["policies"]:
        if name == "relevance":
            continue
        lift, loss = s[name]["revenue_lift"], s[name]["ndcg_loss"]
        ok = lift["mean"] >= 0.10 and loss["mean"] <= 0.01
        lines.append(f"- {name}: revenue {100 * lift['mean']:+.1f}% [{100 * lift['min']:+.1f}%, "
                     f"{100 * lift['max']:+.1f}%], NDCG@10 loss {loss['mean']:.4f} [{loss['min']:.4f}, "
                     f"{loss['max']:.4f}] -> target {'met' if ok else 'NOT met'}")
    lines += ["", "Conversion model p(purchase | click) per seed (held-out log-likelihood per click by prior "
              "strength; the chosen strength; correlation of the learned rate with the true appeal x in stock):", ""]
    for seed, r in summary["per_seed"].items():
        f = r["fit"]
        lines.append(f"- seed {seed}: {f['clicks']} clicks, {f['purchases']} purchases logged; strength "
                     f"{f['prior_strength']:g}; held-out {json.dumps(f['heldout_loglik_per_click'])}; "
                     f"corr {f['corr_with_true_appeal_x_stock']}")
    lines += ["", "Rules of each policy (RULES JSON):", ""]
    lines += [f"- {name}: `{json.dumps(rules)}`" for name, rules in summary["policies"].items()]
    lines += ["", f"value_weight {summary['value_weight']:g}: the largest of {', '.join(map(str, SWEEP))} whose mean "
              f"NDCG@10 loss on the tuning seeds {summary['config']['tune_seeds']} is <= {LOSS_BUDGET} "
              "(revenue lift, NDCG@10 loss there):", ""]
    lines += [f"- {k}: {100 * v['revenue_lift']:+.1f}%, {v['ndcg_loss']:.4f}" for k, v in summary["tuning"].items()]
    lines += ["", f"Run time {summary['seconds']} s.", ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["policies"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, metric, title in zip(axes, ("revenue_per_1000", "true_ndcg@10", "oos_share_shown"),
                                 ("revenue per 1,000 requests", "true NDCG@10", "out-of-stock share shown")):
        for x, name in enumerate(names):
            values = [summary["per_seed"][s][name][metric] for s in summary["per_seed"]]
            ax.bar(x, np.mean(values), color=f"C{x}", alpha=0.7)
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(names)), [n.replace("+", "\n+") for n in names], rotation=15, fontsize=8)
        ax.set_title(title)
    fig.suptitle("Relevance vs expected value vs expected value + rules (simulated shoppers; dots = seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
