"""Start, wait for and stop `tritonserver` for a model repository.

`run_triton(repo)` is the one way code and tests run a server: a context manager on free
loopback ports that waits for readiness and always stops it. `serve` / `stop` / `status` are
`make serve`'s background server (a pid file in .run/).

Uses `tritonserver` from PATH when present (NVIDIA's container: every backend, TensorRT too),
else the binary inside the `nvidia-pytriton` wheel, which has only the Python backend and
needs three things prepared (each learnt the hard way, see docs/design.md):
  * a backend folder: the wheel's backends/python plus the stub built for our Python version;
  * LD_LIBRARY_PATH: the wheel's bundled libraries and our interpreter's LIBDIR (the stub
    embeds libpython);
  * our venv's bin first on PATH, so the stub runs our interpreter and packages (numpy < 2);
    with the system's numpy 2, BYTES inputs break.

Model control mode: "explicit" with --load-model=* by default. Every model in the repository
is loaded at start-up, and afterwards nothing changes until someone calls the load API
(`make update` / `make rollback` via shoprank.online.activate, after the new version's files are complete
and its quality gate passed). "poll" would load whatever appears in the repository, including
a half-copied version; "none" refuses the load API, so no version could go live without a restart.
Checked on Triton 2.51: loading a new ranker version also reloads the ensemble `rank` that
depends on it, the old version finishes its in-flight requests before it is unloaded, and no
request fails (tests/integration/test_online_swap.py).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import config, container
from . import admin, processes
from .processes import answers_ok, pid_alive, terminate_pid, wait_until, with_project_on_path, work_folder
from .supervisor import Supervisor, make_shm_private, remove_shm_regions, stubs

PID_FILE = config.RUN_DIR / "tritonserver.pid"
SUPERVISOR_PID_FILE = config.RUN_DIR / "supervisor.pid"
SUPERVISOR_EVENTS = config.RUN_DIR / "supervisor.events.jsonl"
MODEL_CONTROL_MODES = ("explicit", "poll", "none")
LOG_FILE = config.RUN_DIR / "tritonserver.log"
PREVIOUS_LOG_FILE = config.RUN_DIR / "tritonserver.previous.log"


@dataclass
class Endpoints:
    host: str = config.HOST
    http_port: int = config.HTTP_PORT
    grpc_port: int = config.GRPC_PORT
    metrics_port: int = config.METRICS_PORT

    @property
    def http(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _wheel_triton() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    root = Path(pytriton.__file__).parent / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def server_command_and_env(run_dir: Path = config.RUN_DIR) -> tuple[list[str], dict]:
    """The tritonserver binary (plus --backend-directory for the wheel) and its environment."""
    # The Python models import shoprank; the stub must run this interpreter's packages.
    env = with_project_on_path(dict(os.environ))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    on_path = shutil.which("tritonserver", path=env["PATH"])
    if on_path and os.environ.get("SHOPRANK_USE_WHEEL_TRITON") != "1":
        return [on_path], env
    root = _wheel_triton()
    if root is None:
        raise RuntimeError("no tritonserver: not on PATH, and the nvidia-pytriton wheel is not installed "
                           "(pip install nvidia-pytriton==0.7.0, or run inside NVIDIA's Triton container)")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    backend = run_dir / "backends" / "python"
    if not (backend / "triton_python_backend_stub").exists():
        backend.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / "backends" / "python", backend, dirs_exist_ok=True)
        shutil.copy2(stub, backend / "triton_python_backend_stub")
    libs = Path(root).parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [str(libs), sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH")]))
    return [str(root / "bin" / "tritonserver"), f"--backend-directory={run_dir / 'backends'}",
            f"--cache-directory={root / 'caches'}"], env


def cache_args(cache_bytes: int) -> list[str]:
    """Triton's response cache of `cache_bytes` (its `local` LRU cache; none when 0). Only models
    whose config enables it use it: the ranker (docs/caching.md)."""
    if cache_bytes < 0:
        raise ValueError(f"cache_bytes must be >= 0 (0 = no response cache), got {cache_bytes}")
    return [f"--cache-config=local,size={int(cache_bytes)}"] if cache_bytes else []


def start(repo: Path = config.MODEL_REPOSITORY, endpoints: Endpoints | None = None,
          log_path: Path = LOG_FILE, run_dir: Path = config.RUN_DIR, extra_args: list[str] | None = None,
          wait: bool = True, model_control: str = "explicit", admin_key: str | None = None,
          cache_bytes: int = 0) -> subprocess.Popen:
    """Start tritonserver; its admin APIs open only to `admin_key` (a new key, written to
    run_dir/admin.key, when None: see shoprank.serving.admin); a response cache of `cache_bytes`."""
    endpoints = endpoints or Endpoints()
    if model_control not in MODEL_CONTROL_MODES:
        raise ValueError(f"model_control must be one of {MODEL_CONTROL_MODES}, got {model_control!r}")
    command, env = server_command_and_env(run_dir)
    command += [
        f"--model-repository={Path(repo).resolve()}",
        f"--http-address={endpoints.host}", f"--http-port={endpoints.http_port}",
        f"--grpc-address={endpoints.host}", f"--grpc-port={endpoints.grpc_port}",
        f"--metrics-address={endpoints.host}", f"--metrics-port={endpoints.metrics_port}",
        "--exit-timeout-secs=5",  # the default 30 s makes every stop slow
        "--log-verbose=0",
        "--metrics-config=summary_latencies=true",  # p50/p95/p99 per model for Prometheus (docs/monitoring.md)
        *admin.restricted_api_args(admin_key or admin.new_key(run_dir)),
        *_model_control_args(model_control, extra_args or []),
        *cache_args(cache_bytes),
        *(extra_args or []),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # A new session, so `make serve` can return while the server runs on; the child keeps the log open.
    # Owner-only files: the log, the stubs' shared memory, whatever the models write.
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                umask=admin.PRIVATE_UMASK)
    if wait:
        try:
            wait_ready(endpoints, proc, log_path)
        except Exception:
            stop_process(proc)
            raise
        make_shm_private(proc.pid)
    return proc


def _model_control_args(mode: str, extra_args: list[str]) -> list[str]:
    if any(a.startswith("--model-control-mode") for a in extra_args) or mode == "none":
        return []  # the caller's own choice wins
    if mode == "poll":
        return ["--model-control-mode=poll", "--repository-poll-secs=5"]
    return ["--model-control-mode=explicit", "--load-model=*"]


def is_ready(endpoints: Endpoints) -> bool:
    return answers_ok(f"http://{endpoints.http}{container.READY_PATH}")


def wait_ready(endpoints: Endpoints, proc: subprocess.Popen | None = None, log_path: Path = LOG_FILE,
               timeout: float = config.SERVER_START_TIMEOUT_S) -> None:
    wait_until(lambda: is_ready(endpoints), "tritonserver", proc, log_path, timeout, interval=0.5)


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    regions = [s.shm_region for s in stubs(proc.pid)] if proc.poll() is None else []
    processes.stop_process(proc, timeout)
    remove_shm_regions(regions)  # Triton removes its own on a clean exit; a killed stub leaves one


@dataclass(frozen=True)
class RunningServer:
    endpoints: Endpoints
    pid: int
    log_path: Path
    admin_key: str
    supervisor: Supervisor | None = None

    def admin_headers(self, protocol: str = "http") -> dict[str, str]:
        return admin.headers(self.admin_key, protocol=protocol)


@contextmanager
def run_triton(repo: str | Path, work_dir: str | Path | None = None, ports: tuple[int, int, int] | None = None,
               host: str = "127.0.0.1", model_control: str = "explicit",
               extra_args: list[str] | None = None, supervise: bool = False,
               cache_bytes: int = 0) -> Iterator[RunningServer]:
    """tritonserver serving `repo` for the duration of the block.

    On free loopback ports unless `ports` (HTTP, gRPC, metrics) are given; ready before the block
    runs (a server that exits or never gets ready raises with its log's tail); stopped when the
    block ends, however it ends. `work_dir` keeps its log and prepared backend folder (a
    temporary folder, removed afterwards, when None). `supervise`: a stub supervisor thread
    recovers models whose Python stub dies (shoprank.serving.supervisor). `cache_bytes`: Triton's
    response cache for the ranker (off by default, so timings measure the model; make serve
    turns it on: config.RESPONSE_CACHE_BYTES).
    """
    with work_folder(work_dir, "shoprank-triton-") as folder:
        endpoints = Endpoints(host, *(ports or free_ports(3)))
        log_path = folder / "tritonserver.log"
        key = admin.new_key(folder / "run")
        proc = start(Path(repo), endpoints, log_path=log_path, run_dir=folder / "run", extra_args=extra_args,
                     model_control=model_control, admin_key=key, cache_bytes=cache_bytes)
        watcher = Supervisor(proc.pid, endpoints.http, key).start() if supervise else None
        try:
            yield RunningServer(endpoints, proc.pid, log_path, key, watcher)
        finally:
            if watcher is not None:
                watcher.stop()
            stop_process(proc)


# --- make serve / stop / status: one background server per checkout ---------------------------------
def serve(repo: Path, endpoints: Endpoints) -> None:
    if PID_FILE.exists() and pid_alive(int(PID_FILE.read_text())):
        print(f"tritonserver already running (pid {PID_FILE.read_text().strip()}); `make stop` first")
        return
    if LOG_FILE.exists():  # the last run's log stays readable beside the new one
        LOG_FILE.replace(PREVIOUS_LOG_FILE)
    started = time.time()
    key = admin.new_key(config.RUN_DIR)
    proc = start(repo, endpoints, admin_key=key, cache_bytes=config.RESPONSE_CACHE_BYTES)
    PID_FILE.write_text(str(proc.pid))
    watcher = _start_supervisor(proc.pid, endpoints)
    print(f"tritonserver ready in {time.time() - started:.1f} s (pid {proc.pid}, log {LOG_FILE})\n"
          f"  HTTP    http://{endpoints.http}  (KServe v2: /v2/models/{config.ENSEMBLE_MODEL}/infer)\n"
          f"  gRPC    {endpoints.grpc}\n"
          f"  metrics {endpoints.metrics}\n"
          f"  admin APIs closed: key in {admin.key_path()} (owner-only); stub supervisor pid {watcher}")


def _start_supervisor(server_pid: int, endpoints: Endpoints) -> int:
    command = [sys.executable, "-m", "shoprank.serving.supervisor", "--pid", str(server_pid),
               "--http", endpoints.http, "--key-file", str(admin.key_path()), "--events", str(SUPERVISOR_EVENTS)]
    env = with_project_on_path(dict(os.environ))
    with open(LOG_FILE, "ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                umask=admin.PRIVATE_UMASK)
    SUPERVISOR_PID_FILE.write_text(str(proc.pid))
    return proc.pid


def stop() -> None:
    """Stop the supervisor, then the server (in-flight requests finish); leave no pid file, key or
    shared-memory region behind; keep the log."""
    if SUPERVISOR_PID_FILE.exists():
        terminate_pid(int(SUPERVISOR_PID_FILE.read_text()), timeout=5)
        SUPERVISOR_PID_FILE.unlink(missing_ok=True)
    if not PID_FILE.exists():
        print("tritonserver not running (no pid file)")
        admin.key_path().unlink(missing_ok=True)
        return
    pid = int(PID_FILE.read_text())
    regions = [s.shm_region for s in stubs(pid)]
    terminate_pid(pid)
    remove_shm_regions(regions)
    PID_FILE.unlink(missing_ok=True)
    admin.key_path().unlink(missing_ok=True)
    print(f"tritonserver stopped (pid {pid}); log kept in {LOG_FILE}")
