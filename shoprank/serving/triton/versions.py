"""Ranker versions in a model repository (online learning: shoprank.online).

`publish_version` adds ranker/<N+1>/ (engine, model.py, the fine-tuned weights it came from,
version.json) by an atomic rename of a finished staging folder; `retire_latest_version` moves
the newest version to ranker/rolled_back/. Triton ignores non-numeric folders, and the ranker's
default version policy (latest, 1 version) serves the highest number; the ensemble's ranker
step asks for version -1 (latest). Numbers are never reused, so a logged model version always
names one model. The response cache keys the ranker's answers by its version too, so none
outlives a swap (docs/caching.md).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ... import config
from ...model_card import model_max_length
from .repository import ENGINE_FILE, SOURCE_REPOSITORY, VERSION_META, write_meta

SOURCE_MODEL_DIR = "source_model"  # the fine-tuned HF weights of a published version
ROLLED_BACK_DIR = "rolled_back"    # retired versions (non-numeric: Triton ignores the folder)


def read_meta(repo: str | Path, version: int, model: str = config.RANKER_MODEL) -> dict:
    path = Path(repo) / model / str(version) / VERSION_META
    return json.loads(path.read_text()) if path.exists() else {}


def versions(repo: str | Path, model: str = config.RANKER_MODEL) -> list[int]:
    """Live version numbers of a model (numeric folders Triton sees), ascending."""
    folder = Path(repo) / model
    found = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0")] \
        if folder.is_dir() else []
    return sorted(found)


def rolled_back_versions(repo: str | Path, model: str = config.RANKER_MODEL) -> list[int]:
    folder = Path(repo) / model / ROLLED_BACK_DIR
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def _target_of(version_dir: Path) -> str:
    if (version_dir / ENGINE_FILE["tensorrt"]).exists():
        return "tensorrt"
    return "python" if (version_dir / "model.py").exists() else "onnxruntime"


def publish_version(repo: str | Path, engine: str | Path, model_dir: str | Path, meta: dict | None = None,
                    model: str = config.RANKER_MODEL) -> int:
    """Add the next ranker version (engine + model.py + fine-tuned weights + version.json) to an
    existing repository; returns its number. Triton sees it only once complete (atomic rename);
    it goes live when the server is told to load (shoprank.online.activate)."""
    repo, engine, model_dir = Path(repo), Path(engine), Path(model_dir)
    live = versions(repo, model)
    if not live:
        raise FileNotFoundError(f"{repo / model} has no version to build on: run `make repository` first")
    current = repo / model / str(live[-1])
    target = _target_of(current)
    if target == "tensorrt":
        raise ValueError("the served ranker is a TensorRT plan: online updates publish ONNX engines "
                         "(targets python and onnxruntime); rebuild the plan with `make engine`")
    _check_tokenizer(repo, model_dir)
    number = max(live + rolled_back_versions(repo, model)) + 1
    staging = repo / model / f".staging-{number}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if target == "python":
            shutil.copy(SOURCE_REPOSITORY / model / "1" / "model.py", staging / "model.py")
        shutil.copy(engine, staging / ENGINE_FILE[target])
        shutil.copytree(model_dir, staging / SOURCE_MODEL_DIR)
        write_meta(staging, {**(meta or {}), "version": number, "source_model": str((repo / model / str(number)
                                                                                       / SOURCE_MODEL_DIR).resolve()),
                              "engine": str(engine), "target": target, "published": time.time(),
                              "previous": live[-1]})
        staging.rename(repo / model / str(number))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return number


def _check_tokenizer(repo: Path, model_dir: Path) -> None:
    """A new ranker version is served behind the existing tokenizer: same vocabulary, same length."""
    tok_versions = versions(repo, config.TOKENIZER_MODEL)
    if not tok_versions:
        raise FileNotFoundError(f"{repo / config.TOKENIZER_MODEL} has no version")
    served = repo / config.TOKENIZER_MODEL / str(tok_versions[-1])
    if (served / "tokenizer.json").exists() and (model_dir / "tokenizer.json").exists() and \
            (served / "tokenizer.json").read_bytes() != (model_dir / "tokenizer.json").read_bytes():
        raise ValueError(f"{model_dir} has another tokenizer than the served one ({served}); "
                         "a new tokenizer needs a new repository (`make repository`)")
    if model_max_length(served) != model_max_length(model_dir):
        raise ValueError(f"{model_dir} was trained with max_length {model_max_length(model_dir)}, the served "
                         f"tokenizer truncates at {model_max_length(served)}")


def retire_latest_version(repo: str | Path, model: str = config.RANKER_MODEL) -> tuple[int, int]:
    """Move the newest version to rolled_back/ (Triton then serves the one below once told to
    load); returns (retired, now latest). Refuses to remove the last version."""
    repo = Path(repo)
    live = versions(repo, model)
    if len(live) < 2:
        raise ValueError(f"{repo / model} has {len(live)} version(s): nothing to roll back to")
    retired = repo / model / ROLLED_BACK_DIR
    retired.mkdir(exist_ok=True)
    (repo / model / str(live[-1])).rename(retired / str(live[-1]))
    return live[-1], live[-2]
