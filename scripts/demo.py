#!/usr/bin/env python3
"""`make demo`: fine-tune -> ONNX -> INT8 -> model repository -> serve -> query -> stop,
each stage through its own make target, with the time of each stage printed at the end."""
import argparse
import subprocess
import sys
import time

STAGES = [("fine-tune", "finetune"), ("ONNX export", "onnx"), ("INT8", "int8"),
          ("model repository", "repository"), ("serve", "serve"), ("queries (gRPC + HTTP)", "query")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setup-seconds", default="", help="'start end' epoch seconds of the set-up stage")
    args = parser.parse_args()
    times = []
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
            if code:
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
    if failed:
        print(f"demo failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
