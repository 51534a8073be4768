# shoprank: fine-tune -> ONNX -> INT8 -> Triton ensemble -> gRPC/HTTP.  `make help` lists targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
SHOPRANK    := $(VENV)/bin/shoprank
ARTIFACTS   ?= artifacts
MODEL       ?= $(ARTIFACTS)/model
DATA        ?= default
COLUMNS     ?=
BASE_MODEL  ?=
EPOCHS      ?= 1
MAX_LENGTH  ?= 64
ENGINE      ?= int8
TARGET      ?= python
PRECISION   ?= fp16
SPLIT       ?= valid
ONNX_DIR    ?= $(ARTIFACTS)/onnx
GRPC        ?=
EVAL_ARGS   ?=
BENCH_ARGS  ?=
BENCH_VENV  ?= .bench-venv
FEEDBACK_DB ?= $(ARTIFACTS)/feedback/feedback.sqlite
UPDATE_ARGS ?=
SIMULATE_ARGS ?=
LAYERS      ?= 3
DISTILL_ARGS ?=
HOST        ?= 127.0.0.1
HTTP_PORT   ?= 8000
GRPC_PORT   ?= 8001
METRICS_PORT?= 8002
TEST_ARGS   ?=
PROFILE     ?= cpu
CAPACITY    ?=
P50_MS      ?=
P95_MS      ?=
P99_MS      ?=
LOADTEST_ARGS ?=
SOAK_MINUTES ?= 10
SOAK_ARGS   ?=
CONCURRENCY ?= 1,2,4,8

ENGINE_FILE  = $(ONNX_DIR)/model.$(ENGINE).onnx
DISTILLED_INT8 = $(ARTIFACTS)/onnx-l$(LAYERS)/model.int8.onnx
PERF_ANALYZER = $(ARTIFACTS)/tools/perf_analyzer/perf_analyzer/bin/perf_analyzer
SERVER_ARGS  = --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)
export SHOPRANK_ARTIFACTS_DIR := $(abspath $(ARTIFACTS))
export PYTHONUNBUFFERED := 1

.PHONY: help venv system data finetune onnx int8 repository serve stop status query demo test lint clean loadtest perf perf-tools qdq engine gpu-check eval recipe bench bench-venv shoppers update rollback simulate distill compare soak overload head head-bench

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed  ## create/refresh .venv: the pinned requirements, then shoprank itself (editable)

system:  ## Debian packages the tests use (prometheus, promtool, nginx); installs only what is missing
	@bash scripts/system_packages.sh

data: venv  ## write the synthetic default data (data/default/clicks.csv)
	$(SHOPRANK) data

finetune: venv  ## fine-tune the cross-encoder (DATA=, COLUMNS=, BASE_MODEL=, EPOCHS=, MAX_LENGTH=) -> $(MODEL)
	$(SHOPRANK) finetune --data "$(DATA)" --out-dir "$(MODEL)" --epochs $(EPOCHS) --max-length $(MAX_LENGTH) \
		$(if $(BASE_MODEL),--base-model "$(BASE_MODEL)") $(if $(COLUMNS),--columns "$(COLUMNS)")

onnx: venv  ## export $(MODEL) to ONNX FP32, checked against PyTorch
	$(SHOPRANK) onnx --model "$(MODEL)" --out "$(ONNX_DIR)/model.fp32.onnx"

int8: venv  ## ONNX Runtime INT8 (per-row activation scales: isolated scores) from the FP32 ONNX, gated on validation NDCG@10
	$(SHOPRANK) int8 --model "$(MODEL)" --fp32 "$(ONNX_DIR)/model.fp32.onnx" --out "$(ONNX_DIR)/model.int8.onnx"

repository: venv  ## generate model_repository/ for TARGET: the fastest gated variant (distilled student INT8, else full INT8), or ENGINE=int8|fp32
	$(SHOPRANK) repository --model "$(MODEL)" --target $(TARGET) \
		$(if $(filter command line environment,$(origin ENGINE)),--engine "$(ENGINE_FILE)",--engine auto \
		--onnx-dir "$(ONNX_DIR)" --student-engine "$(DISTILLED_INT8)")

serve: venv  ## start tritonserver in the background on $(HOST) and wait until ready
	$(SHOPRANK) serve $(SERVER_ARGS)

stop: venv  ## stop the server started by `make serve`
	$(SHOPRANK) stop

status: venv  ## is the server ready?
	$(SHOPRANK) status $(SERVER_ARGS)

query: venv  ## rank a few example products over gRPC and HTTP against the running server
	$(SHOPRANK) query --model "$(MODEL)" --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT)

demo:  ## everything on a fresh machine: set-up, fine-tune, ONNX, INT8, serve, query, stop
	@t0=$$(date +%s.%N); $(MAKE) --no-print-directory venv; t1=$$(date +%s.%N); \
	$(PY) scripts/demo.py --setup-seconds "$$t0 $$t1"

test: venv system  ## unit tests (no server) and integration tests (real tritonserver, gRPC and HTTP)
	$(PY) -m pytest -q tests $(TEST_ARGS)

lint: venv  ## ruff, and the import contracts in pyproject.toml (lint-imports)
	$(VENV)/bin/ruff check shoprank tests scripts model_repository
	$(VENV)/bin/lint-imports

$(BENCH_VENV)/.installed: requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench-venv: $(BENCH_VENV)/.installed  ## Infinity's own environment for make bench (transformers<5)

bench: venv bench-venv  ## side-by-side speed and quality: naive PyTorch, CrossEncoder, Infinity, our Triton variants -> reports/bench.md
	@test -f "$(MODEL)/config.json" || $(MAKE) --no-print-directory finetune
	@test -f "$(ONNX_DIR)/model.fp32.onnx" || $(MAKE) --no-print-directory onnx
	@test -f "$(ONNX_DIR)/model.int8.onnx" || $(MAKE) --no-print-directory int8
	@test -f "$(DISTILLED_INT8)" || $(MAKE) --no-print-directory distill \
		|| echo "bench: no distilled model (make distill failed or its gate refused it): not measured"
	$(SHOPRANK) bench --model "$(MODEL)" --onnx-dir "$(ONNX_DIR)" --infinity-venv "$(BENCH_VENV)" \
		$$(test -f "$(DISTILLED_INT8)" && echo --engine "l$(LAYERS)-int8=$(DISTILLED_INT8)") $(BENCH_ARGS)

shoppers: venv  ## simulated shoppers against the running server, logged into $(FEEDBACK_DB) (traffic for make update)
	$(SHOPRANK) shoppers --url $(HOST):$(GRPC_PORT) --feedback-db "$(FEEDBACK_DB)" $(SIMULATE_ARGS)

distill: venv  ## compress: cut $(MODEL) to LAYERS (3) layers, feed-forward blocks to 1,024 units, attention to 8 heads (DISTILL_ARGS=--intermediate 0 --heads 0: whole), distil, ONNX + INT8, gated vs the full FP32 -> $(MODEL)-l$(LAYERS)
	$(SHOPRANK) distill --teacher "$(MODEL)" --teacher-onnx "$(ONNX_DIR)/model.fp32.onnx" --layers $(LAYERS) $(DISTILL_ARGS)

update: venv  ## online learning: feedback log -> fine-tune -> gate -> next ranker version, loaded live (UPDATE_ARGS=)
	$(SHOPRANK) update --feedback-db "$(FEEDBACK_DB)" --url $(HOST):$(GRPC_PORT) --base-model "$(MODEL)" $(UPDATE_ARGS)

rollback: venv  ## return the ranker to its previous version, live
	$(SHOPRANK) rollback --url $(HOST):$(GRPC_PORT) --base-model "$(MODEL)"

simulate: venv  ## simulated shoppers: rounds of serve -> log -> update -> swap -> reports/online_learning.png
	$(SHOPRANK) simulate $(SIMULATE_ARGS)

eval: venv  ## quality of every variant + baselines on validation queries (MODEL=, DATA=, COLUMNS=, SPLIT=valid|all, GRPC=) -> reports/quality.md
	$(SHOPRANK) eval --model "$(MODEL)" --onnx-dir "$(ONNX_DIR)" --split $(SPLIT) \
		$(if $(filter command line environment,$(origin DATA)),--data "$(DATA)") $(if $(COLUMNS),--columns "$(COLUMNS)") \
		$(if $(GRPC),--grpc "$(GRPC)") $(EVAL_ARGS)

recipe: venv  ## Home Depot recipe: fine-tune MiniLM on ../shared/data (~20 min on 2 idle cores) -> $(MODEL) + training.png
	SHOPRANK="$(SHOPRANK)" COLUMNS="$(COLUMNS)" scripts/train_recipe.sh "$(MODEL)" "$(if $(filter command line environment,$(origin DATA)),$(DATA),../shared/data/homedepot_relevance.csv)"

head: venv  ## scoring head of $(MODEL): out-of-fold logits of its fold models + lexical features, gated -> $(MODEL)/head
	$(SHOPRANK) head --model "$(MODEL)" $(HEAD_ARGS)

head-bench: venv  ## served rank-50 p50 with $(MODEL)'s scoring head vs without, side by side -> reports/head_latency.json
	$(SHOPRANK) head-bench --model "$(MODEL)" --engine "$(ENGINE_FILE)"

compare: venv  ## trained models MODELS="a b ..." on the first one's validation split, each vs the first (NDCG 95% CI)
	$(SHOPRANK) compare $(MODELS)

.PHONY: cache-bench
cache-bench: venv  ## head-heavy (Zipf) traffic, the served model with and without Triton's response cache, side by side -> reports/cache_bench.md
	$(SHOPRANK) cache-bench --model "$(MODEL)" --onnx-dir "$(ONNX_DIR)" \
		$$(test -f "$(DISTILLED_INT8)" && echo --engine "l$(LAYERS)-int8=$(DISTILLED_INT8)") $(CACHE_BENCH_ARGS)

.PHONY: isolation
isolation: venv  ## does a pair's score depend on the rows it shares an engine call with? INT8 per-tensor/per-row/static vs FP32 -> reports/isolation.md
	@test -f "$(ONNX_DIR)/model.fp32.onnx" || $(MAKE) --no-print-directory onnx
	$(SHOPRANK) isolation --model "$(MODEL)" --onnx-dir "$(ONNX_DIR)" --work-dir "$(ARTIFACTS)/isolation"

qdq: venv  ## explicit INT8 (QDQ) ONNX for TensorRT from 512 training pairs; fails if validation NDCG@10 drops > 0.005
	$(SHOPRANK) qdq --model "$(MODEL)" --fp32 "$(ONNX_DIR)/model.fp32.onnx" --out "$(ONNX_DIR)/model.qdq.onnx"

engine: venv  ## TensorRT plan PRECISION=fp16|int8 -> model_repository ranker (tensorrt_plan); NVIDIA GPU + TensorRT; polygraphy-gated
	$(SHOPRANK) engine --precision $(PRECISION) --model "$(MODEL)" --onnx "$(ONNX_DIR)/model.fp32.onnx" --qdq "$(ONNX_DIR)/model.qdq.onnx"

gpu-check: venv  ## on a GPU host: both engines, polygraphy, serve the TensorRT ranker, rank checks, short load test
	SHOPRANK="$(SHOPRANK)" MODEL="$(MODEL)" scripts/gpu_check.sh

loadtest: venv  ## Locust gRPC+HTTP load vs shoprank/measure/loadtest/targets.toml (PROFILE=cpu|gpu, CAPACITY=1, P50_MS=...); exit 1 on a miss
	$(SHOPRANK) loadtest --profile $(PROFILE) $(SERVER_ARGS) $(if $(CAPACITY),--capacity) \
		$(if $(P50_MS),--p50-ms $(P50_MS)) $(if $(P95_MS),--p95-ms $(P95_MS)) $(if $(P99_MS),--p99-ms $(P99_MS)) \
		$(LOADTEST_ARGS)

overload: venv  ## PROFILE load at its users and 10x: accepted p99 vs target, share refused as overloaded -> reports/overload.json
	$(SHOPRANK) overload --profile $(PROFILE) $(SERVER_ARGS)

soak: venv  ## SOAK_MINUTES (10) of the PROFILE load + 5% bad requests; per 30 s: failures, p95, memory -> reports/soak.md; exit 1 on a miss
	$(SHOPRANK) soak --profile $(PROFILE) $(SERVER_ARGS) --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

$(PERF_ANALYZER): | venv
	PY="$(PY)" scripts/install_perf_analyzer.sh $(ARTIFACTS)/tools

perf-tools: $(PERF_ANALYZER)  ## install perf_analyzer (PyPI perf-analyzer) into $(ARTIFACTS)/tools

perf: venv $(PERF_ANALYZER)  ## perf_analyzer sweep on the rank ensemble (CONCURRENCY=1,2,4,8) -> reports/loadtest/perf
	$(SHOPRANK) perf --profile $(PROFILE) $(SERVER_ARGS) --concurrency $(CONCURRENCY) --tools $(ARTIFACTS)/tools

# --- monitoring (docs/monitoring.md): Prometheus on $(HOST):$(PROM_PORT) beside the server -----------
PROM_PORT   ?= 9090
SCRAPE_INTERVAL ?= 2s
DASHBOARD_MINUTES ?= 15
MONITOR_SECONDS ?= 60
.PHONY: monitor monitor-stop dashboard monitor-demo

monitor: venv system  ## Prometheus in the background on $(HOST):$(PROM_PORT) scraping make serve's server, alert rules monitoring/rules.yml -> .run/prometheus
	$(SHOPRANK) monitor start $(SERVER_ARGS) --port $(PROM_PORT) --scrape-interval $(SCRAPE_INTERVAL)

monitor-stop: venv  ## stop the Prometheus `make monitor` started (its data stays in .run/prometheus)
	$(SHOPRANK) monitor stop

dashboard: venv  ## the last DASHBOARD_MINUTES (15) from make monitor's Prometheus: rates, latency, errors, scores -> reports/monitoring/dashboard.html
	$(SHOPRANK) dashboard --url http://$(HOST):$(PROM_PORT) --minutes $(DASHBOARD_MINUTES)

monitor-demo: venv system  ## end to end on free ports: server + Prometheus + MONITOR_SECONDS of traffic (bad requests too) + dashboard
	$(SHOPRANK) monitor demo --seconds $(MONITOR_SECONDS)

# --- beyond one machine (docs/kubernetes.md, docs/capacity.md) ------------------------------------------
N           ?= 2
REPLICAS_ARGS ?=
CORE_HOUR_USD ?= 0.04
CAPACITY_ARGS ?=

.PHONY: manifests
manifests: venv system  ## render deploy/kubernetes/ overlays (cpu, gpu, kserve) with kubectl kustomize, validate offline -> .run/manifests
	$(SHOPRANK) manifests --out .run/manifests

.PHONY: replicas
replicas: venv system  ## N (2) tritonserver replicas behind HAProxy: balancer cost, rolling update + a killed replica under load -> reports/replicas.md
	@test -f "$(ONNX_DIR)/model.int8.onnx" || $(MAKE) --no-print-directory demo
	$(SHOPRANK) replicas --replicas $(N) --model "$(MODEL)" --engine "$(ONNX_DIR)/model.int8.onnx" \
		--next-engine "$(ONNX_DIR)/model.fp32.onnx" $(REPLICAS_ARGS)

.PHONY: capacity
capacity: venv  ## measure each served variant's CPU per rank-50 request -> docs/capacity.md (pods for 2,000 req/s, $ per million at CORE_HOUR_USD)
	@test -f "$(ONNX_DIR)/model.int8.onnx" || $(MAKE) --no-print-directory demo
	$(SHOPRANK) capacity --measure --model "$(MODEL)" --core-hour-usd $(CORE_HOUR_USD) $(CAPACITY_ARGS)

# --- catalog, business rules, conversion-aware ordering (docs/conversion.md, docs/simulator.md) -------
CATALOG ?=

.PHONY: catalog
catalog: venv  ## product catalog for CANDIDATE_IDS -> artifacts/catalog/catalog.sqlite: CATALOG=path (CSV/Parquet), else the example (Home Depot titles or synthetic products + generated attributes); reloads live
	$(if $(CATALOG),$(SHOPRANK) catalog load "$(CATALOG)",$(SHOPRANK) catalog example)

.PHONY: catalog-bench
catalog-bench: venv  ## lookup of 1,000 ids in the catalog: p50/p99 vs 3 ms -> reports/catalog_lookup.json
	@test -f artifacts/catalog/catalog.sqlite || $(MAKE) --no-print-directory catalog
	$(SHOPRANK) catalog bench

.PHONY: conversion
conversion: venv  ## simulated shoppers, 3 seeds: relevance vs expected value vs + rules: revenue, CTR, NDCG, stock, brands -> reports/conversion.md + PNG
	@test -f "$(ONNX_DIR)/model.int8.onnx" || $(MAKE) --no-print-directory demo
	$(SHOPRANK) conversion --model-dir "$(MODEL)" --engine "$(ONNX_DIR)/model.int8.onnx"

.PHONY: rules-bench
# the code before business rules existed
RULES_BASELINE ?= 03081cb
# the sorter cases measured this many times in turn: a p99 per round, and pooled
RULES_ROUNDS ?= 5
rules-bench: venv  ## sorter inside Triton: all rules at N=1000 (p99 vs 2 ms, RULES_ROUNDS rounds); rank-50 without rules vs RULES_BASELINE -> reports/rules_bench.json
	@test -f "$(ONNX_DIR)/model.int8.onnx" || $(MAKE) --no-print-directory demo
	@test -f artifacts/catalog/catalog.sqlite || $(MAKE) --no-print-directory catalog
	$(SHOPRANK) rules-bench --model-dir "$(MODEL)" --engine "$(ONNX_DIR)/model.int8.onnx" --baseline "$(RULES_BASELINE)" --rounds "$(RULES_ROUNDS)"

# --- explanations: "why this order?" (docs/explanations.md) -----------------------------------------
EXPLAIN_QUERY ?=
EXPLAIN_PRODUCTS ?=
EXPLAIN_ARGS ?=

.PHONY: explain
explain: venv  ## why this order? words shaded by attribution from the running server (EXPLAIN_QUERY="..." EXPLAIN_PRODUCTS='"a" "b"', else the demo example) -> reports/explain.html
	$(SHOPRANK) explain --url $(HOST):$(GRPC_PORT) --html reports/explain.html $(if $(EXPLAIN_QUERY),--query "$(EXPLAIN_QUERY)" $(EXPLAIN_PRODUCTS),--example) $(EXPLAIN_ARGS)

.PHONY: explain-report
explain-report: venv  ## occlusion (served) vs integrated gradients on 200 real pairs: agreement, deletion curves vs random, cost -> reports/explanations.md + json
	$(SHOPRANK) explain-report $(EXPLAIN_ARGS)

# --- personalization (docs/personalization.md) -------------------------------------------------------
PERSONALIZE_ARGS ?=

.PHONY: personalize
personalize: venv  ## simulated shoppers -> logs -> late fusion vs behaviour-as-text (3 seeds) -> reports/personalization.md + PNG; installs the personal head
	@test -f "$(ONNX_DIR)/model.int8.onnx" || $(MAKE) --no-print-directory demo
	$(SHOPRANK) personalize --model "$(MODEL)" --engine "$(ONNX_DIR)/model.int8.onnx" --latency --install $(PERSONALIZE_ARGS)

.PHONY: personal-head
personal-head: venv  ## the late-fusion personal head only, from one short simulated seed (what make demo serves)
	$(SHOPRANK) personalize --model "$(MODEL)" --engine "$(ONNX_DIR)/model.int8.onnx" --seeds 7 --designs fusion \
		--days 8 --test-from-day 6 --per-category 8 --install --work-dir "$(ARTIFACTS)/personalize/head" \
		--report-dir "$(ARTIFACTS)/personalize/head" >/dev/null && echo "personal head installed in $(MODEL)/personal"

.PHONY: query-shoppers
query-shoppers: venv  ## against the running server: simulated shoppers' logs -> profile store -> one query for two shoppers + anonymous
	$(SHOPRANK) personal-demo --url $(HOST):$(GRPC_PORT)

.PHONY: forget
forget: venv  ## right to erasure: USER_ID=id -> the shopper's profile and feedback rows deleted
	@test -n "$(USER_ID)" || { echo "forget: say whom, USER_ID=..."; exit 2; }
	$(SHOPRANK) forget "$(USER_ID)" --feedback-db "$(FEEDBACK_DB)"

clean:  ## remove built artifacts and generated repository files (keeps .venv)
	-$(SHOPRANK) stop 2>/dev/null
	-$(SHOPRANK) monitor stop 2>/dev/null
	rm -rf $(ARTIFACTS) .run reports data/default
	git clean -fdX model_repository
