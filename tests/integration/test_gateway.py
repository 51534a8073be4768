"""The gateway (nginx, shoprank.serving.gateway.run_gateway) in front of the real tritonserver:
ranking works through it over HTTP and gRPC; oversize requests, admin calls and too many
requests in flight are refused with clear errors while the server keeps serving; a thousand idle
connections neither block health and ranking nor stay open past the time-out, nor fill the log."""
from __future__ import annotations

import http.client
import json
import selectors
import socket
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack

import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from shoprank import config
from shoprank.errors import RankError
from shoprank.serving import gateway
from shoprank.serving.client import RankClient
from shoprank.serving.gateway import Limits, run_gateway

pytestmark = pytest.mark.skipif(gateway.nginx_binary() is None,
                                reason="nginx is not installed (make system installs nginx-light)")

QUERY = "cordless drill"
TEXTS = ["DEWALT 20V MAX cordless drill driver kit", "Behr Premium Plus white interior paint",
         "Milwaukee M18 brushless hammer drill", "drill bit set titanium 21-piece"]
IDLE_CONNECTIONS = 1000
# Generous: a rank or health answer through a working gateway takes milliseconds; these only keep
# a broken gateway from hanging the test.
ANSWER_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def door(server):
    with run_gateway(server) as running:
        yield running


def _get(endpoints, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{endpoints.http}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _ranks(endpoints, timeout_s: float = 60.0) -> None:
    """A rank request over both protocols and health through the gateway all answer."""
    for protocol, url in (("grpc", endpoints.grpc), ("http", endpoints.http)):
        with RankClient(url, protocol, timeout_s=timeout_s) as client:
            ranked = client.rank(QUERY, TEXTS, 2)
            assert len(ranked) == 2 and ranked[0].score >= ranked[1].score
    assert _get(endpoints, "/v2/health/ready")[0] == 200


def _oversize_texts() -> list[str]:
    # Above the limit in every encoding: MAX_CANDIDATES texts far longer than MAX_TEXT_CHARS.
    length = config.MAX_REQUEST_BYTES // config.MAX_CANDIDATES + 1000
    return ["x" * length] * config.MAX_CANDIDATES


def _error_lines(log_path) -> list[str]:
    return [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]


def test_ranking_through_the_gateway_matches_triton_itself(server, door, valid_pairs):
    texts = valid_pairs["text"].drop_duplicates().tolist()[:300]
    # Past the gateway's 1 MB in-memory body buffer, so nginx spools the body to its temp folder.
    texts = [((text + " ") * 100)[: config.MAX_TEXT_CHARS] for text in texts]
    assert sum(len(t) for t in texts) > 2**20
    for protocol in ("grpc", "http"):
        direct = RankClient(server.grpc if protocol == "grpc" else server.http, protocol)
        through = RankClient(door.endpoints.grpc if protocol == "grpc" else door.endpoints.http, protocol)
        with direct, through:
            expected, _ = direct.infer_raw(QUERY, texts, 10)
            got, _ = through.infer_raw(QUERY, texts, 10)
            assert got.tolist() == expected.tolist()
            assert through.ready()
            # The ranker version recorded with feedback comes from model metadata, which passes.
            assert through.ranker_version() is not None
            assert through.ranker_version() == direct.ranker_version()
    status, body = _get(door.endpoints, "/v2")
    assert status == 200 and json.loads(body)["name"] == "triton"


def test_an_oversize_http_body_is_refused_with_413_and_the_server_keeps_serving(door):
    with RankClient(door.endpoints.http, "http") as client, \
            pytest.raises(RankError, match=f"request body larger than {config.MAX_REQUEST_BYTES} bytes"):
        client.rank(QUERY, _oversize_texts())
    # A 200 MB body is refused from its Content-Length alone, before any of it is read.
    connection = http.client.HTTPConnection(door.endpoints.host, door.endpoints.http_port, timeout=ANSWER_TIMEOUT_S)
    connection.putrequest("POST", f"/v2/models/{config.ENSEMBLE_MODEL}/infer")
    connection.putheader("Content-Length", str(200 * 2**20))
    connection.endheaders()
    reply = connection.getresponse()
    assert reply.status == 413 and "larger than" in json.loads(reply.read())["error"]
    connection.close()
    _ranks(door.endpoints)


def test_an_oversize_grpc_request_is_refused_with_resource_exhausted_and_the_server_keeps_serving(door):
    client = triton_grpc.InferenceServerClient(door.endpoints.grpc)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(config.ENSEMBLE_MODEL, _rank_inputs(triton_grpc, _oversize_texts()))
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert f"request larger than {config.MAX_REQUEST_BYTES} bytes" in refused.value.message()
    client.close()
    _ranks(door.endpoints)


def _rank_inputs(api, texts: list[str]) -> list:
    inputs = [api.InferInput(config.QUERY, [1], "BYTES"), api.InferInput(config.CANDIDATES, [len(texts)], "BYTES"),
              api.InferInput(config.TOP_K, [1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([QUERY.encode()], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    inputs[2].set_data_from_numpy(np.array([0], dtype=np.int32))
    return inputs


def test_compressed_requests_are_refused(door):
    """The size limit counts the bytes on the wire: compressed ones could inflate far past it."""
    with triton_http.InferenceServerClient(door.endpoints.http) as client, \
            pytest.raises(InferenceServerException, match="compressed request bodies"):
        client.infer(config.ENSEMBLE_MODEL, _rank_inputs(triton_http, TEXTS), request_compression_algorithm="gzip")
    with triton_grpc.InferenceServerClient(door.endpoints.grpc) as client, \
            pytest.raises(InferenceServerException) as refused:
        client.infer(config.ENSEMBLE_MODEL, _rank_inputs(triton_grpc, TEXTS), compression_algorithm="gzip")
    assert refused.value.status() == "StatusCode.UNIMPLEMENTED" and "compressed" in refused.value.message()
    _ranks(door.endpoints)


ADMIN_CALLS = {
    "repository index": lambda c: c.get_model_repository_index(),
    "load": lambda c: c.load_model(config.ENSEMBLE_MODEL),
    "unload": lambda c: c.unload_model(config.ENSEMBLE_MODEL),
    "log settings": lambda c: c.update_log_settings({"log_verbose_level": 1}),
    "system shared memory": lambda c: c.register_system_shared_memory("region", "/shoprank-test", 64),
    "shared memory status": lambda c: c.get_system_shared_memory_status(),
    "trace settings": lambda c: c.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
    "statistics": lambda c: c.get_inference_statistics(),
    "model config": lambda c: c.get_model_config(config.ENSEMBLE_MODEL),
}


@pytest.mark.parametrize("call", ADMIN_CALLS)
def test_admin_calls_are_refused_over_grpc(server, door, call):
    client = triton_grpc.InferenceServerClient(door.endpoints.grpc)
    with pytest.raises(InferenceServerException) as refused:
        ADMIN_CALLS[call](client)
    assert refused.value.status() == "StatusCode.PERMISSION_DENIED"
    assert "refused by the gateway" in refused.value.message()
    client.close()
    with triton_grpc.InferenceServerClient(server.grpc) as direct:  # nothing reached Triton
        assert direct.is_model_ready(config.ENSEMBLE_MODEL)


@pytest.mark.parametrize("call", ADMIN_CALLS)
def test_admin_calls_are_refused_over_http(server, door, call):
    client = triton_http.InferenceServerClient(door.endpoints.http)
    with pytest.raises(InferenceServerException, match="refused by the gateway"):
        ADMIN_CALLS[call](client)
    client.close()
    with triton_http.InferenceServerClient(server.http) as direct:
        assert direct.is_model_ready(config.ENSEMBLE_MODEL)


def test_admin_calls_are_refused_even_with_the_servers_admin_key(running_server, door):
    """The key opens the admin APIs on Triton's own (loopback) ports only, never through the door."""
    with triton_grpc.InferenceServerClient(door.endpoints.grpc) as client, \
            pytest.raises(InferenceServerException, match="refused by the gateway"):
        client.unload_model(config.ENSEMBLE_MODEL, headers=running_server.admin_headers("grpc"))
    with triton_http.InferenceServerClient(door.endpoints.http) as client, \
            pytest.raises(InferenceServerException, match="refused by the gateway"):
        client.get_model_repository_index(headers=running_server.admin_headers("http"))
    _ranks(door.endpoints)


@pytest.mark.parametrize("method,path", [("POST", "/v2/repository/index"), ("POST", "/v2/logging"),
                                         ("POST", f"/v2/repository/models/{config.ENSEMBLE_MODEL}/unload"),
                                         ("GET", "/v2/models/stats"), ("GET", "/v2/models/%73tats")])
def test_admin_paths_get_a_json_403(door, method, path):
    status, body = _get(door.endpoints, path, method, b"{}" if method == "POST" else None)
    assert status == 403 and "refused by the gateway" in json.loads(body)["error"]


def _open_idle(endpoints, count: int, stack: ExitStack) -> list[socket.socket]:
    """`count` connections that send nothing, half to the HTTP port, half to the gRPC port."""
    sockets = []
    for i in range(count):
        port = endpoints.http_port if i % 2 == 0 else endpoints.grpc_port
        connection = socket.create_connection((endpoints.host, port), timeout=ANSWER_TIMEOUT_S)
        sockets.append(stack.enter_context(connection))
    return sockets


def _nginx_connections(pid: int) -> int:
    return sum(len(p.net_connections("tcp")) for p in psutil.Process(pid).children())


def test_a_thousand_idle_connections_neither_block_ranking_nor_fill_the_log(server):
    # A long header time-out, so the idle connections stay open all through the requests below.
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack, \
            run_gateway(server, work_dir=work, limits=Limits(header_timeout_s=120)) as door:
        log_lines = len(_error_lines(door.log_path))
        idle = _open_idle(door.endpoints, IDLE_CONNECTIONS, stack)
        deadline = time.time() + ANSWER_TIMEOUT_S
        while _nginx_connections(door.pid) < IDLE_CONNECTIONS and time.time() < deadline:
            time.sleep(0.1)
        assert _nginx_connections(door.pid) >= IDLE_CONNECTIONS  # nginx holds them all
        _ranks(door.endpoints, timeout_s=ANSWER_TIMEOUT_S)
        assert len(idle) == IDLE_CONNECTIONS
        assert len(_error_lines(door.log_path)) == log_lines


def test_idle_connections_are_closed_after_the_time_out(server):
    timeout_s = 2
    limits = Limits(header_timeout_s=timeout_s, keepalive_s=timeout_s)
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack, \
            run_gateway(server, work_dir=work, limits=limits) as door:
        clients = [stack.enter_context(RankClient(door.endpoints.grpc, "grpc")),
                   stack.enter_context(RankClient(door.endpoints.http, "http"))]
        for client in clients:
            client.rank(QUERY, TEXTS)
        log_lines = len(_error_lines(door.log_path))
        idle = _open_idle(door.endpoints, IDLE_CONNECTIONS, stack)
        open_ = _read_until_closed(idle, deadline=time.time() + timeout_s + ANSWER_TIMEOUT_S)
        assert not open_, f"{len(open_)} of {IDLE_CONNECTIONS} idle connections still open"
        assert len(_error_lines(door.log_path)) == log_lines  # time-outs are not logged
        # The clients' own kept-alive connections were closed too: they reconnect and go on.
        for client in clients:
            assert len(client.rank(QUERY, TEXTS)) == len(TEXTS)
        _ranks(door.endpoints)


def _read_until_closed(sockets: list[socket.socket], deadline: float) -> set[socket.socket]:
    """Read (and drop) whatever the gateway sends until it closes each connection; the ones still
    open at the deadline. gRPC connections get nginx's SETTINGS and GOAWAY frames first."""
    selector = selectors.DefaultSelector()
    for s in sockets:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    open_ = set(sockets)
    while open_ and time.time() < deadline:
        for key, _ in selector.select(timeout=0.5):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                open_.discard(key.fileobj)
    selector.close()
    return open_


def _stalled_inference(endpoints) -> socket.socket:
    """An inference request whose body never arrives: it holds its slot until closed."""
    stalled = socket.create_connection((endpoints.host, endpoints.http_port))
    stalled.sendall(f"POST /v2/models/{config.ENSEMBLE_MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 100\r\n\r\n{".encode())
    time.sleep(0.5)  # let nginx read the headers
    return stalled


def test_requests_in_flight_per_client_are_limited_with_clear_errors(server):
    with tempfile.TemporaryDirectory() as work, \
            run_gateway(server, work_dir=work, limits=Limits(conn_per_client=1)) as door:
        # One request whose body never arrives holds this address's only slot.
        stalled = _stalled_inference(door.endpoints)
        status, body = _get(door.endpoints, "/v2/health/ready")
        assert status == 429 and "too many requests in flight" in json.loads(body)["error"]
        with triton_grpc.InferenceServerClient(door.endpoints.grpc) as client, \
                pytest.raises(InferenceServerException) as refused:
            client.is_server_ready()
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        stalled.close()
        deadline = time.time() + ANSWER_TIMEOUT_S
        while _get(door.endpoints, "/v2/health/ready")[0] != 200 and time.time() < deadline:
            time.sleep(0.1)
        _ranks(door.endpoints)


def test_inference_past_the_in_flight_cap_is_refused_at_once_as_retryable_overload(server):
    with tempfile.TemporaryDirectory() as work, \
            run_gateway(server, work_dir=work, limits=Limits(max_inflight=1)) as door:
        # One inference request whose body never arrives holds the only slot, for everyone.
        stalled = _stalled_inference(door.endpoints)
        started = time.perf_counter()
        connection = http.client.HTTPConnection(door.endpoints.host, door.endpoints.http_port, timeout=10)
        connection.request("POST", f"/v2/models/{config.ENSEMBLE_MODEL}/infer", body=b"{}")
        reply = connection.getresponse()
        body = json.loads(reply.read())
        assert reply.status == 503 and body["error"].startswith("overloaded:")
        assert reply.getheader("Retry-After") == str(config.GATEWAY_RETRY_AFTER_S)
        with RankClient(door.endpoints.grpc, "grpc") as client, pytest.raises(RankError, match="overloaded") as grpc:
            client.rank(QUERY, TEXTS, 2)
        assert grpc.value.status == "StatusCode.UNAVAILABLE" and grpc.value.retryable
        with RankClient(door.endpoints.http, "http") as client, pytest.raises(RankError, match="overloaded") as refused:
            client.rank(QUERY, TEXTS, 2)
        assert refused.value.status == "503" and refused.value.retryable
        assert time.perf_counter() - started < 2.0  # refused at once, not queued
        # Health and readiness are not inference: a busy server still answers them.
        assert _get(door.endpoints, "/v2/health/ready")[0] == 200
        stalled.close()
        deadline = time.time() + ANSWER_TIMEOUT_S
        while True:
            try:
                _ranks(door.endpoints)
                break
            except RankError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)


def test_the_gateway_is_stopped_when_the_block_raises(server):
    with pytest.raises(RuntimeError, match="the caller's own failure"), run_gateway(server) as door:
        pid, endpoints = door.pid, door.endpoints
        assert gateway.is_answering(endpoints)
        raise RuntimeError("the caller's own failure")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not gateway.is_answering(endpoints)


@pytest.mark.parametrize("checkout_mode", [0o755, 0o700])
def test_serve_and_stop_run_a_background_gateway_with_a_pid_file(server, monkeypatch, checkout_mode):
    """In a checkout open to others, and in one closed to them (a clone made in a `mktemp -d`
    folder): there the spool folder moves to /tmp and nothing else makes the work folder."""
    with tempfile.TemporaryDirectory() as checkout:
        gateway.Path(checkout).chmod(checkout_mode)
        run_dir = gateway.Path(checkout) / ".run"
        run_dir.mkdir(mode=0o755)  # as .run/ is: nginx's workers may pass through
        for name, file in (("PID_FILE", "gateway.pid"), ("LOG_FILE", "gateway.log"), ("WORK_DIR", "gateway")):
            monkeypatch.setattr(gateway, name, run_dir / file)
        http_port, grpc_port = gateway.free_ports(2)
        public = gateway.Endpoints("127.0.0.1", http_port, grpc_port, 0)
        gateway.serve(server, public)
        try:
            pid = int(gateway.PID_FILE.read_text())
            assert psutil.pid_exists(pid)
            _ranks(public)
        finally:
            gateway.stop()
        assert not gateway.PID_FILE.exists() and not gateway.is_answering(public)
