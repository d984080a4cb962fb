"""The installed package, as a user has it: every module of the source tree imports, every command runs once.

    python smoke.py SOURCE_TREE/slo

Run from a folder outside the checkout, in an environment where slo was installed from its wheel:
it fails when a module of the source tree is missing from the installed package, when slo is
imported from the checkout instead, or when any command exits with an unexpected status.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

# What a module may lack here: the packages of extras this environment leaves out (lm_eval: slo[eval]).
UNINSTALLED_EXTRAS = {"lm_eval"}
TEXT = "".join(f"def f{i}(x):\n    return x * {i % 7} + {i % 3}\n\n" for i in range(300))


def modules(source: Path) -> list[str]:
    names = []
    for path in sorted([*source.rglob("*.py"), *source.rglob("*.pyx")]):
        parts = list(path.relative_to(source.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] != "__main__":
            names.append(".".join(parts))
    return names


def slo(*args: str, status: int = 0, stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
    print("$ slo " + " ".join(args), flush=True)
    text = not isinstance(stdin, bytes)
    r = subprocess.run(["slo", *args], input=stdin, capture_output=True, text=text, timeout=900)
    if r.returncode != status:
        sys.exit(f"slo {' '.join(args)}: exit {r.returncode}, expected {status}\n{r.stdout}\n{r.stderr}")
    return r


def lsp_message(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def main(source: Path) -> None:
    import slo as package

    checkout = source.resolve().parent
    where = Path(package.__file__).resolve()
    if checkout in where.parents:
        sys.exit(f"slo was imported from the checkout ({where}), not from the installed wheel")
    names = modules(source)
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if e.name not in UNINSTALLED_EXTRAS:
                missing.append(f"{name} ({e})")
    if missing:
        sys.exit("modules of the source tree that the installed package cannot import:\n  " + "\n  ".join(missing))
    print(f"imported {len(names)} modules from {where.parent}")

    Path("corpus.txt").write_text(TEXT, encoding="utf-8")
    Path("tiny.config").write_text(
        "MODEL n_layer=1 n_head=2 n_embd=32\n"
        "DATA dataset=tiny data_dir=data batch_size=4 block_size=16\n"
        "TRAIN max_iters=4 learning_rate=1e-2\n"
        "LR_SCHEDULE warmup_iters=1 lr_decay_iters=4\n"
        "LOGGING out_dir=out eval_interval=2 eval_iters=1 log_interval=1\n"
        "SYSTEM device=cpu dtype=float32 compile=False\n", encoding="utf-8")
    Path("sweep.config").write_text("FROM tiny.config\nLOGGING out_dir=sweep\nSWEEP learning_rate=1e-2,3e-3\n",
                                    encoding="utf-8")
    assert slo("--version").stdout.strip() == f"slo {package.__version__}"
    slo("--help")
    slo("keys")
    slo("check", "tiny.config")
    slo("show", "tiny.config", "--format", "toml")
    slo("convert", "tiny.config", "-o", "tiny.toml")
    slo("check", "tiny.toml")
    if slo("fmt", "-", stdin="model  n_layer=1\n").stdout != "MODEL n_layer=1\n":
        sys.exit("slo fmt - did not write its input in the canonical layout")
    json.loads(slo("keys", "--json-schema").stdout)
    slo("completion", "bash")
    slo("prepare", "corpus.txt", "-o", "data/tiny")
    slo("train", "tiny.config")
    slo("sample", "out", "--max_new_tokens=8", "--prompt=def")
    slo("export", "out", "-o", "exported")
    slo("eval", "--help")
    if "pip install 'slo[eval]'" not in slo("eval", "out", "--tasks", "t", status=1).stderr:
        sys.exit("slo eval without lm-evaluation-harness did not say how to install it")
    slo("plot", "out", "-o", "plot.png")
    slo("runs", ".")
    slo("diff", "tiny.config", "tiny.toml")
    slo("sweep", "sweep.config")
    slo("bench", "tiny.config", "--steps", "1", "--warmup", "0", "--json", "bench.json")
    exchange = b"".join(lsp_message(m) for m in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"}))
    reply = slo("lsp", stdin=exchange).stdout
    if b'"capabilities"' not in reply:
        sys.exit(f"slo lsp did not answer initialize: {reply[:500]!r}")
    print("every command ran")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
