"""The editor's open documents, and what each one resolves to through the real resolver.

Every file the resolver reads comes through ``Workspace.read_text``: an open
document's unsaved text, else the file on disk (``slo.source.read_file``, so
a FIFO or a folder is a diagnostic, never a wait). Paths are absolute, so a
diagnostic's path is the file's own. A ``.py`` config is read by the reader
that never runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import Config
from ..errors import ConfigError, Diagnostic
from ..formats import reader
from ..paths import base_paths
from ..resolve import load_with_files
from ..source import MAX_FILE_BYTES, Source, read_file
from .cursor import split_lines


@dataclass
class Document:
    """One open document: its absolute path, the editor's text and version."""

    path: str
    uri: str
    text: str
    version: int = 0
    _lines: list[str] | None = field(default=None, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = split_lines(self.text)
        return self._lines

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.path)[1].lower()


@dataclass
class Analysis:
    """What one document resolved to: its Config (None on errors), every error (in any file), the
    document's own warnings, and the files read, with their texts."""

    path: str
    config: Config | None
    errors: list[Diagnostic]
    warnings: list[Diagnostic]
    texts: dict[str, str]  # real path -> the text read, for every file the resolution read
    stamp: tuple  # (path, version) of each open document it read: it is stale once one changes
    _values: Config | None = None
    _values_tried: bool = False

    def values(self, workspace: "Workspace") -> Config | None:
        """The Config, or where it has errors, the Config of the text with the lines at fault left
        out (so hover still knows the other values), or None when that has errors too."""
        if self.config is not None or self._values_tried:
            return self.config or self._values
        self._values_tried = True
        bad = {d.line for d in self.errors if d.path == self.path and d.line}
        if bad and all(d.path == self.path for d in self.errors):
            lines = split_lines(self.texts.get(self.path, ""))
            text = "\n".join("" if i + 1 in bad else line for i, line in enumerate(lines))
            self._values = resolve(self.path, workspace.reader_with({self.path: text}))[0]
        return self._values


def resolve(path: str, read_text) -> tuple[Config | None, list[Diagnostic], dict[str, str]]:
    """(Config or None, errors, texts read) of the file at path, every file read through read_text."""
    texts: dict[str, str] = {}

    def recording(real: str, display: str):
        text, problem = read_text(real, display)
        if text is not None:
            texts[real] = text
        return text, problem

    try:
        config, _ = load_with_files(path, read_text=recording)
    except ConfigError as e:
        return None, e.errors, texts
    return config, [], texts


class Workspace:
    """The open documents by absolute path, and their analyses, made when asked and kept until a
    document they read changes."""

    def __init__(self):
        self.documents: dict[str, Document] = {}
        self._analyses: dict[str, Analysis] = {}
        self._sources: dict[tuple[str, str], Source] = {}  # (path, text) -> its Source, the last few

    def open(self, path: str, uri: str, text: str, version: int = 0) -> Document:
        doc = self.documents[path] = Document(path, uri, text, version)
        return doc

    def close(self, path: str) -> None:
        self.documents.pop(path, None)
        self._analyses.pop(path, None)

    def read_text(self, real: str, display: str) -> tuple[str | None, str | None]:
        """An open document's text, else the file's (slo.source.read_file), with the same size limit."""
        doc = self.documents.get(real)
        if doc is None:
            return read_file(real, display)
        if len(doc.text) * 4 > MAX_FILE_BYTES and len(doc.text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
            return None, f"{display} is larger than {MAX_FILE_BYTES:,} bytes: too large for a config file"
        return doc.text, None

    def reader_with(self, texts: dict[str, str]):
        """read_text, with texts (path -> text) in place of the documents' own."""
        def read_text(real: str, display: str):
            return (texts[real], None) if real in texts else self.read_text(real, display)
        return read_text

    def _stamp(self, texts: dict[str, str]) -> tuple:
        return tuple((p, self.documents[p].version, id(self.documents[p].text)) for p in texts if p in self.documents)

    def analyze(self, path: str) -> Analysis:
        """The analysis of the open document at path, made again only when a document it read changed."""
        done = self._analyses.get(path)
        if done is not None and done.stamp == self._stamp(done.texts):
            return done
        doc = self.documents[path]
        config, errors, texts = resolve(path, self.read_text)
        texts.setdefault(path, doc.text)
        if config is not None:
            warnings = [w for w in config.warnings if w.path == path]
        else:
            warnings = self.source(path, doc.text).warnings
        analysis = self._analyses[path] = Analysis(path, config, errors, warnings, texts, self._stamp(texts))
        return analysis

    def dependents(self, path: str) -> list[str]:
        """The other open documents whose last analysis read the file at path."""
        return [p for p, a in self._analyses.items() if p != path and path in a.texts and p in self.documents]

    def source(self, path: str, text: str) -> Source:
        """The Source of one file's text, as its format's reader makes it (never running a .py)."""
        key = (path, text)
        src = self._sources.get(key)
        if src is None:
            read = reader(os.path.splitext(path)[1].lower()) or reader(".config")
            src = read(text, path)
            if len(self._sources) > 64:
                self._sources.clear()
            self._sources[key] = src
        return src

    def via(self, analysis: Analysis, path: str) -> tuple | None:
        """The FROM item of the analysed document through which the file at path is read, or None."""
        own = self.source(analysis.path, analysis.texts[analysis.path])
        for item in own.bases:
            start = base_paths(item, os.path.dirname(analysis.path))[1]
            seen, todo = set(), [start]
            while todo:
                real = todo.pop()
                if real == path:
                    return item
                if real in seen or real not in analysis.texts:
                    continue
                seen.add(real)
                todo += [base_paths(b, os.path.dirname(real))[1] for b in self.source(real, analysis.texts[real]).bases]
        return None
