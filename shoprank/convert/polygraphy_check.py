"""Accuracy gate with polygraphy: an engine against ONNX Runtime on real inputs, stated tolerances.

The inputs are real requests encoded by PairEncoder exactly as serving does (one query against
its candidates, padded to the length bucket): several validation queries, a rank-50 request,
the longest pairs (at the model's max length) and a single pair. They are saved as polygraphy
JSON, so the same check runs from the command line too:

    polygraphy run artifacts/onnx/model.fp32.onnx --onnxrt --load-inputs inputs.json --save-outputs ref.json
    polygraphy run model.plan --model-type engine --trt --load-inputs inputs.json \
        --load-outputs ref.json --atol 0.05 --rtol 0.05

Tolerances are on the logits (the ranker's output, before the sigmoid):
  fp16  reference: the FP32 ONNX under ONNX Runtime.
  int8  reference: the QDQ ONNX under ONNX Runtime - the same quantized graph, so the tolerance
        covers two implementations of one INT8 model plus TensorRT's FP16 between the INT8
        layers; the INT8 quality itself is gated on NDCG@10 (shoprank.convert.qdq).
Without TensorRT the same plumbing compares two ONNX files under ONNX Runtime.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..data.requests import RequestPool
from ..data.split import model_pairs, query_groups
from ..errors import AccuracyMiss
from ..model_card import model_max_length
from ..quality import metrics
from ..serving.tokenizer import PairEncoder
from .tensorrt_env import require_tensorrt


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    reference: str  # which ONNX is the reference: "fp32" or "qdq"


# A logit differing by more than both atol and rtol (polygraphy's "elemwise" check) fails. Each
# is about 10x (FP16) and 3x (INT8, TensorRT adding FP16 between its INT8 layers) the difference
# measured between two implementations of the same model (docs/quality.md, "The quality gate").
TOLERANCES = {
    "fp16": Tolerance(atol=0.05, rtol=0.05, reference="fp32"),
    "int8": Tolerance(atol=0.15, rtol=0.10, reference="qdq"),
}
INPUT_QUERIES = 8


def real_inputs(model_dir: str | Path, n_queries: int = INPUT_QUERIES) -> list[dict[str, np.ndarray]]:
    """Feed dicts (int32 [N, L] per engine input) of real validation requests."""
    valid = model_pairs(model_dir, "valid")
    max_length = model_max_length(model_dir)
    encoder = PairEncoder.from_dir(model_dir, max_length=max_length)
    texts = valid["text"].tolist()
    feeds = [encoder.encode(query, [texts[i] for i in idx]) for query, idx in list(query_groups(valid))[:n_queries]]
    rank50 = RequestPool(valid).distinct(config.RANK50, 1)[0]
    feeds.append(encoder.encode(rank50.query, rank50.texts))
    query = valid["query"].iloc[0]
    longest = sorted(range(len(valid)), key=lambda i: -len(texts[i]))[:16]
    feeds.append(encoder.encode_pairs(valid["query"].iloc[longest].tolist(), [texts[i] for i in longest]))
    feeds.append(encoder.encode(query, texts[:1]))
    return [{name: np.ascontiguousarray(f[name], dtype=config.ID_DTYPE) for name in config.ENGINE_INPUTS}
            for f in feeds]


def save_inputs(feeds: list[dict], path: str | Path) -> Path:
    from polygraphy.json import save_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(feeds, str(path), description="shoprank engine inputs")
    return path


def load_inputs(path: str | Path) -> list[dict]:
    from polygraphy.json import load_json

    return load_json(str(path), description="shoprank engine inputs")


def _runner(path: Path, name: str):
    if path.suffix == ".onnx":
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

        return OnnxrtRunner(SessionFromOnnx(str(path), providers=["CPUExecutionProvider"]), name=name)
    require_tensorrt()
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(BytesFromPath(str(path))), name=name)


def compare(reference: str | Path, candidate: str | Path, feeds: list[dict], tolerance: Tolerance) -> dict:
    """Run both engines on every feed with polygraphy and compare the logits.

    reference: an ONNX file (ONNX Runtime, CPU). candidate: a TensorRT plan (.plan/.engine) or
    another ONNX file. Returns the report; raises AccuracyMiss when any logit is out of tolerance.
    """
    from polygraphy.comparator import Comparator, CompareFunc
    from polygraphy.logger import G_LOGGER

    reference, candidate = Path(reference), Path(candidate)
    for path in (reference, candidate):
        if not path.exists():
            raise FileNotFoundError(f"no engine at {path}")
    runners = [_runner(reference, "reference"), _runner(candidate, "candidate")]
    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        results = Comparator.run(runners, data_loader=feeds)
        summary = Comparator.compare_accuracy(
            results, compare_func=CompareFunc.simple(atol=tolerance.atol, rtol=tolerance.rtol,
                                                    check_error_stat="elemwise"))
    ref_runs, cand_runs = (iterations for _, iterations in results)
    worst_abs, worst_rel, overlaps = 0.0, 0.0, []
    for ref_it, cand_it in zip(ref_runs, cand_runs):
        a = np.asarray(ref_it[config.ENGINE_OUTPUT], dtype=np.float64).reshape(-1)
        b = np.asarray(cand_it[config.ENGINE_OUTPUT], dtype=np.float64).reshape(-1)
        diff = np.abs(a - b)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float((diff / np.maximum(np.abs(a), 1e-6)).max()))
        overlaps.append(metrics.topk_overlap(a, b))
    report = {"reference": str(reference), "candidate": str(candidate), "batches": len(feeds),
              "rows": int(sum(len(f[config.ENGINE_INPUTS[0]]) for f in feeds)),
              "shapes": sorted({tuple(f[config.ENGINE_INPUTS[0]].shape) for f in feeds}),
              "max_abs_logit_diff": worst_abs, "max_rel_logit_diff": worst_rel,
              "min_top10_overlap": min(overlaps), "tolerance": asdict(tolerance), "passed": bool(summary)}
    if not report["passed"]:
        raise AccuracyMiss(f"{candidate.name} differs from {reference.name} beyond atol {tolerance.atol} / "
                           f"rtol {tolerance.rtol} on real inputs (max |Δlogit| {worst_abs:.4f})")
    return report


def write_report(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=float))
