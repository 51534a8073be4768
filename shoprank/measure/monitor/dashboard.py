"""`make dashboard`: the served ensemble over a time window, from Prometheus's HTTP API.

Every panel is PromQL (query_range for lines, one instant query of increase() over the whole
window for the two histograms), drawn with matplotlib into dashboard.png and embedded in
dashboard.html with the alerts active at the end, the window's totals and each panel's queries
(paste them into Prometheus's UI to look closer). docs/monitoring.md says how to read it.
"""
from __future__ import annotations

import base64
import html
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ... import config
from .api import PrometheusAPI, Series

OUT_DIR = config.REPORTS_DIR / "monitoring"
RANK = f'model="{config.ENSEMBLE_MODEL}"'
POINTS = 300  # points per line at most


@dataclass(frozen=True)
class Line:
    legend: str  # may name labels of the result: "{model}"
    promql: str  # "{w}": the rate window


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    lines: tuple[Line, ...]
    buckets: bool = False  # a histogram over the whole window ("{window}": its length) instead of lines


FAILED = f"sum(rate(nv_inference_request_failure{{{RANK}}}[{{w}}])) / 2"  # Triton 2.51 counts each twice
INVALID = "sum(rate(shoprank_request_errors_total[{w}]))"

PANELS = (
    Panel("Rank requests", "requests/s", (
        Line("succeeded", f"sum(rate(nv_inference_request_success{{{RANK}}}[{{w}}]))"),
        Line("failed", FAILED),
    )),
    Panel("Latency of a rank request (server side)", "ms", (
        Line("mean", f"sum(rate(nv_inference_request_duration_us{{{RANK}}}[{{w}}]))"
                     f" / sum(rate(nv_inference_request_success{{{RANK}}}[{{w}}])) / 1e3"),
        # Triton's summaries: shoprank.serving.server starts every server with summary_latencies=true.
        Line("p50", f'max(nv_inference_request_summary_us{{{RANK},quantile="0.5"}}) / 1e3'),
        Line("p95", f'max(nv_inference_request_summary_us{{{RANK},quantile="0.95"}}) / 1e3'),
    )),
    Panel("Queue time per request, by model", "ms", (
        Line("{model}", "sum by (model) (rate(nv_inference_queue_duration_us[{w}]))"
                        " / sum by (model) (rate(nv_inference_request_success[{w}])) / 1e3"),
    )),
    Panel("Errors", "requests/s", (
        Line("invalid: {kind}", "sum by (kind) (rate(shoprank_request_errors_total[{w}]))"),
        Line("server errors", f"clamp_min({FAILED} - {INVALID}, 0)"),
    )),
    Panel("Click probability of scored candidates (window)", "candidates", (
        Line("", "sum by (le) (increase(shoprank_score_bucket[{window}]))"),
    ), buckets=True),
    Panel("Click probability over time", "probability", (
        Line("mean", "sum(rate(shoprank_score_sum[{w}])) / sum(rate(shoprank_score_count[{w}]))"),
        Line("p10", "histogram_quantile(0.1, sum by (le) (rate(shoprank_score_bucket[{w}])))"),
        Line("p50", "histogram_quantile(0.5, sum by (le) (rate(shoprank_score_bucket[{w}])))"),
        Line("p90", "histogram_quantile(0.9, sum by (le) (rate(shoprank_score_bucket[{w}])))"),
    )),
    Panel("Candidates per valid request (window)", "requests", (
        Line("", "sum by (le) (increase(shoprank_candidates_per_request_bucket[{window}]))"),
    ), buckets=True),
    Panel("Candidates per request over time", "candidates", (
        Line("mean", "sum(rate(shoprank_candidates_per_request_sum[{w}]))"
                     " / sum(rate(shoprank_candidates_per_request_count[{w}]))"),
        Line("p95", "histogram_quantile(0.95, sum by (le) (rate(shoprank_candidates_per_request_bucket[{w}])))"),
    )),
)

# The window's totals (instant queries at its end): name -> PromQL ("{window}": its length).
TOTALS = {
    "rank requests succeeded": f"sum(increase(nv_inference_request_success{{{RANK}}}[{{window}}]))",
    "rank requests failed": f"sum(increase(nv_inference_request_failure{{{RANK}}}[{{window}}])) / 2",
    "refused as invalid": "sum(increase(shoprank_request_errors_total[{window}]))",
    "candidates scored": "sum(increase(shoprank_score_count[{window}]))",
    "mean click probability":
        "sum(increase(shoprank_score_sum[{window}])) / sum(increase(shoprank_score_count[{window}]))",
    "mean queue time of a ranker request (ms)":
        f'sum(increase(nv_inference_queue_duration_us{{model="{config.RANKER_MODEL}"}}[{{window}}]))'
        f' / sum(increase(nv_inference_request_success{{model="{config.RANKER_MODEL}"}}[{{window}}])) / 1e3',
}


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    step: float  # seconds between points
    rate: str    # rate() window, "{w}"

    @property
    def length(self) -> str:
        return f"{max(1, round(self.end - self.start))}s"

    @classmethod
    def last(cls, seconds: float, scrape_interval_s: float, end: float | None = None) -> Window:
        end = time.time() if end is None else end
        step = max(scrape_interval_s, seconds / POINTS)
        # rate() needs at least two samples in its window; four make it steady.
        rate = f"{math.ceil(max(4 * scrape_interval_s, 2 * step))}s"
        return cls(end - seconds, end, step, rate)


def number(value: float | None) -> str:
    """A total for people: whole numbers from 1000 up, four significant digits below, — for none."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def expand(promql: str, window: Window) -> str:
    return promql.replace("{w}", window.rate).replace("{window}", window.length)


class _Labels(dict):
    def __missing__(self, key):  # a label the result does not carry reads as ""
        return ""


def legend(template: str, labels: dict) -> str:
    return template.format_map(_Labels(labels))


def buckets_from(series: list[Series]) -> list[tuple[str, float]]:
    """Cumulative `le` series (one instant value each) -> per-bucket counts, lowest bound first;
    an empty +Inf bucket is left out."""
    points = sorted((float(s.labels["le"]), s.values[0]) for s in series if "le" in s.labels)
    out, below = [], 0.0
    for bound, cumulative in points:
        count = max(cumulative - below, 0.0)
        below = max(cumulative, below)
        if not (math.isinf(bound) and count == 0):
            out.append(("+Inf" if math.isinf(bound) else f"≤{bound:g}", count))
    return out


def collect(api: PrometheusAPI, window: Window) -> dict:
    """Every panel's data and the totals: {"panels": [(panel, data)], "totals": {...}, "alerts": [...]}."""
    panels = []
    for panel in PANELS:
        if panel.buckets:
            data = buckets_from(api.query(expand(panel.lines[0].promql, window), at=window.end))
        else:
            data = []
            for line in panel.lines:
                for s in api.query_range(expand(line.promql, window), window.start, window.end, window.step):
                    if any(math.isfinite(v) and v != 0 for v in s.values):  # kinds that never happened stay out
                        data.append((legend(line.legend, s.labels), s))
        panels.append((panel, data))
    totals = {}
    for name, promql in TOTALS.items():
        result = api.query(expand(promql, window), at=window.end)
        totals[name] = result[0].values[0] if result else None
    return {"panels": panels, "totals": totals, "alerts": api.alerts()}


def plot(collected: dict, window: Window, png: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = collected["panels"]
    rows = math.ceil(len(panels) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.4 * rows), squeeze=False)
    for ax, (panel, data) in zip(axes.flat, panels):
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if not data:
            ax.text(0.5, 0.5, "no data in this window", ha="center", va="center", transform=ax.transAxes)
            continue
        if panel.buckets:
            names, counts = zip(*data)
            ax.bar(range(len(counts)), counts, color="tab:blue")
            ax.set_xticks(range(len(names)), names, rotation=60, fontsize=6)
            continue
        for name, s in data:
            ax.plot([t - window.start for t in s.times], s.values, label=name, linewidth=1.2)
        ax.set_xlabel("seconds into the window", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def write_html(collected: dict, window: Window, png: Path, out: Path, title: str, url: str) -> Path:
    esc = html.escape
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(window.end))
    image = base64.b64encode(png.read_bytes()).decode()
    totals = "".join(f"<tr><td>{esc(k)}</td><td>{number(v)}</td></tr>"
                     for k, v in collected["totals"].items())
    alerts = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in (
            a["labels"].get("alertname", ""), a.get("state", ""), a["labels"].get("severity", ""),
            a.get("annotations", {}).get("summary", ""))) + "</tr>"
        for a in collected["alerts"]) or "<tr><td colspan=4>none pending or firing</td></tr>"
    queries = "".join(
        f"<li><b>{esc(panel.title)}</b><ul>"
        + "".join(f"<li>{esc(line.legend or 'bars')}: <code>{esc(expand(line.promql, window))}</code></li>"
                  for line in panel.lines) + "</ul></li>" for panel, _ in collected["panels"])
    out.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}} td,th{{border:1px solid #ccc;padding:3px 8px}}
table{{border-collapse:collapse;margin-bottom:1.5em}} code{{font-size:85%}}</style></head><body>
<h1>{esc(title)}</h1>
<p>Prometheus {esc(url)}; window {esc(window.length)} ending {esc(when)}; a point every {window.step:g} s;
rate() over {esc(window.rate)}. Generated by <code>make dashboard</code> (docs/monitoring.md).</p>
<img src="data:image/png;base64,{image}" alt="dashboard" style="max-width:100%">
<h2>Alerts at the end of the window</h2>
<table><tr><th>alert</th><th>state</th><th>severity</th><th>summary</th></tr>{alerts}</table>
<h2>Totals over the window</h2>
<table>{totals}</table>
<p>From increase(), which extrapolates to the window's edges: totals (and the histogram bars) can
read a few percent above the exact counts.</p>
<h2>Queries</h2><ul>{queries}</ul>
</body></html>
""")
    return out


def render_dashboard(url: str, seconds: float = 900, out_dir: Path = OUT_DIR, end: float | None = None,
                     title: str = "shoprank on Triton") -> dict:
    """Query Prometheus at `url` over the last `seconds` (ending `end`, now when None) and write
    out_dir/dashboard.png and dashboard.html. Returns the paths and the window's totals."""
    api = PrometheusAPI(url)
    window = Window.last(seconds, api.scrape_interval_s(), end)
    collected = collect(api, window)
    out_dir = Path(out_dir)
    png = plot(collected, window, out_dir / "dashboard.png", title)
    page = write_html(collected, window, png, out_dir / "dashboard.html", title, url)
    return {"html": page, "png": png, "totals": collected["totals"],
            "alerts": [(a["labels"].get("alertname"), a.get("state")) for a in collected["alerts"]],
            "panels_without_data": [p.title for p, data in collected["panels"] if not data]}
