"""`make isolation`'s pieces (shoprank.measure.isolation): merging requests as the ranker does,
the mixing measures on a real engine, the choice and the report."""
import numpy as np

from shoprank.measure.isolation import choose, cross_request, markdown, merged, within_request
from shoprank.serving.engine import OrtEngine
from shoprank.serving.tokenizer import PairEncoder


def test_merged_stacks_requests_right_padding_the_shorter():
    a = {name: np.ones((2, 3), np.int32) for name in ("input_ids", "attention_mask", "token_type_ids")}
    b = {name: np.full((1, 5), 2, np.int32) for name in a}
    m = merged(a, b)
    assert m["input_ids"].shape == (3, 5)
    assert m["attention_mask"][:2, 3:].sum() == 0 and (m["attention_mask"][2] == 2).all()


def test_fp32_engine_shows_no_mixing(tiny_model, onnx_fp32, valid_pairs):
    from shoprank.data.requests import RequestPool

    encoder = PairEncoder.from_dir(tiny_model, max_length=48, buckets=())
    requests = RequestPool(valid_pairs).distinct(12, 3)
    engine = OrtEngine(onnx_fp32)
    cross = cross_request(engine, [encoder.encode(r.query, list(r.texts)) for r in requests])
    within = within_request(engine, encoder, requests)
    assert cross["reordered"] == within["reordered"] == 0
    assert cross["max_abs_diff"] <= 1e-6 and within["max_abs_diff"] <= 1e-6


def _option(isolated, passed, ms):
    zero = {"max_abs_diff": 0.0, "reordered": 0, "requests": 4}
    return {"title": "t", "isolated": isolated, "rank50_p50_ms": ms, "two_requests_p50_ms": 2 * ms,
            "quality": {"passed": passed, "ndcg_candidate": 0.8, "ndcg_difference": None, "spearman": 0.99,
                        "mean_abs_diff": 0.001},
            "cross_request": zero, "within_request": zero}


def test_choice_is_the_fastest_isolated_option_that_passes_the_gate():
    options = {"fast-mixing": _option(False, True, 50), "isolated-refused": _option(True, False, 60),
               "isolated": _option(True, True, 90), "slow": _option(True, True, 180)}
    assert choose(options) == "isolated"
    assert choose({"fast-mixing": options["fast-mixing"]}) is None
    report = {"model": "m", "requests": 4, "candidates": 50, "chunk_tokens": 256, "isolation_tol": 1e-5,
              "int8_max_ndcg_drop": 0.01, "options": options, "choice": "isolated"}
    text = markdown(report)
    assert "| isolated | yes |" in text and "**isolated**" in text
