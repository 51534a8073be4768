"""`make eval`'s table: one row per variant and baseline, as markdown and JSON, and the plot of
quality against rank-50 latency."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fmt import fmt, interval


@dataclass
class Row:
    key: str
    label: str
    kind: str                     # "variant" or "baseline"
    metrics: dict | None = None   # metrics.evaluate's dict; None when skipped
    note: str = ""
    seconds: float | None = None  # scoring time of all rows (not a latency)
    gate: dict | None = None      # quality gate against FP32 (variants only)
    max_abs_diff: float | None = None  # largest |probability difference| against FP32
    latency_ms: float | None = None
    latency_source: str = ""
    ndcg_diff: dict | None = None   # metrics.ndcg_difference against FP32 (mean, 95% interval)
    scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def ndcg(self) -> float | None:
        return None if self.metrics is None else self.metrics.get("ndcg@10")


@dataclass
class Table:
    rows: list[Row]
    summary: dict

    def row(self, key: str) -> Row:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    @property
    def gates_failed(self) -> list[Row]:
        return [r for r in self.rows if r.gate and not r.gate["passed"]]

    def to_markdown(self) -> str:
        s = self.summary
        rmse_name = "RMSE (1–3)" if s["graded"] else "RMSE (label)"
        random_ndcg = s["random_ndcg"]
        head = ["variant", "NDCG@10", "lift vs random", "MRR", "P@5", "AUC", rmse_name,
                "Δ NDCG vs FP32 [95% CI]", f"gate ≤{s['max_ndcg_drop']}", "max |Δp| vs FP32",
                "rank-50 p50 ms", "queries NDCG / MRR·P@5", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            m = r.metrics
            if m is None:
                lines.append(f"| {r.label} | " + " | ".join(["—"] * (len(head) - 2)) + f" | skipped: {r.note} |")
                continue
            rmse = m.get("rmse_grade", m.get("rmse_label")) if r.kind == "variant" else None
            ref = s.get("reference_ndcg")
            delta = interval(r.ndcg_diff) or (
                None if (r.kind != "variant" or ref is None or r.ndcg is None) else fmt(r.ndcg - ref, "+.4f"))
            gate = "" if r.gate is None else ("pass" if r.gate["passed"] else "**FAIL**")
            lines.append("| " + " | ".join([
                r.label, fmt(r.ndcg),
                fmt(None if r.ndcg is None or random_ndcg is None else r.ndcg - random_ndcg, "+.4f"),
                fmt(m.get("mrr")), fmt(m.get("p@5")), fmt(m.get("auc")), fmt(rmse),
                delta or "—", gate, fmt(r.max_abs_diff, ".1e"),
                fmt(r.latency_ms, ".1f") + (f" ({r.latency_source})" if r.latency_source and r.latency_ms else ""),
                f"{m['queries']['ndcg@10']} / {m['queries']['mrr']}", r.note]) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        rows = []
        for r in self.rows:
            rows.append({"key": r.key, "label": r.label, "kind": r.kind, "metrics": r.metrics, "note": r.note,
                         "seconds": r.seconds, "gate": r.gate, "max_abs_diff_vs_fp32": r.max_abs_diff,
                         "rank50_p50_ms": r.latency_ms, "latency_source": r.latency_source,
                         "ndcg_diff_vs_reference": r.ndcg_diff})
        return {"summary": self.summary, "rows": rows}


def markdown_report(table: Table, title: str = "Ranking quality", png: str | None = None) -> str:
    s = table.summary
    kind = "graded relevance" if s["graded"] else "clicks"
    rel = s.get("relevant_gain")
    lines = [f"## {title}", "",
             f"Model `{s['model']}`; data `{s['data']}` (mapping `{s['mapping']}`, {kind}), "
             f"{s['split']} split: {s['queries']} queries, {s['rows']} judged (query, product) pairs.", "",
             table.to_markdown(), "",
             "- NDCG@10: linear gain (" + ("relevance − 1" if s["graded"] else "click 0/1") +
             "), over queries with ≥ 2 judged products and a non-zero ideal DCG (first count). "
             f"MRR and P@5: relevant = gain ≥ {rel}" + (" (relevance ≥ 2.5)" if s["mapping"] == "homedepot" else "") +
             ", over queries with ≥ 2 products and a relevant one (second count). AUC and RMSE: pooled over all "
             "rows. Queries with one judged product are skipped by every per-query metric.",
             "- RMSE " + ("on the 1–3 rating scale (a probability p is the rating 1 + 2p)" if s["graded"]
                          else "of the probability against the 0/1 label") +
             f"; predicting the mean label (of the {s.get('mean_label_from', 'training split')}) gives "
             f"{s['mean_label_rmse']:.4f}. Baselines have no RMSE: "
             "their scores are not probabilities.",
             f"- Gate: a variant fails when its NDCG@10 is more than {s['max_ndcg_drop']} below "
             f"{s['reference'] or 'FP32'}'s on these rows (shoprank.quality.gate).",
             "- Δ NDCG vs FP32: mean per-query difference on the same queries, with a 95% paired bootstrap "
             "interval (1,000 resamples of the queries); an interval that contains 0 is no measurable "
             "difference on this many queries.",
             ]
    if s.get("latency"):
        lines.append(f"- Latency (rank-50 p50): {s['latency']}. Timings are for comparison between variants, "
                     "not a benchmark result.")
    if png:
        lines += ["", f"![quality vs rank-50 latency]({png})"]
    return "\n".join(lines) + "\n"


def plot_quality_latency(table: Table, path: str | Path, title: str = "") -> Path | None:
    """NDCG@10 against rank-50 p50 latency, one point per variant; baselines as lines."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in table.rows if r.kind == "variant" and r.ndcg is not None and r.latency_ms]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(12, 5))
    markers = iter("osD^vP*Xh")
    for r in points:
        ax.scatter(r.latency_ms, r.ndcg, s=60, marker=next(markers, "o"), zorder=3,
                   label=f"{r.label}: {r.ndcg:.4f} @ {r.latency_ms:.0f} ms ({r.latency_source})")
    styles = iter(["--", ":", "-."])
    for r in table.rows:
        if r.kind == "baseline" and r.ndcg is not None:
            ax.axhline(r.ndcg, linestyle=next(styles, "--"), color="grey", linewidth=1,
                       label=f"{r.label}: {r.ndcg:.4f}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.15)
    ax.set_xlabel("rank-50 latency, p50 (ms, log scale)")
    ax.set_ylabel("NDCG@10 (validation)")
    ax.set_title(title or f"quality vs latency: {Path(table.summary['model']).name}, "
                          f"{table.summary['queries']} queries",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
