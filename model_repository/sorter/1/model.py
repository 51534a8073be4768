"""Triton Python model 'sorter' of the rank ensemble; the logic lives in shoprank.serving.triton.models."""
from shoprank.serving.triton.models import SorterModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
