"""The response cache's configuration (docs/caching.md); served behaviour:
tests/integration/test_response_cache.py."""
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from shoprank import config
from shoprank.serving.server import cache_args
from shoprank.serving.triton.repository import TARGETS, render


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_ranker_uses_the_response_cache(target):
    """The ranker's answers are cached (key: its version + the token ids), never the ensemble's:
    Triton's key ignores which outputs a request asks for, so one request for INDICES alone
    would leave a cached page without SCORES for everyone after it (docs/caching.md)."""
    for name in (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL):
        parsed = text_format.Parse(render(name, target), model_config_pb2.ModelConfig())
        assert parsed.response_cache.enable == (name == config.RANKER_MODEL), name


def test_cache_args_bound_the_local_cache():
    assert cache_args(0) == []
    assert cache_args(1024) == ["--cache-config=local,size=1024"]
    with pytest.raises(ValueError, match="cache_bytes must be >= 0"):
        cache_args(-1)
