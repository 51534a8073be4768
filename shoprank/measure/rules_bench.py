"""`make rules-bench`: the sorter's cost inside Triton, from Triton's per-model statistics.

One server, one run, requests one at a time, each request's compute time read as the change in
the model's `compute_infer` statistics:
  * sorter with every rule at N = 1,000 candidates (catalog attributes, which carry the ids as
    codes; filters, pins, boost, diversity, exploration, trace), called directly (the ranker's cost at N = 1,000 is
    not the sorter's);
  * the rank-50 path without rules: the tokenizer and sorter of a baseline git revision (HEAD by
    default, `--baseline REV`: the code before rules existed, say), loaded beside today's as
    `*_head` models, against the current ones, interleaved, on the same rank-50 requests.
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
             "objective": "expected_value", "value_weight": 0.5}


def _head_model_py(kind: str, baseline: str = "HEAD") -> str | None:
    """The baseline revision's model class as a stand-alone model.py (absolute imports), or None
    without git."""
    try:
        source = subprocess.run(["git", "show", f"{baseline}:shoprank/serving/triton/models.py"],
                                cwd=config.PROJECT_ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    source = source.replace("from ... import", "from shoprank import").replace("from ...", "from shoprank.")
    source = source.replace("from ..", "from shoprank.serving.")
    source = source.replace("from .metrics", "from shoprank.serving.triton.metrics")
    return source + f"\n\nTritonPythonModel = {kind}\n"


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
    added = []
    for step, kind in ((config.TOKENIZER_MODEL, "TokenizerModel"), (config.SORTER_MODEL, "SorterModel")):
        source = _head_model_py(kind, baseline)
        if source is None:
            return []
        target = repo / (step + HEAD_SUFFIX)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(repo / step, target)
        (target / "1" / "model.py").write_text(source)
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


def rules_bench(model_dir: str | Path, engine: str | Path, catalog: str | Path, out: str | Path,
                requests: int = 300, work_dir: str | Path | None = None, log=print, baseline: str = "HEAD") -> dict:
    """`baseline`: the git revision whose tokenizer and sorter the rank-50 path is compared with."""
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
    result = {"requests": requests, "catalog_products": len(frame), "head_models": heads, "baseline": baseline}
    with run_triton(repo, work_dir=work) as server:
        client = api.InferenceServerClient(server.endpoints.http)
        lookup = Catalog(catalog)
        for top_k in (0, 50):  # the whole page of 1,000 traced, and a first page of 50
            sorter_ms = []
            for r in range(requests):
                chosen = list(ids[rng.choice(len(ids), 1000, replace=False)])
                _, attrs = lookup.lookup(chosen)
                rules = json.loads(json.dumps(ALL_RULES))
                rules["filter"]["exclude_ids"] = chosen[:10]
                rules["pins"] = [{"id": chosen[100 + i], "position": 3 * i} for i in range(3)]
                rules["explore"]["seed"] = r
                logits = rng.normal(size=(1000, 1)).astype(np.float32)
                inputs = infer_inputs(api, [(config.RANKER_LOGITS, logits, "FP32"),
                                            (config.TOP_K, np.array([top_k], np.int32), "INT32"),
                                            (config.ATTRIBUTES, attrs, "FP64"),
                                            (config.RULES, _bytes([json.dumps(rules)]), "BYTES")])
                sorter_ms.append(_timed(client, config.SORTER_MODEL, inputs))
            result[f"sorter_all_rules_n1000_top{top_k}_ms"] = {"p50": _pct(sorter_ms, 50), "p99": _pct(sorter_ms, 99),
                                                               "max": max(sorter_ms)}
            log(f"sorter, all rules, N=1000, TOP_K {top_k}: compute p50 {_pct(sorter_ms, 50):.3f} ms, "
                f"p99 {_pct(sorter_ms, 99):.3f} ms")
        if heads:
            times = {name: [] for name in (config.TOKENIZER_MODEL, config.SORTER_MODEL, *heads)}
            for r in range(requests):
                query, texts = queries[r % len(queries)]
                tok_inputs = infer_inputs(api, [(config.QUERY, _bytes([query]), "BYTES"),
                                                (config.CANDIDATES, _bytes(texts), "BYTES")])
                logits = rng.normal(size=(len(texts), 1)).astype(np.float32)
                sort_inputs = infer_inputs(api, [(config.RANKER_LOGITS, logits, "FP32"),
                                                 (config.TOP_K, np.array([10], np.int32), "INT32")])
                pairs = ((config.TOKENIZER_MODEL, tok_inputs), (config.TOKENIZER_MODEL + HEAD_SUFFIX, tok_inputs),
                         (config.SORTER_MODEL, sort_inputs), (config.SORTER_MODEL + HEAD_SUFFIX, sort_inputs))
                for name, inputs in (pairs if r % 2 else pairs[::-1]):  # alternate who goes first
                    times[name].append(_timed(client, name, inputs))
            result["rank50_no_rules_ms"] = {name: {"p50": _pct(v, 50), "p99": _pct(v, 99)} for name, v in times.items()}
            for step in (config.TOKENIZER_MODEL, config.SORTER_MODEL):
                now, head = times[step], times[step + HEAD_SUFFIX]
                ratio = _pct(now, 50) / _pct(head, 50)
                result["rank50_no_rules_ms"][step]["p50_ratio_to_head"] = ratio
                log(f"rank-50 without rules, {step}: p50 {_pct(now, 50):.3f} ms now vs {_pct(head, 50):.3f} ms at "
                    f"{baseline} ({ratio:.2f}x)")
            # The path is what a request pays: both Python steps together, per request, same requests.
            steps = (config.TOKENIZER_MODEL, config.SORTER_MODEL)
            now = np.add(*(times[s] for s in steps))
            head = np.add(*(times[s + HEAD_SUFFIX] for s in steps))
            path = {"now_p50": _pct(now, 50), "baseline_p50": _pct(head, 50)}
            path["p50_ratio"] = path["now_p50"] / path["baseline_p50"]
            result["rank50_no_rules_ms"]["tokenizer+sorter"] = path
            log(f"rank-50 without rules, tokenizer + sorter: p50 {path['now_p50']:.3f} ms now vs "
                f"{path['baseline_p50']:.3f} ms at {baseline} ({path['p50_ratio']:.2f}x)")
        client.close()
    import os

    result.update(when=time.strftime("%Y-%m-%d %H:%M:%S"), load_average_1m=os.getloadavg()[0], cpus=os.cpu_count())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    return result
