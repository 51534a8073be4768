"""Triton glue: the Python-backend models, config templates, repository generation and ranker versions."""
