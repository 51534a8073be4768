"""Generate the Triton model repository for a build target from the templates.

Targets (the ranker step differs; tokenizer, sorter and ensemble are the same everywhere):
  python       ONNX Runtime inside the Python backend (the pip `tritonserver` has no other)
  onnxruntime  Triton's onnxruntime_onnx backend (NVIDIA's container, CPU or GPU)
  tensorrt     Triton's tensorrt_plan backend with a TensorRT plan (NVIDIA GPU)
Committed sources are the thin model.py files; configs, engines and tokenizer files are
written here and ignored by git. Later ranker versions: shoprank.serving.triton.versions.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from string import Template

from ... import config
from ...data.pseudonym import DEFAULT_KEY_FILE
from ...errors import DataError
from ...model_card import model_max_length
from ..catalog import ATTRIBUTES
from ..catalog import DEFAULT_DB as DEFAULT_CATALOG
from ..head import HEAD_FOLDER, ScoringHead, has_head, head_dir
from ..personal import PERSONAL_FOLDER, personal_dir

TEMPLATES = Path(__file__).parent / "templates"
TARGETS = ("python", "onnxruntime", "tensorrt")
ENGINE_FILE = {"python": "model.onnx", "onnxruntime": "model.onnx", "tensorrt": "model.plan"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "shoprank.json")
SOURCE_REPOSITORY = config.PROJECT_ROOT / "model_repository"  # where the committed model.py files live
TRITON_DTYPE = {"int32": "TYPE_INT32", "int64": "TYPE_INT64"}
# What the explain model asks the sorter for each candidate's trace (shoprank.explain.served):
# these outputs, with these RULES (trace on, every other rule the server's default).
EXPLAIN_TRACE_OUTPUTS = (config.FINAL_SCORES, config.TRACE)
EXPLAIN_TRACE_RULES = '{"trace": true}'
VERSION_META = "version.json"      # beside each ranker version: where it came from, its gate


def _tensors(dims: str) -> str:
    dtype = TRITON_DTYPE[config.ID_DTYPE]
    return ",\n".join(f'  {{ name: "{n}" data_type: {dtype} dims: {dims} }}' for n in config.ENGINE_INPUTS)


def _maps(kind: str) -> str:
    return "\n".join(f'      {kind} {{ key: "{n}" value: "{n}" }}' for n in config.ENGINE_INPUTS)


def _queue_policy(max_queue: int, timeout_us: int) -> str:
    return (f"default_queue_policy {{ timeout_action: REJECT default_timeout_microseconds: {timeout_us} "
            f"allow_timeout_override: true max_queue_size: {max_queue} }}")


def _ranker_parts(target: str, threads: int, warmup_length: int) -> dict:
    if target == "python":
        engine_line, kind = 'backend: "python"', "KIND_CPU"
        parameters = (f'parameters {{ key: "engine_file" value {{ string_value: "{ENGINE_FILE[target]}" }} }}\n'
                      f'parameters {{ key: "engine_threads" value {{ string_value: "{threads}" }} }}')
    elif target == "onnxruntime":
        engine_line, kind = 'platform: "onnxruntime_onnx"', "KIND_AUTO"
        parameters = (f'parameters {{ key: "intra_op_thread_count" value {{ string_value: "{threads}" }} }}\n'
                      'optimization { graph { level: 1 } }')
    elif target == "tensorrt":
        engine_line, kind = 'platform: "tensorrt_plan"', "KIND_GPU"
        parameters = ""
    else:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    dtype = TRITON_DTYPE[config.ID_DTYPE]
    warmup = "\n".join(
        f'    inputs {{ key: "{n}" value: {{ data_type: {dtype} dims: [ {warmup_length} ] zero_data: true }} }}'
        for n in config.ENGINE_INPUTS)
    return {"engine_line": engine_line, "instance_kind": kind, "parameters": parameters,
            "warmup_inputs": warmup, "warmup_length": warmup_length}


def _handed_over(name: str, width: int, optional: bool) -> tuple[str, str, str, str]:
    """A FP32 [-1, width] tensor the tokenizer produces and the ensemble hands to the sorter:
    (the tokenizer's output line, the sorter's input line, the two steps' maps). `optional`: the
    tokenizer may leave it out of a response, so the sorter declares it optional."""
    tensor = f'{{ name: "{name}" data_type: TYPE_FP32 dims: [ -1, {width} ]'
    return (f",\n  {tensor} }}", f",\n  {tensor}{' optional: true' if optional else ''} }}",
            f'\n      output_map {{ key: "{name}" value: "{name}" }}',
            f'\n      input_map {{ key: "{name}" value: "{name}" }}')


def _head_parts(features: int) -> dict:
    """Config lines for a scoring head (features > 0): the tokenizer also computes each pair's
    features, the ensemble hands them to the sorter, which scores with the head. Empty without."""
    keys = ("features_output", "features_input", "features_out_map", "features_in_map")
    if not features:
        return dict.fromkeys((*keys, "features_parameters", "head_parameters"), "")
    return {**dict(zip(keys, _handed_over(config.FEATURES, features, optional=False))),
            "features_parameters": f'parameters {{ key: "features" value {{ string_value: "{HEAD_FOLDER}" }} }}',
            "head_parameters": f'parameters {{ key: "head" value {{ string_value: "{HEAD_FOLDER}" }} }}'}


def _personal_parts(behaviour_features: int, profile_store: str, pseudonym_key: str) -> dict:
    """Config lines for a personal head (behaviour_features > 0): the tokenizer looks the shopper
    up and computes their behaviour features (BEHAVIOUR, produced only for a shopper with
    behaviour), the sorter applies the head. Empty without: USER_ID / USER_CONTEXT are ignored."""
    keys = ("behaviour_tensor", "behaviour_input", "behaviour_out_map", "behaviour_in_map")
    if not behaviour_features:
        return dict.fromkeys((*keys, "personal_tokenizer_parameters", "personal_sorter_parameters"), "")
    return {**dict(zip(keys, _handed_over(config.BEHAVIOUR, behaviour_features, optional=True))),
            "personal_tokenizer_parameters": (
                f'parameters {{ key: "profile_store" value {{ string_value: "{_quoted(profile_store)}" }} }}\n'
                f'parameters {{ key: "pseudonym_key" value {{ string_value: "{_quoted(pseudonym_key)}" }} }}'),
            "personal_sorter_parameters": (
                f'parameters {{ key: "personal" value {{ string_value: "{PERSONAL_FOLDER}" }} }}')}


def _quoted(text: str) -> str:
    """A string for a protobuf text string_value."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(name: str, target: str = "python", max_length: int = config.MAX_SEQ_LEN,
           threads: int = config.ENGINE_THREADS, ranker_instances: int = config.RANKER_INSTANCES,
           tokenizer_instances: int = config.TOKENIZER_INSTANCES, head_features: int = 0,
           catalog: str | Path = DEFAULT_CATALOG, rules_defaults: dict | None = None,
           behaviour_features: int = 0, profile_store: str = config.PROFILE_STORE,
           pseudonym_key: str | Path = DEFAULT_KEY_FILE) -> str:
    """The config.pbtxt text of one model for a target; head_features > 0 wires a scoring head
    reading that many features per pair; catalog: the SQLite catalog CANDIDATE_IDS resolve in;
    rules_defaults: the sorter's default RULES (shoprank.serving.rules); behaviour_features > 0
    wires a personal head (profile_store: where USER_ID is looked up, pseudonym_key: its key)."""
    values = {
        "target": target, "ensemble": config.ENSEMBLE_MODEL, "tokenizer": config.TOKENIZER_MODEL,
        "ranker": config.RANKER_MODEL, "sorter": config.SORTER_MODEL, "query": config.QUERY,
        "candidates": config.CANDIDATES, "top_k": config.TOP_K, "indices": config.INDICES,
        "scores": config.SCORES, "logits": config.RANKER_LOGITS, "engine_output": config.ENGINE_OUTPUT,
        "max_length": max_length, "max_candidates": config.MAX_CANDIDATES,
        "max_batch": max(config.RANKER_MAX_BATCH, config.MAX_CANDIDATES),
        "queue_delay_us": config.RANKER_QUEUE_DELAY_US, "ranker_instances": ranker_instances,
        "tokenizer_queue_policy": _queue_policy(config.TOKENIZER_MAX_QUEUE, config.TOKENIZER_QUEUE_TIMEOUT_US),
        "ranker_queue_policy": _queue_policy(config.RANKER_MAX_QUEUE, config.RANKER_QUEUE_TIMEOUT_US),
        "tokenizer_instances": tokenizer_instances,
        "engine_inputs_1d": _tensors("[ -1 ]"), "engine_inputs_2d": _tensors("[ -1, -1 ]"),
        "tokenizer_outputs": _maps("output_map"), "ranker_inputs": _maps("input_map"),
        **_head_parts(head_features),
        **_personal_parts(behaviour_features, str(profile_store), str(Path(pseudonym_key).resolve())),
        "user_id": config.USER_ID, "user_context": config.USER_CONTEXT,
        "candidate_ids": config.CANDIDATE_IDS, "rules": config.RULES, "final_scores": config.FINAL_SCORES,
        "trace": config.TRACE, "randomized": config.RANDOMIZED, "attributes": config.ATTRIBUTES,
        "n_attributes": len(ATTRIBUTES), "catalog": _quoted(str(Path(catalog).resolve())),
        "rules_defaults": _quoted(json.dumps(rules_defaults or {}, separators=(",", ":"))),
    }
    if name == config.RANKER_MODEL:
        values.update(_ranker_parts(target, threads, min(32, max_length)))
    values.update(explain=config.EXPLAIN_MODEL, explanations=config.EXPLANATIONS,
                  explain_max_candidates=config.EXPLAIN_MAX_CANDIDATES, explain_features="1" if head_features else "",
                  explain_trace_outputs=",".join(EXPLAIN_TRACE_OUTPUTS),
                  explain_trace_rules=_quoted(EXPLAIN_TRACE_RULES))
    template = {config.ENSEMBLE_MODEL: "rank", config.TOKENIZER_MODEL: "tokenizer",
                config.RANKER_MODEL: "ranker", config.SORTER_MODEL: "sorter", config.EXPLAIN_MODEL: "explain"}[name]
    return Template((TEMPLATES / f"{template}.pbtxt").read_text()).substitute(values)


def build_repository(model_dir: str | Path, engine: str | Path, repo: str | Path = config.MODEL_REPOSITORY,
                     target: str = "python", version: int = 1, head: bool | None = None, explain: bool = True,
                     personal: bool | None = None, personal_head: str | Path | None = None,
                     **render_kwargs) -> Path:
    """Write configs, the engine and the tokenizer files into `repo` (model.py files copied when
    `repo` is not the project's own model_repository). head: serve the model's scoring head
    (MODEL/head/, installed by `shoprank head` when it passed its gate); None: when it has one.
    explain: also the on-demand `explain` model (shoprank.explain; the ensemble never calls it).
    personal: serve a personal head (`personal_head`, default MODEL/personal/, installed by
    `make personalize`); None: when there is one."""
    model_dir, engine, repo = Path(model_dir), Path(engine), Path(repo)
    if not engine.exists():
        raise FileNotFoundError(f"engine {engine} not found: build it first (make onnx / make int8 / make engine)")
    if target == "tensorrt" and is_onnx(engine):
        raise DataError(f"{engine} is an ONNX file, not a TensorRT plan: TARGET=tensorrt serves a plan as "
                        "model.plan; build one with `make engine PRECISION=fp16|int8` (it writes the repository)")
    max_length = model_max_length(model_dir)
    head_source = head_dir(model_dir)
    has = has_head(head_source)
    if head and not has:
        raise FileNotFoundError(f"{model_dir} has no scoring head in {head_source}: run `shoprank head` first")
    features = len(ScoringHead.load(head_source).feature_names) if (has if head is None else head) else 0
    personal_source = Path(personal_head) if personal_head else personal_dir(model_dir)
    if personal and not has_head(personal_source):
        raise FileNotFoundError(f"{model_dir} has no personal head in {personal_source}: run `make personalize` first")
    serve_personal = has_head(personal_source) if personal is None else personal
    behaviour = len(ScoringHead.load(personal_source).feature_names) if serve_personal else 0
    served_models = (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL)
    for name in served_models + ((config.EXPLAIN_MODEL,) if explain else ()):
        model_path = repo / name
        (model_path / str(version)).mkdir(parents=True, exist_ok=True)
        source = SOURCE_REPOSITORY / name / "1" / "model.py"
        if source.exists() and source.resolve() != (model_path / str(version) / "model.py").resolve():
            shutil.copy(source, model_path / str(version) / "model.py")
        (model_path / "config.pbtxt").write_text(render(name, target, max_length, head_features=features,
                                                        behaviour_features=behaviour, **render_kwargs))
    for name in (config.TOKENIZER_MODEL, config.SORTER_MODEL):  # index for one, head for the other
        served = head_dir(repo / name / str(version))
        shutil.rmtree(served, ignore_errors=True)
        if features:
            shutil.copytree(head_source, served)
    served_personal = repo / config.SORTER_MODEL / str(version) / PERSONAL_FOLDER
    shutil.rmtree(served_personal, ignore_errors=True)
    if behaviour:
        shutil.copytree(personal_source, served_personal)
    ranker_dir = repo / config.RANKER_MODEL / str(version)
    for stale in ENGINE_FILE.values():  # a target switch must not leave the other engine behind
        (ranker_dir / stale).unlink(missing_ok=True)
    # Copy then rename: an interrupted copy must not leave a half-written engine Triton would load.
    partial = ranker_dir / (ENGINE_FILE[target] + ".partial")
    shutil.copy(engine, partial)
    partial.replace(ranker_dir / ENGINE_FILE[target])
    write_meta(ranker_dir, {"version": version, "source_model": str(model_dir.resolve()), "engine": str(engine),
                             "target": target, "published": time.time(), "by": "build_repository"})
    tokenizer_dir = repo / config.TOKENIZER_MODEL / str(version)
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, tokenizer_dir / name)
    if not (tokenizer_dir / "tokenizer.json").exists():
        from ..tokenizer import load_backend_tokenizer

        load_backend_tokenizer(model_dir).save(str(tokenizer_dir / "tokenizer.json"))
    return repo


def is_onnx(path: str | Path) -> bool:
    """Whether a file is an ONNX model (by name, else by parsing it as one): Triton's TensorRT
    backend would only fail on it at load time, as a plan of an unknown format."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError):
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def write_meta(version_dir: Path, meta: dict) -> None:
    (version_dir / VERSION_META).write_text(json.dumps(meta, indent=2, default=str))
