"""`make compare`: PyTorch FP32 quality of several trained models on the same rows, each against
the first with a 95% paired bootstrap interval on NDCG@10: which training settings helped, and
by more than the noise of this many queries."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ...model_card import read_model_card
from ...quality import metrics
from ..fmt import fmt, interval
from .variants import pytorch_variant


def compare_models(model_dirs: Sequence[str | Path], df, log: Callable[[str], None] = print) -> list[dict]:
    """PyTorch FP32 quality of several models on the same rows, each against the first with a
    paired bootstrap interval on NDCG@10: which training settings helped, and by more than the
    noise of this many queries. Scores come from each model's own tokenizer and max length."""
    results, first = [], None
    for model_dir in model_dirs:
        started = time.perf_counter()
        scores = np.asarray(pytorch_variant(Path(model_dir)).score(df), dtype=np.float64)
        result = {"model": str(model_dir), **metrics.evaluate(df, scores),
                  "seconds": round(time.perf_counter() - started, 1)}
        if first is None:
            first = scores
        else:
            result["ndcg_diff"] = metrics.ndcg_difference(df, first, scores)
        results.append(result)
        log(f"  {model_dir}: NDCG@10 {fmt(result['ndcg@10'])} ({result['seconds']} s)")
    return results


def comparison_markdown(results: list[dict]) -> str:
    graded = any(r.get("rmse_grade") is not None for r in results)
    head = ["model", "NDCG@10", "Δ NDCG vs first [95% CI]", "MRR", "AUC", "RMSE (1–3)" if graded else "RMSE (label)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        delta = interval(r.get("ndcg_diff")) or "—"
        rmse = r.get("rmse_grade") if graded else r.get("rmse_label")
        lines.append("| " + " | ".join([r["model"], fmt(r["ndcg@10"]), delta, fmt(r["mrr"]), fmt(r["auc"]),
                                           fmt(rmse)]) + " |")
    return "\n".join(lines)


def split_mismatch(model_dirs: Sequence[str | Path]) -> str | None:
    """Why one validation split is not held out for all these models (trained on other data files
    or split seeds), or None when it is."""
    cards = [read_model_card(m) for m in model_dirs]
    splits = [(Path(str(c.get("data"))).name, c.get("seed")) for c in cards]
    if len(set(splits)) <= 1:
        return None
    return ("models were trained on different data or split seeds, so one validation split is not held out for "
            "all: " + ", ".join(f"{m}: {s}" for m, s in zip(model_dirs, splits, strict=True)))
