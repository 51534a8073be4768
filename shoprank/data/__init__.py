"""Judgments in: mappings of public datasets, loaders, the split by query, the synthetic default
data and the test requests that benchmarks and load tests send."""
