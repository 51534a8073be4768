"""Text normalization, tokenization and a light stemmer shared by queries and product titles.

Both sides go through the same functions, so a feature never depends on which side a quirk of
normalization falls on. Numbers with units are taken out first (units.py); what remains is split
into words (letters only) and codes (tokens mixing letters and digits, e.g. model numbers).
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Mis-decoded characters common in scraped catalogs (UTF-8 read as latin-1 and back): the degree
# sign and the right quote. Mapping them keeps "90°" a quantity and "painter's" one word.
_MOJIBAKE = {"å¡": "°", "è_": "°", "ûª": "'", "â€™": "'", "â°": "°"}
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in _MOJIBAKE))
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2033": '"',
                         "\u2032": "'", "\u00d7": "x", "\u00bd": " 1/2", "\u00bc": " 1/4", "\u00be": " 3/4"})
_POSSESSIVE = re.compile(r"(?<=[a-z])'s\b")
# "2x4", "30x60", "2 X 4" and "20 in x1 in": spaced out so each number is found on its own.
_DIM_X = re.compile(r"(?<=\d)\s*[x*]\s*(?=\.?\d)|(?<=\s)x(?=\.?\d)")

# Chunks are what whitespace and hard punctuation separate; a chunk with letters and digits is a
# code ("sc-141", "t9"), any other chunk is split into words at everything that is not a letter.
_CHUNK = re.compile(r"[^\s,;:()\[\]{}!?\"|]+")
_WORD = re.compile(r"[a-z]+")
_HAS_DIGIT = re.compile(r"\d")
_HAS_ALPHA = re.compile(r"[a-z]")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

# Words that carry no product meaning; "x" is the dimension sign left between sizes.
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into", "is", "it",
    "its", "of", "on", "or", "the", "to", "with", "without", "x", "your", "you", "our", "this", "that",
    "these", "those", "per", "w"})


def normalize(text: str) -> str:
    """Lower-cased NFKC text with mis-decoded quotes/degree fixed and "2x4" spaced as "2 x 4"."""
    text = str(text).lower()
    if not text.isascii():
        if "å" in text or "è" in text or "û" in text or "â" in text:  # before NFKC, which turns "ª" into "a"
            text = _MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group(0)], text)
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    if "'" in text:
        text = _POSSESSIVE.sub("", text)
    return _DIM_X.sub(" x ", text)


_GLUED = re.compile(r"(?<![a-z0-9])([a-z]{3,})(?=\d)|(?<=\d)([a-z]{3,})(?![a-z0-9])")


def unglue(text: str, is_word) -> str:
    """Space out a word glued to a number ("mirror18x20", "3pellet") where is_word(word) says
    it is a word: shoppers type such things, catalogs do not. Units stay glued ("250ft")."""
    def space(m: re.Match) -> str:
        word = m.group(1) or m.group(2)
        if not is_word(word):
            return word
        return word + " " if m.group(1) else " " + word
    return _GLUED.sub(space, text)


def words_and_codes(text: str, starts: list[int] | None = None) -> tuple[list[str], list[str]]:
    """(words, codes) of normalized text whose quantities were already blanked out.

    Words keep their order and include stopwords (phrase and bigram matching need the order;
    callers drop stopwords where they count terms). Codes are compacted to letters and digits
    ("#SC-141" -> "sc141", "SC141" -> "sc141") and are words too, in their place. If `starts` is
    given, the offset in text of each word's chunk is appended to it.
    """
    words: list[str] = []
    codes: list[str] = []
    for m in _CHUNK.finditer(text):
        chunk = m.group()
        if chunk.isalpha():  # the common case: one plain word
            words.append(chunk)
            if starts is not None:
                starts.append(m.start())
            continue
        if _HAS_DIGIT.search(chunk):
            if _HAS_ALPHA.search(chunk):
                code = _NOT_ALNUM.sub("", chunk)
                codes.append(code)
                words.append(code)
                if starts is not None:
                    starts.append(m.start())
            continue  # digits alone: left over from a quantity, never a word
        parts = _WORD.findall(chunk)
        words.extend(parts)
        if starts is not None:
            starts.extend([m.start()] * len(parts))
    return words, codes


def _undouble(base: str) -> str:
    # fitt -> fit, cutt -> cut; "ll", "ss", "zz" stay (install, dress, buzz)
    return base[:-1] if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz" else base


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English stemmer: plurals, then -ing and -ed, leaving at least 3-4 letters.

    Lighter than Porter on purpose: product words ("siding", "glass", "cactus") must not collapse
    into stems of other words, and both sides are stemmed alike, so consistency matters more than
    linguistics. Codes and short words come back unchanged.
    """
    n = len(word)
    if n <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and n > 4:
        return word[:-3] + "y"             # batteries -> battery
    if word.endswith("sses") or word.endswith(("ches", "shes", "xes", "zes")):
        word = word[:-2]                   # glasses -> glass, benches -> bench, boxes -> box
    elif word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        word = word[:-1]                   # drills -> drill (not glass, cactus, chassis, condos)
    n = len(word)
    if word.endswith("ing") and n >= 7:
        return _undouble(word[:-3])        # flooring -> floor, fittings -> fit
    if word.endswith("ed") and n >= 6 and not word.endswith("eed"):
        return _undouble(word[:-2])        # mounted -> mount, stained -> stain
    return word


def is_term(word: str) -> bool:
    """Whether a word counts as a query/title term (stopwords and single letters do not)."""
    return len(word) > 1 and word not in STOPWORDS
