"""Going live: make the running server serve a ranker version, and prove it.

Triton's explicit model control (see shoprank.serving.server): load the ranker, wait until the
new version is READY and the old one gone, then prove the ensemble routes to the new version
(its per-version inference count rises on a probe request); if not, the ensemble itself is
reloaded.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import config
from ..data.split import model_pairs, query_groups
from ..serving import admin
from ..serving.client import RankClient

PROBE_QUERIES = 12  # validation queries to draw probe requests from


def base_probe(model_dir: str | Path, groups: int = 2) -> list[tuple[str, list[str]]]:
    """A few validation queries with their products: requests that prove which version serves."""
    valid = model_pairs(model_dir, "valid", limit_queries=PROBE_QUERIES)
    texts = valid["text"].to_numpy()
    return [(q, texts[idx].tolist()) for q, idx in query_groups(valid) if len(idx) >= 2][:groups]


def _ranker_states(client, headers: dict) -> dict[int, str]:
    index = client.get_model_repository_index(headers=headers, as_json=True).get("models", [])
    return {int(m["version"]): m.get("state", "") for m in index
            if m.get("name") == config.RANKER_MODEL and str(m.get("version", "")).isdigit()}


def _version_count(client, version: int) -> int:
    stats = client.get_inference_statistics(config.RANKER_MODEL, str(version), as_json=True)["model_stats"]
    return int(stats[0]["inference_stats"]["success"].get("count", 0)) if stats else 0


def activate(url: str, version: int, probe=None, timeout_s: float = 120.0, admin_key: str | None = None) -> dict:
    """Make the server serve ranker `version` (the newest in the repository) and prove it.

    Explicit model control: load the ranker (Triton loads the new version, reloads the ensemble
    that depends on it, and unloads the old version after its in-flight requests). Then wait
    until `version` is the only READY one and check that a probe request through the ensemble
    is executed by `version`; if it is not, reload the ensemble too. The load calls carry the
    server's admin key (`admin_key`, else the one `make serve` wrote: shoprank.serving.admin)."""
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    started = time.time()
    client = grpc.InferenceServerClient(url)
    try:
        try:
            live = client.is_server_live()
        except InferenceServerException:
            live = False
        if not live:
            return {"live": False, "note": f"no server at {url}: version {version} serves from its next start"}
        headers = admin.headers(admin_key, protocol="grpc")
        try:
            client.load_model(config.RANKER_MODEL, headers=headers)
        except InferenceServerException as exc:
            raise RuntimeError(f"the server at {url} refused to load {config.RANKER_MODEL} ({exc.message()}); "
                               "it must run with --model-control-mode=explicit (shoprank.serving.server's default): "
                               f"restart it (`make stop serve`) and it serves version {version}") from None
        deadline = time.time() + timeout_s
        while True:
            states = _ranker_states(client, headers)
            ready = sorted(v for v, s in states.items() if s == "READY")
            if ready == [version]:
                break
            if time.time() > deadline:
                raise TimeoutError(f"ranker versions READY after {timeout_s:.0f} s: {ready}, expected [{version}]")
            time.sleep(0.2)
        checks = {"live": True, "ranker_ready": ready, "ensemble_reloaded": False}
        if probe:
            with RankClient(url, "grpc") as rank:
                for _ in range(2):
                    before = _version_count(client, version)
                    for query, texts in probe:
                        # One text of its own per probe: never a response-cache hit, always scored.
                        rank.infer_raw(query, [*texts, f"activation probe {time.time_ns()}"], 0)
                    routed = _version_count(client, version) - before
                    if routed >= len(probe):
                        break
                    # The ensemble still routes elsewhere: reload it (not needed on Triton 2.51).
                    client.load_model(config.ENSEMBLE_MODEL, headers=headers)
                    checks["ensemble_reloaded"] = True
                else:
                    raise RuntimeError(f"the ensemble does not route to ranker version {version} after reloading it")
            checks["probe_requests_on_new_version"] = routed
        checks["seconds"] = round(time.time() - started, 2)
        return checks
    finally:
        client.close()
