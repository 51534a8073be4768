"""Client library for the `rank` ensemble over gRPC or HTTP (KServe v2).

    from shoprank.serving.client import RankClient
    with RankClient("127.0.0.1:8001", protocol="grpc") as client:
        for hit in client.rank("cordless drill", ["DEWALT 20V drill", "white paint"], top_k=10):
            print(hit.index, hit.score, hit.text)

Feedback (online learning, see shoprank.online): give the client a FeedbackStore
(shoprank.online.feedback) and every rank() call sends a request id (KServe v2 `id`, echoed by
the server), records what was shown, and returns a RankedList carrying that id; report what the
shopper did with record_event(request_id, position, kind):

    with FeedbackStore("artifacts/feedback/feedback.sqlite") as store, \
            RankClient(feedback=store, explore_share=0.05) as client:
        hits = client.rank("cordless drill", candidates, top_k=10, user_id=session_token)
        ...  # show hits in this order (it is random for the exploration share)
        client.record_event(hits.request_id, position=2, kind="click")
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import config
from ..errors import RankError

PROTOCOLS = ("grpc", "http")


@dataclass(frozen=True)
class Ranked:
    index: int    # position in the request's candidates
    text: str
    score: float  # click probability


class RankedList(list):
    """rank()'s result: a plain list of Ranked, best first (in random order when randomized),
    plus the request id the server echoed and whether the order was randomized."""

    def __init__(self, items=(), request_id: str | None = None, randomized: bool = False):
        super().__init__(items)
        self.request_id = request_id
        self.randomized = randomized


@dataclass(frozen=True)
class Shown:
    """One candidate as a shopper saw it: what a feedback store records per position."""

    candidate_index: int
    text: str
    score: float | None = None


@dataclass(frozen=True)
class RankResponse:
    """rank_products()'s result: what the server returned for a request with ids and/or rules."""

    indices: np.ndarray                  # positions in the request's candidates, best first
    scores: np.ndarray                   # click probability of each
    final_scores: np.ndarray | None      # the score rules ordered by (with rules)
    trace: dict | None                   # columns per returned item: index, id, relevance, final, moved_by, ...
    randomized: bool | None              # exploration shuffled the page (with an explore rule)
    request_id: str


def full_trace(trace: dict, indices, scores, final, ids=None) -> dict:
    """The sorter's TRACE with the columns it does not repeat put back from the other outputs:
    index (INDICES), relevance (SCORES), final (FINAL_SCORES, rounded as the trace's own
    numbers) and id (the ids the request sent, which the server never echoes)."""
    out = {"index": np.asarray(indices).reshape(-1).tolist()}
    if ids is not None:
        out["id"] = [_text(ids[i]) for i in out["index"]]
    out["relevance"] = np.round(np.asarray(scores, dtype=np.float64).reshape(-1), 6).tolist()
    if final is not None:
        out["final"] = np.round(np.asarray(final, dtype=np.float64).reshape(-1), 6).tolist()
    return {**out, **trace}


def new_request_id() -> str:
    return uuid.uuid4().hex


def connect(url: str, protocol: str, timeout_s: float):
    """(tritonclient module, InferenceServerClient) for `url` over gRPC or HTTP; HTTP's network
    and connection timeouts are `timeout_s` (gRPC takes its timeout per call)."""
    if protocol == "grpc":
        import tritonclient.grpc as api
    else:
        import tritonclient.http as api
    kwargs = {} if protocol == "grpc" else {"network_timeout": timeout_s, "connection_timeout": timeout_s}
    return api, api.InferenceServerClient(url, **kwargs)


def default_url(protocol: str, host: str = config.HOST) -> str:
    return f"{host}:{config.GRPC_PORT if protocol == 'grpc' else config.HTTP_PORT}"


RANKER_COUNTS = ("success", "compute_infer", "cache_hit", "cache_miss")


def ranker_counts(grpc_url: str, model: str = config.RANKER_MODEL) -> dict[str, int]:
    """Triton's counters of `model` summed over its loaded versions (a version's counts go with it
    when it is unloaded): requests per RANKER_COUNTS statistic, and "executions" (engine calls,
    merged requests counting once)."""
    _, client = connect(grpc_url, "grpc", 10.0)
    try:
        rows = client.get_inference_statistics(model, as_json=True)["model_stats"]
    finally:
        client.close()
    counts = {key: sum(int(r["inference_stats"].get(key, {}).get("count", 0)) for r in rows) for key in RANKER_COUNTS}
    return {**counts, "executions": sum(int(r.get("execution_count", 0)) for r in rows)}


class TritonClient:
    """One connection to a served model over gRPC or HTTP, closed by `with`; _infer() turns
    tritonclient's exceptions into RankError (status, retryable)."""

    def __init__(self, url: str | None, protocol: str, timeout_s: float, model: str):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        self.url = url or default_url(protocol)
        self._api, self._client = connect(self.url, protocol, timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._client.close()

    def _infer(self, inputs, outputs, request_id: str = ""):
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            return self._client.infer(self.model, inputs, outputs=outputs, request_id=request_id, **kwargs)
        except Exception as exc:  # tritonclient raises InferenceServerException
            message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
            status = exc.status() if hasattr(exc, "status") and callable(exc.status) else None
            raise RankError(message, None if status is None else str(status)) from None


class RankClient(TritonClient):
    VERSION_CACHE_S = 2.0  # how stale the ranker version recorded with an impression may be

    def __init__(self, url: str | None = None, protocol: str = "grpc", timeout_s: float = 60.0,
                 model: str = config.ENSEMBLE_MODEL, feedback=None, explore_share: float = 0.0,
                 seed: int | None = None):
        """feedback: a shoprank.online.feedback.FeedbackStore (or None: nothing is recorded).
        explore_share: share of rank() calls whose returned order is shuffled (and recorded as
        randomized): the exploration traffic that position-bias estimation needs."""
        if not 0.0 <= explore_share <= 1.0:
            raise ValueError(f"explore_share must be in [0, 1], got {explore_share}")
        super().__init__(url, protocol, timeout_s, model)
        self.feedback, self.explore_share = feedback, explore_share
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._version = (None, 0.0)  # (ranker version, when looked up)

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model))
        except Exception:
            return False

    def infer_raw(self, query, candidates: Sequence, top_k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(INDICES, SCORES). Strings are UTF-8 encoded; bytes are sent as they are."""
        indices, scores, _ = self.infer_with_id(query, candidates, top_k)
        return indices, scores

    def infer_with_id(self, query, candidates: Sequence, top_k: int = 0, request_id: str | None = None,
                      user_id: str | None = None, user_context: Sequence | None = None
                      ) -> tuple[np.ndarray, np.ndarray, str]:
        """(INDICES, SCORES, the request id the server echoed). A request id is generated when
        none is given; it travels as the KServe v2 request `id`. user_id / user_context: the
        optional shopper inputs (USER_ID, USER_CONTEXT; docs/personalization.md)."""
        request_id = request_id or new_request_id()
        api = self._api
        tensors = [(config.QUERY, _bytes_array([query]), "BYTES"),
                   (config.CANDIDATES, _bytes_array(candidates), "BYTES"),
                   (config.TOP_K, np.array([top_k], dtype=np.int32), "INT32")]
        for name, values in ((config.USER_ID, None if user_id is None else [user_id]),
                             (config.USER_CONTEXT, user_context)):
            if values is not None and len(values):
                tensors.append((name, _bytes_array(values), "BYTES"))
        inputs = infer_inputs(api, tensors)
        outputs = [api.InferRequestedOutput(config.INDICES), api.InferRequestedOutput(config.SCORES)]
        result = self._infer(inputs, outputs, request_id)
        response = result.get_response()
        echoed = response.id if self.protocol == "grpc" else response.get("id", "")
        return result.as_numpy(config.INDICES), result.as_numpy(config.SCORES), echoed or request_id

    def rank_products(self, query: str, ids: Sequence[str] | None = None, *, texts: Sequence[str] | None = None,
                      top_k: int = 0, rules: dict | None = None, request_id: str | None = None) -> RankResponse:
        """Rank product ids (resolved against the server's catalog) and/or texts, with optional
        business rules (shoprank.serving.rules); every output the server produced comes back."""
        import json

        api, request_id = self._api, request_id or new_request_id()
        tensors = [(config.QUERY, _bytes_array([query]), "BYTES"), (config.TOP_K, np.array([top_k], np.int32), "INT32")]
        if texts is not None:
            tensors.append((config.CANDIDATES, _bytes_array(texts), "BYTES"))
        if ids is not None:
            tensors.append((config.CANDIDATE_IDS, _bytes_array(ids), "BYTES"))
        if rules is not None:
            text = rules if isinstance(rules, (str, bytes)) else json.dumps(rules)
            tensors.append((config.RULES, _bytes_array([text]), "BYTES"))
        result = self._infer(infer_inputs(api, tensors), None, request_id)
        trace, randomized = result.as_numpy(config.TRACE), result.as_numpy(config.RANDOMIZED)
        indices, scores, final = (result.as_numpy(name) for name in (config.INDICES, config.SCORES,
                                                                      config.FINAL_SCORES))
        if trace is not None:
            trace = full_trace(json.loads(_text(trace.reshape(-1)[0])), indices, scores, final, ids)
        return RankResponse(indices, scores, final, trace,
                            None if randomized is None else bool(randomized.reshape(-1)[0]), request_id)

    def rank(self, query: str, candidates: Sequence[str], top_k: int = 0, *, request_id: str | None = None,
             user_id: str | None = None, user_context: Sequence[str] | None = None,
             randomize: bool | None = None) -> RankedList:
        """Candidates best first, with their click probabilities (top_k 0 = all).

        With a feedback store the shown list is recorded under the request id. randomize=True
        shuffles the returned order (exploration); None: shuffle for `explore_share` of calls.
        user_id must be an opaque session token, never personal data; it is sent as USER_ID (the
        server personalizes when it serves a personal head) and logged as a keyed pseudonym.
        user_context: recent behaviour, most recent first (USER_CONTEXT)."""
        indices, scores, rid = self.infer_with_id(query, candidates, top_k, request_id, user_id, user_context)
        hits = [Ranked(int(i), _text(candidates[int(i)]), float(s)) for i, s in zip(indices, scores)]
        with self._rng_lock:
            if randomize is None:
                randomize = self.explore_share > 0 and self._rng.random() < self.explore_share
            if randomize:
                self._rng.shuffle(hits)
        if self.feedback is not None:
            self.feedback.record_impression(rid, _text(query), [Shown(h.index, h.text, h.score) for h in hits],
                                            user_id=user_id, model_version=self._cached_version(),
                                            randomized=bool(randomize))
        return RankedList(hits, rid, bool(randomize))

    def record_event(self, request_id: str, position: int, kind: str = "click") -> bool:
        """Record what the shopper did at a shown position (0 = top) of a rank() result:
        click, add_to_cart or purchase. False when the store dropped it (queue full)."""
        if self.feedback is None:
            raise RuntimeError("this RankClient has no feedback store: RankClient(..., feedback=FeedbackStore(path))")
        return self.feedback.record_event(request_id, position, kind)

    def ranker_version(self, ranker: str = config.RANKER_MODEL) -> int | None:
        """The highest READY version of the ranker (what the ensemble's step `-1` serves), from
        the model's metadata: the repository index is an admin API, closed to inference callers."""
        try:
            meta = self._client.get_model_metadata(ranker, **({"as_json": True} if self.protocol == "grpc" else {}))
        except Exception:
            return None
        ready = [int(v) for v in meta.get("versions", []) if str(v).isdigit()]
        return max(ready) if ready else None

    def _cached_version(self) -> int | None:
        # Looked up at most every VERSION_CACHE_S: exact except within that window of a swap.
        version, when = self._version
        if time.monotonic() - when > self.VERSION_CACHE_S:
            version = self.ranker_version()
            self._version = (version, time.monotonic())
        return version


def scores_in_request_order(indices: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """The SCORES of a TOP_K 0 response put back on their candidates: one click probability per
    candidate, in the order the request sent them."""
    out = np.zeros(count, dtype=np.float32)
    out[np.asarray(indices, dtype=np.int64)] = scores
    return out


def infer_inputs(api, tensors: Sequence[tuple[str, np.ndarray, str]]) -> list:
    """tritonclient InferInputs (of the `api` module, grpc or http) from (name, array, datatype)."""
    inputs = []
    for name, array, dtype in tensors:
        inputs.append(api.InferInput(name, list(array.shape), dtype))
        inputs[-1].set_data_from_numpy(array)
    return inputs


def _bytes_array(values: Sequence) -> np.ndarray:
    return np.array([v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values], dtype=np.object_)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
