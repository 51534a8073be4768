"""Triton Python model 'tokenizer' of the rank ensemble; the logic lives in shoprank.serving.triton.models."""
from shoprank.serving.triton.models import TokenizerModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
