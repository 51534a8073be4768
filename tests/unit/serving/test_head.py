"""The scoring head as the sorter runs it: numbers, files, and the configs that wire it."""
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from shoprank import config
from shoprank.serving.head import ScoringHead, has_head
from shoprank.serving.triton.repository import render


def _head(hidden=(4,), features=3, seed=0) -> ScoringHead:
    rng = np.random.default_rng(seed)
    sizes = [1 + features, *hidden, 1]
    weights = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=b).astype(np.float32) for b in sizes[1:]]
    return ScoringHead(tuple(f"f{i}" for i in range(features)), rng.normal(size=1 + features).astype(np.float32),
                       rng.uniform(0.5, 2, size=1 + features).astype(np.float32), weights, biases, {"note": "x"})


def test_a_linear_head_is_theta_dot_standardized_inputs():
    head = _head(hidden=())
    ce, feats = np.array([0.5, -1.0], np.float32), np.array([[1, 2, 3], [0, 0, 1]], np.float32)
    x = (np.column_stack([ce, feats]) - head.mean) / head.scale
    expected = x @ head.weights[0][:, 0] + head.biases[0][0]
    np.testing.assert_allclose(head.logits(ce.reshape(-1, 1), feats), expected, rtol=1e-5)


def test_an_mlp_head_uses_relu_between_layers():
    head = _head(hidden=(5, 3))
    ce, feats = np.array([0.1], np.float32), np.array([[1, -2, 3]], np.float32)
    h = (np.column_stack([ce, feats]) - head.mean) / head.scale
    for w, b in zip(head.weights[:-1], head.biases[:-1]):
        h = np.maximum(h @ w + b, 0)
    expected = h @ head.weights[-1] + head.biases[-1]
    np.testing.assert_allclose(head.logits(ce, feats), expected.reshape(-1), rtol=1e-5)


def test_save_and_load_give_the_same_scores(tmp_path):
    head = _head()
    head.save(tmp_path / "h")
    assert has_head(tmp_path / "h") and not has_head(tmp_path)
    loaded = ScoringHead.load(tmp_path / "h")
    feats = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    ce = np.linspace(-3, 3, 50, dtype=np.float32)
    np.testing.assert_array_equal(loaded.logits(ce, feats), head.logits(ce, feats))
    assert loaded.feature_names == head.feature_names and loaded.meta == {"note": "x"}


def test_a_wrong_feature_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expects 3 features"):
        _head().logits(np.zeros(2), np.zeros((2, 4)))


def _parse(text):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_with_a_head_the_tokenizer_hands_features_to_the_sorter_through_the_ensemble():
    ensemble = _parse(render(config.ENSEMBLE_MODEL, head_features=7))
    tokenizer_step, _, sorter_step = ensemble.ensemble_scheduling.step
    assert tokenizer_step.output_map[config.FEATURES] == sorter_step.input_map[config.FEATURES]
    tokenizer = _parse(render(config.TOKENIZER_MODEL, head_features=7))
    sorter = _parse(render(config.SORTER_MODEL, head_features=7))
    for tensors in (tokenizer.output, sorter.input):
        (features,) = [t for t in tensors if t.name == config.FEATURES]
        assert list(features.dims) == [-1, 7] and features.data_type == model_config_pb2.TYPE_FP32
    assert tokenizer.parameters["features"].string_value == sorter.parameters["head"].string_value


def test_without_a_head_no_config_mentions_features():
    for name in (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL, config.SORTER_MODEL):
        text = render(name)
        assert config.FEATURES not in text and '"head"' not in text and '"features"' not in text
        _parse(text)
