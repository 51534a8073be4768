"""`make eval`: ranking quality of every variant of one model, and of baselines, on the same rows.

Variants (each scores every row of the evaluated frame; one table row each):
  PyTorch FP32          the fine-tuned HF model (shoprank.train.predict_probs), the reference
  ONNX FP32 / ORT INT8  the exported engines under ONNX Runtime, in-process, one call per query
                        with its judged products, tokenized and padded as served
  QDQ INT8              artifacts/onnx/model.qdq.onnx under ONNX Runtime, when built
  TensorRT              plans in artifacts/tensorrt, when built and a GPU is here
  served ensemble       the real path: one gRPC request per query with its judged products to
                        the Triton `rank` ensemble; scores are mapped back through INDICES, so a
                        truncation, padding or ordering bug between training and serving shows
Baselines on the same rows: random order (every metric averaged over RANDOM_SEEDS shuffles),
BM25 on the product text, and the zero-shot base model (cosine of mean-pooled embeddings).

Metrics are shoprank.metrics.evaluate's, with its skip rules: NDCG@10 over queries with >= 2
judged products and a non-zero ideal DCG; MRR and P@5 over queries with >= 2 products and a
relevant one; AUC and RMSE pooled over all rows. RMSE is on the label scale (for Home Depot a
probability p is the rating 1 + 2p), and only for variants: baseline scores are not probabilities.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import config, data, metrics
from .quality_gate import DEFAULT_MAX_NDCG_DROP

RANDOM_SEEDS = 10
BM25_K1, BM25_B = 1.2, 0.75
ZERO_SHOT_MAX_LENGTH = 128   # tokens per text for the bi-encoder baseline; titles are far shorter
RANK50 = 50                  # candidates per latency request: the benchmark's rank-50 workload
LATENCY_REQUESTS = 20        # timed requests per variant when measuring in-process (after 3 warm-up)
# bench.json system keys (shoprank.bench) whose rank-50 p50 stands for each variant.
BENCH_KEYS = {
    "pytorch-fp32": ("naive-pytorch",),
    "onnx-fp32": ("ort-fp32-inprocess",),
    "ort-int8": ("ort-int8-inprocess",),
    "qdq-int8": ("ort-qdq-inprocess",),
    "tensorrt-fp16": ("triton-trt-fp16-grpc", "tensorrt-fp16"),
    "tensorrt-int8": ("triton-trt-int8-grpc", "tensorrt-int8"),
    "served": ("triton-int8-grpc",),
}
REFERENCE = "pytorch-fp32"


# --- what is evaluated -------------------------------------------------------------------------
def eval_pairs(model_dir: str | Path, data_spec: str | None = None, split: str = "valid",
               limit_queries: int = 0):
    """The judgments to evaluate: by default the validation split (by query, the model card's
    seed) of the data the model was trained on; `data_spec` names another file ("shared",
    "default" or a path). split "all" evaluates every row (a file of withheld queries)."""
    from .modeling import read_model_card

    card = read_model_card(model_dir)
    if split not in ("valid", "all"):
        raise ValueError(f"split must be 'valid' or 'all', got {split!r}")
    spec = data_spec if data_spec else card.get("data")
    mapping = card.get("mapping", "auto") if not data_spec else "auto"
    pairs = data.load_pairs(data.resolve_data(spec), mapping)
    if split == "valid":
        _, pairs = data.split_by_query(pairs, seed=card.get("seed", config.SEED))
    if limit_queries:
        keep = set(pairs["query"].drop_duplicates().iloc[:limit_queries])
        attrs = dict(pairs.attrs)
        pairs = pairs[pairs["query"].isin(keep)].reset_index(drop=True)
        pairs.attrs = attrs
    pairs.attrs["split"] = split
    if len(pairs) == 0:
        raise ValueError(f"no rows to evaluate in {spec!r} (split {split})")
    return pairs


# --- baselines ---------------------------------------------------------------------------------
_TOKEN = re.compile(r"\w+")


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits ("1/2-in." -> ["1", "2", "in"])."""
    return _TOKEN.findall(str(text).lower())


class BM25:
    """Okapi BM25 over a corpus of product texts (each distinct text is one document).

    score(q, d) = sum over distinct query terms t of
        idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))   (never negative; Lucene's form)
    with N documents, n_t of them containing t, |d| and avgdl in tokens.
    """

    def __init__(self, corpus: Sequence[str], k1: float = BM25_K1, b: float = BM25_B):
        docs = [bm25_tokens(t) for t in dict.fromkeys(corpus)]  # distinct texts, first-seen order
        if not docs:
            raise ValueError("BM25 needs at least one document")
        self.k1, self.b, self.n = k1, b, len(docs)
        self.avgdl = sum(len(d) for d in docs) / self.n or 1.0
        self.doc_freq = Counter(t for d in docs for t in set(d))

    def idf(self, term: str) -> float:
        n_t = self.doc_freq.get(term, 0)
        return math.log(1.0 + (self.n - n_t + 0.5) / (n_t + 0.5))

    def score(self, query: str, text: str) -> float:
        tokens = bm25_tokens(text)
        tf, norm = Counter(tokens), self.k1 * (1.0 - self.b + self.b * len(tokens) / self.avgdl)
        return float(sum(self.idf(t) * tf[t] * (self.k1 + 1.0) / (tf[t] + norm)
                         for t in dict.fromkeys(bm25_tokens(query)) if tf[t]))


def bm25_scores(df, k1: float = BM25_K1, b: float = BM25_B) -> np.ndarray:
    """BM25 of each row's query against its product text, idf over the frame's distinct texts."""
    model = BM25(df["text"].tolist(), k1, b)
    return np.array([model.score(q, t) for q, t in zip(df["query"], df["text"])], dtype=np.float64)


def mean_pooled_embeddings(texts: Sequence[str], model, tokenizer, batch_size: int = 128,
                           max_length: int = ZERO_SHOT_MAX_LENGTH) -> np.ndarray:
    """Mean of the last hidden states over the attention mask (sentence-transformers' pooling)."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).float().numpy())
    width = model.config.hidden_size
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def zero_shot_scores(df, base_model: str | Path | None = None) -> np.ndarray:
    """Cosine of the base encoder's mean-pooled query and product-text embeddings (no fine-tuning).
    Each distinct query and text is embedded once."""
    from transformers import AutoModel, AutoTokenizer

    from .modeling import default_base_model

    base = str(base_model or default_base_model())
    tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    model = AutoModel.from_pretrained(base).eval()
    queries, q_pos = np.unique(df["query"].to_numpy(dtype=object).astype(str), return_inverse=True)
    texts, t_pos = np.unique(df["text"].to_numpy(dtype=object).astype(str), return_inverse=True)
    q_emb = _unit(mean_pooled_embeddings(queries.tolist(), model, tokenizer))
    t_emb = _unit(mean_pooled_embeddings(texts.tolist(), model, tokenizer))
    return np.einsum("ij,ij->i", q_emb[q_pos], t_emb[t_pos]).astype(np.float64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def random_metrics(df, seeds: int = RANDOM_SEEDS, k: int = 10) -> dict:
    """Every metric of evaluate() averaged over `seeds` random orders (seed i: the same shuffle
    as metrics.random_baseline, so NDCG equals it)."""
    runs = [metrics.evaluate(df, np.random.default_rng(seed).random(len(df)), k) for seed in range(seeds)]
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float) or value is None:
            values = [r[key] for r in runs if r[key] is not None]
            out[key] = float(np.mean(values)) if values else None
    return out


# --- variants ----------------------------------------------------------------------------------
@dataclass
class Variant:
    key: str
    label: str
    score: Callable[[object], np.ndarray]  # frame -> probability per row
    rank_one: Callable[[str, list], np.ndarray] | None = None  # one request, for latency
    note: str = ""


def pytorch_variant(model_dir: Path) -> Variant:
    from .modeling import load_cross_encoder, model_max_length, torch_logits
    from .tokenize import PairEncoder
    from .train import predict_probs

    model = load_cross_encoder(model_dir).eval()
    # As in training: pad to the longest pair of each batch.
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir), buckets=None)
    return Variant("pytorch-fp32", "PyTorch FP32", lambda df: predict_probs(model, encoder, df),
                   lambda q, texts: torch_logits(model, encoder.encode(q, texts)))


def onnx_variant(model_dir: Path, onnx_path: Path, key: str, label: str) -> Variant:
    from .engine import OrtEngine, sigmoid
    from .modeling import model_max_length
    from .tokenize import PairEncoder

    engine = OrtEngine(onnx_path)
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))

    def rank_one(query, texts):
        return engine.logits(encoder.encode(query, texts))

    return Variant(key, label, lambda df: sigmoid(per_request_logits(df, rank_one)), rank_one, note=str(onnx_path))


def per_request_logits(df, rank_one) -> np.ndarray:
    """Logits of every row, one engine call per query with its judged products: the batch a
    rank request makes (padded to its own bucket). Dynamic INT8 quantizes activations with
    scales taken from the whole batch, so batching several queries together would score
    differently from serving."""
    texts = df["text"].to_numpy(dtype=object)
    out = np.zeros(len(df), dtype=np.float32)
    for query, idx in data.query_groups(df):
        for start in range(0, len(idx), config.MAX_CANDIDATES):
            part = idx[start:start + config.MAX_CANDIDATES]
            out[part] = rank_one(query, texts[part].tolist())
    return out


def tensorrt_variant(model_dir: Path, plan: Path, key: str, label: str) -> Variant:
    """A TensorRT plan run through polygraphy's TrtRunner (NVIDIA GPU only)."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from .engine import sigmoid
    from .modeling import model_max_length
    from .tokenize import PairEncoder

    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
    runner = TrtRunner(EngineFromBytes(BytesFromPath(str(plan))))
    runner.activate()

    def logits(batch):
        feeds = {n: np.ascontiguousarray(batch[n], dtype=config.ID_DTYPE) for n in config.ENGINE_INPUTS}
        return np.asarray(runner.infer(feeds)[config.ENGINE_OUTPUT], dtype=np.float32).reshape(-1)

    def rank_one(query, texts):
        return logits(encoder.encode(query, texts))

    return Variant(key, label, lambda df: sigmoid(per_request_logits(df, rank_one)), rank_one, note=str(plan))


def served_scores(df, url: str, protocol: str = "grpc") -> np.ndarray:
    """One request per query with all its judged products (TOP_K 0); each returned score is put
    back on its row through INDICES, so the order the server returns cannot hide a bug."""
    from .client import RankClient

    texts = df["text"].to_numpy(dtype=object)
    out = np.full(len(df), np.nan, dtype=np.float64)
    with RankClient(url, protocol) as client:
        for query, idx in data.query_groups(df):
            for start in range(0, len(idx), config.MAX_CANDIDATES):
                part = idx[start:start + config.MAX_CANDIDATES]
                indices, scores = client.infer_raw(query, texts[part].tolist(), 0)
                if sorted(indices.tolist()) != list(range(len(part))):
                    raise RuntimeError(f"server returned INDICES {indices.tolist()} for {len(part)} candidates "
                                       f"of query {query!r}")
                out[part[indices]] = scores
    return out


def served_variant(url: str, label: str, protocol: str = "grpc", note: str = "") -> Variant:
    from .client import RankClient

    client = RankClient(url, protocol)

    def rank_one(query, texts):
        return client.infer_raw(query, texts, 0)[1]

    return Variant("served", label, lambda df: served_scores(df, url, protocol), rank_one, note)


@contextlib.contextmanager
def self_served(model_dir: Path, engine_path: Path, work_dir: Path, ports: Sequence[int] | None = None):
    """A tritonserver of our own, serving `engine_path` through the ensemble, for the duration."""
    from . import server as srv
    from .repository import build_repository

    repo = build_repository(model_dir, engine_path, Path(work_dir) / "model_repository", target="python")
    http, grpc, metrics_port = ports or srv.free_ports(3)
    endpoints = srv.Endpoints("127.0.0.1", http, grpc, metrics_port)
    proc = srv.start(repo, endpoints, log_path=Path(work_dir) / "tritonserver.log", run_dir=Path(work_dir) / "run")
    try:
        yield endpoints
    finally:
        srv.stop_process(proc)


# --- comparing trained models ------------------------------------------------------------------
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
        log(f"  {model_dir}: NDCG@10 {_f(result['ndcg@10'])} ({result['seconds']} s)")
    return results


def comparison_markdown(results: list[dict]) -> str:
    graded = any(r.get("rmse_grade") is not None for r in results)
    head = ["model", "NDCG@10", "Δ NDCG vs first [95% CI]", "MRR", "AUC", "RMSE (1–3)" if graded else "RMSE (label)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        delta = _interval(r.get("ndcg_diff")) or "—"
        rmse = r.get("rmse_grade") if graded else r.get("rmse_label")
        lines.append("| " + " | ".join([r["model"], _f(r["ndcg@10"]), delta, _f(r["mrr"]), _f(r["auc"]),
                                           _f(rmse)]) + " |")
    return "\n".join(lines)


# --- the table ---------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    label: str
    kind: str                     # "variant" or "baseline"
    metrics: dict | None = None   # metrics.evaluate's dict; None when skipped
    note: str = ""
    seconds: float | None = None  # scoring time of all rows (not a latency)
    gate: dict | None = None      # quality gate against FP32 (variants only)
    max_abs_diff: float | None = None  # largest |probability difference| against FP32
    latency_ms: float | None = None
    latency_source: str = ""
    ndcg_diff: dict | None = None   # metrics.ndcg_difference against FP32 (mean, 95% interval)
    scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def ndcg(self) -> float | None:
        return None if self.metrics is None else self.metrics.get("ndcg@10")


@dataclass
class Table:
    rows: list[Row]
    summary: dict

    def row(self, key: str) -> Row:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    @property
    def gates_failed(self) -> list[Row]:
        return [r for r in self.rows if r.gate and not r.gate["passed"]]

    def to_markdown(self) -> str:
        s = self.summary
        rmse_name = "RMSE (1–3)" if s["graded"] else "RMSE (label)"
        random_ndcg = s["random_ndcg"]
        head = ["variant", "NDCG@10", "lift vs random", "MRR", "P@5", "AUC", rmse_name,
                "Δ NDCG vs FP32 [95% CI]", f"gate ≤{s['max_ndcg_drop']}", "max |Δp| vs FP32",
                "rank-50 p50 ms", "queries NDCG / MRR·P@5", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            m = r.metrics
            if m is None:
                lines.append(f"| {r.label} | " + " | ".join(["—"] * (len(head) - 2)) + f" | skipped: {r.note} |")
                continue
            rmse = m.get("rmse_grade", m.get("rmse_label")) if r.kind == "variant" else None
            ref = s.get("reference_ndcg")
            delta = _interval(r.ndcg_diff) or (
                None if (r.kind != "variant" or ref is None or r.ndcg is None) else _f(r.ndcg - ref, "+.4f"))
            gate = "" if r.gate is None else ("pass" if r.gate["passed"] else "**FAIL**")
            lines.append("| " + " | ".join([
                r.label, _f(r.ndcg), _f(None if r.ndcg is None or random_ndcg is None else r.ndcg - random_ndcg, "+.4f"),
                _f(m.get("mrr")), _f(m.get("p@5")), _f(m.get("auc")), _f(rmse),
                delta or "—", gate, _f(r.max_abs_diff, ".1e"),
                _f(r.latency_ms, ".1f") + (f" ({r.latency_source})" if r.latency_source and r.latency_ms else ""),
                f"{m['queries']['ndcg@10']} / {m['queries']['mrr']}", r.note]) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        rows = []
        for r in self.rows:
            rows.append({"key": r.key, "label": r.label, "kind": r.kind, "metrics": r.metrics, "note": r.note,
                         "seconds": r.seconds, "gate": r.gate, "max_abs_diff_vs_fp32": r.max_abs_diff,
                         "rank50_p50_ms": r.latency_ms, "latency_source": r.latency_source,
                         "ndcg_diff_vs_reference": r.ndcg_diff})
        return {"summary": self.summary, "rows": rows}


def _f(value, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def _interval(diff: dict | None) -> str | None:
    """metrics.ndcg_difference as "mean [low, high]"; None when there is none."""
    if not diff or diff["mean"] is None:
        return None
    return f"{diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"


def _scored(row: Row, fn, df, log) -> Row:
    started = time.perf_counter()
    try:
        scores = np.asarray(fn(df), dtype=np.float64)
    except Exception as exc:  # one broken variant must not hide the others' numbers
        row.note = (row.note + "; " if row.note else "") + f"failed: {type(exc).__name__}: {exc}"
        log(f"  {row.label}: FAILED ({exc})")
        return row
    row.seconds = time.perf_counter() - started
    row.scores = scores
    row.metrics = metrics.evaluate(df, scores)
    log(f"  {row.label}: NDCG@10 {_f(row.ndcg)} ({row.seconds:.1f} s)")
    return row


def _tensorrt_plans(plan_dir: Path) -> list[Path]:
    return sorted(Path(plan_dir).glob("model.*.plan")) if Path(plan_dir).is_dir() else []


def evaluate_model(model_dir: str | Path, df, onnx_dir: str | Path | None = None,
                   plan_dir: str | Path | None = None, grpc_url: str | None = None,
                   served_engine: str = "int8", ports: Sequence[int] | None = None,
                   base_model: str | Path | None = None, serve: bool = True, zero_shot: bool = True,
                   max_ndcg_drop: float = DEFAULT_MAX_NDCG_DROP, latency: bool = False,
                   bench_json: str | Path | None = None, work_dir: str | Path | None = None,
                   log=print) -> Table:
    """Score every variant and baseline on the rows of `df` and return the table.

    grpc_url: a running server's gRPC address (its engine is whatever it serves); without one
    and with `serve`, a tritonserver is started on `ports` (default: free ones) serving
    `served_engine` from onnx_dir, and stopped afterwards.
    latency: add rank-50 p50 per variant, from bench_json when it has the variant, else measured
    here in-process (LATENCY_REQUESTS sequential requests).
    """
    from .build_steps import ONNX_DIR

    model_dir = Path(model_dir)
    onnx_dir = Path(onnx_dir) if onnx_dir else ONNX_DIR
    if plan_dir is None:
        from .tensorrt import PLAN_DIR as plan_dir
    rows: list[Row] = []
    variants: dict[str, Variant] = {}
    log(f"eval: {model_dir} on {df['query'].nunique()} queries / {len(df)} rows of "
        f"{df.attrs.get('source')} ({df.attrs.get('split', '?')} split)")

    def add_variant(key, label, make, skip_note=None):
        row = Row(key, label, "variant")
        rows.append(row)
        if skip_note:
            row.note = skip_note
            log(f"  {label}: skipped ({skip_note})")
            return
        try:
            variant = make()
        except Exception as exc:
            row.note = f"could not load: {type(exc).__name__}: {exc}"
            log(f"  {label}: skipped ({row.note})")
            return
        variants[key] = variant
        row.note = variant.note
        _scored(row, variant.score, df, log)

    add_variant("pytorch-fp32", "PyTorch FP32", lambda: pytorch_variant(model_dir))
    engines = {"fp32": onnx_dir / "model.fp32.onnx", "int8": onnx_dir / "model.int8.onnx",
               "qdq": onnx_dir / "model.qdq.onnx"}
    for engine, key, label, how in (("fp32", "onnx-fp32", "ONNX FP32 (ORT)", "make onnx"),
                                    ("int8", "ort-int8", "ORT INT8 (dynamic)", "make int8"),
                                    ("qdq", "qdq-int8", "QDQ INT8 (ORT)", "make qdq")):
        path = engines[engine]
        add_variant(key, label, lambda p=path, k=key, l=label: onnx_variant(model_dir, p, k, l),
                    None if path.exists() else f"no {path} ({how})")

    plans = _tensorrt_plans(plan_dir)
    if not plans:
        add_variant("tensorrt", "TensorRT", None, f"no plan in {plan_dir} (TensorRT needs an NVIDIA GPU: make engine)")
    for plan in plans:
        precision = plan.name.split(".")[1]
        key, label = f"tensorrt-{precision}", f"TensorRT {precision.upper()}"
        problem = None
        try:
            from .tensorrt import _import_tensorrt, gpu_problem

            problem = gpu_problem() or _import_tensorrt()[1]
        except Exception as exc:
            problem = str(exc)
        add_variant(key, label, lambda p=plan, k=key, l=label: tensorrt_variant(model_dir, p, k, l),
                    f"{plan} present but {problem}" if problem else None)

    with contextlib.ExitStack() as stack:
        served_label = "served ensemble (gRPC)"
        if grpc_url:
            add_variant("served", served_label,
                        lambda: served_variant(grpc_url, served_label, note=f"running server {grpc_url}"))
        elif serve:
            engine_path = engines.get(served_engine, Path(served_engine))
            served_label = f"served ensemble (gRPC, {served_engine.upper()})"
            if not engine_path.exists():
                add_variant("served", served_label, None, f"no engine {engine_path} to serve")
            else:
                work = Path(work_dir) if work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoprank-eval-")))

                def make():
                    endpoints = stack.enter_context(self_served(model_dir, engine_path, work, ports))
                    return served_variant(endpoints.grpc, served_label,
                                          note=f"self-started tritonserver, {engine_path.name}")
                add_variant("served", served_label, make)
        else:
            add_variant("served", served_label, None, "not requested (--no-serve)")
        latency_note = _add_latencies(rows, variants, df, bench_json, log) if latency else None

    rand = Row("random", f"random order (mean of {RANDOM_SEEDS} seeds)", "baseline", random_metrics(df))
    rows.append(rand)
    log(f"  {rand.label}: NDCG@10 {_f(rand.ndcg)}")
    rows.append(_scored(Row("bm25", f"BM25 (k1 {BM25_K1}, b {BM25_B})", "baseline"), bm25_scores, df, log))
    if zero_shot:
        base = base_model
        if base is None:
            from .modeling import default_base_model

            base = default_base_model()
        rows.append(_scored(Row("zero-shot", "zero-shot base model (cosine, mean pooling)", "baseline",
                                note=_model_name(base)), lambda d: zero_shot_scores(d, base), df, log))

    reference = next((r for r in rows if r.key == REFERENCE and r.metrics), None) or \
        next((r for r in rows if r.key == "onnx-fp32" and r.metrics), None)
    _gate(rows, reference, df, max_ndcg_drop)
    _ndcg_differences(rows, reference, df)
    train_mean = _train_mean_label(model_dir, df)
    labels = df["label"].to_numpy(np.float64)
    gain_scale = float(df.attrs.get("max_gain", 1.0))
    summary = {
        "model": str(model_dir), "data": df.attrs.get("source"), "mapping": df.attrs.get("mapping"),
        "split": df.attrs.get("split"), "rows": len(df), "queries": int(df["query"].nunique()),
        "graded": gain_scale > 1, "relevant_gain": df.attrs.get("relevant_gain"),
        "random_ndcg": rand.ndcg, "reference": reference.key if reference else None,
        "reference_ndcg": reference.ndcg if reference else None, "max_ndcg_drop": max_ndcg_drop,
        "mean_label_rmse": float(np.sqrt(np.mean((train_mean - labels) ** 2))) * gain_scale,
        "mean_label": train_mean, "latency": latency_note,
    }
    return Table(rows, summary)


def _model_name(path) -> str:
    """A readable name for a model folder (the bundled MiniLM lives in .../<package>/model)."""
    path = Path(str(path))
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def _gate(rows: list[Row], reference: Row | None, df, max_ndcg_drop: float) -> None:
    from .build_steps import BuildError
    from .quality_gate import gate_scores

    if reference is None:
        return
    for r in rows:
        if r.kind != "variant" or r.metrics is None or r is reference:
            continue
        r.max_abs_diff = float(np.max(np.abs(r.scores - reference.scores))) if len(df) else 0.0
        try:
            r.gate = gate_scores(df, reference.scores, r.scores, r.label, max_ndcg_drop)
        except BuildError as exc:
            drop = reference.ndcg - r.ndcg if (reference.ndcg is not None and r.ndcg is not None) else None
            r.gate = {"passed": False, "ndcg_drop": drop, "max_ndcg_drop": max_ndcg_drop, "error": str(exc)}


def _ndcg_differences(rows: list[Row], reference: Row | None, df) -> None:
    """Every scored row's NDCG@10 against the reference on the same queries, with a paired
    bootstrap interval: whether a variant's loss or a baseline's gap is more than noise."""
    if reference is None:
        return
    for r in rows:
        if r.scores is not None and r is not reference:
            r.ndcg_diff = metrics.ndcg_difference(df, reference.scores, r.scores)


def _train_mean_label(model_dir: Path, df) -> float:
    """Mean training label (the constant predictor); the evaluated rows' own mean when the
    frame is not the validation split of the model's data."""
    try:
        if df.attrs.get("split") == "valid":
            from .modeling import read_model_card

            card = read_model_card(model_dir)
            pairs = data.load_pairs(df.attrs["source"], df.attrs.get("mapping", "auto"))
            train, _ = data.split_by_query(pairs, seed=card.get("seed", config.SEED))
            return float(train["label"].mean())
    except Exception:
        pass
    return float(df["label"].mean())


# --- latency -----------------------------------------------------------------------------------
def rank50_requests(df, count: int, size: int = RANK50) -> list[tuple[str, list[str]]]:
    texts = df["text"].drop_duplicates().tolist()
    queries = df["query"].drop_duplicates().tolist()
    return [(queries[i % len(queries)], [texts[(i * size + j) % len(texts)] for j in range(size)])
            for i in range(count)]


def measure_rank50_ms(rank_one, requests, warmup: int = 3) -> float:
    """Median wall time of one rank-50 request, sequential, after `warmup` requests."""
    for query, texts in requests[:warmup]:
        rank_one(query, texts)
    times = []
    for query, texts in requests[warmup:]:
        started = time.perf_counter()
        rank_one(query, texts)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _add_latencies(rows: list[Row], variants: dict[str, Variant], df, bench_json, log) -> str:
    """Fill each row's rank-50 p50; returns where the numbers came from, for the report."""
    bench, note = {}, ""
    if bench_json and Path(bench_json).exists():
        report = json.loads(Path(bench_json).read_text())
        bench = report.get("rank50_p50_ms", {})
        meta = report.get("meta", {})
        note = (f"bench.json: `make bench` on model {meta.get('model', '?')}, "
                f"load average at start {meta.get('start', {}).get('loadavg', '?')}; ")
    requests = rank50_requests(df, LATENCY_REQUESTS + 3)
    for r in rows:
        if r.metrics is None:
            continue
        found = next((bench[k] for k in BENCH_KEYS.get(r.key, ()) if k in bench), None)
        if found is not None:
            r.latency_ms, r.latency_source = float(found), "bench.json"
        elif r.key in variants and variants[r.key].rank_one is not None:
            r.latency_ms, r.latency_source = measure_rank50_ms(variants[r.key].rank_one, requests), "measured here"
        if r.latency_ms is not None:
            log(f"  {r.label}: rank-50 p50 {r.latency_ms:.1f} ms ({r.latency_source})")
    if any(r.latency_source == "measured here" for r in rows):
        note += (f"measured here: median of {LATENCY_REQUESTS} sequential rank-50 requests (one query, "
                 f"{RANK50} product texts) per variant, in-process or over gRPC, on this machine as loaded at "
                 f"the time (load average {_loadavg()})")
    return note


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# --- report ------------------------------------------------------------------------------------
def markdown_report(table: Table, title: str = "Ranking quality", png: str | None = None) -> str:
    s = table.summary
    kind = "graded relevance" if s["graded"] else "clicks"
    rel = s.get("relevant_gain")
    lines = [f"## {title}", "",
             f"Model `{s['model']}`; data `{s['data']}` (mapping `{s['mapping']}`, {kind}), "
             f"{s['split']} split: {s['queries']} queries, {s['rows']} judged (query, product) pairs.", "",
             table.to_markdown(), "",
             "- NDCG@10: linear gain (" + ("relevance − 1" if s["graded"] else "click 0/1") +
             "), over queries with ≥ 2 judged products and a non-zero ideal DCG (first count). "
             f"MRR and P@5: relevant = gain ≥ {rel}" + (" (relevance ≥ 2.5)" if s["mapping"] == "homedepot" else "") +
             ", over queries with ≥ 2 products and a relevant one (second count). AUC and RMSE: pooled over all "
             "rows. Queries with one judged product are skipped by every per-query metric.",
             "- RMSE " + ("on the 1–3 rating scale (a probability p is the rating 1 + 2p)" if s["graded"]
                          else "of the probability against the 0/1 label") +
             f"; predicting the mean training label gives {s['mean_label_rmse']:.4f}. Baselines have no RMSE: "
             "their scores are not probabilities.",
             f"- Gate: a variant fails when its NDCG@10 is more than {s['max_ndcg_drop']} below "
             f"{s['reference'] or 'FP32'}'s on these rows (shoprank.quality_gate).",
             "- Δ NDCG vs FP32: mean per-query difference on the same queries, with a 95% paired bootstrap "
             "interval (1,000 resamples of the queries); an interval that contains 0 is no measurable "
             "difference on this many queries.",
             ]
    if s.get("latency"):
        lines.append(f"- Latency (rank-50 p50): {s['latency']}. Timings are for comparison between variants, "
                     "not a benchmark result.")
    if png:
        lines += ["", f"![quality vs rank-50 latency]({png})"]
    return "\n".join(lines) + "\n"


def plot_quality_latency(table: Table, path: str | Path, title: str = "") -> Path | None:
    """NDCG@10 against rank-50 p50 latency, one point per variant; baselines as lines."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in table.rows if r.kind == "variant" and r.ndcg is not None and r.latency_ms]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(12, 5))
    markers = iter("osD^vP*Xh")
    for r in points:
        ax.scatter(r.latency_ms, r.ndcg, s=60, marker=next(markers, "o"), zorder=3,
                   label=f"{r.label}: {r.ndcg:.4f} @ {r.latency_ms:.0f} ms ({r.latency_source})")
    styles = iter(["--", ":", "-."])
    for r in table.rows:
        if r.kind == "baseline" and r.ndcg is not None:
            ax.axhline(r.ndcg, linestyle=next(styles, "--"), color="grey", linewidth=1,
                       label=f"{r.label}: {r.ndcg:.4f}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.15)
    ax.set_xlabel("rank-50 latency, p50 (ms, log scale)")
    ax.set_ylabel("NDCG@10 (validation)")
    ax.set_title(title or f"quality vs latency: {Path(table.summary['model']).name}, {table.summary['queries']} queries",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training(model_dir: str | Path, path: str | Path | None = None) -> Path:
    """Validation curves from <model>/metrics.json (and train loss from <model>.runs when
    TensorBoard's reader is installed) into <model>/training.png (or `path`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_dir = Path(model_dir)
    summary = json.loads((model_dir / "metrics.json").read_text())
    history = summary["history"]
    if not history:
        raise ValueError(f"{model_dir}/metrics.json has no evaluation history")
    steps = [h["step"] for h in history]
    loss = _tensorboard_scalars(model_dir.with_name(model_dir.name + ".runs"), "train/loss")
    panels = 3 if loss else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    axes[0].plot(steps, [h["ndcg@10"] for h in history], marker="o", label="NDCG@10")
    mrr_axis = axes[0].twinx()  # MRR sits far lower than NDCG: its own scale keeps both readable
    mrr_axis.plot(steps, [h.get("mrr") for h in history], marker="s", color="C1", label="MRR (right)")
    mrr_axis.legend(fontsize=8, loc="lower right")
    axes[0].set_title("validation ranking")
    rmse_key = "rmse_grade" if "rmse_grade" in history[0] else "rmse_label"
    axes[1].plot(steps, [h[rmse_key] for h in history], marker="o", color="C3", label=rmse_key)
    axes[1].set_title("validation " + ("RMSE (1–3 scale)" if rmse_key == "rmse_grade" else "RMSE (label)"))
    if loss:
        s, v = zip(*loss)
        window = max(1, len(v) // 50)
        smooth = np.convolve(v, np.ones(window) / window, mode="valid")
        axes[2].plot(s, v, alpha=0.25, color="C2")
        axes[2].plot(s[window - 1:], smooth, color="C2", label=f"mean of {window}")
        axes[2].set_title("train BCE loss")
    best = summary.get("best") or {}
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if best.get("step"):
            ax.axvline(best["step"], color="grey", linestyle=":", linewidth=1)
    cfg = summary.get("config", {})
    fig.suptitle(f"{model_dir.name}: lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, max length "
                 f"{cfg.get('max_length')}, {cfg.get('epochs')} epochs, {summary.get('train_seconds')} s "
                 f"(dotted: kept checkpoint)", fontsize=9)
    fig.tight_layout()
    out = Path(path) if path else model_dir / "training.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    if not run_dir.is_dir():
        return []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]
