"""The explain model's generated config: valid Triton protobuf text for every target, wired to
the served steps by name, with the head's features only when a head is served."""
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from shoprank import config
from shoprank.serving.triton.repository import TARGETS, render


def parse(text):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("target", TARGETS)
def test_explain_config_parses_and_names_the_steps(target):
    explain = parse(render(config.EXPLAIN_MODEL, target))
    assert (explain.name, explain.backend, explain.max_batch_size) == (config.EXPLAIN_MODEL, "python", 0)
    assert [i.name for i in explain.input] == [config.QUERY, config.CANDIDATES]
    assert [(o.name, o.data_type) for o in explain.output] == [(config.EXPLANATIONS, model_config_pb2.TYPE_STRING)]
    params = {k: v.string_value for k, v in explain.parameters.items()}
    assert (params["tokenizer_model"], params["ranker_model"], params["sorter_model"]) == (
        config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL)
    assert params["max_candidates"] == str(config.EXPLAIN_MAX_CANDIDATES)
    assert params["features"] == ""
    assert config.TRACE in params["trace_outputs"].split(",")


def test_with_a_head_the_explain_model_passes_its_features():
    params = parse(render(config.EXPLAIN_MODEL, head_features=7)).parameters
    assert params["features"].string_value == "1"


def test_the_ensemble_never_calls_explain():
    assert config.EXPLAIN_MODEL not in render(config.ENSEMBLE_MODEL)
