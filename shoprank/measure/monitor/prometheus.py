"""Prometheus for one tritonserver, on loopback.

The config is rendered from monitoring/prometheus.yml.tmpl (two jobs: Triton's metrics port, and
the ensemble's readiness on the HTTP port), checked with `promtool check config`, and loads the
rules in monitoring/rules.yml. `run_prometheus()` is the one way code and tests run it: free port,
its own data folder, stopped however the block ends. `start_background()` / `stop_background()`
are `make monitor` / `make monitor-stop` (pid file, config, data and log under .run/).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

from ... import config
from ...serving import server as triton_server
from ...serving.processes import answers_ok, pid_in_file, stop_pid_file, stop_process, wait_until, work_folder
from ...serving.server import Endpoints, free_ports

MONITORING_DIR = config.PROJECT_ROOT / "monitoring"
CONFIG_TEMPLATE = MONITORING_DIR / "prometheus.yml.tmpl"
RULES_FILE = MONITORING_DIR / "rules.yml"
RULES_TEST_FILE = MONITORING_DIR / "rules_test.yml"
RUN_DIR = config.RUN_DIR / "prometheus"  # make monitor's config, data and log
PID_FILE = config.RUN_DIR / "prometheus.pid"
DEFAULT_PORT = 9090
DEFAULT_SCRAPE_INTERVAL = "2s"
RETENTION = "7d"  # the score-drift rule compares with the last day
START_TIMEOUT_S = 60
MAX_SCRAPE_TIMEOUT_S = 10


class PrometheusUnavailable(RuntimeError):
    """prometheus or promtool is not installed (`make system` installs Debian's)."""


def binary(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)),
                                       None)
    if found is None:
        raise PrometheusUnavailable(f"no `{name}` on PATH: `make system` installs Debian's prometheus package")
    return found


def duration_s(text: str) -> float:
    """A Prometheus duration of one unit ("500ms", "2s", "1m", "1h") in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    if not match or int(match[1]) == 0:
        raise ValueError(f"scrape interval must look like 500ms, 2s, 1m or 1h (above zero), got {text!r}")
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2]]


def render_config(triton: Endpoints, scrape_interval: str = DEFAULT_SCRAPE_INTERVAL,
                  rules_file: Path = RULES_FILE) -> str:
    """prometheus.yml for the server at `triton` (its metrics port and its HTTP port)."""
    seconds = duration_s(scrape_interval)
    # A scrape must end before the next one starts.
    timeout = scrape_interval if seconds <= MAX_SCRAPE_TIMEOUT_S else f"{MAX_SCRAPE_TIMEOUT_S}s"
    return Template(CONFIG_TEMPLATE.read_text()).substitute(
        scrape_interval=scrape_interval, scrape_timeout=timeout, rules_file=Path(rules_file).resolve(),
        triton_metrics=f"{triton.host}:{triton.metrics_port}", triton_http=triton.http,
        ensemble=config.ENSEMBLE_MODEL)


def write_config(path: Path, triton: Endpoints, scrape_interval: str = DEFAULT_SCRAPE_INTERVAL) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(triton, scrape_interval))
    check_config(path)
    return path


def _promtool(*args: str) -> str:
    proc = subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=120)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise ValueError(f"promtool {' '.join(args)} failed:\n{output}")
    return output


def check_config(path: Path) -> str:
    """`promtool check config` (the rule files it names included); raises with its output."""
    return _promtool("check", "config", str(path))


def run_rule_tests(path: Path = RULES_TEST_FILE) -> str:
    """`promtool test rules` on a rules test file; raises with its output."""
    return _promtool("test", "rules", str(path))


def start(config_path: Path, data_dir: Path, host: str, port: int, log_path: Path) -> subprocess.Popen:
    command = [binary("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={data_dir}",
               f"--storage.tsdb.retention.time={RETENTION}", f"--web.listen-address={host}:{port}"]
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # A new session, so `make monitor` can return while Prometheus runs on.
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def is_ready(url: str) -> bool:
    return answers_ok(f"{url}/-/ready")


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = START_TIMEOUT_S) -> None:
    wait_until(lambda: is_ready(url), "prometheus", proc, log_path, timeout)


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    pid: int
    config_path: Path
    log_path: Path


@contextmanager
def run_prometheus(triton: Endpoints, work_dir: str | Path | None = None, port: int | None = None,
                   host: str = "127.0.0.1", scrape_interval: str = "1s") -> Iterator[RunningPrometheus]:
    """Prometheus scraping the server at `triton` for the duration of the block: on a free
    loopback port unless `port` is given, ready before the block runs, stopped when it ends.
    `work_dir` keeps config, data and log (a temporary folder, removed afterwards, when None)."""
    with work_folder(work_dir, "shoprank-prometheus-") as folder:
        config_path = write_config(folder / "prometheus.yml", triton, scrape_interval)
        port = port or free_ports(1)[0]
        url, log_path = f"http://{host}:{port}", folder / "prometheus.log"
        proc = start(config_path, folder / "data", host, port, log_path)
        try:
            wait_ready(url, proc, log_path)
            yield RunningPrometheus(url, proc.pid, config_path, log_path)
        finally:
            stop_process(proc)


# --- make monitor / monitor-stop: one background Prometheus per checkout -----------------------------
def start_background(triton: Endpoints, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                     scrape_interval: str = DEFAULT_SCRAPE_INTERVAL) -> str:
    """Start Prometheus in the background (config, data and log in RUN_DIR); returns its URL."""
    url = f"http://{host}:{port}"
    pid = pid_in_file(PID_FILE, "prometheus")
    if pid is not None:
        print(f"prometheus already running (pid {pid}); `make monitor-stop` first")
        return url
    config_path = write_config(RUN_DIR / "prometheus.yml", triton, scrape_interval)
    log_path = RUN_DIR / "prometheus.log"
    proc = start(config_path, RUN_DIR / "data", host, port, log_path)
    try:
        wait_ready(url, proc, log_path)
    except Exception:
        stop_process(proc)
        raise
    PID_FILE.write_text(str(proc.pid))
    print(f"prometheus ready (pid {proc.pid}, log {log_path})\n"
          f"  UI and API  {url}   (alerts: {url}/alerts, targets: {url}/targets)\n"
          f"  scraping    {triton.metrics} and http://{triton.http}/v2/models/{config.ENSEMBLE_MODEL}/ready "
          f"every {scrape_interval}\n"
          f"  config      {config_path}   rules {RULES_FILE}")
    if not triton_server.is_ready(triton):
        print(f"  note: no ready tritonserver at http://{triton.http} yet (`make serve`); Prometheus keeps scraping")
    return url


def stop_background() -> None:
    pid = stop_pid_file(PID_FILE, "prometheus")
    print("prometheus not running (no live pid in the pid file)" if pid is None else
          f"prometheus stopped (pid {pid}); its data stays in {RUN_DIR / 'data'}")
