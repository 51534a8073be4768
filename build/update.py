#!/usr/bin/env python3
"""`make update`: feedback logs -> bias-corrected fine-tune from the serving model -> ONNX/INT8 ->
quality gate -> next ranker version, loaded into the running server (see shoprank.online)."""
import _path  # noqa: F401

from shoprank.online import main_update

if __name__ == "__main__":
    main_update()
