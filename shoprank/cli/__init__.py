"""The `shoprank` command: one subcommand per user-facing step; the Makefile's targets call these.

    shoprank --help            the commands
    shoprank COMMAND --help    one command's options

A mistake in what the user gave (errors.DataError: a data file that is missing, unreadable or
empty, columns not in it, a label that does not fit, a bad COLUMNS spec) ends any command with one
line on stderr, `shoprank COMMAND: message`, and exit status 2, as argparse's own usage errors
do. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import importlib
import sys

from ..errors import DataError

# command: (module in shoprank.cli, function, what it does)
COMMANDS = {
    "data": ("build", "data", "write the synthetic default data (data/default/clicks.csv)"),
    "finetune": ("build", "finetune", "fine-tune the cross-encoder"),
    "onnx": ("build", "onnx", "export to ONNX FP32, checked against PyTorch"),
    "int8": ("build", "int8", "ONNX Runtime INT8, gated on validation NDCG@10"),
    "qdq": ("build", "qdq", "explicit INT8 (QDQ) ONNX for TensorRT, gated"),
    "engine": ("build", "engine", "TensorRT plan into the repository (NVIDIA GPU + TensorRT)"),
    "distill": ("build", "distill", "compress to fewer layers, distil, ONNX + INT8, gated"),
    "head": ("build", "head", "scoring head: cross-encoder logit + lexical features, out-of-fold, gated"),
    "repository": ("build", "repository", "generate the Triton model repository"),
    "plot-training": ("build", "plot_training", "plot a fine-tuned model's validation curves"),
    "serve": ("serve", "serve", "start tritonserver in the background and wait until ready"),
    "stop": ("serve", "stop", "stop the server `shoprank serve` started"),
    "status": ("serve", "status", "is the server ready?"),
    "query": ("serve", "query", "rank example queries over gRPC and HTTP, time rank-50 requests"),
    "rank": ("serve", "rank", "rank product texts for a query (the command-line client)"),
    "eval": ("measure", "evaluate", "quality of every variant and baseline on validation queries"),
    "compare": ("measure", "compare", "trained models on one validation split, each vs the first"),
    "bench": ("measure", "bench", "side-by-side speed and quality against what users would run"),
    "loadtest": ("measure", "loadtest", "Locust load test against latency targets"),
    "head-bench": ("measure", "head_bench", "served rank-50 latency with the scoring head vs without, one run"),
    "cache-bench": ("measure", "cache_bench", "head-heavy (Zipf) traffic with and without the response cache"),
    "overload": ("measure", "overload", "the load at 1x and 10x its users: accepted p99 and the share shed"),
    "soak": ("measure", "soak", "minutes of load with bad requests mixed in: failures and memory per window"),
    "perf": ("measure", "perf", "perf_analyzer concurrency sweep with the server-side breakdown"),
    "isolation": ("measure", "isolation", "does a pair's score depend on the rows beside it? INT8 options compared"),
    "check-served": ("measure", "check_served", "GPU check: a served TensorRT ranker against ONNX Runtime"),
    "monitor": ("monitor", "monitor", "Prometheus beside the server: start | stop | check | demo"),
    "dashboard": ("monitor", "dashboard", "request rate, latency, errors, scores from Prometheus -> HTML + PNG"),
    "update": ("online", "update", "online learning: feedback -> fine-tune -> gate -> next version, live"),
    "rollback": ("online", "rollback", "return the ranker to its previous version, live"),
    "profiles": ("personal", "profiles", "shopper profile store: feed from the feedback log | show | bench"),
    "forget": ("personal", "forget", "right to erasure: a shopper's profile and feedback rows"),
    "personalize": ("personal", "personalize", "simulated shoppers -> personalized designs -> report"),
    "personal-demo": ("personal", "personal_demo", "one query ranked for two simulated shoppers and anonymously"),
    "simulate": ("online", "simulate", "simulated shoppers: rounds of serve -> log -> update -> swap"),
    "shoppers": ("online", "shoppers", "simulated shoppers against a running server, logged as feedback"),
    "feedback": ("online", "feedback", "feedback store: HTTP collector, retention, write cost, stats"),
    "catalog": ("shop", "catalog", "product catalog for CANDIDATE_IDS: load a file | example | bench"),
    "conversion": ("shop", "conversion", "simulated shoppers: relevance vs expected value vs + rules"),
    "rules-bench": ("shop", "rules_bench", "sorter cost inside Triton: all rules at N=1000; rank-50 vs HEAD"),
    "manifests": ("deploy", "manifests", "render deploy/kubernetes/ overlays and validate them offline"),
    "replicas": ("deploy", "replicas", "N replicas behind HAProxy: rolling update, a killed replica, balancer cost"),
    "capacity": ("deploy", "capacity", "docs/capacity.md from the measured numbers"),
    "explain": ("explain", "explain", "why this order? words shaded by attribution, from the served model (+ HTML)"),
    "explain-report": ("explain", "explain_report", "explanations on real pairs: agreement, deletion curves, cost"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return ("usage: shoprank COMMAND [options]   (shoprank COMMAND --help for its options)\n\ncommands:\n"
            + "\n".join(f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"shoprank: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[name]
    # Imported on demand: `shoprank stop` should not pay for importing torch.
    command = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    try:
        return int(command(rest) or 0)
    except DataError as exc:
        print(f"shoprank {name}: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # one line
        return 2
