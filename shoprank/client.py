"""Client library for the `rank` ensemble over gRPC or HTTP (KServe v2).

    from shoprank.client import RankClient
    with RankClient("127.0.0.1:8001", protocol="grpc") as client:
        for hit in client.rank("cordless drill", ["DEWALT 20V drill", "white paint"], top_k=10):
            print(hit.index, hit.score, hit.text)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import config

PROTOCOLS = ("grpc", "http")


@dataclass(frozen=True)
class Ranked:
    index: int    # position in the request's candidates
    text: str
    score: float  # click probability


class RankError(RuntimeError):
    """The server refused or failed a request; the message is the server's."""


def default_url(protocol: str, host: str = config.HOST) -> str:
    return f"{host}:{config.GRPC_PORT if protocol == 'grpc' else config.HTTP_PORT}"


class RankClient:
    def __init__(self, url: str | None = None, protocol: str = "grpc", timeout_s: float = 60.0,
                 model: str = config.ENSEMBLE_MODEL):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        self.url = url or default_url(protocol)
        if protocol == "grpc":
            import tritonclient.grpc as api
        else:
            import tritonclient.http as api
        self._api = api
        kwargs = {} if protocol == "grpc" else {"network_timeout": timeout_s, "connection_timeout": timeout_s}
        self._client = api.InferenceServerClient(self.url, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model))
        except Exception:
            return False

    def infer_raw(self, query, candidates: Sequence, top_k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(INDICES, SCORES). Strings are UTF-8 encoded; bytes are sent as they are."""
        api = self._api
        inputs = [api.InferInput(config.QUERY, [1], "BYTES"),
                  api.InferInput(config.CANDIDATES, [len(candidates)], "BYTES"),
                  api.InferInput(config.TOP_K, [1], "INT32")]
        inputs[0].set_data_from_numpy(_bytes_array([query]))
        inputs[1].set_data_from_numpy(_bytes_array(candidates))
        inputs[2].set_data_from_numpy(np.array([top_k], dtype=np.int32))
        outputs = [api.InferRequestedOutput(config.INDICES), api.InferRequestedOutput(config.SCORES)]
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            result = self._client.infer(self.model, inputs, outputs=outputs, **kwargs)
        except Exception as exc:  # tritonclient raises InferenceServerException
            message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
            raise RankError(message) from None
        return result.as_numpy(config.INDICES), result.as_numpy(config.SCORES)

    def rank(self, query: str, candidates: Sequence[str], top_k: int = 0) -> list[Ranked]:
        """Candidates best first, with their click probabilities (top_k 0 = all)."""
        indices, scores = self.infer_raw(query, candidates, top_k)
        return [Ranked(int(i), _text(candidates[int(i)]), float(s)) for i, s in zip(indices, scores)]


def _bytes_array(values: Sequence) -> np.ndarray:
    return np.array([v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values], dtype=np.object_)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
