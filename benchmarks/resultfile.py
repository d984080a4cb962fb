"""Where the benchmarks write their figures: a JSON file, in benchmarks/results/ unless one is named."""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_json(data, name: str, path=None) -> Path:
    """data as indented JSON at path, or at benchmarks/results/NAME-YYYYmmdd-HHMMSS.json; says where."""
    path = Path(path) if path else RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path
