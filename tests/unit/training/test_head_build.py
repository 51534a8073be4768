"""`shoprank head` end to end on the tiny model: fold models score what they never saw, the head is
fit, judged, gated and installed; a student can learn the head's logits."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from shoprank.data.split import fold_of, model_pairs
from shoprank.model_card import read_model_card
from shoprank.serving.head import has_head, head_dir
from shoprank.training.finetune import TrainConfig, _head_teacher_logits, finetune
from shoprank.training.head import HeadFit
from shoprank.training.head_build import LOGITS_CACHE, build_head
from shoprank.training.model import build_tiny_model
from shoprank.training.oof import fold_dir
from tests.conftest import TEST_MAX_LENGTH

STEPS = {"max_steps": 15, "batch_size": 32, "lr": 1e-3, "max_length": TEST_MAX_LENGTH, "evals_per_epoch": 1,
         "threads": 2}


@pytest.fixture(scope="module")
def stacked(tiny_model, tmp_path_factory):
    """A copy of the tiny model with its two fold models."""
    work = tmp_path_factory.mktemp("stacked")
    model = work / "model"
    shutil.copytree(tiny_model, model)
    base = build_tiny_model(work / "tiny-base")
    for k in range(2):
        finetune(TrainConfig(base_model=str(base), out_dir=str(fold_dir(model, k, 2)), folds=2, holdout_fold=k,
                             **STEPS))
    return model, base


def test_fold_models_hold_out_their_fold_and_record_it(stacked):
    model, _ = stacked
    train = model_pairs(model, "train")
    for k in range(2):
        card = read_model_card(fold_dir(model, k, 2))
        assert (card["folds"], card["holdout_fold"]) == (2, k)
        assert card["data"] == read_model_card(model)["data"]  # the same data and split seed
        held = sum(fold_of(q, 2, card["seed"]) == k for q in train["query"].unique())
        assert 0 < held < train["query"].nunique()


def test_build_head_judges_gates_and_installs_and_caches_the_logits(stacked, tmp_path):
    model, _ = stacked
    report = build_head(model, 2, HeadFit(epochs=30), max_ndcg_drop=1.0, report=tmp_path / "head.json")
    assert report["gate"]["passed"] and has_head(head_dir(model)) and (model / LOGITS_CACHE).exists()
    assert (head_dir(model) / "lexical_index.json").exists()
    assert set(report["valid"]) == {"cross-encoder", "head", "random"} and len(report["ablation"]) == 6
    assert read_model_card(model)["head"]["features"] == len(report["features"])
    # A gate the head cannot pass: nothing installed, and the card says so.
    refused = build_head(model, 2, HeadFit(epochs=30), max_ndcg_drop=-1.0)
    assert not refused["gate"]["passed"] and not head_dir(model).exists() and read_model_card(model)["head"] is None
    build_head(model, 2, HeadFit(epochs=30), max_ndcg_drop=1.0)  # installed again for the next test


def test_a_student_learns_the_heads_logits_over_out_of_fold_logits(stacked, tmp_path):
    model, base = stacked
    train = model_pairs(model, "train")
    teacher = _head_teacher_logits(str(model), train)
    assert teacher.shape == (len(train),) and np.isfinite(teacher).all()
    student = tmp_path / "student"
    finetune(TrainConfig(base_model=str(base), out_dir=str(student), teacher=str(model), teacher_head=True,
                         distill_weight=0.5, **STEPS))
    card = read_model_card(student)
    assert card["teacher_head"] is True and card["teacher"] == str(model)
