"""Quality gates: a conversion (ONNX, INT8, QDQ, TensorRT, the served path) fails the build
when it ranks validation queries worse than the FP32 model by more than a margin.

The gate compares NDCG@10 (shoprank.metrics.evaluate) of the candidate's scores with the
reference's on the SAME rows, so the margin is the only tolerance: no per-query noise enters.
"""
from __future__ import annotations

import numpy as np

from . import metrics

# Largest NDCG@10 a conversion may lose against FP32 on validation queries. Home Depot queries
# have ~6 judged products, mostly relevant: random order already scores ~0.91 and BM25 ~0.925,
# so 0.005 is a third of BM25's lift over random - a loss a user would feel.
DEFAULT_MAX_NDCG_DROP = 0.005


def _build_error():
    # Imported here: build_steps is expected to import this module (circular at import time).
    from .build_steps import BuildError

    return BuildError


def check_ndcg(reference_ndcg: float | None, candidate_ndcg: float | None, name: str = "candidate",
               max_drop: float = DEFAULT_MAX_NDCG_DROP) -> dict:
    """Raise BuildError when candidate NDCG@10 is more than `max_drop` below the reference.

    A gain never fails. An undefined NDCG (no query with a relevant product) cannot show that
    quality was kept, so it fails too. Returns the gate's numbers for reports.
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    error = _build_error()
    if reference_ndcg is None or candidate_ndcg is None:
        raise error(f"{name}: NDCG@10 is undefined on these validation rows (no query with a relevant "
                    "product), so the quality gate cannot pass")
    drop = float(reference_ndcg) - float(candidate_ndcg)
    result = {"name": name, "ndcg_reference": float(reference_ndcg), "ndcg_candidate": float(candidate_ndcg),
              "ndcg_drop": drop, "max_ndcg_drop": max_drop, "passed": drop <= max_drop}
    if not result["passed"]:
        raise error(f"{name} loses {drop:.4f} NDCG@10 against FP32 on validation queries "
                    f"(> {max_drop}): {reference_ndcg:.4f} -> {candidate_ndcg:.4f}")
    return result


def gate_scores(valid, reference_scores, candidate_scores, name: str = "candidate",
                max_drop: float = DEFAULT_MAX_NDCG_DROP) -> dict:
    """Gate candidate scores against reference scores on the rows of `valid` (a judgments frame).

    The returned dict (also when it passes) adds the two scorers' agreement: Spearman, top-10
    overlap and the largest score difference.
    """
    ref_q = metrics.evaluate(valid, np.asarray(reference_scores))
    cand_q = metrics.evaluate(valid, np.asarray(candidate_scores))
    agree = metrics.agreement(reference_scores, candidate_scores, valid)
    try:
        result = check_ndcg(ref_q["ndcg@10"], cand_q["ndcg@10"], name, max_drop)
    except Exception as exc:
        rho, overlap = agree["spearman"], agree["topk_overlap"]
        exc.args = (f"{exc.args[0]}; Spearman {'n/a' if rho is None else f'{rho:.4f}'}, top-10 overlap "
                    f"{'n/a' if overlap is None else f'{overlap:.3f}'}",)
        raise
    result.update(queries=ref_q["queries"]["ndcg@10"], **agree)
    return result


def gate_engines(model_dir, reference_onnx, candidate_onnx, name: str = "candidate",
                 max_drop: float = DEFAULT_MAX_NDCG_DROP, valid=None) -> dict:
    """The build-step gate: a converted ONNX engine against the FP32 one on validation queries.

    Both engines score each query's judged products in one call, as a served request does:
    dynamic INT8 takes activation scales from the whole batch, so batching rows of several
    queries together measures a computation that is never served.
    """
    from .build_steps import validation_pairs
    from .engine import OrtEngine, sigmoid
    from .evaluation import per_request_logits
    from .modeling import model_max_length
    from .tokenize import PairEncoder

    valid = validation_pairs(model_dir) if valid is None else valid
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))

    def scores(path):
        engine = OrtEngine(path)
        return sigmoid(per_request_logits(valid, lambda q, texts: engine.logits(encoder.encode(q, texts))))

    result = gate_scores(valid, scores(reference_onnx), scores(candidate_onnx), name, max_drop)
    result.update(pairs=len(valid), reference=str(reference_onnx), candidate=str(candidate_onnx))
    return result
