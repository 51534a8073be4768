#!/usr/bin/env python3
"""Do the lexical pair features (shoprank.features) carry relevance signal, and what do they cost?

On the Home Depot judgments (../shared/data/), split by query as the cross-encoder was
(shoprank.data.split): the index is fitted on every title (the catalog) and on the training
queries only, so no validation query is in anything fitted. Reported on the validation queries:
each feature's Spearman correlation with relevance and the NDCG@10 of ranking by it alone; a
linear model and gradient-boosted trees on the features alone (trained on the training queries),
with and without each feature group; spelling corrections the index makes; and the time of
pair_features for 50 and 1000 candidates. Writes reports/features_signal.md.

    .venv/bin/python scripts/feature_signal.py [--out reports/features_signal.md] [--quick]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before sklearn: the machine is shared

import numpy as np

from shoprank import config
from shoprank.data.load import load_pairs, resolve_data
from shoprank.data.split import query_groups, split_by_query
from shoprank.features import FEATURE_NAMES, LexicalIndex, pair_features
from shoprank.features.index import FILE_NAME, TITLE_CACHE
from shoprank.features.pairs import FEATURE_GROUPS
from shoprank.quality import metrics

# Where a feature only speaks for some queries, its signal is also shown on those queries alone.
CONDITIONAL = {"query_numbers": ("number_share", "number_mismatch"), "query_codes": ("code_share",),
               "query_brand": ("brand_match", "brand_mismatch"), "query_corrected_words": ("fuzzy_share", "bm25_norm")}
# Reference numbers from docs/quality.md (same validation split).
CROSS_ENCODER = {"ndcg@10": 0.9252, "rmse": 0.471}


def features_of(index: LexicalIndex, df) -> np.ndarray:
    x = np.zeros((len(df), len(FEATURE_NAMES)), dtype=np.float32)
    texts = df["text"].to_numpy()
    for query, rows in query_groups(df):
        x[rows] = pair_features(index, query, texts[rows].tolist())
    return x


def quality(df, relevance_pred) -> dict:
    """NDCG@10 and RMSE (relevance units, 1..3) of predicted relevance on df."""
    pred = np.clip(np.asarray(relevance_pred, dtype=np.float64), 1.0, 3.0)
    out = metrics.evaluate(df, (pred - 1.0) / 2.0)
    return {"ndcg@10": out["ndcg@10"], "rmse": metrics.rmse(pred, 1.0 + df["gain"].to_numpy())}


def ranked_by(df, scores, seeds: int = 5) -> float:
    """NDCG@10 of ranking by one feature, ties broken at random (mean over seeds): a binary
    feature must not borrow the file's row order."""
    values = []
    for seed in range(seeds):
        jitter = np.random.default_rng(seed).random(len(df)) * 1e-6
        values.append(metrics.evaluate(df, np.asarray(scores, dtype=np.float64) + jitter)["ndcg@10"])
    return float(np.mean(values))


def fit_models(x_train, y_train, x_valid, valid, columns, quick: bool) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cols = [FEATURE_NAMES.index(c) for c in columns]
    linear = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_train[:, cols], y_train)
    trees = HistGradientBoostingRegressor(max_iter=150 if quick else 400, learning_rate=0.05, max_leaf_nodes=31,
                                          min_samples_leaf=40, l2_regularization=1.0, early_stopping=False,
                                          random_state=0).fit(x_train[:, cols], y_train)
    return {"linear (ridge)": quality(valid, linear.predict(x_valid[:, cols])),
            "gradient-boosted trees": quality(valid, trees.predict(x_valid[:, cols]))}


def _timed(fn, *args) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time (this thread) leaves out waiting for a core."""
    w0, c0 = time.perf_counter(), time.thread_time()
    fn(*args)
    return time.perf_counter() - w0, time.thread_time() - c0


def timing(index: LexicalIndex, queries: list[str], catalog: list[str], quick: bool) -> list[dict]:
    """Median ms of pair_features per request: warm (titles already analyzed, the steady state
    of a catalog that repeats) and cold (both caches cleared before each call)."""
    rng = random.Random(0)
    rows = []
    for n, warm_runs, cold_runs in ((50, 300, 40), (1000, 40, 8)):
        if quick:
            warm_runs, cold_runs = max(10, warm_runs // 5), max(3, cold_runs // 4)
        warm, cold, query_only = [], [], []
        for run in range(max(warm_runs, cold_runs)):
            query = queries[run % len(queries)]
            texts = rng.sample(catalog, n)
            if run < cold_runs:
                index.title.cache_clear()
                index.query.cache_clear()
                query_only.append(_timed(index.query, query))
                index.query.cache_clear()
                cold.append(_timed(pair_features, index, query, texts))
            if run < warm_runs:
                pair_features(index, query, texts)  # make sure all is cached
                warm.append(_timed(pair_features, index, query, texts))
        med = {name: (1e3 * statistics.median(w for w, _ in runs), 1e3 * statistics.median(c for _, c in runs))
               for name, runs in (("warm", warm), ("cold", cold), ("query", query_only))}
        rows.append({"candidates": n, "warm_runs": len(warm), "cold_runs": len(cold),
                     "warm_p90_ms": 1e3 * float(np.percentile([w for w, _ in warm], 90)), **med})
    return rows


def title_cost(index: LexicalIndex, catalog: list[str], n: int = 3000) -> dict:
    sample = catalog[:n]
    index.title.cache_clear()
    wall, cpu = _timed(lambda: [index.title(t) for t in sample])
    per_title_us = (1e6 * wall / len(sample), 1e6 * cpu / len(sample))
    index.title.cache_clear()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for t in sample:
        index.title(t)
    kb = (tracemalloc.get_traced_memory()[0] - before) / len(sample) / 1024
    tracemalloc.stop()
    index.title.cache_clear()
    return {"per_title_us": per_title_us, "kb_per_title": kb}


def fmt(v, digits=4) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shared", help="judgments file (default: the shared Home Depot data)")
    parser.add_argument("--out", default=str(config.REPORTS_DIR / "features_signal.md"))
    parser.add_argument("--quick", action="store_true", help="fewer trees and timing runs")
    args = parser.parse_args()

    pairs = load_pairs(resolve_data(args.data))
    train, valid = split_by_query(pairs)
    train_queries = list(dict.fromkeys(train["query"]))
    print(f"{len(pairs)} pairs: {train['query'].nunique()} training / {valid['query'].nunique()} validation queries",
          flush=True)

    t0 = time.perf_counter()
    index = LexicalIndex.fit(pairs["text"], train_queries)
    fit_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        size_kb = index.save(tmp).stat().st_size / 1024
        t0 = time.perf_counter()
        index = LexicalIndex.load(tmp)
        load_s = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    index.speller.neighbours("warmup")  # builds the deletes index
    speller_s = time.perf_counter() - t0
    speller_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    print(f"index: fit {fit_s:.1f} s, {size_kb:.0f} KiB", flush=True)

    t0 = time.perf_counter()
    x_train, x_valid = features_of(index, train), features_of(index, valid)
    feat_s = time.perf_counter() - t0
    assert np.isfinite(x_train).all() and np.isfinite(x_valid).all()
    y_train = 1.0 + train["gain"].to_numpy()
    y_valid = 1.0 + valid["gain"].to_numpy()
    print(f"features: {len(train) + len(valid)} pairs in {feat_s:.1f} s", flush=True)

    per_feature = []
    for j, name in enumerate(FEATURE_NAMES):
        col = x_valid[:, j]
        per_feature.append((name, metrics.spearman(col, y_valid), ranked_by(valid, col),
                            float(np.mean(col)), float(np.mean(col != 0))))

    conditional = []
    for cond, names in CONDITIONAL.items():
        mask = x_valid[:, FEATURE_NAMES.index(cond)] > 0
        for name in names:
            col = x_valid[mask, FEATURE_NAMES.index(name)]
            conditional.append((cond, int(mask.sum()), name, metrics.spearman(col, y_valid[mask]),
                                float(y_valid[mask][col > 0].mean()) if (col > 0).any() else None,
                                float(y_valid[mask][col == 0].mean()) if (col == 0).any() else None))

    models = {"all features": fit_models(x_train, y_train, x_valid, valid, FEATURE_NAMES, args.quick)}
    print("models: all features done", flush=True)
    for group, cols in FEATURE_GROUPS.items():
        keep = [c for c in FEATURE_NAMES if c not in cols]
        models[f"without {group}"] = fit_models(x_train, y_train, x_valid, valid, keep, args.quick)
        print(f"models: without {group} done", flush=True)
    mean_pred = quality(valid, np.full(len(valid), y_train.mean()))
    random_ndcg = metrics.random_baseline(valid)

    # Spelling: how often, and a few real corrections of validation queries.
    corrected = []
    for q in dict.fromkeys(valid["query"]):
        info = index.query(q)
        if info.n_corrected:
            corrected.append((q, index.correct(q)))
    asked = ["vynal windows", "vynal fence", "sheetrock", "pvc cemetn", "toliet seat", "milwakee drill",
             "closet maid", "rustoleum paint", "swamp cooler", "roybi"]
    asked_rows = [(q, index.correct(q), index.query(q).n_corrected) for q in asked]
    examples = random.Random(7).sample(corrected, min(25, len(corrected)))

    catalog = list(dict.fromkeys(pairs["text"]))
    valid_queries = list(dict.fromkeys(valid["query"]))
    times = timing(index, valid_queries, catalog, args.quick)
    cost = title_cost(index, catalog)

    lines = [
        "# Lexical pair features: signal and cost",
        "",
        "Written by `scripts/feature_signal.py` (features: `shoprank/features/`, docs/features.md).",
        f"Data: {args.data} ({len(pairs)} pairs), split by query with the project's split "
        f"(seed {config.SEED}): {train['query'].nunique()} training queries ({len(train)} pairs), "
        f"{valid['query'].nunique()} validation queries ({len(valid)} pairs). The index is fitted on all "
        f"{index.documents} distinct titles and on the training queries only.",
        "",
        "## Index",
        "",
        "| | |",
        "| --- | --- |",
        f"| titles (documents) | {index.documents} |",
        f"| keys with a document frequency (stems, numbers, codes) | {len(index.df)} |",
        f"| spelling vocabulary (words) | {len(index.speller.counts)} |",
        f"| query-only words (protected from hasty correction) | {len(index.query_words)} |",
        f"| brand phrases | {len(index.brands)} |",
        f"| file `{FILE_NAME}` | {size_kb:.0f} KiB |",
        f"| fit / load / spelling deletes index built on first use | {fit_s:.1f} s / {load_s:.2f} s / "
        f"{speller_s:.2f} s ({speller_mb:.0f} MiB) |",
        f"| features of all {len(pairs)} pairs (offline, caches cold at start) | {feat_s:.1f} s |",
        "",
        "## Each feature on the validation queries",
        "",
        "Spearman: pooled over all validation pairs, against relevance 1..3. NDCG@10: ranking each "
        "query's products by the feature alone, ties broken at random. Nonzero: share of pairs where "
        "the feature is not 0.",
        "",
        "| feature | Spearman | NDCG@10 alone | mean | nonzero |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rho, nd, mean, nonzero in per_feature:
        lines.append(f"| `{name}` | {fmt(rho, 3)} | {fmt(nd)} | {fmt(mean, 3)} | {nonzero:.2f} |")
    lines += [
        "",
        f"Query-only features (lengths, unknown/corrected words, mean idf, counts of numbers/codes, "
        f"query_brand) are constant within a query: their NDCG@10 alone is that of a random order "
        f"({fmt(random_ndcg)}); they help a pointwise model calibrate, not rank.",
        "",
        "Features that speak for some queries only, on those queries' pairs (mean relevance where the "
        "feature is > 0 and where it is 0):",
        "",
        "| pairs where | pairs | feature | Spearman | relevance if > 0 | relevance if 0 |",
        "| --- | --- | --- | --- | --- | --- |",
        *[f"| `{c}` > 0 | {n} | `{name}` | {fmt(rho, 3)} | {fmt(pos, 3)} | {fmt(zero, 3)} |"
          for c, n, name, rho, pos, zero in conditional],
        "",
        "## Models on the features alone (no cross-encoder)",
        "",
        "Trained on the training queries' pairs (target: relevance 1..3), evaluated on the validation "
        "queries; predictions clipped to 1..3. NDCG@10 as in docs/quality.md (linear gain, queries with "
        ">= 2 products).",
        "",
        "| model | features | NDCG@10 | RMSE |",
        "| --- | --- | --- | --- |",
    ]
    for features, by_model in models.items():
        for model, q in by_model.items():
            lines.append(f"| {model} | {features} | {fmt(q['ndcg@10'])} | {fmt(q['rmse'])} |")
    lines += [
        f"| predict the training mean | – | – | {fmt(mean_pred['rmse'])} |",
        f"| random order | – | {fmt(random_ndcg)} | – |",
        f"| fine-tuned cross-encoder alone (docs/quality.md) | – | {CROSS_ENCODER['ndcg@10']:.4f} | "
        f"{CROSS_ENCODER['rmse']:.3f} |",
        "| BM25 baseline of `make eval` (README) | – | 0.9173 | – |",
        "",
        "## Spelling correction",
        "",
        f"{len(corrected)} of {len(valid_queries)} validation queries have at least one word corrected "
        "(joined, split or replaced). The index learned it from the catalog's word frequencies and the "
        "training queries; none of these queries was seen in fitting.",
        "",
        "Asked about in issue 19:",
        "",
        "| query | as the features read it | words changed |",
        "| --- | --- | --- |",
    ]
    for q, c, n in asked_rows:
        lines.append(f"| {q} | {c} | {n} |")
    lines += ["", "A random sample of the validation queries' corrections (right and wrong ones):", "",
              "| query | as the features read it |", "| --- | --- |"]
    for q, c in examples:
        lines.append(f"| {q} | {c} |")
    lines += [
        "",
        "## Cost of `pair_features` (one core, pure Python + numpy)",
        "",
        "Median ms per request over real validation queries and random catalog titles, as wall time "
        "and as CPU time of the calling thread (the wall time less the waits for a core: the machine "
        "was shared with other heavy jobs, so wall times are upper bounds). Warm: every title already "
        "analyzed (the LRU cache; the steady state when the catalog repeats across requests). Cold: "
        "both caches cleared before each request, so the query and every title are analyzed.",
        "",
        "| candidates | warm: wall / CPU ms | warm wall p90 ms | cold: wall / CPU ms "
        "| query analysis (cold): wall / CPU ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in times:
        (ww, wc), (cw, cc), (qw, qc) = r["warm"], r["cold"], r["query"]
        lines.append(f"| {r['candidates']} | {ww:.3f} / {wc:.3f} ({r['warm_runs']} runs) | {r['warm_p90_ms']:.3f} | "
                     f"{cw:.2f} / {cc:.2f} ({r['cold_runs']} runs) | {qw:.3f} / {qc:.3f} |")
    lines += [
        "",
        f"Analyzing one title (cold): {cost['per_title_us'][0]:.0f} µs wall, {cost['per_title_us'][1]:.0f} µs "
        f"CPU; a cached analysis holds about "
        f"{cost['kb_per_title']:.1f} KiB (the default cache keeps {TITLE_CACHE} titles).",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
