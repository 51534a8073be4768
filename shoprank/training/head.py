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


CALIBRATION_KNOTS = 6          # interior knots of the logit's piecewise-linear calibration
L2_TOLERANCE = 1e-4            # relative held-out loss within which more shrinkage counts as a tie


def _wbce(z, y, w):
    import torch

    per_row = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    return (per_row * w).sum() / w.sum()


def _adam(params, loss_fn, epochs: int, lr: float, project=None) -> None:
    import torch

    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()
        if project is not None:
            with torch.no_grad():
                project()


def _hinge_weights(slopes: np.ndarray) -> np.ndarray:
    """Hinge coefficients of the piecewise-linear function with these segment slopes: the first
    slope, then the change at each knot."""
    return np.concatenate([slopes[:1], np.diff(slopes)])


def _hinges(logit: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """[N, K + 1]: the logit, then relu(logit - k_j) per knot."""
    logit = np.asarray(logit, np.float32).reshape(-1, 1)
    return np.concatenate([logit, np.maximum(0.0, logit - knots.reshape(1, -1))], axis=1).astype(np.float32)


def _calibration(logit: np.ndarray, y, w, knots: np.ndarray, epochs: int, lr: float):
    """g(logit) = s_0·logit + Σ_j (s_j − s_{j−1})·relu(logit − k_j) + b, every segment slope s_j > 0
    (softplus): a monotone piecewise-linear calibration of the cross-encoder to the logged clicks.
    (slopes, b)."""
    import torch

    hinges = torch.from_numpy(_hinges(logit, knots))
    raw = torch.zeros(len(knots) + 1, requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)

    def loss():
        slopes = torch.nn.functional.softplus(raw)
        return _wbce(hinges @ torch.cat([slopes[:1], slopes[1:] - slopes[:-1]]) + bias, y, w)
    _adam([raw, bias], loss, epochs, lr)
    return torch.nn.functional.softplus(raw).detach().numpy(), float(bias.detach().numpy()[0])


def _features_on_offset(offset, x, y, w, l2: float, nonneg: np.ndarray, epochs: int, lr: float):
    """θ, b minimising weighted BCE of offset + x·θ + b + l2 |θ|², θ_i ≥ 0 where nonneg[i]."""
    import torch

    theta = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    mask = torch.from_numpy(np.asarray(nonneg, bool))

    def project():
        theta[mask] = theta[mask].clamp(min=0.0)
    _adam([theta, bias], lambda: _wbce(offset + x @ theta + bias, y, w) + l2 * (theta ** 2).sum(), epochs, lr,
          project)
    return theta.detach().numpy(), float(bias.detach().numpy()[0])


def fit_offset_head(ce_logits: np.ndarray, features: np.ndarray, labels: np.ndarray,
                    feature_names: tuple[str, ...], weights: np.ndarray | None = None, epochs: int = 400,
                    lr: float = 0.05, l2: float | tuple = 1e-3, seed: int = 0, holdout: np.ndarray | None = None,
                    nonneg: bool | tuple = False, knots: int = CALIBRATION_KNOTS) -> ScoringHead:
    """A head in two stages, weighted BCE: g(logit) first, a monotone piecewise-linear calibration of
    the cross-encoder to the logged clicks (features left out), then θ·f on top of that fixed offset.

    The features can then only move a candidate by what they add (the personalization head: the
    shopper's behaviour shifts the cross-encoder's order); they cannot stand in for the
    calibration. The calibration is piecewise, not a·logit + b: a cross-encoder's logit is far from
    linear in the click log-odds (its top candidates crowd into a narrow band), and a straight line
    fit to every row then weighs a feature against too flat a logit at the top, where the order
    matters. `l2`: the features' shrinkage, or a grid to choose from by the weighted BCE of the rows
    marked in `holdout` (fit on the others; the chosen one is then refit on every row). `nonneg`:
    θ_i ≥ 0 for every feature (True) or per feature, where the sign is known.
    Stored as an ordinary ScoringHead (one ReLU layer spells the pieces out exactly)."""
    import torch

    torch.manual_seed(seed)
    x = np.asarray(features, np.float32)
    mean, scale = _standardization(x)
    xt = torch.from_numpy((x - mean) / scale)
    logit = np.asarray(ce_logits, np.float32).reshape(-1)
    yt = torch.from_numpy(np.asarray(labels, np.float32))
    wt = torch.from_numpy(np.ones(len(x), np.float32) if weights is None else np.asarray(weights, np.float32))
    cut = np.unique(np.quantile(logit, np.linspace(0, 1, knots + 2)[1:-1])).astype(np.float32) if len(logit) else \
        np.zeros(0, np.float32)
    slopes, b = _calibration(logit, yt, wt, cut, epochs, lr)
    offset = torch.from_numpy((_hinges(logit, cut) @ _hinge_weights(slopes) + b).astype(np.float32))
    signs = np.broadcast_to(np.asarray(nonneg, bool), (x.shape[1],)).copy()
    grid = tuple(l2) if isinstance(l2, (tuple, list)) else (l2,)
    chosen, table = grid[0], {}
    if len(grid) > 1:
        if holdout is None or not np.any(holdout) or np.all(holdout):
            raise ValueError("choosing l2 needs held-out rows and rows to fit on")
        held = torch.from_numpy(np.asarray(holdout, bool))
        for value in grid:
            theta, bias = _features_on_offset(offset[~held], xt[~held], yt[~held], wt[~held], value, signs, epochs, lr)
            z = offset[held] + xt[held] @ torch.from_numpy(theta) + bias
            table[value] = float(_wbce(z, yt[held], wt[held]))
        # The most shrinkage whose held-out loss is within L2_TOLERANCE of the best: losses that
        # differ in the 5th decimal are a tie, and a plain minimum flipped between such values.
        best = min(table.values())
        chosen = max(v for v in grid if table[v] <= best * (1.0 + L2_TOLERANCE))
        table = {k: round(v, 6) for k, v in table.items()}
    theta, bias = _features_on_offset(offset, xt, yt, wt, chosen, signs, epochs, lr)
    share = np.bincount(np.searchsorted(cut, logit), minlength=len(slopes))[:len(slopes)] / max(len(logit), 1)
    return _as_scoring_head(feature_names, cut, slopes, b + bias, theta / scale, mean, {
        "hidden": "calibration pieces", "loss": "bce", "epochs": epochs,
        "fit": "monotone piecewise-linear logit calibration offset, then the features",
        "logit_weight": float(share @ slopes), "logit_slopes": slopes.round(4).tolist(), "knots": cut.round(4).tolist(),
        "theta_per_unit": dict(zip(feature_names, (theta / scale).round(4).tolist())),
        "l2": chosen, "l2_heldout_bce": {str(k): v for k, v in table.items()}, "nonneg": signs.tolist()})


def _as_scoring_head(names, knots: np.ndarray, slopes: np.ndarray, bias: float, theta: np.ndarray,
                     mean: np.ndarray, meta: dict) -> ScoringHead:
    """g(logit) + θ·(f − mean) + bias as a ScoringHead with one ReLU layer, exactly:
    hidden = [relu(l), relu(−l), relu(l − k_j) ..., relu(f_i), relu(−f_i) ...] (x = relu(x) − relu(−x))."""
    n_f, n_k = len(names), len(knots)
    hinge = _hinge_weights(np.asarray(slopes, np.float64))
    w1 = np.zeros((1 + n_f, 2 + n_k + 2 * n_f), np.float32)
    b1 = np.zeros(w1.shape[1], np.float32)
    w2 = np.zeros((w1.shape[1], 1), np.float32)
    w1[0, :2], w2[:2, 0] = (1.0, -1.0), (hinge[0], -hinge[0])
    for j, k in enumerate(knots):
        w1[0, 2 + j], b1[2 + j], w2[2 + j, 0] = 1.0, -k, hinge[1 + j]
    for i in range(n_f):
        col = 2 + n_k + 2 * i
        w1[1 + i, col:col + 2], w2[col:col + 2, 0] = (1.0, -1.0), (theta[i], -theta[i])
    n = 1 + n_f
    return ScoringHead(tuple(names), np.zeros(n, np.float32), np.ones(n, np.float32), [w1, w2],
                       [b1, np.array([bias - float(theta @ mean)], np.float32)], meta)
