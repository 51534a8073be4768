"""`make bench`'s results: ratios against naive PyTorch, the four targets (judged on variants that
pass the quality gate), reports/bench.{md,json} and two plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ... import config
from ...config import WORKLOAD_SIZES
from ...quality.gate import MAX_NDCG_DROP, judge_ndcg
from ..fmt import fmt
from .cache import markdown as cache_markdown

BASELINE = "naive-pytorch"
SERVED_VS_NAIVE = 0.10  # the served default's rank-50 p50, at most this share of naive PyTorch's


def ratios(results: dict) -> dict:
    """Each system against naive PyTorch: latency ratio (lower is better) and throughput
    ratio (higher is better), per workload."""
    base = results.get(BASELINE)
    if not base:
        return {}
    out = {}
    for key, res in results.items():
        entry = {}
        for name in WORKLOAD_SIZES:
            if name in res and name in base:
                entry[name] = {"p50_vs_naive": res[name]["p50_ms"] / base[name]["p50_ms"]}
                for c in (k for k in res[name] if k.startswith("c") and k in base[name]):
                    entry[name][f"{c}_pairs_s_vs_naive"] = res[name][c]["pairs_s"] / base[name][c]["pairs_s"]
        out[key] = entry
    return out


def targets(results: dict, workload: str = "rank-50") -> dict:
    """The benchmark's four targets, from this run's numbers. Speed targets are judged on served
    variants that pass the quality gate against FP32 PyTorch (all of them when there is no
    reference), so no speed is bought with accuracy."""
    served = {k: v for k, v in results.items() if k.startswith("triton-") and workload in v}
    out = {}
    if not served:
        return out
    reference = results.get(BASELINE, {}).get("ndcg@10")
    verdicts = {k: judge_ndcg(reference, v.get("ndcg@10"), k, MAX_NDCG_DROP, "naive PyTorch FP32")
                for k, v in served.items()} if reference is not None else {}
    drops = {k: v["ndcg_drop"] for k, v in verdicts.items() if v["ndcg_drop"] is not None}
    fair = {k: v for k, v in served.items() if reference is None or verdicts[k]["passed"]}
    if reference is not None:
        out["quality"] = {"goal": f"a served variant within {MAX_NDCG_DROP} NDCG@10 of FP32 PyTorch "
                                  "(the quality gate; speed targets are judged on those)",
                          "reference": reference, "drops": drops, "qualifying": sorted(fair), "met": bool(fair)}
    if not fair:
        return out
    best = min(fair, key=lambda k: fair[k][workload]["p50_ms"])
    base = results.get(BASELINE)
    if base and workload in base:
        ratio = fair[best][workload]["p50_ms"] / base[workload]["p50_ms"]
        out["latency"] = {"goal": f"best served rank-50 p50 <= {SERVED_VS_NAIVE:.2f} x naive PyTorch",
                          "system": best, "ratio": ratio, "met": ratio <= SERVED_VS_NAIVE}
    clients = max((int(c[1:]) for c in fair[best][workload] if c.startswith("c")), default=None)
    infinity = {k: v for k, v in results.items() if k.startswith("infinity-") and workload in v}
    if clients and infinity:
        c = f"c{clients}"
        ours = max(fair, key=lambda k: fair[k][workload][c]["pairs_s"])
        theirs = max(infinity, key=lambda k: infinity[k][workload][c]["pairs_s"])
        ratio = fair[ours][workload][c]["pairs_s"] / infinity[theirs][workload][c]["pairs_s"]
        out["throughput"] = {"goal": f"throughput at {clients} clients >= 2 x Infinity (its best engine)",
                             "system": ours, "against": theirs, "ratio": ratio, "met": ratio >= 2.0}
    overhead = {}
    for key, res in served.items():
        bare = results.get(f"ort-{res['engine']}-inprocess")
        if bare and workload in bare:
            overhead[key] = res[workload]["p50_ms"] / bare[workload]["p50_ms"] - 1.0
    if overhead:
        key = best if best in overhead else min(overhead, key=overhead.get)
        out["overhead"] = {"goal": "Triton p50 <= 1.10 x bare engine (same engine, rank-50)", "system": key,
                           "overhead": overhead[key], "met": overhead[key] <= 0.10, "all": overhead}
    return out


# --- Report ---------------------------------------------------------------------------------------

def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md",
             "latency": out_dir / "bench_latency.png", "throughput": out_dir / "bench_throughput.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float))
    plot_latency(report, paths["latency"])
    plot_throughput(report, paths["throughput"])
    paths["md"].write_text(markdown(report))
    return paths


def markdown(report: dict) -> str:
    meta, results = report["meta"], report["systems"]
    clients = meta["clients"]
    lines = ["# shoprank benchmark", "",
             f"Run {meta['start']['date_utc']} UTC on {meta['start']['cpu']} ({meta['start']['cores']} cores), "
             f"Python {meta['start']['python']}, torch {meta['start']['torch']}, "
             f"onnxruntime {meta['start']['onnxruntime']}.",
             f"Model `{meta['model']}` (max length {meta['max_length']}); requests from `{meta['data']}`: "
             f"{meta['requests']} distinct queries per workload after {meta['warmup']} warm-up requests; "
             "tokens per pair " + ", ".join(f"{n}: mean {v['mean']:.1f}, longest per request "
                                            f"{v['longest_in_request_mean']:.1f}"
                                             for n, v in meta["mean_tokens_per_pair"].items()) + ".",
             f"NDCG@10 on {meta['validation']['queries']} validation queries ({meta['validation']['pairs']} pairs).",
             f"Ours: Triton with {meta['ranker_instances']} ranker and {meta['tokenizer_instances']} tokenizer "
             f"instance(s); ONNX Runtime: length-sorted chunks of <= {meta['engine']['chunk_tokens']} tokens "
             f"run side by side on {meta['engine']['threads']} workers of one core each (threads spinning "
             f"{'on' if meta['engine']['spinning'] else 'off'}); ranker queue delay "
             f"{meta['engine']['ranker_queue_delay_us']} µs.",
             f"Load average at start {', '.join(f'{x:.2f}' for x in meta['start']['loadavg'])}; at end "
             f"{', '.join(f'{x:.2f}' for x in meta['end']['loadavg'])} (`uptime`: {meta['end']['uptime']}); "
             f"1-minute load while measuring: mean {fmt(meta['load_during']['mean'], '.2f')}, "
             f"max {fmt(meta['load_during']['max'], '.2f')} (it counts the benchmark's own 4-8 client threads "
             f"and servers; the load at start tells whether other work shared the {meta['start']['cores']} cores).", ""]
    load = meta["start"]["loadavg"][0]
    if load > meta["start"]["cores"]:
        lines += [f"The machine was busy at the start (1-minute load {load:.1f} on {meta['start']['cores']} cores): "
                  "ratios come from one "
                  "interleaved run, but absolute times are slower than on an idle machine, and PyTorch's OpenMP "
                  "threads (naive, CrossEncoder, Infinity torch) lose more under contention than ONNX Runtime "
                  "threads that sleep when idle.", ""]
    for name in meta["workloads"]:
        lines += [f"## {name}", ""]
        if meta.get("only", {}).get(name):
            lines += [f"Measured on {name} only: systems whose key starts with "
                      f"{', '.join(f'`{p}`' for p in meta['only'][name])} (`--only`).", ""]
        lines += [
                  "| system | p50 ms | p95 ms | p50 vs naive | " +
                  " | ".join(f"req/s @{c} | pairs/s @{c} | vs naive @{c}" for c in clients)
                  + " | NDCG@10 | peak RSS MB |",
                  "|---" * (6 + 3 * len(clients)) + "|"]
        for key, res in results.items():
            if name not in res:
                continue
            r, ratio = res[name], report["ratios"].get(key, {}).get(name, {})
            cells = [f"{res['label']} (`{key}`)", fmt(r["p50_ms"], ".1f"), fmt(r["p95_ms"], ".1f"),
                     fmt(ratio.get("p50_vs_naive"), ".2f") + "×"]
            for c in clients:
                t = r.get(f"c{c}", {})
                cells += [fmt(t.get("req_s"), ".2f"), fmt(t.get("pairs_s"), ".0f"),
                          fmt(ratio.get(f"c{c}_pairs_s_vs_naive"), ".2f") + "×"]
            cells += [fmt(res.get("ndcg@10"), ".4f"), fmt(res.get("peak_rss_mb"), ".0f")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    steps = [(k, v["rank-50"]["steps_ms"]) for k, v in results.items() if "steps_ms" in v.get("rank-50", {})]
    if steps:
        lines += ["## Inside Triton (rank-50, sequential: server-side ms per request)", "",
                  "| system | client p50 | ensemble | tokenizer | ranker | ranker queue | sorter |", "|---" * 7 + "|"]
        for key, st in steps:
            ens, tok, rnk, srt = (st.get(m, {}) for m in (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL,
                                                           config.RANKER_MODEL, config.SORTER_MODEL))
            lines.append(f"| `{key}` | {results[key]['rank-50']['p50_ms']:.1f} | "
                         f"{ens.get('total', 0):.1f} | {tok.get('compute', 0):.1f} | "
                         f"{rnk.get('compute', 0):.1f} | {rnk.get('queue', 0):.1f} | {srt.get('compute', 0):.1f} |")
        lines += ["", "Ensemble = Triton's mean time from receiving a request to its response, over the "
                  "sequential run of both protocols (one server serves both); client p50 minus that is roughly "
                  "the protocol and client cost. Means, so they need not add up to the p50.", ""]
    lines += ["## Targets (rank-50)", ""]
    for name, t in report["targets"].items():
        if name == "quality":
            detail = (f"reference {t['reference']:.4f}; drops "
                      + ", ".join(f"{k} {v:+.4f}" for k, v in t["drops"].items())
                      + f"; qualifying: {', '.join(t['qualifying']) or 'none'}")
        elif name == "overhead":
            detail = f"{t['system']} {t['overhead'] * 100:+.1f}%; all: " + ", ".join(
                f"{k} {v * 100:+.1f}%" for k, v in t["all"].items())
        elif name == "throughput":
            detail = f"{t['system']} / {t['against']} = {t['ratio']:.2f}×"
        else:
            detail = f"{t['system']}: {t['ratio']:.3f}× naive"
        lines.append(f"- **{'met' if t['met'] else 'NOT met'}** — {t['goal']}: {detail}")
    if report.get("head_heavy"):
        lines += ["", *cache_markdown(report["head_heavy"])]
    if report["skipped"]:
        lines += ["", "## Not run", ""]
        lines += [f"- `{k}`: {v}" for k, v in report["skipped"].items()]
    notes = [(k, n) for k, v in results.items() for n in v.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- `{k}`: {n}" for k, n in notes]
    lines += ["", "Peak RSS: servers only, summed over the server process and its children (Triton's Python "
              "backend stubs; Infinity's workers), sampled every 0.25 s while the model served this run.",
              "![latency](bench_latency.png)", "![throughput](bench_throughput.png)", ""]
    return "\n".join(lines)


def plot_latency(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["meta"]["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names):
        keys = [k for k, v in report["systems"].items() if name in v]
        p50 = [report["systems"][k][name]["p50_ms"] for k in keys]
        p95 = [report["systems"][k][name]["p95_ms"] for k in keys]
        y = np.arange(len(keys))
        ax.barh(y - 0.2, p50, 0.4, label="p50")
        ax.barh(y + 0.2, p95, 0.4, label="p95")
        ax.set_yticks(y, keys)
        ax.invert_yaxis()
        ax.set_xscale("log")  # baselines take seconds, ours tens of ms
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_xlabel("ms per request (sequential, log scale)")
        ax.set_title(f"{name}: latency")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["meta"]["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names):
        size = report["meta"]["workloads"][name]
        colors = plt.get_cmap("tab20").colors
        for i, (key, res) in enumerate(report["systems"].items()):
            if name not in res:
                continue
            ours = key.startswith(("triton-", "ort-"))
            style = {"color": colors[i % len(colors)], "linestyle": "-" if ours else "--"}
            xs = [1] + [int(c[1:]) for c in res[name] if c.startswith("c")]
            ys = [size * 1000.0 / res[name]["mean_ms"]]
            ys += [res[name][c]["pairs_s"] for c in res[name] if c.startswith("c")]
            ax.plot(xs, ys, marker="o", label=key, **style)
        ax.set_xlabel("concurrent clients (1 = sequential)")
        ax.set_ylabel("pairs / s")
        ax.set_title(f"{name}: throughput (dashed: not ours)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
