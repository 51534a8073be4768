"""The server's admin surface, closed by default.

Triton's repository (load / unload / index), shared-memory, logging and trace APIs can load code
into the server, take models down or blind its logs. They are restricted on both protocols
(Triton's --http-restricted-api / --grpc-restricted-protocol): a call must carry the header
ADMIN_HEADER with the server's key. The key is made at start-up, written to a file only its
owner can read, and held by the project's own tools (the online swap, the stub supervisor);
inference callers never get it. docs/security.md says what stays exposed.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from .. import config

ADMIN_HEADER = "shoprank-admin-key"
# Triton looks for a restricted gRPC protocol's key under this prefix in the call's metadata.
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
# Triton's names for the APIs an inference caller must not reach.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
KEY_FILE = "admin.key"
# Files the server and our tools write (keys, logs, models, feedback) are for their owner only.
PRIVATE_UMASK = 0o077


def key_path(run_dir: Path = config.RUN_DIR) -> Path:
    return Path(run_dir) / KEY_FILE


def new_key(run_dir: Path = config.RUN_DIR) -> str:
    """A fresh random key for a server about to start, written owner-only into run_dir."""
    path = key_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    partial.replace(path)
    return key


def read_key(run_dir: Path = config.RUN_DIR) -> str | None:
    try:
        return key_path(run_dir).read_text().strip() or None
    except OSError:
        return None


def headers(key: str | None = None, run_dir: Path = config.RUN_DIR, protocol: str = "http") -> dict[str, str]:
    """The header an admin call needs over `protocol` (the key from `make serve`'s run folder
    unless given)."""
    key = key or read_key(run_dir)
    if not key:
        raise PermissionError(f"no admin key in {key_path(run_dir)}: the server was not started by "
                              "`shoprank serve` here; pass the key of the server you mean")
    return {(GRPC_HEADER_PREFIX + ADMIN_HEADER) if protocol == "grpc" else ADMIN_HEADER: key}


def restricted_api_args(key: str) -> list[str]:
    """tritonserver flags that close the admin APIs to callers without `key`, on both protocols."""
    apis = ",".join(RESTRICTED_APIS)
    return [f"--http-restricted-api={apis}:{ADMIN_HEADER}={key}",
            f"--grpc-restricted-protocol={apis}:{ADMIN_HEADER}={key}"]
