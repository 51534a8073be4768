"""What the features need of one text, computed once: a product title (cached per title by the
index, since the catalog repeats across requests) and a query (once per request).

Terms are the words (and codes) that are not stopwords; "keys" are what BM25 and TF-IDF count:
term stems and numbers ("#0.75" for both "3/4 in." and a bare "3/4").
"""
from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .brands import find_brands, title_brand
from .spelling import Speller, max_distance
from .text import STOPWORDS, is_term, normalize, stem, unglue, words_and_codes
from .units import Quantity, extract_quantities, is_unit


class IndexView(Protocol):
    """What the analyses read of a LexicalIndex (index.py): a protocol, so that this module
    needs no import of the index that imports it."""

    k1: float
    b: float
    avg_len: float
    idf_table: dict[str, float]
    idf_unknown: float
    brands: dict[tuple[str, ...], int]
    query_words: dict[str, int]
    speller: Speller

    def idf(self, key: str) -> float: ...
    def known(self, word: str) -> bool: ...
    def is_prefix(self, word: str) -> bool: ...
    @property
    def sorted_words(self) -> list[str]: ...


# The main part of a title ends where its colour/finish, accessories or pack begin:
# "Delta Vero Shower Faucet Trim Kit in Chrome (Valve Not Included)" -> "... Trim Kit".
_MAIN_END = re.compile(r"\s(?:in|with|for|-|–|includes)\s|[(,]")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
HEAD_WORDS = 2        # the last words of the main part: where titles name the product type
FUZZY_MIN = 5         # fuzzy matching (edit distance) for query terms of at least this many letters
FUZZY_LONG = 8        # ... at distance 2 from this many letters
PREFIX_MIN = 4        # "galv" matches "galvanized"; shorter prefixes match too much
PREFIX_MAX_HITS = 64  # vocabulary words one prefix may expand to
CORRECT_MIN = 4       # shorter unknown words are left alone (abbreviations: "dw", "pvc", "sku")
# A word that many training queries use but no title does ("swamp" cooler) is corrected only to a
# word this many times more frequent ("nickle" -> "nickel" passes, "swamp" -> "stamp" does not).
TYPO_RATIO = 20


def number_key(raw: float) -> str:
    """The BM25/TF-IDF key of a number, whatever its unit ("3/4 in." and "3/4" -> "#0.75")."""
    return f"#{raw:g}"


@dataclass(slots=True)
class TitleInfo:
    n_terms: int
    tokens: frozenset[str]        # terms, codes and adjacent words joined ("wire mesh" -> "wiremesh")
    stems: frozenset[str]
    stem_text: str                # " s1 s2 ... " of the term stems, for phrase and bigram tests
    tf: dict[str, int]            # key -> count
    bm25_den: float               # k1 * (1 - b + b * len / avg_len): BM25's length normalization
    tfidf_norm: float
    quantities: tuple[Quantity, ...]
    units: frozenset[str]
    compact: str                  # letters and digits only, for codes written inside other tokens
    lead: tuple[str, ...]         # up to 3 leading words before any number
    brand: tuple[str, ...]        # the brand phrase the title starts with, () if none
    head: frozenset[str]          # stems of the last HEAD_WORDS terms of the main part
    head_last: str


class TitleParts(NamedTuple):
    norm: str                 # the normalized title
    words: list[str]          # in order, stopwords included
    terms: list[str]
    codes: list[str]
    quantities: list[Quantity]
    lead: list[str]           # up to 3 words before the first number, leading stopwords dropped
    main: list[str]           # the terms of the title's main part (all terms if it has none)


def title_parts(text: str) -> TitleParts:
    """A title read into its parts; fitting and analysis share it so both read titles alike."""
    norm = normalize(text)
    ext = extract_quantities(norm)
    starts: list[int] = []
    words, codes = words_and_codes(ext.text, starts)
    terms = [w for w in words if len(w) > 1 and w not in STOPWORDS]
    lead = [w for w, at in zip(words, starts) if at < ext.lead_end]
    while lead and lead[0] in STOPWORDS:  # "The Hillman Group" -> "hillman group"
        lead.pop(0)
    m = _MAIN_END.search(ext.text)
    end = m.start() if m else len(ext.text)
    main = [w for w, at in zip(words, starts) if at < end and len(w) > 1 and w not in STOPWORDS]
    return TitleParts(norm, words, terms, codes, ext.quantities, lead[:3], main or terms)


def analyze_title(index: IndexView, text: str) -> TitleInfo:
    norm, words, terms, _, quantities, lead, main = title_parts(text)
    stems = [stem(t) for t in terms]
    keys = stems + [number_key(q.raw) for q in quantities]
    tf: dict[str, int] = {}
    for k in keys:
        tf[k] = tf.get(k, 0) + 1
    idf, unknown = index.idf_table.get, index.idf_unknown
    vec_norm = math.sqrt(sum((c * idf(k, unknown)) ** 2 for k, c in tf.items()))
    joined = {a + b for a, b in zip(words, words[1:]) if a not in STOPWORDS and b not in STOPWORDS}
    head = [stem(w) for w in main[-HEAD_WORDS:]]
    return TitleInfo(
        n_terms=len(terms),
        tokens=frozenset(terms) | joined,
        stems=frozenset(stems),
        stem_text=" " + " ".join(stems) + " ",
        tf=tf,
        bm25_den=index.k1 * (1.0 - index.b + index.b * len(keys) / index.avg_len),
        tfidf_norm=vec_norm,
        quantities=tuple(quantities),
        units=frozenset(q.unit for q in quantities if q.unit),
        compact=_NOT_ALNUM.sub("", norm),
        lead=tuple(lead),
        brand=title_brand(lead, index.brands),
        head=frozenset(head),
        head_last=head[-1] if head else "",
    )


@dataclass(slots=True)
class QueryTerm:
    term: str
    stem: str
    alts: frozenset[str]   # exact forms: the term, its spelling before correction, joins with neighbours
    fuzzy: frozenset[str]  # vocabulary words within edit distance, or sharing a prefix
    idf: float


@dataclass(slots=True)
class QueryInfo:
    terms: list[QueryTerm]
    stems: frozenset[str]
    phrase: str                   # " s1 s2 ... "
    bigrams: list[str]            # " s1 s2 " for each adjacent pair
    keys: list[tuple[str, float]]  # distinct BM25 keys with idf
    tfidf_norm: float
    idf_sum: float                # over the terms
    key_idf_sum: float            # over the keys: the BM25 of a title holding each key once, at average length
    mean_idf: float
    n_oov: int
    n_corrected: int
    quantities: tuple[Quantity, ...]
    codes: tuple[str, ...]
    brands: list[tuple[str, ...]]


def correct_words(index: IndexView, words: list[str]) -> tuple[list[str], list[str], int, int]:
    """(corrected words, the original word behind each, unknown terms, corrected words).

    Unknown: an alphabetic term neither in the catalog vocabulary nor sharing a stem with it.
    First two neighbours are joined when one is unknown and the join is a word ("closet maid"
    -> "closetmaid"), then each remaining unknown word of CORRECT_MIN+ letters is corrected,
    unless it starts a vocabulary word (an abbreviation: "galv", "refrig").
    """
    known = index.known
    n_oov = sum(1 for w in words if is_term(w) and w.isalpha() and not known(w))
    out: list[str] = []
    origin: list[str] = []
    changed = 0
    i = 0
    while i < len(words):
        w = words[i]
        if i + 1 < len(words):
            nxt = words[i + 1]
            if (w.isalpha() and nxt.isalpha() and (not known(w) or not known(nxt))
                    and w + nxt in index.speller.counts):
                out.append(w + nxt)
                origin.append(w + nxt)
                changed += 1
                i += 2
                continue
        if (len(w) >= CORRECT_MIN and w.isalpha() and w not in STOPWORDS and not known(w)
                and not index.is_prefix(w)):  # "galv", "refrig": abbreviations, matched as prefixes
            fixed = index.speller.correct(w, max(1, TYPO_RATIO * index.query_words.get(w, 0)))
            if fixed is not None:
                out.extend(fixed)
                origin.extend([w] * len(fixed))
                changed += 1
                i += 1
                continue
        out.append(w)
        origin.append(w)
        i += 1
    return out, origin, n_oov, changed


def _fuzzy_set(index: IndexView, term: str) -> frozenset[str]:
    if not term.isalpha() or len(term) < PREFIX_MIN:
        return frozenset()
    found: set[str] = set()
    if len(term) >= FUZZY_MIN:
        limit = 2 if len(term) >= FUZZY_LONG else 1
        found.update(w for w, _ in index.speller.neighbours(term, min(limit, max_distance(term))))
    vocab = index.sorted_words
    i = bisect_left(vocab, term)
    hits = 0
    while i < len(vocab) and vocab[i].startswith(term) and hits < PREFIX_MAX_HITS:
        found.add(vocab[i])  # "galv" -> "galvanized"
        i += 1
        hits += 1
    counts = index.speller.counts
    for n in range(max(PREFIX_MIN, FUZZY_MIN), len(term)):
        if term[:n] in counts:
            found.add(term[:n])  # "cabinetry" -> "cabinet"
    found.discard(term)
    return frozenset(found)


def _glued_word(index: IndexView, word: str) -> bool:
    return index.known(word) and not is_unit(word)


def analyze_query(index: IndexView, query: str) -> QueryInfo:
    norm = normalize(query)
    if any(c.isdigit() for c in norm):
        norm = normalize(unglue(norm, lambda w: _glued_word(index, w)))
    ext = extract_quantities(norm)
    raw_words, codes = words_and_codes(ext.text)
    words, origin, n_oov, n_corrected = correct_words(index, raw_words)
    fixed_units = {o: w for w, o in zip(words, origin) if w != o and is_unit(w)}
    if fixed_units:  # "40 galloon" -> "40 gallon": read the quantities again with the unit spelled right
        norm = re.sub(r"[a-z]+", lambda m: fixed_units.get(m.group(), m.group()), norm)
        ext = extract_quantities(norm)
        raw_words, codes = words_and_codes(ext.text)
        words, origin, _, _ = correct_words(index, raw_words)
    pairs = [(w, o) for w, o in zip(words, origin) if is_term(w)]
    term_words = [w for w, _ in pairs]
    idf = index.idf
    terms: list[QueryTerm] = []
    for i, (w, o) in enumerate(pairs):
        alts = {w, o}
        if i > 0:
            alts.add(term_words[i - 1] + w)
        if i + 1 < len(term_words):
            alts.add(w + term_words[i + 1])
        s = stem(w)
        terms.append(QueryTerm(w, s, frozenset(alts), _fuzzy_set(index, w), idf(s)))
    stems = [t.stem for t in terms]
    keys = list(dict.fromkeys(stems + [number_key(q.raw) for q in ext.quantities]))
    key_idf = [(k, idf(k)) for k in keys]
    idf_sum = sum(t.idf for t in terms)
    return QueryInfo(
        terms=terms,
        stems=frozenset(stems),
        phrase=" " + " ".join(stems) + " ",
        bigrams=[f" {a} {b} " for a, b in zip(stems, stems[1:])],
        keys=key_idf,
        tfidf_norm=math.sqrt(sum(v * v for _, v in key_idf)),
        idf_sum=idf_sum,
        key_idf_sum=sum(v for _, v in key_idf),
        mean_idf=idf_sum / len(terms) if terms else 0.0,
        n_oov=n_oov,
        n_corrected=n_corrected,
        quantities=tuple(ext.quantities),
        codes=tuple(dict.fromkeys(codes)),
        brands=find_brands(words, index.brands),
    )
