"""Rank-50 latency beside each variant's quality: from the benchmark's bench.json when it has the
variant, else measured here in-process (sequential requests on this machine as loaded)."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ... import config
from ...data.requests import RequestPool
from .table import Row
from .variants import Variant

LATENCY_REQUESTS = 20        # timed requests per variant when measuring in-process (after 3 warm-up)
# bench.json system keys (shoprank.measure.bench) whose rank-50 p50 stands for each variant.
BENCH_KEYS = {
    "pytorch-fp32": ("naive-pytorch",),
    "onnx-fp32": ("ort-fp32-inprocess",),
    "ort-int8": ("ort-int8-inprocess",),
    "qdq-int8": ("ort-qdq-inprocess",),
    "tensorrt-fp16": ("triton-trt-fp16-grpc", "tensorrt-fp16"),
    "tensorrt-int8": ("triton-trt-int8-grpc", "tensorrt-int8"),
    "served": ("triton-int8-grpc",),
}


def measure_rank50_ms(rank_one, requests, warmup: int = 3) -> float:
    """Median wall time of one rank-50 request, sequential, after `warmup` requests."""
    for r in requests[:warmup]:
        rank_one(r.query, list(r.texts))
    times = []
    for r in requests[warmup:]:
        started = time.perf_counter()
        rank_one(r.query, list(r.texts))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def add_latencies(rows: list[Row], variants: dict[str, Variant], df, bench_json, log) -> str:
    """Fill each row's rank-50 p50; returns where the numbers came from, for the report."""
    bench, note = {}, ""
    if bench_json and Path(bench_json).exists():
        report = json.loads(Path(bench_json).read_text())
        bench = report.get("rank50_p50_ms", {})
        meta = report.get("meta", {})
        note = (f"bench.json: `make bench` on model {meta.get('model', '?')}, "
                f"load average at start {meta.get('start', {}).get('loadavg', '?')}; ")
    pool = RequestPool(df)
    requests = pool.distinct(config.RANK50, min(LATENCY_REQUESTS + 3, len(pool.groups)))
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
                 f"{config.RANK50} product texts) per variant, in-process or over gRPC, on this machine as loaded at "
                 f"the time (load average {_loadavg()})")
    return note


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"
