#!/usr/bin/env python3
"""Rank product texts for a query against a running shoprank server; prints a ranked table.

  python clients/rank.py --query "cordless drill" "DEWALT 20V drill kit" "white interior paint"
  python clients/rank.py --protocol http --query "vanity" --candidates-file products.txt --top-k 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from shoprank.client import PROTOCOLS, RankClient, RankError, default_url  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="*", help="product texts (or use --candidates-file)")
    parser.add_argument("--query", required=True)
    parser.add_argument("--candidates-file", type=Path, help="one product text per line")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    parser.add_argument("--url", help="host:port (default 127.0.0.1:8001 for gRPC, :8000 for HTTP)")
    parser.add_argument("--top-k", type=int, default=10, help="0 = all")
    args = parser.parse_args(argv)
    candidates = list(args.candidates)
    if args.candidates_file:
        candidates += [line.strip() for line in args.candidates_file.read_text().splitlines() if line.strip()]
    url = args.url or default_url(args.protocol)
    try:
        with RankClient(url, args.protocol) as client:
            ranked = client.rank(args.query, candidates, args.top_k)
    except RankError as exc:
        print(f"error from server: {exc}", file=sys.stderr)
        return 2
    print(f"query: {args.query!r}  ({len(candidates)} candidates, {args.protocol} {url})")
    print(f"{'rank':>4}  {'score':>6}  {'index':>5}  product")
    for position, hit in enumerate(ranked, 1):
        print(f"{position:>4}  {hit.score:6.3f}  {hit.index:>5}  {hit.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
