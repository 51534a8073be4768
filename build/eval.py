#!/usr/bin/env python3
"""`make eval`: NDCG@10, MRR, P@5, AUC and RMSE of every variant (PyTorch, ONNX, INT8, QDQ,
TensorRT, the served ensemble) and of baselines (random, BM25, zero-shot) on validation queries;
prints the table and writes reports/quality.md, quality.json and quality.png."""
import argparse
import json
import sys
from pathlib import Path

import _path  # noqa: F401

from shoprank import config, evaluation
from shoprank.quality_gate import DEFAULT_MAX_NDCG_DROP


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"))
    p.add_argument("--data", default="", help="judgments file, 'shared' or 'default' (default: the model's own data)")
    p.add_argument("--split", default="valid", choices=["valid", "all"],
                   help="valid: the model's query-split validation part; all: every row (a withheld file)")
    p.add_argument("--onnx-dir", default=str(config.ARTIFACTS_DIR / "onnx"))
    p.add_argument("--plan-dir", default=str(config.ARTIFACTS_DIR / "tensorrt"))
    p.add_argument("--grpc", default="", help="gRPC address of a running server to evaluate (else one is started)")
    p.add_argument("--ports", default="", help="http,grpc,metrics ports for the self-started server (default: free)")
    p.add_argument("--served-engine", default="int8", help="engine the self-started server serves: fp32|int8|qdq")
    p.add_argument("--no-serve", action="store_true", help="skip the served-ensemble variant")
    p.add_argument("--no-zero-shot", action="store_true")
    p.add_argument("--base-model", default=None, help="encoder of the zero-shot baseline (default: bundled MiniLM)")
    p.add_argument("--limit-queries", type=int, default=0, help="first N queries only (quick looks)")
    p.add_argument("--max-ndcg-drop", type=float, default=DEFAULT_MAX_NDCG_DROP)
    p.add_argument("--bench-json", default=str(config.REPORTS_DIR / "bench.json"))
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--out", default=str(config.REPORTS_DIR / "quality.md"), help="markdown report ('' for none)")
    p.add_argument("--png", default=str(config.REPORTS_DIR / "quality.png"), help="quality vs latency plot ('' for none)")
    p.add_argument("--append", action="store_true", help="add this table to --out instead of replacing it")
    p.add_argument("--title", default="")
    p.add_argument("--fail-on-gate", action="store_true", help="exit 1 when a variant fails its quality gate")
    args = p.parse_args()

    ports = tuple(int(x) for x in args.ports.split(",")) if args.ports else None
    if ports is not None and len(ports) != 3:
        p.error("--ports needs three ports: http,grpc,metrics")
    df = evaluation.eval_pairs(args.model, args.data or None, args.split, args.limit_queries)
    table = evaluation.evaluate_model(
        args.model, df, onnx_dir=args.onnx_dir, plan_dir=args.plan_dir, grpc_url=args.grpc or None,
        served_engine=args.served_engine, ports=ports, base_model=args.base_model, serve=not args.no_serve,
        zero_shot=not args.no_zero_shot, max_ndcg_drop=args.max_ndcg_drop, latency=not args.no_latency,
        bench_json=args.bench_json)
    title = args.title or f"Ranking quality: {Path(args.model).name} on {Path(str(df.attrs['source'])).name}"
    print()
    print(table.to_markdown())
    s = table.summary
    print(f"\n{s['queries']} queries, {s['rows']} pairs; random NDCG@10 {s['random_ndcg']:.4f}; "
          f"mean-label RMSE {s['mean_label_rmse']:.4f}")
    png = None
    if args.png and not args.no_latency:
        png = evaluation.plot_quality_latency(table, args.png, title)
        if png:
            print(f"wrote {png}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        section = evaluation.markdown_report(table, title, png.name if png and png.parent == out.parent else (str(png) if png else None))
        if args.append and out.exists():
            out.write_text(out.read_text().rstrip() + "\n\n" + section)
        else:
            out.write_text("# Ranking quality (`make eval`)\n\n" + section)
        js = out.with_suffix(".json")
        reports = json.loads(js.read_text()) if args.append and js.exists() else {}
        reports[title] = table.to_json()
        js.write_text(json.dumps(reports, indent=2, default=float))
        print(f"wrote {out} and {js}")
    failed = table.gates_failed
    for r in failed:
        print(f"quality gate FAILED: {r.gate.get('error', r.label)}", file=sys.stderr)
    return 1 if failed and args.fail_on_gate else 0


if __name__ == "__main__":
    raise SystemExit(main())
