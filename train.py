"""nanoGPT's habit: ``python train.py configs/small.config --batch_size=8``, the same as ``slo train``."""

import sys

from slo.runner.train_command import main

if __name__ == "__main__":
    sys.exit(main(prog="python train.py"))
