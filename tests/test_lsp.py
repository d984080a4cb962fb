"""slo lsp: driven end to end as an editor drives it (a real LSP client over stdio, one server for the
module), and its features' logic fed any text at all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402

from slo.lsp.actions import code_actions  # noqa: E402
from slo.lsp.completion import completions  # noqa: E402
from slo.lsp.diagnostics import diagnostics  # noqa: E402
from slo.lsp.hover import hover  # noqa: E402
from slo.lsp.navigation import definition, symbols  # noqa: E402
from slo.lsp.positions import Codec, uri_of  # noqa: E402
from slo.lsp.workspace import Workspace  # noqa: E402
from slo.resolve import load_with_files  # noqa: E402
from slo.source import read_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PUBLISH = types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS
WAIT_S = 120  # a server that never answers fails the test, however slow the machine
lsp_test = pytest.mark.asyncio(loop_scope="module")

BASE = "MODEL n_layer=6 n_head=6 n_embd=384\nTRAIN max_iters=100\n"
CHILD = "FROM base.config\nMODEL n_embd=100\nLOGGING eval_interval=${max_iters}\n"


# ---- the resolver reads files through a hook --------------------------------

def test_the_resolver_reads_bases_through_read_text(tmp_path):
    (tmp_path / "base.config").write_text(BASE)
    (tmp_path / "child.config").write_text("FROM base.config\n")
    base = str(tmp_path / "base.config")

    def editor(real, display):
        return ("MODEL n_layer=3\n", None) if real == base else read_file(real, display)

    config, files = load_with_files(str(tmp_path / "child.config"), read_text=editor)
    assert config["n_layer"] == 3 and config["n_head"] == 12 and base in files


# ---- an editor's session ----------------------------------------------------

class Published:
    """Every publishDiagnostics the client receives, in order; wait for one that matches."""

    def __init__(self, client: LanguageClient):
        self.client, self.seen, self.event = client, [], asyncio.Event()
        self._arm()

    def _arm(self) -> None:
        self.client.protocol.wait_for_notification(PUBLISH).add_done_callback(self._received)

    def _received(self, future) -> None:
        if future.exception() is not None:  # the server has exited
            return
        self._arm()  # before anything else, so no notification goes unseen
        self.seen.append(future.result())
        self.event.set()

    def mark(self) -> int:
        return len(self.seen)

    async def after(self, mark: int, uri: str) -> list[types.Diagnostic]:
        """The diagnostics of the first publication for uri after mark."""
        async def first():
            while True:
                for params in self.seen[mark:]:
                    if params.uri == uri:
                        return list(params.diagnostics)
                self.event.clear()
                await self.event.wait()
        return await asyncio.wait_for(first(), WAIT_S)


class Editor:
    def __init__(self, client: LanguageClient, folder: Path):
        self.client, self.folder, self.published = client, folder, Published(client)
        self.versions: dict[str, int] = {}

    def uri(self, name: str) -> str:
        return uri_of(str(self.folder / name))

    async def open(self, name: str, text: str, language: str = "slo") -> list[types.Diagnostic]:
        mark, uri = self.published.mark(), self.uri(name)
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri, language, 1, text)))
        return await self.published.after(mark, uri)

    async def change(self, name: str, text: str, wait_for: str | None = None) -> list[types.Diagnostic]:
        """Replace a document's text; the diagnostics then published for wait_for (default: name)."""
        mark, uri = self.published.mark(), self.uri(name)
        self.versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            [types.TextDocumentContentChangeWholeDocument(text)]))
        return await self.published.after(mark, self.uri(wait_for or name))

    def at(self, name: str, line: int, character: int) -> dict:
        return {"text_document": types.TextDocumentIdentifier(self.uri(name)),
                "position": types.Position(line, character)}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "slo", "lsp"]), scope="module")
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


@pytest.fixture(scope="module")
def editor(client, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lsp")
    (folder / "base.config").write_text(BASE)
    (folder / "other.toml").write_text("")
    return Editor(client, folder)


@lsp_test
async def test_diagnostics_follow_the_edits_and_the_unsaved_base(editor):
    found = await editor.open("child.config", CHILD)
    assert [(d.range.start.line, d.range.start.character, d.range.end.character) for d in found] == [(1, 13, 16)]
    assert found[0].message == "n_embd=100 is not divisible by n_head=6 (n_head from base.config:1:24)"
    related = found[0].related_information
    assert related and related[0].location.uri == editor.uri("base.config")
    assert related[0].location.range.start == types.Position(0, 23)

    assert await editor.change("child.config", CHILD.replace("100", "120")) == []

    # The base, open with unsaved text, is what the child resolves against; the child is diagnosed again.
    assert await editor.open("base.config", BASE) == []
    found = await editor.change("base.config", BASE.replace("n_head=6", "n_head=7"), wait_for="child.config")
    assert [d.message for d in found] == ["n_embd=120 is not divisible by n_head=7 (n_head from base.config:1:24)"]

    # An error inside the base: shown at the child's FROM, with the base's place beside it.
    found = await editor.change("base.config", "MODEL n_layer=abc\n", wait_for="child.config")
    assert len(found) == 1 and found[0].range.start == types.Position(0, 5)
    assert found[0].message == "In base.config:1:15: n_layer=abc is not an int"
    where = found[0].related_information[0].location
    assert where.uri == editor.uri("base.config") and where.range.start == types.Position(0, 14)
    assert await editor.change("base.config", BASE, wait_for="child.config") == []


@lsp_test
async def test_a_cycle_a_missing_base_and_a_fifo_are_diagnostics(editor):
    (editor.folder / "loop.config").write_text("FROM cycle.config\n")
    found = await editor.open("cycle.config", "FROM loop.config\nFROM missing.config\n")
    messages = sorted(d.message for d in found)
    assert messages[0].startswith("Config file not found: ") and messages[0].endswith("missing.config")
    assert "FROM cycle: " in messages[1] and messages[1].endswith("cycle.config")
    os.mkfifo(editor.folder / "pipe.config")
    found = await editor.open("piped.config", "FROM pipe.config\n")
    assert [d.range.start.line for d in found] == [0] and "not a regular file" in found[0].message


@lsp_test
async def test_a_py_config_is_diagnosed_never_run(editor):
    marker = editor.folder / "ran"
    text = f"import os\nos.system('touch {marker}')\nn_layer = 'x'\n"
    found = await editor.open("legacy.py", text, language="python")
    assert found and not marker.exists()
    assert await editor.client.text_document_hover_async(types.HoverParams(**editor.at("legacy.py", 2, 1))) is None


@lsp_test
async def test_a_toml_config_gets_diagnostics_and_hover(editor):
    found = await editor.open("run.toml", "extends = ['base.config']\n[model]\nn_head = 5\n", language="toml")
    # The rule's error is at the base's n_embd; it is shown at this file's n_head, which it names.
    assert [(d.message, d.range.start) for d in found] == [(
        "In base.config:1:33: n_embd=384 is not divisible by n_head=5 (n_head from run.toml:3:10)",
        types.Position(2, 9))]
    shown = await editor.client.text_document_hover_async(types.HoverParams(**editor.at("run.toml", 2, 2)))
    assert "Set to `5` at line 3 of this file; the resolved value is unknown" in shown.contents.value
    assert await editor.change("run.toml", "extends = ['base.config']\n[model]\nn_head = 8\n") == []
    shown = await editor.client.text_document_hover_async(types.HoverParams(**editor.at("run.toml", 2, 2)))
    assert "Here: `8`, from line 3 of this file, overriding 6 from base.config:1, the default 12" in shown.contents.value


COMPLETE = "FROM base.config\nMODEL n_layer=6 \nSYSTEM dtype= compile=\nDATA dataset=${\n\n"


def labels(result) -> list[str]:
    return [item.label for item in (result.items if isinstance(result, types.CompletionList) else result)]


@lsp_test
async def test_completion(editor):
    await editor.open("complete.config", COMPLETE)
    ask = editor.client.text_document_completion_async

    directives = labels(await ask(types.CompletionParams(**editor.at("complete.config", 4, 0))))
    assert "MODEL" in directives and "SYSTEM" in directives and "FROM" not in directives  # FROM comes first
    assert "FROM" in labels(await ask(types.CompletionParams(**editor.at("complete.config", 0, 2))))

    keys = (await ask(types.CompletionParams(**editor.at("complete.config", 1, 16)))).items
    assert {item.label for item in keys} == {"n_layer", "n_head", "n_embd", "dropout", "bias", "vocab_size",
                                             "use_rope", "use_rmsnorm", "use_swiglu", "activation"}
    n_head = next(item for item in keys if item.label == "n_head")
    assert n_head.detail == "int, default 12; >= 1" and n_head.documentation == "Attention heads per block."

    assert labels(await ask(types.CompletionParams(**editor.at("complete.config", 2, 13)))) == [
        "auto", "float32", "bfloat16", "float16"]
    assert labels(await ask(types.CompletionParams(**editor.at("complete.config", 2, 22)))) == ["True", "False"]

    refs = labels(await ask(types.CompletionParams(**editor.at("complete.config", 3, 15))))
    assert "max_iters" in refs and "env:" in refs

    paths = labels(await ask(types.CompletionParams(**editor.at("complete.config", 0, 5))))
    assert "base.config" in paths and "other.toml" in paths and "complete.config" not in paths


@lsp_test
async def test_the_sweep_s_settings_are_completed_and_hovered_with_their_docs(editor):
    await editor.open("sweep.config", "SWEEP n_layer=1,2 metric=val_loss goal=\n")
    keys = (await editor.client.text_document_completion_async(
        types.CompletionParams(**editor.at("sweep.config", 0, 18)))).items
    metric = next(item for item in keys if item.label == "metric")
    assert metric.detail == "sweep setting" and metric.documentation.startswith("What ranks the trials")
    assert labels(await editor.client.text_document_completion_async(
        types.CompletionParams(**editor.at("sweep.config", 0, 39)))) == ["min", "max"]
    shown = (await editor.client.text_document_hover_async(
        types.HoverParams(**editor.at("sweep.config", 0, 20)))).contents.value
    assert shown.startswith("**metric** (sweep setting)") and "hellaswag/acc_norm" in shown


@lsp_test
async def test_hover_says_where_a_value_came_from(editor):
    await editor.open("hover.config", "FROM base.config\nMODEL n_layer=8\nLR_SCHEDULE lr_decay_iters=${max_iters}\n")
    ask = editor.client.text_document_hover_async
    shown = (await ask(types.HoverParams(**editor.at("hover.config", 1, 8)))).contents.value
    assert "**n_layer** (MODEL): int, default 12; 1 <= x <= 4096" in shown
    assert "Number of transformer blocks." in shown
    assert "Here: `8`, from line 2 of this file, overriding 6 from base.config:1, the default 12" in shown
    shown = (await ask(types.HoverParams(**editor.at("hover.config", 2, 32)))).contents.value
    assert shown.startswith("`${max_iters}` = `100`, from base.config:2, overriding the default 600000")

    # With an error on another line, the values are those of the file without that line.
    await editor.change("hover.config", "FROM base.config\nMODEL n_layer=8\nTRAIN seed=x\n")
    shown = (await ask(types.HoverParams(**editor.at("hover.config", 1, 8)))).contents.value
    assert "Here: `8`, from line 2 of this file, overriding 6 from base.config:1, the default 12 (resolved without " \
           "the lines that have errors)" in shown


@lsp_test
async def test_definition(editor):
    await editor.open("define.config", "FROM base.config\nMODEL n_layer=8\nTRAIN seed=${n_head}\nMODEL n_layer=9\n")
    ask = editor.client.text_document_definition_async
    base = editor.uri("base.config")
    assert [loc.uri for loc in await ask(types.DefinitionParams(**editor.at("define.config", 0, 7)))] == [base]
    found = await ask(types.DefinitionParams(**editor.at("define.config", 2, 15)))
    assert [(loc.uri, loc.range.start) for loc in found] == [(base, types.Position(0, 23))]
    found = await ask(types.DefinitionParams(**editor.at("define.config", 1, 7)))  # the later assignment wins
    assert [(loc.uri, loc.range.start.line) for loc in found] == [
        (editor.uri("define.config"), 3), (editor.uri("define.config"), 1), (base, 0)]


@lsp_test
async def test_document_symbols(editor):
    await editor.open("symbols.config", CHILD)
    found = await editor.client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(editor.uri("symbols.config"))))
    assert [(s.name, s.detail, s.range.start.line) for s in found] == [
        ("FROM", "base.config", 0), ("MODEL", "n_embd", 1), ("LOGGING", "eval_interval", 2)]
    assert found[1].children[0].selection_range.start == types.Position(1, 6)


@lsp_test
async def test_quick_fix_for_did_you_mean(editor):
    found = await editor.open("typo.config", "MODLE n_layer=2\nMODEL n_embed=64\nTRAIN seed=${max_iter}\n")
    assert [d.message for d in found] == ["Unknown directive MODLE (did you mean MODEL?)",
                                          "Unknown key n_embed (did you mean n_embd?)",
                                          "Unknown key max_iter in ${max_iter} (did you mean max_iters?)"]
    actions = await editor.client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(editor.uri("typo.config")), found[1].range, types.CodeActionContext(found)))
    edits = [(a.title, a.edit.changes[editor.uri("typo.config")][0]) for a in actions]
    assert [(title, e.new_text, e.range.start.line, e.range.start.character) for title, e in edits] == [
        ("Change to MODEL", "MODEL", 0, 0), ("Change to n_embd", "n_embd", 1, 6),
        ("Change to ${max_iters}", "${max_iters}", 2, 11)]


@lsp_test
async def test_a_half_typed_line_is_diagnosed_and_fixed(editor):
    found = await editor.open("typing.config", "MODEL n_layer=6\nDATA batch_size")
    assert [d.message for d in found] == ["Expected key=value, found 'batch_size' with no '='"]
    found = await editor.change("typing.config", "MODEL n_layer = 6\n")
    assert found[0].data["fix"] == "n_layer=6"
    assert await editor.change("typing.config", "MODEL n_layer=6\nDATA batch_size=8\n") == []


@lsp_test
async def test_columns_are_utf16_code_units(editor):
    line = "LOGGING out_dir='😀 é' eval_interval=0"
    found = await editor.open("emoji.config", line + "\n")
    before = line[:line.index("=0") + 1]
    assert [(d.range.start.character, d.range.end.character) for d in found] == [
        (len(before.encode("utf-16-le")) // 2, len(before.encode("utf-16-le")) // 2 + 1)]


def test_a_change_cancels_the_diagnosis_scheduled_before_it():
    from slo.lsp.server import SloServer

    server, done = SloServer(debounce_s=0), []
    server.publish_with_dependents = done.append

    async def edits():
        server.schedule("a.config")
        server.schedule("a.config")
        server.schedule("b.config")
        await asyncio.gather(*server.pending.values())

    asyncio.run(edits())
    assert done == ["a.config", "b.config"] and not server.pending


def test_an_unexpected_exception_in_a_handler_is_logged_not_raised():
    from slo.lsp.server import guarded

    logged = []

    class Server:
        def log_failure(self, what):
            logged.append(what)

    def completion(params):
        raise RuntimeError("a bug")

    assert guarded(Server(), completion)(None) is None and logged == ["completion"]


def test_an_open_document_past_the_size_limit_is_refused_as_a_file_is(tmp_path):
    from slo.source import MAX_FILE_BYTES

    workspace, path = Workspace(), str(tmp_path / "big.config")
    workspace.open(path, uri_of(path), "# " + "x" * MAX_FILE_BYTES + "\n")
    found = diagnostics(workspace, workspace.analyze(path), Codec())
    assert [d.message for d in found] == ["big.config is larger than 16,777,216 bytes: too large for a config file"]


# ---- the features' logic on any text ---------------------------------------

SAMPLES = [p.read_text() for p in sorted((REPO / "configs").glob("*.config"))] + [CHILD, COMPLETE]
PIECES = ["=", "${", "${env:", "}", "\\\n", '"', "'", "#", " ", "\n", "\t", "\r\n", "\ufeff", "FROM ", "MODEL ",
          "ENV ", "SWEEP ", "n_layer", "base.config", "😀", "$$", ":-", "-1e9", "None", "\x00", "FROM pipe.config\n",
          "FROM sub\n", "FROM loop.config\n", "FROM base.toml legacy.py\n", "sub/", "~/"]


@st.composite
def edited(draw):
    """A sample config with a few random edits: slices cut out, pieces (or any text) put in."""
    text = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 12))
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=6))
        text = text[:at] + piece + text[at + cut:]
    return text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "base.config").write_text(BASE)
    (folder / "loop.config").write_text("FROM fuzz.config\n")
    (folder / "base.toml").write_text("[model]\nn_layer = 3\n")
    (folder / "legacy.py").write_text("n_layer = 4\n")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "pipe.config")
    return folder


def exercise(folder: Path, name: str, text: str, data) -> None:
    """Every feature of a document with text, at points drawn in and around it, as the server runs them."""
    workspace, codec = Workspace(), Codec()
    path = str(folder / name)
    doc = workspace.open(path, uri_of(path), text, 1)
    found = diagnostics(workspace, workspace.analyze(path), codec)
    code_actions(doc, found)
    symbols(workspace, doc, codec)
    for _ in range(data.draw(st.integers(0, 6))):
        line = data.draw(st.integers(-1, len(doc.lines)))
        col = data.draw(st.integers(-1, len(doc.lines[line]) + 1 if 0 <= line < len(doc.lines) else 3))
        completions(workspace, doc, line, col, codec)
        hover(workspace, doc, line, col, codec)
        definition(workspace, doc, line, col, codec)


@given(text=edited(), data=st.data(), name=st.sampled_from(["fuzz.config", "fuzz.toml", "fuzz.py", "fuzz.txt"]))
def test_any_edit_of_a_config_is_served(folder, text, data, name):
    exercise(folder, name, text, data)


@given(text=st.text(st.characters(exclude_categories=[])), data=st.data())  # lone surrogates too
def test_any_text_is_served(folder, text, data):
    exercise(folder, "fuzz.config", text, data)


@given(raw=st.binary(max_size=200), data=st.data())
def test_random_bytes_as_text_are_served(folder, raw, data):
    exercise(folder, "fuzz.config", raw.decode("utf-8", "replace"), data)


# ---- the editors' files and the command -------------------------------------

def test_the_vscode_extension_highlights_every_directive():
    import json
    import re

    from slo.schema import DIRECTIVES

    folder = REPO / "editors" / "vscode"
    package = json.loads((folder / "package.json").read_text())
    assert (folder / package["main"]).is_file()
    grammar_file = folder / package["contributes"]["grammars"][0]["path"]
    grammar = json.loads(grammar_file.read_text())["repository"]
    json.loads((folder / package["contributes"]["languages"][0]["configuration"]).read_text())
    named = set(re.search(r"\(\?i:([A-Z_|]+)\)", grammar["directive"]["match"]).group(1).split("|"))
    assert named | {"FROM"} == set(DIRECTIVES)
    assert re.search(r"\(\?i:FROM\)", grammar["from"]["begin"])




def test_the_command_names_the_extra_when_pygls_is_missing(monkeypatch, capsys):
    import argparse

    from slo.lsp import add_arguments, run

    monkeypatch.setitem(sys.modules, "pygls", None)  # import pygls raises ImportError
    parser = argparse.ArgumentParser()
    add_arguments(parser, "lsp")
    assert run(parser.parse_args([]), []) == 1
    assert capsys.readouterr().err == "slo lsp needs pygls: pip install 'slo[lsp]'\n"


def _framed(message: dict) -> bytes:
    import json

    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_the_server_exits_when_told_to():
    """initialize, shutdown and exit, written to `slo lsp --stdio` at once (as a client may): it answers
    the two requests and exits with status 0."""
    talk = b"".join(_framed(m) for m in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None,
                                                                       "rootUri": None}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"}))
    done = subprocess.run([sys.executable, "-m", "slo", "lsp", "--stdio"], input=talk, capture_output=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b'"completionProvider"' in done.stdout and b'"id": 2, "jsonrpc": "2.0", "result": null' in done.stdout


def test_the_command_line_parser_does_not_import_pygls():
    code = ("import sys\nfrom slo.cli import parse\nns, rest = parse(['lsp', '--stdio'])\n"
            "assert ns.stdio and 'pygls' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
