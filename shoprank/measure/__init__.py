"""Measuring a deployment: quality of every variant (eval), speed side by side (bench) and
latency targets under load (load tests)."""
