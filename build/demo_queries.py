#!/usr/bin/env python3
"""Rank a few real queries over gRPC and HTTP against the running server and print the lists;
then time rank-50 requests (one query, 50 candidate products) over gRPC."""
import argparse
import statistics
import time

import _path  # noqa: F401

from shoprank import config, data
from shoprank.build_steps import validation_pairs
from shoprank.client import RankClient

EXAMPLE = ("cordless drill", ["DEWALT 20V MAX cordless drill driver kit", "Behr Premium Plus white interior paint",
                              "Milwaukee M18 brushless hammer drill", "drill bit set titanium 21-piece",
                              "Glacier Bay 30 in. bathroom vanity"])


def show(query, candidates, by_protocol):
    print(f"\nquery: {query!r} ({len(candidates)} candidates)")
    print(f"  {'#':>2}  {'gRPC':>6}  {'HTTP':>6}  product")
    grpc, http = by_protocol["grpc"], by_protocol["http"]
    for pos, (g, h) in enumerate(zip(grpc, http), 1):
        print(f"  {pos:>2}  {g.score:6.3f}  {h.score:6.3f}  {g.text[:90]}")
    same = [g.index for g in grpc] == [h.index for h in http]
    print(f"  gRPC and HTTP rankings {'identical' if same else 'DIFFER'}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=config.HOST)
    parser.add_argument("--http-port", type=int, default=config.HTTP_PORT)
    parser.add_argument("--grpc-port", type=int, default=config.GRPC_PORT)
    parser.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"))
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    clients = {"grpc": RankClient(f"{args.host}:{args.grpc_port}", "grpc"),
               "http": RankClient(f"{args.host}:{args.http_port}", "http")}
    valid = validation_pairs(args.model)
    groups = [(q, valid["text"].to_numpy()[idx].tolist()) for q, idx in data.query_groups(valid) if len(idx) >= 5]
    all_same = True
    for query, candidates in [EXAMPLE, *groups[: args.queries]]:
        ranked = {p: c.rank(query, candidates, args.top_k) for p, c in clients.items()}
        all_same &= show(query, candidates, ranked)

    # rank-50: each request one validation query against 50 product texts from the data.
    texts = valid["text"].drop_duplicates().tolist()
    queries = valid["query"].drop_duplicates().tolist()
    times = []
    for i in range(30):
        candidates = [texts[(i * 50 + j) % len(texts)] for j in range(50)]
        start = time.perf_counter()
        clients["grpc"].rank(queries[i % len(queries)], candidates, 10)
        times.append((time.perf_counter() - start) * 1000)
    times = sorted(times[5:])  # the first few warm the caches
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"\nrank-50 over gRPC, {len(times)} sequential requests: p50 {statistics.median(times):.1f} ms, "
          f"p95 {p95:.1f} ms")
    for c in clients.values():
        c.close()
    return 0 if all_same else 1


if __name__ == "__main__":
    raise SystemExit(main())
