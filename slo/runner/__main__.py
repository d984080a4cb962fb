"""``python -m slo.runner FILE... [--key=value ...]``: the same as ``slo train``."""

import sys

from .train_command import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m slo.runner"))
