"""Deployment commands: manifests (render and validate deploy/kubernetes/), replicas (N replicas
behind HAProxy: rolling update, a killed replica, the balancer's cost -> reports/replicas.md) and
capacity (docs/capacity.md from the measured numbers)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import config


def manifests(argv: list[str]) -> int:
    from ..deploy import manifests as m

    parser = argparse.ArgumentParser(prog="shoprank manifests", description="render every overlay of "
                                     "deploy/kubernetes/ with kubectl kustomize and validate it offline")
    parser.add_argument("--out", default="", help="also write each overlay's rendered YAML here")
    parser.add_argument("--kubernetes-version", default=m.KUBERNETES_VERSION)
    args = parser.parse_args(argv)
    import yaml

    failed = 0
    for overlay in m.OVERLAYS:
        try:
            docs = m.render(overlay)
        except m.ManifestError as exc:
            print(f"shoprank manifests: {exc}", file=sys.stderr)
            return 2
        problems = m.validate(docs, args.kubernetes_version)
        failed += bool(problems)
        print(f"{overlay}: {len(docs)} resources, " + ("valid" if not problems else f"{len(problems)} problem(s)"))
        for p in problems:
            print(f"  {p}")
        if args.out:
            out = Path(args.out) / f"{overlay}.yaml"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return 1 if failed else 0


def replicas(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shoprank replicas", description="N tritonserver replicas behind HAProxy "
                                     "on this host: balancer cost, throughput, rolling update and a killed replica "
                                     "under Locust load -> reports/replicas.md (+ .json)")
    parser.add_argument("--replicas", "-n", type=int, default=2)
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--engine", default=str(config.onnx_file("int8")), help="the ranker engine served first")
    parser.add_argument("--next-engine", default=str(config.onnx_file("fp32")),
                        help="the engine rolled out as the next ranker version")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of the rolling update's load (must outlast the update)")
    parser.add_argument("--work-dir", default=str(config.RUN_DIR / "replicas"))
    args = parser.parse_args(argv)
    if args.replicas < 1:
        print(f"shoprank replicas: --replicas must be >= 1, got {args.replicas}", file=sys.stderr)
        return 2
    for label, path in (("model", Path(args.model) / "config.json"), ("engine", Path(args.engine)),
                        ("next engine", Path(args.next_engine))):
        if not path.exists():
            print(f"shoprank replicas: no {label} at {path}: run `make demo` (or make finetune onnx int8) first",
                  file=sys.stderr)
            return 2
    from ..deploy import haproxy
    from ..deploy.replicas import REPORT_MD, measure, passed, render_markdown, write_report

    if haproxy.binary() is None:
        print("shoprank replicas: haproxy is missing: `make system` installs it", file=sys.stderr)
        return 2
    import shutil

    shutil.rmtree(args.work_dir, ignore_errors=True)  # a fresh repository and logs for every run
    report = measure(Path(args.model), Path(args.engine), Path(args.next_engine), args.replicas,
                     Path(args.work_dir), args.users, args.seconds)
    write_report(report)
    print(render_markdown(report))
    print(f"report: {REPORT_MD} (+ .json)")
    return 1 if passed(report) else 0


def capacity(argv: list[str]) -> int:
    from ..deploy.capacity import DOC, REPORT, write_capacity

    parser = argparse.ArgumentParser(prog="shoprank capacity", description="docs/capacity.md from measured numbers: "
                                     "--measure serves each engine variant and measures it -> reports/capacity.json")
    parser.add_argument("--measure", action="store_true", help="measure the variants first (a few minutes)")
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--engine", action="append", default=[], metavar="NAME=PATH",
                        help="a variant to measure (default: int8 and fp32 of artifacts/onnx, and "
                             "l3-int8 when make distill built it)")
    parser.add_argument("--seconds", type=float, default=12.0, help="load per concurrency step")
    parser.add_argument("--work-dir", default=str(config.RUN_DIR / "capacity"))
    parser.add_argument("--core-hour-usd", type=float, default=0.04, help="price of one CPU core-hour")
    parser.add_argument("--target-rps", type=float, default=2000.0)
    parser.add_argument("--p99-ms", type=float, default=100.0)
    parser.add_argument("--out", default=str(DOC))
    args = parser.parse_args(argv)
    if args.measure:
        engines = dict(e.split("=", 1) for e in args.engine if "=" in e) if args.engine else {
            "int8": config.onnx_file("int8"), "fp32": config.onnx_file("fp32"),
            "l3-int8": config.ARTIFACTS_DIR / "onnx-l3" / "model.int8.onnx"}
        bad = [e for e in args.engine if "=" not in e]
        if bad:
            print(f"shoprank capacity: --engine takes NAME=PATH, got {bad[0]!r}", file=sys.stderr)
            return 2
        engines = {k: Path(v) for k, v in engines.items() if Path(v).exists() or args.engine}
        missing = [f"{k}={v}" for k, v in engines.items() if not v.exists()]
        if missing or not engines or not (Path(args.model) / "config.json").exists():
            print(f"shoprank capacity: missing {missing or args.model}: run `make demo` first", file=sys.stderr)
            return 2
        import json
        import shutil

        from ..deploy.capacity import measure_variants

        shutil.rmtree(args.work_dir, ignore_errors=True)
        report = measure_variants(Path(args.model), engines, Path(args.work_dir), args.seconds)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    try:
        text = write_capacity(Path(args.out), args.core_hour_usd, args.target_rps, args.p99_ms)
    except FileNotFoundError as exc:
        print(f"shoprank capacity: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
