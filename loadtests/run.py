#!/usr/bin/env python3
"""`make loadtest` / `make perf`: Locust gated on loadtests/targets.toml, capacity steps and
perf_analyzer for the rank ensemble; starts a server from model_repository/ when none runs.
The logic is in shoprank/loadtest.py; `python loadtests/run.py -h` lists the options."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shoprank.loadtest import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
