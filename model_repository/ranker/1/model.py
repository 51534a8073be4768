"""Triton Python model 'ranker' of the rank ensemble; the logic lives in shoprank.serving.triton.models."""
from shoprank.serving.triton.models import RankerModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
