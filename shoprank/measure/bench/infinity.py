"""The Infinity rerank server (`infinity-emb`, its own venv .bench-venv) as a benchmarked system,
with its torch and its ONNX (optimum) engine, on 127.0.0.1."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from ... import config
from ...errors import InfinityUnavailable
from .systems import System, order_by_score

BENCH_VENV = config.PROJECT_ROOT / ".bench-venv"      # Infinity's own environment (make bench sets it up)
INFINITY_ENGINES = {"torch": "torch", "onnx": "optimum"}
INFINITY_START_TIMEOUT_S = 300


def prepare_infinity_model(model_dir: Path, onnx_fp32: Path | None, engine: str, max_length: int,
                           out_dir: Path) -> Path:
    """A copy of the fine-tuned model that Infinity 0.0.78 reads as we serve it.

    * Both engines: tokenizer model_max_length = the model's max length (Infinity's torch
      engine truncates there; it takes no max-length option).
    * ONNX (optimum) engine: it needs an .onnx file inside the folder, truncates at
      config.max_position_embeddings (so that is set to max_length in this copy only: ONNX
      Runtime does not read it), and it must be started from inside the folder with model id
      "." because it joins the folder with an already-joined file path (optimum 2.x).
    """
    target = out_dir / f"infinity-model-{engine}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model_dir, target)
    tok_cfg = target / "tokenizer_config.json"
    cfg = json.loads(tok_cfg.read_text()) if tok_cfg.exists() else {}
    cfg["model_max_length"] = max_length
    tok_cfg.write_text(json.dumps(cfg, indent=2))
    if engine == "onnx":
        if onnx_fp32 is None or not onnx_fp32.exists():
            raise InfinityUnavailable("no FP32 ONNX file to give Infinity's ONNX engine (make onnx)")
        shutil.copy(onnx_fp32, target / "model.onnx")
        model_cfg = json.loads((target / "config.json").read_text())
        model_cfg["max_position_embeddings"] = max_length
        (target / "config.json").write_text(json.dumps(model_cfg, indent=2))
    return target


class InfinityServer:
    def __init__(self, model_dir: Path, onnx_fp32: Path | None, engine: str, max_length: int, port: int,
                 work_dir: Path, venv: Path = BENCH_VENV):
        self.engine, self.port, self.work_dir, self.venv = engine, port, work_dir, venv
        self.model_dir, self.onnx_fp32, self.max_length = model_dir, onnx_fp32, max_length
        self.proc = None
        self.log = work_dir / f"infinity-{engine}.log"

    def start(self) -> None:
        exe = Path(self.venv).absolute() / "bin" / "infinity_emb"  # absolute: it runs from the model copy
        if not exe.exists():
            raise InfinityUnavailable(f"{exe} missing: `make bench` installs Infinity into {self.venv}")
        folder = prepare_infinity_model(self.model_dir, self.onnx_fp32, self.engine, self.max_length, self.work_dir)
        cache = self.work_dir / f"infinity-hf-cache-{self.engine}"
        shutil.rmtree(cache, ignore_errors=True)  # it reuses an optimized ONNX found there: no stale model
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(cache),
                   HF_HUB_CACHE=str(cache / "hub"), INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
        env.pop("PYTHONPATH", None)
        command = [str(exe), "v2", "--model-id", ".", "--served-model-name", "ranker",
                   "--engine", INFINITY_ENGINES[self.engine], "--device", "cpu",
                   "--host", "127.0.0.1", "--port", str(self.port), "--no-model-warmup", "--log-level", "warning"]
        self.command = " ".join(command[1:])
        self.log.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + INFINITY_START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
                self.proc = None
                raise InfinityUnavailable(f"infinity ({self.engine}) exited while starting:\n{tail}")
            try:
                self._post({"query": "warm up", "documents": ["ready?"], "return_documents": False}, timeout=5)
                return
            except OSError:
                time.sleep(1)
        self.stop()
        raise InfinityUnavailable(f"infinity ({self.engine}) not ready after {INFINITY_START_TIMEOUT_S} s")

    def _post(self, body: dict, timeout: float = 120, connection=None) -> dict:
        import http.client

        conn = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("POST", "/rerank", body=json.dumps(dict(body, model="ranker")),
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        payload = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"infinity {reply.status}: {payload[:300]!r}")
        if connection is None:
            conn.close()
        return json.loads(payload)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.proc = None

    def system(self) -> System:
        import http.client

        def make_client():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

            def rank(query, texts):
                body = {"query": query, "documents": list(texts), "return_documents": False}
                try:
                    reply = self._post(body, connection=conn)
                except (ConnectionError, http.client.HTTPException):
                    # The server closes idle keep-alive connections (uvicorn: after 5 s) while
                    # other systems are measured; reconnect once.
                    conn.close()
                    reply = self._post(body, connection=conn)
                scores = np.zeros(len(texts), dtype=np.float32)
                for item in reply["results"]:
                    scores[item["index"]] = item["relevance_score"]
                return order_by_score(scores), scores

            return rank

        label = {"torch": "Infinity torch engine", "onnx": "Infinity ONNX (optimum) engine"}[self.engine]
        return System(f"infinity-{self.engine}", label, "server", f"infinity-{self.engine}", make_client,
                      server_pids=lambda: [self.proc.pid] if self.proc else [])
