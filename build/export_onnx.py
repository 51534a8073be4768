#!/usr/bin/env python3
"""Export the fine-tuned model to ONNX; fails unless ONNX Runtime matches PyTorch on real pairs."""
import argparse
import sys

import _path  # noqa: F401

from shoprank import config
from shoprank.build_steps import FP32_ONNX, ONNX_MAX_ABS_DIFF, BuildError, export_onnx

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"))
    parser.add_argument("--out", default=str(FP32_ONNX))
    args = parser.parse_args()
    try:
        report = export_onnx(args.model, args.out)
    except BuildError as exc:
        sys.exit(f"export failed: {exc}")
    print(f"ONNX opset {report['opset']} -> {report['onnx']}; ONNX Runtime vs PyTorch on "
          f"{report['pairs_checked']} real pairs: max |Δlogit| {report['max_abs_logit_diff']:.2e} "
          f"(limit {ONNX_MAX_ABS_DIFF:.0e})")
