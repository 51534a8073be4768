"""Checks on rank requests, with errors that name the problem (the server keeps serving)."""
from __future__ import annotations

from collections.abc import Sequence

from .. import config
from ..errors import RequestError


def decode_text(value, what: str) -> str:
    """One BYTES element as text; RequestError naming `what` when it is not UTF-8."""
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def decode_request(query: Sequence, candidates: Sequence,
                   max_candidates: int = config.MAX_CANDIDATES) -> tuple[str, list[str]]:
    """Decode the BYTES inputs of one request into (query, candidate texts)."""
    if len(query) != 1:
        raise RequestError(f"{config.QUERY} must hold exactly one string, got {len(query)}")
    text = decode_text(query[0], config.QUERY)
    if not any(ch.isprintable() and not ch.isspace() for ch in text):
        raise RequestError(f"{config.QUERY} is empty: it has no printable character")
    count = len(candidates)
    if count == 0:
        raise RequestError(f"{config.CANDIDATES} is empty: send 1..{max_candidates} product texts")
    if count > max_candidates:
        raise RequestError(f"too many {config.CANDIDATES}: {count} > {max_candidates} per request")
    return text, decode_texts(candidates, config.CANDIDATES)


def decode_texts(values: Sequence, what: str) -> list[str]:
    """Every BYTES element as text; the first one that is not UTF-8 is named (`what[i]`)."""
    try:  # one pass without a call per element: the common case, all valid
        return [v if isinstance(v, str) else v.decode("utf-8") for v in values]
    except (UnicodeDecodeError, AttributeError):
        return [decode_text(v, f"{what}[{i}]") for i, v in enumerate(values)]


def check_top_k(top_k: Sequence) -> int:
    if len(top_k) != 1:
        raise RequestError(f"{config.TOP_K} must hold exactly one integer, got {len(top_k)}")
    value = int(top_k[0])
    if value < 0:
        raise RequestError(f"{config.TOP_K} must be >= 0 (0 = all candidates), got {value}")
    return value


def decode_ids(ids: Sequence, texts: list[str] | None, max_candidates: int = config.MAX_CANDIDATES) -> list[str]:
    """Decode CANDIDATE_IDS (instead of or beside CANDIDATES: then one id per text)."""
    count = len(ids)
    if count == 0:
        raise RequestError(f"{config.CANDIDATE_IDS} is empty: send 1..{max_candidates} product ids")
    if count > max_candidates:
        raise RequestError(f"too many {config.CANDIDATE_IDS}: {count} > {max_candidates} per request")
    if texts is not None and len(texts) != count:
        raise RequestError(f"{config.CANDIDATE_IDS} has {count} ids but {config.CANDIDATES} has {len(texts)} "
                           "texts: send one id per text, or ids alone")
    return decode_texts(ids, config.CANDIDATE_IDS)
