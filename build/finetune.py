#!/usr/bin/env python3
"""Fine-tune the cross-encoder (see `--help`; Makefile: make finetune DATA=... BASE_MODEL=...)."""
import _path  # noqa: F401

from shoprank.train import main

if __name__ == "__main__":
    main()
