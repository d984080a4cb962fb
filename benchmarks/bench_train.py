"""Training throughput of slo beside a nanoGPT-style loop, for the shipped configs.

    python benchmarks/bench_train.py                        # small, standard, large at their batch
    python benchmarks/bench_train.py small --steps=20
    python benchmarks/bench_train.py standard large --batch_size=4 --block_size=128

The same as `slo bench`; the JSON goes to benchmarks/results/ unless --json says otherwise.
"""

import sys
import time
from pathlib import Path

from slo.runner.bench import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--json" or a.startswith("--json=") for a in argv):
        argv += ["--json", str(RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")]
    sys.exit(main(argv))
