"""The GPU check's served half (`make gpu-check`, scripts/gpu_check.sh): a repository serving a
TensorRT ranker is started, its rankings over gRPC and HTTP are compared with ONNX Runtime on
real validation queries (logits within the polygraphy tolerance of the precision; TOP_K=3 the
head of the full ranking), then a short concurrent rank-50 load is timed."""
from __future__ import annotations

import concurrent.futures as futures
import time
from pathlib import Path

import numpy as np

from .. import config
from ..convert.polygraphy_check import TOLERANCES
from ..data.requests import RequestPool
from ..data.split import model_pairs, query_groups
from ..model_card import model_max_length
from ..quality import metrics
from ..serving.client import RankClient, scores_in_request_order
from ..serving.engine import OrtEngine
from ..serving.server import run_triton
from ..serving.tokenizer import PairEncoder

CHECK_QUERIES = 30


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def check_served(model: str | Path, repo: str | Path, precision: str, requests: int, threads: int,
                 work_dir: str | Path) -> tuple[str, list[str]]:
    """(a summary line, the problems found); no problems = passed."""
    tol = TOLERANCES[precision]
    reference = OrtEngine(config.onnx_file("fp32" if tol.reference == "fp32" else "qdq"))
    encoder = PairEncoder.from_dir(model, max_length=model_max_length(model))
    valid = model_pairs(model, "valid")
    texts = valid["text"].tolist()
    groups = [(q, [texts[i] for i in idx]) for q, idx in query_groups(valid) if len(idx) >= 3][:CHECK_QUERIES]
    problems, worst, overlaps = [], 0.0, []
    with run_triton(repo, work_dir=Path(work_dir) / f"triton-{precision}") as server:
        for protocol, url in (("grpc", server.endpoints.grpc), ("http", server.endpoints.http)):
            with RankClient(url, protocol) as client:
                for query, cands in groups:
                    idx, scores = client.infer_raw(query, cands, 0)
                    ref = reference.logits(encoder.encode(query, cands))
                    served = _logit(scores_in_request_order(idx, scores, len(cands)))
                    worst = max(worst, float(np.max(np.abs(served - ref))))
                    if np.any(np.abs(served - ref) > tol.atol + tol.rtol * np.abs(ref)):
                        problems.append(f"{protocol} {query!r}: served logits outside "
                                        f"atol {tol.atol} / rtol {tol.rtol}")
                    overlaps.append(metrics.topk_overlap(served, ref))
                    if client.infer_raw(query, cands, 3)[0].tolist() != idx[:3].tolist():
                        problems.append(f"{protocol} {query!r}: TOP_K=3 is not the head of the full ranking")
        pool = RequestPool(valid)
        load = pool.distinct(config.RANK50, min(requests, len(pool.groups)))
        with RankClient(server.endpoints.grpc, "grpc") as client:
            def one(i: int) -> float:
                r = load[i % len(load)]
                started = time.perf_counter()
                client.infer_raw(r.query, list(r.texts), 10)
                return (time.perf_counter() - started) * 1000

            started = time.perf_counter()
            with futures.ThreadPoolExecutor(threads) as ex:
                lat = sorted(ex.map(one, range(requests)))
            wall = time.perf_counter() - started

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    line = (f"{precision}: {len(groups)} queries x gRPC+HTTP vs ONNX Runtime ({tol.reference}): max |Δlogit| "
            f"{worst:.4f}, mean top-10 overlap {np.mean(overlaps):.3f}; load rank-50 x {requests} @ {threads} "
            f"threads: {len(lat) / wall:.0f} req/s, p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, p99 {p(0.99):.1f} ms"
            + ("" if not problems else f"; FAILED: {len(problems)} problems, first: {problems[0]}"))
    return line, problems
