"""Monitoring commands: a Prometheus beside the server (`make monitor`, `make monitor-stop`), the
dashboard from its HTTP API (`make dashboard`) and the end-to-end demo (`make monitor-demo`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import config
from .common import add_server_args, endpoints

ACTIONS = ("start", "stop", "check", "demo")


def monitor(argv: list[str]) -> int:
    """start: Prometheus on --host:--port in the background, scraping the server at --host and
    its ports (config .run/prometheus/prometheus.yml from monitoring/prometheus.yml.tmpl, rules
    monitoring/rules.yml). stop: stop it. check: promtool on the rendered config and the rule
    tests. demo: server, Prometheus, traffic and dashboard on free ports, end to end."""
    from ..measure.monitor import prometheus

    p = argparse.ArgumentParser(prog="shoprank monitor", description=monitor.__doc__)
    p.add_argument("action", choices=ACTIONS)
    add_server_args(p, repo_help="model repository the demo serves")
    p.add_argument("--port", type=int, default=prometheus.DEFAULT_PORT, help="Prometheus's port (start)")
    p.add_argument("--scrape-interval", default=None,
                   help=f"start: {prometheus.DEFAULT_SCRAPE_INTERVAL}; demo: 1s")
    p.add_argument("--seconds", type=float, default=60, help="demo: seconds of traffic")
    p.add_argument("--users", type=int, default=2, help="demo: clients sending back to back")
    p.add_argument("--bad-share", type=float, default=0.1, help="demo: share of invalid requests")
    p.add_argument("--data", default="auto", help="demo: judgments the requests come from (auto|default|shared|path)")
    p.add_argument("--out-dir", default=str(config.REPORTS_DIR / "monitoring"), help="demo: dashboard folder")
    args = p.parse_args(argv)

    try:
        if args.action == "start":
            prometheus.start_background(endpoints(args), args.port, args.host,
                                        args.scrape_interval or prometheus.DEFAULT_SCRAPE_INTERVAL)
        elif args.action == "stop":
            prometheus.stop_background()
        elif args.action == "check":
            config_path = prometheus.RUN_DIR / "prometheus.check.yml"
            prometheus.write_config(config_path, endpoints(args), args.scrape_interval or "2s")
            print(f"promtool check config {config_path}: ok")
            print(prometheus.run_rule_tests())
        else:
            from ..measure.monitor.demo import run_demo

            result = run_demo(Path(args.repo), args.seconds, Path(args.out_dir), args.scrape_interval or "1s",
                              args.data, args.users, args.bad_share)
            print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in result.items()}, indent=1))
    except (prometheus.PrometheusUnavailable, ValueError, RuntimeError, TimeoutError) as exc:
        print(f"shoprank monitor {args.action}: {exc}", file=sys.stderr)
        return 2
    return 0


def dashboard(argv: list[str]) -> int:
    """Request rate, latency, queue time, errors, click-probability and candidate histograms over
    the last --minutes, from the Prometheus at --url -> reports/monitoring/dashboard.{html,png}."""
    from ..measure.monitor.api import PrometheusError
    from ..measure.monitor.dashboard import number, render_dashboard
    from ..measure.monitor.prometheus import DEFAULT_PORT

    p = argparse.ArgumentParser(prog="shoprank dashboard", description=dashboard.__doc__)
    p.add_argument("--url", default=f"http://{config.HOST}:{DEFAULT_PORT}", help="Prometheus (make monitor's)")
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--out-dir", default=str(config.REPORTS_DIR / "monitoring"))
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error(f"--minutes must be above 0, got {args.minutes}")
    try:
        result = render_dashboard(args.url, args.minutes * 60, Path(args.out_dir))
    except PrometheusError as exc:
        print(f"shoprank dashboard: {exc} (`make monitor` starts one)", file=sys.stderr)
        return 2
    print(f"wrote {result['html']} and {result['png']}")
    for name, value in result["totals"].items():
        print(f"  {name:<42} {number(value)}")
    if result["panels_without_data"]:
        print("  no data: " + "; ".join(result["panels_without_data"]))
    return 0
