"""`make isolation`: does a (query, product) score depend on the rows it shares an engine call with?

The Python-backend ranker scores every request Triton's dynamic batcher hands it in ONE engine
call, and OrtEngine cuts that call's rows into length chunks. An engine whose arithmetic mixes
rows (ONNX Runtime's dynamic INT8 takes one activation scale per tensor, i.e. per call) then
gives a pair another score when its request is merged with another one, or when its own request
holds other candidates. This command measures, in one run and on the same requests, every way
out of that side by side (OPTIONS):

  per-tensor   today's dynamic INT8 before this change: one activation scale per call
  one-call     the same engine, but one request per call (what a ranker that never merges
               requests would give): no mixing across requests, still within a request
  per-row      dynamic INT8 with one activation scale per token row (shoprank.convert.per_row)
  static       static INT8 (QDQ, scales calibrated on training pairs: shoprank.convert.qdq)
  fp32         the FP32 export

For each: NDCG@10 on the validation queries scored as served and the INT8 gate's verdict
against FP32 (shoprank.quality.gate); the engine's rank-50 median latency in-process, and the
time of two rank-50 requests (one merged call, or two calls where requests are never merged),
the options interleaved request by request so machine noise hits all alike; the largest change
of a click probability when a request is scored merged with another one instead of alone (and
how many requests came back in another order); and the largest change of a pair's probability
when the OTHER candidates of its own request change (half of them replaced).
"""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..data.requests import Request, RequestPool
from ..data.split import model_pairs
from ..model_card import model_max_length
from ..quality.gate import INT8_MAX_NDCG_DROP, engine_scores, judge
from ..quality.metrics import ndcg_difference
from ..serving.engine import OrtEngine, sigmoid
from ..serving.tokenizer import PairEncoder
from .fmt import fmt, interval

WORK_DIR = config.ARTIFACTS_DIR / "isolation"   # engines built for the comparison
OPTIONS = ("per-tensor", "one-call", "per-row", "static", "fp32")
TITLES = {
    "per-tensor": "dynamic INT8, per-tensor activation scales (ONNX Runtime's default)",
    "one-call": "dynamic INT8, per-tensor scales, one request per engine call (never merged)",
    "per-row": "dynamic INT8, per-row activation scales (`make int8`)",
    "static": "static INT8 (QDQ, calibrated scales; `make qdq`'s recipe)",
    "fp32": "FP32",
}
ISOLATION_TOL = 1e-5   # a probability change at most this is float rounding, not mixing


@dataclass
class Setup:
    model_dir: Path = config.MODEL_DIR
    onnx_dir: Path = config.ONNX_DIR
    work_dir: Path = WORK_DIR
    options: tuple[str, ...] = OPTIONS
    requests: int = 24          # distinct rank-50 requests (pairs of them are merged)
    timed_rounds: int = 3       # passes over the requests for latency (after one warm-up pass)
    rebuild: bool = False       # rebuild work_dir's QDQ engine even when it is there


def build_engines(setup: Setup, log: Callable[[str], None] = print) -> dict[str, Path]:
    """The ONNX file of each option: the dynamic INT8 variants built from the FP32 export into
    work_dir (ungated: the gate's verdict is one of the measurements), FP32 and the QDQ engine
    from onnx_dir when there (else one built into work_dir, once: it takes minutes)."""
    from ..convert.int8 import write_int8
    from ..convert.qdq import write_qdq

    fp32 = Path(setup.onnx_dir) / "model.fp32.onnx"
    if not fp32.exists():
        raise FileNotFoundError(f"no FP32 ONNX at {fp32}: run `make onnx` first")
    work = Path(setup.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    files = {"fp32": fp32}
    wanted = set(setup.options)
    for kind in ("per-tensor", "per-row"):
        if kind in wanted or (kind == "per-tensor" and "one-call" in wanted):
            # Always rebuilt (seconds): the INT8 code measured is the code checked out.
            path = work / f"model.int8-{kind}.onnx"
            log(f"isolation: building {kind} INT8 -> {path}")
            write_int8(setup.model_dir, fp32, path, activations=kind)
            files[kind] = path
    files["one-call"] = files.get("per-tensor")
    if "static" in wanted:
        qdq = Path(setup.onnx_dir) / "model.qdq.onnx"
        if not qdq.exists():
            qdq = work / "model.qdq.onnx"
            if setup.rebuild or not qdq.exists():
                log(f"isolation: building static INT8 (QDQ) -> {qdq}")
                write_qdq(setup.model_dir, fp32, qdq)
        files["static"] = qdq
    return {k: files[k] for k in setup.options}


def merged(*batches: dict) -> dict:
    """Requests stacked row-wise into one engine call, as the Python-backend ranker does (shorter
    sequences right-padded; the tokenizer pads them all to max_length there anyway)."""
    length = max(b[config.ENGINE_INPUTS[0]].shape[1] for b in batches)
    return {name: np.concatenate([np.pad(b[name], ((0, 0), (0, length - b[name].shape[1]))) for b in batches])
            for name in config.ENGINE_INPUTS}


def _order(probs: np.ndarray) -> list[int]:
    return np.argsort(-probs, kind="stable").tolist()


def cross_request(engine: OrtEngine, batches: list[dict]) -> dict:
    """Each request alone vs merged with the next one into one call."""
    worst, reordered = 0.0, 0
    for i, batch in enumerate(batches):
        other = batches[(i + 1) % len(batches)]
        alone = sigmoid(engine.logits(batch))
        together = sigmoid(engine.logits(merged(batch, other)))[:len(alone)]
        worst = max(worst, float(np.abs(alone - together).max()))
        reordered += _order(alone) != _order(together)
    return {"max_abs_diff": worst, "reordered": reordered, "requests": len(batches)}


def within_request(engine: OrtEngine, encoder: PairEncoder, requests: list[Request]) -> dict:
    """A pair's probability when the other half of its request's candidates is replaced by
    another request's candidates (same query)."""
    worst, reordered = 0.0, 0
    for i, r in enumerate(requests):
        keep = len(r.texts) // 2
        other = requests[(i + 1) % len(requests)].texts
        full = sigmoid(engine.logits(encoder.encode(r.query, list(r.texts))))[:keep]
        swapped = list(r.texts[:keep]) + [t for t in other if t not in r.texts[:keep]][:len(r.texts) - keep]
        changed = sigmoid(engine.logits(encoder.encode(r.query, swapped)))[:keep]
        worst = max(worst, float(np.abs(full - changed).max()))
        reordered += _order(full) != _order(changed)
    return {"max_abs_diff": worst, "reordered": reordered, "requests": len(requests)}


def timings(engines: dict[str, OrtEngine], merges: dict[str, bool], batches: list[dict],
            rounds: int) -> dict[str, dict]:
    """Rank-50 latency of each engine (one request per call), and of two requests scored the
    way the option serves them, options interleaved request by request."""
    one: dict[str, list] = {k: [] for k in engines}
    two: dict[str, list] = {k: [] for k in engines}
    for rnd in range(rounds + 1):       # round 0 warms up
        for i, batch in enumerate(batches):
            pair = merged(batch, batches[(i + 1) % len(batches)])
            for key, engine in engines.items():
                started = time.perf_counter()
                engine.logits(batch)
                middle = time.perf_counter()
                if merges[key]:
                    engine.logits(pair)
                else:
                    engine.logits(batch)
                    engine.logits(batches[(i + 1) % len(batches)])
                ended = time.perf_counter()
                if rnd:
                    one[key].append((middle - started) * 1000)
                    two[key].append((ended - middle) * 1000)
    return {k: {"rank50_p50_ms": statistics.median(one[k]), "two_requests_p50_ms": statistics.median(two[k])}
            for k in engines}


def measure(setup: Setup, log: Callable[[str], None] = print) -> dict:
    files = build_engines(setup, log)
    model_dir = Path(setup.model_dir)
    valid = model_pairs(model_dir, "valid")
    # Padded to max_length as the Python-backend tokenizer pads (OrtEngine cuts the padding).
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir), buckets=())
    requests = RequestPool(valid).distinct(config.RANK50, setup.requests)
    batches = [encoder.encode(r.query, list(r.texts)) for r in requests]
    engines = {k: OrtEngine(p) for k, p in files.items()}
    merges = {k: k != "one-call" for k in engines}

    log("isolation: quality (validation queries, one query per engine call)")
    reference = engine_scores(valid, model_dir, Path(setup.onnx_dir) / "model.fp32.onnx")
    quality = {}
    for key, path in files.items():
        if key == "one-call" and "per-tensor" in quality:
            quality[key] = quality["per-tensor"]     # the same engine, scored the same way
            continue
        scores = engine_scores(valid, model_dir, path)
        v = judge(valid, reference, scores, key, INT8_MAX_NDCG_DROP)
        quality[key] = {k: v[k] for k in ("ndcg_candidate", "ndcg_reference", "ndcg_drop", "passed", "spearman",
                                          "max_abs_diff", "queries")}
        quality[key]["mean_abs_diff"] = float(np.abs(np.asarray(scores) - reference).mean())
        quality[key]["ndcg_difference"] = ndcg_difference(valid, reference, scores)
    log("isolation: mixing across and within requests")
    results = {}
    for key, engine in engines.items():
        results[key] = {"title": TITLES[key], "onnx": str(files[key]), "merges_requests": merges[key],
                        "quality": quality[key],
                        "within_request": within_request(engine, encoder, requests)}
        results[key]["cross_request"] = (cross_request(engine, batches) if merges[key] else
                                         {"max_abs_diff": 0.0, "reordered": 0, "requests": len(batches),
                                          "never_merged": True})
    log("isolation: latency (options interleaved)")
    for key, t in timings(engines, merges, batches, setup.timed_rounds).items():
        results[key].update(t)
    for r in results.values():
        r["isolated"] = max(r["cross_request"]["max_abs_diff"], r["within_request"]["max_abs_diff"]) <= ISOLATION_TOL
    return {"model": str(model_dir), "requests": len(requests), "candidates": config.RANK50,
            "timed_rounds": setup.timed_rounds, "int8_max_ndcg_drop": INT8_MAX_NDCG_DROP,
            "isolation_tol": ISOLATION_TOL, "chunk_tokens": config.ENGINE_CHUNK_TOKENS,
            "threads": config.ENGINE_THREADS, "options": results, "choice": choose(results)}


def choose(results: dict) -> str | None:
    """The fastest option that is isolated and passes the INT8 gate (rank-50 p50)."""
    fit = [k for k, r in results.items() if r["isolated"] and r["quality"]["passed"]]
    return min(fit, key=lambda k: results[k]["rank50_p50_ms"]) if fit else None


def markdown(report: dict) -> str:
    lines = [
        "# Score isolation: does a pair's score depend on the rows beside it?",
        "",
        f"Model `{report['model']}`; {report['requests']} distinct rank-{report['candidates']} requests from the "
        f"validation queries; engines in-process under ONNX Runtime as the ranker runs them (length chunks of "
        f"{report['chunk_tokens']} tokens). Written by `make isolation` (`shoprank isolation`).",
        "",
        "| option | isolated | NDCG@10 | Δ vs FP32 [95% CI] | INT8 gate | Spearman vs FP32 | mean abs Δp vs FP32 "
        "| rank-50 p50 ms | 2 requests ms | max abs Δp merged with another request | requests reordered by merging "
        "| max abs Δp other candidates changed | requests reordered |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in report["options"].items():
        q, cross, within = r["quality"], r["cross_request"], r["within_request"]
        merged_cell = "0 (never merged)" if cross.get("never_merged") else f"{cross['max_abs_diff']:.2e}"
        lines.append(
            f"| {key} | {'yes' if r['isolated'] else 'no'} | {fmt(q['ndcg_candidate'])} "
            f"| {interval(q['ndcg_difference']) or fmt(None)} | {'pass' if q['passed'] else 'refused'} "
            f"| {fmt(q['spearman'])} | {q['mean_abs_diff']:.4f} | {r['rank50_p50_ms']:.1f} "
            f"| {r['two_requests_p50_ms']:.1f} | {merged_cell} | {cross['reordered']}/{cross['requests']} "
            f"| {within['max_abs_diff']:.2e} | {within['reordered']}/{within['requests']} |")
    lines += ["", "Options:", ""]
    lines += [f"- **{key}**: {r['title']}" for key, r in report["options"].items()]
    choice = report["choice"]
    lines += ["", f"Isolated means both max |Δp| are at most {report['isolation_tol']:g}. The INT8 gate allows "
                  f"a drop of {report['int8_max_ndcg_drop']} NDCG@10 against FP32. '2 requests' is the time to "
                  "score two rank-50 requests the way the option serves them: one merged call, or two calls "
                  "where requests are never merged.", "",
              f"Choice (isolated, passes the gate, fastest rank-50): **{choice or 'none'}**."]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(report))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    return out
