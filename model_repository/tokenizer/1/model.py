"""Triton Python model 'tokenizer' of the rank ensemble; the logic lives in shoprank.triton_models."""
from shoprank.triton_models import TokenizerModel as TritonPythonModel  # noqa: F401
