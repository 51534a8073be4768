"""The few calls of the Prometheus HTTP API (/api/v1) the dashboard, the demo and the tests make."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import yaml

from .prometheus import duration_s


class PrometheusError(RuntimeError):
    """Prometheus refused a query or could not be reached; the message is its own."""


@dataclass(frozen=True)
class Series:
    labels: dict
    times: list[float]   # Unix seconds
    values: list[float]  # NaN where Prometheus says NaN


class PrometheusAPI:
    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=self.timeout_s) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:  # a bad query: 400 with Prometheus's error as JSON
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusError(f"{self.url}: HTTP {exc.code} for {path}") from None
        except OSError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)} ({params})")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        """Instant vector (or scalar) at `at` (now when None)."""
        data = self._get("query", query=promql, time=at)
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Series({}, [float(t)], [float(v)])]
        return [Series(r["metric"], [float(r["value"][0])], [float(r["value"][1])]) for r in data["result"]]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("query_range", query=promql, start=start, end=end, step=step)
        return [Series(r["metric"], [float(t) for t, _ in r["values"]], [float(v) for _, v in r["values"]])
                for r in data["result"]]

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing), as /api/v1/alerts lists them."""
        return self._get("alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._get("rules")["groups"]

    def scrape_interval_s(self) -> float:
        """The global scrape interval of the running config."""
        loaded = yaml.safe_load(self._get("status/config")["yaml"])
        return duration_s(loaded.get("global", {}).get("scrape_interval", "1m"))

    def wait_for(self, promql: str, timeout_s: float = 30.0, poll_s: float = 0.5) -> list[Series]:
        """Poll until `promql` returns a non-empty result; TimeoutError after timeout_s."""
        deadline = time.time() + timeout_s
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.time() > deadline:
                raise TimeoutError(f"no result for {promql!r} from {self.url} within {timeout_s:.0f} s")
            time.sleep(poll_s)
