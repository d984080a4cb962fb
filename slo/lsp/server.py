"""The pygls wiring of ``slo lsp``: documents kept in step with the editor, diagnostics published on open
and, debounced, after changes (to the documents that read a changed one too), and each feature's
handler guarded, so an unexpected exception is logged to the editor and never stops the server."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import traceback
import warnings

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from .actions import code_actions, formatting
from .completion import completions
from .diagnostics import diagnostics
from .hover import hover
from .navigation import definition, symbols
from .positions import Codec, path_of
from .workspace import Document, Workspace

DEBOUNCE_S = 0.15  # after a change, the wait for the next one before diagnosing
TRIGGERS = ["=", "{", "/", ":"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slo")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


class SloServer(LanguageServer):
    def __init__(self, debounce_s: float = DEBOUNCE_S):
        super().__init__("slo", _version(), text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.docs = Workspace()
        self.debounce_s = debounce_s
        self.pending: dict[str, asyncio.Task] = {}

    @property
    def codec(self) -> Codec:
        return Codec(self.workspace.position_encoding or types.PositionEncodingKind.Utf16)

    def path(self, uri: str) -> str:
        """The absolute path of a document: its file's, or one in the current folder for an untitled one."""
        return path_of(uri) or os.path.join(os.getcwd(), re.sub(r"\W", "_", uri) + ".config")

    def sync(self, uri: str, version: int | None) -> str:
        """Copy the editor's text of a document (as pygls keeps it) into the workspace; its path."""
        path = self.path(uri)
        self.docs.open(path, uri, self.workspace.get_text_document(uri).source, version or 0)
        return path

    def document(self, uri: str) -> Document | None:
        return self.docs.documents.get(self.path(uri))

    def publish(self, path: str) -> None:
        doc = self.docs.documents.get(path)
        if doc is None:
            return
        found = diagnostics(self.docs, self.docs.analyze(path), self.codec)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(doc.uri, found, doc.version))

    def publish_with_dependents(self, path: str) -> None:
        for p in [path] + self.docs.dependents(path):
            self.publish(p)

    def schedule(self, path: str) -> None:
        """Diagnose path (and the documents that read it) once no change has come for debounce_s."""
        task = self.pending.pop(path, None)
        if task is not None:
            task.cancel()
        self.pending[path] = asyncio.get_running_loop().create_task(self._later(path))

    async def _later(self, path: str) -> None:
        await asyncio.sleep(self.debounce_s)
        self.pending.pop(path, None)
        guarded(self, self.publish_with_dependents)(path)

    def log_failure(self, what: str) -> None:
        message = f"slo lsp: {what} failed (the server goes on):\n{traceback.format_exc()}"
        self.window_log_message(types.LogMessageParams(types.MessageType.Error, message))


def guarded(server: SloServer, handler):
    """handler, with an unexpected exception logged to the editor (the result is then None)."""
    @functools.wraps(handler)
    def run(*args):
        try:
            return handler(*args)
        except Exception:
            server.log_failure(getattr(handler, "__name__", "a handler"))
            return None
    return run


def _on(server: SloServer, method: str, options=None):
    """A decorator registering a guarded handler of method."""
    def register(handler):
        return server.feature(method, options)(guarded(server, handler))
    return register


def _documents(server: SloServer) -> None:
    @_on(server, types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        server.publish(server.sync(params.text_document.uri, params.text_document.version))

    @_on(server, types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        server.schedule(server.sync(params.text_document.uri, params.text_document.version))

    @_on(server, types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        path = server.path(params.text_document.uri)
        dependents = server.docs.dependents(path)
        server.docs.close(path)
        task = server.pending.pop(path, None)
        if task is not None:
            task.cancel()
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(params.text_document.uri, []))
        for p in dependents:  # they read its saved text now
            server.publish(p)


def _at(server: SloServer, params) -> tuple[Document, int, int] | None:
    """(document, line, character column) of a text document position request."""
    doc = server.document(params.text_document.uri)
    if doc is None:
        return None
    line, col = server.codec.point(doc.lines, params.position)
    return doc, line, col


def _features(server: SloServer) -> None:
    on = functools.partial(_on, server)

    @on(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=TRIGGERS))
    def completion(params: types.CompletionParams):
        at = _at(server, params)
        return types.CompletionList(False, completions(server.docs, *at, server.codec)) if at else None

    @on(types.TEXT_DOCUMENT_HOVER)
    def on_hover(params: types.HoverParams):
        at = _at(server, params)
        return hover(server.docs, *at, server.codec) if at else None

    @on(types.TEXT_DOCUMENT_DEFINITION)
    def on_definition(params: types.DefinitionParams):
        at = _at(server, params)
        return definition(server.docs, *at, server.codec) if at else None

    @on(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbol(params: types.DocumentSymbolParams):
        doc = server.document(params.text_document.uri)
        return symbols(server.docs, doc, server.codec) if doc else None

    @on(types.TEXT_DOCUMENT_FORMATTING)
    def on_formatting(params: types.DocumentFormattingParams):
        doc = server.document(params.text_document.uri)
        return formatting(doc, server.codec) if doc else None

    @on(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    def code_action(params: types.CodeActionParams):
        doc = server.document(params.text_document.uri)
        return code_actions(doc, params.context.diagnostics) if doc else None


def make_server(debounce_s: float = DEBOUNCE_S) -> SloServer:
    server = SloServer(debounce_s)
    _documents(server)
    _features(server)
    return server


def serve() -> None:
    """Speak LSP on stdin and stdout until the editor says exit."""
    # Reading a .py config parses it (never runs it); Python's warnings about its text are not the server's.
    warnings.simplefilter("ignore", SyntaxWarning)
    make_server().start_io()
