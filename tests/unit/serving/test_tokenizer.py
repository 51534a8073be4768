"""Pair encoding: same ids as the Hugging Face tokenizer (the reference), bucketed padding,
truncation of over-long texts."""
import numpy as np
import pytest

from shoprank import config
from shoprank.serving.tokenizer import PairEncoder, bucket_length
from shoprank.training.model import default_base_model

PAIRS = [("cordless drill", "DEWALT 20V MAX Cordless Drill / Driver Kit"),
         ("white vanity", "Glacier Bay 30 in. W Vanity in White with Cultured Marble Top"),
         ("Ñandú café", "naïve façade — 3/4\" × 8 ft. board")]


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_base_model()))


def test_bucket_length_picks_smallest_holding_bucket():
    assert bucket_length(1, (16, 32)) == 16
    assert bucket_length(16, (16, 32)) == 16
    assert bucket_length(17, (16, 32)) == 32
    assert bucket_length(40, (16, 32)) == 40


def test_ids_match_hugging_face_tokenizer(hf_tokenizer):
    encoder = PairEncoder.from_dir(default_base_model(), max_length=64, buckets=None)
    ours = encoder.encode_pairs([q for q, _ in PAIRS], [t for _, t in PAIRS])
    ref = hf_tokenizer([q for q, _ in PAIRS], [t for _, t in PAIRS], padding=True, truncation=True,
                       max_length=64, return_tensors="np")
    for name in config.ENGINE_INPUTS:
        np.testing.assert_array_equal(ours[name], ref[name])
        assert ours[name].dtype == np.dtype(config.ID_DTYPE)


def test_truncation_matches_hugging_face_longest_first(hf_tokenizer):
    encoder = PairEncoder.from_dir(default_base_model(), max_length=24, buckets=None)
    query, text = "stainless steel kitchen sink double bowl", "kitchen sink " * 50
    ours = encoder.encode(query, [text])
    ref = hf_tokenizer([query], [text], truncation=True, max_length=24, return_tensors="np")
    np.testing.assert_array_equal(ours["input_ids"], ref["input_ids"])
    assert ours["input_ids"].shape == (1, 24)


def test_padding_goes_to_the_bucket_and_is_masked():
    encoder = PairEncoder.from_dir(default_base_model(), max_length=64, buckets=(16, 32, 48))
    batch = encoder.encode("drill", ["a", "cordless drill driver kit with two batteries and charger"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[1] == 16
    assert mask[0].sum() == 5  # [CLS] drill [SEP] a [SEP]
    assert (ids[0, 5:] == encoder.pad_id).all() and (mask[0, 5:] == 0).all()
    assert set(batch["token_type_ids"][0, :5]) == {0, 1}


def test_huge_text_is_cut_before_tokenizing():
    encoder = PairEncoder.from_dir(default_base_model(), max_length=32)
    batch = encoder.encode("sink", ["x " * 1_000_000])
    assert batch["input_ids"].shape == (1, 32)


def test_max_length_caps_the_buckets():
    encoder = PairEncoder.from_dir(default_base_model(), max_length=40, buckets=(16, 32, 48, 64))
    assert encoder.buckets == (16, 32, 40)
    assert encoder.encode("q", ["word " * 100])["input_ids"].shape[1] == 40
