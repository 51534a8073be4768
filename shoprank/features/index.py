"""LexicalIndex: what the pair features know of the catalog, fitted once and saved as one JSON file.

It holds the document frequency of every key (term stem or number) over the distinct titles and
their average length (BM25, TF-IDF), the word-frequency table (spelling correction, fuzzy and
prefix matching) and the learned brand phrases. Fitting is deterministic: the same titles and
queries, in any order, give the same file.

Fit it on the catalog's titles and on training queries only: query words add to the frequency of
catalog words (so corrections prefer what shoppers ask for), never words of their own, and a
validation query must not be among them.
"""
from __future__ import annotations

import json
import math
import os
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from .analysis import QueryInfo, TitleInfo, analyze_query, analyze_title, number_key, title_parts
from .brands import MIN_START_SHARE, MIN_TITLES, learn_brands
from .spelling import MIN_WORD, Speller, count_words
from .text import normalize, stem, words_and_codes
from .units import extract_quantities

FILE_NAME = "lexical_index.json"
FORMAT = "shoprank-lexical-index"
VERSION = 1
K1, B = 1.2, 0.75          # BM25: term-frequency saturation and length normalization (the usual values)
TITLE_CACHE = 16384        # titles analyzed and kept (the catalog repeats across requests)
QUERY_CACHE = 2048
QUERY_WORD_MIN = 3         # a query-only word is kept (protected from hasty correction) from this many queries


_AFTER_NUMBER = re.compile(r"\d[\s-]*([a-z]{3,})")


def _idf(documents: int, df: int) -> float:
    # Lucene's BM25 idf: never negative, even for a key in more than half of the titles.
    return math.log(1.0 + (documents - df + 0.5) / (df + 0.5))


class LexicalIndex:
    """Catalog statistics for pair_features; build with fit() or load(), never by hand."""

    def __init__(self, *, documents: int, avg_len: float, df: Mapping[str, int], words: Mapping[str, int],
                 brands: Mapping[str, int], query_words: Mapping[str, int] | None = None, k1: float = K1, b: float = B,
                 title_cache: int = TITLE_CACHE, query_cache: int = QUERY_CACHE):
        self.documents, self.avg_len = int(documents), float(avg_len) or 1.0
        self.k1, self.b = float(k1), float(b)
        self.df = dict(df)
        self.idf_table = {k: _idf(self.documents, v) for k, v in self.df.items()}
        self.idf_unknown = _idf(self.documents, 0)
        self.speller = Speller(words)
        self.query_words = dict(query_words or {})  # words of training queries that no title uses
        self._known_stems = frozenset(stem(w) for w in self.speller.counts)
        self.brand_counts = dict(brands)
        self.brands = {tuple(p.split()): c for p, c in self.brand_counts.items()}
        self._sorted_words: list[str] | None = None
        # Per-instance caches (the analyses depend on this index's idf and brands).
        self._cache_sizes = {"title_cache": title_cache, "query_cache": query_cache}
        self.title = lru_cache(maxsize=title_cache)(self._analyze_title)
        self.query = lru_cache(maxsize=query_cache)(self._analyze_query)

    def __reduce__(self):
        # Pickled as its file's content (caches are not carried), e.g. for worker processes.
        return _from_dict, (self.to_dict(), self._cache_sizes)

    # --- lookups used by the analyses -------------------------------------------------------
    def idf(self, key: str) -> float:
        return self.idf_table.get(key, self.idf_unknown)

    def known(self, word: str) -> bool:
        """Whether a word is catalog vocabulary, itself or by its stem ("drills" -> "drill")."""
        return word in self.speller.counts or stem(word) in self._known_stems

    def is_prefix(self, word: str) -> bool:
        """Whether some longer vocabulary word starts with `word`."""
        words = self.sorted_words
        i = bisect_right(words, word)
        return i < len(words) and words[i].startswith(word)

    @property
    def sorted_words(self) -> list[str]:
        if self._sorted_words is None:
            self._sorted_words = sorted(self.speller.counts)
        return self._sorted_words

    def _analyze_title(self, text: str) -> TitleInfo:
        return analyze_title(self, text)

    def _analyze_query(self, text: str) -> QueryInfo:
        return analyze_query(self, text)

    def correct(self, query: str) -> str:
        """The query's words as the features read them after spelling correction (for reports)."""
        info = self.query(query)
        return " ".join(t.term for t in info.terms)

    # --- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(cls, titles: Iterable[str], queries: Iterable[str] = (), *, k1: float = K1, b: float = B,
            brand_min_titles: int = MIN_TITLES, brand_min_start_share: float = MIN_START_SHARE) -> LexicalIndex:
        """Fit on the catalog's titles (each distinct title one document) and optional queries."""
        df: dict[str, int] = {}
        total = 0
        word_lists: list[list[str]] = []
        brand_input: list[tuple[list[str], list[str]]] = []
        distinct = [t for t in dict.fromkeys(str(t).strip() for t in titles) if t]
        for title in distinct:
            parts = title_parts(title)
            keys = [stem(t) for t in parts.terms] + [number_key(q.raw) for q in parts.quantities]
            total += len(keys)
            for k in set(keys):
                df[k] = df.get(k, 0) + 1
            # Unit words count as vocabulary too ("pounds", "gallon"), though quantities take them.
            word_lists.append(parts.words + _AFTER_NUMBER.findall(parts.norm))
            brand_input.append((parts.lead, parts.words))
        if not distinct:
            raise ValueError("LexicalIndex.fit needs at least one non-empty title")
        words = count_words(word_lists)
        # Training queries: each distinct query adds 1 to each catalog word it uses, and words
        # no title uses are counted apart (they never become correction targets).
        query_only: dict[str, int] = {}
        for query in dict.fromkeys(str(q).lower().strip() for q in queries):
            qwords, _ = words_and_codes(extract_quantities(normalize(query)).text)
            for w in set(qwords):
                if w in words:
                    words[w] += 1
                elif len(w) >= MIN_WORD and w.isalpha():
                    query_only[w] = query_only.get(w, 0) + 1
        query_only = {w: c for w, c in query_only.items() if c >= QUERY_WORD_MIN}
        brands = learn_brands(brand_input, brand_min_titles, brand_min_start_share)
        return cls(documents=len(distinct), avg_len=total / len(distinct), df=df, words=words, brands=brands,
                   query_words=query_only, k1=k1, b=b)

    # --- file ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "params": {"k1": self.k1, "b": self.b},
            "documents": self.documents,
            "avg_len": self.avg_len,
            "df": self.df,
            "words": self.speller.counts,
            "query_words": self.query_words,
            "brands": self.brand_counts,
        }

    def save(self, folder: str | Path) -> Path:
        """Write FILE_NAME into folder (created if missing), atomically; returns the file's path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE_NAME
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | Path, **cache_sizes: int) -> LexicalIndex:
        """Read a saved index (folder or the file itself); cache_sizes: title_cache, query_cache."""
        path = Path(folder)
        if path.is_dir():
            path = path / FILE_NAME
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"{path}: not a {FORMAT} file of version {VERSION} "
                             f"(format {data.get('format')!r}, version {data.get('version')!r})")
        return _from_dict(data, cache_sizes)


def _from_dict(data: dict, cache_sizes: dict) -> LexicalIndex:
    params = data.get("params", {})
    return LexicalIndex(documents=data["documents"], avg_len=data["avg_len"], df=data["df"], words=data["words"],
                        brands=data["brands"], query_words=data.get("query_words", {}),
                        k1=params.get("k1", K1), b=params.get("b", B), **cache_sizes)
