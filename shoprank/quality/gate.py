"""The one quality gate: a candidate (an INT8, QDQ, FP16 or distilled engine, an online update,
a benchmarked system) may rank the validation queries at most a margin worse than its reference.

It compares NDCG@10 (shoprank.quality.metrics.evaluate) of the two scorers on the SAME rows, so
the margin is the only tolerance. Engines are scored as served: one engine call per query with
its judged products, padded as the tokenizer model pads. ONNX Runtime's per-tensor dynamic
INT8 takes activation scales from the whole call, so for such an engine scoring several queries
in one call would measure what is never served (`make int8`'s per-row INT8 does not mix rows).

The verdict is a dict, also when it refuses (numbers for reports). A refusal is never an
exception of the metrics: an undefined NDCG (no query with a relevant product) cannot show that
quality was kept, so it is a refusal with that reason. `enforce` turns a refusal into
GateRefused for the build steps, whose commands exit 2 on it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..data.split import model_pairs, query_groups
from ..errors import GateRefused
from ..model_card import model_max_length
from ..serving.engine import OrtEngine, sigmoid
from ..serving.tokenizer import PairEncoder
from . import metrics

# Largest NDCG@10 a candidate may lose against its reference on validation queries: a third of
# BM25's lift over random on Home Depot, a loss a user would feel (docs/quality.md, "The quality gate").
MAX_NDCG_DROP = 0.005
# The dynamic CPU INT8 build (`make int8`) alone: on the default data's few validation queries
# 0.005 is inside the noise.
INT8_MAX_NDCG_DROP = 0.01

RankOne = Callable[[str, Sequence[str]], np.ndarray]
"""(query, product texts) -> one logit per text: one request as the ranker sees it."""


def logits_as_served(valid: pd.DataFrame, rank_one: RankOne) -> np.ndarray:
    """Logits of every row, one call per query with its judged products (split at the request
    limit): the batch a rank request makes."""
    texts = valid["text"].to_numpy(dtype=object)
    out = np.zeros(len(valid), dtype=np.float32)
    for query, idx in query_groups(valid):
        for start in range(0, len(idx), config.MAX_CANDIDATES):
            part = idx[start:start + config.MAX_CANDIDATES]
            out[part] = rank_one(query, texts[part].tolist())
    return out


def engine_rank_one(model_dir: str | Path, onnx_path: str | Path) -> RankOne:
    """An ONNX engine under ONNX Runtime behind the tokenizer, exactly as the ranker serves it."""
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
    engine = OrtEngine(onnx_path)
    return lambda query, texts: engine.logits(encoder.encode(query, texts))


def engine_scores(valid: pd.DataFrame, model_dir: str | Path, onnx_path: str | Path) -> np.ndarray:
    """Click probabilities of an ONNX engine on every row, scored as served."""
    return sigmoid(logits_as_served(valid, engine_rank_one(model_dir, onnx_path)))


def _number(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def judge_ndcg(reference_ndcg: float | None, candidate_ndcg: float | None, name: str = "candidate",
               max_drop: float = MAX_NDCG_DROP, reference: str = "FP32", queries: int | None = None) -> dict:
    """The gate's rule on two NDCG@10 values of the same rows: passed when the candidate loses at
    most `max_drop`. A gain never fails; a negative margin demands a gain of at least its size;
    an undefined value is a refusal. Keys: passed, reason (None when passed), ndcg_reference,
    ndcg_candidate, ndcg_drop, max_ndcg_drop, name, reference, queries."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, int | float) or not math.isfinite(max_drop):
        raise ValueError(f"max_drop must be a finite number, got {max_drop!r}")
    ref, cand = _number(reference_ndcg), _number(candidate_ndcg)
    drop = None if ref is None or cand is None else ref - cand
    verdict = {"name": name, "reference": reference, "ndcg_reference": ref, "ndcg_candidate": cand,
               "ndcg_drop": drop, "max_ndcg_drop": max_drop, "queries": queries}
    on = f" on {queries} validation queries" if queries is not None else ""
    if drop is None:
        verdict.update(passed=False, reason=f"{name}: NDCG@10 is undefined{on or ' on these rows'} (no query with "
                                            "a relevant product), so the quality gate cannot pass")
    elif drop > max_drop:
        verdict.update(passed=False, reason=f"{name} loses {drop:.4f} NDCG@10 against {reference}{on} "
                                            f"(> {max_drop}): {ref:.4f} -> {cand:.4f}")
    else:
        verdict.update(passed=True, reason=None)
    return verdict


def judge(valid: pd.DataFrame, reference_scores, candidate_scores, name: str = "candidate",
          max_drop: float = MAX_NDCG_DROP, reference: str = "FP32") -> dict:
    """The verdict on candidate scores against reference scores on the rows of `valid`
    (judge_ndcg's rule), with the two scorers' agreement: pairs, spearman, topk_overlap and
    max_abs_diff."""
    ref_q = metrics.evaluate(valid, np.asarray(reference_scores))
    cand_q = metrics.evaluate(valid, np.asarray(candidate_scores))
    agree = metrics.agreement(reference_scores, candidate_scores, valid)
    verdict = judge_ndcg(ref_q["ndcg@10"], cand_q["ndcg@10"], name, max_drop, reference, ref_q["queries"]["ndcg@10"])
    verdict.update(pairs=len(valid), **agree)
    if verdict["reason"] and verdict["ndcg_drop"] is not None:
        rho, overlap = agree["spearman"], agree["topk_overlap"]
        verdict["reason"] += (f"; Spearman {'n/a' if rho is None else f'{rho:.4f}'}, top-10 overlap "
                              f"{'n/a' if overlap is None else f'{overlap:.3f}'}")
    return verdict


def enforce(verdict: dict) -> dict:
    """The verdict when it passed; GateRefused with its reason when it did not."""
    if not verdict["passed"]:
        raise GateRefused(verdict["reason"], verdict)
    return verdict


def gate_engines(model_dir: str | Path, reference_onnx: str | Path, candidate_onnx: str | Path,
                 name: str = "candidate", max_drop: float = MAX_NDCG_DROP, valid: pd.DataFrame | None = None,
                 reference: str = "FP32") -> dict:
    """The verdict on an ONNX engine against a reference engine on the model's validation queries
    (or `valid`), both scored as served. Never raises for a refusal: see `enforce`."""
    valid = model_pairs(model_dir, "valid") if valid is None else valid
    verdict = judge(valid, engine_scores(valid, model_dir, reference_onnx),
                    engine_scores(valid, model_dir, candidate_onnx), name, max_drop, reference)
    verdict.update(reference_engine=str(reference_onnx), candidate_engine=str(candidate_onnx))
    return verdict
