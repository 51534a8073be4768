"""(query, product text) pair encoding, identical in training, export, serving and tests.

Uses the fast tokenizer's Rust core (`tokenizers`) directly: the Triton tokenizer model then
needs only `tokenizer.json`, and every caller truncates and pads the same way.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import config


def bucket_length(longest: int, buckets: Sequence[int] = config.SEQ_BUCKETS) -> int:
    """Smallest bucket holding `longest` tokens (the longest pair if beyond every bucket)."""
    for size in buckets:
        if longest <= size:
            return size
    return longest


def load_backend_tokenizer(model_dir: str | Path):
    """A `tokenizers.Tokenizer` from tokenizer.json, or converted from any HF tokenizer folder."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    return hf.backend_tokenizer


TEXT_CACHE_ENTRIES = 50_000  # product texts whose token ids one encoder keeps (cleared when full)
WORD_CACHE_ENTRIES = 100_000  # words whose WordPiece ids one encoder keeps (cleared when full)
# BERT's pre-tokenization of lower-cased printable ASCII: runs of letters and digits, and each
# punctuation character alone (all 32 ASCII symbols count as punctuation); spaces only separate.
ASCII_WORDS = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")


def bert_word_pieces(tokenizer) -> bool:
    """Whether the tokenizer is BERT's uncased pipeline (BertNormalizer lower-casing and cleaning,
    BertPreTokenizer, WordPiece), for which ASCII_WORDS splits printable ASCII exactly as it does."""
    spec = json.loads(tokenizer.to_str())
    normalizer, pre, model = (spec.get(k) or {} for k in ("normalizer", "pre_tokenizer", "model"))
    return (normalizer.get("type") == "BertNormalizer" and bool(normalizer.get("lowercase"))
            and bool(normalizer.get("clean_text")) and normalizer.get("strip_accents") in (None, True)
            and pre.get("type") == "BertPreTokenizer" and model.get("type") == "WordPiece")


class PairEncoder:
    """Encodes one query against many product texts into int32 engine inputs.

    Fast path (BERT-style pair templates, checked at start-up against the tokenizer's own pair
    encoding): the query is tokenized once per request and each product text once per encoder
    (kept in a bounded dict: shop traffic repeats the same titles), then every pair is assembled
    as [CLS] query [SEP] text [SEP] with the tokenizer's longest-first truncation. A text's ids do
    not depend on the query (normalization and pre-tokenization are per sequence), so the result
    is identical (tests/unit/serving/test_tokenizer_fast.py); other templates use encode_batch.
    """

    def __init__(self, tokenizer, max_length: int = config.MAX_SEQ_LEN,
                 buckets: Sequence[int] | None = config.SEQ_BUCKETS):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        # Buckets above max_length are never needed; None pads to the longest pair.
        self.buckets = (None if buckets is None
                        else (*(b for b in buckets if b < self.max_length), self.max_length))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        padding = tokenizer.padding
        self.pad_id = padding["pad_id"] if padding else (tokenizer.token_to_id("[PAD]") or 0)
        self._texts: dict[str, np.ndarray] = {}
        self._words: dict[str, list[int]] | None = None  # the word path, when enabled
        self._single = None
        self.fast = self._enable_fast_path()

    def _enable_fast_path(self) -> bool:
        from tokenizers import Tokenizer

        cls_id, sep_id = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        if cls_id is None or sep_id is None or self.max_length < 4:
            return False
        self._cls, self._sep = cls_id, sep_id
        self._single = Tokenizer.from_str(self.tokenizer.to_str())  # same vocabulary, no truncation
        self._single.no_truncation()
        self._single.no_padding()
        self._enable_word_path()
        word = "drill "
        probes = [("q", "t"), ("cordless drill", "DEWALT 20V MAX drill kit, 2 batteries")]
        for n in (1, 3, self.max_length // 2, self.max_length, 2 * self.max_length):  # every truncation case
            for m in (1, 2, self.max_length // 2 + 1, self.max_length - 1, 3 * self.max_length):
                probes.append((word * n, "paint " * m))
        queries, texts = zip(*probes)
        self.fast = True
        try:
            same = all(np.array_equal(a, b) for a, b in zip(self._assemble(queries, texts).values(),
                                                             self._encode_batch(queries, texts).values()))
        finally:
            self._texts.clear()
        return same

    def _ids(self, text: str) -> np.ndarray:
        """A text's token ids followed by [SEP] (how every sequence ends in a pair), cached."""
        ids = self._texts.get(text)
        if ids is None:
            if len(self._texts) >= TEXT_CACHE_ENTRIES:
                self._texts.clear()
            ids = self._texts[text] = np.asarray([*self._token_ids(text), self._sep], dtype=np.int32)
        return ids

    def _token_ids(self, text: str) -> list[int]:
        """A text's token ids, no special tokens. Printable ASCII (most shop text) takes the word
        path: lower-cased and split here (BERT's normalization and pre-tokenization do nothing
        else to it) and each word given to WordPiece alone, its ids cached: the tokenizers
        library's own normalization and pre-tokenization were most of the cost of a new title
        (docs/benchmark.md, "What made it fast")."""
        words = self._words
        if words is None or not (text.isascii() and text.isprintable()):
            return self._single.encode(text, add_special_tokens=False).ids
        out: list[int] = []
        for word in ASCII_WORDS.findall(text.lower()):
            ids = words.get(word)
            if ids is None:
                if len(words) >= WORD_CACHE_ENTRIES:
                    words.clear()
                ids = words[word] = [token.id for token in self._word_pieces(word)]
            out += ids
        return out

    def _enable_word_path(self) -> None:
        """The word path for BERT's uncased pipeline, checked against the tokenizer on probes."""
        if not bert_word_pieces(self._single):
            return
        self._word_pieces = self._single.model.tokenize  # WordPiece alone: the word is normalized and split
        probes = ["DEWALT 20V MAX* XR 1/2 in. Brushless Drill/Driver (Tool-Only) DCD791B", "x", "",
                  "  3/4\" x 10 ft. Type-L Copper Pipe, #8 x 1-1/4\" ~ $5.99 @home_depot [new]{a|b}^`'",
                  "ABC123def 4x8 2,000-lb. 10'x12' U.S.A. e.g. mid-century" + " z" * 5, "a" * 120 + " b"]
        self._words = {}
        same = all(self._token_ids(p) == self._single.encode(p, add_special_tokens=False).ids for p in probes)
        self._words = {} if same else None  # the probes' words are not kept

    def _assemble(self, queries: Sequence[str], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """[CLS] a [SEP] b [SEP] per pair, written into the padded arrays in one scatter: per pair
        only cached arrays are listed (a row loop of numpy slice assignments cost more than the
        tokenization of cached titles)."""
        budget = self.max_length - 3  # [CLS] a [SEP] b [SEP]
        cls = np.array([self._cls], np.int32)
        pieces, firsts, ends = [], [], []
        a = head = last_query = None
        for query, text in zip(queries, texts):
            if query is not last_query:  # encode() repeats one query object: its head is built once
                a, last_query = self._ids(query[: config.MAX_TEXT_CHARS]), query
                head = np.concatenate((cls, a))
            b = self._ids(text[: config.MAX_TEXT_CHARS])
            n1, n2 = len(a) - 1, len(b) - 1  # without their [SEP]
            if n1 + n2 > budget:  # truncated: the tokenizer's longest-first rule
                n1, n2 = _longest_first(n1, n2, budget)
                pieces += (cls, a[:n1], a[-1:], b[:n2], b[-1:])
            else:
                pieces += (head, b)
            firsts.append(n1 + 2)
            ends.append(n1 + n2 + 3)
        firsts, ends = np.asarray(firsts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        longest = int(ends.max()) if len(ends) else 1
        length = bucket_length(longest, self.buckets) if self.buckets else longest
        ids = np.full((len(ends), length), self.pad_id, dtype=np.int32)
        if len(ends):
            rows = np.repeat(np.arange(len(ends)), ends)
            cols = np.arange(int(ends.sum())) - np.repeat(np.cumsum(ends) - ends, ends)
            ids[rows, cols] = np.concatenate(pieces)
        positions = np.arange(length)
        mask = (positions < ends[:, None]).astype(np.int32)
        types = ((positions >= firsts[:, None]) & (positions < ends[:, None])).astype(np.int32)
        input_ids, attention_mask, token_type_ids = config.ENGINE_INPUTS
        return {input_ids: ids, attention_mask: mask, token_type_ids: types}

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs) -> PairEncoder:
        return cls(load_backend_tokenizer(model_dir), **kwargs)

    def encode_pairs(self, queries: Sequence[str], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Encode aligned (query, text) pairs; returns ENGINE_INPUTS -> int32 [N, L]."""
        if self.fast:
            return self._assemble(queries, texts)
        return self._encode_batch(queries, texts)

    def _encode_batch(self, queries: Sequence[str], texts: Sequence[str]) -> dict[str, np.ndarray]:
        pairs = [(q[: config.MAX_TEXT_CHARS], t[: config.MAX_TEXT_CHARS]) for q, t in zip(queries, texts)]
        encodings = self.tokenizer.encode_batch(pairs)
        longest = max((len(e.ids) for e in encodings), default=1)
        length = bucket_length(longest, self.buckets) if self.buckets else longest
        ids = np.full((len(encodings), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(encodings), length), dtype=np.int32)
        types = np.zeros((len(encodings), length), dtype=np.int32)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        input_ids, attention_mask, token_type_ids = config.ENGINE_INPUTS
        return {input_ids: ids, attention_mask: mask, token_type_ids: types}

    def encode(self, query: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Encode one query against each text."""
        return self.encode_pairs([query] * len(texts), texts)


def _longest_first(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Lengths kept of a pair's two sequences under the tokenizers library's longest-first
    truncation to `budget` tokens (special tokens excluded)."""
    if n1 + n2 <= budget:
        return n1, n2
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    return (n2, n1) if swap else (n1, n2)
