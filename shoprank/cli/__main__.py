"""`python -m shoprank.cli`: the same as the `shoprank` command."""
import sys

from . import main

sys.exit(main())
