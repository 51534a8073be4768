"""How `make bench` measures: sequential latency interleaved across systems, throughput with
concurrent clients in two passes, quality on the validation queries, and servers' peak memory.
Timings are measurements, never assertions."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...data.requests import Request
from ...data.split import query_groups
from ...quality import metrics
from ..fmt import fmt
from .systems import RankFn, System


class RssSampler:
    """Peak resident memory of a process tree (a server and its children, e.g. Python stubs),
    sampled every `period` seconds while running."""

    def __init__(self, pids: Callable[[], list[int]], period: float = 0.25):
        self.pids, self.period = pids, period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        for pid in self.pids():
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)
        return total

    def _run(self):
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def _percentiles(latencies_s: list[float]) -> dict:
    ms = np.asarray(latencies_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "n": int(ms.size)}


SEQUENTIAL_BLOCK = 10  # requests a system gets in a row before the next system's turn


def measure_sequential(ranks: dict[str, RankFn], requests: list[Request], warmup: list[Request],
                       block: int = SEQUENTIAL_BLOCK) -> dict[str, list[float]]:
    """Sequential latencies of several systems on the same requests, interleaved in blocks:
    round r gives each system the r-th block of requests, in an order rotated each round, after
    one untimed request (caches warm again after the previous system). Background load that
    comes and goes then hits every system alike instead of whichever ran at that moment."""
    keys = list(ranks)
    for key in keys:
        for r in warmup:
            ranks[key](r.query, r.texts)
    latencies = {key: [] for key in keys}
    blocks = [requests[i:i + block] for i in range(0, len(requests), block)]
    for round_, chunk in enumerate(blocks):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            rank = ranks[key]
            first = warmup[round_ % len(warmup)]
            rank(first.query, first.texts)
            for r in chunk:
                start = time.perf_counter()
                rank(r.query, r.texts)
                latencies[key].append(time.perf_counter() - start)
    return latencies


def measure_throughput(system: System, requests: list[Request], clients: int) -> dict:
    """`clients` threads, each with its own client, work through the requests once (each
    request sent exactly once); throughput = requests / wall time from first send to last reply."""
    lock, next_index, latencies = threading.Lock(), [0], []
    barrier = threading.Barrier(clients + 1)

    def worker(slot):
        # Each thread makes its own client (the HTTP client is bound to its thread) and warms
        # its connection before the clock starts.
        try:
            rank = system.make_client()
            warm = requests[slot % len(requests)]
            rank(warm.query, warm.texts)
        finally:
            barrier.wait()
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(requests):
                return
            start = time.perf_counter()
            rank(requests[i].query, requests[i].texts)
            with lock:
                latencies.append(time.perf_counter() - start)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker, slot) for slot in range(clients)]
        barrier.wait()
        started = time.perf_counter()
        for f in futures:
            f.result()
        wall = time.perf_counter() - started
    return {"wall_s": wall, "requests": len(requests), "pairs": sum(len(r.texts) for r in requests),
            "latencies": latencies}


def measure_throughputs(systems: list[System], requests: list[Request], clients: int) -> dict:
    """Throughput of each system, one at a time, in two passes over halves of the requests:
    forward order, then reverse (A B C, C B A), so a load trend over the run evens out."""
    half = len(requests) // 2
    runs = {s.key: [] for s in systems}
    for part, order in ((requests[:half], systems), (requests[half:], systems[::-1])):
        for system in order:
            runs[system.key].append(measure_throughput(system, part, clients))
    out = {}
    for key, parts in runs.items():
        wall = sum(p["wall_s"] for p in parts)
        lat = [x for p in parts for x in p["latencies"]]
        out[key] = {"clients": clients, "req_s": sum(p["requests"] for p in parts) / wall,
                    "pairs_s": sum(p["pairs"] for p in parts) / wall, "wall_s": wall,
                    **{f"latency_{k}": v for k, v in _percentiles(lat).items() if k != "n"}}
    return out


def measure_quality(rank: RankFn, valid) -> np.ndarray:
    """The system's own scores of every validation row, one request per query (as served)."""
    scores = np.zeros(len(valid), dtype=np.float64)
    texts = valid["text"].to_numpy()
    for query, idx in query_groups(valid):
        _, s = rank(query, [texts[i] for i in idx])
        scores[idx] = s
    return scores


def measure(systems: list[System], workloads: dict[str, list[Request]], warmup: dict[str, list[Request]],
            clients: Sequence[int], valid, log=print, only: dict | None = None) -> dict:
    """Quality, interleaved sequential latency and throughput of all systems (all loaded and
    servers running at once, idle when not measured), plus each server's peak memory."""
    results = {s.key: {"label": s.label, "kind": s.kind, "engine": s.engine, "notes": s.notes} for s in systems}
    samplers = {s.key: RssSampler(s.server_pids) for s in systems if s.kind == "server"}
    for sampler in samplers.values():
        sampler.__enter__()
    try:
        ranks = {s.key: s.make_client() for s in systems}
        for s in systems:
            scores = measure_quality(ranks[s.key], valid)
            results[s.key]["ndcg@10"] = metrics.evaluate(valid, scores)["ndcg@10"]
            log(f"  {s.key:<24} NDCG@10 {fmt(results[s.key]['ndcg@10'])}")
        for name, requests in workloads.items():
            prefixes = (only or {}).get(name)
            chosen = [s for s in systems if not prefixes or any(s.key.startswith(p) for p in prefixes)]
            before = {s.key: s.step_stats() for s in chosen if s.step_stats}
            latencies = measure_sequential({s.key: ranks[s.key] for s in chosen}, requests, warmup[name])
            after = {s.key: s.step_stats() for s in chosen if s.step_stats}
            for s in chosen:
                entry = results[s.key][name] = _percentiles(latencies[s.key])
                if s.key in before:
                    entry["steps_ms"] = _step_breakdown(before[s.key], after[s.key])
                log(f"  {s.key:<24} {name}: p50 {entry['p50_ms']:.1f} ms, p95 {entry['p95_ms']:.1f} ms")
            for c in clients:
                for key, tp in measure_throughputs(chosen, requests, c).items():
                    results[key][name][f"c{c}"] = tp
                    log(f"  {key:<24} {name}: {c} clients {tp['pairs_s']:.0f} pairs/s")
    finally:
        for key, sampler in samplers.items():
            sampler.__exit__(None, None, None)
            results[key]["peak_rss_mb"] = sampler.peak / 2**20
    return results


def _step_breakdown(before: dict, after: dict) -> dict:
    """Mean server-side ms per request and step between two snapshots (a server serves gRPC
    and HTTP, so this covers the requests of both protocols over the sequential run)."""
    out = {}
    for model, stats in after.items():
        delta = {k: stats[k] - before.get(model, {}).get(k, 0) for k in stats}
        count = max(1, delta["requests"])
        out[model] = {"total": delta["success"] / count / 1e6, "queue": delta["queue"] / count / 1e6,
                      "compute": (delta["compute_input"] + delta["compute_infer"] + delta["compute_output"])
                      / count / 1e6, "requests": delta["requests"], "executions": delta["executions"]}
    return out
