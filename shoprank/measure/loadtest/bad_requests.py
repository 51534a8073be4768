"""Bad requests for the soak (`make soak`): malformed calls of the `rank` ensemble that the server
must refuse with a client error (gRPC INVALID_ARGUMENT, HTTP 400) while it keeps serving, and how
an answer to one is classified.

Built with tritonclient directly, not RankClient: wrong dtypes, shapes and missing inputs cannot
be sent through RankClient, and its RankError drops the status the server answered with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import config

CLIENT_ERRORS = ("INVALID_ARGUMENT", "400")  # the answers a bad request must get
SERVER_ERRORS = ("UNKNOWN", "INTERNAL")      # and 5xx: the server failed on bad input
ACCEPTED = "OK"                              # the server ranked a bad request as if it were good

# Outcomes of one bad request. Everything but CLIENT_ERROR is a finding.
CLIENT_ERROR, SERVER_ERROR, OTHER_ERROR, BAD_ACCEPTED = "client error", "server error", "other error", "accepted"
OUTCOMES = (CLIENT_ERROR, SERVER_ERROR, OTHER_ERROR, BAD_ACCEPTED)

_DTYPES = {"INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "BYTES": np.object_}


@dataclass(frozen=True)
class BadRequest:
    """One kind of bad request: the three inputs (values and Triton dtype), or one left out."""

    name: str
    query: tuple = (b"cordless drill",)
    candidates: tuple = (b"DEWALT 20V MAX cordless drill", b"white interior paint")
    top_k: tuple = (1,)
    top_k_dtype: str = "INT32"
    missing: str | None = None  # an input name that is not sent

    def inputs(self, api) -> list:
        """InferInputs of tritonclient.grpc or tritonclient.http (`api`)."""
        tensors = ((config.QUERY, self.query, "BYTES"), (config.CANDIDATES, self.candidates, "BYTES"),
                   (config.TOP_K, self.top_k, self.top_k_dtype))
        out = []
        for name, values, dtype in tensors:
            if name == self.missing:
                continue
            tensor = api.InferInput(name, [len(values)], dtype)
            tensor.set_data_from_numpy(np.array(values, dtype=_DTYPES[dtype]).reshape(len(values)))
            out.append(tensor)
        return out


BAD_REQUESTS = (
    BadRequest("empty query", query=(b"",)),
    BadRequest("blank query", query=(b" \t ",)),
    BadRequest("NUL-only query", query=(b"\x00",)),
    BadRequest("invalid UTF-8 query", query=(b"dr\xffill",)),
    BadRequest("no candidates", candidates=()),
    BadRequest("too many candidates", candidates=(b"hammer",) * (config.MAX_CANDIDATES + 1)),
    BadRequest("negative TOP_K", top_k=(-1,)),
    BadRequest("TOP_K as FP32", top_k=(1.0,), top_k_dtype="FP32"),
    BadRequest("two queries (wrong shape)", query=(b"drill", b"saw")),
    BadRequest("missing TOP_K", missing=config.TOP_K),
)
BY_NAME = {b.name: b for b in BAD_REQUESTS}


def answer_of(exc: Exception | None) -> str:
    """What the server answered: "OK", a gRPC status name ("INVALID_ARGUMENT") or an HTTP status
    ("400"); the exception's class name when it carries no status (a timeout, a dropped connection)."""
    if exc is None:
        return ACCEPTED
    status = exc.status() if callable(getattr(exc, "status", None)) else None
    if not status:
        return type(exc).__name__
    return str(status).removeprefix("StatusCode.")


def outcome_of(answer: str) -> str:
    if answer in CLIENT_ERRORS:
        return CLIENT_ERROR
    if answer == ACCEPTED:
        return BAD_ACCEPTED
    if answer in SERVER_ERRORS or (answer.isdigit() and answer.startswith("5")):
        return SERVER_ERROR
    return OTHER_ERROR
