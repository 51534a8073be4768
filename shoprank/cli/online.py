"""Online-learning commands: update, rollback, simulate, shoppers and feedback.

Exit codes of update: 0 published (and live with --url); 1 nothing to learn from yet, no
repository, another update running; 2 refused by a quality gate (the serving version stays).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from .. import config
from ..errors import BuildError


def update(argv: list[str]) -> int:
    """Online update: feedback logs -> bias-corrected fine-tune from the serving model -> ONNX/INT8
    -> quality gate -> next ranker version, loaded into the running server."""
    from ..online.feedback import purge
    from ..online.update import ONLINE_DIR, VARIANTS, UpdateConfig
    from ..online.update import update as run

    defaults = UpdateConfig()
    parser = argparse.ArgumentParser(prog="shoprank update", description=update.__doc__)
    parser.add_argument("--repo", default=defaults.repo)
    parser.add_argument("--feedback-db", default=defaults.feedback_db)
    parser.add_argument("--url", default=defaults.url, help="gRPC host:port of the running server; '' = publish only")
    parser.add_argument("--variant", default=defaults.variant, choices=VARIANTS)
    parser.add_argument("--propensities", default=None, help="comma-separated fixed theta per position")
    parser.add_argument("--margin", type=float, default=defaults.margin)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--train-layers", type=int, default=defaults.train_layers,
                        help="train only the top N encoder layers and the head (0 = all)")
    parser.add_argument("--replay-ratio", type=float, default=defaults.replay_ratio)
    parser.add_argument("--engine", default=defaults.engine, choices=["int8", "fp32"])
    parser.add_argument("--base-model", default=defaults.base_model)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--gate-data", default=None, help="labelled file for the quality gate "
                        "(default: the validation split of the serving model's training data)")
    parser.add_argument("--retention-days", type=float, default=None, help="purge older feedback first")
    args = parser.parse_args(argv)
    cfg = UpdateConfig(repo=args.repo, feedback_db=args.feedback_db, url=args.url or None, variant=args.variant,
                       propensities=[float(x) for x in args.propensities.split(",")] if args.propensities else None,
                       margin=args.margin, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                       train_layers=args.train_layers, replay_ratio=args.replay_ratio, engine=args.engine,
                       base_model=args.base_model, gate_data=args.gate_data,
                       work_dir=args.work_dir or str(ONLINE_DIR / "updates" / time.strftime("%Y%m%d-%H%M%S")))
    if args.retention_days is not None:
        print("retention:", json.dumps(purge(cfg.feedback_db, args.retention_days)))
    try:
        report = run(cfg)
    except BuildError as exc:  # the gate refused, or a rebuilt engine failed its check
        print(f"update REFUSED, nothing published, the serving version stays: {exc}")
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # nothing to learn from, no repository, ...
        print(f"no update: {exc}")
        return 1
    gate = report["gate"]
    print(f"version {report['published_version']} published (from {report['serving_version']}): "
          f"{report['log_pairs']} log pairs + {report['replay_pairs']} replayed, {report['finetune']['steps']} steps; "
          f"validation NDCG@10 {gate['ndcg_candidate']:.4f} vs {gate['ndcg_reference']:.4f} (margin {cfg.margin})")
    activation = report.get("activation") or {"live": False, "note": "not loaded (no --url): it serves from the "
                                                                      "server's next start"}
    print(("live: " if activation["live"] else "NOT live: ") + json.dumps(activation))
    print(f"report: {cfg.work_dir}/report.json")
    return 0


def rollback(argv: list[str]) -> int:
    from ..online.update import rollback as run

    parser = argparse.ArgumentParser(prog="shoprank rollback", description="return to the previous ranker version")
    parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY))
    parser.add_argument("--url", default=f"{config.HOST}:{config.GRPC_PORT}", help="gRPC host:port; '' = files only")
    parser.add_argument("--base-model", default=str(config.MODEL_DIR))
    args = parser.parse_args(argv)
    try:
        report = run(args.repo, args.url or None, args.base_model)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:  # nothing to roll back to, another update running
        print(f"no rollback: {exc}")
        return 1
    activation = report.get("activation") or {"live": False, "note": "files only (no --url)"}
    print(f"rolled back: version {report['retired']} retired, version {report['serving_version']} serves "
          + ("now: " if activation["live"] else "from the server's next start: ") + json.dumps(activation))
    return 0


def _sim_parser(prog: str, description: str):
    from ..online.simulator import DEFAULT_SEEDS, SimConfig

    defaults = SimConfig()
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for name in ("model_dir", "engine", "work_dir", "report_dir", "update_engine"):
        parser.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name))
    for name in ("start_pairs", "rounds", "sessions", "traffic_queries", "eval_queries", "candidates", "top_k",
                 "steps", "batch_size", "train_layers"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("start_epochs", "explore_share", "eta", "lr", "replay_ratio", "margin"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--variants", default=",".join(defaults.variants))
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                        help="one simulated world (traffic, start model, shoppers) per seed; the plot shows their mean")
    parser.add_argument("--ports", default="",
                        help="HTTP,gRPC,metrics of the simulator's servers (default: free ports)")
    return parser


def _sim_config(args: dict):
    from ..online.simulator import SimConfig

    seeds = tuple(int(x) for x in args.pop("seeds").split(",") if x)
    args["variants"] = tuple(v for v in args["variants"].split(",") if v)
    args["ports"] = tuple(int(p) for p in args["ports"].split(",")) if args["ports"] else None
    return SimConfig(**args), seeds


def simulate(argv: list[str]) -> int:
    from ..online.simulator import simulate as run

    parser = _sim_parser("shoprank simulate", "simulated shoppers: serve -> log -> update -> swap, per round, "
                         "bias-corrected vs naive -> reports/online_learning.{png,json}")
    cfg, seeds = _sim_config(vars(parser.parse_args(argv)))
    summary = run(cfg, seeds)
    print("\ntrue-relevance NDCG@10 per round (round 0 = start model):")
    for name, curves in summary["true_ndcg@10"].items():
        for variant, values in curves.items():
            print(f"  {name:<6} {variant:<6} " + "  ".join(f"{v:.4f}" for v in values))
    print(f"  perfect {summary['oracle_ndcg@10']:.4f}")
    print(f"report: {Path(cfg.report_dir) / 'online_learning.json'}, plot: "
          f"{Path(cfg.report_dir) / 'online_learning.png'} ({summary['seconds']} s)")
    return 0


def shoppers(argv: list[str]) -> int:
    from dataclasses import replace

    from ..online.feedback import DEFAULT_DB
    from ..online.simulator import shoppers as run

    parser = _sim_parser("shoprank shoppers", "one round of simulated shoppers against a running server, "
                         "logged into a feedback store (traffic for `make update`)")
    parser.add_argument("--url", default=f"{config.HOST}:{config.GRPC_PORT}", help="gRPC host:port")
    parser.add_argument("--feedback-db", default=str(DEFAULT_DB))
    args = vars(parser.parse_args(argv))
    url, feedback_db = args.pop("url"), args.pop("feedback_db")
    cfg, seeds = _sim_config(args)
    run(replace(cfg, seed=seeds[0]) if seeds else cfg, url, feedback_db)
    return 0


def feedback(argv: list[str]) -> int:
    """The feedback event store: serve (HTTP collector for non-Python clients), purge (retention),
    bench (write cost), stats."""
    from ..online.collector import COLLECTOR_PORT, make_collector
    from ..online.feedback import DEFAULT_DB, RETENTION_DAYS, FeedbackStore, benchmark, purge, read_frames

    parser = argparse.ArgumentParser(prog="shoprank feedback", description=feedback.__doc__)
    parser.add_argument("action", choices=["serve", "purge", "bench", "stats"])
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--host", default=config.HOST)
    parser.add_argument("--port", type=int, default=COLLECTOR_PORT)
    parser.add_argument("--days", type=float, default=RETENTION_DAYS, help="purge: keep this many days")
    args = parser.parse_args(argv)
    if args.action == "serve":
        with FeedbackStore(args.db) as store:
            httpd = make_collector(store, args.host, args.port)
            print(f"feedback collector on http://{args.host}:{args.port} -> {args.db}")
            with contextlib.suppress(KeyboardInterrupt):
                httpd.serve_forever()
    elif args.action == "purge":
        print(json.dumps(purge(args.db, args.days)))
    elif args.action == "bench":
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(benchmark(Path(tmp) / "bench.sqlite"), indent=2))
    else:
        imps, shown, events = read_frames(args.db)
        print(json.dumps({"impressions": len(imps), "shown": len(shown), "events": len(events),
                          "randomized": int(imps["randomized"].sum()) if len(imps) else 0}))
    return 0
