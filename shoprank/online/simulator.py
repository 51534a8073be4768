"""Simulated shoppers that prove the online-learning loop (`make simulate`, `make shoppers`).

The shop (world.py) starts small: its ranker is MiniLM fine-tuned on `start_pairs` labelled pairs
of the default data (`start_epochs` epochs), written with the default data's validation queries
to start-data.csv so that the update's quality gate and replay work exactly as in production
(the gate validates on the default data's validation split; replay draws from the pairs the
start model was trained on, so replay alone teaches it little that is new). `model_dir` (with
`engine`) starts from another model instead (the demo model, say).

Shoppers query the SERVED ensemble (a real tritonserver, RankClient with a FeedbackStore, the
exploration share shown in random order) and examine and click as world.py says; some clicks
become carts and purchases. Rounds: serve -> log -> shoprank.online.update.update
(bias-corrected or naive) -> the new version goes live in the running server -> measure.

Measured each round, through the served ensemble: NDCG@10 against the TRUE relevance on the
held-out evaluation queries that shoppers never send.
"""
from __future__ import annotations

import csv
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import config
from ..convert.onnx_export import export_onnx
from ..data import synthetic
from ..data.load import load_pairs, resolve_data
from ..data.split import split_by_query
from ..errors import BuildError
from ..quality import metrics
from ..quality.gate import MAX_NDCG_DROP
from ..serving.client import RankClient, scores_in_request_order
from ..serving.server import run_triton
from ..serving.triton.repository import build_repository
from ..training.finetune import TrainConfig, finetune
from .feedback import FeedbackStore, benchmark
from .update import UpdateConfig, update
from .world import SimQuery, build_world, examination, oracle_ndcg

DEFAULT_SEEDS = (7, 8, 9)       # one run per seed: single runs differ by more than the variants do


@dataclass
class SimConfig:
    model_dir: str | None = None   # start from this model (and --engine) instead of training one
    engine: str | None = None
    work_dir: str = str(config.ARTIFACTS_DIR / "online" / "sim")
    report_dir: str = str(config.REPORTS_DIR)
    variants: tuple = ("ips", "naive")
    start_pairs: int = 480         # labelled pairs the start model is fine-tuned on
    start_epochs: float = 2.0
    rounds: int = 3                # updates; NDCG is measured before the first and after each
    sessions: int = 400            # rank requests per round
    traffic_queries: int = 60      # head-heavy traffic: a query comes back several times a round
    eval_queries: int = 100
    candidates: int = 20
    top_k: int = 10                # products shown per page
    explore_share: float = 0.2
    eta: float = 1.0               # position bias exponent
    steps: int = 300               # fine-tuning steps per update
    batch_size: int = 16
    lr: float = 1e-4
    train_layers: int = 2          # top encoder layers (and head) an update trains
    replay_ratio: float = 0.5
    margin: float = MAX_NDCG_DROP
    update_engine: str = "fp32"    # fp32 keeps INT8's own (noisy, small-sample) gate out of the experiment
    seed: int = 7
    ports: tuple | None = None     # HTTP, gRPC, metrics of the simulator's own servers; None: free ports
    extra: dict = field(default_factory=dict)


def start_model(cfg: SimConfig, log=print) -> tuple[Path, Path]:
    """(model dir, FP32 ONNX) of the start model, built once per configuration and reused."""
    if cfg.model_dir:
        if not cfg.engine:
            raise ValueError("--model-dir needs --engine (the ONNX file to serve it with)")
        return Path(cfg.model_dir), Path(cfg.engine)
    folder = Path(cfg.work_dir) / f"start-{cfg.start_pairs}x{cfg.start_epochs:g}-seed{cfg.seed}"
    model, onnx = folder / "model", config.onnx_file("fp32", folder)
    if onnx.exists() and (model / "shoprank.json").exists():
        return model, onnx
    pairs = load_pairs(resolve_data("default"))
    train, valid = split_by_query(pairs)
    sample = train.sample(n=min(cfg.start_pairs, len(train)), random_state=cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    start_data = folder / "start-data.csv"
    with open(start_data, "w", newline="", encoding="utf-8") as f:  # the clicks mapping: query,text,click
        writer = csv.writer(f)
        writer.writerow(["query", "text", "click"])
        for frame in (sample, valid):
            writer.writerows(zip(frame["query"], frame["text"], frame["label"].astype(int)))
    log(f"start model: MiniLM fine-tuned on {len(sample)} labelled pairs x {cfg.start_epochs:g} epochs ...")
    finetune(TrainConfig(data=str(start_data), out_dir=str(model), epochs=cfg.start_epochs, batch_size=16,
                         lr=5e-5, evals_per_epoch=1, seed=config.SEED))  # the split of the default data
    export_onnx(model, onnx)
    return model, onnx


def true_ndcg(client, queries: list[SimQuery], k: int = 10) -> float:
    """Mean NDCG@k of the served ranking against the true relevance."""
    values = []
    for q in queries:
        served = scores_in_request_order(*client.infer_raw(q.query, q.texts, 0), len(q.texts))
        value = metrics.ndcg_at_k(served, q.relevance, k)
        if value is not None:
            values.append(value)
    return float(np.mean(values))


def run_sessions(client, traffic: list[SimQuery], cfg: SimConfig, round_no: int) -> dict:
    """One round of shoppers: rank -> show top_k -> examine -> click/cart/purchase."""
    rnd = random.Random(cfg.seed * 1000 + round_no)
    weights = [q.weight for q in traffic]
    clicks = shown = randomized = 0
    latencies = []
    for _ in range(cfg.sessions):
        q = rnd.choices(traffic, weights)[0]
        started = time.perf_counter()
        hits = client.rank(q.query, q.texts, cfg.top_k, user_id=f"sim-{rnd.getrandbits(32):08x}")
        latencies.append(time.perf_counter() - started)
        randomized += hits.randomized
        for position, hit in enumerate(hits):
            shown += 1
            examined = rnd.random() < examination(position, cfg.eta)
            if examined and rnd.random() < synthetic.click_probability(q.relevance[hit.index]):
                clicks += 1
                client.record_event(hits.request_id, position, "click")
                if rnd.random() < 0.3:
                    client.record_event(hits.request_id, position, "add_to_cart")
                    if rnd.random() < 0.5:
                        client.record_event(hits.request_id, position, "purchase")
    latencies.sort()
    return {"sessions": cfg.sessions, "randomized": randomized, "shown": shown, "clicks": clicks,
            "ctr": clicks / max(1, shown), "rank_ms_p50": 1e3 * latencies[len(latencies) // 2]}


def hook_overhead(url: str, traffic: list[SimQuery], db: Path, requests: int = 200, top_k: int = 10) -> dict:
    """Rank latency with and without the feedback hook, interleaved on the same server."""
    plain_ms, hooked_ms = [], []
    with FeedbackStore(db) as store, RankClient(url, "grpc") as plain, \
            RankClient(url, "grpc", feedback=store) as hooked:
        for i in range(requests):
            q = traffic[i % len(traffic)]
            pair = ((plain, plain_ms), (hooked, hooked_ms))
            for client, out in (pair if i % 2 else pair[::-1]):
                started = time.perf_counter()
                client.rank(q.query, q.texts, top_k)
                out.append(1e3 * (time.perf_counter() - started))
        store.flush()
        stats = store.stats()
    plain_ms.sort()
    hooked_ms.sort()
    return {"requests": requests, "rank_ms_p50_without": plain_ms[len(plain_ms) // 2],
            "rank_ms_p50_with": hooked_ms[len(hooked_ms) // 2],
            "rank_ms_p90_without": plain_ms[int(0.9 * len(plain_ms))],
            "rank_ms_p90_with": hooked_ms[int(0.9 * len(hooked_ms))],
            "written": stats["written"], "dropped": stats["dropped"], "errors": stats["errors"]}


def run_variant(cfg: SimConfig, variant: str, model_dir: Path, engine: Path, traffic, evaluation,
                log=print) -> list[dict]:
    """Own repository, own feedback store, own server; rounds of serve -> log -> update -> swap."""
    work = Path(cfg.work_dir) / variant
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repo = build_repository(model_dir, engine, work / "model_repository", target="python")
    rounds = []
    with run_triton(repo, work_dir=work, ports=cfg.ports) as server, \
            FeedbackStore(work / "feedback.sqlite") as store:
        endpoints = server.endpoints
        client = RankClient(endpoints.grpc, "grpc", feedback=store, explore_share=cfg.explore_share, seed=cfg.seed)
        if variant == cfg.variants[0]:
            overhead = hook_overhead(endpoints.grpc, traffic, work / "hook-overhead.sqlite")
            log(f"[{variant}] feedback hook: rank p50 {overhead['rank_ms_p50_with']:.2f} ms with, "
                f"{overhead['rank_ms_p50_without']:.2f} ms without")
            cfg.extra["hook_overhead"] = overhead
        for round_no in range(cfg.rounds + 1):
            row = {"variant": variant, "round": round_no, "version": client.ranker_version(),
                   "true_ndcg@10": true_ndcg(client, evaluation)}
            log(f"[{variant}] round {round_no}: ranker version {row['version']}, "
                f"true NDCG@10 {row['true_ndcg@10']:.4f}")
            if round_no == cfg.rounds:
                rounds.append(row)
                break
            row["traffic"] = run_sessions(client, traffic, cfg, round_no)
            store.flush()
            row["store"] = {k: v for k, v in store.stats().items() if k != "write_seconds"}
            ucfg = UpdateConfig(repo=str(repo), feedback_db=str(store.path), url=endpoints.grpc,
                                admin_key=server.admin_key,
                                variant=variant, margin=cfg.margin, steps=cfg.steps, lr=cfg.lr,
                                batch_size=cfg.batch_size, train_layers=cfg.train_layers,
                                replay_ratio=cfg.replay_ratio, engine=cfg.update_engine,
                                base_model=str(model_dir), work_dir=str(work / f"update-{round_no + 1}"),
                                seed=cfg.seed + round_no)
            try:
                report = update(ucfg)
                row["update"] = _summary(report)
                log(f"[{variant}]   update -> version {report['published_version']}: gate "
                    f"{report['gate']['ndcg_candidate']:.4f} vs {report['gate']['ndcg_reference']:.4f}, "
                    f"{report['log_pairs']} log + {report['replay_pairs']} replay pairs, {report['seconds']} s")
            # Refused (a gate) or nothing to learn from yet (too few pairs or exploration clicks):
            # the serving version stays either way.
            except (BuildError, ValueError) as exc:
                row["update"] = {"refused": f"{type(exc).__name__}: {exc}"}
                log(f"[{variant}]   update refused: {exc}")
            rounds.append(row)
        client.close()
    return rounds


def _summary(report: dict) -> dict:
    keep = ("published_version", "serving_version", "impressions", "events", "randomized_impressions",
            "log_pairs", "replay_pairs", "mean_log_label", "propensities", "seconds")
    out = {k: report[k] for k in keep if k in report}
    out["gate"] = {k: report["gate"][k] for k in ("ndcg_reference", "ndcg_candidate", "ndcg_drop", "passed")}
    out["finetune"] = report["finetune"]
    out["activation"] = report.get("activation")
    return out


def plot(per_seed: dict, path: Path, cfg: SimConfig, oracle: float) -> None:
    """Mean true NDCG@10 per round and variant (thick), each seed's run (thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = {"ips": "inverse-propensity corrected", "naive": "naive (clicks as labels)"}
    colors = {"ips": "tab:blue", "naive": "tab:orange"}
    for variant in cfg.variants:
        runs = [results[variant] for results in per_seed.values()]
        for rounds in runs:
            ax.plot([r["round"] for r in rounds], [r["true_ndcg@10"] for r in rounds], color=colors.get(variant),
                    alpha=0.3, linewidth=0.8)
            for r, after in zip(rounds, rounds[1:]):  # an update after round r decides round r + 1
                if "refused" in r.get("update", {}):
                    ax.plot(after["round"], after["true_ndcg@10"], "x", color=colors.get(variant), alpha=0.6)
        mean = np.mean([[r["true_ndcg@10"] for r in rounds] for rounds in runs], axis=0)
        ax.plot(range(len(mean)), mean, marker="o", linewidth=2, color=colors.get(variant),
                label=f"{labels.get(variant, variant)}, mean of {len(runs)} seed(s)")
    ax.plot([], [], "x", color="gray", label="after an update the gate refused")
    ax.axhline(oracle, color="gray", linestyle=":", label=f"perfect ranking ({oracle:.3f})")
    ax.set_xlabel("online update round (0 = start model)")
    ax.set_ylabel("true-relevance NDCG@10, held-out queries")
    ax.set_title(f"Online learning with simulated shoppers: {cfg.sessions} requests per round,\n"
                 f"position bias 1/(k+1)^{cfg.eta:g}; thin lines: single seeds", fontsize=9)
    ax.set_xticks(range(cfg.rounds + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def simulate_seed(cfg: SimConfig, log=print) -> tuple[dict, float]:
    """Both variants from one start model in one simulated world (cfg.seed); (results, oracle)."""
    traffic, evaluation = build_world(cfg)
    oracle = oracle_ndcg(evaluation)
    log(f"seed {cfg.seed}: {len(traffic)} traffic queries, {len(evaluation)} held-out evaluation queries, "
        f"{cfg.candidates} candidates each; perfect NDCG@10 {oracle:.4f}")
    model_dir, engine = start_model(cfg, log)
    results = {variant: run_variant(cfg, variant, model_dir, engine, traffic, evaluation, log)
               for variant in cfg.variants}
    return results, oracle


def simulate(cfg: SimConfig, seeds: tuple[int, ...] = (), log=print) -> dict:
    """Every seed (a new world, start model and shoppers each), then one report over all of them."""
    started = time.time()
    per_seed, oracles, hook_overhead = {}, [], {}
    for seed in seeds or (cfg.seed,):
        seed_cfg = replace(cfg, seed=seed, work_dir=str(Path(cfg.work_dir) / f"seed{seed}"), extra=cfg.extra)
        per_seed[seed], oracle = simulate_seed(seed_cfg, log)
        oracles.append(oracle)
        hook_overhead[f"seed{seed}"] = cfg.extra.get("hook_overhead")
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    write_cost = benchmark(Path(cfg.work_dir) / "write-bench.sqlite")
    curves = {seed: {v: [r["true_ndcg@10"] for r in rows] for v, rows in results.items()}
              for seed, results in per_seed.items()}
    mean = {v: np.mean([c[v] for c in curves.values()], axis=0).tolist() for v in cfg.variants}
    summary = {
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("extra", "seed")},
        "seeds": list(per_seed),
        "true_theta": [round(examination(k, cfg.eta), 4) for k in range(cfg.top_k)],
        "oracle_ndcg@10": float(np.mean(oracles)),
        "true_ndcg@10": {"mean": mean, **{f"seed{seed}": c for seed, c in curves.items()}},
        "refused_updates": {f"seed{seed}": {v: sum("refused" in r.get("update", {}) for r in rows)
                                            for v, rows in results.items()} for seed, results in per_seed.items()},
        "rounds": {f"seed{seed}": results for seed, results in per_seed.items()},
        "feedback_write_cost": write_cost,
        "feedback_hook_overhead": hook_overhead,  # per seed: rank p50/p90 with and without the hook
        "seconds": round(time.time() - started, 1),
    }
    report_dir = Path(cfg.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "online_learning.json").write_text(json.dumps(summary, indent=2, default=float))
    plot(per_seed, report_dir / "online_learning.png", cfg, float(np.mean(oracles)))
    return summary


def shoppers(cfg: SimConfig, url: str, feedback_db: str | Path, log=print) -> dict:
    """Simulated shoppers against an already running server (e.g. `make serve`), logging into a
    feedback store: traffic for `make update` to learn from. Measures true NDCG@10 before."""
    traffic, evaluation = build_world(cfg)
    with FeedbackStore(feedback_db) as store, RankClient(url, "grpc", feedback=store,
                                                         explore_share=cfg.explore_share) as client:
        before = true_ndcg(client, evaluation)
        out = run_sessions(client, traffic, cfg, int(time.time()))
        store.flush()
        out.update(version=client.ranker_version(), true_ndcg_at_10=before, feedback_db=str(feedback_db))
    log(json.dumps(out))
    return out
