"""`make monitor-demo`: monitoring end to end on free loopback ports. A tritonserver (run_triton,
with latency summaries on), a Prometheus scraping it every second, traffic with invalid requests
mixed in, then the dashboard over exactly that stretch, and the alerts Prometheus holds."""
from __future__ import annotations

import time
from pathlib import Path

from ... import config
from ...data.requests import RequestPool
from ...serving.server import run_triton
from .api import PrometheusAPI
from .dashboard import OUT_DIR, render_dashboard
from .prometheus import duration_s, run_prometheus
from .traffic import send_traffic


def run_demo(repo: Path = config.MODEL_REPOSITORY, seconds: float = 60, out_dir: Path = OUT_DIR,
             scrape_interval: str = "1s", data: str = "auto", users: int = 2, bad_share: float = 0.1) -> dict:
    pool = RequestPool.from_spec(data)
    with run_triton(repo) as server, \
            run_prometheus(server.endpoints, scrape_interval=scrape_interval) as prom:
        api = PrometheusAPI(prom.url)
        wait = 10 * duration_s(scrape_interval) + 10
        # The first scrape must see the counters at 0, or increase() over the window misses them.
        api.wait_for('shoprank_model_initializations_total{model="sorter"}', timeout_s=wait)
        print(f"tritonserver {server.endpoints.grpc} (metrics {server.endpoints.metrics}), "
              f"prometheus {prom.url}: sending {seconds:.0f} s of traffic ({users} users, "
              f"{bad_share:.0%} invalid)", flush=True)
        started = time.time()
        counts = send_traffic(server.endpoints.grpc, pool, seconds, users=users, bad_share=bad_share)
        # Two scrapes and a rule evaluation after the last request.
        time.sleep(3 * duration_s(scrape_interval))
        result = render_dashboard(prom.url, time.time() - started + 5, Path(out_dir),
                                  title=f"shoprank on Triton: {seconds:.0f} s demo load")
    result["sent"] = counts.as_dict()
    return result
