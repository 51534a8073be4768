"""Number formats of every report and console table (eval, compare, bench, load tests)."""
from __future__ import annotations

MISSING = "—"  # a metric that is undefined, or a number that was not measured


def fmt(value, spec: str = ".4f", missing: str = MISSING) -> str:
    """`value` in format `spec`, or `missing` for None."""
    return missing if value is None else format(value, spec)


def interval(diff: dict | None) -> str | None:
    """A quality.metrics.ndcg_difference as "mean [low, high]"; None when there is none."""
    if not diff or diff.get("mean") is None:
        return None
    return f"{diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"
