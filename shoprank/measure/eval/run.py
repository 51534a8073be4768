"""`make eval`: ranking quality of every variant of one model, and of baselines, on the same rows.

Variants (shoprank.measure.eval.variants; one table row each):
  PyTorch FP32          the fine-tuned HF model, the reference
  ONNX FP32 / ORT INT8  the exported engines under ONNX Runtime, in-process, scored as served
  QDQ INT8              artifacts/onnx/model.qdq.onnx under ONNX Runtime, when built
  TensorRT              plans in artifacts/tensorrt, when built and a GPU is here
  served ensemble       the real path: one gRPC request per query with its judged products to
                        the Triton `rank` ensemble; scores are mapped back through INDICES, so a
                        truncation, padding or ordering bug between training and serving shows
Baselines on the same rows: random, BM25 and the zero-shot base model (baselines.py).

Metrics are shoprank.quality.metrics.evaluate's, with its skip rules: NDCG@10 over queries with
>= 2 judged products and a non-zero ideal DCG; MRR and P@5 over queries with >= 2 products and
a relevant one; AUC and RMSE pooled over all rows. RMSE is on the label scale (for Home Depot a
probability p is the rating 1 + 2p), and only for variants: baseline scores are not probabilities.
Every variant passes through the quality gate against the reference (shoprank.quality.gate).
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ... import config
from ...convert.tensorrt_env import gpu_problem, import_tensorrt
from ...data.load import load_pairs
from ...data.split import split_by_query
from ...model_card import read_model_card
from ...quality import metrics
from ...quality.gate import MAX_NDCG_DROP, judge
from ...serving.head import has_head, head_dir
from ...training.model import default_base_model
from ..fmt import fmt
from .baselines import BM25_B, BM25_K1, RANDOM_SEEDS, bm25_scores, random_metrics, zero_shot_scores
from .latency import add_latencies
from .table import Row, Table
from .variants import Variant, onnx_variant, pytorch_variant, self_served, served_variant, tensorrt_variant

REFERENCE = "pytorch-fp32"


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
    log(f"  {row.label}: NDCG@10 {fmt(row.ndcg)} ({row.seconds:.1f} s)")
    return row


def _tensorrt_plans(plan_dir: Path) -> list[Path]:
    return sorted(Path(plan_dir).glob("model.*.plan")) if Path(plan_dir).is_dir() else []


def evaluate_model(model_dir: str | Path, df, onnx_dir: str | Path | None = None,
                   plan_dir: str | Path | None = None, grpc_url: str | None = None,
                   served_engine: str = "int8", ports: Sequence[int] | None = None,
                   base_model: str | Path | None = None, serve: bool = True, zero_shot: bool = True,
                   max_ndcg_drop: float = MAX_NDCG_DROP, latency: bool = False,
                   bench_json: str | Path | None = None, work_dir: str | Path | None = None,
                   log=print) -> Table:
    """Score every variant and baseline on the rows of `df` and return the table.

    grpc_url: a running server's gRPC address (its engine is whatever it serves); without one
    and with `serve`, a tritonserver is started on `ports` (default: free ones) serving
    `served_engine` from onnx_dir, and stopped afterwards.
    latency: add rank-50 p50 per variant, from bench_json when it has the variant, else measured
    here in-process (LATENCY_REQUESTS sequential requests).
    """
    model_dir = Path(model_dir)
    onnx_dir = Path(onnx_dir) if onnx_dir else config.ONNX_DIR
    plan_dir = Path(plan_dir) if plan_dir else config.PLAN_DIR
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
    engines = {kind: config.onnx_file(kind, onnx_dir) for kind in config.ONNX_KINDS}
    for engine, key, label, how in (("fp32", "onnx-fp32", "ONNX FP32 (ORT)", "make onnx"),
                                    ("int8", "ort-int8", "ORT INT8 (dynamic)", "make int8"),
                                    ("qdq", "qdq-int8", "QDQ INT8 (ORT)", "make qdq")):
        path = engines[engine]
        add_variant(key, label, lambda p=path, k=key, name=label: onnx_variant(model_dir, p, k, name),
                    None if path.exists() else f"no {path} ({how})")

    if has_head(head_dir(model_dir)):  # the scoring head over the reference and the served engine
        add_variant("pytorch-fp32+head", "PyTorch FP32 + scoring head", lambda: pytorch_variant(model_dir, head=True))
        path = engines["int8"]
        add_variant("ort-int8+head", "ORT INT8 (dynamic) + scoring head",
                    lambda: onnx_variant(model_dir, path, "ort-int8", "ORT INT8 (dynamic)", head=True),
                    None if path.exists() else f"no {path} (make int8)")

    plans = _tensorrt_plans(plan_dir)
    if not plans:
        add_variant("tensorrt", "TensorRT", None, f"no plan in {plan_dir} (TensorRT needs an NVIDIA GPU: make engine)")
    for plan in plans:
        precision = plan.name.split(".")[1]
        key, label = f"tensorrt-{precision}", f"TensorRT {precision.upper()}"
        problem = gpu_problem() or import_tensorrt()[1]
        add_variant(key, label, lambda p=plan, k=key, name=label: tensorrt_variant(model_dir, p, k, name),
                    f"{plan} present but {problem}" if problem else None)

    with contextlib.ExitStack() as stack:
        served_label = "served ensemble (gRPC)"
        if grpc_url:
            add_variant("served", served_label,
                        lambda: served_variant(grpc_url, served_label, note=f"running server {grpc_url}"))
        elif serve:
            engine_path = engines.get(served_engine, Path(served_engine))
            served_label = (f"served ensemble (gRPC, {served_engine.upper()}"
                            f"{' + scoring head' if has_head(head_dir(model_dir)) else ''})")
            if not engine_path.exists():
                add_variant("served", served_label, None, f"no engine {engine_path} to serve")
            else:
                work = Path(work_dir) if work_dir else Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="shoprank-eval-")))

                def make():
                    endpoints = stack.enter_context(self_served(model_dir, engine_path, work, ports))
                    return served_variant(endpoints.grpc, served_label,
                                          note=f"self-started tritonserver, {engine_path.name}")
                add_variant("served", served_label, make)
        else:
            add_variant("served", served_label, None, "not requested (--no-serve)")
        latency_note = add_latencies(rows, variants, df, bench_json, log) if latency else None

    rand = Row("random", f"random order (mean of {RANDOM_SEEDS} seeds)", "baseline", random_metrics(df))
    rows.append(rand)
    log(f"  {rand.label}: NDCG@10 {fmt(rand.ndcg)}")
    rows.append(_scored(Row("bm25", f"BM25 (k1 {BM25_K1}, b {BM25_B})", "baseline"), bm25_scores, df, log))
    if zero_shot:
        base = base_model
        if base is None:
            base = default_base_model()
        rows.append(_scored(Row("zero-shot", "zero-shot base model (cosine, mean pooling)", "baseline",
                                note=_model_name(base)), lambda d: zero_shot_scores(d, base), df, log))

    reference = next((r for r in rows if r.key == REFERENCE and r.metrics), None) or \
        next((r for r in rows if r.key == "onnx-fp32" and r.metrics), None)
    gate_rows(rows, reference, df, max_ndcg_drop)
    _ndcg_differences(rows, reference, df)
    train_mean, mean_source = mean_label_baseline(model_dir, df)
    labels = df["label"].to_numpy(np.float64)
    gain_scale = float(df.attrs.get("max_gain", 1.0))
    summary = {
        "model": str(model_dir), "data": df.attrs.get("source"), "mapping": df.attrs.get("mapping"),
        "split": df.attrs.get("split"), "rows": len(df), "queries": int(df["query"].nunique()),
        "graded": gain_scale > 1, "relevant_gain": df.attrs.get("relevant_gain"),
        "random_ndcg": rand.ndcg, "reference": reference.key if reference else None,
        "reference_ndcg": reference.ndcg if reference else None, "max_ndcg_drop": max_ndcg_drop,
        "mean_label_rmse": float(np.sqrt(np.mean((train_mean - labels) ** 2))) * gain_scale,
        "mean_label": train_mean, "mean_label_from": mean_source, "latency": latency_note,
    }
    return Table(rows, summary)


def _model_name(path) -> str:
    """A readable name for a model folder (the bundled MiniLM lives in .../<package>/model)."""
    path = Path(str(path))
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def gate_rows(rows: list[Row], reference: Row | None, df, max_ndcg_drop: float) -> None:
    """Every scored variant through the quality gate against the reference row."""
    if reference is None:
        return
    for r in rows:
        if r.kind != "variant" or r.metrics is None or r is reference:
            continue
        r.max_abs_diff = float(np.max(np.abs(r.scores - reference.scores))) if len(df) else 0.0
        r.gate = judge(df, reference.scores, r.scores, r.label, max_ndcg_drop)


def _ndcg_differences(rows: list[Row], reference: Row | None, df) -> None:
    """Every scored row's NDCG@10 against the reference on the same queries, with a paired
    bootstrap interval: whether a variant's loss or a baseline's gap is more than noise."""
    if reference is None:
        return
    for r in rows:
        if r.scores is not None and r is not reference:
            r.ndcg_diff = metrics.ndcg_difference(df, reference.scores, r.scores)


def mean_label_baseline(model_dir: Path, df) -> tuple[float, str]:
    """(mean label, where it comes from): the constant predictor's value. For a validation split
    it is the mean of the matching training split (the data file re-split with the model's
    seed); for split "all", or rows that name no source file, there is no training split and the
    evaluated rows' own mean is used, and said so."""
    if df.attrs.get("split") == "valid" and df.attrs.get("source"):
        pairs = load_pairs(df.attrs["source"], df.attrs.get("mapping", "auto"))
        train, _ = split_by_query(pairs, seed=read_model_card(model_dir).get("seed", config.SEED))
        return float(train["label"].mean()), "training split"
    return float(df["label"].mean()), "evaluated rows: no training split for them"
