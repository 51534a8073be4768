"""Serving commands: serve, stop, status (`make serve`'s background server), query (the demo's
queries and rank-50 timing) and rank (the command-line client)."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from .. import config
from ..errors import RankError
from .common import add_server_args, endpoints


def _public(args: argparse.Namespace):
    from ..serving.server import Endpoints

    return Endpoints(args.public_host, args.gateway_http_port, args.gateway_grpc_port, args.metrics_port)


def _add_gateway_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-host", default=config.PUBLIC_HOST,
                        help="where the gateway listens: the only address to expose beyond this machine")
    parser.add_argument("--gateway-http-port", type=int, default=config.GATEWAY_HTTP_PORT)
    parser.add_argument("--gateway-grpc-port", type=int, default=config.GATEWAY_GRPC_PORT)


def serve(argv: list[str]) -> int:
    from ..serving import gateway, server

    parser = argparse.ArgumentParser(prog="shoprank serve", description="start tritonserver (admin APIs closed, "
                                     "a stub supervisor beside it) and the gateway in front of it, in the background")
    add_server_args(parser)
    _add_gateway_args(parser)
    parser.add_argument("--no-gateway", action="store_true", help="Triton and its supervisor only")
    args = parser.parse_args(argv)
    upstream = endpoints(args)
    server.serve(Path(args.repo), upstream)
    if args.no_gateway:
        return 0
    if gateway.nginx_binary() is None:
        print("gateway NOT started: nginx is missing (`make system` installs it); Triton has no request size "
              "or connection limits of its own, so do not expose it")
        return 0
    try:
        gateway.serve(upstream, _public(args))
    except Exception:
        server.stop()  # all or nothing: no server left running behind a door that failed
        raise
    return 0


def stop(argv: list[str]) -> int:
    from ..serving import gateway, server

    parser = argparse.ArgumentParser(prog="shoprank stop", description="stop the gateway, the supervisor and the "
                                     "server `shoprank serve` started; the logs stay in .run/")
    parser.parse_args(argv)
    gateway.stop()
    server.stop()
    return 0


def status(argv: list[str]) -> int:
    from ..serving import gateway, server

    parser = argparse.ArgumentParser(prog="shoprank status", description="is the server ready? (exit 0 when it is)")
    add_server_args(parser)
    _add_gateway_args(parser)
    args = parser.parse_args(argv)
    ready = server.is_ready(endpoints(args))
    door = gateway.is_answering(_public(args))
    print(("ready" if ready else "not ready") + f"; gateway {'answering' if door else 'not answering'}")
    return 0 if ready else 1


EXAMPLE = ("cordless drill", ["DEWALT 20V MAX cordless drill driver kit", "Behr Premium Plus white interior paint",
                              "Milwaukee M18 brushless hammer drill", "drill bit set titanium 21-piece",
                              "Glacier Bay 30 in. bathroom vanity"])


def _show(query, candidates, by_protocol) -> bool:
    print(f"\nquery: {query!r} ({len(candidates)} candidates)")
    print(f"  {'#':>2}  {'gRPC':>6}  {'HTTP':>6}  product")
    grpc, http = by_protocol["grpc"], by_protocol["http"]
    for pos, (g, h) in enumerate(zip(grpc, http, strict=True), 1):
        print(f"  {pos:>2}  {g.score:6.3f}  {h.score:6.3f}  {g.text[:90]}")
    same = [g.index for g in grpc] == [h.index for h in http]
    print(f"  gRPC and HTTP rankings {'identical' if same else 'DIFFER'}")
    return same


def query(argv: list[str]) -> int:
    """Rank a few real queries over gRPC and HTTP against the running server and print the lists;
    then time rank-50 requests (one query, 50 candidate products) over gRPC."""
    from ..data.requests import RequestPool
    from ..data.split import model_pairs, query_groups
    from ..serving.client import RankClient

    parser = argparse.ArgumentParser(prog="shoprank query", description=query.__doc__)
    add_server_args(parser, repo=False)
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)
    where = endpoints(args)
    clients = {"grpc": RankClient(where.grpc, "grpc"), "http": RankClient(where.http, "http")}
    valid = model_pairs(args.model, "valid")
    groups = [(q, valid["text"].to_numpy()[idx].tolist()) for q, idx in query_groups(valid) if len(idx) >= 5]
    all_same = True
    for text, candidates in [EXAMPLE, *groups[: args.queries]]:
        ranked = {p: c.rank(text, candidates, args.top_k) for p, c in clients.items()}
        all_same &= _show(text, candidates, ranked)

    pool = RequestPool(valid)
    requests = pool.distinct(config.RANK50, min(30, len(pool.groups)))
    times = []
    for r in requests:
        start = time.perf_counter()
        clients["grpc"].rank(r.query, list(r.texts), 10)
        times.append((time.perf_counter() - start) * 1000)
    times = sorted(times[5:])  # the first few warm the caches
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"\nrank-50 over gRPC, {len(times)} sequential requests: p50 {statistics.median(times):.1f} ms, "
          f"p95 {p95:.1f} ms")
    for c in clients.values():
        c.close()
    return 0 if all_same else 1


def rank(argv: list[str]) -> int:
    """Rank product texts for a query against a running shoprank server; prints a ranked table.

      shoprank rank --query "cordless drill" "DEWALT 20V drill kit" "white interior paint"
      shoprank rank --protocol http --query "vanity" --candidates-file products.txt --top-k 5
    """
    from ..serving.client import PROTOCOLS, RankClient, default_url

    parser = argparse.ArgumentParser(prog="shoprank rank", description=rank.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
