"""Training the scoring head (shoprank.serving.head) on out-of-fold cross-encoder logits.

The head must never learn from logits of pairs the cross-encoder trained on: those are
over-confident, and a head fit on them learns to trust the logit more than it deserves. So the
training queries are cut into folds (data.split.fold_of); a cross-encoder trained without fold k
scores fold k, and the head trains on those out-of-fold logits plus the pair features. At serving
time it reads the full cross-encoder's logits (trained on every fold).

The architecture (linear, or an MLP with one or two small hidden layers) is chosen on a held-out
share of the training queries, never on the validation split, then refit on all training rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..data.split import fold_of
from ..quality import metrics
from ..serving.head import ScoringHead

ARCHITECTURES: dict[str, tuple[int, ...]] = {"linear": (), "mlp16": (16,), "mlp32x16": (32, 16)}
INNER_FRACTION = 0.2   # share of training queries held out to choose the architecture


@dataclass(frozen=True)
class HeadFit:
    epochs: int = 300          # full-batch steps (the data is small: one step sees every row)
    lr: float = 0.02
    weight_decay: float = 1e-4
    loss: str = "mse"          # "mse" of the probability against the label (as the recipe) or "bce"
    seed: int = 0


def _standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a constant feature stays as it is
    return mean.astype(np.float32), scale.astype(np.float32)


def fit_head(ce_logits: np.ndarray, features: np.ndarray, labels: np.ndarray, feature_names: tuple[str, ...],
             hidden: tuple[int, ...], fit: HeadFit = HeadFit(), weights: np.ndarray | None = None) -> ScoringHead:
    """A head fit on every row given: inputs [logit, features], target the soft label in [0, 1];
    `weights` per row (inverse-propensity weights of logged clicks), else every row counts 1."""
    import torch

    torch.manual_seed(fit.seed)
    x = np.concatenate([np.asarray(ce_logits, np.float32).reshape(-1, 1),
                        np.asarray(features, np.float32)], axis=1)
    mean, scale = _standardization(x)
    xt = torch.from_numpy((x - mean) / scale)
    yt = torch.from_numpy(np.asarray(labels, np.float32))
    wt = torch.from_numpy(np.ones(len(x), np.float32) if weights is None else np.asarray(weights, np.float32))
    sizes = [x.shape[1], *hidden, 1]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(net.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    for _ in range(fit.epochs):
        optimizer.zero_grad()
        out = net(xt).reshape(-1)
        per_row = ((torch.sigmoid(out) - yt) ** 2 if fit.loss == "mse"
                   else torch.nn.functional.binary_cross_entropy_with_logits(out, yt, reduction="none"))
        loss = (per_row * wt).sum() / wt.sum()
        loss.backward()
        optimizer.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return ScoringHead(tuple(feature_names), mean, scale,
                       [m.weight.detach().numpy().T.copy() for m in linears],
                       [m.bias.detach().numpy().copy() for m in linears],
                       {"hidden": list(hidden), "loss": fit.loss, "epochs": fit.epochs})


def probability(logits: np.ndarray) -> np.ndarray:
    """σ(logits) in float64 without overflow for large |logit| (a poorly fit head's can be huge);
    serving.engine.sigmoid is the served path's float32 one."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, np.float64)))


def choose_and_fit(train_df, oof_logits: np.ndarray, features: np.ndarray, feature_names: tuple[str, ...],
                   fit: HeadFit = HeadFit(), architectures: dict = ARCHITECTURES) -> tuple[ScoringHead, dict]:
    """(head refit on all rows with the architecture best on held-out training queries, the
    comparison table). Selection by NDCG@10 on the inner held-out queries."""
    inner = train_df["query"].map(lambda q: fold_of(f"inner:{q}", 5, fit.seed) == 0).to_numpy(bool)
    if inner.all() or not inner.any():
        raise ValueError("too few training queries to hold some out for choosing the head")
    labels = train_df["label"].to_numpy(np.float32)
    held = train_df[inner].reset_index(drop=True)
    held.attrs = dict(train_df.attrs)
    table = {"logit alone": metrics.evaluate(held, probability(oof_logits[inner]))}
    best = None
    for name, hidden in architectures.items():
        started = time.time()
        head = fit_head(oof_logits[~inner], features[~inner], labels[~inner], feature_names, hidden, fit)
        probs = probability(head.logits(oof_logits[inner], features[inner]))
        table[name] = {**metrics.evaluate(held, probs), "fit_s": round(time.time() - started, 1)}
        if best is None or table[name]["ndcg@10"] > table[best]["ndcg@10"]:
            best = name
    head = fit_head(oof_logits, features, labels, feature_names, architectures[best], fit)
    head.meta.update({"architecture": best, "chosen_on": "held-out training queries (out-of-fold logits)"})
    return head, {"chosen": best, "inner_queries": int(held["query"].nunique()), "table": table}


def _weighted_logistic(offset, x, y, w, epochs: int, lr: float, l2: float):
    """θ, b minimising weighted BCE of offset + x·θ + b (+ l2 |θ|²); torch tensors in, numpy out."""
    import torch

    theta = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([theta, bias], lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(offset + x @ theta + bias, y, reduction="none")
        loss = (per_row * w).sum() / w.sum() + l2 * (theta ** 2).sum()
        loss.backward()
        optimizer.step()
    return theta.detach().numpy(), float(bias.detach().numpy()[0])


def fit_offset_head(ce_logits: np.ndarray, features: np.ndarray, labels: np.ndarray,
                    feature_names: tuple[str, ...], weights: np.ndarray | None = None, epochs: int = 400,
                    lr: float = 0.05, l2: float = 1e-3, seed: int = 0) -> ScoringHead:
    """A linear head in two stages, weighted BCE: a·logit + b first (the cross-encoder calibrated
    to the logged clicks, features left out), then θ·f on top of that fixed offset.

    The features can then only move a candidate by what they add (the personalization head: the
    shopper's behaviour shifts the cross-encoder's order); they cannot stand in for the
    calibration (features that go with relevance would otherwise learn to flatten an
    over-confident logit). Stored as an ordinary ScoringHead."""
    import torch

    torch.manual_seed(seed)
    x = np.asarray(features, np.float32)
    mean, scale = _standardization(x)
    xt = torch.from_numpy((x - mean) / scale)
    logit = torch.from_numpy(np.asarray(ce_logits, np.float32).reshape(-1, 1))
    yt = torch.from_numpy(np.asarray(labels, np.float32))
    wt = torch.from_numpy(np.ones(len(x), np.float32) if weights is None else np.asarray(weights, np.float32))
    (a,), b = _weighted_logistic(torch.zeros(len(x)), logit, yt, wt, epochs, lr, 0.0)
    theta, bias = _weighted_logistic(a * logit.reshape(-1) + b, xt, yt, wt, epochs, lr, l2)
    w = np.concatenate([[a], theta]).astype(np.float32).reshape(-1, 1)
    return ScoringHead(tuple(feature_names), np.concatenate([[0.0], mean]).astype(np.float32),
                       np.concatenate([[1.0], scale]).astype(np.float32), [w],
                       [np.array([b + bias], np.float32)],
                       {"hidden": [], "loss": "bce", "logit_weight": float(a), "epochs": epochs,
                        "fit": "calibrated logit offset, then the features"})
