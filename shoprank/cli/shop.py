"""Commands of the catalog, the business rules and conversion-aware ordering."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import config

EXAMPLE_CSV = config.ARTIFACTS_DIR / "catalog" / "example.csv"


def catalog(argv: list[str]) -> int:
    from ..serving.catalog import DEFAULT_DB

    parser = argparse.ArgumentParser(prog="shoprank catalog", description=(
        "the product catalog CANDIDATE_IDS resolve in: load a CSV/Parquet file (id, text; optional price, margin, "
        "in_stock, rating, conversion, brand, category) into the SQLite store the server reads, swapped in while "
        "serving; `example` writes the example catalog first (Home Depot titles when ../shared/data is there, "
        "else the synthetic data's products, with generated attributes); `bench` times lookups of 1,000 ids"))
    parser.add_argument("action", choices=("load", "example", "bench"))
    parser.add_argument("path", nargs="?", help="load: the CSV/Parquet file")
    parser.add_argument("--db", default=str(DEFAULT_DB), help="the SQLite catalog (default: %(default)s)")
    parser.add_argument("--source", default="auto", choices=("auto", "shared", "default"),
                        help="example: Home Depot titles (shared) or the synthetic products (default)")
    parser.add_argument("--seed", type=int, default=7, help="example: seed of the generated attributes")
    parser.add_argument("--requests", type=int, default=500, help="bench: lookups timed")
    args = parser.parse_args(argv)
    if args.action == "load":
        if not args.path:
            parser.error("load needs the catalog file: shoprank catalog load PATH")
        from ..serving.catalog import load_catalog

        print(json.dumps(load_catalog(args.path, args.db)))
    elif args.action == "example":
        print(json.dumps(example(args.source, args.seed, args.db)))
    else:
        return bench(args.db, args.requests)
    return 0


def example(source: str, seed: int, db: str) -> dict:
    import pandas as pd

    from ..online.shop import ShopConfig, synthetic_catalog, titles_catalog
    from ..serving.catalog import load_catalog

    shared = config.SHARED_DATA.exists() if source == "auto" else source == "shared"
    cfg = ShopConfig(seed=seed)
    if shared:
        if not config.SHARED_DATA.exists():
            from ..errors import DataError

            raise DataError(f"no Home Depot data at {config.SHARED_DATA}; use --source default")
        frame = titles_catalog(pd.read_csv(config.SHARED_DATA, usecols=["product_title"])["product_title"], cfg)
    else:
        frame = synthetic_catalog(cfg)
    EXAMPLE_CSV.parent.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=["appeal"]).to_csv(EXAMPLE_CSV, index=False)  # appeal: the simulator's hidden truth
    return {**load_catalog(EXAMPLE_CSV, db), "from": "Home Depot titles" if shared else "synthetic products"}


def bench(db: str, requests: int) -> int:
    from ..serving.catalog import Catalog, lookup_benchmark

    store = Catalog(db)
    ids = store.frame()["id"].tolist()
    if len(ids) < 1000:
        print(f"shoprank catalog: {db} holds {len(ids)} products; the lookup bench needs >= 1000", flush=True)
        return 2
    out = lookup_benchmark(store, ids, requests=requests)
    out["target_p99_ms"] = 3.0
    path = config.REPORTS_DIR / "catalog_lookup.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"lookup of {out['ids_per_lookup']} ids in a catalog of {out['catalog_products']}: p50 "
          f"{out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms (CPU p99 {out['cpu_p99_ms']:.2f} ms; target <= 3 ms; "
          f"load average {out['load_average_1m']:.1f} on {out['cpus']} CPUs) -> {path}")
    return 0


def conversion(argv: list[str]) -> int:
    from ..online.conversion import ConversionConfig, run

    defaults = ConversionConfig()
    parser = argparse.ArgumentParser(prog="shoprank conversion", description=(
        "simulated shoppers over >= 3 seeds: relevance vs expected value vs expected value + rules -> "
        "reports/conversion.{md,png,json}; scores in-process with the model's ONNX engine"))
    parser.add_argument("--model-dir", default=defaults.model_dir)
    parser.add_argument("--engine", default=defaults.engine)
    parser.add_argument("--report-dir", default=defaults.report_dir)
    parser.add_argument("--seeds", default=",".join(map(str, defaults.seeds)))
    parser.add_argument("--log-days", type=int, default=defaults.log_days,
                        help="days of logged traffic the conversion model learns from")
    args = parser.parse_args(argv)
    for path, what in ((Path(args.model_dir), "model folder"), (Path(args.engine), "ONNX engine")):
        if not path.exists():
            print(f"shoprank conversion: no {what} at {path}: run make finetune onnx int8 first")
            return 2
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    summary = run(ConversionConfig(seeds=seeds, model_dir=args.model_dir, engine=args.engine,
                                   report_dir=args.report_dir, log_days=args.log_days))
    print(f"report: {Path(args.report_dir) / 'conversion.md'} ({summary['seconds']} s)")
    return 0


def rules_bench(argv: list[str]) -> int:
    from ..measure.rules_bench import rules_bench as run
    from ..serving.catalog import DEFAULT_DB

    parser = argparse.ArgumentParser(prog="shoprank rules-bench", description=(
        "sorter compute inside Triton (per-model statistics): all rules at N=1000, and the rank-50 path without "
        "rules against the code at git HEAD, same run -> reports/rules_bench.json"))
    parser.add_argument("--model-dir", default=str(config.MODEL_DIR))
    parser.add_argument("--engine", default=str(config.onnx_file("int8")))
    parser.add_argument("--catalog", default=str(DEFAULT_DB))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--baseline", default="HEAD",
                        help="git revision whose tokenizer and sorter the rank-50 path is compared with")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the sorter cases this many times in turn (a p99 per round, and pooled)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 100:
        print("shoprank rules-bench: --rounds must be >= 1 and --requests >= 100 (a p99 needs them)")
        return 2
    if not Path(args.catalog).exists():
        print(f"shoprank rules-bench: no catalog at {args.catalog}: run make catalog first")
        return 2
    run(args.model_dir, args.engine, args.catalog, config.REPORTS_DIR / "rules_bench.json", args.requests,
        baseline=args.baseline, rounds=args.rounds)
    return 0
