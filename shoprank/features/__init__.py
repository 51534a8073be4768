"""Cheap lexical features of (query, product title) pairs, for a learned head beside the
cross-encoder: BM25 and TF-IDF, exact/stem/fuzzy term overlap, numbers with units, model codes,
brands, lengths and spelling, computed from a LexicalIndex fitted on the catalog (docs/features.md).

    index = LexicalIndex.fit(catalog_titles, training_queries)
    index.save(folder); index = LexicalIndex.load(folder)
    x = pair_features(index, query, titles)   # float32 [len(titles), len(FEATURE_NAMES)]
"""
from .index import LexicalIndex
from .pairs import FEATURE_NAMES, pair_features

__all__ = ["FEATURE_NAMES", "LexicalIndex", "pair_features"]
