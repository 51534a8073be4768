"""The public front door: nginx in front of tritonserver, with size, connection and path limits.

Triton 2.51 has no flag for a maximum request size or for connection limits, and it serves its
admin APIs (model load/unload, repository index, shared memory, logging, trace) on the same ports
as inference. The gateway, rendered from templates/gateway.conf, lets through only what a ranking
client needs (health, metadata, readiness, inference), refuses bodies larger than the contract
allows (config.MAX_REQUEST_BYTES) with HTTP 413 / gRPC RESOURCE_EXHAUSTED, and closes idle and
slow connections after short time-outs. docs/security.md has the numbers.

`run_gateway(upstream)` is the one way code and tests run it: a context manager on free loopback
ports that waits until nginx answers and always stops it. `serve` / `stop` are `make serve`'s
background gateway (pid file in .run/). Triton's own ports should then listen on loopback only,
and its metrics port is not proxied.
"""
from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import config
from . import processes
from .admin import ADMIN_HEADER
from .processes import pid_in_file, stop_pid_file, wait_until, work_folder
from .server import Endpoints, free_ports

TEMPLATE = Path(__file__).parent / "templates" / "gateway.conf"
PID_FILE = config.RUN_DIR / "gateway.pid"
LOG_FILE = config.RUN_DIR / "gateway.log"
WORK_DIR = config.RUN_DIR / "gateway"
START_TIMEOUT_S = 30
GRPC_SERVICE = "inference.GRPCInferenceService"
# The only gRPC methods the gateway forwards; every other one is answered PERMISSION_DENIED.
GRPC_METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
REFUSED = ("only health, server and model metadata, model readiness and inference are served "
           "through this door")
# Descriptors nginx needs besides connections: listening sockets, logs, temporary body files.
SPARE_FILES = 256
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Limits:
    """What the gateway allows; the defaults are the shared facts in config."""

    max_body_bytes: int = config.MAX_REQUEST_BYTES
    max_connections: int = config.GATEWAY_MAX_CONNECTIONS
    conn_per_client: int = config.GATEWAY_CONN_PER_CLIENT
    max_inflight: int = config.GATEWAY_MAX_INFLIGHT
    retry_after_s: int = config.GATEWAY_RETRY_AFTER_S
    header_timeout_s: int = config.GATEWAY_HEADER_TIMEOUT_S
    body_timeout_s: int = config.GATEWAY_BODY_TIMEOUT_S
    keepalive_s: int = config.GATEWAY_KEEPALIVE_S
    upstream_timeout_s: int = config.GATEWAY_UPSTREAM_TIMEOUT_S
    workers: int = config.GATEWAY_WORKERS

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"gateway limit {name} must be a positive integer, got {value!r}")


def nginx_binary() -> str | None:
    """nginx from PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def open_files_limit() -> int:
    """The most descriptors nginx may open: the hard limit it inherits (raising past it needs root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)


def render_template(text: str, values: dict) -> str:
    """Fill {{name}} placeholders; a placeholder without a value or a value without a placeholder
    is an error, so template and code cannot drift apart silently."""
    used = set(_PLACEHOLDER.findall(text))
    missing, unused = used - values.keys(), values.keys() - used
    if missing or unused:
        raise ValueError(f"gateway template and values disagree: missing {sorted(missing)}, unused {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render_config(upstream: Endpoints, public: Endpoints, work_dir: Path, limits: Limits | None = None,
                  pid_file: Path | None = None, error_log: Path | None = None) -> str:
    """The nginx configuration text for a gateway on `public` in front of Triton on `upstream`."""
    limits = limits or Limits()
    work_dir = Path(work_dir)
    open_files = open_files_limit()
    # worker_connections counts client and Triton connections alike, one descriptor each.
    max_connections = min(limits.max_connections, max(open_files - SPARE_FILES, 64))
    values = {
        "workers": limits.workers,
        "pid_file": Path(pid_file or work_dir / "nginx.pid").resolve(),
        "error_log": Path(error_log or work_dir / "error.log").resolve(),
        "open_files": min(open_files, max_connections + SPARE_FILES),
        "max_connections": max_connections,
        "temp_dir": temp_dir(work_dir),
        "max_body_bytes": limits.max_body_bytes,
        "header_timeout_s": limits.header_timeout_s,
        "body_timeout_s": limits.body_timeout_s,
        "keepalive_s": limits.keepalive_s,
        "upstream_timeout_s": limits.upstream_timeout_s,
        "conn_per_client": limits.conn_per_client,
        "max_inflight": limits.max_inflight,
        "retry_after_s": limits.retry_after_s,
        "upstream_http": upstream.http,
        "upstream_grpc": upstream.grpc,
        "public_http": public.http,
        "public_grpc": public.grpc,
        "grpc_service": re.escape(GRPC_SERVICE),
        "grpc_methods": "|".join(GRPC_METHODS),
        "grpc_infer_path": f"/{GRPC_SERVICE}/ModelInfer",
        "max_candidates": config.MAX_CANDIDATES,
        "max_text_chars": config.MAX_TEXT_CHARS,
        "refused": REFUSED,
        "admin_header": ADMIN_HEADER,
    }
    return render_template(TEMPLATE.read_text(), values)


def temp_dir(work_dir: Path) -> Path:
    """Where nginx spools request bodies: the work folder's temp/, made if missing. Run as root,
    nginx's workers become `nobody`, who must reach it; when a parent of the work folder is
    closed to others (a checkout in a 0700 folder), a folder of /tmp named after the work folder
    is used instead (mode 711: others may pass, not list)."""
    temp = Path(work_dir).resolve() / "temp"
    ours = [temp, temp.parent]
    if os.geteuid() == 0 and not all(p.stat().st_mode & 0o001 for p in temp.parent.parents):
        digest = hashlib.sha256(str(temp).encode()).hexdigest()[:12]
        temp = Path(tempfile.gettempdir()) / f"shoprank-gateway-{digest}"
        ours = [temp]
    temp.mkdir(parents=True, exist_ok=True, mode=0o711)
    if os.geteuid() == 0:
        for folder in ours:
            folder.chmod(folder.stat().st_mode | 0o011)  # let the workers pass through
    return temp


def start(upstream: Endpoints, public: Endpoints, work_dir: Path = WORK_DIR, limits: Limits | None = None,
          pid_file: Path | None = None, log_path: Path | None = None, wait: bool = True) -> subprocess.Popen:
    """Start nginx (its own master process, in a new session) with a freshly rendered config."""
    nginx = nginx_binary()
    if nginx is None:
        raise RuntimeError("no nginx: install it with `make system` (Debian package nginx-light)")
    work_dir = Path(work_dir).resolve()
    # Made here: when its parents are closed to others the spool folder lives elsewhere (temp_dir),
    # so nothing else creates the work folder of `make serve`.
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path or work_dir / "error.log").resolve()
    conf = work_dir / "nginx.conf"
    conf.write_text(render_config(upstream, public, work_dir, limits, pid_file, log_path))
    # nginx writes start-up failures to stderr before it opens its error log: the same file.
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([nginx, "-p", f"{work_dir}/", "-c", str(conf), "-e", str(log_path)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    if wait:
        try:
            wait_answering(public, proc, log_path)
        except Exception:
            stop_process(proc)
            raise
    return proc


def is_answering(public: Endpoints) -> bool:
    """The gateway answers HTTP (whatever Triton's state: 503 when it is down) and accepts gRPC."""
    try:
        with socket.create_connection((public.host, public.grpc_port), timeout=2):
            pass
        urllib.request.urlopen(f"http://{public.http}/v2/health/live", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def wait_answering(public: Endpoints, proc: subprocess.Popen | None = None, log_path: Path = LOG_FILE,
                   timeout: float = START_TIMEOUT_S) -> None:
    wait_until(lambda: is_answering(public), "the gateway (nginx)", proc, log_path, timeout, interval=0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Fast shutdown (SIGTERM: nginx closes every connection), then the whole group if it hangs."""
    processes.stop_process(proc, timeout)


@dataclass(frozen=True)
class RunningGateway:
    endpoints: Endpoints  # where clients connect (metrics_port 0: Triton's metrics are not proxied)
    upstream: Endpoints
    pid: int
    work_dir: Path
    log_path: Path


@contextmanager
def run_gateway(upstream: Endpoints, public: Endpoints | None = None, work_dir: str | Path | None = None,
                limits: Limits | None = None) -> Iterator[RunningGateway]:
    """nginx in front of Triton on `upstream` for the duration of the block.

    On free loopback ports unless `public` is given; answering before the block runs (nginx that
    exits or never answers raises with its log's tail); stopped when the block ends, however it
    ends. `work_dir` keeps its config, log and temporary files (a temporary folder, removed
    afterwards, when None).
    """
    if public is None:
        http_port, grpc_port = free_ports(2)
        public = Endpoints("127.0.0.1", http_port, grpc_port, 0)
    with work_folder(work_dir, "shoprank-gateway-") as folder:
        proc = start(upstream, public, folder, limits)
        try:
            yield RunningGateway(public, upstream, proc.pid, folder, folder / "error.log")
        finally:
            stop_process(proc)


# --- make serve / stop: one background gateway per checkout ------------------------------------------
def serve(upstream: Endpoints, public: Endpoints, limits: Limits | None = None) -> None:
    """Start the background gateway on `public` in front of Triton on `upstream` (already running)."""
    pid = pid_in_file(PID_FILE)
    if pid is not None:
        print(f"gateway already running (pid {pid}); `make stop` first")
        return
    if LOG_FILE.exists():  # the last run's log stays readable beside the new one
        LOG_FILE.replace(LOG_FILE.with_suffix(".previous.log"))
    proc = start(upstream, public, WORK_DIR, limits, pid_file=PID_FILE, log_path=LOG_FILE)
    PID_FILE.write_text(str(proc.pid))  # nginx writes it too; written here so it is there at once
    print(f"gateway ready (nginx pid {proc.pid}, log {LOG_FILE})\n"
          f"  HTTP    http://{public.http}  ->  {upstream.http}\n"
          f"  gRPC    {public.grpc}  ->  {upstream.grpc}\n"
          f"  at most {(limits or Limits()).max_body_bytes} bytes a request; admin APIs refused")


def stop() -> None:
    pid = stop_pid_file(PID_FILE, timeout=10)
    print("gateway not running" if pid is None else f"gateway stopped (pid {pid})")
