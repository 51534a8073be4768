"""The project's own metrics, reported by the Python-backend models through Triton's custom
metrics API (pb_utils.MetricFamily) on Triton's metrics port (/metrics), beside nv_inference_*:

    shoprank_model_initializations_total{model}   counter: initialize() calls of the model's
        instances (start-up, a stub restart, a reload or a new ranker version each add one)
    shoprank_model_start_time_seconds{model}      gauge: Unix time of the latest initialize();
        unlike the counter it also changes when the whole server restarts (the counter then
        comes back at the same value)
    shoprank_request_errors_total{model,kind}     counter: requests refused as invalid, by kind
        (ERROR_KINDS); every kind exists from start-up at 0, so rate() sees the first error
    shoprank_candidates_per_request_bucket{model,le} / _sum / _count   counters read as a
        histogram: candidates of each valid request (tokenizer)
    shoprank_score_bucket{model,le} / _sum / _count   counters read as a histogram: the click
        probability of every scored candidate (sorter)
    shoprank_profile_lookups_total{model,source}  counter: where each request's shopper behaviour
        came from (tokenizer with personalization; PROFILE_SOURCES): "outage" counts requests
        ranked as a cold start because the profile store did not answer (added at once; the
        other sources, one per request, at most once every FLUSH_S like the histograms)

Why neither histogram is a Triton HISTOGRAM: every observe() is a round trip from the stub
process to the server, one per value: a rank-1000 request would pay a thousand of them, and even
one per request is a visible share of a cached request's time. So the models count values into
buckets with numpy and add the counts to one counter per bucket (cumulative, labelled `le` like a
Prometheus histogram, so histogram_quantile() works), at most once every FLUSH_S seconds (a
burst's last second shows with the next request).

Recording never fails a request: an error in the metrics API is logged once and then ignored.
Only ModelMetrics needs Triton's stub (triton_python_backend_utils, imported when created); the
rest is plain numpy and is unit-tested without a server.
"""
from __future__ import annotations

import re
import time

import numpy as np

from ... import config

INITIALIZATIONS = "shoprank_model_initializations_total"
START_TIME = "shoprank_model_start_time_seconds"
REQUEST_ERRORS = "shoprank_request_errors_total"
CANDIDATES = "shoprank_candidates_per_request"
SCORE = "shoprank_score"  # + _bucket, _sum, _count
PROFILE_LOOKUPS = "shoprank_profile_lookups_total"
PROFILE_SOURCES = ("anonymous", "unknown", "profile", "context", "outage")

CANDIDATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, config.MAX_CANDIDATES)
# Click probability. Most candidates of a search are unlikely clicks, so the low end is finer.
SCORE_BUCKETS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
                 0.6, 0.7, 0.8, 0.9, 1.0)
FLUSH_S = 1.0

# kind -> what the RequestError message says (shoprank.serving.request words them); first match wins.
ERROR_KINDS = {
    "missing_input": r"^missing input ",
    "invalid_utf8": r"is not valid UTF-8",
    "query_shape": r"^QUERY must hold exactly one",
    "empty_query": r"^QUERY is empty",
    "no_candidates": r"^CANDIDATES is empty",
    "too_many_candidates": r"^too many CANDIDATES",
    "top_k_shape": r"^TOP_K must hold exactly one",
    "negative_top_k": r"^TOP_K must be >= 0",
    "other": r"",
}


def error_kind(exc: Exception) -> str:
    message = str(exc)
    return next(kind for kind, pattern in ERROR_KINDS.items() if re.search(pattern, message))


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus writes it (`le="0.05"`, `le="1"`, `le="+Inf"`)."""
    return "+Inf" if bound == float("inf") else f"{bound:g}"


class Buckets:
    """Cumulative bucket counts, sum and count of values, waiting to be added to the counters."""

    def __init__(self, bounds):
        self.bounds = np.array([*bounds, np.inf], dtype=np.float64)
        self.bounds32 = self.bounds.astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self.counts = np.zeros(len(self.bounds), dtype=np.int64)
        self.total = 0.0
        self.count = 0

    def add(self, values) -> None:
        # Compared in float32, the scores' own precision: a score of 0.1 falls in le="0.1"
        # (candidate counts up to 1,000 are exact in it).
        if np.isscalar(values):  # one value a request (candidates): no sort needed
            value = np.float32(values)
            self.counts += value <= self.bounds32
            self.total += float(value)
            self.count += 1
            return
        scores = np.asarray(values, dtype=np.float32).reshape(-1)
        # Cumulative like Prometheus: bucket i counts every score <= bounds[i].
        self.counts += np.searchsorted(np.sort(scores), self.bounds32, side="right")
        self.total += float(scores.sum(dtype=np.float64))
        self.count += len(scores)

    def labelled(self) -> list[tuple[str, int]]:
        return [(le_label(b), int(c)) for b, c in zip(self.bounds, self.counts)]


class ModelMetrics:
    """One model instance's metrics. Create it in initialize() (it counts the initialization) and
    keep it on the instance: the backend deletes a family when its Python object goes away.
    Ask for the metrics the model records, so their series exist at 0 from start-up."""

    def __init__(self, args: dict, *, errors: bool = False, candidates: bool = False, scores: bool = False,
                 profiles: bool = False):
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self.model = args["model_name"]
        self._logged = False
        self._families = {}  # name -> family, kept alive as long as their metrics
        self._errors, self._candidates, self._scores, self._profiles = {}, None, None, {}
        self._profile_counts, self._profile_flushed = {}, 0.0  # source -> requests not yet added
        labels = {"model": self.model}

        def create():
            self._started = (
                self._counter(INITIALIZATIONS, "initialize() calls of this model's instances "
                              "(start-up, stub restart, reload, new version)", labels),
                self._family(START_TIME, "Unix time of the latest initialize() of this model",
                             pb_utils.MetricFamily.GAUGE).Metric(labels=labels))
            self._started[0].increment(1)
            self._started[1].set(time.time())
            if errors:
                self._errors = {kind: self._counter(REQUEST_ERRORS, "requests refused as invalid, by kind",
                                                    {**labels, "kind": kind}) for kind in ERROR_KINDS}
            if candidates:
                self._candidates = _BucketCounters(self, CANDIDATES, CANDIDATE_BUCKETS, "valid requests",
                                                   "candidates")
            if scores:
                self._scores = _BucketCounters(self, SCORE, SCORE_BUCKETS, "scored candidates",
                                               "click probability")
            if profiles:
                self._profiles = {source: self._counter(PROFILE_LOOKUPS, "where each request's shopper behaviour "
                                                        "came from; outage = cold start, the store did not answer",
                                                        {**labels, "source": source}) for source in PROFILE_SOURCES}
        self._safely(create)

    # --- recording: each is a no-op for a metric not asked for, and never raises ----------------
    def error(self, exc: Exception) -> None:
        if self._errors:
            self._safely(lambda: self._errors[error_kind(exc)].increment(1))

    def candidates(self, count: int) -> None:
        if self._candidates is not None:
            self._safely(lambda: self._candidates.add(count))

    def profile(self, source: str) -> None:
        """Counted once per request, added to the counters at most once every FLUSH_S (each
        increment is a round trip from the stub to the server, which every request would pay);
        an outage at once, since an alert waits for it and it is rare."""
        if self._profiles:
            self._safely(lambda: self._count_profile(source))

    def _count_profile(self, source: str) -> None:
        self._profile_counts[source] = self._profile_counts.get(source, 0) + 1
        now = time.monotonic()
        if source != "outage" and now - self._profile_flushed < FLUSH_S:
            return
        for name, count in self._profile_counts.items():
            self._profiles[name].increment(count)
        self._profile_counts.clear()
        self._profile_flushed = now

    def probabilities(self, probabilities: np.ndarray) -> None:
        """Every candidate's click probability, computed already, into the score histogram."""
        if self._scores is not None:
            self._safely(lambda: self._scores.add(probabilities))

    # --- plumbing -------------------------------------------------------------------------------
    def _family(self, name: str, description: str, kind):
        if name not in self._families:
            self._families[name] = self._pb.MetricFamily(name=name, description=description, kind=kind)
        return self._families[name]

    def _counter(self, name: str, description: str, labels: dict):
        return self._family(name, description, self._pb.MetricFamily.COUNTER).Metric(labels=labels)

    def _safely(self, record) -> None:
        try:
            record()
        except Exception as exc:  # a metric must never fail the request (or the start-up) it describes
            if not self._logged:
                self._logged = True
                self._pb.Logger.log_warn(f"shoprank metrics off for {self.model}: {exc!r}")


class _BucketCounters:
    """A histogram's _bucket{le}, _sum and _count counters, fed from Buckets every FLUSH_S."""

    def __init__(self, owner: ModelMetrics, name: str, bounds, counted: str, value: str):
        labels = {"model": owner.model}
        self.pending = Buckets(bounds)
        self.buckets = {le: owner._counter(f"{name}_bucket", f"{counted} with {value} <= le",
                                           {**labels, "le": le}) for le, _ in self.pending.labelled()}
        self.sum = owner._counter(f"{name}_sum", f"sum of the {value} of {counted}", labels)
        self.count = owner._counter(f"{name}_count", counted, labels)
        self.flushed = 0.0

    def add(self, values) -> None:
        self.pending.add(values)
        now = time.monotonic()
        if now - self.flushed < FLUSH_S:
            return
        for le, count in self.pending.labelled():
            if count:
                self.buckets[le].increment(count)
        self.sum.increment(self.pending.total)
        self.count.increment(self.pending.count)
        self.pending.reset()
        self.flushed = now
