"""Served rank-50 latency of the personalized path next to the anonymous one, in one run: the
same server (a personal head, a SQLite profile store of returning shoppers with full profiles),
requests interleaved, USER_ID's profile lookup included (`shoprank personalize --latency`)."""
from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np

from .. import config
from ..data.pseudonym import load_or_create_key, pseudonym
from ..serving.client import RankClient
from ..serving.personal import personal_dir
from ..serving.profiles import MAX_EVENTS, Behaviour, open_profiles
from ..serving.server import run_triton
from ..serving.triton.repository import build_repository
from .sessions import query_pool


def served_latency(cfg, head_dir: str | Path, requests: int = 120, shoppers: int = 200, log=print) -> dict:
    """{"non-personalized": p50 ms, "fusion": p50 ms, "ratio": fusion / anonymous, ...}."""
    work = Path(cfg.work_dir) / "latency"
    shutil.rmtree(work, ignore_errors=True)
    model = work / "model"
    shutil.copytree(cfg.model_dir, model)
    shutil.rmtree(personal_dir(model), ignore_errors=True)  # an installed head gives way to the one measured
    shutil.copytree(head_dir, personal_dir(model))
    key_file, store_path = work / "user_id.key", work / "profiles.sqlite"
    key = load_or_create_key(key_file)
    pool = query_pool(cfg.per_category, cfg.candidates)
    texts = [t for q in pool for t in q.texts]
    rnd = random.Random(0)
    store = open_profiles(store_path)
    users = [f"shopper-{i}" for i in range(shoppers)]
    for user in users:   # full profiles: the most work a lookup and the features can cost
        store.add(pseudonym(user, key), [Behaviour(float(i), rnd.choice(("click", "purchase", "query")),
                                                   rnd.choice(texts)) for i in range(MAX_EVENTS)])
    store.close()
    repo = build_repository(model, cfg.engine, work / "repo", target="python", profile_store=str(store_path),
                            pseudonym_key=key_file)
    timings: dict[str, list] = {"non-personalized": [], "fusion": []}
    with run_triton(repo, work_dir=work / "triton") as running, \
            RankClient(running.endpoints.grpc, "grpc") as client:
        for i in range(requests + 10):
            q = rnd.choice(pool)
            candidates = (q.texts * (config.RANK50 // len(q.texts) + 1))[: config.RANK50]
            for name, user in (("non-personalized", None), ("fusion", rnd.choice(users))):
                started = time.perf_counter()
                client.infer_with_id(q.query, candidates, 10, user_id=user)
                if i >= 10:  # warm-up
                    timings[name].append(1e3 * (time.perf_counter() - started))
    out = {name: float(np.percentile(v, 50)) for name, v in timings.items()}
    out.update({f"{name}_p99": float(np.percentile(v, 99)) for name, v in timings.items()})
    out["ratio"] = out["fusion"] / out["non-personalized"]
    out["requests"] = requests
    log(f"served rank-50 p50: anonymous {out['non-personalized']:.1f} ms, personalized {out['fusion']:.1f} ms "
        f"({out['ratio']:.2f}x)")
    return out
