"""How fast slo lsp answers an edit: the time from a didChange to the publishDiagnostics it causes.

    python benchmarks/bench_lsp.py [--rounds 30] [--out benchmarks/results/bench_lsp.json]

The server runs as editors run it (``python -m slo lsp``, over stdio, driven by
pygls's client). Each case opens one document, then edits it ``--rounds``
times (a value toggled between two valid ones), waiting each time for the
diagnostics. Reported per case, in milliseconds (median and 90th percentile):

  open           didOpen to its diagnostics (no debounce)
  change         didChange to its diagnostics, the server's debounce included
  change - wait  the same less the debounce: the server's own work and the transport
  in process     the same analysis and diagnostics called directly, without the server

Cases: configs/standard.config, and a generated 2,000-line config at the top
of a chain of five FROM levels (each base a few hundred lines). The server's
resident memory (VmRSS) is read after the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from resultfile import write_json  # noqa: E402
from slo.lsp.diagnostics import diagnostics  # noqa: E402
from slo.lsp.positions import Codec, uri_of  # noqa: E402
from slo.lsp.server import DEBOUNCE_S  # noqa: E402
from slo.lsp.workspace import Workspace  # noqa: E402

LEVELS = 5
TOP_LINES = 2000
BASE_LINES = 300


def _filler(prefix: str, lines: int) -> list[str]:
    """`lines` lines of ENV statements, continued, commented and interpolated."""
    out: list[str] = []
    i = 0
    while len(out) < lines:
        if i % 10 == 0:
            out.append(f"# {prefix} part {i // 10}")
        out.append(f'ENV {prefix}_{i}_A=value{i} {prefix}_{i}_B="quoted ${{env:{prefix}_{i}_A}}" \\')
        out.append(f"    {prefix}_{i}_C='literal {i}'")
        i += 1
    return out[:lines]  # a continued statement cut at the end of the file ends there


def chain(folder: Path) -> Path:
    """level0.config .. level{LEVELS}.config, each FROM the one below; the top one is TOP_LINES long."""
    below = None
    for level in range(LEVELS + 1):
        top = level == LEVELS
        lines = [f"FROM level{level - 1}.config"] if below else []
        lines += [f"MODEL n_layer={level + 2} n_head=6 n_embd=384", "TRAIN max_iters=1000 learning_rate=6e-4",
                  "LR_SCHEDULE warmup_iters=${n_layer}0 lr_decay_iters=${max_iters}"]
        lines += _filler(f"L{level}", (TOP_LINES if top else BASE_LINES) - len(lines))
        below = folder / f"level{level}.config"
        below.write_text("\n".join(lines) + "\n")
    return below


class Client(LanguageClient):
    def __init__(self):
        super().__init__("bench_lsp", "1")
        self.published: asyncio.Queue = asyncio.Queue()

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def got(params: types.PublishDiagnosticsParams):
            self.published.put_nowait((time.perf_counter(), params))

    async def next_for(self, uri: str) -> tuple[float, list]:
        while True:
            at, params = await self.published.get()
            if params.uri == uri:
                return at, list(params.diagnostics)


async def _case(client: Client, path: Path, rounds: int) -> dict:
    uri, text = uri_of(str(path)), path.read_text()
    start = time.perf_counter()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "slo", 1, text)))
    at, found = await client.next_for(uri)
    opened = at - start
    assert not found, [d.message for d in found]
    # As editors send an edit: the range it replaces. The first digit of max_iters goes 2, back, 2, ...
    before, _, _ = text.partition("max_iters=")
    line = before.count("\n")
    digit = types.Range(types.Position(line, len(before) - before.rfind("\n") - 1 + len("max_iters=")),
                     types.Position(line, len(before) - before.rfind("\n") + len("max_iters=")))
    first = text[len(before) + len("max_iters=")]
    edits = [text.replace("max_iters=" + first, "max_iters=2", 1), text]
    changes = []
    for version in range(2, rounds + 2):
        change = types.TextDocumentContentChangePartial(range=digit, text="2" if version % 2 == 0 else first)
        start = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version), [change]))
        at, found = await client.next_for(uri)
        assert not found, [d.message for d in found]
        changes.append(at - start)
    return {"lines": text.count("\n"), "open_ms": opened * 1e3, **_stats("change", changes),
            **_stats("change_minus_debounce", [c - DEBOUNCE_S for c in changes]),
            **_stats("in_process", _in_process(path, edits, rounds))}


def _in_process(path: Path, edits: list[str], rounds: int) -> list[float]:
    workspace, codec = Workspace(), Codec()
    times = []
    for version in range(rounds):
        start = time.perf_counter()
        workspace.open(str(path), uri_of(str(path)), edits[version % 2], version)
        diagnostics(workspace, workspace.analyze(str(path)), codec)
        times.append(time.perf_counter() - start)
    return times


def _stats(name: str, seconds: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in seconds)
    return {f"{name}_median_ms": statistics.median(ms), f"{name}_p90_ms": ms[int(0.9 * (len(ms) - 1))]}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(rounds: int) -> dict:
    client = Client()
    await client.start_io(sys.executable, "-m", "slo", "lsp", cwd=str(ROOT))
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases["standard.config"] = await _case(client, ROOT / "configs" / "standard.config", rounds)
        cases[f"generated {TOP_LINES} lines, {LEVELS} FROM levels"] = await _case(client, chain(Path(tmp)), rounds)
        rss = _rss_mib(client._server.pid)
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return {"debounce_ms": DEBOUNCE_S * 1e3, "rounds": rounds, "server_rss_mib": rss, "cases": cases}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", help="JSON file to write (default: benchmarks/results/bench_lsp-DATE.json)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.rounds))
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    print(f"debounce {result['debounce_ms']:.0f} ms; server RSS {result['server_rss_mib']:.1f} MiB")
    for name, case in result["cases"].items():
        print(f"{name} ({case['lines']} lines): open {case['open_ms']:.1f} ms; change {case['change_median_ms']:.1f} ms "
              f"(p90 {case['change_p90_ms']:.1f}); less the debounce {case['change_minus_debounce_median_ms']:.1f} ms "
              f"(p90 {case['change_minus_debounce_p90_ms']:.1f}); in process {case['in_process_median_ms']:.2f} ms "
              f"(p90 {case['in_process_p90_ms']:.2f})")
    write_json(result, "bench_lsp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
