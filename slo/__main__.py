"""``python -m slo VERB ...``: the same as ``slo VERB ...``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
