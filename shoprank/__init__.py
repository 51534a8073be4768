"""shoprank: a fine-tuned BERT cross-encoder served as a Triton ranking ensemble.

The one package shared by build scripts, Triton models, clients, load tests and tests.
"""
import os

# Weights and tokenizers come from local folders only; nothing is fetched from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
