"""Integrated Gradients on the PyTorch cross-encoder (captum), at the word-embedding layer.

Baseline: the same pair with every query and product token replaced by the padding token
([CLS]/[SEP], positions, segments and attention kept), so the path runs from "no words" to the
pair. Token attributions sum over the embedding dimension, then over the tokens of each word.
Completeness (sum of attributions = logit(pair) - logit(baseline)) is checked: while the
convergence delta exceeds the tolerance the step count doubles, up to max_steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import config
from .words import PairAttribution, word_spans


@dataclass(frozen=True)
class IGSettings:
    steps: int = 32
    max_steps: int = 256
    abs_tolerance: float = 0.01   # logits
    rel_tolerance: float = 0.02   # of |logit(pair) - logit(baseline)|


def _word_of_tokens(offsets, sequence_ids, spans_by_field) -> list[tuple[int, int] | None]:
    """Per token: (field 0 query / 1 text, word position) or None for special tokens."""
    out = []
    for (start, end), seq in zip(offsets, sequence_ids):
        if seq is None or end <= start:
            out.append(None)
            continue
        spans = spans_by_field[seq]
        word = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
        out.append(None if word is None else (seq, word))
    return out


class IntegratedGradients:
    """Explains pairs with one loaded model (loading costs more than a pair)."""

    def __init__(self, model_dir, max_length: int | None = None, settings: IGSettings = IGSettings()):
        import torch
        from captum.attr import LayerIntegratedGradients

        from ..model_card import model_max_length
        from ..serving.tokenizer import PairEncoder
        from ..training.model import load_cross_encoder

        self.torch = torch
        self.model = load_cross_encoder(model_dir).eval()
        self.encoder = PairEncoder.from_dir(model_dir, max_length=max_length or model_max_length(model_dir),
                                            buckets=None)
        self.settings = settings
        self.pad_id = self.encoder.pad_id

        def forward(input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits[:, 0]

        self.forward = forward
        self.lig = LayerIntegratedGradients(forward, self.model.get_input_embeddings())

    def explain(self, query: str, text: str) -> PairAttribution:
        torch, s = self.torch, self.settings
        query, text = query[: config.MAX_TEXT_CHARS], text[: config.MAX_TEXT_CHARS]
        enc = self.encoder.tokenizer.encode(query, text)
        ids = torch.tensor([enc.ids], dtype=torch.long)
        mask = torch.ones_like(ids)
        types = torch.tensor([enc.type_ids], dtype=torch.long)
        special = torch.tensor([[seq is None for seq in enc.sequence_ids]])
        baseline = torch.where(special, ids, torch.full_like(ids, self.pad_id))
        with torch.inference_mode():
            logit, base_logit = (float(self.forward(x, mask, types)[0]) for x in (ids, baseline))
        steps = s.steps
        while True:
            attributions, delta = self.lig.attribute(ids, baselines=baseline, additional_forward_args=(mask, types),
                                                     n_steps=steps, internal_batch_size=steps,
                                                     return_convergence_delta=True)
            delta = float(delta[0])
            tolerance = s.abs_tolerance + s.rel_tolerance * abs(logit - base_logit)
            if abs(delta) <= tolerance or steps >= s.max_steps:
                break
            steps = min(2 * steps, s.max_steps)
        per_token = attributions.sum(dim=-1)[0].detach().numpy().astype(np.float64)
        spans = (word_spans(query), word_spans(text))
        scores = (np.zeros(len(spans[0])), np.zeros(len(spans[1])))
        for token, where in enumerate(_word_of_tokens(enc.offsets, enc.sequence_ids, spans)):
            if where is not None:
                scores[where[0]][where[1]] += per_token[token]
        return PairAttribution(query, text, scores[0], scores[1], logit, "integrated_gradients",
                               {"delta": delta, "steps": steps, "converged": abs(delta) <= tolerance,
                                "baseline_logit": base_logit, "tolerance": tolerance})
