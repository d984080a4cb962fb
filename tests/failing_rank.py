"""``python tests/failing_rank.py CONFIG [--key=value ...]``: ``slo train`` with one rank made to fail.

SLO_TEST_FAIL_AT=RANK:ITER[:hang] makes that rank raise (or hang) when it reaches ITER. The
patch is made at the top level, so it reaches every rank: the launcher's spawned processes
run this file again (as ``__mp_main__``) before they train.
"""

from __future__ import annotations

import os
import re
import sys
import time

from slo.errors import RunError
from slo.runner.train_command import main
from slo.runner.trainer import Trainer

SPEC = re.fullmatch(r"(\d+):(\d+)(?::(raise|hang))?", os.environ.get("SLO_TEST_FAIL_AT", ""))
if SPEC is None:
    raise SystemExit("set SLO_TEST_FAIL_AT=RANK:ITER or RANK:ITER:hang")
RANK, AT, MODE = int(SPEC[1]), int(SPEC[2]), SPEC[3] or "raise"
real_step = Trainer.train_step


def failing_step(self, *args, **kwargs):
    if self.rank == RANK and self.progress.iter_num == AT:
        if MODE == "hang":
            while True:
                time.sleep(60)
        raise RunError(f"SLO_TEST_FAIL_AT made rank {RANK} fail at iter {AT}")
    return real_step(self, *args, **kwargs)


Trainer.train_step = failing_step

if __name__ == "__main__":
    sys.exit(main(prog="failing_rank.py"))
