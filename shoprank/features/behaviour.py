"""The shopper's side of P(click | X, Y): features of (recent behaviour X, candidate product Y).

X is the shopper's recent behaviour, newest first, as (kind, text) pairs: kind is "query" (a
search they typed) or "click" / "add_to_cart" / "purchase" (a product they acted on, by its
text). Nothing here knows where X came from (the profile store or the caller's USER_CONTEXT).

Per candidate, from text alone (a catalog's attributes are not needed); "related" acted-on
products are those sharing at least RELATED_JACCARD of their terms with the candidate (the same
kind of product), "weight" is recency times action (below):
    brand_share        of the weight on related products, the share on the candidate's brand
                       (its title's first word, where catalogs put the brand): brand loyalty
    brand_weight       log(1 + weight on products of the candidate's brand, related or not)
    style_match        the closest related product's term overlap (finish, colour, size, ...)
    bought_before      1 when this very product was bought (repeat purchase)
    acted_before       1 when this very product was clicked, carted or bought
    related_weight     log(1 + weight on related products): how much the shopper shops this kind
Weights: a purchase counts more than a cart, a cart more than a click, and each older event
counts less (RECENCY_DECAY per step back), so a shopper whose taste drifted is read by the
newer behaviour first. A profile with fewer than MIN_PRODUCTS acted-on products gives all
zeros, like no profile: too little to go on moves nothing (cold start).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .text import STOPWORDS, normalize, stem, words_and_codes

BEHAVIOUR_FEATURES = ("brand_share", "brand_weight", "style_match", "bought_before", "acted_before",
                      "related_weight")
ACTION_WEIGHT = {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0}
RECENCY_DECAY = 0.9
RELATED_JACCARD = 0.2
MIN_PRODUCTS = 3


def _terms(text: str) -> frozenset[str]:
    words, _ = words_and_codes(normalize(text))
    return frozenset(stem(w) for w in words if len(w) > 1 and w not in STOPWORDS)


def brand_of(text: str) -> str:
    """A title's brand key: its first word (catalog titles start with the brand)."""
    words, _ = words_and_codes(normalize(text))
    words = [w for w in words if w not in STOPWORDS]
    return words[0] if words else ""


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class Profile:
    """One shopper's behaviour, read once per request and compared with every candidate."""

    def __init__(self, behaviour: Sequence[tuple[str, str]]):
        self.products, self.queries = [], []   # (weight, terms, brand, normalized text, kind)
        for age, (kind, text) in enumerate(behaviour):
            recency = RECENCY_DECAY ** age
            if kind == "query":
                self.queries.append((recency, _terms(text)))
            elif kind in ACTION_WEIGHT:
                self.products.append((recency * ACTION_WEIGHT[kind], _terms(text), brand_of(text),
                                      normalize(text).strip(), kind))
        self.product_weight = sum(p[0] for p in self.products)
        self.query_weight = sum(q[0] for q in self.queries)

    @property
    def empty(self) -> bool:
        return len(self.products) < MIN_PRODUCTS

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), len(BEHAVIOUR_FEATURES)]; all zeros for a (near) empty profile."""
        out = np.zeros((len(texts), len(BEHAVIOUR_FEATURES)), dtype=np.float32)
        if self.empty:
            return out
        for i, text in enumerate(texts):
            terms, brand, norm = _terms(text), brand_of(text), normalize(text).strip()
            related_w = related_brand_w = brand_w = style = bought = acted = 0.0
            for weight, p_terms, p_brand, p_norm, kind in self.products:
                same_brand = bool(brand) and brand == p_brand
                brand_w += weight * same_brand
                sim = _jaccard(terms, p_terms)
                if sim >= RELATED_JACCARD:
                    related_w += weight
                    related_brand_w += weight * same_brand
                    style = max(style, sim)
                if norm == p_norm:
                    acted = 1.0
                    bought = max(bought, float(kind == "purchase"))
            share = related_brand_w / related_w if related_w else 0.0
            out[i] = (share, math.log1p(brand_w), style, bought, acted, math.log1p(related_w))
        return out


def behaviour_features(behaviour: Sequence[tuple[str, str]], texts: Sequence[str]) -> np.ndarray:
    return Profile(behaviour).features(texts)


def behaviour_summary(behaviour: Sequence[tuple[str, str]], max_items: int = 4) -> str:
    """Compact text of the behaviour for the cross-encoder's input (design "text"): the brands and
    titles of the newest acted-on products and the newest query, most recent first."""
    acted = [(kind, text) for kind, text in behaviour if kind in ACTION_WEIGHT][:max_items]
    queries = [text for kind, text in behaviour if kind == "query"][:1]
    parts = [("bought " if kind == "purchase" else "") + " ".join(normalize(text).split()[:6])
             for kind, text in acted]
    if queries:
        parts.append("searched " + normalize(queries[0]).strip())
    return "; ".join(parts)
