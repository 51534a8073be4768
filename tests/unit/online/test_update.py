"""Online updates without a server: the training set of an update, the simulated world, and
going live when no server answers."""
from __future__ import annotations

import random

import pandas as pd
import pytest

from shoprank.data import synthetic
from shoprank.data.load import load_pairs, resolve_data
from shoprank.data.split import is_valid_query, split_by_query
from shoprank.online.activate import activate
from shoprank.online.simulator import SimConfig
from shoprank.online.update import training_set
from shoprank.online.world import build_world
from shoprank.serving.server import free_ports


def test_training_set_drops_validation_queries_and_replays(tiny_model):
    valid_q = next(q for q in (f"query {i}" for i in range(1000)) if is_valid_query(q))
    train_q = next(q for q in (f"query {i}" for i in range(1000)) if not is_valid_query(q))
    pairs = pd.DataFrame({"query": [valid_q, train_q, train_q], "text": ["a", "b", "c"], "label": [1.0, 0.5, 0.0],
                          "weight": [4.0, 2.0, 6.0], "impressions": [4, 2, 6], "clicks": [4, 1, 0]})
    out = training_set(pairs, tiny_model, replay_ratio=2.0)
    logs = out[out["source"] == "log"]
    assert logs["query"].tolist() == [train_q, train_q]
    assert logs["weight"].tolist() == pytest.approx([0.5, 1.5])  # scaled to mean 1
    replay = out[out["source"] == "replay"]
    assert len(replay) == 4 and (replay["weight"] == 1.0).all()
    _, valid = split_by_query(load_pairs(resolve_data("default")))
    assert not set(replay["query"]) & set(valid["query"])


def test_simulated_world_keeps_evaluation_queries_out_of_traffic():
    cfg = SimConfig(traffic_queries=30, eval_queries=10, candidates=12)
    traffic, evaluation = build_world(cfg)
    assert (len(traffic), len(evaluation)) == (30, 10)
    assert not any(is_valid_query(q.query) for q in traffic) and all(is_valid_query(q.query) for q in evaluation)
    assert all(len(q.texts) == 12 and ((q.relevance >= 0) & (q.relevance <= 1)).all() for q in traffic)
    assert all(q.relevance.max() >= 0.99 for q in traffic + evaluation)  # every query has a true match
    again, _ = build_world(cfg)
    assert [q.texts for q in again] == [q.texts for q in traffic]  # deterministic in the seed
    # The products are the default data's catalogue.
    catalogue = {p.text for p in synthetic.build_catalogue(random.Random(0))}
    assert {t for q in traffic for t in q.texts} <= catalogue


def test_activate_without_a_server_says_so():
    report = activate(f"127.0.0.1:{free_ports(1)[0]}", 7)
    assert report["live"] is False and "serves from its next start" in report["note"]
