#!/usr/bin/env python3
"""`make simulate`: simulated shoppers, rounds of serve -> log -> update -> swap, corrected vs naive
(see shoprank.simulator); writes reports/online_learning.{png,json}."""
import _path  # noqa: F401

from shoprank.simulator import main

if __name__ == "__main__":
    main()
