"""The models' metric helpers that need no Triton: error kinds, score buckets, label format.
(What Triton exposes from them: tests/integration/test_monitoring.py.)"""
import numpy as np
import pytest

from shoprank import config
from shoprank.errors import RequestError
from shoprank.serving.request import check_top_k, decode_request
from shoprank.serving.triton.metrics import (
    CANDIDATE_BUCKETS,
    ERROR_KINDS,
    SCORE_BUCKETS,
    Buckets,
    error_kind,
    le_label,
)


def _error(call) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("kind,call", [
    ("query_shape", lambda: decode_request([b"a", b"b"], [b"x"])),
    ("empty_query", lambda: decode_request([b"  "], [b"x"])),
    ("invalid_utf8", lambda: decode_request([b"\xff"], [b"x"])),
    ("invalid_utf8", lambda: decode_request([b"drill"], [b"ok", b"\xfe"])),
    ("no_candidates", lambda: decode_request([b"drill"], [])),
    ("too_many_candidates", lambda: decode_request([b"drill"], [b"x"] * (config.MAX_CANDIDATES + 1))),
    ("top_k_shape", lambda: check_top_k([1, 2])),
    ("negative_top_k", lambda: check_top_k([-1])),
])
def test_every_request_error_has_its_kind(kind, call):
    assert error_kind(_error(call)) == kind


def test_missing_input_and_unknown_errors():
    assert error_kind(RequestError(f"missing input {config.QUERY}")) == "missing_input"
    assert error_kind(RuntimeError("something new")) == "other"
    assert list(ERROR_KINDS)[-1] == "other"  # the catch-all comes last


def test_score_buckets_are_cumulative_like_prometheus():
    buckets = Buckets(bounds=(0.1, 0.5, 1.0))
    buckets.add(np.array([0.05, 0.1, 0.3, 0.9], np.float32))
    buckets.add([0.6])
    assert buckets.labelled() == [("0.1", 2), ("0.5", 3), ("1", 5), ("+Inf", 5)]
    assert buckets.count == 5 and buckets.total == pytest.approx(1.95, abs=1e-6)
    buckets.add(5)  # one value (a request's candidate count): the same buckets as an array of one
    assert buckets.labelled() == [("0.1", 2), ("0.5", 3), ("1", 5), ("+Inf", 6)] and buckets.count == 6
    buckets.reset()
    assert buckets.labelled()[-1] == ("+Inf", 0) and buckets.count == 0 and buckets.total == 0


def test_bucket_bounds():
    assert list(SCORE_BUCKETS) == sorted(SCORE_BUCKETS) and SCORE_BUCKETS[-1] == 1.0 and SCORE_BUCKETS[0] > 0
    assert list(CANDIDATE_BUCKETS) == sorted(CANDIDATE_BUCKETS) and CANDIDATE_BUCKETS[-1] == config.MAX_CANDIDATES
    assert [le_label(b) for b in (0.05, 1.0, 10, float("inf"))] == ["0.05", "1", "10", "+Inf"]


class _FakeStubMetrics:
    """The part of triton_python_backend_utils that ModelMetrics calls, recording increments."""

    class MetricFamily:
        COUNTER, GAUGE = "counter", "gauge"

        def __init__(self, name, description, kind):
            self.name = name

        def Metric(self, labels):  # the stub's name
            return _FakeStubMetrics.Metric(self.name, labels)

    class Metric:
        added: list = []

        def __init__(self, name, labels):
            self.name, self.labels = name, labels

        def increment(self, value):
            _FakeStubMetrics.Metric.added.append((self.name, self.labels.get("source"), value))

        def set(self, value):
            pass


def test_profile_sources_are_added_at_most_once_a_second_and_outages_at_once(monkeypatch):
    import sys

    from shoprank.serving.triton import metrics

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakeStubMetrics)
    added = _FakeStubMetrics.Metric.added
    added.clear()
    clock = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    m = metrics.ModelMetrics({"model_name": "tokenizer"}, profiles=True)

    def lookups():
        return [(source, value) for name, source, value in added if name == metrics.PROFILE_LOOKUPS]

    m.profile("anonymous")                     # the first one is added at once
    m.profile("anonymous")
    m.profile("profile")
    assert lookups() == [("anonymous", 1)]     # the next two wait for the second to pass
    m.profile("outage")                        # an outage is added at once, with what waited
    assert sorted(lookups()[1:]) == [("anonymous", 1), ("outage", 1), ("profile", 1)]
    m.profile("anonymous")
    clock[0] += metrics.FLUSH_S
    m.profile("anonymous")
    assert lookups()[-1] == ("anonymous", 2)
    assert sum(v for s, v in lookups() if s == "anonymous") == 4   # nothing lost
