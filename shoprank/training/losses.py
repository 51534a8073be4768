"""Training losses: the pointwise loss on the soft labels and the pairwise (RankNet) term.

Pointwise: BCE on the soft labels, or ("mse") the squared error of the probability, the better
fit for graded labels judged by RMSE. Both have the label's mean as their minimum; MSE weighs
every error on the label scale alike (what RMSE measures), BCE weighs errors near 0 and 1 more.
Pairwise: for each pair of one query's products with labels y_i > y_j,
(y_i - y_j) x log(1 + exp(s_j - s_i)), averaged with those weights.
"""
from __future__ import annotations

LOSSES = ("bce", "mse")


def pointwise_loss(name: str):
    """(logits, labels) -> mean loss, for a name in LOSSES."""
    import torch

    if name not in LOSSES:
        raise ValueError(f"loss must be 'bce' or 'mse', got {name!r}")
    if name == "bce":
        return torch.nn.BCEWithLogitsLoss()
    return lambda z, y: torch.nn.functional.mse_loss(torch.sigmoid(z), y)


def pairwise_loss(logits, labels, query_codes):
    """RankNet within queries, weighted by the label gap; 0 when no pair of one query differs."""
    import torch

    gap = labels[:, None] - labels[None, :]
    weight = torch.where((query_codes[:, None] == query_codes[None, :]) & (gap > 0), gap,
                         torch.zeros_like(gap))
    total = weight.sum()
    if total <= 0:
        return logits.sum() * 0.0
    margin = logits[:, None] - logits[None, :]
    return (weight * torch.nn.functional.softplus(-margin)).sum() / total
