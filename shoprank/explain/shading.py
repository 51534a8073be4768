"""One colour scale for the page and the terminal: green for words that raised the score, red
for words that lowered it, stronger the larger the attribution against the request's largest."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

POSITIVE = (22, 163, 74)
NEGATIVE = (220, 38, 38)


def scale(values: Iterable[np.ndarray]) -> float:
    """The largest |attribution| over everything shown together (1 when all are zero)."""
    top = max((float(np.max(np.abs(v))) for v in values if len(v)), default=0.0)
    return top or 1.0


def strength(value: float, top: float) -> float:
    return float(min(1.0, abs(value) / top))


def colour(value: float) -> tuple[int, int, int]:
    return POSITIVE if value >= 0 else NEGATIVE


def blend(value: float, top: float, background=(255, 255, 255)) -> tuple[int, int, int]:
    """The colour mixed into the background by the value's strength (for terminals without alpha)."""
    a = strength(value, top)
    return tuple(int(round(b + (c - b) * a)) for c, b in zip(colour(value), background))
