"""`shoprank head` / `make recipe`'s last step: the scoring head of a fine-tuned cross-encoder.

1. The lexical index: fit on the catalog (every product text of the data: known at serving time)
   and the training queries only (spelling vocabulary), never the validation queries.
2. Features of every pair; out-of-fold logits of the training pairs (shoprank.training.oof).
3. The head's architecture chosen on held-out training queries, refit on all training pairs.
4. Judged on the validation split against the cross-encoder alone (its own FP32 logits, as the
   head will read them when served), with a paired 95% interval; a feature-group ablation.
5. Gated: the head is installed (MODEL/head/: head + index) only when its validation NDCG@10 is
   not below the cross-encoder's by more than the margin; otherwise the folder is removed and
   the command exits 2, and the served path stays the cross-encoder alone.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.split import model_pairs, query_groups
from ..features.index import LexicalIndex
from ..features.pairs import FEATURE_GROUPS, FEATURE_NAMES, pair_features
from ..model_card import write_model_card
from ..quality import metrics
from ..serving.head import HEAD_FOLDER, head_dir
from .head import HeadFit, choose_and_fit, fit_head, probability
from .oof import fold_dir, model_logits, out_of_fold_logits

MAX_NDCG_DROP = 0.0          # the head must not lose NDCG@10 against the cross-encoder alone
LOGITS_CACHE = "head.logits.npz"  # beside the model: out-of-fold and validation logits


def frame_features(index: LexicalIndex, df) -> np.ndarray:
    """Features of every row of df, computed per query as the serving path does."""
    out = np.zeros((len(df), len(FEATURE_NAMES)), np.float32)
    texts = df["text"].to_numpy()
    for query, idx in query_groups(df):
        out[idx] = pair_features(index, query, list(texts[idx]))
    return out


def _logits(model_dir: Path, train, valid, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold logits of the training rows, the model's logits of the validation rows),
    kept in MODEL/LOGITS_CACHE: scoring them is most of the cost, the head refits in seconds.
    The cache is used only while it is newer than every model it came from."""
    cache = model_dir / LOGITS_CACHE
    sources = [model_dir / "model.safetensors"] + [fold_dir(model_dir, k, folds) / "model.safetensors"
                                                   for k in range(folds)]
    if cache.exists() and all(p.exists() and p.stat().st_mtime < cache.stat().st_mtime for p in sources):
        with np.load(cache) as saved:
            if saved["oof"].shape == (len(train),) and saved["valid"].shape == (len(valid),):
                return saved["oof"], saved["valid"]
    oof, ce_valid = out_of_fold_logits(model_dir, train, folds), model_logits(model_dir, valid)
    np.savez(cache, oof=oof, valid=ce_valid)
    return oof, ce_valid


def _summary(m: dict) -> dict:
    keys = ("ndcg@10", "mrr", "p@5", "auc", "rmse_grade", "rmse_label")
    return {k: (round(m[k], 4) if isinstance(m.get(k), float) else m.get(k)) for k in keys}


def build_head(model_dir: str | Path, folds: int = 2, fit: HeadFit | None = None,
               max_ndcg_drop: float = MAX_NDCG_DROP, report: str | Path | None = None) -> dict:
    """Fit, judge, gate and install the head; returns the report (also written as JSON)."""
    started, fit = time.time(), fit or HeadFit()
    model_dir = Path(model_dir)
    train, valid = model_pairs(model_dir, "train"), model_pairs(model_dir, "valid")
    catalog = pd.unique(np.concatenate([train["text"].to_numpy(), valid["text"].to_numpy()])).tolist()
    index = LexicalIndex.fit(catalog, train["query"].drop_duplicates().tolist())
    timings = {}
    t = time.time()
    f_train, f_valid = frame_features(index, train), frame_features(index, valid)
    timings["features_s"] = round(time.time() - t, 1)
    t = time.time()
    oof, ce_valid = _logits(model_dir, train, valid, folds)
    timings["logits_s"] = round(time.time() - t, 1)

    head, choice = choose_and_fit(train, oof, f_train, FEATURE_NAMES, fit)
    p_ce, p_head = probability(ce_valid), probability(head.logits(ce_valid, f_valid))
    result = {"cross-encoder": _summary(metrics.evaluate(valid, p_ce)),
              "head": _summary(metrics.evaluate(valid, p_head)),
              "random": {"ndcg@10": metrics.random_baseline(valid)}}
    diff = metrics.ndcg_difference(valid, p_ce, p_head)

    # What each feature group adds: the chosen architecture refit without it.
    hidden = tuple(head.meta["hidden"])
    ablation = {}
    for group, names in FEATURE_GROUPS.items():
        keep = [i for i, n in enumerate(FEATURE_NAMES) if n not in names]
        reduced = fit_head(oof, f_train[:, keep], train["label"].to_numpy(np.float32),
                           tuple(FEATURE_NAMES[i] for i in keep), hidden, fit)
        p = probability(reduced.logits(ce_valid, f_valid[:, keep]))
        m = metrics.evaluate(valid, p)
        ablation[f"without {group}"] = {"ndcg@10": round(m["ndcg@10"], 4), "rmse_grade": round(m["rmse_grade"], 4)
                                        if m.get("rmse_grade") is not None else None,
                                        "ndcg_change_vs_head": round(m["ndcg@10"] - result["head"]["ndcg@10"], 4)}

    passed = diff["mean"] is not None and diff["mean"] >= -max_ndcg_drop
    out = head_dir(model_dir)
    shutil.rmtree(out, ignore_errors=True)
    if passed:
        head.meta.update({"trained_on": "out-of-fold logits of the training split", "folds": folds,
                          "valid": result["head"]})
        head.save(out)
        index.save(out)
        write_model_card(model_dir, head={"folder": HEAD_FOLDER, "architecture": head.meta["architecture"],
                                          "features": len(FEATURE_NAMES)})
    else:
        write_model_card(model_dir, head=None)
    summary = {"model": str(model_dir), "folds": folds, "train_pairs": len(train), "valid_pairs": len(valid),
               "valid_queries": int(valid["query"].nunique()), "features": list(FEATURE_NAMES),
               "choice": choice, "valid": result, "head_minus_ce_ndcg@10": diff, "ablation": ablation,
               "gate": {"max_ndcg_drop": max_ndcg_drop, "passed": passed,
                        "installed": str(out) if passed else None},
               "timings": {**timings, "total_s": round(time.time() - started, 1)}}
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(summary, indent=2, default=str))
    return summary
