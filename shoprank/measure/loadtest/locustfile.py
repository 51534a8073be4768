"""Locust users for the `rank` ensemble: GrpcRankUser and HttpRankUser call it through
shoprank.serving.client.RankClient and report every call to Locust (name "rank", response time,
failure). Run by `make loadtest` (shoprank.measure.loadtest), or by hand:

    locust -f shoprank/measure/loadtest/locustfile.py --headless -u 4 -r 4 --run-time 30s \
        --grpc-url 127.0.0.1:8001 --http-url 127.0.0.1:8000 GrpcRankUser HttpRankUser

Requests are real queries with product titles from the data (candidates per request drawn from
--candidates). Each call's response_length is its number of candidate pairs, so Locust's
"Average Content Size" is the mean candidates per request.

The soak (`make soak`, shoprank.measure.loadtest.soak) adds two options, both off by default:
--bad-share (that share of each user's calls are bad requests from bad_requests.py, reported as
"<protocol>-bad", named by kind, a failure unless the server answered with a client error) and
--request-log (one JSON line per call: end time, type, name, ms, ok, and a bad request's answer).
"""
import csv
import json
import os
import random
import sys
import time

from locust import User, events, task  # locust first: it monkey-patches the standard library for gevent
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from shoprank import config
from shoprank.data.requests import RequestPool
from shoprank.errors import RankError
from shoprank.measure.loadtest.bad_requests import BAD_REQUESTS, CLIENT_ERROR, answer_of, outcome_of
from shoprank.measure.loadtest.locust import REQUEST_NAME
from shoprank.measure.loadtest.profiles import Candidates
from shoprank.serving.client import RankClient


def _grpc_under_gevent() -> None:
    # gRPC's own threads block gevent's loop unless gRPC is told about gevent before first use.
    import grpc.experimental.gevent

    grpc.experimental.gevent.init_gevent()
    # Imported now, not by the first user's RankClient: Locust's --run-time clock runs by then.
    import tritonclient.grpc
    import tritonclient.http  # noqa: F401


_grpc_under_gevent()

POOL: RequestPool | None = None
STREAM: list | None = None  # with --zipf: the head-heavy requests users draw from
HEAD_HEAVY_STREAM = 20_000
CANDIDATES: Candidates | None = None
_environment = None
_request_log = None
_user_seq = 0


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--grpc-url", default=f"{config.HOST}:{config.GRPC_PORT}")
    parser.add_argument("--http-url", default=f"{config.HOST}:{config.HTTP_PORT}")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--candidates", default="uniform:10:200", help="'uniform:MIN:MAX' or 'fixed:N'")
    parser.add_argument("--data", default="auto", help="auto, default, shared or a file")
    parser.add_argument("--think-time", type=float, default=0.0, help="seconds between a user's requests")
    parser.add_argument("--seed", type=int, default=config.SEED)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--bad-share", type=float, default=0.0, help="share of calls that are bad requests (soak)")
    parser.add_argument("--request-log", default="", help="one JSON line per call to this file (soak)")
    parser.add_argument("--zipf", type=float, default=0.0,
                        help="head-heavy traffic: queries drawn Zipf-like with this exponent, each with fixed "
                             "candidates (the candidate range's upper end); 0 = every query alike")


@events.init.add_listener
def _load_requests(environment, **_):
    global POOL, CANDIDATES, _environment, _request_log
    _environment = environment
    options = environment.parsed_options
    CANDIDATES = Candidates.parse(options.candidates)
    POOL = RequestPool.from_spec(options.data)
    POOL.check_size(CANDIDATES.high)
    if options.zipf > 0:  # users pick uniformly from an i.i.d. Zipf stream: still Zipf-distributed
        global STREAM
        STREAM = POOL.head_heavy(CANDIDATES.high, HEAD_HEAVY_STREAM, options.zipf, options.seed).requests
    if not 0.0 <= options.bad_share < 1.0:
        raise ValueError(f"--bad-share must be in [0, 1), got {options.bad_share}")
    if options.request_log:
        # Line-buffered, read while Locust runs; open for the whole run, closed in _exit_now.
        _request_log = open(options.request_log, "a", buffering=1)  # noqa: SIM115


@events.request.add_listener
def _log_request(request_type, name, response_time, exception=None, context=None, **_):
    if _request_log is None:
        return
    record = {"t": round(time.time(), 3), "type": request_type, "name": name, "ms": round(response_time, 2),
              "ok": exception is None, **(context or {})}
    if exception is not None:
        record["error"] = str(exception)[:300]
    _request_log.write(json.dumps(record) + "\n")


@events.quit.add_listener
def _exit_now(exit_code, **_):
    # Headless Locust printed its stats and then hung at exit here, ignoring SIGTERM (gRPC's
    # threads under gevent). Write the final CSVs (Locust's own writer may not have flushed
    # them yet) and end the process.
    if _request_log is not None:
        _request_log.close()
    prefix = getattr(_environment.parsed_options, "csv_prefix", None) if _environment else None
    if prefix:
        writer = StatsCSV(_environment, PERCENTILES_TO_REPORT)
        for suffix, write in (("stats", writer.requests_csv), ("failures", writer.failures_csv),
                              ("exceptions", writer.exceptions_csv)):
            with open(f"{prefix}_{suffix}.csv", "w", newline="") as f:
                write(csv.writer(f))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


class _RankUser(User):
    abstract = True
    protocol = "grpc"

    def wait_time(self):
        return self.environment.parsed_options.think_time

    def on_start(self):
        global _user_seq
        _user_seq += 1
        options = self.environment.parsed_options
        self.top_k = options.top_k
        self.rng = random.Random(options.seed * 1000 + _user_seq)  # each user its own request sequence
        url = options.grpc_url if self.protocol == "grpc" else options.http_url
        self.rank_client = RankClient(url, self.protocol, timeout_s=options.request_timeout)
        self.bad_share = options.bad_share
        if self.bad_share:
            # Its own generator, so the good requests are the same sequence with or without bad ones.
            self.bad_rng = random.Random(options.seed * 1000 + 500 + _user_seq)
            self.bad_next = _user_seq  # kinds taken in turn: every kind is sent, even in a short run
            if self.protocol == "grpc":
                import tritonclient.grpc as api
                self.raw_client, self.raw_kwargs = api.InferenceServerClient(url), {
                    "client_timeout": options.request_timeout}
            else:
                import tritonclient.http as api
                self.raw_client, self.raw_kwargs = api.InferenceServerClient(
                    url, network_timeout=options.request_timeout), {}
            self.api = api

    def on_stop(self):
        self.rank_client.close()
        if self.bad_share:
            self.raw_client.close()

    @task
    def rank(self):
        if self.bad_share and self.bad_rng.random() < self.bad_share:
            self.bad_request()
            return
        if STREAM is not None:
            picked = STREAM[self.rng.randrange(len(STREAM))]
            query, candidates = picked.query, list(picked.texts)
        else:
            query, candidates = POOL.draw(self.rng, CANDIDATES.draw(self.rng))
        expected = min(self.top_k, len(candidates)) if self.top_k else len(candidates)
        error = None
        start = time.perf_counter()
        try:
            indices, scores = self.rank_client.infer_raw(query, candidates, self.top_k)
            if len(indices) != expected or len(scores) != expected:
                error = RankError(f"expected {expected} results, got {len(indices)} indices, {len(scores)} scores")
        except Exception as exc:  # every failure is reported, none ends the user
            error = exc
        elapsed_ms = (time.perf_counter() - start) * 1000
        self.environment.events.request.fire(request_type=self.protocol, name=REQUEST_NAME,
                                             response_time=elapsed_ms, response_length=len(candidates),
                                             exception=error, context={})

    def bad_request(self):
        bad = BAD_REQUESTS[self.bad_next % len(BAD_REQUESTS)]
        self.bad_next += 1
        error = None
        start = time.perf_counter()
        try:
            self.raw_client.infer(config.ENSEMBLE_MODEL, bad.inputs(self.api), **self.raw_kwargs)
        except Exception as exc:  # the expected answer: a client error
            error = exc
        elapsed_ms = (time.perf_counter() - start) * 1000
        answer = answer_of(error)
        outcome = outcome_of(answer)
        finding = None
        if outcome != CLIENT_ERROR:  # reported to Locust as a failure, the server's message kept
            detail = error.message() if callable(getattr(error, "message", None)) else str(error or "")
            finding = RankError(detail or "ranked as if it were a good request")
        self.environment.events.request.fire(request_type=f"{self.protocol}-bad", name=bad.name,
                                             response_time=elapsed_ms, response_length=0, exception=finding,
                                             context={"answer": answer, "outcome": outcome})


class GrpcRankUser(_RankUser):
    protocol = "grpc"


class HttpRankUser(_RankUser):
    protocol = "http"
