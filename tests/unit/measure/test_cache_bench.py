"""The head-heavy section of the bench report (shoprank.measure.bench.cache): the workload's
facts, one row per server and protocol with failures, and both targets judged as measured."""
from shoprank.measure.bench.cache import markdown


def _row(label, req_s, p50, seq, failed=0):
    return {"label": label, "failed": failed, "c8": {"req_s": req_s, "latency_p50_ms": p50},
            "sequential": {"p50_ms": seq}}


def test_section_states_workload_rows_and_targets():
    section = {
        "workload": {"zipf_exponent": 1.0, "queries": 9423, "data": "homedepot.csv", "top1pct_share": 0.527,
                     "top1pct_share_sampled": 0.53, "distinct_requests": 900, "requests": 2800, "engine": "l3-int8",
                     "warm_requests": 2000, "measured_requests": 800, "clients": 8,
                     "warm_up": {"hit_rate": 0.6}, "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]},
        "hit_rate_measured": 0.8,
        "systems": {"triton-l3-int8-grpc": _row("plain", 40.0, 180.0, 25.0, failed=2),
                    "triton-l3-int8-cache-grpc": _row("cached", 150.0, 2.0, 1.1)},
        "targets": {"throughput": {"goal": ">= 3x", "ratio": {"grpc": 3.75}, "met": True},
                    "hit_latency": {"goal": "<= 3 ms", "p50_ms": {"grpc": 1.1}, "met": True}},
    }
    text = "\n".join(markdown(section))
    assert "exponent s = 1.0" in text and "52.7% of" in text and "hit rate there: 80%" in text
    assert "| plain (`triton-l3-int8-grpc`) | 40.0 | 180.0 | 25.00 | 2 |" in text
    assert "**met** — >= 3x: grpc 3.75×" in text and "**met** — <= 3 ms: grpc 1.10 ms" in text
    section["targets"]["hit_latency"].update(met=False, p50_ms={"grpc": 3.9})
    assert "**NOT met** — <= 3 ms: grpc 3.90 ms" in "\n".join(markdown(section))
