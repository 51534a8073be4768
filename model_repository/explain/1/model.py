"""Triton Python model 'explain' (asked on demand, beside the rank ensemble); the logic lives in shoprank.explain."""
from shoprank.explain.triton_model import ExplainModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
