"""Compression by layer dropping + distillation, and INT8 with chosen layers kept in FP32."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from shoprank.convert.int8 import quantize_int8
from shoprank.data.split import model_pairs
from shoprank.errors import BuildError
from shoprank.model_card import read_model_card
from shoprank.serving.tokenizer import PairEncoder
from shoprank.training.batches import shuffled_batches
from shoprank.training.finetune import TrainConfig, finetune
from shoprank.training.model import (
    attention_heads,
    build_tiny_model,
    keep_heads,
    keep_intermediate,
    keep_layers,
    load_cross_encoder,
    predict_probs,
    use_activation,
)
from tests.conftest import TEST_MAX_LENGTH


def test_keep_layers_keeps_first_and_last_evenly(build_dir):
    from transformers import BertConfig, BertForSequenceClassification

    six = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=6,
                                                   num_attention_heads=2, intermediate_size=32, num_labels=1))
    layers = list(six.bert.encoder.layer)
    assert keep_layers(six, 3) == [0, 2, 5]  # evenly spaced, first and last kept
    assert [id(layer) for layer in six.bert.encoder.layer] == [id(layers[i]) for i in (0, 2, 5)]
    assert six.config.num_hidden_layers == 3

    model = load_cross_encoder(build_tiny_model(build_dir / "tiny-for-cut"))  # 2 layers
    first, last = model.bert.encoder.layer[0], model.bert.encoder.layer[1]
    assert keep_layers(model, 1) == [0]
    assert len(model.bert.encoder.layer) == 1 and model.bert.encoder.layer[0] is first
    assert all(layer is not last for layer in model.bert.encoder.layer)  # the dropped layer is gone
    assert model.config.num_hidden_layers == 1
    with pytest.raises(ValueError, match="1..1"):
        keep_layers(model, 2)


def test_keep_intermediate_keeps_the_units_that_matter_and_the_layer_still_computes():
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=1)).eval()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():   # 24 of the 32 units read nothing: their loss changes nothing
        layer.intermediate.dense.weight[8:] = 0.0
        layer.intermediate.dense.bias[8:] = -20.0    # GELU(-20) = 0: they write nothing either
    ids = torch.randint(0, 100, (3, 7))
    before = model(input_ids=ids).logits
    up = layer.intermediate.dense.weight[:8].clone()
    keep_intermediate(model, 8)
    assert model.config.intermediate_size == 8
    assert all(lay.intermediate.dense.out_features == 8 and lay.output.dense.in_features == 8
               for lay in model.bert.encoder.layer)
    assert torch.equal(model.bert.encoder.layer[0].intermediate.dense.weight, up)   # the units that read
    after = model(input_ids=ids).logits   # layer 1 lost units too, so only layer 0's part is exact
    assert after.shape == before.shape and torch.isfinite(after).all()
    keep_intermediate(model, 100)     # a block already that small stays as it is
    assert model.bert.encoder.layer[0].intermediate.dense.out_features == 8
    with pytest.raises(ValueError, match="at least 1"):
        keep_intermediate(model, 0)


def test_keep_heads_drops_the_heads_that_write_nothing_and_cut_or_relu_models_save_and_load(tmp_path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=32, num_labels=1,
                                                     attn_implementation="eager")).eval()
    size = 4  # 16 / 4 heads
    with torch.no_grad():  # heads 0 and 2 of every layer read no values: they write nothing
        for layer in model.bert.encoder.layer:
            for head in (0, 2):
                layer.attention.self.value.weight[head * size:(head + 1) * size] = 0.0
                layer.attention.self.value.bias[head * size:(head + 1) * size] = 0.0
    ids = torch.randint(0, 100, (3, 7))
    before = model(input_ids=ids).logits
    kept_query = model.bert.encoder.layer[0].attention.self.query.weight[[*range(4, 8), *range(12, 16)]].clone()
    keep_heads(model, 2)
    assert attention_heads(model) == 2
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, kept_query)  # heads 1 and 3
    assert all(lay.attention.output.dense.in_features == 8 for lay in model.bert.encoder.layer)
    torch.testing.assert_close(model(input_ids=ids).logits, before)  # what the cut heads wrote was nothing
    keep_heads(model, 3)   # already that few: stays as it is
    assert attention_heads(model) == 2
    with pytest.raises(ValueError, match="at least 1"):
        keep_heads(model, 0)

    model.save_pretrained(str(tmp_path))  # Transformers alone cannot load it back; load_cross_encoder can
    loaded = load_cross_encoder(tmp_path).eval()
    assert attention_heads(loaded) == 2
    torch.testing.assert_close(loaded(input_ids=ids).logits, before)

    use_activation(model, "relu")  # ReLU instead of GELU: other logits, and it is saved with the model
    relu = model(input_ids=ids).logits
    assert not torch.allclose(relu, before)
    model.save_pretrained(str(tmp_path / "relu"))
    torch.testing.assert_close(load_cross_encoder(tmp_path / "relu").eval()(input_ids=ids).logits, relu)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        use_activation(model, "swish")


def test_distilled_student_has_fewer_layers_learns_the_teacher_and_records_it(tiny_model, build_dir):
    out = build_dir / "student"
    summary = finetune(TrainConfig(base_model=str(tiny_model), out_dir=str(out), max_steps=40, batch_size=32,
                                   lr=1e-3, max_length=TEST_MAX_LENGTH, evals_per_epoch=1, threads=2,
                                   keep_layers=1, teacher=str(tiny_model), distill_weight=1.0))
    card = read_model_card(out)
    assert card["layers_kept"] == [0] and card["teacher"] == str(tiny_model) and card["distill_weight"] == 1.0
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    assert summary["config"]["keep_layers"] == 1
    # Pure distillation: the student's scores follow the teacher's (not the labels alone).
    valid = model_pairs(tiny_model, "valid", limit_queries=40)
    encoder = PairEncoder.from_dir(tiny_model, max_length=TEST_MAX_LENGTH, buckets=None)
    teacher = predict_probs(load_cross_encoder(tiny_model), encoder, valid)
    student = predict_probs(load_cross_encoder(out), encoder, valid)
    assert np.corrcoef(teacher, student)[0, 1] > 0.5


def test_a_student_with_fewer_heads_trains_saves_and_exports(tiny_model, tmp_path):
    from shoprank.convert.onnx_export import export_onnx

    out = tmp_path / "student"
    summary = finetune(TrainConfig(base_model=str(tiny_model), out_dir=str(out), max_steps=3, batch_size=32,
                                   lr=1e-3, max_length=TEST_MAX_LENGTH, evals_per_epoch=1, threads=2,
                                   attention_heads=1, activation="relu", teacher=str(tiny_model),
                                   distill_weight=1.0))
    assert summary["config"]["attention_heads"] == 1 and summary["config"]["activation"] == "relu"
    assert attention_heads(load_cross_encoder(out)) == 1  # of the tiny model's 2
    # The ONNX export keeps the cut attention: export_onnx refuses logits that differ from PyTorch's.
    assert export_onnx(out, tmp_path / "student.onnx")["max_abs_logit_diff"] <= 1e-4


def test_int8_float_layers_leave_those_matmuls_in_fp32(tiny_model, onnx_fp32, tmp_path):
    out = tmp_path / "model.int8.onnx"
    report = quantize_int8(tiny_model, onnx_fp32, out, max_ndcg_drop=0.05, float_layers=(0,))
    assert report["float_layers"] == [0]
    nodes = onnx.load(str(out)).graph.node
    # Weight MatMuls (query/key/value/dense); the attention-score MatMuls have no weights and
    # stay float in every layer with dynamic quantization anyway.
    weights = ("query", "key", "value", "dense")
    weight_mm = [n.name for n in nodes if n.op_type == "MatMul" and any(w in n.name for w in weights)]
    int8_mm = [n.name for n in nodes if n.op_type in ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")]
    assert weight_mm and all("layer.0/" in n for n in weight_mm if "layer." in n)
    assert any("layer.1/" in n for n in int8_mm) and not any("layer.0/" in n for n in int8_mm)
    with pytest.raises(BuildError, match="no MatMul of encoder layers"):
        quantize_int8(tiny_model, onnx_fp32, tmp_path / "x.onnx", max_ndcg_drop=0.05, float_layers=(7,))


def test_length_grouped_batches_cover_every_row_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 64, size=1000)
    plain = list(shuffled_batches(1000, 32, np.random.default_rng(1)))
    grouped = list(shuffled_batches(1000, 32, np.random.default_rng(1), lengths, group=10))
    for batches in (plain, grouped):
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded(grouped) < 0.75 * padded(plain)
    # Still shuffled: consecutive batches are not in length order.
    maxima = [lengths[b].max() for b in grouped]
    assert maxima != sorted(maxima)


def test_a_refused_student_with_cut_heads_is_distilled_again_with_every_head(tiny_model, onnx_fp32, tmp_path,
                                                                              monkeypatch):
    """The control flow of build_student (distillation and gates themselves are tested above):
    stand-ins record which head counts were distilled and refuse the cut one."""
    import shoprank.convert.student as student

    distilled = []

    def distill(teacher, layers, out_dir, epochs, lr, weight, intermediate, heads, activation):
        distilled.append(heads)
        return {"train_seconds": 0, "best": {"ndcg@10": 0.5}}

    def gate(teacher, teacher_onnx, out_dir, onnx_dir, valid, max_drop, log):
        passed = distilled[-1] == 0
        return [{"activations": "calibrated", "float_layers": [], "passed": passed,
                 "reason": None if passed else "loses too much"}]

    monkeypatch.setattr(student, "distill_student", distill)
    monkeypatch.setattr(student, "_quantize_and_gate", gate)
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    lines = []
    report = student.build_student(tiny_model, onnx_fp32, layers=1, out_dir=tmp_path / "s", onnx_dir=onnx_dir,
                                   heads=1, activation="relu", log=lines.append)
    assert distilled == [1, 0] and report["passed"] and (report["heads"], report["activation"]) == (0, "")
    assert [(r["heads"], r["activation"]) for r in report["refused_before"]] == [(1, "relu")]
    assert ("student with 1 attention heads a layer and relu refused: distilling it again with every attention "
            "head and the teacher's activation") in lines
    assert json.loads((onnx_dir / "distill_gate.json").read_text())["heads"] == 0

    distilled.clear()  # no cut asked: one distillation, and its refusal is final
    with pytest.raises(student.GateRefused):
        monkeypatch.setattr(student, "_quantize_and_gate", lambda *a: [{"passed": False, "reason": "no"}])
        student.build_student(tiny_model, onnx_fp32, layers=1, out_dir=tmp_path / "s", onnx_dir=onnx_dir, heads=0,
                              activation="", log=lines.append)
    assert distilled == [0]
