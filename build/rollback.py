#!/usr/bin/env python3
"""`make rollback`: retire the newest ranker version; the previous one serves again (shoprank.online)."""
import _path  # noqa: F401

from shoprank.online import main_rollback

if __name__ == "__main__":
    main_rollback()
