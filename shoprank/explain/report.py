"""`make explain-report`: both methods on real pairs, their agreement, deletion curves, and what
explaining costs, measured side by side in one run against one served model.

Occlusion and every deletion-curve rescoring go through the served model (the `explain` model
and the `rank` ensemble of one tritonserver); Integrated Gradients runs on the PyTorch
cross-encoder in this process. With a scoring head installed, the served score includes it and
IG does not see it (its lexical features are not a function of embeddings): the report says so.
"""
from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import config
from .agreement import agreement
from .faithfulness import ORDERS, deletion_curves
from .served import probability_logit
from .words import PairAttribution


def default_model() -> tuple[Path, Path]:
    """The locally built Home Depot recipe when present, else the demo model."""
    recipe = config.ARTIFACTS_DIR / "recipe"
    recipe_engine = config.onnx_file("int8", config.ARTIFACTS_DIR / "onnx-recipe")
    if (recipe / "config.json").exists() and recipe_engine.exists():
        return recipe, recipe_engine
    return config.MODEL_DIR, config.onnx_file("int8")


def sample_pairs(pairs, count: int, seed: int, per_query: int = 2) -> list[tuple[str, str]]:
    """`count` (query, product) pairs, at most `per_query` of each query, queries in random order."""
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {}
    for query, text in zip(pairs["query"], pairs["text"]):
        groups.setdefault(query, [])
        if text not in groups[query]:
            groups[query].append(text)
    queries = sorted(groups)
    rng.shuffle(queries)
    out: list[tuple[str, str]] = []
    for query in queries:
        texts = groups[query][:]
        rng.shuffle(texts)
        out += [(query, t) for t in texts[:per_query]]
        if len(out) >= count:
            break
    return out[:count]


def served_pair_scorer(client):
    """Aligned (query, text) pairs -> served logits (the rank ensemble, one request per query)."""
    def score_pairs(queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        out = np.full(len(queries), np.nan)
        rows: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            rows.setdefault(q, []).append(i)
        for query, idx in rows.items():
            for start in range(0, len(idx), config.MAX_CANDIDATES):
                part = idx[start:start + config.MAX_CANDIDATES]
                indices, scores = client.infer_raw(query, [texts[i] for i in part], 0)
                probs = np.full(len(part), np.nan)
                probs[indices] = scores
                out[part] = probability_logit(probs)
        return out
    return score_pairs


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for q, t in pairs:
        groups.setdefault(q, []).append(t)
    return groups


def _p50(values: list[float]) -> float:
    return float(statistics.median(values))


def rank_latency_with_and_without_explain(running, requests, blocks: int = 3) -> dict:
    """rank p50 with the explain model loaded and unloaded, in ABBA blocks of the same requests
    (admin API load/unload), so drift on a shared machine hits both alike."""
    import tritonclient.http as httpclient

    from ..serving.client import RankClient

    admin = httpclient.InferenceServerClient(running.endpoints.http)
    headers = running.admin_headers("http")
    times: dict[str, list[float]] = {"loaded": [], "unloaded": []}
    with RankClient(running.endpoints.grpc, "grpc") as client:
        for r in requests[:3]:
            client.infer_raw(r.query, list(r.texts), 0)
        for block in range(2 * blocks):
            # ABBA order (loaded, unloaded, unloaded, loaded, ...): a drifting machine load favours neither.
            state = "loaded" if block % 4 in (0, 3) else "unloaded"
            if state == "loaded":
                admin.load_model(config.EXPLAIN_MODEL, headers=headers)
            else:
                admin.unload_model(config.EXPLAIN_MODEL, headers=headers)
            time.sleep(2.0)  # the stub starting or exiting is not what is measured
            client.infer_raw(requests[0].query, list(requests[0].texts), 0)
            for r in requests:
                start = time.perf_counter()
                client.infer_raw(r.query, list(r.texts), 0)
                times[state].append(1000 * (time.perf_counter() - start))
        admin.load_model(config.EXPLAIN_MODEL, headers=headers)
    admin.close()
    loaded, unloaded = _p50(times["loaded"]), _p50(times["unloaded"])
    return {"requests": len(requests), "blocks": blocks, "p50_ms_explain_loaded": loaded,
            "p50_ms_explain_unloaded": unloaded, "ratio": loaded / unloaded}


def measure_cost(running, explainer, valid, count: int, seed: int, log=print, blocks: int = 3) -> dict:
    """Explain rank-10 p50 over `count` real requests, and the rank-50 path with the explain model
    loaded and unloaded; the example is the clearest top product (highest score) among them."""
    from ..data.requests import RequestPool

    pool = RequestPool(valid)
    requests = pool.distinct(10, count, seed)
    explainer.explain(requests[0].query, list(requests[0].texts))  # warm-up
    cost, best = [], None
    for r in requests:
        start = time.perf_counter()
        explained = explainer.explain(r.query, list(r.texts))
        cost.append(1000 * (time.perf_counter() - start))
        top = min(explained, key=lambda e: e.position)
        if best is None or top.score > best[1].score:
            best = (r.query, top)
    out = {"explain_rank10": {"requests": len(cost), "p50_ms": _p50(cost), "max_ms": max(cost),
                              "target_p50_ms": 1000},
           "example": {"query": best[0], "top_product": best[1].attribution.text, "score": best[1].score,
                       "top_words": best[1].attribution.top_words(3)}}
    log(f"explain rank-10 p50 {out['explain_rank10']['p50_ms']:.0f} ms over {len(cost)} requests")
    out["rank_path"] = rank_latency_with_and_without_explain(running, pool.distinct(config.RANK50, count, seed),
                                                            blocks)
    out["explain_rank10"]["x_rank50_p50"] = out["explain_rank10"]["p50_ms"] / out["rank_path"]["p50_ms_explain_loaded"]
    log(f"rank-50 p50 with explain loaded {out['rank_path']['p50_ms_explain_loaded']:.1f} ms, "
        f"unloaded {out['rank_path']['p50_ms_explain_unloaded']:.1f} ms")
    return out


def cost_report(model_dir: Path, engine: Path, data: str | None, count: int = 20, seed: int = config.SEED,
                blocks: int = 5, log=print) -> dict:
    """measure_cost alone (no attributions of pairs): a quicker look at the cost."""
    import os

    from ..data.split import model_pairs
    from ..serving.server import run_triton
    from ..serving.triton.repository import build_repository
    from .client import ExplainClient

    load_before = os.getloadavg()[0]
    valid = model_pairs(model_dir, "valid", data=data)
    with tempfile.TemporaryDirectory(prefix="explain-cost-") as work:
        repo = build_repository(model_dir, engine, Path(work) / "model_repository")
        with run_triton(repo, work_dir=Path(work) / "triton") as running, \
                ExplainClient(running.endpoints.grpc, "grpc") as explainer:
            out = measure_cost(running, explainer, valid, count, seed, log, blocks)
    out.update(model=str(model_dir), engine=str(engine),
               load_average={"start": load_before, "end": os.getloadavg()[0], "cores": os.cpu_count()})
    return out


def build_report(model_dir: Path, engine: Path, data: str | None, count: int = 200, seed: int = config.SEED,
                 cost_requests: int = 20, ig_steps: int = 16, log=print) -> dict:
    import os

    import torch

    from ..data.split import model_pairs
    from ..serving.client import RankClient
    from ..serving.head import has_head, head_dir
    from ..serving.server import run_triton
    from ..serving.triton.repository import build_repository
    from .client import ExplainClient
    from .integrated_gradients import IGSettings, IntegratedGradients

    torch.set_num_threads(1)  # IG in process beside the server: leave it the cores, stay light
    load_before = os.getloadavg()[0]
    valid = model_pairs(model_dir, "valid", data=data)
    pairs = sample_pairs(valid, count, seed)
    log(f"{len(pairs)} pairs from {valid.attrs.get('source', data)} (validation queries of {model_dir})")
    report: dict = {"model": str(model_dir), "engine": str(engine), "data": valid.attrs.get("source", data),
                    "pairs": len(pairs), "head_served": has_head(head_dir(model_dir)), "seed": seed}
    with tempfile.TemporaryDirectory(prefix="explain-report-") as work:
        repo = build_repository(model_dir, engine, Path(work) / "model_repository")
        with run_triton(repo, work_dir=Path(work) / "triton") as running, \
                ExplainClient(running.endpoints.grpc, "grpc") as explainer, \
                RankClient(running.endpoints.grpc, "grpc") as ranker:
            started = time.perf_counter()
            occluded: dict[tuple[str, str], PairAttribution] = {}
            for query, texts in _grouped(pairs).items():
                for e in explainer.explain(query, texts):
                    occluded[(query, e.attribution.text)] = e.attribution
            occlusion = [occluded[p] for p in pairs]
            report["occlusion_s"] = time.perf_counter() - started
            log(f"occlusion (served) of {len(pairs)} pairs: {report['occlusion_s']:.1f} s")

            report.update(measure_cost(running, explainer, valid, cost_requests, seed, log))

            started = time.perf_counter()
            ig = IntegratedGradients(model_dir, settings=IGSettings(steps=ig_steps))
            gradients = [ig.explain(q, t) for q, t in pairs]
            report["ig_s"] = time.perf_counter() - started
            deltas = np.array([abs(a.extra["delta"]) for a in gradients])
            report["ig"] = {"converged": int(sum(a.extra["converged"] for a in gradients)), "pairs": len(gradients),
                            "median_abs_delta": float(np.median(deltas)), "max_abs_delta": float(deltas.max()),
                            "median_steps": float(np.median([a.extra["steps"] for a in gradients]))}
            log(f"integrated gradients (PyTorch) of {len(pairs)} pairs: {report['ig_s']:.1f} s, "
                f"{report['ig']['converged']} converged")
            report["agreement"] = agreement(occlusion, gradients)
            scorer = served_pair_scorer(ranker)
            report["deletion"] = {name: deletion_curves(attrs, scorer, seed=seed)
                                  for name, attrs in (("occlusion", occlusion), ("integrated_gradients", gradients))}
    report["load_average"] = {"start": load_before, "end": os.getloadavg()[0], "cores": os.cpu_count()}
    report["attributions"] = [{"occlusion": o.to_dict(), "integrated_gradients": g.to_dict()}
                              for o, g in zip(occlusion[:20], gradients[:20])]
    return report


def markdown(report: dict) -> str:
    d, a, c, r = report["deletion"], report["agreement"], report["explain_rank10"], report["rank_path"]
    ex = report["example"]
    lines = [
        "# Explanations: \"why this order?\" (`make explain-report`)", "",
        f"Model `{report['model']}`, engine `{report['engine']}`"
        + (" with its scoring head served" if report["head_served"] else "")
        + f"; {report['pairs']} real (query, product) pairs from the validation queries of `{report['data']}`"
        " (at most 2 products per query). Occlusion: word-level leave-one-out through the served `explain`"
        " model (tokenizer → ranker → sorter by BLS); Integrated Gradients: captum on the PyTorch"
        " cross-encoder, word-embedding layer, padding baseline. Attributions are in log-odds.", "",
        "## Example", "",
        f"Query **{ex['query']}**, top product **{ex['top_product']}** (click probability {ex['score']:.3f});"
        " the three words that mattered most (occlusion): "
        + ", ".join(f"`{w}` ({field}, {v:+.2f})" for field, w, v in ex["top_words"]) + ".", "",
        "## Faithfulness: deletion curves", "",
        "Words (query and product) removed cumulatively, pair rescored by the served `rank` ensemble after each"
        " removal; the number is the area under the logit-change curve over the fraction removed"
        " (more negative = the score falls faster). A faithful method: top-first well below random, least-first above.",
        "", "| method | top first | random | least first | top − random |", "| --- | --- | --- | --- | --- |"]
    for name, res in d.items():
        auc, sem = res["auc"], res.get("auc_sem", {})
        cells = [f"{auc[o]:+.3f} ± {sem.get(o, 0):.3f}" for o in ORDERS]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(cells)
                     + f" | {auc['top_first'] - auc['random']:+.3f} |")
    nan = float("nan")
    lines += ["", "(± one standard error over pairs; random: 2 orders per pair.)", "",
              "## Agreement", "",
              "Spearman rank correlation between the two methods over each pair's words: "
              f"mean {a.get('mean', nan):.3f}, median {a.get('median', nan):.3f} "
              f"(quartiles {a.get('q25', nan):.3f}–{a.get('q75', nan):.3f}), "
              f"positive for {100 * a.get('share_positive', 0):.0f}% of {a['pairs']} pairs "
              f"({a['skipped']} with fewer than 3 words or a constant attribution skipped).", ""]
    if report["head_served"]:
        lines += ["The served score includes the scoring head (lexical features of the words), which occlusion"
                  " sees and IG, on the cross-encoder alone, does not: part of the disagreement is that.", ""]
    ig = report["ig"]
    lines += [f"IG completeness: {ig['converged']}/{ig['pairs']} pairs within tolerance "
              f"(median |Δ| {ig['median_abs_delta']:.4f}, max {ig['max_abs_delta']:.4f} logits; "
              f"median {ig['median_steps']:.0f} steps).", "",
              "## Cost", "",
              "| what | p50 ms | note |", "| --- | --- | --- |",
              f"| explain rank-10 (occlusion, served, gRPC) | {c['p50_ms']:.0f} | "
              f"{c['requests']} real requests, target ≤ 1000; {c['x_rank50_p50']:.1f}× rank-50 p50 |",
              f"| rank-50, explain model loaded | {r['p50_ms_explain_loaded']:.1f} | "
              f"{r['requests']} requests × {r['blocks']} blocks |",
              f"| rank-50, explain model unloaded | {r['p50_ms_explain_unloaded']:.1f} | "
              "ABBA blocks, same requests |", "",
              f"Rank path with/without explain loaded: ×{r['ratio']:.3f} (the ensemble never calls it). "
              f"Wall time: occlusion of all pairs {report['occlusion_s']:.0f} s (served), "
              f"IG {report['ig_s']:.0f} s (PyTorch, in process, one thread).", "",
              f"Machine: {report['load_average']['cores']} cores, 1-minute load average "
              f"{report['load_average']['start']:.1f} at the start and {report['load_average']['end']:.1f} at the end"
              " (other work shares it): absolute times are that machine's; the ratios are side by side.", ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path = config.REPORTS_DIR) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "explanations.md", out_dir / "explanations.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=2, default=float))
    return md, js
