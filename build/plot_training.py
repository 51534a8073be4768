#!/usr/bin/env python3
"""Plot a fine-tuned model's validation curves (metrics.json) and train loss (TensorBoard run)
to <model>/training.png."""
import argparse

import _path  # noqa: F401

from shoprank.evaluation import plot_training

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", help="fine-tuned model folder (with metrics.json)")
    p.add_argument("--out", default=None, help="PNG path (default: <model>/training.png)")
    args = p.parse_args()
    print(f"wrote {plot_training(args.model, args.out)}")
