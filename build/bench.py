#!/usr/bin/env python3
"""`make bench`: naive PyTorch, CrossEncoder, Infinity and our Triton ensemble side by side, in one
run on the same requests and model; writes reports/bench.md, bench.json and two plots."""
import argparse
from pathlib import Path

import _path  # noqa: F401

from shoprank import bench, config


def _csv(kind):
    return lambda s: tuple(kind(x) for x in s.split(",") if x)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"))
    parser.add_argument("--onnx-dir", default=str(config.ARTIFACTS_DIR / "onnx"))
    parser.add_argument("--out-dir", default=str(config.REPORTS_DIR))
    parser.add_argument("--requests", type=int, default=100, help="distinct requests per workload (>= 100 for the report)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workloads", type=_csv(str), default=tuple(bench.WORKLOAD_SIZES),
                        help=f"comma list of {', '.join(bench.WORKLOAD_SIZES)}")
    parser.add_argument("--clients", type=_csv(int), default=(4, 8), help="concurrency levels, e.g. 4,8")
    parser.add_argument("--systems", type=_csv(str), default=(),
                        help="only systems whose key starts with one of these, e.g. naive,triton-int8")
    parser.add_argument("--skip", type=_csv(str), default=(), help="leave out systems by key prefix, e.g. infinity")
    parser.add_argument("--quality-limit", type=int, default=None, help="validation pairs for NDCG@10 (default all)")
    parser.add_argument("--port-base", type=int, default=None, help="first of 3 per engine + 2 consecutive ports (default: free ports)")
    parser.add_argument("--engine", action="append", default=[], metavar="NAME=ONNX",
                        help="also measure this ONNX engine (in-process and in Triton), e.g. fused=artifacts/x.onnx")
    parser.add_argument("--only", action="append", default=[], metavar="WORKLOAD=PREFIXES",
                        help="measure only these systems on a workload, e.g. rank-200=ort,triton,infinity-onnx")
    parser.add_argument("--infinity-venv", default=str(bench.BENCH_VENV), help="venv with infinity-emb (make bench-venv)")
    parser.add_argument("--ranker-instances", type=int, default=bench.BenchConfig.ranker_instances)
    parser.add_argument("--tokenizer-instances", type=int, default=1)
    parser.add_argument("--from-json", metavar="BENCH_JSON",
                        help="measure nothing: re-judge targets and rewrite the report and plots from a bench.json")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20 requests, rank-50 only, 4 clients, 200 validation pairs")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.warmup, args.workloads, args.clients = 20, 3, ("rank-50",), (4,)
        args.quality_limit = args.quality_limit or 200
    if any("=" not in e for e in args.engine + args.only):
        parser.error("--engine takes NAME=PATH, --only WORKLOAD=PREFIX,PREFIX")
    unknown = [w for w in args.workloads if w not in bench.WORKLOAD_SIZES]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(bench.WORKLOAD_SIZES)}")
    cfg = bench.BenchConfig(model_dir=Path(args.model), onnx_dir=Path(args.onnx_dir), out_dir=Path(args.out_dir),
                            requests=args.requests, warmup=args.warmup, workloads=args.workloads,
                            clients=args.clients, systems=args.systems, skip=args.skip,
                            quality_limit=args.quality_limit, port_base=args.port_base,
                            ranker_instances=args.ranker_instances, tokenizer_instances=args.tokenizer_instances,
                            infinity_venv=Path(args.infinity_venv), extra_engines=dict(e.split("=", 1) for e in args.engine),
                            only={w: tuple(p.split(",")) for w, p in (o.split("=", 1) for o in args.only)})
    if args.from_json:
        import json

        report = json.loads(Path(args.from_json).read_text())
        report["targets"] = bench.targets(report["systems"])
    else:
        report = bench.run(cfg)
    paths = bench.write_report(report, cfg.out_dir)
    print("\n" + "\n".join(f"- {t['goal']}: {'met' if t['met'] else 'NOT met'}" for t in report["targets"].values()))
    print(f"report {paths['md']} ({paths['json'].name}, {paths['latency'].name}, {paths['throughput'].name})")
