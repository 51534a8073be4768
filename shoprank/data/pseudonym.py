"""User ids are stored as keyed pseudonyms, never as sent.

A caller may send anything as user_id (an e-mail address was seen). The store keeps
HMAC-SHA256(key, user_id) instead: the same shopper always maps to the same pseudonym (what
personalization and per-user statistics need), while the database alone reveals nothing and
cannot be reversed by hashing guesses without the key. The key lives outside the database, in
a file only its owner can read (default artifacts/keys/user_id.key, made on first use);
deleting the key unlinks every stored pseudonym from the people behind it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .. import config

DEFAULT_KEY_FILE = config.ARTIFACTS_DIR / "keys" / "user_id.key"
PREFIX = "u_"  # marks a stored id as a pseudonym


def load_or_create_key(path: str | Path = DEFAULT_KEY_FILE) -> bytes:
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"pseudonym key in {path} is too short ({len(key)} characters, at least 32)")
    return key.encode()


def pseudonym(user_id: str | None, key: bytes) -> str | None:
    if user_id is None or user_id == "":
        return None
    return PREFIX + hmac.new(key, str(user_id).encode("utf-8"), hashlib.sha256).hexdigest()[:32]
