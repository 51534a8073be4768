"""Brand names learned from the catalog: the phrases product titles start with.

Catalog titles put the brand first ("Delta Vero 1-Handle ...", "Home Decorators Collection ...").
A leading phrase of 1..MAX_WORDS words is a brand when enough titles start with it and, of the
titles that contain it anywhere, most have it at the start: "delta" and "hampton bay" pass,
"white" or "crown molding" (frequent first words of unbranded titles, or common words) do not.
Longer phrases keep product lines ("delta vero"); a query's "delta" still matches them, since a
query brand matches a title that starts with it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

MAX_WORDS = 3
MIN_TITLES = 3        # titles that must start with a phrase for it to be a brand
MIN_START_SHARE = 0.5  # of the titles containing the phrase, the share that start with it


def learn_brands(titles: Iterable[tuple[Sequence[str], Sequence[str]]], min_titles: int = MIN_TITLES,
                 min_start_share: float = MIN_START_SHARE) -> dict[str, int]:
    """{brand phrase: titles starting with it} from (leading words, all words) of each title.

    Leading words are the title's words before its first number (a title that starts with a size
    names no brand).
    """
    titles = list(titles)
    starts: Counter[tuple[str, ...]] = Counter()
    for lead, _ in titles:
        for n in range(1, min(MAX_WORDS, len(lead)) + 1):
            starts[tuple(lead[:n])] += 1
    candidates = {p for p, c in starts.items() if c >= min_titles}
    anywhere: Counter[tuple[str, ...]] = Counter()
    for _, words in titles:
        seen = set()
        for n in range(1, MAX_WORDS + 1):
            for i in range(len(words) - n + 1):
                p = tuple(words[i:i + n])
                if p in candidates:
                    seen.add(p)
        anywhere.update(seen)
    return {" ".join(p): starts[p] for p in sorted(candidates)
            if starts[p] >= min_start_share * max(anywhere[p], starts[p])}


def find_brands(words: Sequence[str], brands: Mapping[tuple[str, ...], int]) -> list[tuple[str, ...]]:
    """The brand phrases a query names, longest first at each position, left to right."""
    out, i = [], 0
    while i < len(words):
        for n in range(min(MAX_WORDS, len(words) - i), 0, -1):
            p = tuple(words[i:i + n])
            if p in brands:
                out.append(p)
                i += n
                break
        else:
            i += 1
    return out


def title_brand(lead: Sequence[str], brands: Mapping[tuple[str, ...], int]) -> tuple[str, ...]:
    """The longest brand phrase a title starts with, () if none."""
    for n in range(min(MAX_WORDS, len(lead)), 0, -1):
        p = tuple(lead[:n])
        if p in brands:
            return p
    return ()
