"""Options several commands share: where the server listens."""
from __future__ import annotations

import argparse

from .. import config


def add_server_args(parser: argparse.ArgumentParser, repo: bool = True, repo_help: str | None = None) -> None:
    """--host and the three ports (defaults: config, overridable by SHOPRANK_* variables), and
    --repo for commands that read or start from the model repository."""
    if repo:
        parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY), help=repo_help)
    parser.add_argument("--host", default=config.HOST)
    parser.add_argument("--http-port", type=int, default=config.HTTP_PORT)
    parser.add_argument("--grpc-port", type=int, default=config.GRPC_PORT)
    parser.add_argument("--metrics-port", type=int, default=config.METRICS_PORT)


def endpoints(args: argparse.Namespace):
    """The serving.server.Endpoints those options name."""
    from ..serving.server import Endpoints

    return Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port)
