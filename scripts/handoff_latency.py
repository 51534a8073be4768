#!/usr/bin/env python3
"""What one hand-off between two processes costs on this machine after an idle gap, and what a
few microseconds of numpy work cost right after the same gap.

Every step of the `rank` ensemble is such a hand-off, several times over: the server's threads
wake the tokenizer's, ranker's and sorter's stub processes (Python backend) and are woken by
them, and the sorter's and the client's side wake after sleeping through the engine's call. On a
virtual machine a core that went idle sleeps deeper the longer it was idle, and waking a thread
there costs far more than on a busy core: that, not our Python code, sets the floor of what
Triton adds around the engine (docs/benchmark.md, "Why Triton's overhead stays above 10% here").

Two processes pass one byte back and forth over pipes; before each timed round trip the
measuring process sleeps for the gap. Then, after the same gaps, the sorter's own arithmetic on
50 logits (an argsort and a sigmoid) is timed alone: code that ran warm a moment ago runs many
times slower after the core idled. Prints p50 and p90 per gap.

    python3 scripts/handoff_latency.py [--gaps-ms 0 1 5 25] [--trips 1000]

About a minute with the defaults.
"""
from __future__ import annotations

import argparse
import os
import time


def round_trips(gap_s: float, trips: int) -> list[int]:
    """Round-trip times (ns) of a one-byte ping-pong with a child process, each after `gap_s` idle."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(trips + 1):
            os.read(to_child, 1)
            os.write(from_child, b"x")
        os._exit(0)
    os.write(from_parent, b"x")  # one untimed trip: the child has started
    os.read(to_parent, 1)
    times = []
    for _ in range(trips):
        time.sleep(gap_s)
        start = time.perf_counter_ns()
        os.write(from_parent, b"x")
        os.read(to_parent, 1)
        times.append(time.perf_counter_ns() - start)
    os.waitpid(pid, 0)
    for fd in (to_child, from_parent, to_parent, from_child):
        os.close(fd)
    return sorted(times)


def work_after_idle(gap_s: float, trips: int) -> list[int]:
    """Times (ns) of an argsort and a sigmoid of 50 logits, each after `gap_s` idle."""
    import numpy as np

    logits = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    times = []
    for _ in range(trips):
        time.sleep(gap_s)
        start = time.perf_counter_ns()
        np.argsort(-logits, kind="stable")
        1.0 / (1.0 + np.exp(-logits))
        times.append(time.perf_counter_ns() - start)
    return sorted(times)


def _p50_p90(times: list[int]) -> str:
    return f"p50 {times[len(times) // 2] / 1000:7.1f} us, p90 {times[int(len(times) * 0.9)] / 1000:7.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaps-ms", type=float, nargs="+", default=[0, 1, 5, 25])
    parser.add_argument("--trips", type=int, default=1000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.trips} round trips per gap")
    for gap in args.gaps_ms:
        print(f"idle {gap:5.1f} ms before the hand-off: round trip {_p50_p90(round_trips(gap / 1000, args.trips))}")
    for gap in args.gaps_ms:
        print(f"idle {gap:5.1f} ms before argsort + sigmoid of 50: {_p50_p90(work_after_idle(gap / 1000, args.trips))}")


if __name__ == "__main__":
    main()
