"""The model card: `shoprank.json` beside each fine-tuned model folder.

It records what every later step must match: the pair length the model was trained with (serving
truncates the same way), the data, mapping and seed of its query split (validation, calibration
and replay read the same rows), the base model, and for a distilled student its teacher.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import config

MODEL_CARD = "shoprank.json"


def read_model_card(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MODEL_CARD
    return json.loads(path.read_text()) if path.exists() else {}


def write_model_card(model_dir: str | Path, **facts) -> None:
    """Add `facts` to the card (existing keys are overwritten, others kept)."""
    card = read_model_card(model_dir)
    card.update(facts)
    (Path(model_dir) / MODEL_CARD).write_text(json.dumps(card, indent=2, sort_keys=True))


def model_max_length(model_dir: str | Path) -> int:
    """The pair length the model was trained with; serving must truncate the same way."""
    return int(read_model_card(model_dir).get("max_length", config.MAX_SEQ_LEN))
