"""Personalization commands: the profile store (feed it from the feedback log, erase a shopper,
time a lookup) and `personalize`, the simulated experiment behind reports/personalization.md."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import config

DEFAULT_PROFILES = str(config.ARTIFACTS_DIR / "profiles" / "profiles.sqlite")
DEFAULT_FEEDBACK = str(config.ARTIFACTS_DIR / "feedback" / "feedback.sqlite")


def _open(url: str):
    from ..serving.profiles import ProfileUnavailable, open_profiles

    try:
        return open_profiles(url)
    except (ValueError, ProfileUnavailable) as exc:
        print(f"shoprank profiles: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def profiles(argv: list[str]) -> int:
    """The online profile store: `feed` adds the feedback log's behaviour (since a time) to it,
    `show` prints one shopper's profile, `bench` times lookups (the serving path's cost)."""
    parser = argparse.ArgumentParser(prog="shoprank profiles", description=profiles.__doc__)
    parser.add_argument("action", choices=["feed", "show", "bench"])
    parser.add_argument("--store", default=DEFAULT_PROFILES, help="a path, sqlite:///path or redis://host:port/db")
    parser.add_argument("--feedback-db", default=DEFAULT_FEEDBACK)
    parser.add_argument("--since", type=float, default=None, help="feed: only behaviour at/after this unix time")
    parser.add_argument("--user", default=None, help="show: the shopper's id as the caller sends it")
    args = parser.parse_args(argv)
    store = _open(args.store)
    try:
        if args.action == "feed":
            from ..online.profile_feed import feed_profiles

            if not Path(args.feedback_db).exists():
                print(f"shoprank profiles: no feedback log at {args.feedback_db}", file=sys.stderr)
                return 2
            print(json.dumps(feed_profiles(args.feedback_db, store, args.since)))
        elif args.action == "show":
            from ..data.pseudonym import load_or_create_key, pseudonym

            if not args.user:
                parser.error("show needs --user")
            for e in store.recent(pseudonym(args.user, load_or_create_key())):
                print(f"{e.ts:.0f}\t{e.kind}\t{e.text}")
        else:
            from ..serving.profiles import MAX_EVENTS, Behaviour, lookup_cost

            users = [f"u_bench_{i}" for i in range(1000)]
            for u in users:
                store.add(u, [Behaviour(float(i), "click", f"bench product {i} of {u}") for i in range(MAX_EVENTS)])
            print(json.dumps(lookup_cost(store, users)))
            for u in users:
                store.forget(u)
    finally:
        store.close()
    return 0


def forget(argv: list[str]) -> int:
    """Right to erasure: delete a shopper's profile and every feedback row stored under them."""
    from ..online.profile_feed import forget as erase

    parser = argparse.ArgumentParser(prog="shoprank forget", description=forget.__doc__)
    parser.add_argument("user_id", help="the shopper's id as the caller sends it (USER_ID)")
    parser.add_argument("--store", default=DEFAULT_PROFILES)
    parser.add_argument("--feedback-db", default=DEFAULT_FEEDBACK)
    args = parser.parse_args(argv)
    store = _open(args.store)
    try:
        erased = erase(args.user_id, args.feedback_db, store)
    except ValueError as exc:
        print(f"shoprank forget: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps(erased))
    return 0


def personalize(argv: list[str]) -> int:
    """Simulated shoppers with hidden preferences -> logs -> the personalized designs trained with
    position-bias correction -> reports/personalization.md + PNG (docs/personalization.md)."""
    from ..online.personalize import DESIGNS, PersonalizeConfig, run, write_report

    d = PersonalizeConfig()
    parser = argparse.ArgumentParser(prog="shoprank personalize", description=personalize.__doc__)
    parser.add_argument("--model", default=d.model_dir)
    parser.add_argument("--engine", default=d.engine, help="the served ONNX engine of the non-personalized model")
    parser.add_argument("--seeds", default=",".join(map(str, d.seeds)))
    parser.add_argument("--days", type=int, default=d.days)
    parser.add_argument("--test-from-day", type=int, default=d.test_from_day, help="later days, held out")
    parser.add_argument("--shoppers", type=int, default=d.shop.shoppers, help="shoppers on day 0")
    parser.add_argument("--sessions-per-day", type=int, default=d.shop.sessions_per_day)
    parser.add_argument("--per-category", type=int, default=d.per_category)
    parser.add_argument("--designs", default=",".join(d.designs), help=f"of {', '.join(DESIGNS)}")
    parser.add_argument("--text-steps", type=int, default=d.text_steps)
    parser.add_argument("--work-dir", default=d.work_dir)
    parser.add_argument("--report-dir", default=d.report_dir)
    parser.add_argument("--latency", action="store_true", help="also time the served rank-50 path with a profile")
    parser.add_argument("--install", action="store_true",
                        help="install the first seed's late-fusion head as --model's personal head (served by "
                             "`make repository`)")
    args = parser.parse_args(argv)
    designs = tuple(x for x in args.designs.split(",") if x)
    if unknown := [x for x in designs if x not in DESIGNS]:
        parser.error(f"unknown design {unknown[0]!r}; choose from {', '.join(DESIGNS)}")
    for path, what in ((Path(args.model) / "config.json", "model"), (Path(args.engine), "engine")):
        if not path.exists():
            print(f"shoprank personalize: no {what} at {path} (make finetune onnx int8 first)", file=sys.stderr)
            return 2
    from dataclasses import replace

    seeds = tuple(int(s) for s in args.seeds.split(","))
    if not 0 < args.test_from_day < args.days:
        parser.error(f"--test-from-day must be between 1 and --days - 1 ({args.days - 1})")
    shop = replace(d.shop, shoppers=args.shoppers, sessions_per_day=args.sessions_per_day)
    cfg = PersonalizeConfig(model_dir=args.model, engine=args.engine, seeds=seeds, days=args.days,
                            test_from_day=args.test_from_day, shop=shop, per_category=args.per_category,
                            designs=designs, text_steps=args.text_steps, work_dir=args.work_dir,
                            report_dir=args.report_dir)
    report = run(cfg)
    latency = None
    if args.latency:
        from ..online.personal_latency import served_latency

        latency = served_latency(cfg, Path(cfg.work_dir) / f"seed{cfg.seeds[0]}" / "fusion-head")
    print(write_report(report, cfg.report_dir, latency).read_text())
    if args.install:
        import shutil

        from ..quality.gate import judge_ndcg
        from ..serving.personal import personal_dir

        returning = report["summary"]["returning"]
        verdict = judge_ndcg(returning["non-personalized"]["ndcg"]["mean"], returning["fusion"]["ndcg"]["mean"],
                             "the personal head", reference="the non-personalized model on returning shoppers' "
                                                            "later sessions")
        if not verdict["passed"]:
            print(f"personal head REFUSED, not installed: {verdict['reason']}", file=sys.stderr)
            return 2

        target = personal_dir(cfg.model_dir)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(cfg.work_dir) / f"seed{cfg.seeds[0]}" / "fusion-head", target)
        print(f"personal head installed in {target}: `make repository` serves it (USER_ID / USER_CONTEXT)")
    return 0


def personal_demo(argv: list[str]) -> int:
    """Simulated shoppers' behaviour through the feedback log into the profile store, then one
    query ranked by the running server for two shoppers and anonymously (make demo)."""
    from ..online.personal_demo import show

    parser = argparse.ArgumentParser(prog="shoprank personal-demo", description=personal_demo.__doc__)
    parser.add_argument("--url", default=f"{config.HOST}:{config.GRPC_PORT}")
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    parser.add_argument("--store", default=config.PROFILE_STORE)
    args = parser.parse_args(argv)
    from ..errors import RankError

    try:
        result = show(args.url, args.protocol, args.store)
    except RankError as exc:
        print(f"shoprank personal-demo: the server at {args.url} answered: {exc}", file=sys.stderr)
        return 1
    return 0 if "query" in result else 1
