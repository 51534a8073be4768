"""Load-test profiles (targets.toml beside this file): load shape, candidates per request,
TOP_K and the latency targets every row (gRPC, HTTP, both) must meet."""
from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ... import config

TARGETS_FILE = Path(__file__).with_name("targets.toml")


@dataclass(frozen=True)
class Candidates:
    """How many candidates a request carries: uniform in [low, high] or fixed (low == high)."""

    low: int
    high: int

    @classmethod
    def parse(cls, spec: str) -> Candidates:
        parts = str(spec).strip().split(":")
        try:
            if parts[0] == "fixed" and len(parts) == 2:
                low = high = int(parts[1])
            elif parts[0] == "uniform" and len(parts) == 3:
                low, high = int(parts[1]), int(parts[2])
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"candidates {spec!r}: use 'uniform:MIN:MAX' or 'fixed:N'") from None
        if not 1 <= low <= high <= config.MAX_CANDIDATES:
            raise ValueError(f"candidates {spec!r}: need 1 <= MIN <= MAX <= {config.MAX_CANDIDATES}")
        return cls(low, high)

    @property
    def spec(self) -> str:
        return f"fixed:{self.low}" if self.low == self.high else f"uniform:{self.low}:{self.high}"

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def draw(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)


@dataclass(frozen=True)
class Targets:
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_failure_rate: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str
    users: int
    spawn_rate: float
    run_time_s: float
    targets: Targets
    candidates: Candidates = Candidates(10, 200)
    protocols: tuple[str, ...] = ("grpc", "http")
    top_k: int = 10
    think_time_s: float = 0.0
    data: str = "auto"
    description: str = ""
    capacity_users: tuple[int, ...] = (1, 2, 4, 8)
    capacity_step_s: float = 20.0


_PROFILE_KEYS = {"description", "users", "spawn_rate", "run_time_s", "think_time_s", "protocols", "top_k",
                 "candidates", "data", "targets", "capacity"}


def load_profile(name: str, path: str | Path = TARGETS_FILE) -> Profile:
    """One named profile of a targets file; unknown names and keys are errors, not ignored."""
    path = Path(path)
    with open(path, "rb") as f:
        profiles = tomllib.load(f).get("profiles", {})
    if name not in profiles:
        raise ValueError(f"{path}: no profile {name!r}; known: {', '.join(profiles) or '(none)'}")
    raw = dict(profiles[name])
    unknown = set(raw) - _PROFILE_KEYS
    if unknown:
        raise ValueError(f"{path}: profile {name!r} has unknown keys {sorted(unknown)}")
    target_raw = dict(raw.pop("targets", {}))
    unknown = set(target_raw) - {f.name for f in Targets.__dataclass_fields__.values()}
    if unknown:
        raise ValueError(f"{path}: profile {name!r} targets have unknown keys {sorted(unknown)}")
    capacity = dict(raw.pop("capacity", {}))
    protocols = tuple(raw.pop("protocols", ("grpc", "http")))
    bad = [p for p in protocols if p not in ("grpc", "http")]
    if bad or not protocols:
        raise ValueError(f"{path}: profile {name!r}: protocols must be 'grpc' and/or 'http', got {list(protocols)}")
    profile = Profile(
        name=name, targets=Targets(**target_raw), protocols=protocols,
        candidates=Candidates.parse(raw.pop("candidates", "uniform:10:200")),
        capacity_users=tuple(int(u) for u in capacity.get("users", (1, 2, 4, 8))),
        capacity_step_s=float(capacity.get("step_run_time_s", 20.0)), **raw)
    if profile.users < 1 or profile.run_time_s <= 0 or profile.spawn_rate <= 0:
        raise ValueError(f"{path}: profile {name!r}: users, spawn_rate and run_time_s must be > 0")
    return profile
