#!/usr/bin/env python3
"""`make demo`: fine-tune -> ONNX -> INT8 -> distilled student -> personal head -> model
repository -> serve -> query (and one query for two simulated shoppers) -> stop, each stage
through its own make target, with the time of each stage and the served variant (and why)
printed at the end. The student is optional: when its gate refuses it (or distilling fails), the
repository serves the full INT8 model and says why."""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

STAGES = [("fine-tune", "finetune"), ("ONNX export", "onnx"), ("INT8", "int8"),
          ("distilled student", "distill"), ("personal head", "personal-head"), ("model repository", "repository"),
          ("serve", "serve"), ("queries (gRPC + HTTP)", "query"), ("two shoppers, one query", "query-shoppers")]
# distill: its failure falls back to the full INT8 model (shoprank.convert.served); personal-head:
# a head its gate refuses is not served, and query-shoppers then finds no two pages that differ.
OPTIONAL = {"distill", "personal-head", "query-shoppers"}
SERVED = Path(__file__).resolve().parent.parent / "model_repository" / "ranker" / "served.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setup-seconds", default="", help="'start end' epoch seconds of the set-up stage")
    args = parser.parse_args()
    times, notes = [], []
    if args.setup_seconds:
        start, end = (float(x) for x in args.setup_seconds.split())
        times.append(("set-up (.venv)", end - start))
    failed = None
    try:
        for label, target in STAGES:
            print(f"\n=== {label}: make {target}", flush=True)
            started = time.time()
            code = subprocess.call(["make", "--no-print-directory", target])
            times.append((label, time.time() - started))
            if code and target in OPTIONAL:
                notes.append(f"make {target} exited {code}" + (": serving falls back to the full INT8 model"
                                                                 if target == "distill" else ""))
            elif code:
                failed = f"make {target} failed (exit {code})"
                break
    finally:
        started = time.time()
        subprocess.call(["make", "--no-print-directory", "stop"])
        times.append(("stop", time.time() - started))
    print("\n=== stage times")
    for label, seconds in times:
        print(f"  {label:<24} {seconds:7.1f} s")
    print(f"  {'total':<24} {sum(s for _, s in times):7.1f} s")
    for note in notes:
        print(f"note: {note}")
    if SERVED.exists() and not failed:
        served = json.loads(SERVED.read_text())
        print(f"served: the {served['variant']} ({served['engine']}): {served['why']}")
    if failed:
        print(f"demo failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
