#!/usr/bin/env python3
"""Generate model_repository/ (configs from shoprank/templates, engine, tokenizer) for a target."""
import _path  # noqa: F401

from shoprank.repository import main

if __name__ == "__main__":
    main()
