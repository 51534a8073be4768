"""reports/personalization.md + .png + .json from a `make personalize` run (online.personalize)."""
from __future__ import annotations

import json
from pathlib import Path

COLOURS = ["#888", "#2a7", "#27a", "#a7a", "#7aa", "#aa7", "#c84"]

NAMES = {"non-personalized": "non-personalized (today)",
         "fusion": "late fusion: logit + behaviour features, learned head",
         "exposure": "late fusion + exposure-aware brand affinity (needs shown pages: not served)",
         "catalog": "late fusion + catalog price and category (needs attributes in the sorter: not served)",
         "text": "behaviour as text in the cross-encoder's input",
         "population": "diagnostic: preferences' prior given the query alone, same head (not servable)",
         "posterior": "diagnostic: Bayes posterior given the logged history, same head (not servable)",
         "oracle": "oracle: the same head fed the true preferences (ceiling)"}


def _cell(stat: dict, digits: int) -> str:
    if stat["min"] == stat["max"]:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"


def _table(group: dict, latency: dict | None) -> list[str]:
    head = "| policy | NDCG@10 | clicks / 1,000 requests | purchases / 1,000 requests |"
    lines = [head + (" rank-50 p50 served (ms) |" if latency else ""),
             "| --- | --- | --- | --- |" + (" --- |" if latency else "")]
    for name, stats in group.items():
        row = (f"| {NAMES.get(name, name)} | {_cell(stats['ndcg'], 4)} | {_cell(stats['clicks_per_1000'], 0)} "
               f"| {_cell(stats['purchases_per_1000'], 1)} |")
        if latency:
            value = latency.get(name)
            row += f" {value:.1f} |" if isinstance(value, (int, float)) else " not served |"
        lines.append(row)
    return lines


def _history_table(buckets: dict) -> list[str]:
    """Recovery of the gap by how many sessions the returning shopper had before the test days."""
    if not buckets:
        return []
    others = next(list(b["recovered"]) for b in buckets.values() if b.get("requests"))
    lines = ["## Recovery by history length (returning shoppers)", "",
             "Sessions each shopper had before the test days; the seeds pooled. Gap = oracle − non-personalized "
             "NDCG@10 in that bucket; each policy's gain over non-personalized as a share of it. Small buckets "
             "are noisy (one request moves the mean).", "",
             "| sessions before | requests | non-personalized | gap | " + " | ".join(others) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in others) + " |"]
    for label, b in buckets.items():
        if not b.get("requests"):
            lines.append(f"| {label} | 0 | — | — | " + " | ".join("—" for _ in others) + " |")
            continue
        lines.append(f"| {label} | {b['requests']} | {b['ndcg']['non-personalized']:.4f} | {b['gap']:+.4f} | "
                     + " | ".join(f"{100 * b['recovered'][p]:.0f}%" for p in others) + " |")
    return lines


def _decomposition(parts: dict) -> list[str]:
    """Which preference the gap is made of: the oracle's head fed one preference feature at a time."""
    if not parts:
        return []
    sources = list(dict.fromkeys(name.split(":")[0] for name in parts))
    features = list(dict.fromkeys(name.split(":")[1] for name in parts))
    lines = ["## What the gap is made of (returning shoppers)", "",
             "The oracle's head fed ONE preference feature (the others zero), from the truth (oracle), the "
             "posterior given the history, or the prior given the query alone (population): the share of the gap "
             "it recovers, mean over seeds.", "",
             "| feature | " + " | ".join(sources) + " |", "| --- | " + " | ".join("---" for _ in sources) + " |"]
    for f in features:
        lines.append(f"| {f} | " + " | ".join(f"{100 * parts[f'{src}:{f}']:.0f}%" for src in sources) + " |")
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    titles = ("returning shoppers, later days", "new shoppers (cold start)")
    for ax, group, title in zip(axes, ("returning", "cold_start"), titles):
        stats = report["summary"][group]
        names = list(stats)
        means = [stats[n]["ndcg"]["mean"] for n in names]
        err = [[m - stats[n]["ndcg"]["min"] for n, m in zip(names, means)],
               [stats[n]["ndcg"]["max"] - m for n, m in zip(names, means)]]
        ax.bar(range(len(names)), means, yerr=err, capsize=4, color=COLOURS[:len(names)])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        low = min(stats[n]["ndcg"]["min"] for n in names)
        ax.set_ylim(max(0.0, low - 0.05), 1.0)
        ax.set_title(title)
        ax.set_ylabel("NDCG@10 (true relevance)")
    fig.suptitle(f"Personalization, {len(report['per_seed'])} simulator seeds (bars: mean, whiskers: min-max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, out_dir: Path, latency: dict | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    s = report["summary"]
    cfg = report["config"]
    lines = ["# Personalization (`make personalize`)", "",
             f"Simulated shoppers (docs/simulator.md), {len(report['per_seed'])} seeds "
             f"({', '.join(str(x['seed']) for x in report['per_seed'])}): {cfg['shop']['shoppers']} shoppers on "
             f"day 0, {cfg['shop']['new_per_day']} new a day, {cfg['shop']['sessions_per_day']} sessions a day for "
             f"{cfg['days']} days over {report['pool_queries']} queries of {cfg['candidates']} candidates; trained "
             f"on the logs of days < {cfg['test_from_day']}, measured on the later days (returning shoppers: arrived "
             "before; new shoppers: arrived since, cold at their first session). Cells: mean over seeds (min–max). "
             "Clicks and purchases are expectations of the page "
             "under the simulator's position bias, not draws.", "",
             "## Returning shoppers, later sessions", "", *_table(s["returning"], latency), "",
             "## New shoppers (cold start)", "", *_table(s["cold_start"], None), ""]
    lines += ["## Targets", ""]
    gaps = [x["returning"]["oracle"]["ndcg"] - x["returning"]["non-personalized"]["ndcg"] for x in report["per_seed"]]
    lines.append(f"- the gap (oracle − non-personalized NDCG@10, returning shoppers): {sum(gaps) / len(gaps):+.4f} "
                 f"(per seed {', '.join(f'{g:+.4f}' for g in gaps)}). The oracle is the default design's head, fit "
                 "the same way on the same logs, fed each shopper's true preferences instead of the behaviour "
                 "features that estimate them: no estimate can tell that head more.")
    diagnostics, served = report.get("diagnostics", []), report.get("served_designs", [])
    for d, rec in s.get("gap_recovered", {}).items():
        verdict = ("diagnostic, not servable" if d in diagnostics else
                   ("PASS" if rec["mean"] >= 0.5 else "MISS") + ("" if d in served else " (not served)"))
        lines.append(f"- {d}: recovers {100 * rec['mean']:.0f}% of the NDCG@10 gap to the oracle "
                     f"(per seed {', '.join(f'{100 * r:.0f}%' for r in rec['per_seed'])}; target ≥ 50%): {verdict}")
    for d, delta in s.get("cold_start_delta", {}).items():
        verdict = "PASS" if abs(delta["mean"]) <= 0.005 else "MISS"
        lines.append(f"- {d}, cold start: {delta['mean']:+.4f} NDCG@10 against non-personalized (target within "
                     f"0.005): {verdict}")
    if latency and latency.get("ratio") is not None:
        verdict = "PASS" if latency["ratio"] <= 1.3 else "MISS"
        lines.append(f"- served rank-50 p50, personalized (profile lookup included) / anonymous: "
                     f"{latency['ratio']:.2f}× (target ≤ 1.3×): {verdict}")
    lines += ["", *_history_table(s.get("returning_by_history", {})), "", *_decomposition(s.get("decomposition", {}))]
    tc = report["token_cost"]
    lines += ["", "## Cost of the text design", "",
              f"Tokens per pair: {tc['tokens_per_pair']:.1f} without the behaviour summary, "
              f"{tc['tokens_per_pair_with_summary']:.1f} with it (a CPU cross-encoder's time grows with tokens); "
              "late fusion adds no token.", "",
              "![personalization](personalization.png)", "",
              f"Run time {report['seconds']:.0f} s. Raw numbers: personalization.json."]
    (out_dir / "personalization.md").write_text("\n".join(lines) + "\n")
    (out_dir / "personalization.json").write_text(json.dumps({**report, "latency": latency}, indent=2, default=str))
    plot(report, out_dir / "personalization.png")
    return out_dir / "personalization.md"
