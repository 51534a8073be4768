"""Head-heavy traffic with and without Triton's response cache on the ranker (`make bench`'s
head-heavy rows, `make cache-bench` alone): docs/caching.md.

Two servers of the same repository, one started with the response cache, run side by side.
Requests: a Zipf stream over real queries (shoprank.data.requests.RequestPool.head_heavy). The
cached server first takes a warm-up stretch of the stream (a cache that has served traffic
since the last ranker swap); then both get the next stretch, the same requests, with
`clients` concurrent clients, alternating (A B, B A: timing.measure_throughputs). A cache hit's
end-to-end latency: requests the warm cache holds, sequential, interleaved with the same
requests on the uncached server (their misses). Measurements, never assertions.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from ... import config
from ...data.requests import RequestPool
from ...errors import RankError
from ...serving.client import ranker_counts
from ...serving.server import free_ports
from .systems import System, TritonVariant
from .timing import _percentiles, measure_sequential, measure_throughput, measure_throughputs

HIT_REQUESTS = 20  # distinct cached requests timed for the hit latency, each HIT_ROUNDS times
HIT_ROUNDS = 5
WARM_CLIENTS = 2   # the warm-up stretch: enough to fill the cache without queueing at the ranker


def _counting(system: System, failures: dict) -> System:
    """The system with each failed request counted under its key (a refusal of the overloaded
    uncached server, say) instead of ending the run; throughput counts answered requests."""
    failures.setdefault(system.key, [])

    def make_client():
        rank = system.make_client()

        def counted(query, texts):
            try:
                return rank(query, texts)
            except RankError as exc:
                failures[system.key].append(str(exc))
                return None

        return counted

    return replace(system, make_client=make_client)


def _cache_counts(variant: TritonVariant) -> tuple[int, int]:
    """(cache lookups, cache hits) of the ranker (the cached step), from Triton's statistics."""
    counts = ranker_counts(variant.endpoints.grpc)
    return counts["cache_hit"] + counts["cache_miss"], counts["cache_hit"]


def head_heavy(model_dir: Path, engine_path: Path, engine: str, work_dir: Path, clients: int = 8,
               warm: int = 2000, requests: int = 800, size: int = config.RANK50,
               exponent: float = config.ZIPF_EXPONENT, cache_bytes: int = config.RESPONSE_CACHE_BYTES,
               data: str = "auto", log=print) -> dict:
    pool = RequestPool.from_spec(data)
    stream = pool.head_heavy(size, warm + requests, exponent)
    warm_part, measured = stream.requests[:warm], stream.requests[warm:]
    ports = free_ports(6)
    plain = TritonVariant(model_dir, engine_path, engine, tuple(ports[:3]), work_dir)
    cached = TritonVariant(model_dir, engine_path, engine, tuple(ports[3:]), work_dir, cache_bytes=cache_bytes)
    facts = {**stream.facts(), "data": pool.source, "candidates": size, "warm_requests": warm,
             "measured_requests": requests, "clients": clients, "engine": engine, "engine_file": str(engine_path),
             "cache_bytes": cache_bytes, "loadavg_start": list(os.getloadavg())}
    log(f"head-heavy: Zipf s={exponent} over {stream.queries} queries of {pool.source}: top 1% of queries "
        f"= {stream.top1_share:.1%} of requests; {warm} warm-up + {requests} measured requests, "
        f"{stream.distinct} distinct; engine {engine}")
    try:
        for variant in (plain, cached):
            variant.start()
        failures: dict[str, list[str]] = {}
        systems = [_counting(v.system(p), failures) for p in ("grpc", "http") for v in (plain, cached)]
        started = time.time()
        cold = measure_throughput(systems[1], warm_part, WARM_CLIENTS)  # the cached server, cold -> warm
        failures[systems[1].key].clear()  # the warm-up is not measured
        served, hits = _cache_counts(cached)
        facts["warm_up"] = {"hit_rate": hits / max(1, served), "req_s": cold["requests"] / cold["wall_s"],
                            "seconds": round(time.time() - started, 1)}
        before = _cache_counts(cached)
        throughput = measure_throughputs(systems, measured, clients)
        after = _cache_counts(cached)
        hit_rate = (after[1] - before[1]) / max(1, after[0] - before[0])
        # Hit latency: requests the warm cache holds, sequential, beside the uncached server's misses.
        held = list(dict.fromkeys(warm_part))[:HIT_REQUESTS] * HIT_ROUNDS
        latencies = measure_sequential({s.key: s.make_client() for s in systems}, held, held[:2])
    finally:
        for variant in (plain, cached):
            variant.stop()
    rows = {s.key: {"label": s.label, "cache": s.key.startswith(f"triton-{engine}-cache"),
                    "failed": len(failures[s.key]), "failures": sorted(set(failures[s.key]))[:3],
                    f"c{clients}": throughput[s.key], "sequential": _percentiles(latencies[s.key])}
            for s in systems}
    for row in rows.values():  # throughput counts answered requests only
        tp = row[f"c{clients}"]
        tp["req_s"] = (len(measured) - row["failed"]) / tp["wall_s"]
    ratio = {p: rows[f"triton-{engine}-cache-{p}"][f"c{clients}"]["req_s"] / rows[f"triton-{engine}-{p}"][
        f"c{clients}"]["req_s"] for p in ("grpc", "http")}
    hit_p50 = {p: rows[f"triton-{engine}-cache-{p}"]["sequential"]["p50_ms"] for p in ("grpc", "http")}
    facts["loadavg_end"] = list(os.getloadavg())
    return {"workload": facts, "hit_rate_measured": hit_rate, "systems": rows,
            "throughput_ratio": ratio, "hit_p50_ms": hit_p50,
            "miss_p50_ms": {p: rows[f"triton-{engine}-{p}"]["sequential"]["p50_ms"] for p in ("grpc", "http")},
            "targets": {"throughput": {"goal": f">= 3x the throughput without the cache at {clients} clients",
                                       "ratio": ratio, "met": min(ratio.values()) >= 3.0},
                        "hit_latency": {"goal": "p50 of a cache hit <= 3 ms end to end", "p50_ms": hit_p50,
                                        "met": max(hit_p50.values()) <= 3.0}}}


def markdown(section: dict) -> list[str]:
    """The head-heavy section of bench.md."""
    w = section["workload"]
    c = w["clients"]
    lines = ["## Head-heavy traffic: Triton's response cache (rank-50)", "",
             f"Queries drawn Zipf-like (exponent s = {w['zipf_exponent']}) over the {w['queries']} queries of "
             f"`{w['data']}`, each with fixed candidates: the top 1% of queries are {w['top1pct_share']:.1%} of "
             f"requests ({w['top1pct_share_sampled']:.1%} in this sample; {w['distinct_requests']} distinct "
             f"requests in {w['requests']}). Engine `{w['engine']}`. The cached server first served "
             f"{w['warm_requests']} requests of the stream (hit rate {w['warm_up']['hit_rate']:.0%}); "
             f"both servers then took the next {w['measured_requests']} with {c} clients, alternating "
             f"(cache hit rate there: {section['hit_rate_measured']:.0%}). Load average "
             f"{', '.join(f'{x:.2f}' for x in w['loadavg_start'])} at start, "
             f"{', '.join(f'{x:.2f}' for x in w['loadavg_end'])} at end.", "",
             f"| system | req/s @{c} | p50 ms @{c} | sequential p50 ms (cached requests) | failed |",
             "|---|---|---|---|---|"]
    for key, row in section["systems"].items():
        t = row[f"c{c}"]
        lines.append(f"| {row['label']} (`{key}`) | {t['req_s']:.1f} | {t['latency_p50_ms']:.1f} | "
                     f"{row['sequential']['p50_ms']:.2f} | {row['failed']} |")
    lines.append("")
    for t in section["targets"].values():
        detail = ", ".join(f"{p} {v:.2f}{'×' if 'ratio' in t else ' ms'}"
                           for p, v in (t.get("ratio") or t.get("p50_ms")).items())
        lines.append(f"- **{'met' if t['met'] else 'NOT met'}** — {t['goal']}: {detail}")
    return lines + [""]


def write(section: dict, out_dir: Path) -> Path:
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cache_bench.json").write_text(json.dumps(section, indent=2, default=float))
    path = out_dir / "cache_bench.md"
    path.write_text("\n".join(["# shoprank: head-heavy traffic and the response cache", "", *markdown(section)]))
    return path
