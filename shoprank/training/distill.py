"""Distillation: a student cut to fewer layers of the fine-tuned teacher, to narrower
feed-forward blocks and to fewer attention heads, trained on the teacher's data with
(1 - w) x the pointwise loss on the labels + w x MSE to the teacher's logits.

Layers are cut evenly (first and last kept, model.keep_layers): on CPU time is linear in layers,
and a student cut from the fine-tuned model starts close to it. Its engines and quality gate
are shoprank.convert.student.
"""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..model_card import model_max_length, read_model_card
from .finetune import TrainConfig, finetune

LAYERS = 3
# Each layer's feed-forward block cut to at most this many units (of MiniLM's 1,536) before
# distilling: its GEMMs and GELU are half of a layer's time on CPU, and the demo model's student
# lost nothing in the gate for it (docs/benchmark.md, "Compression"). 0: keep them whole.
INTERMEDIATE = 1024
# Each layer's attention cut to this many of MiniLM's 12 heads (model.keep_heads), and ReLU in
# the feed-forward blocks instead of GELU (model.use_activation): with both the demo model's
# student runs in about 0.77x the time and stays inside the gate (docs/benchmark.md,
# "Compression"). A student refused with them is distilled again without (shoprank.convert.student).
# 0 / "": keep every head / the teacher's activation.
HEADS = 8
ACTIVATION = "relu"
# Two passes over the data: the demo model's 8-head ReLU student scored higher in INT8 after two
# (0.8618) than after three (0.8598), in 0.6x the time (docs/benchmark.md, "Compression").
EPOCHS = 2.0
LR = 1e-4
DISTILL_WEIGHT = 0.8


def student_dir(teacher: str | Path, layers: int = LAYERS) -> Path:
    return Path(f"{teacher}-l{layers}")


def distill_student(teacher: str | Path, layers: int = LAYERS, out_dir: str | Path | None = None,
                    epochs: float = EPOCHS, lr: float = LR, distill_weight: float = DISTILL_WEIGHT,
                    intermediate: int = INTERMEDIATE, heads: int = HEADS, activation: str = ACTIVATION) -> dict:
    """Train the student (see module doc) into out_dir (default <teacher>-l<layers>); finetune's summary.
    intermediate > 0: its feed-forward blocks cut to at most that many units too (model.keep_intermediate);
    heads > 0: its attention to at most that many heads (model.keep_heads); activation: its feed-forward
    activation instead of the teacher's ("": the teacher's; model.use_activation)."""
    card = read_model_card(teacher)
    if not card:
        raise FileNotFoundError(f"{teacher} has no model card (shoprank.json): fine-tune it first (make finetune)")
    return finetune(TrainConfig(data=card.get("data"), mapping=card.get("mapping", "auto"), base_model=str(teacher),
                                out_dir=str(out_dir or student_dir(teacher, layers)), epochs=epochs, lr=lr,
                                max_length=model_max_length(teacher), seed=card.get("seed", config.SEED),
                                keep_layers=layers, intermediate=intermediate, attention_heads=heads,
                                activation=activation, teacher=str(teacher), distill_weight=distill_weight))
