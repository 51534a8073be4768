"""Spelling correction learned from a word-frequency table (no hand-made list of typos).

SymSpell's idea: every vocabulary word is indexed under the strings left after deleting up to d of
its letters; a misspelling within d edits shares one of those strings, so a lookup is a few dict
probes plus an exact check of the few candidates, not a scan of the vocabulary. Only the first
PREFIX letters are indexed (SymSpell's prefix trick), which bounds the index for long words; the
exact check always uses the whole word.

The distance is optimal string alignment (Levenshtein plus adjacent transposition: "toliet" is one
edit from "toilet"). Distance 2 is allowed only between long words (both >= LONG_WORD letters):
short words two edits apart are too often different words.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

PREFIX = 7
LONG_WORD = 5      # a word of at least this many letters may be corrected at distance 2
MIN_WORD = 3       # shorter words are never indexed, matched fuzzily or corrected


def max_distance(word: str) -> int:
    """The most edits allowed between `word` and a vocabulary word (the smaller of both sides' allowance)."""
    n = len(word)
    return 0 if n < MIN_WORD else (1 if n < LONG_WORD else 2)


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance of a and b, or limit + 1 as soon as it must exceed limit."""
    if a == b:
        return 0
    # Common prefix and suffix cost nothing: cut them so the table is small.
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    if start:  # keep one shared letter before, for a transposition across the cut
        start -= 1
    a, b = a[start:end_a], b[start:end_b]
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    if la == 0 or lb == 0:
        return max(la, lb)
    before = None
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        ca = a[i - 1]
        cur = [i] + [0] * lb
        best = i
        for j in range(1, lb + 1):
            cb = b[j - 1]
            v = prev[j - 1] + (ca != cb)
            if prev[j] + 1 < v:
                v = prev[j] + 1
            if cur[j - 1] + 1 < v:
                v = cur[j - 1] + 1
            if before is not None and j > 1 and ca == b[j - 2] and a[i - 2] == cb and before[j - 2] + 1 < v:
                v = before[j - 2] + 1
            cur[j] = v
            if v < best:
                best = v
        if best > limit:
            return limit + 1
        before, prev = prev, cur
    return prev[lb]


def _deletes(word: str, depth: int) -> set[str]:
    """Every string left after deleting 1..depth letters of word (word itself not included)."""
    out: set[str] = set()
    frontier = {word}
    for _ in range(depth):
        nxt = set()
        for w in frontier:
            if len(w) <= 1:
                continue
            for i in range(len(w)):
                nxt.add(w[:i] + w[i + 1:])
        out |= nxt
        frontier = nxt
    return out


class Speller:
    """Vocabulary words with their counts, and lookups of the words near a (misspelled) word."""

    def __init__(self, counts: Mapping[str, int]):
        self.counts = dict(counts)
        self._index: dict[str, str | tuple[str, ...]] | None = None  # built on first lookup

    def _build(self) -> dict[str, str | tuple[str, ...]]:
        index: dict[str, list[str]] = {}
        for word in sorted(self.counts):  # sorted: the same index whatever the dict's order
            depth = max_distance(word)
            if depth == 0:
                continue
            head = word[:PREFIX]
            for key in (head, *_deletes(head, depth)):
                index.setdefault(key, []).append(word)
        # One word under most keys: store it bare, a tuple only where several share a key.
        return {k: v[0] if len(v) == 1 else tuple(v) for k, v in index.items()}

    def neighbours(self, word: str, limit: int | None = None) -> list[tuple[str, int]]:
        """Vocabulary words within the allowed distance of `word` (itself excluded), as
        (word, distance): nearest first, then same first letter, then most frequent."""
        allowed = max_distance(word) if limit is None else min(limit, max_distance(word))
        if allowed == 0:
            return []
        if self._index is None:
            self._index = self._build()
        index, head = self._index, word[:PREFIX]
        seen: set[str] = {word}
        out: list[tuple[str, int]] = []
        for key in (head, *_deletes(head, allowed)):
            hit = index.get(key)
            if hit is None:
                continue
            for cand in (hit,) if isinstance(hit, str) else hit:
                if cand in seen:
                    continue
                seen.add(cand)
                lim = min(allowed, max_distance(cand))
                if abs(len(cand) - len(word)) > lim:
                    continue
                d = osa_distance(word, cand, lim)
                if d <= lim:
                    out.append((cand, d))
        counts, first = self.counts, word[:1]
        # Nearest first; at one distance, words with the same first letter (shoppers rarely
        # mistype it), then the most frequent.
        out.sort(key=lambda wd: (wd[1], wd[0][:1] != first, -counts[wd[0]], wd[0]))
        return out

    def split(self, word: str, min_part: int = 3) -> tuple[str, str] | None:
        """The best way to read `word` as two vocabulary words ("wiremesh" -> wire, mesh): both
        parts known and at least min_part letters; the split whose rarer part is most frequent."""
        counts, best, best_score = self.counts, None, 0
        for i in range(min_part, len(word) - min_part + 1):
            left, right = word[:i], word[i:]
            score = min(counts.get(left, 0), counts.get(right, 0))
            if score > best_score:
                best, best_score = (left, right), score
        return best

    def correct(self, word: str, min_count: int = 1) -> tuple[str, ...] | None:
        """What an unknown word most likely meant: the most frequent word one edit away, else a
        split into two known words, else the most frequent word two edits away with the same
        first letter (long words);
        None when nothing is near. Only words seen at least min_count times qualify (a word many
        shoppers type needs a much more frequent neighbour to count as a typo of it). The caller
        decides which words are unknown."""
        counts = self.counts
        near = [(w, d) for w, d in self.neighbours(word) if counts[w] >= min_count]
        if near and near[0][1] == 1:
            return (near[0][0],)
        parts = self.split(word)
        if parts is not None and min(counts[parts[0]], counts[parts[1]]) >= min_count:
            return parts
        # Two edits is a long way: only to a word with the same first letter ("vynal" -> "vinyl",
        # not "swamp" -> "clamp").
        far = [w for w, d in near if d == 2 and w[0] == word[0]]
        return (far[0],) if far else None


def count_words(texts: Iterable[list[str]]) -> dict[str, int]:
    """Occurrences of each alphabetic word of at least MIN_WORD letters over tokenized texts."""
    counts: dict[str, int] = {}
    for words in texts:
        for w in words:
            if len(w) >= MIN_WORD and w.isalpha():
                counts[w] = counts.get(w, 0) + 1
    return counts
