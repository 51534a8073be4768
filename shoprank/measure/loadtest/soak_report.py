"""The soak's console rows, its summary, and reports/soak.md, soak.json and soak.png (of
soak.run_soak's report; a window is soak.Window or its dict)."""
from __future__ import annotations

import json
from pathlib import Path

from ..fmt import fmt

_COLUMNS = (f"  {'window':<13}{'good':>6}{'failed':>7}{'good/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'bad':>5}"
            f"{'findings':>9}  {'bad answered':<34}{'server MB':>10}{'max MB':>8}{'procs':>6}")


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _answers(answers: dict) -> str:
    return ", ".join(f"{answer} {count}" for answer, count in answers.items()) or "-"


def window_header() -> str:
    return _COLUMNS


def window_row(w) -> str:
    w = w if isinstance(w, dict) else vars(w)
    span = f"{_clock(w['start_s'])}-{_clock(w['end_s'])}"
    return (f"  {span:<13}{w['good']:>6}{w['good_failed']:>7}{w['good_per_s']:>7.2f}{fmt(w['p50_ms'], '.0f'):>8}"
            f"{fmt(w['p95_ms'], '.0f'):>8}{w['bad']:>5}{w['bad_findings']:>9}  {_answers(w['bad_answers']):<34}"
            f"{fmt(w['memory_mb'], '.1f'):>10}{fmt(w['memory_max_mb'], '.1f'):>8}{fmt(w['processes'], 'd'):>6}")


def memory_line(v: dict) -> str:
    if v["memory_first_mb"] is None:
        return "server memory: not sampled"
    return (f"server memory (summed RSS, window means): first {v['memory_first_mb']:.1f} MB, "
            f"max {v['memory_max_mb']:.1f} MB ({v['memory_growth']:+.1%}), "
            f"last {v['memory_last_mb']:.1f} MB ({v['memory_last_growth']:+.1%}); "
            f"limit +{v['max_memory_growth']:.0%} over the first window")


def findings_lines(report: dict) -> list[str]:
    return [f"{f['count']} x {f['kind']!r} over {f['protocol']}: answered {f['answer']} ({f['outcome']})"
            + (f": {f['example']}" if f.get("example") else "") for f in report["findings"]]


def summary(report: dict) -> str:
    v = report["verdict"]
    lines = [f"good requests: {v['good']}, failed {v['good_failed']} (goal 0)", memory_line(v)]
    if report["findings"]:
        lines.append(f"FINDINGS: {v['bad_findings']} of {v['bad']} bad requests were not refused with a "
                     "client error (INVALID_ARGUMENT / 400):")
        lines += [f"  {line}" for line in findings_lines(report)]
    else:
        lines.append(f"bad requests: {v['bad']}, every one refused with a client error (INVALID_ARGUMENT / 400)")
    lines.append(f"=> {'PASS' if v['passed'] else 'FAIL: ' + '; '.join(v['reasons'])}")
    return "\n".join(lines)


def markdown(report: dict, png_name: str | None) -> str:
    v = report["verdict"]
    out = [f"# Soak: {report['minutes']:g} min of the `{report['profile']}` load with "
           f"{report['bad_share']:.0%} bad requests",
           "",
           f"{report['started']}: {report['users']} closed-loop users ({', '.join(report['protocols'])}) for "
           f"{report['load_s']:g} s (first call's start to last call's end), "
           f"candidates {report['candidates']}, TOP_K {report['top_k']}, windows of {report['window_s']:g} s, "
           f"server memory sampled every {report['sample_s']:g} s (summed RSS of tritonserver and its "
           f"Python backend stubs). Locust's files: `{report['locust_dir']}`.",
           "",
           f"**Verdict: {'PASS' if v['passed'] else 'FAIL'}**"
           + ("" if v["passed"] else " — " + "; ".join(v["reasons"])),
           "",
           f"- good requests: {v['good']}, failed: {v['good_failed']} (goal 0)",
           f"- {memory_line(v)}",
           f"- bad requests: {v['bad']}, not refused with a client error: {v['bad_findings']}",
           "",
           "## Windows",
           "",
           "| window | good | failed | good/s | p50 ms (good) | p95 ms (good) | bad | findings | bad answered "
           "| server MB | max MB | procs |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for w in report["windows"]:
        out.append(f"| {_clock(w['start_s'])}-{_clock(w['end_s'])} | {w['good']} | {w['good_failed']} | "
                   f"{w['good_per_s']:.2f} | {fmt(w['p50_ms'], '.0f')} | {fmt(w['p95_ms'], '.0f')} | {w['bad']} | "
                   f"{w['bad_findings']} | "
                   f"{_answers(w['bad_answers'])} | {fmt(w['memory_mb'], '.1f')} | {fmt(w['memory_max_mb'], '.1f')} | "
                   f"{fmt(w['processes'], 'd')} |")
    out += ["", "## Bad requests by kind", "", "| kind | answered |", "|---|---|"]
    out += [f"| {kind} | {_answers(answers)} |" for kind, answers in report["bad_by_kind"].items()]
    out += ["", "## Findings", ""]
    out += [f"- {line}" for line in findings_lines(report)] or ["None: every bad request got a client error."]
    cpu = report.get("cpu") or {}
    out += ["", "## Server", "",
            f"- memory before the load {fmt(report['memory_idle_before_mb'], '.1f')} MB, "
            f"after it {fmt(report['memory_after_mb'], '.1f')} MB",
            f"- cores busy (of {cpu.get('cores')}): Locust {fmt(cpu.get('load_generator_cores'), '.2f')}, "
            f"server {fmt(cpu.get('server_cores'), '.2f')}, whole machine {fmt(cpu.get('machine_busy_cores'), '.2f')}"]
    metrics = report.get("triton_metrics") or {}
    if metrics:  # the rest of Triton's counters are in the JSON
        out.append("- Triton's successful requests per model: "
                   + ", ".join(f"`{model}` {m['requests']}" for model, m in metrics.items()))
    if png_name:
        out += ["", f"![p95 and server memory per window]({png_name})"]
    return "\n".join(out) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = report["windows"]
    x = [w["end_s"] / 60 for w in windows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(x, [w["p95_ms"] for w in windows], marker="o", label="p95 (good requests)")
    top.plot(x, [w["p50_ms"] for w in windows], marker=".", linestyle=":", label="p50")
    top.set_ylabel("latency, ms")
    top.legend()
    top.grid(alpha=0.3)
    v = report["verdict"]
    bottom.plot(x, [w["memory_mb"] for w in windows], marker="o", label="summed RSS, window mean")
    bottom.plot(x, [w["memory_max_mb"] for w in windows], linestyle=":", label="window max")
    if v["memory_first_mb"] is not None:
        bottom.axhline(v["memory_first_mb"] * (1 + v["max_memory_growth"]), color="red", linewidth=0.8,
                       label=f"first window +{v['max_memory_growth']:.0%}")
    bottom.set_ylabel("server memory, MB")
    bottom.set_xlabel("minutes (window end)")
    bottom.legend()
    bottom.grid(alpha=0.3)
    top.set_title(f"soak: {report['minutes']:g} min, {report['users']} users, {report['bad_share']:.0%} bad requests "
                  f"-> {'PASS' if v['passed'] else 'FAIL'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(report: dict, report_dir: Path, stem: str = "soak", png: bool = True) -> dict:
    """<stem>.json, <stem>.md and (png) <stem>.png in report_dir; returns their paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": report_dir / f"{stem}.json", "md": report_dir / f"{stem}.md"}
    if png:
        paths["png"] = report_dir / f"{stem}.png"
        plot(report, paths["png"])
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(report, paths["png"].name if png else None))
    return paths
