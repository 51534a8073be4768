"""Truthful health and recovery for the Python-backend stubs.

Triton 2.51 does not notice a dead stub process (killed by the OOM killer, a crash, kill -9):
the server and the model stay READY while every request routed to that instance fails with
"Stub process ... is not healthy", and nothing brings it back (docs/reliability.md). The
supervisor watches the server's stub processes; when a READY model has fewer live stubs than
its config's instances, it unloads the model (readiness turns false, server-level too, because
the server runs with strict readiness), removes the dead stub's shared-memory region and loads
the model again (the ensemble that depends on it comes back with it).

Run as a thread beside a server (`Supervisor(...).start()`, as run_triton(supervise=True) does)
or as `make serve`'s background process (`python -m shoprank.serving.supervisor`).
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from .admin import ADMIN_HEADER

STUB_BINARY = "triton_python_backend_stub"
SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    shm_region: str


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie is dead, only not yet reaped
    except psutil.NoSuchProcess:
        return False


def stubs(server_pid: int) -> list[Stub]:
    """The live Python-backend stubs of a server: their model (from the model.py path they run)
    and their shared-memory region."""
    try:
        children = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            args = child.cmdline()  # a zombie has none: psutil raises ZombieProcess, a NoSuchProcess
        except psutil.NoSuchProcess:
            continue
        if len(args) > 2 and Path(args[0]).name == STUB_BINARY:
            found.append(Stub(child.pid, Path(args[1]).parent.parent.name, args[2]))
    return found


def make_shm_private(server_pid: int) -> int:
    """chmod 600 the stubs' shared-memory regions (the Python backend makes them readable by
    every local user, and they carry requests and scores); how many were changed."""
    changed = 0
    for stub in stubs(server_pid):
        path = SHM_DIR / stub.shm_region
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                changed += 1
        except OSError:
            continue  # gone meanwhile
    return changed


def remove_shm_regions(regions) -> list[str]:
    """Unlink the shared-memory regions of stubs that are gone (a killed stub leaves its own)."""
    removed = []
    for name in regions:
        path = SHM_DIR / name
        if name and "/" not in name and path.exists():
            path.unlink(missing_ok=True)
            removed.append(name)
    return removed


class Supervisor:
    """Polls a running server's stubs; recovers a model whose stubs died (see module doc)."""

    def __init__(self, server_pid: int, http: str, admin_key: str, interval_s: float = 0.5,
                 log_path: Path | None = None):
        self.server_pid, self.http, self.interval_s = server_pid, http, interval_s
        self.headers = {ADMIN_HEADER: admin_key, "Content-Type": "application/json"}
        self.log_path = log_path
        self.events: list[dict] = []
        self._instances: dict[str, int] = {}   # model -> python stubs its config asks for
        self._known: dict[int, Stub] = {}
        self._short: dict[str, int] = {}       # model -> consecutive polls with too few stubs
        self._unloaded: set[str] = set()       # models this supervisor unloaded and has not loaded yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- Triton's HTTP API ----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 120):
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(f"http://{self.http}{path}", data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read()
        return json.loads(raw) if raw else None

    def _ready_models(self) -> set[str]:
        index = self._call("POST", "/v2/repository/index", {"ready": True}, timeout=5) or []
        return {m["name"] for m in index if m.get("state") == "READY"}

    def _python_instances(self, model: str) -> int:
        if model not in self._instances:
            cfg = self._call("GET", f"/v2/models/{model}/config", timeout=5) or {}
            python = cfg.get("backend") == "python"
            self._instances[model] = sum(int(g.get("count", 1)) for g in cfg.get("instance_group", [])) if python else 0
        return self._instances[model]

    # --- one poll ---------------------------------------------------------------------------------
    def check_once(self) -> list[str]:
        """Recover every READY model with too few live stubs on two polls running; the models recovered."""
        live = stubs(self.server_pid)
        make_shm_private(self.server_pid)  # new stubs come with every (re)load
        for stub in live:
            self._known[stub.pid] = stub
        counts: dict[str, int] = {}
        for stub in live:
            counts[stub.model] = counts.get(stub.model, 0) + 1
        try:
            ready = self._ready_models()
        except (OSError, ValueError):
            return []  # the server is busy starting or stopping: nothing to judge
        for model in sorted(self._unloaded - ready):  # a load that failed after our unload: again
            self._call("POST", f"/v2/repository/models/{model}/load")
            self._unloaded.discard(model)
        recovered = []
        for model in sorted(ready):
            short = counts.get(model, 0) < self._python_instances(model)
            self._short[model] = self._short.get(model, 0) + 1 if short else 0
            if self._short[model] >= 2:
                self.recover(model, {s.pid for s in live})
                recovered.append(model)
        return recovered

    def recover(self, model: str, live_pids: set[int]) -> dict:
        started = time.time()
        dead = [s for pid, s in self._known.items() if pid not in live_pids and s.model == model]
        self._call("POST", f"/v2/repository/models/{model}/unload")
        self._unloaded.add(model)  # from here on the model must come back, even if this load fails
        regions = remove_shm_regions([s.shm_region for s in dead])
        self._call("POST", f"/v2/repository/models/{model}/load")
        self._unloaded.discard(model)
        for stub in dead:
            self._known.pop(stub.pid, None)
        self._instances.pop(model, None)
        self._short[model] = 0
        event = {"time": started, "model": model, "dead_stubs": [s.pid for s in dead],
                 "shm_regions_removed": regions, "seconds": round(time.time() - started, 2)}
        self.events.append(event)
        self._log(event)
        return event

    def _log(self, event: dict) -> None:
        line = f"supervisor: {event['model']} had a dead stub {event['dead_stubs']}; unloaded and loaded again " \
               f"in {event['seconds']} s"
        print(line, flush=True)
        if self.log_path:
            with open(self.log_path, "a") as out:
                out.write(json.dumps(event) + "\n")

    # --- running ----------------------------------------------------------------------------------
    def run(self) -> None:
        while not self._stop.is_set() and _alive(self.server_pid):
            try:
                self.check_once()
            except (OSError, ValueError, urllib.error.URLError) as exc:
                print(f"supervisor: poll failed ({exc}); trying again", flush=True)
            self._stop.wait(self.interval_s)

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self.run, name="shoprank-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="watch a tritonserver's Python stubs; recover a model whose stub died")
    parser.add_argument("--pid", type=int, required=True, help="tritonserver's pid")
    parser.add_argument("--http", required=True, help="its HTTP endpoint, host:port")
    parser.add_argument("--key-file", required=True, help="the file holding its admin key")
    parser.add_argument("--events", default=None, help="append recovery events (JSON lines) here")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    key = Path(args.key_file).read_text().strip()
    Supervisor(args.pid, args.http, key, args.interval, Path(args.events) if args.events else None).run()
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    raise SystemExit(main())
