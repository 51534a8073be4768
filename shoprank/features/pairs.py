"""The feature vector of each (query, product title) pair: FEATURE_NAMES and pair_features.

The query is analyzed once per request (normalization, spelling, numbers, brands, the words each
term may match); each title once per index (cached); what is left per pair is set lookups and a
few sums, so a request of 1000 candidates stays within a few milliseconds of pure Python.

Shares are over the query's terms (or numbers, codes) and are 0 when the query has none; the
counts beside them tell a model which case it is in. Every value is finite.
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from .. import config
from .analysis import QueryInfo, TitleInfo
from .index import LexicalIndex
from .units import same_value

FEATURE_NAMES: tuple[str, ...] = (
    # the query and the title themselves
    "query_terms",            # terms (words and codes, stopwords left out) after spelling correction
    "title_terms",
    "query_unknown_terms",    # words neither in the catalog vocabulary nor sharing a stem with it
    "query_corrected_words",  # words the spelling correction changed (joins and splits included)
    "query_mean_idf",         # how specific the query is
    # whole-query scores
    "bm25",                   # Okapi BM25 over stems and numbers (k1, b in LexicalIndex)
    "bm25_norm",              # bm25 / the bm25 of a title holding each query key once, at average length
    "tfidf_cosine",
    # term overlap, each level including the ones above it
    "exact_share",            # query terms found as words in the title (or joined: "wire mesh" = "wiremesh")
    "stem_share",             # ... or by stem ("drills" = "drill")
    "fuzzy_share",            # ... or by prefix ("galv") or edit distance (1; 2 from 8 letters)
    "idf_share",              # fuzzy matches weighted by idf: rare words count more
    "title_share",            # distinct title stems the query names: how much of the title is asked for
    "phrase_match",           # the query's stems occur in the title, in order, adjacent
    "bigram_share",           # adjacent query stem pairs occurring adjacent in the title
    "first_term_match",       # fuzzy level
    "last_term_match",        # fuzzy level; the last query word is often the product type
    "last_term_in_head",      # the last query stem is among the last words of the title's main part
    "head_in_query",          # the title's product-type word (last of its main part) is in the query
    # numbers with units
    "query_numbers",
    "number_share",           # query numbers the title has (same value; same unit where both have one)
    "number_mismatch",        # query numbers with a unit whose unit the title uses only with other values
    # model numbers and other codes
    "query_codes",
    "code_share",
    # brands
    "query_brand",            # the query names a catalog brand
    "brand_match",            # ... and the title starts with it
    "brand_mismatch",         # ... and the title starts with another brand
)
N_FEATURES = len(FEATURE_NAMES)
# Groups for ablations (what each kind of signal adds to a model): every feature in exactly one.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "lengths and spelling": ("query_terms", "title_terms", "query_unknown_terms", "query_corrected_words",
                             "query_mean_idf"),
    "bm25 and tf-idf": ("bm25", "bm25_norm", "tfidf_cosine"),
    "term overlap": ("exact_share", "stem_share", "fuzzy_share", "idf_share", "title_share", "phrase_match",
                     "bigram_share", "first_term_match", "last_term_match", "last_term_in_head", "head_in_query"),
    "numbers and units": ("query_numbers", "number_share", "number_mismatch"),
    "model numbers": ("query_codes", "code_share"),
    "brands": ("query_brand", "brand_match", "brand_mismatch"),
}


def _numbers(q: QueryInfo, t: TitleInfo) -> tuple[float, float]:
    matched = contradicted = 0
    for qn in q.quantities:
        hit = False
        for tn in t.quantities:
            if qn.unit is None or tn.unit is None:
                if same_value(qn.raw, tn.raw):
                    hit = True
                    break
            elif qn.unit == tn.unit and same_value(qn.value, tn.value):
                hit = True
                break
        if hit:
            matched += 1
        elif qn.unit is not None and qn.unit in t.units:
            contradicted += 1
    n = len(q.quantities)
    return matched / n, contradicted / n


# Columns that depend on the query alone are filled once per request; _row returns the others.
_QUERY_ONLY = ("query_terms", "query_unknown_terms", "query_corrected_words", "query_mean_idf", "query_numbers",
               "query_codes", "query_brand")
_PAIR_COLUMNS = np.array([i for i, name in enumerate(FEATURE_NAMES) if name not in _QUERY_ONLY])
_QUERY_COLUMNS = np.array([FEATURE_NAMES.index(name) for name in _QUERY_ONLY])


def _query_only(q: QueryInfo) -> list[float]:
    return [len(q.terms), q.n_oov, q.n_corrected, q.mean_idf, len(q.quantities), len(q.codes),
            1.0 if q.brands else 0.0]


def _row(q: QueryInfo, t: TitleInfo, k1: float) -> tuple:
    """The pair-dependent features, in FEATURE_NAMES order without the query-only ones."""
    # Overlap by level, and the first/last term flags.
    tokens, stems = t.tokens, t.stems
    exact = stemmed = fuzzy = 0
    idf_hit = first = last = 0.0
    terms = q.terms
    n = len(terms)
    for i, term in enumerate(terms):
        if not term.alts.isdisjoint(tokens):
            exact += 1
            stemmed += 1
        elif term.stem in stems:
            stemmed += 1
        elif term.fuzzy.isdisjoint(tokens):
            continue
        fuzzy += 1
        idf_hit += term.idf
        if i == 0:
            first = 1.0
        if i == n - 1:
            last = 1.0
    # BM25 and TF-IDF share one pass over the query's keys.
    tf, den = t.tf, t.bm25_den
    bm25 = dot = 0.0
    for key, idf in q.keys:
        c = tf.get(key)
        if c:
            bm25 += idf * c * (k1 + 1.0) / (c + den)
            dot += idf * idf * c
    if n:
        stem_text = t.stem_text
        phrase = 1.0 if q.phrase in stem_text else 0.0
        if q.bigrams:
            hits = 0
            for bg in q.bigrams:
                if bg in stem_text:
                    hits += 1
            bigram = hits / len(q.bigrams)
        else:
            bigram = phrase
        shares = (exact / n, stemmed / n, fuzzy / n, idf_hit / q.idf_sum if q.idf_sum else 0.0)
        last_head = 1.0 if terms[-1].stem in t.head else 0.0
    else:
        shares = (0.0, 0.0, 0.0, 0.0)
        phrase = bigram = last_head = 0.0
    num_s = num_x = code_s = b_match = b_miss = 0.0
    if q.quantities:
        num_s, num_x = _numbers(q, t)
    if q.codes:
        hits = 0
        for c in q.codes:
            if c in tokens or (len(c) >= 4 and c in t.compact):
                hits += 1
        code_s = hits / len(q.codes)
    if q.brands:
        # A match when one names the other's start: query "delta" and a "Delta Vero" title, or a
        # query's "dewalt miter" (a learned product line) and a title whose brand is "dewalt".
        lead, tb = t.lead, t.brand
        for b in q.brands:
            if lead[:len(b)] == b or (tb and b[:len(tb)] == tb):
                b_match = 1.0
                break
        else:
            b_miss = 1.0 if tb else 0.0
    return (t.n_terms,
            bm25, bm25 / q.key_idf_sum if q.key_idf_sum else 0.0,
            dot / (q.tfidf_norm * t.tfidf_norm) if dot else 0.0,
            *shares,
            len(stems & q.stems) / len(stems) if stems else 0.0,
            phrase, bigram, first, last, last_head,
            1.0 if t.head_last and t.head_last in q.stems else 0.0,
            num_s, num_x, code_s, b_match, b_miss)


def pair_features(index: LexicalIndex, query: str, texts: Sequence[str]) -> np.ndarray:
    """float32 [len(texts), len(FEATURE_NAMES)]: the features of (query, text) for each text.

    Texts (and the query) are cut to config.MAX_TEXT_CHARS characters first, as the tokenizer
    step cuts them; an empty text gives a row of "nothing matches".
    """
    limit = config.MAX_TEXT_CHARS
    q = index.query(str(query)[:limit])
    title, k1 = index.title, index.k1
    rows = array("f")
    for text in texts:
        rows.extend(_row(q, title(str(text)[:limit]), k1))
    out = np.empty((len(texts), N_FEATURES), dtype=np.float32)
    out[:, _PAIR_COLUMNS] = np.frombuffer(rows, dtype=np.float32).reshape(len(texts), len(_PAIR_COLUMNS))
    out[:, _QUERY_COLUMNS] = np.array(_query_only(q), dtype=np.float32)
    return out
