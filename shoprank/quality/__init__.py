"""Ranking quality: the metrics, and the one quality gate every conversion, distillation, online
update and the benchmark pass through."""
