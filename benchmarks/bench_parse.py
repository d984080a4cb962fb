"""How fast slo reads configs: tokenize and full load, Cython vs the Python twin,
against tomllib and json reading the same values.

    python benchmarks/bench_parse.py [--repeat 15] [--out benchmarks/results/bench_parse.json]
    python benchmarks/bench_parse.py --instructions [--config configs/standard.config]

For each shipped config and a generated large file it reports the median time
of repeated, interleaved rounds (and MB/s), with the garbage collector off
while a round runs (as timeit does), of:
  tokenize (c)      slo._parser.scan
  tokenize (py)     slo._parser_py.scan
  loads (c)         slo.loads of the file's text: tokenize, resolve FROM, interpolate, type, validate
  load (c)          slo.load of the path: the same, with reading the file
  load (py)         the same with the Python twin (read and type_values)
  tomllib.loads     the same config written as TOML (its explicitly set values)
  json.loads        the same values as flat JSON

--instructions counts instead, with valgrind's callgrind (which the machine's load does not
touch), the instructions of one slo.loads of the config's text, one tomllib.loads of the TOML
that `slo convert` writes for it (comments included, as the .config has them) and one of the
plain TOML twin above: each the difference between a run of 2,000 calls and a run of none,
divided by 2,000, so the interpreter's start and imports are not counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import slo  # noqa: E402
from slo import _parser_py, resolve  # noqa: E402
from slo.formats import config_lang  # noqa: E402
from slo.schema import SECTION_KEYS  # noqa: E402
from slo.lexer import EXTENSION_LOADED  # noqa: E402


def calls_per_round(fn, budget: float = 0.05) -> int:
    """How many calls of fn make one timed round of about `budget` seconds."""
    fn()
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t0 > budget or number > 1 << 20:
            return number
        number *= 4


def median_times(fns: dict, repeat: int) -> dict:
    """Median seconds per call of each fn over `repeat` rounds. The rounds interleave the
    candidates, so a change in the machine's load touches all of them alike; the garbage
    collector is off while a round runs, as timeit does, so one candidate's garbage is not
    collected in another's time."""
    numbers = {name: calls_per_round(fn) for name, fn in fns.items()}
    rounds: dict = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            number = numbers[name]
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                rounds[name].append((time.perf_counter() - t0) / number)
            finally:
                gc.enable()
    return {name: statistics.median(times) for name, times in rounds.items()}


def toml_twin(cfg) -> str:
    tables: dict = {}
    for section, keys in SECTION_KEYS.items():
        values = {k: cfg[k] for k in keys if cfg.is_set(k) and cfg[k] is not None}
        if values:
            tables[section.lower()] = values
    if cfg.env:
        tables["env"] = cfg.env
    return tomli_w.dumps(tables)


def json_twin(cfg) -> str:
    return json.dumps({k: cfg[k] for k in cfg if cfg.is_set(k)} | {f"ENV.{k}": v for k, v in cfg.env.items()})


def large_config(lines: int) -> str:
    """A big but valid config: every key once, then many ENV statements."""
    out = ["# generated for the benchmark\n", "MODEL n_layer=6 n_head=6 n_embd=384 dropout=0.1\n",
           "DATA dataset=builtin batch_size=32 block_size=256\n"]
    for i in range(lines):
        if i % 10 == 0:
            out.append(f"# section {i // 10}: comments are skipped\n")
        out.append(f'ENV VAR_{i}_A=value{i} VAR_{i}_B="quoted {i}" \\\n    VAR_{i}_C=\'literal {i}\'\n')
    return "".join(out)


def with_python_tokenizer(fn):
    """fn with the Python twin's read (the .config reader's) and type_values (the resolver's)."""
    def run():
        saved = config_lang.read, resolve.type_values
        config_lang.read, resolve.type_values = _parser_py.read, _parser_py.type_values
        try:
            return fn()
        finally:
            config_lang.read, resolve.type_values = saved
    return run


def bench_case(name: str, path: Path, repeat: int) -> dict:
    text = path.read_text()
    size = len(text.encode())
    cfg = slo.load(path)
    toml_text = toml_twin(cfg)
    json_text = json_twin(cfg)
    assert tomllib.loads(toml_text) and json.loads(json_text)
    fns = {}
    if EXTENSION_LOADED:
        from slo._parser import scan as c_scan
        fns["tokenize (c)"] = lambda: c_scan(text)
    fns["tokenize (py)"] = lambda: _parser_py.scan(text)
    fns["loads (c)" if EXTENSION_LOADED else "loads"] = lambda: slo.loads(text, path=path)
    fns["load (c)" if EXTENSION_LOADED else "load"] = lambda: slo.load(path)
    fns["load (py)"] = with_python_tokenizer(lambda: slo.load(path))
    fns["tomllib.loads"] = lambda: tomllib.loads(toml_text)
    fns["json.loads"] = lambda: json.loads(json_text)
    timings = median_times(fns, repeat)
    return {"name": name, "bytes": size, "keys_set": sum(1 for k in cfg if cfg.is_set(k)), "env": len(cfg.env),
            "seconds": timings, "mb_per_s": {k: size / v / 1e6 for k, v in timings.items()}}


def candidates(config: Path, folder: Path) -> dict:
    """The calls --instructions counts, by name."""
    from slo.convert import convert
    text = config.read_text()
    converted = folder / (config.stem + ".toml")
    convert([str(config)], str(converted))
    toml_text = converted.read_text()
    plain_text = toml_twin(slo.loads(text, path=config))
    assert tomllib.loads(toml_text) and tomllib.loads(plain_text)
    return {"slo.loads": lambda: slo.loads(text, path=config), "tomllib.loads (slo convert's TOML)": lambda: tomllib.loads(
        toml_text), "tomllib.loads (plain TOML twin)": lambda: tomllib.loads(plain_text)}


def run_calls(config: Path, name: str, calls: int) -> None:
    """What one callgrind run measures: calls of one candidate, after one call that warms it."""
    with tempfile.TemporaryDirectory() as tmp:
        fn = candidates(config, Path(tmp))[name]
        fn()
        for _ in range(calls):
            fn()


def count_instructions(config: Path, calls: int = 2000) -> dict:
    """Instructions per call of each candidate, counted by callgrind."""
    def collected(name: str, n: int) -> int:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
                   "--config", str(config), "--calls", name, str(n)]
        run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        found = re.search(r"Collected : (\d+)", run.stderr)
        if run.returncode or not found:
            sys.exit(f"callgrind failed on {name}: {run.stderr[-2000:]}")
        return int(found.group(1))

    with tempfile.TemporaryDirectory() as tmp:
        names = list(candidates(config, Path(tmp)))
    return {name: (collected(name, calls) - collected(name, 0)) // calls for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--large-lines", type=int, default=5000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_parse.json"))
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument("--config", default=str(ROOT / "configs" / "standard.config"), help="--instructions' config")
    parser.add_argument("--calls", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)  # one callgrind run
    args = parser.parse_args(argv)
    if args.calls:
        run_calls(Path(args.config), args.calls[0], int(args.calls[1]))
        return 0
    if args.instructions:
        counts = count_instructions(Path(args.config))
        for name, count in counts.items():
            print(f"{name:40} {count:>10,} instructions")
        slo_count = counts.pop("slo.loads")
        for name, count in counts.items():
            print(f"slo.loads vs {name}: {count / slo_count:.1f}x fewer")
        return 0

    cases = [(p.name, p) for p in sorted((ROOT / "configs").glob("*.config"))]
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "large-generated.config"
        big.write_text(large_config(args.large_lines))
        cases.append((big.name, big))
        results = [bench_case(name, path, args.repeat) for name, path in cases]

    columns = list(results[0]["seconds"])
    print(f"{'config':28} {'KB':>6} " + " ".join(f"{c:>15}" for c in columns))
    for r in results:
        cells = " ".join(f"{r['seconds'][c] * 1e6:>13.1f}us" for c in columns)
        print(f"{r['name']:28} {r['bytes'] / 1024:6.1f} {cells}")
    print()
    for r in results:
        ratios = []
        if "tokenize (c)" in r["seconds"]:
            ratios.append(f"tokenize c/py speedup {r['seconds']['tokenize (py)'] / r['seconds']['tokenize (c)']:.1f}x")
        for name in ("loads", "load"):
            seconds = r["seconds"].get(f"{name} (c)", r["seconds"].get(name))
            ratios.append(f"{name} vs tomllib {r['seconds']['tomllib.loads'] / seconds:.1f}x faster")
        mbs = r["mb_per_s"].get("tokenize (c)", r["mb_per_s"]["tokenize (py)"])
        ratios.append(f"tokenize {mbs:.1f} MB/s")
        print(f"{r['name']:28} " + ", ".join(ratios))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "parse", "python": sys.version.split()[0], "machine": platform.machine(),
              "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "extension_loaded": EXTENSION_LOADED, "results": results}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
