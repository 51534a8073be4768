"""Fine-tune a cross-encoder: (query, product text) -> click logit, binary cross-entropy.

P(click | query, product) = sigmoid(W h_[CLS] + b), trained on soft labels in [0, 1]
(clicks, or graded relevance mapped by shoprank.data) with binary cross-entropy, or (loss="mse")
the squared error of the probability, the better fit for graded labels judged by RMSE (the
Home Depot recipe uses it). AdamW with linear warmup and decay;
the checkpoint with the best validation NDCG@10 (queries split, never rows) is kept.

Pairwise term (pairwise_weight=w > 0): batches hold whole queries (about batch_size rows), and
the loss adds w x a RankNet term: for each pair of one query's products with labels y_i > y_j,
(y_i - y_j) x log(1 + exp(s_j - s_i)), averaged with those weights. The pointwise loss keeps the
logits calibrated (RMSE, click probabilities); the pairwise term spends the model's capacity on the order within a
query, which is all NDCG sees.

Distillation (teacher=a fine-tuned model folder, keep_layers=k): the student starts from the
base model cut to k layers and learns (1 - w) x BCE on the labels + w x MSE to the teacher's
logits, computed once before training (w = distill_weight). teacher_head: the teacher's scoring
head is the teacher instead (its logits over the teacher's out-of-fold logits and the pair
features: what the head was trained on), so a cross-encoder alone may learn what the head adds.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..data.load import load_pairs, resolve_data
from ..data.split import fold_of, query_groups, split_by_query
from ..errors import DataError
from ..model_card import write_model_card
from ..quality import metrics
from ..serving.engine import row_lengths
from ..serving.tokenizer import PairEncoder
from .batches import query_batches, shuffled_batches
from .losses import pairwise_loss, pointwise_loss
from .model import (
    default_base_model,
    keep_heads,
    keep_intermediate,
    keep_layers,
    load_cross_encoder,
    predict_logits,
    predict_probs,
    use_activation,
)


@dataclass
class TrainConfig:
    data: str | None = None          # path, "default" (synthetic) or "shared" (Home Depot)
    mapping: str = "auto"
    base_model: str | None = None    # any local HF encoder folder; default: bundled MiniLM-L6
    out_dir: str = str(config.MODEL_DIR)
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = config.MAX_SEQ_LEN
    warmup: float = 0.1              # share of steps with rising learning rate
    weight_decay: float = 0.01
    evals_per_epoch: int = 2
    max_steps: int = 0               # 0: no cap (tests use a few steps)
    max_train_pairs: int = 0         # 0: all
    seed: int = config.SEED
    threads: int = 0                 # 0: all cores
    keep_layers: int = 0             # >0: cut the base model to this many layers (model.keep_layers)
    intermediate: int = 0            # >0: cut its feed-forward blocks to this many units (model.keep_intermediate)
    attention_heads: int = 0         # >0: cut its attention to this many heads a layer (model.keep_heads)
    activation: str = ""             # a feed-forward activation instead of the model's own (model.use_activation)
    teacher: str | None = None       # fine-tuned model folder whose logits the student also learns
    distill_weight: float = 0.5      # share of the loss on the teacher's logits (with teacher)
    teacher_head: bool = False       # the teacher's scoring head (MODEL/head) is the teacher
    group_by_length: bool = False    # batches of similar-length pairs: less padding, faster on CPU
    pairwise_weight: float = 0.0     # >0: batches of whole queries, + w x RankNet loss within each query
    loss: str = "bce"                # one of losses.LOSSES: "bce" on the soft labels, "mse" of the probability
    folds: int = 0                   # >0 with holdout_fold: train without one fold of the training
    holdout_fold: int = -1           # queries (data.split.fold_of), whose out-of-fold scores it gives
    extra: dict = field(default_factory=dict)


def adamw_with_warmup(named_parameters: list, lr: float, weight_decay: float, warmup: float, steps: int):
    """(AdamW, linear schedule): weight decay on all but biases and LayerNorm weights, the learning
    rate rising over the first `warmup` share of `steps`, then falling linearly to 0."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    no_decay = ("bias", "LayerNorm.weight", "layer_norm")
    groups = [
        {"params": [p for n, p in named_parameters if not any(k in n for k in no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named_parameters if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)


def finetune(cfg: TrainConfig) -> dict:
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    loss_fn = pointwise_loss(cfg.loss)  # an unknown loss fails before any data or weights load
    started = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    rng = np.random.default_rng(cfg.seed)

    data_path = resolve_data(cfg.data)
    pairs = load_pairs(data_path, cfg.mapping)
    train_df, valid_df = split_by_query(pairs, seed=cfg.seed)
    if train_df.empty or valid_df.empty:  # too few queries for both sides of the split
        raise DataError(f"{data_path}: {pairs['query'].nunique()} queries give {train_df['query'].nunique()} "
                        f"training and {valid_df['query'].nunique()} validation queries; fine-tuning needs both "
                        f"(about {config.VALID_FRACTION:.0%} of queries validate): add queries")
    if cfg.folds:
        if not 0 <= cfg.holdout_fold < cfg.folds:
            raise DataError(f"holdout_fold must be in 0..{cfg.folds - 1}, got {cfg.holdout_fold}")
        held = train_df["query"].map(lambda q: fold_of(q, cfg.folds, cfg.seed) == cfg.holdout_fold)
        train_df = train_df[~held.to_numpy(dtype=bool)].reset_index(drop=True)
    if cfg.max_train_pairs and len(train_df) > cfg.max_train_pairs:
        train_df = train_df.sample(n=cfg.max_train_pairs, random_state=cfg.seed).reset_index(drop=True)
    base = Path(cfg.base_model) if cfg.base_model else default_base_model()
    model = load_cross_encoder(base)
    kept = keep_layers(model, cfg.keep_layers) if cfg.keep_layers else None
    if cfg.intermediate:
        keep_intermediate(model, cfg.intermediate)
    if cfg.attention_heads:
        keep_heads(model, cfg.attention_heads)
    if cfg.activation:
        use_activation(model, cfg.activation)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(base), use_fast=True)
    # Training pads to the longest pair of each batch; serving pads to buckets. Padding is
    # masked, so both give the same logits.
    encoder = PairEncoder(hf_tokenizer.backend_tokenizer, max_length=cfg.max_length, buckets=None)

    query_rows, query_codes = None, None
    if cfg.pairwise_weight > 0:  # whole-query batches, and each row's query for the pairwise term
        query_rows = [idx for _, idx in query_groups(train_df)]
        query_codes = np.empty(len(train_df), np.int64)
        for code, idx in enumerate(query_rows):
            query_codes[idx] = code
    steps_per_epoch = (math.ceil(len(train_df) / cfg.batch_size) if query_rows is None else
                       sum(1 for _ in query_batches(query_rows, cfg.batch_size, np.random.default_rng(0))))
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    eval_every = max(1, steps_per_epoch // max(1, cfg.evals_per_epoch))
    optimizer, schedule = adamw_with_warmup(list(model.named_parameters()), cfg.lr, cfg.weight_decay,
                                            cfg.warmup, total_steps)

    out_dir = Path(cfg.out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    queries, texts = train_df["query"].tolist(), train_df["text"].tolist()
    labels = train_df["label"].to_numpy(np.float32)
    lengths = None
    if cfg.group_by_length:  # tokenized once, cheaply (the fast tokenizer, no tensors)
        lengths = np.concatenate([
            row_lengths(encoder.encode_pairs(queries[start:start + 1024], texts[start:start + 1024])["attention_mask"])
            for start in range(0, len(queries), 1024)])
    teacher_logits = (_head_teacher_logits(cfg.teacher, train_df) if cfg.teacher and cfg.teacher_head else
                      _teacher_logits(cfg.teacher, encoder, train_df) if cfg.teacher else None)
    pair_w = float(cfg.pairwise_weight)
    distill_w = float(cfg.distill_weight) if cfg.teacher else 0.0
    history, best, step = [], None, 0
    writer = _tensorboard(out_dir)

    def evaluate_and_keep():
        nonlocal best
        model.eval()
        scores = predict_probs(model, encoder, valid_df)
        result = metrics.evaluate(valid_df, scores)
        result.update(step=step, epoch=round(step / steps_per_epoch, 3), seconds=round(time.time() - started, 1))
        history.append(result)
        if writer:
            for key in ("ndcg@10", "mrr", "auc", "rmse_label"):
                if result.get(key) is not None:
                    writer.add_scalar(f"valid/{key}", result[key], step)
        tqdm.write(f"step {step}: valid NDCG@10 {result['ndcg@10']:.4f}  AUC {result.get('auc') or float('nan'):.4f}")
        if best is None or result["ndcg@10"] > best["ndcg@10"]:
            best = result
            model.save_pretrained(str(tmp_dir))
            hf_tokenizer.save_pretrained(str(tmp_dir))
        model.train()

    model.train()
    progress = tqdm(total=total_steps, desc="fine-tune", unit="step", mininterval=2.0)
    while step < total_steps:
        batches = (query_batches(query_rows, cfg.batch_size, rng) if query_rows is not None
                   else shuffled_batches(len(train_df), cfg.batch_size, rng, lengths))
        for idx in batches:
            batch = encoder.encode_pairs([queries[i] for i in idx], [texts[i] for i in idx])
            tensors = {k: torch.from_numpy(v).long() for k, v in batch.items()}
            logits = model(**tensors).logits.reshape(-1)
            loss = loss_fn(logits, torch.from_numpy(labels[idx]))
            if teacher_logits is not None:
                distill = torch.nn.functional.mse_loss(logits, torch.from_numpy(teacher_logits[idx]))
                loss = (1.0 - distill_w) * loss + distill_w * distill
            if query_codes is not None:
                loss = loss + pair_w * pairwise_loss(logits, torch.from_numpy(labels[idx]),
                                                     torch.from_numpy(query_codes[idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}")
            if writer:
                writer.add_scalar("train/loss", loss.item(), step)
            if step % eval_every == 0 or step == total_steps:
                evaluate_and_keep()
            if step >= total_steps:
                break
    progress.close()
    if writer:
        writer.close()

    summary = {
        "best": best, "history": history, "train_seconds": round(time.time() - started, 1),
        "train_pairs": len(train_df), "valid_pairs": len(valid_df),
        "train_queries": int(train_df["query"].nunique()), "valid_queries": int(valid_df["query"].nunique()),
        "data": str(data_path), "base_model": str(base), "config": asdict(cfg),
    }
    (tmp_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_dir.rename(out_dir)
    write_model_card(out_dir, max_length=cfg.max_length, data=str(data_path), mapping=cfg.mapping,
                     seed=cfg.seed, base_model=str(base),
                     **({"layers_kept": kept} if kept else {}),
                     **({"folds": cfg.folds, "holdout_fold": cfg.holdout_fold} if cfg.folds else {}),
                     **({"teacher": str(cfg.teacher), "distill_weight": distill_w,
                         "teacher_head": cfg.teacher_head} if cfg.teacher else {}))
    return summary


def _head_teacher_logits(teacher_dir: str, df) -> np.ndarray:
    """The teacher's scoring head over its out-of-fold logits of every training row."""
    from ..features.index import LexicalIndex
    from ..serving.head import ScoringHead, head_dir
    from .head_build import frame_features
    from .oof import out_of_fold_logits

    folder = head_dir(teacher_dir)
    head = ScoringHead.load(folder)
    oof = out_of_fold_logits(teacher_dir, df, int(head.meta.get("folds", 2)))
    return head.logits(oof, frame_features(LexicalIndex.load(folder), df))


def _teacher_logits(teacher_dir: str, encoder: PairEncoder, df) -> np.ndarray:
    """The teacher's logits for every training row (it must share the student's tokenizer)."""
    return predict_logits(load_cross_encoder(teacher_dir).eval(), encoder, df)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional for training itself
        return None
    return SummaryWriter(str(out_dir.with_name(out_dir.name + ".runs")))
