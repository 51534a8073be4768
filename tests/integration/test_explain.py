"""The served `explain` model over gRPC and HTTP: occlusion through the served tokenizer ->
ranker -> sorter equals occlusion computed in process on the same engine, in the order and with
the scores the `rank` ensemble returns; bad input gets a clear error and the server keeps serving;
with a scoring head, what is attributed is the head's score. And the `shoprank explain` command."""
from __future__ import annotations

import numpy as np
import pytest

from shoprank import config
from shoprank.errors import RankError
from shoprank.explain.client import ExplainClient
from shoprank.explain.occlusion import occlusion
from shoprank.serving.client import RankClient
from shoprank.serving.engine import OrtEngine
from shoprank.serving.tokenizer import PairEncoder

from .test_head_serving import head_server  # noqa: F401  (the module's own server with a scoring head)

QUERY = "cordless drill 20v"
TEXTS = ["DEWALT 20V MAX cordless drill kit", "white interior paint 1 gal.", "drill bit set",
         "Milwaukee M18 hammer drill", "3/4 in. copper elbow", "RYOBI 18V cordless drill"]


def _url(endpoints, protocol):
    return endpoints.grpc if protocol == "grpc" else endpoints.http


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_occlusion_equals_occlusion_on_the_same_engine(server, tiny_model, onnx_int8, protocol):
    url = _url(server, protocol)
    with ExplainClient(url, protocol) as client, RankClient(url, protocol) as rank:
        explained = client.explain(QUERY, TEXTS)
        ranked = rank.rank(QUERY, TEXTS)
    assert [e.index for e in explained] == list(range(len(TEXTS)))
    assert sorted((e.position, e.index) for e in explained) == [(p, h.index) for p, h in enumerate(ranked, 1)]
    for e in explained:
        hit = next(h for h in ranked if h.index == e.index)
        assert e.score == pytest.approx(hit.score, abs=1e-6)
        assert e.trace["final_position"] == e.position
    encoder, engine = PairEncoder.from_dir(tiny_model, max_length=48, buckets=()), OrtEngine(onnx_int8)
    local = occlusion(QUERY, TEXTS, lambda q, ts: engine.logits(encoder.encode(q, list(ts))))
    for e, mine in zip(explained, local):
        assert e.attribution.text_words == mine.text_words and e.attribution.query_words == mine.query_words
        assert e.attribution.logit == pytest.approx(mine.logit, abs=2e-5)
        # Through FP32 probabilities near 0.5 and back: ~1e-6 logits, far below the attributions compared
        # (the tiny model's are small: ~1e-4..1e-3).
        np.testing.assert_allclose(e.attribution.scores(), mine.scores(), atol=2e-5)
    assert np.abs(np.concatenate([m.scores() for m in local])).max() > 2e-4  # something to compare


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server, protocol):
    with ExplainClient(_url(server, protocol), protocol) as client:
        with pytest.raises(RankError, match=r"too many CANDIDATES: 11 > 10"):
            client.explain(QUERY, ["drill"] * 11)
        with pytest.raises(RankError, match="QUERY is empty"):
            client.explain("   ", ["drill"])
        with pytest.raises(RankError, match="CANDIDATES is empty"):
            client.explain(QUERY, [])
        assert len(client.explain("drill", ["drill"])) == 1


def test_the_rank_ensemble_does_not_call_explain(repository):
    ensemble = (repository / config.ENSEMBLE_MODEL / "config.pbtxt").read_text()
    assert config.EXPLAIN_MODEL not in ensemble and config.EXPLANATIONS not in ensemble
    assert (repository / config.EXPLAIN_MODEL / "config.pbtxt").exists()


def test_with_a_scoring_head_the_heads_score_is_attributed(head_server):  # noqa: F811
    model, endpoints = head_server
    with ExplainClient(endpoints.grpc, "grpc") as client, RankClient(endpoints.grpc, "grpc") as rank:
        explained = client.explain(QUERY, TEXTS)
        ranked = {h.index: h.score for h in rank.rank(QUERY, TEXTS)}
    for e in explained:
        assert e.score == pytest.approx(ranked[e.index], abs=1e-6)
        assert e.attribution.logit == pytest.approx(np.log(e.score / (1 - e.score)), abs=1e-4)


def test_the_explain_command_prints_shaded_words_and_writes_the_page(server, tmp_path, capsys):
    from shoprank.cli import main

    page = tmp_path / "explain.html"
    assert main(["explain", "--url", server.grpc, "--query", QUERY, *TEXTS[:3], "--html", str(page),
                 "--colour", "always"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[48;2;" in out and "DEWALT" in out
    assert "DEWALT" in page.read_text() and "cordless" in page.read_text()
    assert main(["explain", "--url", server.http, "--protocol", "http", "--query", QUERY, TEXTS[0],
                 "--colour", "never"]) == 0
    assert "DEWALT(" in capsys.readouterr().out


def _exit_code(argv) -> int:
    from shoprank.cli import main

    try:
        return main(["explain", *argv])
    except SystemExit as exc:  # argparse's own way out
        return int(exc.code)


@pytest.mark.parametrize("argv,message", [
    (["--query", "drill"], "give 1..10 product texts"),
    (["drill"], "give --query"),
    (["--query", "drill", *["p"] * 11], "11 products"),
    (["--query", "drill", "p", "--url", "127.0.0.1:1"], "error from server"),
])
def test_explain_command_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
