"""Online learning: feedback logs -> bias-corrected training pairs -> fine-tune from the serving
model -> ONNX/INT8 -> quality gate -> next ranker version -> live without dropping a request.

Position bias. Shoppers click what they see, and they see the top of the page most. We use
the examination model P(click at position k) = theta_k * P(click | examined):

  * Propensities theta_k come from the exploration traffic, a small share of requests shown
    in a random order (RankClient(explore_share=...), `randomized` = 1 in the store). Under a
    random order every position holds the same mix of products, so the click rate at position k
    is c * theta_k. We fit theta_k = (k + 1) ** -eta (theta_0 = 1) by maximum likelihood over
    the clicks per position (one parameter: stable with a few hundred randomized pages, where
    per-position rates are noise), floored at PROPENSITY_FLOOR.
  * Inverse-propensity labels: a (query, product) pair with clicks C over impressions at
    positions k_i is labelled C / E with E = sum(theta_k_i), its expected number of examinations
    -- each click counts 1 / theta_k impressions, the self-normalised inverse-propensity
    ("clicks over expected clicks") estimate of P(click | examined) -- and trained with weight E:
    weighted BCE then is C * log-loss(positive) + (E - C) * log-loss(negative), so an unclicked
    impression counts as negative evidence only as far as it was likely seen (theta_k), and a
    click counts fully wherever it was. When C > E (lucky clicks low on the page), label 1 and
    weight C: bounded, never a negative weight. Its expectation is P(click | examined), the
    quantity the model was first trained on (clicks under random order).
  * The naive variant sets every theta to 1: label = clicks / impressions, weight = impressions.
    It learns theta_k * relevance, so whatever the model already shows high looks relevant and
    whatever it shows low looks irrelevant -- it learns to repeat its own ranking.

Any event (click, add_to_cart, purchase) at a shown position makes it a positive.

Safety of `update`: it continues from the serving version's own weights, replays a sample of
the original training data (REPLAY_RATIO replay pairs per log pair) so it does not forget,
drops log pairs of validation queries (the gate stays honest), rebuilds ONNX (checked against
PyTorch) and INT8 (gated against FP32), and publishes only if validation NDCG@10 of the new
INT8 engine is at most GATE_MARGIN below the serving engine's on the same validation set.
Going live is Triton's explicit model control (see shoprank.server): load the ranker, wait
until the new version is READY and the old one gone, then prove the ensemble routes to the new
version (its per-version inference count rises on a probe request); if not, the ensemble itself
is reloaded. `rollback` retires the newest version the same way.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, data, repository
from .feedback import DEFAULT_DB, read_frames

GATE_MARGIN = 0.005        # max validation NDCG@10 a new version may lose against the serving one
PROPENSITY_FLOOR = 0.05    # smallest examination propensity: bounds how little a low impression counts
MIN_RANDOMIZED_CLICKS = 20  # fewer clicks on randomized traffic: propensities are not estimated
REPLAY_RATIO = 0.5         # replayed original pairs per log pair
VARIANTS = ("ips", "naive")
ONLINE_DIR = config.ARTIFACTS_DIR / "online"


class GateFailed(RuntimeError):
    """The candidate lost more validation NDCG@10 than allowed; nothing was published."""


# --- position bias ---------------------------------------------------------------------------------
def _clicked(shown: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """shown rows with `clicked` (any event at that position of that request)."""
    hits = events[["request_id", "position"]].drop_duplicates().assign(clicked=1)
    out = shown.merge(hits, on=["request_id", "position"], how="left")
    out["clicked"] = out["clicked"].fillna(0).astype(np.int64)
    return out


def position_ctr(impressions: pd.DataFrame, shown: pd.DataFrame, events: pd.DataFrame,
                 randomized: bool | None = True) -> pd.DataFrame:
    """Per shown position: impressions, clicks, ctr (of randomized traffic only by default)."""
    if randomized is not None:
        keep = impressions.loc[impressions["randomized"] == int(randomized), "request_id"]
        shown = shown[shown["request_id"].isin(keep)]
    table = _clicked(shown, events).groupby("position")["clicked"].agg(["count", "sum"])
    table = table.rename(columns={"count": "impressions", "sum": "clicks"})
    table["ctr"] = table["clicks"] / table["impressions"]
    return table.reset_index()


def estimate_propensities(impressions, shown, events, floor: float = PROPENSITY_FLOOR,
                          min_clicks: int = MIN_RANDOMIZED_CLICKS) -> np.ndarray:
    """theta[k] = (k + 1) ** -eta for k = 0..max shown position, eta by maximum likelihood on the
    randomized impressions (see module doc)."""
    table = position_ctr(impressions, shown, events, randomized=True)
    clicks = int(table["clicks"].sum()) if len(table) else 0
    if clicks < min_clicks:
        raise ValueError(f"not enough exploration traffic to estimate position bias: {clicks} clicks on "
                         f"randomized impressions (need >= {min_clicks}); raise the client's explore_share, "
                         "wait for more traffic, or pass fixed propensities")
    eta = fit_power_law(table["position"].to_numpy(), table["impressions"].to_numpy(), table["clicks"].to_numpy())
    positions = np.arange(int(table["position"].max()) + 1)
    return np.clip((positions + 1.0) ** -eta, floor, 1.0)


def fit_power_law(positions, impressions, clicks, etas=np.linspace(0.0, 3.0, 601)) -> float:
    """eta maximising sum_k clicks_k log p_k + (n_k - clicks_k) log(1 - p_k), p_k = c (k+1)^-eta,
    with c at its maximum-likelihood value for each eta (a grid: one parameter, no optimiser)."""
    k, n, c = (np.asarray(a, dtype=np.float64) for a in (positions, impressions, clicks))
    best, best_ll = 0.0, -np.inf
    for eta in etas:
        shape = (k + 1.0) ** -eta
        scale = min(c.sum() / max((n * shape).sum(), 1e-12), 1.0 / shape.max() - 1e-9)
        p = np.clip(scale * shape, 1e-12, 1 - 1e-12)
        ll = float((c * np.log(p) + (n - c) * np.log1p(-p)).sum())
        if ll > best_ll:
            best, best_ll = float(eta), ll
    return best


# --- training pairs from logs ---------------------------------------------------------------------
def log_pairs(impressions: pd.DataFrame, shown: pd.DataFrame, events: pd.DataFrame,
              propensities: np.ndarray | None = None, floor: float = PROPENSITY_FLOOR) -> pd.DataFrame:
    """One row per (query, product text): label, weight, impressions, clicks, examinations.

    propensities None: naive (every theta 1). Otherwise label = clicks / max(E, clicks) and
    weight = max(E, clicks), E = the sum of theta over the pair's impressions (module doc);
    positions beyond the estimated curve use its last value."""
    rows = _clicked(shown, events).merge(impressions[["request_id", "query"]], on="request_id")
    if propensities is None:
        rows["theta"] = 1.0
    else:
        theta = np.maximum(np.asarray(propensities, dtype=np.float64), floor)
        rows["theta"] = theta[np.minimum(rows["position"].to_numpy(), len(theta) - 1)]
    pairs = rows.groupby(["query", "text"], sort=False).agg(
        impressions=("clicked", "size"), clicks=("clicked", "sum"), examinations=("theta", "sum")).reset_index()
    weight = np.maximum(pairs["examinations"].to_numpy(), pairs["clicks"].to_numpy())
    pairs["label"] = (pairs["clicks"].to_numpy() / weight).astype(np.float32)
    pairs["weight"] = weight
    return pairs


def replay_sample(model_dir: str | Path, count: int, seed: int = config.SEED) -> pd.DataFrame:
    """`count` pairs of the serving model's original training split (its card names the data)."""
    from .modeling import read_model_card

    card = read_model_card(model_dir)
    pairs = data.load_pairs(data.resolve_data(card.get("data")), card.get("mapping", "auto"))
    train, _ = data.split_by_query(pairs, seed=card.get("seed", config.SEED))
    sample = train.sample(n=min(count, len(train)), random_state=seed) if count > 0 else train.iloc[:0]
    return pd.DataFrame({"query": sample["query"], "text": sample["text"], "label": sample["label"],
                         "weight": 1.0, "source": "replay"}).reset_index(drop=True)


def training_set(new_pairs: pd.DataFrame, model_dir: str | Path, replay_ratio: float = REPLAY_RATIO,
                 seed: int = config.SEED) -> pd.DataFrame:
    """Log pairs (validation queries dropped, weights scaled to mean 1) + replayed original pairs."""
    from .modeling import read_model_card

    card_seed = read_model_card(model_dir).get("seed", config.SEED)
    train_side, _ = data.split_by_query(new_pairs, seed=card_seed)
    logs = train_side.copy()
    if len(logs):
        logs["weight"] = logs["weight"] / logs["weight"].mean()
    logs = logs.assign(source="log")[["query", "text", "label", "weight", "source"]]
    replay = replay_sample(model_dir, int(round(replay_ratio * len(logs))), seed)
    return pd.concat([logs, replay], ignore_index=True)


# --- weighted fine-tune -------------------------------------------------------------------------------
def weighted_finetune(base_model: str | Path, pairs: pd.DataFrame, out_dir: str | Path, steps: int = 100,
                      lr: float = 2e-5, batch_size: int = 32, warmup: float = 0.1, seed: int = config.SEED,
                      threads: int = 0, train_layers: int = 0) -> dict:
    """Continue training a cross-encoder with per-pair weights: sum(w * BCE(logit, label)) / sum(w).
    The same optimiser and schedule as shoprank.train; the card (data, seed, max_length) is kept,
    so validation and serving stay those of the base. train_layers > 0 trains only the top that
    many encoder layers and the head: a small update then cannot disturb what the lower layers
    know, and a step costs a fraction (no backward pass through the rest)."""
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from .modeling import load_cross_encoder, model_max_length, read_model_card, write_model_card
    from .tokenize import PairEncoder
    from .train import _batches

    started = time.time()
    base_model, out_dir = Path(base_model), Path(out_dir)
    if not len(pairs):
        raise ValueError("no training pairs")
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    model = load_cross_encoder(base_model)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(base_model), use_fast=True)
    encoder = PairEncoder(hf_tokenizer.backend_tokenizer, max_length=model_max_length(base_model), buckets=None)
    trainable = _trainable(model, train_layers)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm")
    groups = [
        {"params": [p for n, p in trainable if not any(k in n for k in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in trainable if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    schedule = get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)
    queries, texts = pairs["query"].tolist(), pairs["text"].tolist()
    labels = torch.from_numpy(pairs["label"].to_numpy(np.float32))
    weights = torch.from_numpy(pairs["weight"].to_numpy(np.float32))
    losses, step = [], 0
    model.train()
    while step < steps:
        for idx in _batches(len(pairs), batch_size, rng):
            batch = encoder.encode_pairs([queries[i] for i in idx], [texts[i] for i in idx])
            logits = model(**{k: torch.from_numpy(v).long() for k, v in batch.items()}).logits.reshape(-1)
            per_pair = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[idx], reduction="none")
            w = weights[idx]
            loss = (per_pair * w).sum() / w.sum().clamp_min(1e-8)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if step >= steps:
                break
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    hf_tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    card = read_model_card(base_model)
    write_model_card(out_dir, **card)
    write_model_card(out_dir, continued_from=str(base_model))
    return {"steps": step, "pairs": len(pairs), "loss_first": losses[0], "loss_last": float(np.mean(losses[-10:])),
            "trained_parameters": sum(p.numel() for _, p in trainable), "seconds": round(time.time() - started, 1)}


def _trainable(model, train_layers: int) -> list:
    """(name, parameter) pairs to train; the others get requires_grad False."""
    params = list(model.named_parameters())
    if train_layers <= 0:
        return params
    layers = sorted({int(n.split(".layer.")[1].split(".")[0]) for n, _ in params if ".layer." in n})
    if not layers:
        raise ValueError("train_layers needs a BERT-style encoder (parameters named *.layer.<i>.*)")
    top = set(layers[-train_layers:])
    keep = []
    for name, p in params:
        in_encoder = ".embeddings." in name or ".layer." in name
        train = not in_encoder or (".layer." in name and int(name.split(".layer.")[1].split(".")[0]) in top)
        p.requires_grad_(train)
        if train:
            keep.append((name, p))
    return keep


# --- the quality gate ------------------------------------------------------------------------------
def quality_gate(model_dir: str | Path, serving_engine: str | Path, candidate_engine: str | Path,
                 margin: float = GATE_MARGIN, gate_data: str | Path | None = None) -> dict:
    """Validation NDCG@10 of the candidate vs the serving engine on the same pairs; passed when
    the candidate loses at most `margin`."""
    from .build_steps import validation_pairs
    from .engine import OrtEngine, sigmoid
    from .metrics import evaluate
    from .modeling import model_max_length
    from .tokenize import PairEncoder

    valid = validation_pairs(model_dir) if gate_data is None else data.load_pairs(gate_data)
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
    queries, texts = valid["query"].tolist(), valid["text"].tolist()
    ref = evaluate(valid, sigmoid(OrtEngine(serving_engine).score_pairs(encoder, queries, texts)))["ndcg@10"]
    cand = evaluate(valid, sigmoid(OrtEngine(candidate_engine).score_pairs(encoder, queries, texts)))["ndcg@10"]
    return {"data": str(gate_data or "validation split of the training data"), "pairs": len(valid),
            "queries": int(valid["query"].nunique()), "ndcg_reference": ref, "ndcg_candidate": cand,
            "ndcg_drop": ref - cand, "margin": margin, "passed": bool(ref - cand <= margin)}


# --- the update --------------------------------------------------------------------------------------
@dataclass
class UpdateConfig:
    repo: str = str(config.MODEL_REPOSITORY)
    feedback_db: str = str(DEFAULT_DB)
    url: str | None = f"{config.HOST}:{config.GRPC_PORT}"  # gRPC of the running server; None: publish only
    variant: str = "ips"                  # ips | naive (the latter for comparison only)
    propensities: list | None = None      # fixed theta per position instead of estimating them
    margin: float = GATE_MARGIN
    # Top-2-layer updates: cheap on CPU and they cannot disturb what the lower layers learnt.
    # Gentle by default: on the demo deployment (a model already at true NDCG@10 0.96 in the
    # simulated world) 300 steps at 1e-4 were refused by the gate twice (drops 0.006, 0.010),
    # 100 steps at 2e-5 passed. `make simulate` starts from a weak model and uses 300 at 1e-4.
    steps: int = 100
    lr: float = 2e-5
    batch_size: int = 16
    train_layers: int = 2                 # > 0: train only the top encoder layers and the head; 0: all
    replay_ratio: float = REPLAY_RATIO
    engine: str = "int8"                  # int8 | fp32: which ONNX the new version serves
    int8_max_drop: float | None = None    # INT8-vs-FP32 gate; None: shoprank.build_steps' default
    gate_data: str | None = None          # labelled file for the quality gate; None: the validation
                                          # split of the serving model's training data
    base_model: str = str(config.ARTIFACTS_DIR / "model")  # weights of a version with no record of them
    work_dir: str | None = None
    min_pairs: int = 20
    seed: int = config.SEED
    threads: int = 0
    extra: dict = field(default_factory=dict)


def serving_model_dir(repo: str | Path, version: int, fallback: str | Path) -> Path:
    """The fine-tuned weights behind a ranker version (recorded by publish/build_repository)."""
    source = repository.read_meta(repo, version).get("source_model")
    for candidate in (source, fallback):
        if candidate and (Path(candidate) / "config.json").exists():
            return Path(candidate)
    raise FileNotFoundError(f"no weights known for ranker version {version} (looked at {source}, {fallback}); "
                            "pass --base-model")


@contextmanager
def _repo_lock(repo: Path):
    """One update or rollback at a time per repository."""
    path = Path(repo) / config.RANKER_MODEL / ".online.lock"
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} not found: run `make repository` first")
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another update or rollback holds {path}") from None
        yield


def update(cfg: UpdateConfig) -> dict:
    """One online update (see module doc). Returns a report; raises GateFailed when the
    candidate is worse than allowed (nothing published)."""
    from .build_steps import export_onnx, quantize_int8

    if cfg.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {cfg.variant!r}")
    if cfg.engine not in ("int8", "fp32"):
        raise ValueError(f"engine must be int8 or fp32, got {cfg.engine!r}")
    started = time.time()
    repo = Path(cfg.repo)
    live = repository.versions(repo)
    if not live:
        raise FileNotFoundError(f"{repo}: no ranker version; run `make repository` first")
    serving = live[-1]
    base = serving_model_dir(repo, serving, cfg.base_model)
    since = repository.read_meta(repo, serving).get("logs_until")
    until = time.time()
    if not Path(cfg.feedback_db).exists():
        raise FileNotFoundError(f"no feedback store at {cfg.feedback_db}")
    imps_all, shown_all, events_all = read_frames(cfg.feedback_db, None, until)
    new = imps_all["ts"] >= since if since is not None else np.ones(len(imps_all), bool)
    new_ids = set(imps_all.loc[new, "request_id"])
    imps = imps_all[imps_all["request_id"].isin(new_ids)]
    shown = shown_all[shown_all["request_id"].isin(new_ids)]
    events = events_all[events_all["request_id"].isin(new_ids)]
    report = {"variant": cfg.variant, "serving_version": serving, "base_model": str(base), "logs_since": since,
              "logs_until": until, "impressions": len(imps), "events": len(events),
              "randomized_impressions": int(imps["randomized"].sum()) if len(imps) else 0}
    if cfg.variant == "ips":
        theta = (np.asarray(cfg.propensities, dtype=np.float64) if cfg.propensities is not None
                 else estimate_propensities(imps_all, shown_all, events_all))  # all exploration traffic
        report["propensities"] = [round(float(t), 4) for t in theta]
    else:
        theta = None
    pairs = log_pairs(imps, shown, events, theta)
    if len(pairs) < cfg.min_pairs:
        raise ValueError(f"only {len(pairs)} (query, product) pairs in the logs since version {serving} "
                         f"(need >= {cfg.min_pairs}): nothing to learn from yet")
    work = Path(cfg.work_dir or tempfile.mkdtemp(prefix="shoprank-update-"))
    work.mkdir(parents=True, exist_ok=True)
    train = training_set(pairs, base, cfg.replay_ratio, cfg.seed)
    train.to_csv(work / "pairs.csv", index=False)  # the exact training data of this update
    report.update(log_pairs=int((train["source"] == "log").sum()), replay_pairs=int((train["source"] == "replay").sum()),
                  mean_log_label=float(pairs["label"].mean()), train_csv=str(work / "pairs.csv"))
    with _repo_lock(repo):
        report["finetune"] = weighted_finetune(base, train, work / "model", cfg.steps, cfg.lr, cfg.batch_size,
                                               seed=cfg.seed, threads=cfg.threads, train_layers=cfg.train_layers)
        report["onnx"] = export_onnx(work / "model", work / "model.fp32.onnx")
        engine = work / "model.fp32.onnx"
        if cfg.engine == "int8":
            kwargs = {} if cfg.int8_max_drop is None else {"max_ndcg_drop": cfg.int8_max_drop}
            report["int8"] = quantize_int8(work / "model", engine, work / "model.int8.onnx", **kwargs)
            engine = work / "model.int8.onnx"
        served_engine = repo / config.RANKER_MODEL / str(serving) / repository.ENGINE_FILE["python"]
        gate = quality_gate(base, served_engine, engine, cfg.margin, cfg.gate_data)
        report["gate"] = gate
        if not gate["passed"]:
            report["seconds"] = round(time.time() - started, 1)
            (work / "report.json").write_text(json.dumps(report, indent=2, default=float))
            raise GateFailed(f"validation NDCG@10 {gate['ndcg_candidate']:.4f} vs serving {gate['ndcg_reference']:.4f}: "
                             f"drop {gate['ndcg_drop']:.4f} > margin {cfg.margin}; version {serving} stays "
                             f"(report {work / 'report.json'})")
        meta = {"logs_until": until, "variant": cfg.variant, "gate": gate, "finetune": report["finetune"],
                "engine_kind": cfg.engine, "propensities": report.get("propensities")}
        version = repository.publish_version(repo, engine, work / "model", meta)
        report["published_version"] = version
        if cfg.url:
            report["activation"] = activate(cfg.url, version, base_probe(base))
    report["seconds"] = round(time.time() - started, 1)
    (work / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def rollback(repo: str | Path = config.MODEL_REPOSITORY, url: str | None = f"{config.HOST}:{config.GRPC_PORT}",
             base_model: str | Path = config.ARTIFACTS_DIR / "model") -> dict:
    """Retire the newest ranker version; the previous one goes live (same checks as update)."""
    repo = Path(repo)
    with _repo_lock(repo):
        retired, now = repository.retire_latest_version(repo)
        report = {"retired": retired, "serving_version": now}
        if url:
            try:
                probe = base_probe(serving_model_dir(repo, now, base_model))
            except FileNotFoundError:
                probe = None
            report["activation"] = activate(url, now, probe)
    return report


# --- going live -------------------------------------------------------------------------------------
def base_probe(model_dir: str | Path, groups: int = 2) -> list[tuple[str, list[str]]]:
    """A few validation queries with their products: requests that prove which version serves."""
    from .build_steps import validation_pairs

    valid = validation_pairs(model_dir, limit=60)
    texts = valid["text"].to_numpy()
    return [(q, texts[idx].tolist()) for q, idx in data.query_groups(valid) if len(idx) >= 2][:groups]


def _ranker_states(client) -> dict[int, str]:
    index = client.get_model_repository_index(as_json=True).get("models", [])
    return {int(m["version"]): m.get("state", "") for m in index
            if m.get("name") == config.RANKER_MODEL and str(m.get("version", "")).isdigit()}


def _version_count(client, version: int) -> int:
    stats = client.get_inference_statistics(config.RANKER_MODEL, str(version), as_json=True)["model_stats"]
    return int(stats[0]["inference_stats"]["success"].get("count", 0)) if stats else 0


def activate(url: str, version: int, probe=None, timeout_s: float = 120.0) -> dict:
    """Make the server serve ranker `version` (the newest in the repository) and prove it.

    Explicit model control: load the ranker (Triton loads the new version, reloads the ensemble
    that depends on it, and unloads the old version after its in-flight requests). Then wait
    until `version` is the only READY one and check that a probe request through the ensemble
    is executed by `version`; if it is not, reload the ensemble too."""
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    from .client import RankClient

    started = time.time()
    client = grpc.InferenceServerClient(url)
    try:
        try:
            live = client.is_server_live()
        except InferenceServerException:
            live = False
        if not live:
            return {"live": False, "note": f"no server at {url}: version {version} serves from its next start"}
        try:
            client.load_model(config.RANKER_MODEL)
        except InferenceServerException as exc:
            raise RuntimeError(f"the server at {url} refused to load {config.RANKER_MODEL} ({exc.message()}); "
                               "it must run with --model-control-mode=explicit (shoprank.server's default): "
                               f"restart it (`make stop serve`) and it serves version {version}") from None
        deadline = time.time() + timeout_s
        while True:
            states = _ranker_states(client)
            ready = sorted(v for v, s in states.items() if s == "READY")
            if ready == [version]:
                break
            if time.time() > deadline:
                raise TimeoutError(f"ranker versions READY after {timeout_s:.0f} s: {ready}, expected [{version}]")
            time.sleep(0.2)
        checks = {"live": True, "ranker_ready": ready, "ensemble_reloaded": False}
        if probe:
            with RankClient(url, "grpc") as rank:
                for attempt in range(2):
                    before = _version_count(client, version)
                    for query, texts in probe:
                        rank.infer_raw(query, texts, 0)
                    routed = _version_count(client, version) - before
                    if routed >= len(probe):
                        break
                    # The ensemble still routes elsewhere: reload it (not needed on Triton 2.51).
                    client.load_model(config.ENSEMBLE_MODEL)
                    checks["ensemble_reloaded"] = True
                else:
                    raise RuntimeError(f"the ensemble does not route to ranker version {version} after reloading it")
            checks["probe_requests_on_new_version"] = routed
        checks["seconds"] = round(time.time() - started, 2)
        return checks
    finally:
        client.close()


def main_update(argv=None) -> None:
    defaults = UpdateConfig()
    parser = argparse.ArgumentParser(description="Online update: logs -> fine-tune -> gate -> next ranker version")
    parser.add_argument("--repo", default=defaults.repo)
    parser.add_argument("--feedback-db", default=defaults.feedback_db)
    parser.add_argument("--url", default=defaults.url, help="gRPC host:port of the running server; '' = publish only")
    parser.add_argument("--variant", default=defaults.variant, choices=VARIANTS)
    parser.add_argument("--propensities", default=None, help="comma-separated fixed theta per position")
    parser.add_argument("--margin", type=float, default=defaults.margin)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--train-layers", type=int, default=defaults.train_layers,
                        help="train only the top N encoder layers and the head (0 = all)")
    parser.add_argument("--replay-ratio", type=float, default=defaults.replay_ratio)
    parser.add_argument("--engine", default=defaults.engine, choices=["int8", "fp32"])
    parser.add_argument("--base-model", default=defaults.base_model)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--gate-data", default=None, help="labelled file for the quality gate "
                        "(default: the validation split of the serving model's training data)")
    parser.add_argument("--retention-days", type=float, default=None, help="purge older feedback first")
    args = parser.parse_args(argv)
    cfg = UpdateConfig(repo=args.repo, feedback_db=args.feedback_db, url=args.url or None, variant=args.variant,
                       propensities=[float(x) for x in args.propensities.split(",")] if args.propensities else None,
                       margin=args.margin, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                       train_layers=args.train_layers,
                       replay_ratio=args.replay_ratio, engine=args.engine, base_model=args.base_model,
                       gate_data=args.gate_data,
                       work_dir=args.work_dir or str(ONLINE_DIR / "updates" / time.strftime("%Y%m%d-%H%M%S")))
    if args.retention_days is not None:
        from .feedback import purge

        print("retention:", json.dumps(purge(cfg.feedback_db, args.retention_days)))
    from .build_steps import BuildError

    try:
        report = update(cfg)
    except (GateFailed, BuildError) as exc:
        print(f"update REFUSED, nothing published, the serving version stays: {exc}")
        raise SystemExit(2)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # nothing to learn from, no repository, ...
        print(f"no update: {exc}")
        raise SystemExit(1)
    gate = report["gate"]
    print(f"version {report['published_version']} published (from {report['serving_version']}): "
          f"{report['log_pairs']} log pairs + {report['replay_pairs']} replayed, {report['finetune']['steps']} steps; "
          f"validation NDCG@10 {gate['ndcg_candidate']:.4f} vs {gate['ndcg_reference']:.4f} (margin {cfg.margin})")
    activation = report.get("activation") or {"live": False, "note": "not loaded (no --url): it serves from the "
                                                                      "server's next start"}
    print(("live: " if activation["live"] else "NOT live: ") + json.dumps(activation))
    print(f"report: {cfg.work_dir}/report.json")


def main_rollback(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Return to the previous ranker version")
    parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY))
    parser.add_argument("--url", default=f"{config.HOST}:{config.GRPC_PORT}", help="gRPC host:port; '' = files only")
    parser.add_argument("--base-model", default=str(config.ARTIFACTS_DIR / "model"))
    args = parser.parse_args(argv)
    try:
        report = rollback(args.repo, args.url or None, args.base_model)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:  # nothing to roll back to, another update running
        print(f"no rollback: {exc}")
        raise SystemExit(1)
    activation = report.get("activation") or {"live": False, "note": "files only (no --url)"}
    print(f"rolled back: version {report['retired']} retired, version {report['serving_version']} serves "
          + ("now: " if activation["live"] else "from the server's next start: ") + json.dumps(activation))
