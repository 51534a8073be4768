"""Measuring commands: eval, compare, bench, loadtest, perf and check-served (the GPU check's
served half)."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from .. import config
from .common import add_server_args, endpoints

COLUMNS_HELP = ("how --data's columns and labels are read (COLUMNS=): a ready mapping's name, or "
                "query:COL,text:COL[+COL],label:COL[,kind:...][,relevant:...] (docs/data.md); "
                "default: the model card's mapping for its own data, detected for another file")


def evaluate(argv: list[str]) -> int:
    """`make eval`: NDCG@10, MRR, P@5, AUC and RMSE of every variant (PyTorch, ONNX, INT8, QDQ,
    TensorRT, the served ensemble) and of baselines (random, BM25, zero-shot) on validation
    queries; prints the table and writes reports/quality.md, quality.json and quality.png."""
    from ..data.split import model_pairs
    from ..measure.eval.run import evaluate_model
    from ..measure.eval.table import markdown_report, plot_quality_latency
    from ..quality.gate import MAX_NDCG_DROP

    p = argparse.ArgumentParser(prog="shoprank eval", description=evaluate.__doc__)
    p.add_argument("--model", default=str(config.MODEL_DIR))
    p.add_argument("--data", default="", help="judgments file, 'shared' or 'default' (default: the model's own data)")
    p.add_argument("--columns", default="", help=COLUMNS_HELP)
    p.add_argument("--split", default="valid", choices=["valid", "all"],
                   help="valid: the model's query-split validation part; all: every row (a withheld file)")
    p.add_argument("--onnx-dir", default=str(config.ONNX_DIR))
    p.add_argument("--plan-dir", default=str(config.PLAN_DIR))
    p.add_argument("--grpc", default="", help="gRPC address of a running server to evaluate (else one is started)")
    p.add_argument("--ports", default="", help="http,grpc,metrics ports for the self-started server (default: free)")
    p.add_argument("--served-engine", default="int8", help="engine the self-started server serves: fp32|int8|qdq")
    p.add_argument("--no-serve", action="store_true", help="skip the served-ensemble variant")
    p.add_argument("--no-zero-shot", action="store_true")
    p.add_argument("--base-model", default=None, help="encoder of the zero-shot baseline (default: bundled MiniLM)")
    p.add_argument("--limit-queries", type=int, default=0, help="first N queries only (quick looks)")
    p.add_argument("--max-ndcg-drop", type=float, default=MAX_NDCG_DROP)
    p.add_argument("--bench-json", default=str(config.REPORTS_DIR / "bench.json"))
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--out", default=str(config.REPORTS_DIR / "quality.md"), help="markdown report ('' for none)")
    p.add_argument("--png", default=str(config.REPORTS_DIR / "quality.png"),
                   help="quality vs latency plot ('' for none)")
    p.add_argument("--append", action="store_true", help="add this table to --out instead of replacing it")
    p.add_argument("--title", default="")
    p.add_argument("--fail-on-gate", action="store_true", help="exit 1 when a variant fails its quality gate")
    args = p.parse_args(argv)

    ports = tuple(int(x) for x in args.ports.split(",")) if args.ports else None
    if ports is not None and len(ports) != 3:
        p.error("--ports needs three ports: http,grpc,metrics")
    df = model_pairs(args.model, args.split, args.data or None, args.limit_queries, args.columns or None)
    table = evaluate_model(
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
        png = plot_quality_latency(table, args.png, title)
        if png:
            print(f"wrote {png}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        png_ref = png.name if png and png.parent == out.parent else (str(png) if png else None)
        section = markdown_report(table, title, png_ref)
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
        print(f"quality gate FAILED: {r.gate.get('reason') or r.label}", file=sys.stderr)
    return 1 if failed and args.fail_on_gate else 0


def compare(argv: list[str]) -> int:
    """`make compare MODELS="a b ..."`: PyTorch FP32 quality of trained models on the validation
    split of the first one's data, each against the first with a 95% paired bootstrap interval on
    NDCG@10 (which training settings helped, and by more than noise)."""
    from ..data.split import model_pairs
    from ..measure.eval.compare import compare_models, comparison_markdown, split_mismatch

    p = argparse.ArgumentParser(prog="shoprank compare", description=compare.__doc__)
    p.add_argument("models", nargs="+", help="model folders; the first is the reference")
    p.add_argument("--data", default="", help="judgments file, 'shared' or 'default' (default: the first model's data)")
    p.add_argument("--columns", default="", help=COLUMNS_HELP)
    p.add_argument("--split", default="valid", choices=["valid", "all"])
    p.add_argument("--limit-queries", type=int, default=0)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    if args.split == "valid" and not args.data:
        problem = split_mismatch(args.models)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    df = model_pairs(args.models[0], args.split, args.data or None, args.limit_queries, args.columns or None)
    print(f"{df['query'].nunique()} queries, {len(df)} pairs ({args.split} split of {df.attrs['source']})")
    results = compare_models(args.models, df)
    print()
    print(comparison_markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


def _csv(kind):
    return lambda s: tuple(kind(x) for x in s.split(",") if x)


def bench(argv: list[str]) -> int:
    """`make bench`: naive PyTorch, CrossEncoder, Infinity and our Triton ensemble side by side, in
    one run on the same requests and model; writes reports/bench.md, bench.json and two plots."""
    from ..config import WORKLOAD_SIZES
    from ..measure.bench.infinity import BENCH_VENV
    from ..measure.bench.report import targets, write_report
    from ..measure.bench.run import BenchConfig, run

    parser = argparse.ArgumentParser(prog="shoprank bench", description=bench.__doc__)
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--onnx-dir", default=str(config.ONNX_DIR))
    parser.add_argument("--out-dir", default=str(config.REPORTS_DIR))
    parser.add_argument("--requests", type=int, default=100,
                        help="distinct requests per workload (>= 100 for the report)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workloads", type=_csv(str), default=tuple(WORKLOAD_SIZES),
                        help=f"comma list of {', '.join(WORKLOAD_SIZES)}")
    parser.add_argument("--clients", type=_csv(int), default=(4, 8), help="concurrency levels, e.g. 4,8")
    parser.add_argument("--systems", type=_csv(str), default=(),
                        help="only systems whose key starts with one of these, e.g. naive,triton-int8")
    parser.add_argument("--skip", type=_csv(str), default=(), help="leave out systems by key prefix, e.g. infinity")
    parser.add_argument("--quality-queries", type=int, default=0, help="validation queries for NDCG@10 (default all)")
    parser.add_argument("--port-base", type=int, default=None,
                        help="first of 3 per engine + 2 consecutive ports (default: free ports)")
    parser.add_argument("--engine", action="append", default=[], metavar="NAME=ONNX",
                        help="also measure this ONNX engine (in-process and in Triton), e.g. l3-int8=artifacts/x.onnx")
    parser.add_argument("--only", action="append", default=[], metavar="WORKLOAD=PREFIXES",
                        help="measure only these systems on a workload, e.g. rank-200=ort,triton,infinity-onnx")
    parser.add_argument("--infinity-venv", default=str(BENCH_VENV), help="venv with infinity-emb (make bench-venv)")
    parser.add_argument("--ranker-instances", type=int, default=BenchConfig.ranker_instances)
    parser.add_argument("--tokenizer-instances", type=int, default=1)
    parser.add_argument("--from-json", metavar="BENCH_JSON",
                        help="measure nothing: re-judge targets and rewrite the report and plots from a bench.json")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20 requests, rank-50 only, 4 clients, 40 validation queries")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.workloads, args.clients = 20, 3, ("rank-50",), (4,)
        args.quality_queries = args.quality_queries or 40
    if any("=" not in e for e in args.engine + args.only):
        parser.error("--engine takes NAME=PATH, --only WORKLOAD=PREFIX,PREFIX")
    unknown = [w for w in args.workloads if w not in WORKLOAD_SIZES]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOAD_SIZES)}")
    cfg = BenchConfig(model_dir=Path(args.model), onnx_dir=Path(args.onnx_dir), out_dir=Path(args.out_dir),
                      requests=args.requests, warmup=args.warmup, workloads=args.workloads,
                      clients=args.clients, systems=args.systems, skip=args.skip,
                      quality_queries=args.quality_queries, port_base=args.port_base,
                      ranker_instances=args.ranker_instances, tokenizer_instances=args.tokenizer_instances,
                      infinity_venv=Path(args.infinity_venv), extra_engines=dict(e.split("=", 1) for e in args.engine),
                      only={w: tuple(p.split(",")) for w, p in (o.split("=", 1) for o in args.only)})
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report["targets"] = targets(report["systems"])
    else:
        report = run(cfg)
    paths = write_report(report, cfg.out_dir)
    print("\n" + "\n".join(f"- {t['goal']}: {'met' if t['met'] else 'NOT met'}" for t in report["targets"].values()))
    print(f"report {paths['md']} ({paths['json'].name}, {paths['latency'].name}, {paths['throughput'].name})")
    return 0


def _load_args(parser: argparse.ArgumentParser) -> None:
    from ..measure.loadtest.profiles import TARGETS_FILE
    from ..measure.loadtest.run import REPORTS

    add_server_args(parser, repo_help="model repository to start a server from when none is running")
    parser.add_argument("--run-dir", default=None, help="work folder (log, backends) of a self-started server")
    parser.add_argument("--out", default=str(REPORTS), help="reports folder")
    parser.add_argument("--targets", default=str(TARGETS_FILE))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--candidates", help="'uniform:MIN:MAX' or 'fixed:N'")


def _load_setup(args):
    """(profile, request pool, endpoints, reports folder); exit 2 with the reason when the profile,
    the data or the candidate range is bad."""
    from ..data.requests import RequestPool
    from ..measure.loadtest.profiles import Candidates, load_profile

    try:
        profile = load_profile(args.profile, args.targets)
        if args.candidates:
            profile = replace(profile, candidates=Candidates.parse(args.candidates))
        pool = RequestPool.from_spec(profile.data)
        pool.check_size(profile.candidates.high)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return profile, pool, endpoints(args), out


def loadtest(argv: list[str]) -> int:
    """`make loadtest`: Locust gRPC and HTTP users gated on the profile's targets (exit 1 on a miss),
    or capacity steps (--capacity); uses the running server or starts one from the repository."""
    from ..measure.loadtest.capacity import run_capacity
    from ..measure.loadtest.locust import run_locust, warm_up
    from ..measure.loadtest.run import ensure_server

    parser = argparse.ArgumentParser(prog="shoprank loadtest", description=loadtest.__doc__)
    _load_args(parser)
    parser.add_argument("--capacity", action="store_true", help="step users up until p95 breaks")
    parser.add_argument("--users", type=int)
    parser.add_argument("--run-time", type=float, help="seconds")
    for q in (50, 95, 99):
        parser.add_argument(f"--p{q}-ms", type=float, help=f"override the profile's p{q} target")
    parser.add_argument("--max-failure-rate", type=float)
    parser.add_argument("--name", help="report folder name (default: the profile's)")
    parser.add_argument("--zipf", type=float, default=0.0,
                        help="head-heavy traffic: Zipf exponent of query popularity (e.g. 1.0), fixed candidates "
                             "per query; 0 = every query alike")
    parser.add_argument("--response-cache", type=int, default=0, metavar="BYTES",
                        help="a server this command starts gets Triton's response cache of this size (0 = none)")
    args = parser.parse_args(argv)
    if args.zipf < 0 or args.response_cache < 0:
        parser.error("--zipf and --response-cache must be >= 0")
    profile, pool, endpoints, out = _load_setup(args)
    overrides = {f"p{q}_ms": getattr(args, f"p{q}_ms") for q in (50, 95, 99)}
    overrides["max_failure_rate"] = args.max_failure_rate
    overrides = {k: v for k, v in overrides.items() if v is not None}
    profile = replace(profile, targets=replace(profile.targets, **overrides),
                      run_time_s=args.run_time or profile.run_time_s)
    if args.users:
        profile = replace(profile, users=args.users, spawn_rate=max(profile.spawn_rate, args.users))
    try:
        with ensure_server(endpoints, Path(args.repo), Path(args.run_dir) if args.run_dir else None,
                           cache_bytes=args.response_cache) as pid:
            warm_up(endpoints, profile, pool)
            if args.capacity:
                return 0 if run_capacity(profile, endpoints, out, pid)["capacity"] else 1
            result = run_locust(profile, endpoints, out, name=args.name, server_pid=pid,
                                options=["--zipf", str(args.zipf)] if args.zipf else ())
    except FileNotFoundError as exc:  # no server and no repository to start one from
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.passed else 1


def soak(argv: list[str]) -> int:
    """`make soak`: the profile's load for minutes with a share of bad requests, per 30-s window:
    good requests, failures, p95, bad requests and their answers, server memory. Exit 1 when a
    good request failed or memory grew; writes reports/soak.md, soak.json and soak.png."""
    from ..measure.loadtest.locust import warm_up
    from ..measure.loadtest.run import ensure_server
    from ..measure.loadtest.soak import BAD_SHARE, MAX_MEMORY_GROWTH, SAMPLE_S, WINDOW_S, run_soak
    from ..measure.loadtest.soak_report import summary, write_reports
    from ..serving.server import run_triton

    parser = argparse.ArgumentParser(prog="shoprank soak", description=soak.__doc__)
    _load_args(parser)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=WINDOW_S)
    parser.add_argument("--bad-share", type=float, default=BAD_SHARE, help="share of calls that are bad requests")
    parser.add_argument("--sample-s", type=float, default=SAMPLE_S, help="seconds between server memory samples")
    parser.add_argument("--max-memory-growth", type=float, default=MAX_MEMORY_GROWTH,
                        help="largest window mean over the first window's, minus 1 (0.1 = 10 %%)")
    parser.add_argument("--users", type=int)
    parser.add_argument("--own-server", action="store_true",
                        help="start a fresh tritonserver from --repo on free ports for the soak (else the "
                             "running one is used, or one is started on the given ports)")
    parser.add_argument("--report-dir", default=str(config.REPORTS_DIR), help="where soak.md, .json, .png go")
    parser.add_argument("--no-png", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.window_s <= 0 or args.sample_s <= 0:
        parser.error("--minutes, --window-s and --sample-s must be > 0")
    if not 0.0 <= args.bad_share < 1.0:
        parser.error("--bad-share must be in [0, 1)")
    profile, pool, endpoints, out = _load_setup(args)
    if args.users:
        profile = replace(profile, users=args.users, spawn_rate=max(profile.spawn_rate, args.users))
    repo, run_dir = Path(args.repo), Path(args.run_dir) if args.run_dir else config.RUN_DIR / "soak"
    if args.own_server and not (repo / config.RANKER_MODEL / "config.pbtxt").exists():
        print(f"error: no generated model repository in {repo}: run `make repository` first", file=sys.stderr)
        return 2
    try:
        with ExitStack() as stack:
            if args.own_server:
                server = stack.enter_context(run_triton(repo, work_dir=run_dir))
                endpoints, pid = server.endpoints, server.pid
                print(f"own tritonserver on {endpoints.http} (pid {pid}, log {server.log_path})", flush=True)
            else:
                pid = stack.enter_context(ensure_server(endpoints, repo, run_dir))
            warm_up(endpoints, profile, pool)
            report = run_soak(profile, endpoints, out, pid, args.minutes, args.window_s,
                              args.bad_share, args.sample_s, args.max_memory_growth)
    except FileNotFoundError as exc:  # no server and no repository to start one from
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_reports(report, Path(args.report_dir), png=not args.no_png)
    print(summary(report))
    print(f"report {paths['md']} ({', '.join(p.name for k, p in paths.items() if k != 'md')})")
    return 0 if report["verdict"]["passed"] else 1


def perf(argv: list[str]) -> int:
    """`make perf`: perf_analyzer concurrency sweep on the rank ensemble with the server-side breakdown."""
    from ..measure.loadtest.locust import warm_up
    from ..measure.loadtest.perf import PERF_STABILITY_PCT, TOOLS_DIR, perf_analyzer_command, run_perf
    from ..measure.loadtest.run import ensure_server

    parser = argparse.ArgumentParser(prog="shoprank perf", description=perf.__doc__)
    _load_args(parser)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--measurement-ms", type=int, default=5000)
    parser.add_argument("--stability-percentage", type=float, default=PERF_STABILITY_PCT)
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--tools", default=str(TOOLS_DIR), help="where scripts/install_perf_analyzer.sh put it")
    args = parser.parse_args(argv)
    profile, pool, endpoints, out = _load_setup(args)
    try:
        command = perf_analyzer_command(Path(args.tools))  # before starting a server: fail fast
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    try:
        with ensure_server(endpoints, Path(args.repo), Path(args.run_dir) if args.run_dir else None):
            warm_up(endpoints, profile, pool)
            summary = run_perf(endpoints, pool, profile.candidates, profile.top_k, concurrency, out,
                               args.measurement_ms, args.stability_percentage, args.max_trials, command)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if summary["failed"] else 0


def check_served(argv: list[str]) -> int:
    """The GPU check's served half: serve a TensorRT repository, compare its rankings over gRPC and
    HTTP with ONNX Runtime, time a short rank-50 load; prints one summary line (exit 1 on a problem)."""
    from ..measure.served_check import check_served as run

    parser = argparse.ArgumentParser(prog="shoprank check-served", description=check_served.__doc__)
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--repo", required=True)
    parser.add_argument("--precision", required=True, choices=("fp16", "int8"))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--work-dir", default=str(config.RUN_DIR / "gpu-check"))
    args = parser.parse_args(argv)
    line, problems = run(args.model, args.repo, args.precision, args.requests, args.threads, args.work_dir)
    print(line)
    return 1 if problems else 0


def isolation(argv: list[str]) -> int:
    """`make isolation`: whether a pair's score depends on the rows it shares an engine call with
    (other requests merged by the batcher, the other candidates of its request), for per-tensor,
    per-row and static INT8 and FP32, with quality and speed -> reports/isolation.{md,json}."""
    from ..measure.isolation import OPTIONS, WORK_DIR, Setup, measure, write_report

    p = argparse.ArgumentParser(prog="shoprank isolation", description=isolation.__doc__)
    p.add_argument("--model", default=str(config.MODEL_DIR))
    p.add_argument("--onnx-dir", default=str(config.ONNX_DIR))
    p.add_argument("--work-dir", default=str(WORK_DIR), help="where the compared INT8 engines are built")
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma separated, of {', '.join(OPTIONS)}")
    p.add_argument("--requests", type=int, default=Setup.requests, help="distinct rank-50 requests")
    p.add_argument("--rounds", type=int, default=Setup.timed_rounds, help="timed passes over the requests")
    p.add_argument("--rebuild", action="store_true", help="rebuild --work-dir's static INT8 (QDQ) engine")
    p.add_argument("--out", default=str(config.REPORTS_DIR / "isolation.md"))
    args = p.parse_args(argv)
    options = tuple(o for o in args.options.split(",") if o)
    unknown = [o for o in options if o not in OPTIONS]
    if unknown or not options:
        p.error(f"unknown option {unknown[0]!r}; choose from {', '.join(OPTIONS)}" if unknown else "no options")
    setup = Setup(Path(args.model), Path(args.onnx_dir), Path(args.work_dir), options, args.requests, args.rounds,
                  args.rebuild)
    try:
        report = measure(setup)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = write_report(report, Path(args.out))
    print(out.read_text())
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def overload(argv: list[str]) -> int:
    """`make overload`: the profile's load shape at its own user count and at --factor times it,
    side by side: accepted p50/p99, share refused as overloaded (fast), any other failure.
    Exit 1 when another failure occurs or the accepted p99 at overload misses the profile's
    p99 target; writes reports/overload.json."""
    import json

    from ..measure.loadtest.overload import burst
    from ..measure.loadtest.run import ensure_server
    from ..serving.gateway import run_gateway

    parser = argparse.ArgumentParser(prog="shoprank overload", description=overload.__doc__)
    _load_args(parser)
    parser.add_argument("--factor", type=int, default=10, help="overload = factor x the profile's users")
    parser.add_argument("--seconds", type=float, default=30.0, help="per step")
    parser.add_argument("--direct", action="store_true",
                        help="load Triton itself, not the gateway in front of it (as `make serve` runs it)")
    args = parser.parse_args(argv)
    profile, pool, where, _ = _load_setup(args)
    size = (profile.candidates.low, profile.candidates.high)
    rows = []
    with ExitStack() as stack:
        stack.enter_context(ensure_server(where, Path(args.repo), Path(args.run_dir) if args.run_dir else None))
        door = where if args.direct else stack.enter_context(run_gateway(where)).endpoints
        print(f"loading {'Triton directly' if args.direct else 'the gateway'} at {door.http} / {door.grpc}")
        for clients in (profile.users, profile.users * args.factor):
            row = burst(door, pool, clients, args.seconds, size, profile.top_k)
            rows.append(row)
            print(f"{clients:4d} clients: {row['requests']} requests, {row['accepted']} accepted "
                  f"(p50 {row['accepted_p50_ms']} ms, p99 {row['accepted_p99_ms']} ms), "
                  f"{row['refused_overloaded']} refused as overloaded ({row['shed_share']:.0%}, p99 "
                  f"{row['refused_p99_ms']} ms), {row['other_failures']} other failures", flush=True)
    target = profile.targets.p99_ms
    over = rows[-1]
    passed = all(r["other_failures"] == 0 for r in rows) and (target is None or
                                                              (over["accepted_p99_ms"] or 0) <= target)
    report = {"profile": profile.name, "through": "triton" if args.direct else "gateway",
              "p99_target_ms": target, "steps": rows, "passed": passed}
    (config.REPORTS_DIR).mkdir(parents=True, exist_ok=True)
    (config.REPORTS_DIR / "overload.json").write_text(json.dumps(report, indent=2))
    print(f"=> {'PASS' if passed else 'FAIL'}: at {over['clients']} clients the accepted p99 is "
          f"{over['accepted_p99_ms']} ms (target {target} ms), {over['shed_share']:.0%} refused as overloaded")
    return 0 if passed else 1


def head_bench(argv: list[str]) -> int:
    """`make head-bench`: served rank-N p50 with the model's scoring head against without it,
    side by side in one run (two servers, alternating requests) -> reports/head_latency.json."""
    from ..measure.bench.head_cost import head_cost

    parser = argparse.ArgumentParser(prog="shoprank head-bench", description=head_bench.__doc__)
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--engine", default=str(config.onnx_file("int8")))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--data", default="auto", help="where request texts come from (RequestPool spec)")
    parser.add_argument("--out", default=str(config.REPORTS_DIR / "head_latency.json"))
    args = parser.parse_args(argv)
    head_cost(args.model, args.engine, args.requests, args.candidates, args.data, args.out)
    return 0


def cache_bench(argv: list[str]) -> int:
    """`make cache-bench`: head-heavy (Zipf) traffic against two servers of the same model, with
    and without Triton's response cache, side by side -> reports/cache_bench.{md,json}."""
    from ..measure.bench.cache import head_heavy, write
    from ..measure.bench.run import served_engine

    parser = argparse.ArgumentParser(prog="shoprank cache-bench", description=cache_bench.__doc__)
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--engine", action="append", default=[], metavar="NAME=ONNX",
                        help="the served engine (default: the distilled l<N>-int8 when given, else int8)")
    parser.add_argument("--onnx-dir", default=str(config.ONNX_DIR))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warm", type=int, default=2000, help="requests the cached server serves first")
    parser.add_argument("--requests", type=int, default=800, help="measured requests per server")
    parser.add_argument("--exponent", type=float, default=config.ZIPF_EXPONENT, help="Zipf exponent")
    parser.add_argument("--data", default="auto", help="where queries come from (RequestPool spec)")
    parser.add_argument("--out-dir", default=str(config.REPORTS_DIR))
    args = parser.parse_args(argv)
    if any("=" not in e for e in args.engine):
        parser.error("--engine takes NAME=PATH")
    engines = {"int8": config.onnx_file("int8", args.onnx_dir), **dict(e.split("=", 1) for e in args.engine)}
    engines = {k: Path(v) for k, v in engines.items() if Path(v).exists()}
    name = served_engine(engines)
    if name is None:
        parser.error(f"no engine: {config.onnx_file('int8', args.onnx_dir)} not found (make int8)")
    section = head_heavy(Path(args.model), engines[name], name, config.ARTIFACTS_DIR / "bench", clients=args.clients,
                         warm=args.warm, requests=args.requests, exponent=args.exponent, data=args.data)
    path = write(section, Path(args.out_dir))
    print("\n".join(f"- {t['goal']}: {'met' if t['met'] else 'NOT met'}" for t in section["targets"].values()))
    print(f"report {path}")
    return 0
