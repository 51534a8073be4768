"""`make head-bench`: what the scoring head costs a served request, side by side in one run.

Two tritonservers from the same model and engine, one repository with the head (the tokenizer
also computes the features, the sorter runs the head) and one without; rank-N requests sent
one at a time, alternating between the two so both see the same machine; client-side p50 / p99
of each and their ratio.
"""
from __future__ import annotations

import json
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ... import config
from ...data.requests import RequestPool
from ...serving.client import RankClient
from ...serving.server import run_triton
from ...serving.triton.repository import build_repository


def head_cost(model_dir: str | Path, engine: str | Path, requests: int = 200, size: int = 50,
              data: str = "auto", out: str | Path | None = None, log=print) -> dict:
    pool = RequestPool.from_spec(data)
    pool.check_size(size)
    timings = {"without head": [], "with head": []}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoprank-head-bench-")))
        clients = {}
        for name, head in (("without head", False), ("with head", True)):
            repo = build_repository(model_dir, engine, work / name.replace(" ", "-"), target="python", head=head)
            server = stack.enter_context(run_triton(repo, work_dir=work / f"triton-{name.replace(' ', '-')}"))
            clients[name] = stack.enter_context(RankClient(server.endpoints.grpc, "grpc"))
        rng = random.Random(0)
        draws = [pool.draw(rng, size) for _ in range(requests + 10)]
        for query, texts in draws[:10]:  # warm-up, not timed
            for client in clients.values():
                client.infer_raw(query, texts, config.MAX_CANDIDATES)
        for i, (query, texts) in enumerate(draws[10:]):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))  # neither always goes first
            for name in order:
                started = time.perf_counter()
                clients[name].infer_raw(query, texts, 10)
                timings[name].append(time.perf_counter() - started)

    def ms(values, q):
        return round(float(np.percentile(values, q)) * 1000, 2)

    rows = {name: {"p50_ms": ms(v, 50), "p99_ms": ms(v, 99), "requests": len(v)} for name, v in timings.items()}
    ratio = rows["with head"]["p50_ms"] / rows["without head"]["p50_ms"]
    report = {"model": str(model_dir), "engine": str(engine), "candidates": size, "rows": rows,
              "p50_ratio_with_over_without": round(ratio, 3)}
    for name, row in rows.items():
        log(f"  rank-{size} {name:<13} p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms")
    log(f"  head costs {100 * (ratio - 1):+.1f}% at p50 (target: at most +10%)")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    return report
