"""The gateway's generated nginx config, read as text: which paths and gRPC methods it forwards,
the answers it gives instead, and the limits it sets. nginx's own syntax check runs when nginx
is installed."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2

from shoprank import config
from shoprank.serving.admin import ADMIN_HEADER
from shoprank.serving.gateway import (
    GRPC_METHODS,
    GRPC_SERVICE,
    Limits,
    nginx_binary,
    open_files_limit,
    render_config,
    render_template,
)
from shoprank.serving.server import Endpoints

UPSTREAM = Endpoints("127.0.0.1", 18000, 18001, 18002)
PUBLIC = Endpoints("0.0.0.0", 28000, 28001, 0)
LIMITS = Limits(max_body_bytes=12345, max_connections=512, conn_per_client=7, header_timeout_s=3,
                body_timeout_s=4, keepalive_s=5, upstream_timeout_s=6, workers=2, max_inflight=3,
                retry_after_s=2)

# Triton's HTTP admin and statistics endpoints: none may be forwarded.
HTTP_ADMIN = [
    ("POST", "/v2/repository/index"), ("POST", "/v2/repository/models/rank/load"),
    ("POST", "/v2/repository/models/rank/unload"), ("GET", "/v2/systemsharedmemory/status"),
    ("POST", "/v2/systemsharedmemory/region/x/register"), ("POST", "/v2/cudasharedmemory/region/x/register"),
    ("GET", "/v2/logging"), ("POST", "/v2/logging"), ("GET", "/v2/trace/setting"),
    ("POST", "/v2/models/rank/trace/setting"), ("GET", "/v2/models/stats"), ("GET", "/v2/models/rank/stats"),
    ("GET", "/v2/models/rank/versions/1/stats"), ("GET", "/v2/models/rank/config"), ("GET", "/metrics"),
    ("POST", "/v2/models/rank/generate"), ("GET", "/"), ("GET", "/v2/health"),
]
HTTP_SERVED = [
    ("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2/models/rank"),
    ("GET", "/v2/models/rank/ready"), ("GET", "/v2/models/rank/versions/3"),
    ("GET", "/v2/models/rank/versions/3/ready"), ("POST", "/v2/models/rank/infer"),
    ("POST", "/v2/models/rank/versions/12/infer"),
]


# --- a small reader of nginx config text: directives and blocks ---------------------------------------
def _tokens(text: str):
    for match in re.finditer(r"#[^\n]*|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[{};]|[^\s{};'\"]+", text):
        token = match.group(0)
        if not token.startswith("#"):
            yield _unquote(token) if token[0] in "'\"" else token


def _unquote(token: str) -> str:
    escapes = {"n": "\n", "t": "\t", "r": "\r"}  # nginx's escapes in quoted strings
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), token[1:-1])


def parse(text: str) -> list:
    """[(name, args, children or None)] for every directive and block."""
    stack, words = [[]], []
    for token in _tokens(text):
        if token == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1 and not words, "unbalanced braces in the generated config"
    return stack[0]


def find(items: list, name: str) -> list:
    return [item for item in items if item[0] == name]


def one(items: list, name: str):
    found = find(items, name)
    assert len(found) == 1, f"{name}: expected one, got {len(found)}"
    return found[0]


def values(items: list, name: str) -> list[str]:
    return one(items, name)[1]


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    work = tmp_path_factory.mktemp("gateway")
    return render_config(UPSTREAM, PUBLIC, work, LIMITS)


@pytest.fixture(scope="module")
def http_block(conf):
    return one(parse(conf), "http")[2]


def server(http_block, grpc: bool):
    for _, _, body in find(http_block, "server"):
        if ("http2" in values(body, "listen")) == grpc:
            return body
    raise AssertionError("server block missing")


def select(server_body: list, path: str):
    """The location nginx picks for a path: exact match, else the first matching regex, else the
    longest prefix (nginx's order for this config, which has no ^~ locations)."""
    locations = [(args, body) for _, args, body in find(server_body, "location")]
    for args, body in locations:
        if args[0] == "=" and args[1] == path:
            return body
    for args, body in locations:
        if args[0] == "~" and re.search(args[1], path):
            return body
    prefixes = [(args[0], body) for args, body in locations if len(args) == 1 and path.startswith(args[0])]
    return max(prefixes, key=lambda p: len(p[0]))[1]


def proxied(location: list, method: str) -> bool:
    """Whether the location forwards a request of this method (its `if ($request_method ...)`
    refusals considered)."""
    for name, args, _ in location:
        if name == "if" and args[0] == "($request_method":
            _, operator, pattern = " ".join(args)[1:-1].split(" ", 2)
            refused = not re.search(pattern, method) if operator == "!~" else method != pattern
            if refused:
                return False
    return any(name in ("proxy_pass", "grpc_pass") for name, _, _ in location)


def refusal(location: list) -> tuple[int, dict]:
    code, text = values(location, "return")
    return int(code), json.loads(text)


# --- tests ------------------------------------------------------------------------------------------
def test_every_placeholder_is_filled_and_the_endpoints_are_where_they_belong(conf, http_block):
    assert "{{" not in conf and "}}" not in conf
    upstreams = {args[0]: values(body, "server")[0] for _, args, body in find(http_block, "upstream")}
    assert upstreams == {"triton_http": UPSTREAM.http, "triton_grpc": UPSTREAM.grpc}
    assert values(server(http_block, grpc=False), "listen")[0] == PUBLIC.http
    assert values(server(http_block, grpc=True), "listen")[:2] == [PUBLIC.grpc, "http2"]


@pytest.mark.parametrize("method,path", HTTP_SERVED)
def test_http_forwards_health_metadata_readiness_and_inference(http_block, method, path):
    assert proxied(select(server(http_block, grpc=False), path), method)


@pytest.mark.parametrize("method,path", HTTP_ADMIN)
def test_http_refuses_admin_and_everything_else_with_a_json_403(http_block, method, path):
    location = select(server(http_block, grpc=False), path)
    assert not proxied(location, method)
    code, body = refusal(location)
    assert code == 403 and "refused by the gateway" in body["error"]


@pytest.mark.parametrize("method,path", [("GET", "/v2/models/rank/infer"), ("POST", "/v2/health/ready"),
                                         ("DELETE", "/v2/models/rank")])
def test_http_refuses_the_wrong_method(http_block, method, path):
    assert not proxied(select(server(http_block, grpc=False), path), method)


def test_grpc_forwards_only_the_inference_methods_and_answers_the_rest_permission_denied(http_block):
    grpc = server(http_block, grpc=True)
    every_method = [m.name for m in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods]
    assert set(GRPC_METHODS) < set(every_method)
    for method in every_method:
        location = select(grpc, f"/{GRPC_SERVICE}/{method}")
        assert proxied(location, "POST") == (method in GRPC_METHODS), method
    refused = select(grpc, f"/{GRPC_SERVICE}/RepositoryModelLoad")
    headers = {args[0]: args[1] for name, args, _ in refused if name == "add_header"}
    assert headers["grpc-status"] == "7" and "refused by the gateway" in headers["grpc-message"]
    assert values(refused, "default_type") == ["application/grpc"]


def test_the_admin_key_header_is_never_forwarded(http_block):
    for directive in ("proxy_set_header", "grpc_set_header"):
        assert [ADMIN_HEADER, ""] in [args for name, args, _ in http_block if name == directive]
    for server_body in (server(http_block, grpc=False), server(http_block, grpc=True)):
        assert not [n for n, _, _ in server_body if n in ("proxy_set_header", "grpc_set_header")], \
            "a server-level *_set_header would drop the http-level ones"


def test_oversize_bodies_are_answered_413_json_over_http_and_resource_exhausted_over_grpc(http_block):
    assert values(http_block, "client_max_body_size") == [str(LIMITS.max_body_bytes)]
    http = server(http_block, grpc=False)
    pages = {args[0]: args[-1] for name, args, _ in http if name == "error_page"}
    code, body = refusal(next(b for n, a, b in http if n == "location" and a == [pages["413"]]))
    assert code == 413 and f"larger than {LIMITS.max_body_bytes} bytes" in body["error"]
    grpc = server(http_block, grpc=True)
    pages = {args[0]: args[-1] for name, args, _ in grpc if name == "error_page"}
    location = next(b for n, a, b in grpc if n == "location" and a == [pages["413"]])
    headers = {args[0]: args[1] for name, args, _ in location if name == "add_header"}
    assert headers["grpc-status"] == "8" and f"larger than {LIMITS.max_body_bytes} bytes" in headers["grpc-message"]


def test_connection_limits_and_time_outs_come_from_the_limits(conf, http_block):
    top = parse(conf)
    assert values(top, "worker_processes") == ["2"]
    events = one(top, "events")[2]
    assert values(events, "worker_connections") == [str(min(LIMITS.max_connections, open_files_limit() - 256))]
    assert int(values(top, "worker_rlimit_nofile")[0]) <= open_files_limit()
    assert values(http_block, "limit_conn") == ["per_client", "7"]
    for name, seconds in [("client_header_timeout", 3), ("client_body_timeout", 4), ("keepalive_timeout", 5),
                          ("proxy_read_timeout", 6), ("grpc_read_timeout", 6)]:
        assert values(http_block, name) == [f"{seconds}s"], name


def _limit_conns(location: list) -> dict:
    return {args[0]: int(args[1]) for name, args, _ in location if name == "limit_conn"}


def test_inference_in_flight_is_capped_for_everyone_and_refused_as_retryable_overload(http_block):
    zones = {args[1]: args[0] for name, args, _ in http_block if name == "limit_conn_zone"}
    assert zones["zone=inflight:1m"] == "$everyone"  # one key: every client shares the cap
    http, grpc = server(http_block, grpc=False), server(http_block, grpc=True)
    infer = select(http, "/v2/models/rank/infer")
    # A location's limit_conn replaces the inherited ones: the per-client cap must be restated.
    assert _limit_conns(infer) == {"per_client": 7, "inflight": 3}
    assert values(infer, "limit_conn_status") == ["503"]
    page = next(a for n, a, _ in infer if n == "error_page" and a[0] == "503")
    overloaded = next(b for n, a, b in http if n == "location" and a == [page[-1]])
    code, body = refusal(overloaded)
    assert code == 503 and body["error"].startswith("overloaded:") and "retry after 2 s" in body["error"]
    assert ["Retry-After", "2", "always"] in [a for n, a, _ in overloaded if n == "add_header"]
    infer = select(grpc, f"/{GRPC_SERVICE}/ModelInfer")
    assert _limit_conns(infer) == {"per_client": 7, "inflight": 3} and proxied(infer, "POST")
    page = next(a for n, a, _ in infer if n == "error_page" and a[0] == "503")
    overloaded = next(b for n, a, b in grpc if n == "location" and a == [page[-1]])
    headers = {args[0]: args[1] for name, args, _ in overloaded if name == "add_header"}
    assert headers["grpc-status"] == "14" and headers["grpc-message"].startswith("overloaded:")
    # A location's error_page replaces the server's: the size and upstream pages must be restated.
    for server_body, path in ((http, "/v2/models/rank/infer"), (grpc, f"/{GRPC_SERVICE}/ModelInfer")):
        location = select(server_body, path)
        server_pages = {code: args[-1] for name, args, _ in server_body if name == "error_page" for code in args[:-1]
                        if code != "="}
        pages = {code: args[-1] for name, args, _ in location if name == "error_page" for code in args[:-1]
                 if code != "="}
        for code in ("413", "502", "504"):
            assert pages[code] == server_pages[code], (path, code)
    # Health, metadata and readiness are never capped by load: a busy server is still alive.
    for location in (select(http, "/v2/health/ready"), select(http, "/v2/models/rank"),
                     select(grpc, f"/{GRPC_SERVICE}/ServerReady")):
        assert "inflight" not in _limit_conns(location)


def test_client_misbehaviour_is_not_logged_and_nothing_is_logged_per_request(conf, http_block):
    top = parse(conf)
    assert values(top, "error_log")[1] == "error"  # time-outs and bad requests log at "info"
    assert values(http_block, "access_log") == ["off"]
    assert values(http_block, "limit_conn_log_level") == ["info"]
    assert values(top, "daemon") == ["off"]


def test_the_default_limits_are_the_shared_facts(tmp_path):
    conf = render_config(UPSTREAM, PUBLIC, tmp_path)
    assert f"client_max_body_size {config.MAX_REQUEST_BYTES};" in conf
    assert f"client_header_timeout {config.GATEWAY_HEADER_TIMEOUT_S}s;" in conf
    assert f"limit_conn per_client {config.GATEWAY_CONN_PER_CLIENT};" in conf
    assert f"limit_conn inflight {config.GATEWAY_MAX_INFLIGHT};" in conf


@pytest.mark.parametrize("text,binary", [("é", False), ("\x01", False), ("😀", True)])
def test_the_largest_valid_rank_request_fits_the_body_limit(text, binary):
    """MAX_CANDIDATES texts of MAX_TEXT_CHARS characters at their widest encoding: JSON escapes
    (6 bytes a character) or binary tensors of 4-byte UTF-8, as tritonclient sends them."""
    longest = (text * config.MAX_TEXT_CHARS).encode()
    inputs = [triton_http.InferInput(config.QUERY, [1], "BYTES"),
              triton_http.InferInput(config.CANDIDATES, [config.MAX_CANDIDATES], "BYTES"),
              triton_http.InferInput(config.TOP_K, [1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([longest], dtype=np.object_), binary_data=binary)
    inputs[1].set_data_from_numpy(np.array([longest] * config.MAX_CANDIDATES, dtype=np.object_), binary_data=binary)
    inputs[2].set_data_from_numpy(np.array([0], dtype=np.int32), binary_data=binary)
    outputs = [triton_http.InferRequestedOutput(config.INDICES), triton_http.InferRequestedOutput(config.SCORES)]
    body, _ = triton_http.InferenceServerClient.generate_request_body(inputs, outputs, request_id="f" * 32)
    assert len(body) <= config.MAX_REQUEST_BYTES


def test_the_template_and_its_values_must_agree():
    assert render_template("a {{x}} b", {"x": 1}) == "a 1 b"
    with pytest.raises(ValueError, match=r"missing \['y'\]"):
        render_template("{{x}} {{y}}", {"x": 1})
    with pytest.raises(ValueError, match=r"unused \['z'\]"):
        render_template("{{x}}", {"x": 1, "z": 2})


def test_limits_must_be_positive_integers():
    with pytest.raises(ValueError, match="keepalive_s must be a positive integer"):
        Limits(keepalive_s=0)


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make system installs nginx-light)")
def test_nginx_accepts_the_generated_config(tmp_path):
    work = tmp_path / "gw"
    (work / "temp").mkdir(parents=True)
    conf = work / "nginx.conf"
    conf.write_text(render_config(UPSTREAM, PUBLIC, work, LIMITS))
    result = subprocess.run([nginx_binary(), "-t", "-p", f"{work}/", "-c", str(conf), "-e", str(work / "error.log")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
