"""Monitoring a served ensemble with a real Prometheus (Debian's `prometheus` and `promtool`).

    prometheus.py  the config (monitoring/prometheus.yml.tmpl), promtool checks, the process:
                   run_prometheus() for tests and the demo, start/stop for `make monitor`
    api.py         the Prometheus HTTP API (query, query_range, alerts)
    dashboard.py   `make dashboard`: panels from query_range -> reports/monitoring/dashboard.{png,html}
    traffic.py     requests for the demo and the tests, bad ones included
    demo.py        `make monitor-demo`: server, Prometheus, traffic and dashboard, end to end

The metrics themselves come from Triton (nv_inference_*) and from the Python models
(shoprank.serving.triton.metrics); the rules are monitoring/rules.yml. docs/monitoring.md.
"""
