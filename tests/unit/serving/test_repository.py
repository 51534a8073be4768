"""Generated model configs: valid Triton protobuf text for every target, one contract."""
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from shoprank import config
from shoprank.serving.triton.repository import TARGETS, render

MODELS = (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL)


def parse(text):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("target", TARGETS)
def test_every_config_parses_for_every_target(target):
    for name in MODELS:
        assert parse(render(name, target)).name == name


@pytest.mark.parametrize("target,backend,platform,kind", [
    ("python", "python", "", model_config_pb2.ModelInstanceGroup.KIND_CPU),
    ("onnxruntime", "", "onnxruntime_onnx", model_config_pb2.ModelInstanceGroup.KIND_AUTO),
    ("tensorrt", "", "tensorrt_plan", model_config_pb2.ModelInstanceGroup.KIND_GPU),
])
def test_ranker_engine_per_target(target, backend, platform, kind):
    ranker = parse(render(config.RANKER_MODEL, target))
    assert (ranker.backend, ranker.platform) == (backend, platform)
    assert ranker.instance_group[0].kind == kind
    assert ranker.max_batch_size >= config.MAX_CANDIDATES
    assert ranker.HasField("dynamic_batching")
    assert [i.name for i in ranker.input] == list(config.ENGINE_INPUTS)
    assert {i.data_type for i in ranker.input} == {model_config_pb2.TYPE_INT32}
    assert ranker.model_warmup[0].batch_size > 1


def test_ensemble_wires_tokenizer_ranker_sorter():
    ensemble = parse(render(config.ENSEMBLE_MODEL))
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL]
    engine_inputs = {k: v for k, v in steps[0].output_map.items() if k != config.ATTRIBUTES}
    assert engine_inputs == dict(steps[1].input_map)
    assert steps[2].input_map[config.ATTRIBUTES] == steps[0].output_map[config.ATTRIBUTES]
    assert list(steps[1].output_map.values()) == [steps[2].input_map[config.RANKER_LOGITS]]
    assert [o.name for o in ensemble.output] == [config.INDICES, config.SCORES, config.FINAL_SCORES, config.TRACE,
                                                 config.RANDOMIZED]
    tokenizer = parse(render(config.TOKENIZER_MODEL, max_length=40))
    assert tokenizer.parameters["max_length"].string_value == "40"
    assert [o.name for o in tokenizer.output] == [*config.ENGINE_INPUTS, config.ATTRIBUTES]


def test_optional_inputs_follow_the_projects_rule():
    """docs/conversion.md#optional-inputs: optional on the ensemble AND on every step that reads
    them; the old contract's tensors stay required except CANDIDATES (ids may replace it)."""
    ensemble = parse(render(config.ENSEMBLE_MODEL))
    optional = {i.name for i in ensemble.input if i.optional}
    assert optional == {config.CANDIDATES, config.CANDIDATE_IDS, config.RULES, config.USER_ID, config.USER_CONTEXT}
    tokenizer, sorter = parse(render(config.TOKENIZER_MODEL)), parse(render(config.SORTER_MODEL))
    assert {i.name for i in tokenizer.input if i.optional} == {config.CANDIDATES, config.CANDIDATE_IDS,
                                                                config.USER_ID, config.USER_CONTEXT}
    # ids reach the sorter as codes inside ATTRIBUTES; the strings stay with the tokenizer
    assert {i.name for i in sorter.input if i.optional} == {config.RULES, config.ATTRIBUTES}
    # with a personal head, the shopper's features travel tokenizer -> sorter, optional for the sorter
    sorter = parse(render(config.SORTER_MODEL, behaviour_features=6))
    assert {i.name for i in sorter.input if i.optional} == {config.RULES, config.ATTRIBUTES, config.BEHAVIOUR}
    assert sorter.parameters["personal"].string_value == "personal"
    tokenizer = parse(render(config.TOKENIZER_MODEL, behaviour_features=6, profile_store="redis://r:6379/0"))
    assert [o.name for o in tokenizer.output][-1] == config.BEHAVIOUR
    assert tokenizer.parameters["profile_store"].string_value == "redis://r:6379/0"
    ensemble = render(config.ENSEMBLE_MODEL, behaviour_features=6)
    assert ensemble.count(f'key: "{config.BEHAVIOUR}" value: "{config.BEHAVIOUR}"') == 2


def test_catalog_and_default_rules_reach_their_steps(tmp_path):
    import json

    tokenizer = parse(render(config.TOKENIZER_MODEL, catalog=tmp_path / "c.sqlite"))
    assert tokenizer.parameters["catalog"].string_value == str((tmp_path / "c.sqlite").resolve())
    rules = {"filter": {"in_stock_only": True}, "diversity": {"max_per_brand": 2, "top_n": 10}}
    sorter = parse(render(config.SORTER_MODEL, rules_defaults=rules))
    assert json.loads(sorter.parameters["rules_defaults"].string_value) == rules
    assert json.loads(parse(render(config.SORTER_MODEL)).parameters["rules_defaults"].string_value) == {}


def test_unknown_target_is_refused():
    with pytest.raises(ValueError, match="unknown target"):
        render(config.RANKER_MODEL, "tpu")


@pytest.mark.parametrize("target", TARGETS)
def test_tokenizer_and_ranker_queues_are_bounded_and_refuse(target):
    """Overload is shed at once: bounded queues, and a request that waited too long is refused."""
    for name, size, timeout in ((config.TOKENIZER_MODEL, config.TOKENIZER_MAX_QUEUE, config.TOKENIZER_QUEUE_TIMEOUT_US),
                                (config.RANKER_MODEL, config.RANKER_MAX_QUEUE, config.RANKER_QUEUE_TIMEOUT_US)):
        policy = parse(render(name, target)).dynamic_batching.default_queue_policy
        assert policy.max_queue_size == size > 0
        assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
        assert policy.default_timeout_microseconds == timeout >= 0
        assert policy.allow_timeout_override


def test_requests_never_wait_in_the_ranker_queue_without_end():
    assert config.RANKER_QUEUE_TIMEOUT_US > 0
