"""Triton Python model 'sorter' of the rank ensemble; the logic lives in shoprank.triton_models."""
from shoprank.triton_models import SorterModel as TritonPythonModel  # noqa: F401
