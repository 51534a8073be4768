"""Online learning: feedback logs -> bias-corrected training pairs -> fine-tune from the serving
model -> ONNX/INT8 -> quality gate -> next ranker version -> live without dropping a request.

Safety of `update`: it continues from the serving version's own weights, replays a sample of
the original training data (REPLAY_RATIO replay pairs per log pair) so it does not forget,
drops log pairs of validation queries (the gate stays honest), rebuilds ONNX (checked against
PyTorch) and INT8 (gated against FP32), and publishes only if validation NDCG@10 of the new
INT8 engine is at most the gate's margin (shoprank.quality.gate) below the serving engine's on
the same validation set, both scored as served.
Going live: shoprank.online.activate. `rollback` retires the newest version the same way.
"""
from __future__ import annotations

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

from .. import config
from ..convert.int8 import quantize_int8
from ..convert.onnx_export import export_onnx
from ..data.load import load_pairs, resolve_data
from ..data.split import model_pairs, split_by_query
from ..errors import GateRefused
from ..model_card import model_max_length, read_model_card, write_model_card
from ..quality.gate import INT8_MAX_NDCG_DROP, MAX_NDCG_DROP, gate_engines
from ..serving.tokenizer import PairEncoder
from ..serving.triton.repository import ENGINE_FILE
from ..serving.triton.versions import publish_version, read_meta, retire_latest_version, versions
from ..training.batches import shuffled_batches
from ..training.finetune import adamw_with_warmup
from ..training.model import load_cross_encoder
from .activate import activate, base_probe
from .feedback import DEFAULT_DB, read_frames
from .propensities import estimate_propensities, log_pairs

REPLAY_RATIO = 0.5         # replayed original pairs per log pair
WEIGHT_DECAY = 0.01        # of an update's fine-tune (TrainConfig's default)
VARIANTS = ("ips", "naive")
ONLINE_DIR = config.ARTIFACTS_DIR / "online"


def replay_sample(model_dir: str | Path, count: int, seed: int = config.SEED) -> pd.DataFrame:
    """`count` pairs of the serving model's original training split (its card names the data)."""
    train = model_pairs(model_dir, "train")
    sample = train.sample(n=min(count, len(train)), random_state=seed) if count > 0 else train.iloc[:0]
    return pd.DataFrame({"query": sample["query"], "text": sample["text"], "label": sample["label"],
                         "weight": 1.0, "source": "replay"}).reset_index(drop=True)


def training_set(new_pairs: pd.DataFrame, model_dir: str | Path, replay_ratio: float = REPLAY_RATIO,
                 seed: int = config.SEED) -> pd.DataFrame:
    """Log pairs (validation queries dropped, weights scaled to mean 1) + replayed original pairs."""
    card_seed = read_model_card(model_dir).get("seed", config.SEED)
    train_side, _ = split_by_query(new_pairs, seed=card_seed)
    logs = train_side.copy()
    if len(logs):
        logs["weight"] = logs["weight"] / logs["weight"].mean()
    logs = logs.assign(source="log")[["query", "text", "label", "weight", "source"]]
    replay = replay_sample(model_dir, int(round(replay_ratio * len(logs))), seed)
    return pd.concat([logs, replay], ignore_index=True)


def weighted_finetune(base_model: str | Path, pairs: pd.DataFrame, out_dir: str | Path, steps: int = 100,
                      lr: float = 2e-5, batch_size: int = 32, warmup: float = 0.1, seed: int = config.SEED,
                      threads: int = 0, train_layers: int = 0, max_length: int | None = None) -> dict:
    """Continue training a cross-encoder with per-pair weights: sum(w * BCE(logit, label)) / sum(w).
    The same optimiser and schedule as shoprank.training.finetune; the card (data, seed, max_length) is kept,
    so validation and serving stay those of the base. train_layers > 0 trains only the top that
    many encoder layers and the head: a small update then cannot disturb what the lower layers
    know, and a step costs a fraction (no backward pass through the rest)."""
    import torch
    from transformers import AutoTokenizer

    started = time.time()
    base_model, out_dir = Path(base_model), Path(out_dir)
    if not len(pairs):
        raise ValueError("no training pairs")
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    model = load_cross_encoder(base_model)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(base_model), use_fast=True)
    encoder = PairEncoder(hf_tokenizer.backend_tokenizer, max_length=max_length or model_max_length(base_model),
                          buckets=None)
    trainable = _trainable(model, train_layers)
    optimizer, schedule = adamw_with_warmup(trainable, lr, WEIGHT_DECAY, warmup, steps)
    queries, texts = pairs["query"].tolist(), pairs["text"].tolist()
    labels = torch.from_numpy(pairs["label"].to_numpy(np.float32))
    weights = torch.from_numpy(pairs["weight"].to_numpy(np.float32))
    losses, step = [], 0
    model.train()
    while step < steps:
        for idx in shuffled_batches(len(pairs), batch_size, rng):
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
    write_model_card(out_dir, continued_from=str(base_model), **({"max_length": max_length} if max_length else {}))
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


@dataclass
class UpdateConfig:
    repo: str = str(config.MODEL_REPOSITORY)
    feedback_db: str = str(DEFAULT_DB)
    url: str | None = f"{config.HOST}:{config.GRPC_PORT}"  # gRPC of the running server; None: publish only
    admin_key: str | None = None  # that server's admin key (None: the one `make serve` wrote)
    variant: str = "ips"                  # ips | naive (the latter for comparison only)
    propensities: list | None = None      # fixed theta per position instead of estimating them
    margin: float = MAX_NDCG_DROP
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
    int8_max_drop: float = INT8_MAX_NDCG_DROP  # the new INT8 against its own FP32 (quality.gate)
    gate_data: str | None = None          # labelled file for the quality gate; None: the validation
                                          # split of the serving model's training data
    base_model: str = str(config.MODEL_DIR)  # weights of a version with no record of them
    work_dir: str | None = None
    min_pairs: int = 20
    seed: int = config.SEED
    threads: int = 0
    extra: dict = field(default_factory=dict)


def serving_model_dir(repo: str | Path, version: int, fallback: str | Path) -> Path:
    """The fine-tuned weights behind a ranker version (recorded by publish/build_repository)."""
    source = read_meta(repo, version).get("source_model")
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
    """One online update (see module doc). Returns a report; raises GateRefused when the
    candidate is worse than allowed (nothing published)."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {cfg.variant!r}")
    if cfg.engine not in ("int8", "fp32"):
        raise ValueError(f"engine must be int8 or fp32, got {cfg.engine!r}")
    started = time.time()
    repo = Path(cfg.repo)
    live = versions(repo)
    if not live:
        raise FileNotFoundError(f"{repo}: no ranker version; run `make repository` first")
    serving = live[-1]
    base = serving_model_dir(repo, serving, cfg.base_model)
    since = read_meta(repo, serving).get("logs_until")
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
    report.update(log_pairs=int((train["source"] == "log").sum()),
                  replay_pairs=int((train["source"] == "replay").sum()),
                  mean_log_label=float(pairs["label"].mean()), train_csv=str(work / "pairs.csv"))
    with _repo_lock(repo):
        report["finetune"] = weighted_finetune(base, train, work / "model", cfg.steps, cfg.lr, cfg.batch_size,
                                               seed=cfg.seed, threads=cfg.threads, train_layers=cfg.train_layers)
        engine = config.onnx_file("fp32", work)
        report["onnx"] = export_onnx(work / "model", engine)
        if cfg.engine == "int8":
            report["int8"] = quantize_int8(work / "model", engine, config.onnx_file("int8", work),
                                           max_ndcg_drop=cfg.int8_max_drop)
            engine = config.onnx_file("int8", work)
        served_engine = repo / config.RANKER_MODEL / str(serving) / ENGINE_FILE["python"]
        valid = model_pairs(base, "valid") if cfg.gate_data is None else load_pairs(resolve_data(cfg.gate_data))
        gate = gate_engines(base, served_engine, engine, "the updated ranker", cfg.margin, valid,
                            reference=f"serving version {serving}")
        gate["data"] = str(cfg.gate_data or "validation split of the training data")
        report["gate"] = gate
        if not gate["passed"]:
            report["seconds"] = round(time.time() - started, 1)
            (work / "report.json").write_text(json.dumps(report, indent=2, default=float))
            raise GateRefused(f"{gate['reason']}; version {serving} stays (report {work / 'report.json'})", gate)
        meta = {"logs_until": until, "variant": cfg.variant, "gate": gate, "finetune": report["finetune"],
                "engine_kind": cfg.engine, "propensities": report.get("propensities")}
        version = publish_version(repo, engine, work / "model", meta)
        report["published_version"] = version
        if cfg.url:
            report["activation"] = activate(cfg.url, version, base_probe(base), admin_key=cfg.admin_key)
    report["seconds"] = round(time.time() - started, 1)
    (work / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def rollback(repo: str | Path = config.MODEL_REPOSITORY, url: str | None = f"{config.HOST}:{config.GRPC_PORT}",
             base_model: str | Path = config.MODEL_DIR, admin_key: str | None = None) -> dict:
    """Retire the newest ranker version; the previous one goes live (same checks as update)."""
    repo = Path(repo)
    with _repo_lock(repo):
        retired, now = retire_latest_version(repo)
        report = {"retired": retired, "serving_version": now}
        if url:
            try:
                probe = base_probe(serving_model_dir(repo, now, base_model))
            except FileNotFoundError:
                probe = None
            report["activation"] = activate(url, now, probe, admin_key=admin_key)
    return report
