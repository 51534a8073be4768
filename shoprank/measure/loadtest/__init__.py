"""`make loadtest` and `make perf`: latency targets under load, capacity steps and perf_analyzer."""
