#!/usr/bin/env python3
"""`make compare MODELS="a b ..."`: PyTorch FP32 quality of trained models on the validation
split of the first one's data, each against the first with a 95% paired bootstrap interval on
NDCG@10 (which training settings helped, and by more than noise)."""
import argparse
import json
import sys
from pathlib import Path

import _path  # noqa: F401

from shoprank import evaluation
from shoprank.modeling import read_model_card


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="+", help="model folders; the first is the reference")
    p.add_argument("--data", default="", help="judgments file, 'shared' or 'default' (default: the first model's data)")
    p.add_argument("--split", default="valid", choices=["valid", "all"])
    p.add_argument("--limit-queries", type=int, default=0)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args()
    if args.split == "valid" and not args.data:
        # Validation rows are only unseen by every model when all were trained on one data file
        # with one split seed.
        cards = [read_model_card(m) for m in args.models]
        split_of = lambda c: (Path(str(c.get("data"))).name, c.get("seed"))  # noqa: E731
        if len({split_of(c) for c in cards}) > 1:
            print("models were trained on different data or split seeds, so one validation split is not "
                  "held out for all: " + ", ".join(f"{m}: {split_of(c)}" for m, c in zip(args.models, cards)),
                  file=sys.stderr)
            return 2
    df = evaluation.eval_pairs(args.models[0], args.data or None, args.split, args.limit_queries)
    print(f"{df['query'].nunique()} queries, {len(df)} pairs ({args.split} split of {df.attrs['source']})")
    results = evaluation.compare_models(args.models, df)
    print()
    print(evaluation.comparison_markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
