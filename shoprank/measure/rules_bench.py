"""`make rules-bench`: the sorter's cost inside Triton, from Triton's per-model statistics.

One server, one run, requests one at a time, each request's compute time read as the change in
the model's `compute_infer` statistics:
  * sorter with every rule at N = 1,000 candidates (catalog attributes, which carry the ids as
    codes; either objective, filters, pins, boost, diversity, exploration, trace), called
    directly (the ranker's cost at N = 1,000 is not the sorter's), in `rounds` rounds: a p99
    per round and pooled (a p99 of 300 requests is their third-slowest, one host hiccup away);
  * the rank-50 path without rules: the tokenizer and sorter of a baseline git revision (HEAD by
    default, `--baseline REV`: the code before rules existed, say; its whole shoprank package,
    extracted beside the repository), loaded beside today's as `*_head` models, against the
    current ones, interleaved, on the same rank-50 requests, twice with the slots exchanged.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from .. import config
from ..serving.catalog import Catalog
from ..serving.client import infer_inputs

HEAD_SUFFIX = "_head"
ALL_RULES = {"filter": {"in_stock_only": True, "price_min": 5, "price_max": 2000, "exclude_ids": None},
             "pins": None, "boost": {"attribute": "margin", "strength": 0.3},
             "diversity": {"max_per_brand": 2, "top_n": 20}, "explore": {"share": 0.1, "seed": 7}, "trace": True,
             "objective": "expected_value", "value_weight": 0.5, "relevance_share": 0.94}
# Each objective (page_value assigns the first positions, the dearest) on the whole page of 1,000
# traced and on a first page of 50.
OBJECTIVE_PAGES = (("expected_value", 0), ("expected_value", 50), ("page_value", 0), ("page_value", 50))


def _baseline_package(baseline: str, folder: Path) -> Path | None:
    """The baseline revision's whole shoprank package, extracted under `folder` (None without git)."""
    target = folder / f"baseline-{baseline}"
    if (target / "shoprank").is_dir():
        return target
    target.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(["git", "archive", baseline, "shoprank"], cwd=config.PROJECT_ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return target


def _head_model_py(kind: str, package: Path) -> str:
    """A model.py that serves the baseline's model class from the baseline's own package: its
    glue and everything it calls (tokenizer, request decoding, metrics), as the code was then.
    Each Triton Python model runs in its own stub process, so the import path is its own."""
    return (f"import sys\n\nsys.path.insert(0, {str(package)!r})\n"
            f"from shoprank.serving.triton.models import {kind} as TritonPythonModel  # noqa: E402\n\n"
            "__all__ = [\"TritonPythonModel\"]\n")


def _head_config(text: str, name: str) -> str:
    """Today's config of a step without this issue's optional tensors and parameters."""
    keep = [line for line in text.splitlines()
            if not any(t in line for t in (config.CANDIDATE_IDS, config.ATTRIBUTES, config.RULES, config.FINAL_SCORES,
                                           config.TRACE, config.RANDOMIZED, '"catalog"', "rules_defaults",
                                           config.USER_ID, config.USER_CONTEXT, config.BEHAVIOUR,
                                           '"profile_store"', '"pseudonym_key"', '"personal"'))]
    text = "\n".join(keep).replace(" optional: true", "")
    text = re.sub(r"\},(\s*\n\s*\])", r"}\1", text)  # the last tensor of a list loses its comma
    return re.sub(r'^name: "\w+"', f'name: "{name}"', text, flags=re.M)


def add_head_models(repo: Path, baseline: str = "HEAD") -> list[str]:
    package = _baseline_package(baseline, repo.parent)
    if package is None:
        return []
    added = []
    for step, kind in ((config.TOKENIZER_MODEL, "TokenizerModel"), (config.SORTER_MODEL, "SorterModel")):
        target = repo / (step + HEAD_SUFFIX)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(repo / step, target)
        (target / "1" / "model.py").write_text(_head_model_py(kind, package))
        (target / "config.pbtxt").write_text(_head_config((repo / step / "config.pbtxt").read_text(),
                                                          step + HEAD_SUFFIX))
        added.append(step + HEAD_SUFFIX)
    return added


def _compute_ns(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]  # HTTP: JSON already
    return int(stats["compute_infer"]["ns"]), int(stats["success"]["count"])


def _timed(client, model: str, inputs) -> float:
    """ms of compute_infer of one request to `model`."""
    before, _ = _compute_ns(client, model)
    client.infer(model, inputs)
    after, _ = _compute_ns(client, model)
    return (after - before) / 1e6


def _bytes(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype=np.object_)


def _pct(values: list, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _rank50_times(client, queries: list, requests: int, rng) -> dict:
    """compute_infer ms per request of each Python step and its `_head` twin, interleaved on the
    same rank-50 requests without rules."""
    import tritonclient.http as api

    names = [step + suffix for step in (config.TOKENIZER_MODEL, config.SORTER_MODEL) for suffix in ("", HEAD_SUFFIX)]
    times = {name: [] for name in names}
    for r in range(requests):
        query, texts = queries[r % len(queries)]
        tok_inputs = infer_inputs(api, [(config.QUERY, _bytes([query]), "BYTES"),
                                        (config.CANDIDATES, _bytes(texts), "BYTES")])
        logits = rng.normal(size=(len(texts), 1)).astype(np.float32)
        sort_inputs = infer_inputs(api, [(config.RANKER_LOGITS, logits, "FP32"),
                                         (config.TOP_K, np.array([10], np.int32), "INT32")])
        pairs = [(name, tok_inputs if name.startswith(config.TOKENIZER_MODEL) else sort_inputs) for name in names]
        for name, inputs in (pairs if r % 2 else pairs[::-1]):  # alternate who goes first
            times[name].append(_timed(client, name, inputs))
    return times


def _swap_code(repo: Path) -> None:
    """Exchange the model.py of each step and its `_head` twin (configs stay in their slots)."""
    for step in (config.TOKENIZER_MODEL, config.SORTER_MODEL):
        ours, theirs = repo / step / "1" / "model.py", repo / (step + HEAD_SUFFIX) / "1" / "model.py"
        a, b = ours.read_text(), theirs.read_text()
        ours.write_text(b)
        theirs.write_text(a)


def _rank50(repo: Path, work: Path, queries: list, requests: int, rng, baseline: str, log) -> dict:
    """Today's tokenizer and sorter against the baseline's on rank-50 without rules. A step's time
    depends on the model slot it is loaded in (its config, its stub process) by as much as +-15%,
    more than the code measured; so it runs twice, the second time with the code of the two slots
    exchanged, and the ratio is the geometric mean of the two: each slot's bias cancels."""
    import tritonclient.http as api

    from ..serving.server import run_triton

    passes = []
    for swapped in (False, True):
        if swapped:
            _swap_code(repo)
        with run_triton(repo, work_dir=work / f"rank50-{'swapped' if swapped else 'plain'}") as server:
            client = api.InferenceServerClient(server.endpoints.http)
            passes.append(_rank50_times(client, queries, requests, rng))
            client.close()
    _swap_code(repo)
    steps = (config.TOKENIZER_MODEL, config.SORTER_MODEL)

    def series(times: dict, label: str, suffix: str) -> np.ndarray:
        if label in steps:
            return np.asarray(times[label + suffix])
        return np.add(*(np.asarray(times[step + suffix]) for step in steps))  # the path: both steps, per request

    plain, swapped = passes
    out: dict = {}
    for label in (*steps, "tokenizer+sorter"):
        # plain: today's code in the step's own slot; swapped: today's code in the _head slot
        now = (_pct(series(plain, label, ""), 50), _pct(series(swapped, label, HEAD_SUFFIX), 50))
        base = (_pct(series(plain, label, HEAD_SUFFIX), 50), _pct(series(swapped, label, ""), 50))
        ratios = (now[0] / base[0], now[1] / base[1])
        out[label] = {"now_p50": now, "baseline_p50": base, "p50_ratios": ratios,
                      "p50_ratio": float(np.sqrt(ratios[0] * ratios[1]))}
        log(f"rank-50 without rules, {label}: p50 now / {baseline} {ratios[0]:.2f}x in its own slot, {ratios[1]:.2f}x "
            f"in the other: {out[label]['p50_ratio']:.2f}x")
    return out


SORTER_P99_TARGET_MS = 2.0


def _sorter_request(api, lookup: Catalog, ids: np.ndarray, rng, objective: str, top_k: int, seed: int) -> list:
    chosen = list(ids[rng.choice(len(ids), 1000, replace=False)])
    _, attrs = lookup.lookup(chosen)
    rules = json.loads(json.dumps(ALL_RULES))
    rules["filter"]["exclude_ids"] = chosen[:10]
    rules["pins"] = [{"id": chosen[100 + i], "position": 3 * i} for i in range(3)]
    rules["explore"]["seed"] = seed
    rules["objective"] = objective
    logits = rng.normal(size=(1000, 1)).astype(np.float32)
    return infer_inputs(api, [(config.RANKER_LOGITS, logits, "FP32"),
                              (config.TOP_K, np.array([top_k], np.int32), "INT32"),
                              (config.ATTRIBUTES, attrs, "FP64"),
                              (config.RULES, _bytes([json.dumps(rules)]), "BYTES")])


def rules_bench(model_dir: str | Path, engine: str | Path, catalog: str | Path, out: str | Path,
                requests: int = 300, work_dir: str | Path | None = None, log=print, baseline: str = "HEAD",
                rounds: int = 1) -> dict:
    """`baseline`: the git revision whose tokenizer and sorter the rank-50 path is compared with.
    `rounds`: the sorter cases measured that many times in turn, `requests` each, so that a
    p99 (a handful of the slowest requests) is seen more than once."""
    import tempfile

    import tritonclient.http as api

    from ..data.requests import RequestPool
    from ..serving.server import run_triton
    from ..serving.triton.repository import build_repository

    frame = Catalog(catalog).frame()
    if len(frame) < 1000:
        raise ValueError(f"catalog {catalog} holds {len(frame)} products; the bench needs >= 1000")
    work = Path(work_dir or tempfile.mkdtemp(prefix="shoprank-rules-bench-"))
    repo = build_repository(model_dir, engine, work / "model_repository", target="python", catalog=catalog)
    heads = add_head_models(repo, baseline)
    rng = np.random.default_rng(0)
    ids = frame["id"].to_numpy()
    queries = [(r.query, list(r.texts)) for r in RequestPool.from_spec("default").distinct(50, 50)]
    result = {"requests": requests, "rounds": rounds, "catalog_products": len(frame), "head_models": heads,
              "baseline": baseline}
    with run_triton(repo, work_dir=work) as server:
        client = api.InferenceServerClient(server.endpoints.http)
        lookup = Catalog(catalog)
        times: dict = {case: [] for case in OBJECTIVE_PAGES}
        for round_ in range(rounds):
            for case in OBJECTIVE_PAGES:
                times[case].append([_timed(client, config.SORTER_MODEL,
                                           _sorter_request(api, lookup, ids, rng, *case, seed=round_ * requests + r))
                                    for r in range(requests)])
        for (objective, top_k), runs in times.items():
            p99s = [_pct(run, 99) for run in runs]
            pooled = [t for run in runs for t in run]
            within = sum(p <= SORTER_P99_TARGET_MS for p in p99s)
            result[f"sorter_all_rules_{objective}_n1000_top{top_k}_ms"] = {
                "p50": _pct(pooled, 50), "p99": _pct(pooled, 99), "max": max(pooled),
                "p50_per_round": [_pct(run, 50) for run in runs], "p99_per_round": p99s,
                "rounds_within_target": within}
            log(f"sorter, all rules, {objective}, N=1000, TOP_K {top_k}: compute p50 {_pct(pooled, 50):.3f} ms, "
                f"p99 {_pct(pooled, 99):.3f} ms" + (f" (per round {', '.join(f'{p:.2f}' for p in p99s)}: "
                                                    f"{within} of {rounds} within {SORTER_P99_TARGET_MS:g} ms)"
                                                    if rounds > 1 else ""))
        client.close()
    if heads:
        result["rank50_no_rules_ms"] = _rank50(repo, work, queries, requests, rng, baseline, log)
    import os

    result.update(when=time.strftime("%Y-%m-%d %H:%M:%S"), load_average_1m=os.getloadavg()[0], cpus=os.cpu_count())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    return result
