"""Monitoring without a server: the rendered Prometheus config (as text, and through `promtool
check config`), the alert rules (`promtool test rules monitoring/rules_test.yml`), the
dashboard's arithmetic, and that every project metric the rules and panels name exists."""
import re
import shutil

import pytest
import yaml

from shoprank import config
from shoprank.errors import RequestError
from shoprank.measure.monitor import dashboard, prometheus, traffic
from shoprank.measure.monitor.api import Series
from shoprank.serving.request import check_top_k, decode_request
from shoprank.serving.server import Endpoints
from shoprank.serving.triton import metrics

TRITON = Endpoints("127.0.0.1", 18000, 18001, 18002)
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus; `make system`)")


def test_config_names_the_server_rules_and_interval():
    text = prometheus.render_config(TRITON, "2s")
    loaded = yaml.safe_load(text)
    assert loaded["global"]["scrape_interval"] == "2s" and loaded["global"]["scrape_timeout"] == "2s"
    assert loaded["rule_files"] == [str(prometheus.RULES_FILE.resolve())]
    jobs = {job["job_name"]: job for job in loaded["scrape_configs"]}
    assert jobs["triton"]["static_configs"][0]["targets"] == ["127.0.0.1:18002"]
    assert jobs["triton_ready"]["metrics_path"] == f"/v2/models/{config.ENSEMBLE_MODEL}/ready"
    assert jobs["triton_ready"]["static_configs"][0]["targets"] == ["127.0.0.1:18000"]
    assert "$" not in text.replace("{{ $", "")  # every placeholder filled


def test_scrape_timeout_stays_within_the_interval_and_bad_intervals_are_refused():
    assert yaml.safe_load(prometheus.render_config(TRITON, "1m"))["global"]["scrape_timeout"] == "10s"
    for bad in ("2", "0s", "two seconds", "1.5s"):
        with pytest.raises(ValueError, match="scrape interval"):
            prometheus.render_config(TRITON, bad)


@needs_promtool
def test_promtool_accepts_the_rendered_config_and_its_rules(tmp_path):
    prometheus.write_config(tmp_path / "prometheus.yml", TRITON, "1s")  # raises with promtool's output


@needs_promtool
def test_alert_rules_pass_their_unit_tests():
    assert "SUCCESS" in prometheus.run_rule_tests(prometheus.RULES_TEST_FILE)


def test_every_alert_has_a_test_and_a_summary():
    rules = yaml.safe_load(prometheus.RULES_FILE.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    tested = prometheus.RULES_TEST_FILE.read_text()
    for alert in alerts:
        assert f"alertname: {alert['alert']}" in tested, alert["alert"]
        assert alert["annotations"]["summary"] and alert["labels"]["severity"] in ("critical", "warning", "info")


def _project_metrics() -> set[str]:
    histograms = {metrics.CANDIDATES, metrics.SCORE}
    return ({metrics.INITIALIZATIONS, metrics.START_TIME, metrics.REQUEST_ERRORS}
            | {f"{h}_{suffix}" for h in histograms for suffix in ("bucket", "sum", "count")})


def test_rules_and_panels_name_only_metrics_the_models_export():
    text = prometheus.RULES_FILE.read_text() + "".join(
        line.promql for panel in dashboard.PANELS for line in panel.lines) + "".join(dashboard.TOTALS.values())
    named = set(re.findall(r"\bshoprank_[a-z_]+", text))
    assert named and named <= _project_metrics(), named - _project_metrics()


def test_bad_requests_of_the_demo_are_refused_with_their_kind():
    for kind, (query, texts, top_k) in traffic.BAD_REQUESTS.items():
        with pytest.raises(RequestError) as caught:
            encoded = [t if isinstance(t, bytes) else t.encode() for t in texts]
            decode_request([query.encode()], encoded)
            check_top_k([top_k])
        assert metrics.error_kind(caught.value) == kind


def test_buckets_from_cumulative_series():
    series = [Series({"le": le}, [0.0], [v]) for le, v in (("+Inf", 10), ("0.5", 7), ("0.1", 2), ("1", 10))]
    assert dashboard.buckets_from(series) == [("≤0.1", 2), ("≤0.5", 5), ("≤1", 3)]
    series.append(Series({"le": "2"}, [0.0], [9.5]))  # increase()'s extrapolation can dip below the bound before
    assert dashboard.buckets_from(series)[-1] == ("≤2", 0)


def test_window_rate_covers_four_scrapes_and_two_steps():
    window = dashboard.Window.last(900, scrape_interval_s=2, end=10_000)
    assert (window.start, window.end, window.length) == (9_100, 10_000, "900s")
    assert window.step == 3 and window.rate == "8s"
    assert dashboard.Window.last(6 * 3600, 15, end=0).rate == "144s"  # 2 steps of 72 s
    assert dashboard.expand("rate(x[{w}]) / increase(y[{window}])", window) == "rate(x[8s]) / increase(y[900s])"
    assert dashboard.legend("invalid: {kind}", {"kind": "empty_query"}) == "invalid: empty_query"
    assert dashboard.legend("{model}", {}) == ""


def test_totals_read_as_numbers():
    assert [dashboard.number(v) for v in (42_530.4, 254.3, 0.25251, None, float("nan"))] == \
        ["42,530", "254.3", "0.2525", "—", "—"]
