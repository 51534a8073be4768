"""Every shared fact of shoprank, in one place.

Every package (serving, training, convert, measure, online), the Triton models, the command
line and the tests read these names instead of repeating literals. Values a deployment may
change (ports, max length, engine) can be overridden by environment variables of the same name
prefixed with SHOPRANK_.
"""
from __future__ import annotations

import os
from pathlib import Path


def _env(name: str, default):
    raw = os.environ.get(f"SHOPRANK_{name}")
    if raw is None:
        return default
    return type(default)(raw)


# --- Paths -------------------------------------------------------------------------------
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = Path(_env("ARTIFACTS_DIR", str(PROJECT_ROOT / "artifacts")))
MODEL_REPOSITORY = Path(_env("MODEL_REPOSITORY", str(PROJECT_ROOT / "model_repository")))
DEFAULT_DATA_DIR = PROJECT_ROOT / "data" / "default"
# Real judgments beside the checkout (present on the developers' machines only).
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "homedepot_relevance.csv"
RUN_DIR = Path(_env("RUN_DIR", str(PROJECT_ROOT / ".run")))  # pid files, logs, admin key, backend folder
REPORTS_DIR = PROJECT_ROOT / "reports"
MODEL_DIR = ARTIFACTS_DIR / "model"   # the fine-tuned model folder every later step reads by default
ONNX_DIR = ARTIFACTS_DIR / "onnx"     # engines built from it: model.<kind>.onnx
PLAN_DIR = ARTIFACTS_DIR / "tensorrt"  # TensorRT plans: model.<precision>.plan
ONNX_KINDS = ("fp32", "int8", "qdq")  # FP32 export, dynamic CPU INT8, explicit (QDQ) INT8


def onnx_file(kind: str, onnx_dir: Path | str = ONNX_DIR) -> Path:
    """Where the ONNX engine of one kind lives (make onnx / make int8 / make qdq write them)."""
    return Path(onnx_dir) / f"model.{kind}.onnx"


# --- Model inputs --------------------------------------------------------------------------
MAX_SEQ_LEN = _env("MAX_SEQ_LEN", 64)  # tokens per (query, product text) pair, [CLS]/[SEP] included
# The tokenizer pads each request to the smallest bucket that holds its longest pair, so that
# requests of similar length have equal shapes and Triton's dynamic batcher can merge them.
SEQ_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# Texts are cut to this many characters before tokenization: bounds the work a huge text can
# cause, far above what MAX_SEQ_LEN tokens can cover in practice.
MAX_TEXT_CHARS = 4096
MAX_CANDIDATES = 1000  # per request; also the ranker's max_batch_size floor
# Benchmark and latency workloads: one query with this many real product texts.
WORKLOAD_SIZES = {"rank-50": 50, "rank-200": 200}
RANK50 = WORKLOAD_SIZES["rank-50"]
# Head-heavy traffic (make bench, load tests): the r-th most popular query is sent with probability
# proportional to 1 / r**ZIPF_EXPONENT (shoprank.data.requests.RequestPool.head_heavy); about 1
# for search query logs: the top 1% of Home Depot's 9,423 queries then get ~53% of requests.
ZIPF_EXPONENT = _env("ZIPF_EXPONENT", 1.0)

# --- Engine tensor contract (ONNX, TensorRT and the Triton ranker share it) ------------------
ENGINE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ENGINE_OUTPUT = "logits"
ID_DTYPE = "int32"  # one dtype for all engines: TensorRT prefers INT32 ids; the graph casts inside
ONNX_OPSET = 17  # >= 17 keeps LayerNormalization as one op (needed for safe FP16)

# --- Triton model repository -------------------------------------------------------------------
ENSEMBLE_MODEL = "rank"
TOKENIZER_MODEL = "tokenizer"
RANKER_MODEL = "ranker"
SORTER_MODEL = "sorter"
QUERY = "QUERY"            # BYTES [1]
CANDIDATES = "CANDIDATES"  # BYTES [-1], product texts
TOP_K = "TOP_K"            # INT32 [1]; 0 means all candidates
INDICES = "INDICES"        # INT32 [-1], positions in CANDIDATES, best first
SCORES = "SCORES"          # FP32 [-1], click probabilities, same order as INDICES
# Optional (docs/conversion.md, "Optional inputs"): product ids resolved against the catalog,
# business rules, and what rules add to the response (absent unless asked for).
CANDIDATE_IDS = "CANDIDATE_IDS"  # BYTES [-1], instead of or beside CANDIDATES
RULES = "RULES"                  # BYTES [1], JSON (shoprank.serving.rules)
FINAL_SCORES = "FINAL_SCORES"    # FP32 [-1], the score rules ordered by (with RULES only)
TRACE = "TRACE"                  # BYTES [1], JSON per returned item (RULES {"trace": true})
RANDOMIZED = "RANDOMIZED"        # BOOL [1], the page was shuffled for exploration (RULES explore)
ATTRIBUTES = "ATTRIBUTES"        # FP64 [N, A] tokenizer -> sorter, catalog attributes (ids only)
# Optional, the shopper (docs/personalization.md): an opaque id looked up in the profile store,
# and recent behaviour the caller sends; without them a request is ranked as before.
USER_ID = "USER_ID"              # BYTES [1]
USER_CONTEXT = "USER_CONTEXT"    # BYTES [-1], most recent first
# With a personal head: the shopper's behaviour features per candidate, tokenizer -> sorter,
# FP32 [N, B]; all zeros for a cold start, which the sorter scores exactly as without the head.
BEHAVIOUR = "BEHAVIOUR"
# Where the served path looks USER_ID up (shoprank.serving.profiles: a path, sqlite:///path or
# redis://host:port/db); `shoprank profiles feed` fills it from the feedback log.
PROFILE_STORE = _env("PROFILE_STORE", str(ARTIFACTS_DIR / "profiles" / "profiles.sqlite"))
# Names of the tensors between ensemble steps (tokenizer -> ranker -> sorter).
RANKER_LOGITS = "LOGITS"
# With a scoring head (shoprank.serving.head): each pair's features, tokenizer -> sorter, FP32 [N, F].
FEATURES = "FEATURES"
# "Why this order?" (shoprank.explain): the `explain` model beside the ensemble, asked only on demand.
EXPLAIN_MODEL = "explain"
EXPLANATIONS = "EXPLANATIONS"  # BYTES [N]: one JSON document per candidate, in CANDIDATES order
EXPLAIN_MAX_CANDIDATES = 10    # each candidate costs one scored pair per word, so explain a page, not a list
RANKER_MAX_BATCH = 1024     # rows (candidate pairs) one ranker execution may hold
# A request waits at most this long for others to merge with: none. Busy instances make requests
# queue (and merge) anyway, and a CPU engine scores merged requests no faster per pair, so any
# delay only adds to every lone request. The measured effect of this and the engine settings
# below: docs/benchmark.md, "What made it fast".
RANKER_QUEUE_DELAY_US = 0
# Cores one engine call uses (0: every core). Its length chunks run side by side, each on ONE
# core: ONNX Runtime's per-op thread hand-offs cost more than they save on ops this small.
ENGINE_THREADS = _env("ENGINE_THREADS", 0)
# ONNX Runtime's fused SkipLayerNormalization is slower on CPU than the Add and LayerNormalization
# it replaces, in the INT8 graphs (docs/benchmark.md, "What made it fast").
ENGINE_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
# Rows are scored in length-sorted chunks of at most this many tokens (rows x the chunk's
# longest pair), each cut to its own longest pair: on CPU every padded position costs as much
# as a real token, and titles vary from ~10 to 60 tokens. Small chunks also stay in cache, and
# the cores finish a request's last chunks closer together. 128 favours lists of tens of
# candidates; 256 was as fast for hundreds, at a little more throughput (docs/benchmark.md,
# "What made it fast").
ENGINE_CHUNK_TOKENS = _env("ENGINE_CHUNK_TOKENS", 128)
# ONNX Runtime's worker threads spin between calls by default. Here they share the cores with
# the tokenizer, the other Triton steps and other processes, so they sleep instead.
ENGINE_SPINNING = False
# Two ranker instances, each with every core and non-spinning threads: more throughput than one
# at the same p50 on 2 cores.
RANKER_INSTANCES = _env("RANKER_INSTANCES", 2)
TOKENIZER_INSTANCES = _env("TOKENIZER_INSTANCES", 1)
# Overload: bounded queues that refuse at once with a retryable "overloaded" error (Triton's
# UNAVAILABLE: HTTP 503, gRPC UNAVAILABLE) instead of queueing without end, so accepted
# requests stay fast and the rest fail fast. Requests counted per queue; a request that waited
# longer than the timeout is refused instead of computed (a caller may ask for less with
# Triton's per-request `timeout` parameter). docs/reliability.md has the measured effect.
TOKENIZER_MAX_QUEUE = _env("TOKENIZER_MAX_QUEUE", 8)
TOKENIZER_QUEUE_TIMEOUT_US = _env("TOKENIZER_QUEUE_TIMEOUT_US", 0)  # 0: none; its queue is short and fast
RANKER_MAX_QUEUE = _env("RANKER_MAX_QUEUE", 8)
RANKER_QUEUE_TIMEOUT_US = _env("RANKER_QUEUE_TIMEOUT_US", 2_000_000)

# --- Server ------------------------------------------------------------------------------------
HOST = _env("HOST", "127.0.0.1")
HTTP_PORT = _env("HTTP_PORT", 8000)
GRPC_PORT = _env("GRPC_PORT", 8001)
METRICS_PORT = _env("METRICS_PORT", 8002)
SERVER_START_TIMEOUT_S = 180
# Triton's response cache for head traffic (docs/caching.md): the ranker's logits for a repeated
# request. Key: the ranker version + the token ids, and every step after the ranker runs per
# request, so a swap, a new catalog or new rules never serve a stale page. Bounded, least recently
# used out first; 0 turns it off. On for `make serve`; off for run_triton unless asked for
# (tests and benchmarks measure the model).
RESPONSE_CACHE_BYTES = _env("RESPONSE_CACHE_BYTES", 64 * 1024 * 1024)
# `make serve`'s public front door (the gateway below): the only ports to expose beyond this
# machine; Triton's own ports (above) stay on loopback for the project's tools.
PUBLIC_HOST = _env("PUBLIC_HOST", "127.0.0.1")
GATEWAY_HTTP_PORT = _env("GATEWAY_HTTP_PORT", 8080)
GATEWAY_GRPC_PORT = _env("GATEWAY_GRPC_PORT", 8081)
# The public front door (nginx, shoprank/serving/gateway.py): Triton itself bounds neither request
# size nor connections, and serves its admin APIs on the inference ports.
# Largest request body the gateway lets through, HTTP and gRPC alike: the query and
# MAX_CANDIDATES texts, each at most MAX_TEXT_CHARS characters long (the tokenizer cuts the rest,
# so more is never useful), each character at most 6 bytes on the wire (JSON's "\uXXXX" escape;
# UTF-8, which gRPC and binary tensors carry, needs at most 4), 16 bytes a text for quotes,
# separators or length prefixes, and 64 KiB for tensor names, shapes and JSON structure.
MAX_REQUEST_BYTES = (MAX_CANDIDATES + 1) * (MAX_TEXT_CHARS * 6 + 16) + 64 * 1024
# Open connections the gateway holds at most, idle ones included (capped below the open-file
# limit); past 7/8 of them nginx stops accepting until time-outs free some.
GATEWAY_MAX_CONNECTIONS = _env("GATEWAY_MAX_CONNECTIONS", 16384)
# Requests one client address may have in flight (gRPC: concurrent calls); above every load-test
# profile's user count, since a load test runs from one address.
GATEWAY_CONN_PER_CLIENT = _env("GATEWAY_CONN_PER_CLIENT", 256)
# Inference requests the gateway forwards at once, all clients together; more are refused at once
# as overloaded (HTTP 503 with Retry-After, gRPC UNAVAILABLE) instead of queueing, so accepted
# requests keep the latency of normal load. Above the cpu profile's users (normal load never meets
# it) and about what the ranker finishes well inside the p99 target on 2 cores; on a bigger box,
# about capacity (requests/s) x the latency you accept (docs/reliability.md).
GATEWAY_MAX_INFLIGHT = _env("GATEWAY_MAX_INFLIGHT", 6)
GATEWAY_RETRY_AFTER_S = 1       # what an overloaded refusal tells the client to wait
GATEWAY_HEADER_TIMEOUT_S = 10   # a new connection sends its request headers (gRPC: preface) within this
GATEWAY_BODY_TIMEOUT_S = 10     # most time between two reads of a request body (and of a reply write)
GATEWAY_KEEPALIVE_S = 30        # an idle connection between requests (gRPC calls) is closed after this
GATEWAY_UPSTREAM_TIMEOUT_S = 60  # Triton's answer to one request (RankClient's default time-out)
GATEWAY_WORKERS = _env("GATEWAY_WORKERS", 1)  # one nginx worker forwards far more than the ranker scores

# --- Training defaults -----------------------------------------------------------------------
SEED = 13
VALID_FRACTION = 0.1  # share of queries held out for validation (split by query, never by row)
