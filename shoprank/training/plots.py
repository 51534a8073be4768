"""Training curves: validation NDCG@10, MRR and RMSE from a model's metrics.json, and the train
loss from its TensorBoard run when TensorBoard's reader is installed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def plot_training(model_dir: str | Path, path: str | Path | None = None) -> Path:
    """Validation curves from <model>/metrics.json (and train loss from <model>.runs when
    TensorBoard's reader is installed) into <model>/training.png (or `path`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_dir = Path(model_dir)
    summary = json.loads((model_dir / "metrics.json").read_text())
    history = summary["history"]
    if not history:
        raise ValueError(f"{model_dir}/metrics.json has no evaluation history")
    steps = [h["step"] for h in history]
    loss = _tensorboard_scalars(model_dir.with_name(model_dir.name + ".runs"), "train/loss")
    panels = 3 if loss else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    axes[0].plot(steps, [h["ndcg@10"] for h in history], marker="o", label="NDCG@10")
    mrr_axis = axes[0].twinx()  # MRR sits far lower than NDCG: its own scale keeps both readable
    mrr_axis.plot(steps, [h.get("mrr") for h in history], marker="s", color="C1", label="MRR (right)")
    mrr_axis.legend(fontsize=8, loc="lower right")
    axes[0].set_title("validation ranking")
    rmse_key = "rmse_grade" if "rmse_grade" in history[0] else "rmse_label"
    axes[1].plot(steps, [h[rmse_key] for h in history], marker="o", color="C3", label=rmse_key)
    axes[1].set_title("validation " + ("RMSE (1–3 scale)" if rmse_key == "rmse_grade" else "RMSE (label)"))
    if loss:
        s, v = zip(*loss)
        window = max(1, len(v) // 50)
        smooth = np.convolve(v, np.ones(window) / window, mode="valid")
        axes[2].plot(s, v, alpha=0.25, color="C2")
        axes[2].plot(s[window - 1:], smooth, color="C2", label=f"mean of {window}")
        axes[2].set_title("train BCE loss")
    best = summary.get("best") or {}
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if best.get("step"):
            ax.axvline(best["step"], color="grey", linestyle=":", linewidth=1)
    cfg = summary.get("config", {})
    fig.suptitle(f"{model_dir.name}: lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, max length "
                 f"{cfg.get('max_length')}, {cfg.get('epochs')} epochs, {summary.get('train_seconds')} s "
                 f"(dotted: kept checkpoint)", fontsize=9)
    fig.tight_layout()
    out = Path(path) if path else model_dir / "training.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    if not run_dir.is_dir():
        return []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]
