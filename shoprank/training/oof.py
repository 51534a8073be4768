"""Out-of-fold cross-encoder logits: each training pair scored by a model that never saw it.

`finetune --folds K --holdout-fold k` trains a cross-encoder without fold k of the training
queries (data.split.fold_of); fold_dir(model, k, K) is where `make recipe` puts it. Together the
K fold models score every training pair once, from the side that did not train on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.split import fold_of
from ..errors import DataError
from ..model_card import read_model_card
from ..serving.tokenizer import PairEncoder
from .model import load_cross_encoder, predict_logits


def fold_dir(model_dir: str | Path, fold: int, folds: int) -> Path:
    model_dir = Path(model_dir)
    return model_dir.with_name(f"{model_dir.name}.fold{fold}of{folds}")


def model_logits(model_dir: str | Path, df, batch_size: int = 256) -> np.ndarray:
    """PyTorch FP32 logits of one fine-tuned model for every row of df."""
    from transformers import AutoTokenizer

    from ..model_card import model_max_length

    model = load_cross_encoder(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    encoder = PairEncoder(tokenizer.backend_tokenizer, max_length=model_max_length(model_dir), buckets=None)
    return predict_logits(model, encoder, df, batch_size)


def out_of_fold_logits(model_dir: str | Path, train_df, folds: int) -> np.ndarray:
    """Logits of every training row from the fold model that held its query out."""
    card = read_model_card(model_dir)
    seed = card.get("seed")
    which = train_df["query"].map(lambda q: fold_of(q, folds, seed)).to_numpy()
    out = np.full(len(train_df), np.nan, np.float32)
    for k in range(folds):
        path = fold_dir(model_dir, k, folds)
        fold_card = read_model_card(path) if path.exists() else {}
        if fold_card.get("folds") != folds or fold_card.get("holdout_fold") != k:
            raise DataError(f"{path}: no cross-encoder trained without fold {k} of {folds} "
                            f"(train it with `finetune --folds {folds} --holdout-fold {k}`; make recipe does)")
        if (fold_card.get("data"), fold_card.get("seed")) != (card.get("data"), seed):
            raise DataError(f"{path}: trained on other data or another split seed than {model_dir}")
        rows = np.flatnonzero(which == k)
        out[rows] = model_logits(path, train_df.iloc[rows].reset_index(drop=True))
    return out
