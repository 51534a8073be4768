"""`make eval` and `make compare`: quality of every variant of a model and of baselines on the same rows."""
