"""The encoder's fast path (query once, each product text once, pairs assembled with the
tokenizer's longest-first truncation) gives exactly the tokenizer's own pair encoding."""
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprank.data.load import load_default_or_shared
from shoprank.serving.tokenizer import PairEncoder, _longest_first, bert_word_pieces
from shoprank.training.model import default_base_model


@pytest.fixture(scope="module")
def pairs():
    frame = load_default_or_shared()
    rows = frame.sample(n=min(3000, len(frame)), random_state=3)
    return list(zip(rows["query"].astype(str), rows["text"].astype(str)))


@pytest.mark.parametrize("max_length", [64, 48, 17])
def test_fast_path_is_identical_to_the_tokenizers_pair_encoding(pairs, max_length):
    encoder = PairEncoder.from_dir(default_base_model(), max_length=max_length, buckets=None)
    assert encoder.fast, "the bundled BERT tokenizer should take the fast path"
    rng = random.Random(5)
    words = [w for _, text in pairs[:200] for w in text.split()]
    long_ones = [(" ".join(rng.choices(words, k=rng.randint(20, 120))),
                  " ".join(rng.choices(words, k=rng.randint(1, 150)))) for _ in range(200)]
    odd = [("", "x"), ("Ñandú café", "naïve façade — 3/4\" × 8 ft. board"), ("a" * 5000, "b " * 3000)]
    for chunk in range(0, len(pairs), 50):
        batch = pairs[chunk:chunk + 50] + long_ones[chunk // 50 * 3:chunk // 50 * 3 + 3] + odd
        queries, texts = zip(*batch)
        fast, reference = encoder.encode_pairs(queries, texts), encoder._encode_batch(queries, texts)
        for name in reference:
            np.testing.assert_array_equal(fast[name], reference[name], err_msg=name)


def test_longest_first_matches_the_library_cases():
    assert _longest_first(3, 4, 10) == (3, 4)      # fits
    assert _longest_first(3, 20, 10) == (3, 7)     # only the longer one is cut
    assert _longest_first(20, 3, 10) == (7, 3)
    assert _longest_first(8, 9, 11) == (5, 6)      # both cut: the longer keeps the odd token
    assert _longest_first(9, 8, 11) == (6, 5)
    assert _longest_first(30, 30, 11) == (5, 6)


def test_repeated_texts_are_tokenized_once():
    encoder = PairEncoder.from_dir(default_base_model(), max_length=64)
    encoder.encode("drill", ["DEWALT drill kit", "white paint"])
    encoder._single = None  # any new text would now fail: the repeat must come from the cache
    batch = encoder.encode("drill", ["white paint", "DEWALT drill kit"])
    reference = encoder._encode_batch(["drill"] * 2, ["white paint", "DEWALT drill kit"])
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"])


@pytest.fixture(scope="module")
def word_encoder():
    encoder = PairEncoder.from_dir(default_base_model(), max_length=64)
    assert encoder._words is not None, "the bundled BERT tokenizer should take the word path"
    return encoder


def _library_ids(encoder, text: str) -> list[int]:
    return encoder._single.encode(text, add_special_tokens=False).ids


def test_word_path_gives_the_tokenizers_ids_on_every_text_of_the_data(word_encoder):
    frame = load_default_or_shared()  # the Home Depot judgments when present: ~60k titles and queries
    texts = set(frame["text"].astype(str)) | set(frame["query"].astype(str))
    ascii_share = sum(t.isascii() and t.isprintable() for t in texts) / len(texts)
    assert ascii_share > 0.9  # the word path is what most shop text takes
    for text in texts:
        assert word_encoder._token_ids(text) == _library_ids(word_encoder, text), text


# every printable ASCII character (0x20-0x7e) and some shop words, in any order
PRINTABLE_PIECES = [chr(c) for c in range(0x20, 0x7F)] + ["in.", "DEWALT", "Drill", "1/2", "x", "Ft"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PRINTABLE_PIECES), max_size=30).map("".join))
def test_word_path_gives_the_tokenizers_ids_on_any_printable_ascii(word_encoder, text):
    assert word_encoder._token_ids(text) == _library_ids(word_encoder, text)


def test_word_path_only_for_berts_uncased_pipeline():
    import json

    from tokenizers import Tokenizer

    from shoprank.serving.tokenizer import load_backend_tokenizer

    spec = json.loads(load_backend_tokenizer(default_base_model()).to_str())
    assert bert_word_pieces(Tokenizer.from_str(json.dumps(spec)))
    spec["normalizer"]["lowercase"] = False  # a cased model: upper case must reach WordPiece
    cased = Tokenizer.from_str(json.dumps(spec))
    assert not bert_word_pieces(cased)
    encoder = PairEncoder(cased, max_length=64)
    assert encoder.fast and encoder._words is None
    assert encoder._token_ids("DEWALT Drill") == encoder._single.encode("DEWALT Drill", add_special_tokens=False).ids


def test_text_and_word_caches_are_bounded(monkeypatch):
    from shoprank.serving import tokenizer

    monkeypatch.setattr(tokenizer, "TEXT_CACHE_ENTRIES", 5)
    monkeypatch.setattr(tokenizer, "WORD_CACHE_ENTRIES", 7)
    encoder = PairEncoder.from_dir(default_base_model(), max_length=64)
    texts = [f"w{i} v{i} u{i}" for i in range(40)]  # every text new, three new words each
    encoder.encode("q", texts)
    assert len(encoder._texts) <= 5 and len(encoder._words) <= 7
    reference = encoder._encode_batch(["q"] * len(texts), texts)  # still the library's ids
    np.testing.assert_array_equal(encoder.encode("q", texts)["input_ids"], reference["input_ids"])
