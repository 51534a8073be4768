"""Monitoring against the real server: the models' own metrics on Triton's metrics port beside
nv_inference_*, and a real Prometheus (Debian's) that scrapes it, evaluates the rules and feeds
the dashboard. The end-to-end run with minutes of traffic is `make monitor-demo`."""
from __future__ import annotations

import re
import shutil
import time
import urllib.request

import pytest

from shoprank import config
from shoprank.errors import RankError
from shoprank.measure.monitor.traffic import BAD_REQUESTS
from shoprank.serving.client import RankClient
from shoprank.serving.triton import metrics

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Triton's /metrics as {(name, labels): value}."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
            samples[(match[1], labels)] = float(match[3])
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_models_report_their_metrics_beside_tritons(server, valid_pairs):
    texts = list(dict.fromkeys(valid_pairs["text"]))[:30]
    with RankClient(server.grpc, "grpc") as client:  # earlier tests' scores still pending: flushed now
        client.rank("drill", texts[:1])
        time.sleep(metrics.FLUSH_S)
        client.rank("drill", texts[:1])
    before = scrape(server.metrics)
    with RankClient(server.grpc, "grpc") as client:
        client.rank("cordless drill", texts[:20], top_k=5)
        for query, candidates, top_k in BAD_REQUESTS.values():
            with pytest.raises(RankError):
                client.infer_raw(query, candidates, top_k)
        time.sleep(metrics.FLUSH_S)  # the sorter hands its scores over at most this often
        client.rank("paint", texts[:7])
    after = scrape(server.metrics)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "nv_inference_request_success", model=config.ENSEMBLE_MODEL) >= 2  # Triton's own
    for model in (config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL):
        assert value(after, metrics.INITIALIZATIONS, model=model) >= 1, model
        assert value(after, metrics.START_TIME, model=model) > 1e9, model
    for kind in BAD_REQUESTS:
        assert delta(metrics.REQUEST_ERRORS, kind=kind) == 1, kind
    assert delta(metrics.REQUEST_ERRORS, kind="other") == 0
    # The negative TOP_K request passes the tokenizer (one candidate) and is refused by the sorter.
    assert delta(f"{metrics.CANDIDATES}_count") == 3 and delta(f"{metrics.CANDIDATES}_sum") == 20 + 7 + 1
    assert [delta(f"{metrics.CANDIDATES}_bucket", le=le) for le in ("1", "5", "10", "20", "+Inf")] == [1, 1, 2, 3, 3]
    assert delta(f"{metrics.SCORE}_count") == 27 and delta(f"{metrics.SCORE}_bucket", le="+Inf") == 27
    cumulative = [delta(f"{metrics.SCORE}_bucket", le=metrics.le_label(b)) for b in metrics.SCORE_BUCKETS]
    assert cumulative == sorted(cumulative) and cumulative[-1] == 27  # click probabilities are <= 1
    assert 0 < delta(f"{metrics.SCORE}_sum") < 27
    # monitoring/rules.yml halves rank failures: Triton 2.51 counts a failed ensemble request twice.
    assert delta("nv_inference_request_failure", model=config.ENSEMBLE_MODEL) == 2 * len(BAD_REQUESTS)


needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus/promtool are not installed (Debian package prometheus; `make system`)")


@needs_prometheus
def test_prometheus_scrapes_the_server_evaluates_rules_and_feeds_the_dashboard(server, valid_pairs, tmp_path):
    from shoprank.measure.monitor.api import PrometheusAPI
    from shoprank.measure.monitor.dashboard import render_dashboard
    from shoprank.measure.monitor.prometheus import run_prometheus

    texts = list(dict.fromkeys(valid_pairs["text"]))[:10]
    with run_prometheus(server, work_dir=tmp_path / "prometheus", scrape_interval="1s") as prom:
        api = PrometheusAPI(prom.url)
        assert api.wait_for(f'{metrics.INITIALIZATIONS}{{model="{config.SORTER_MODEL}"}}', timeout_s=20)
        assert api.query('up{job="triton"}')[0].values == [1.0]
        # The readiness job: an empty 200 from /v2/models/rank/ready is a successful scrape.
        assert api.wait_for('up{job="triton_ready"} == 1', timeout_s=10)
        with RankClient(server.grpc, "grpc") as client:
            for _ in range(3):
                client.rank("drill", texts)
            with pytest.raises(RankError):
                client.infer_raw("", texts)
        errors = api.wait_for(f'sum({metrics.REQUEST_ERRORS}{{kind="empty_query"}}) > 0', timeout_s=10)
        assert errors[0].values[0] >= 1
        groups = {g["name"]: g["rules"] for g in api.rule_groups()}
        assert {r["name"] for r in groups["shoprank-alerts"]} >= {"ShoprankTritonDown", "ShoprankScoreDrift"}
        assert all(r["health"] == "ok" for rules in groups.values() for r in rules), groups
        time.sleep(2)  # a few more scrapes, so rate() has two samples of the traffic
        result = render_dashboard(prom.url, 30, tmp_path / "dashboard")
    page = result["html"].read_text()
    assert "Rank requests" in page and "Click probability" in page and result["png"].stat().st_size > 10_000
    assert result["totals"]["refused as invalid"] >= 1 and result["totals"]["candidates scored"] >= 10
    assert result["alerts"] == [] or all(state in ("pending", "firing") for _, state in result["alerts"])
