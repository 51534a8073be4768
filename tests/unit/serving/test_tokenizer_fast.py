"""The encoder's fast path (query once, each product text once, pairs assembled with the
tokenizer's longest-first truncation) gives exactly the tokenizer's own pair encoding."""
import random

import numpy as np
import pytest

from shoprank.data.load import load_default_or_shared
from shoprank.serving.tokenizer import PairEncoder, _longest_first
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
