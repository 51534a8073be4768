"""Triton Python model 'ranker' of the rank ensemble; the logic lives in shoprank.triton_models."""
from shoprank.triton_models import RankerModel as TritonPythonModel  # noqa: F401
