"""`make demo`'s personalization step: simulated shoppers' behaviour goes through the real path
(feedback log -> profile store) and one query is ranked by the running server for two of them
and for an anonymous request, so the pages can be compared side by side."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from .. import config
from ..data.pseudonym import DEFAULT_KEY_FILE, load_or_create_key, pseudonym
from ..serving.client import RankClient
from ..serving.profiles import open_profiles
from .feedback import FeedbackStore
from .profile_feed import feed_profiles
from .sessions import query_pool, simulate_days
from .shop import ShopConfig

DEMO_DIR = config.ARTIFACTS_DIR / "personalize" / "demo"


def serves_personal_head(url: str, protocol: str = "grpc") -> bool:
    """Whether the running server's sorter applies a personal head (its config names one)."""
    if protocol == "grpc":
        import tritonclient.grpc as api

        with api.InferenceServerClient(url) as client:
            params = client.get_model_config(config.SORTER_MODEL, as_json=True)["config"].get("parameters", {})
    else:
        import tritonclient.http as api

        with api.InferenceServerClient(url) as client:
            params = client.get_model_config(config.SORTER_MODEL).get("parameters", {})
    return bool(params.get("personal", {}).get("string_value"))


def _page(client, query, texts, user=None, top=3):
    indices, scores, _ = client.infer_with_id(query, texts, top, user_id=user)
    return [(texts[int(i)], float(s)) for i, s in zip(indices, scores)]


def show(url: str, protocol: str = "grpc", store_url: str = config.PROFILE_STORE,
         key_file: str | Path = DEFAULT_KEY_FILE, days: int = 4, seed: int = 7, log=print) -> dict:
    """Log `days` of simulated sessions (ordered by the running server), feed the profile store,
    then rank one query for two shoppers and anonymously; returns the three pages."""
    if not serves_personal_head(url, protocol):
        log(f"the server at {url} serves no personal head (none installed, or its gate refused it: see "
            "make personal-head / make personalize): every shopper gets the anonymous page")
        return {}
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    db = DEMO_DIR / "feedback.sqlite"
    db.unlink(missing_ok=True)
    pool = query_pool(per_category=4, candidates=20)
    with RankClient(url, protocol) as client:
        cache: dict = {}

        def scores(q):   # the logging policy: the served model's own order
            if q.query not in cache:
                indices, probs, _ = client.infer_with_id(q.query, q.texts)
                order = {int(i): float(p) for i, p in zip(indices, probs)}
                cache[q.query] = [order[i] for i in range(len(q.texts))]
            return np.asarray(cache[q.query])

        shop = ShopConfig(seed=seed, shoppers=40, new_per_day=0, sessions_per_day=150)
        with FeedbackStore(db, pseudonym_key_file=key_file) as store:
            requests, _ = simulate_days(shop, days, pool, scores, store)
        store = open_profiles(store_url)
        fed = feed_profiles(db, store)
        key = load_or_create_key(key_file)
        # Two shoppers with the most behaviour and a page of their own for a query they would type.
        counts: dict = {}
        for r in requests:
            counts[r.shopper.user_id] = counts.get(r.shopper.user_id, 0) + 1
        busiest = sorted(counts, key=counts.get, reverse=True)[:6]
        anonymous = None
        rnd = random.Random(seed)
        for a in busiest:
            for b in busiest:
                if a >= b or not store.recent(pseudonym(a, key)) or not store.recent(pseudonym(b, key)):
                    continue
                for q in rnd.sample(pool, min(20, len(pool))):
                    page_a, page_b = _page(client, q.query, q.texts, a), _page(client, q.query, q.texts, b)
                    if page_a[0][0] != page_b[0][0]:
                        anonymous = _page(client, q.query, q.texts)
                        result = {"query": q.query, a: page_a, b: page_b, "anonymous": anonymous, "fed": fed}
                        log(f"profile store {store_url}: {fed['shoppers']} simulated shoppers, {fed['events']} "
                            f"events from {len(requests)} logged sessions")
                        log(f'query "{q.query}", top 3 over {protocol}:')
                        for who, page in ((a, page_a), (b, page_b), ("anonymous", anonymous)):
                            log(f"  {who}:")
                            for text, score in page:
                                log(f"    {score:.3f}  {text}")
                        store.close()
                        return result
        store.close()
    log("no two simulated shoppers got different top results (is a personal head served? make personalize)")
    return {"fed": fed}
