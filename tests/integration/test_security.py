"""The admin surface is closed to inference callers on both protocols (issue: any caller could
load code into the server, unload `rank`, switch logging off, register shared memory)."""
from __future__ import annotations

import base64
import json
import os
import stat
import urllib.error
import urllib.request

import pytest

from shoprank import config
from shoprank.serving.admin import ADMIN_HEADER
from shoprank.serving.supervisor import SHM_DIR, stubs

EVIL_MODEL = b"import os\nos.system('touch /tmp/shoprank-pwned')\nclass TritonPythonModel:\n    pass\n"


def _http(endpoints, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    request = urllib.request.Request(f"http://{endpoints.http}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


HTTP_ADMIN_CALLS = [
    ("POST", f"/v2/repository/models/{config.ENSEMBLE_MODEL}/unload", None),
    ("POST", "/v2/repository/models/evil/load",
     {"parameters": {"config": json.dumps({"backend": "python"}),
                     "file:1/model.py": base64.b64encode(EVIL_MODEL).decode()}}),
    ("POST", "/v2/repository/index", None),
    ("POST", "/v2/logging", {"log_info": False, "log_error": False, "log_warning": False}),
    ("POST", "/v2/systemsharedmemory/region/stolen/register", {"key": "/triton_python_backend_shm_region_x",
                                                               "offset": 0, "byte_size": 64}),
    ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"]}),
]


@pytest.mark.parametrize("method,path,body", HTTP_ADMIN_CALLS, ids=lambda v: str(v)[:40] if isinstance(v, str) else "")
@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_http_admin_calls_are_refused_without_the_key(running_server, method, path, body, key):
    status, text = _http(running_server.endpoints, method, path, body, {ADMIN_HEADER: key} if key else None)
    assert status == 403, (status, text)
    assert "restricted" in text
    assert not os.path.exists("/tmp/shoprank-pwned")
    ready, _ = _http(running_server.endpoints, "GET", f"/v2/models/{config.ENSEMBLE_MODEL}/ready")
    assert ready == 200


def test_grpc_admin_calls_are_refused_without_the_key(running_server):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    client = grpc.InferenceServerClient(running_server.endpoints.grpc)
    calls = {
        "unload": lambda: client.unload_model(config.ENSEMBLE_MODEL),
        "load with files": lambda: client.load_model("evil", config=json.dumps({"backend": "python"}),
                                                     files={"file:1/model.py": EVIL_MODEL}),
        "index": lambda: client.get_model_repository_index(),
        "logging": lambda: client.update_log_settings({"log_info": False}),
        "shared memory": lambda: client.register_system_shared_memory("stolen", "/x", 64),
        "trace": lambda: client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
    }
    for name, call in calls.items():
        with pytest.raises(InferenceServerException, match="restricted") as refused:
            call()
        assert "PERMISSION_DENIED" in str(refused.value.status()) or "restricted" in str(refused.value), name
    assert client.is_model_ready(config.ENSEMBLE_MODEL)
    client.close()


def test_the_key_opens_the_admin_api(running_server):
    import tritonclient.grpc as grpc

    status, text = _http(running_server.endpoints, "POST", "/v2/repository/index", None,
                         running_server.admin_headers("http"))
    assert status == 200 and config.RANKER_MODEL in text
    with grpc.InferenceServerClient(running_server.endpoints.grpc) as client:
        index = client.get_model_repository_index(headers=running_server.admin_headers("grpc"), as_json=True)
    assert config.RANKER_MODEL in {m["name"] for m in index["models"]}


def test_server_files_are_owner_only(running_server):
    key_file = running_server.log_path.parent / "run" / "admin.key"
    for path in (key_file, running_server.log_path):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"
    regions = [SHM_DIR / s.shm_region for s in stubs(running_server.pid)]
    assert regions
    for region in regions:
        assert stat.S_IMODE(region.stat().st_mode) & 0o077 == 0, f"{region} is readable by others"
