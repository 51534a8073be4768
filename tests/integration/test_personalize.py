"""`shoprank personalize` end to end on the tiny model: simulated days -> real feedback log ->
position-bias-corrected late-fusion head -> report with every policy and the cold-start rule."""
from __future__ import annotations

import json

from shoprank.online.personalize import PREFERENCE_FEATURES, PersonalizeConfig, run, write_report
from shoprank.online.shop import ShopConfig
from shoprank.serving.head import ScoringHead


def test_personalize_report_from_simulated_logs(tiny_model, onnx_int8, tmp_path):
    cfg = PersonalizeConfig(model_dir=str(tiny_model), engine=str(onnx_int8), seeds=(3,), days=4, test_from_day=3,
                            per_category=2, candidates=10, designs=("fusion", "exposure", "catalog"),
                            work_dir=str(tmp_path / "work"),
                            shop=ShopConfig(shoppers=40, new_per_day=5, sessions_per_day=80, explore_share=0.3))
    report = run(cfg, log=lambda *_: None)
    seed = report["per_seed"][0]
    for group in ("returning", "cold_start"):
        assert set(seed[group]) == {"non-personalized", "fusion", "exposure", "catalog", "population", "posterior",
                                    "oracle"}
        for stats in seed[group].values():
            assert 0 < stats["ndcg"] <= 1 and stats["requests"] > 0 and stats["clicks_per_1000"] > 0
    assert seed["training_rows"] > 100 and seed["fits"]["fusion"]["clicks"] > 0
    head = ScoringHead.load(tmp_path / "work" / "seed3" / "fusion-head")
    assert head.meta["design"] == "fusion" and len(head.feature_names) == 6
    for fit in (seed["fits"]["fusion"], seed["fits"]["oracle"]):   # the oracle: the same head, the true preferences
        assert fit["l2"] in cfg.l2_grid and min(fit["theta_per_unit"].values()) >= 0
    assert set(seed["fits"]["oracle"]["theta_per_unit"]) == set(PREFERENCE_FEATURES)
    # the extra designs add features to the same head; the cold start stays today's order
    assert len(seed["fits"]["exposure"]["theta_per_unit"]) == 7 and len(seed["fits"]["catalog"]["theta_per_unit"]) == 9
    # every returning request falls in one history bucket
    buckets = seed["returning_by_history"]
    assert sum(b["non-personalized"]["requests"] for b in buckets.values()) == seed["returning"]["non-personalized"][
        "requests"]
    assert {f"oracle:{f}" for f in PREFERENCE_FEATURES} <= set(seed["decomposition"])
    md = write_report(report, tmp_path / "report")
    text = md.read_text()
    assert "| late fusion" in text and "recovers" in text and "cold start" in text and "the gap" in text
    assert "Recovery by history length" in text and "diagnostic, not servable" in text and "What the gap" in text
    assert (tmp_path / "report" / "personalization.png").stat().st_size > 5000
    assert json.loads((tmp_path / "report" / "personalization.json").read_text())["summary"]["returning"]
