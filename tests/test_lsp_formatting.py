"""slo lsp's formatting: slo fmt's layout as one whole-document edit, over stdio as an editor asks for it,
and for any text (nothing when it does not tokenize, never a crash)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pygls")
pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402

from slo.errors import ConfigError  # noqa: E402
from slo.fmt import format_text  # noqa: E402
from slo.lsp.actions import formatting  # noqa: E402
from slo.lsp.positions import Codec, uri_of  # noqa: E402
from slo.lsp.workspace import Workspace  # noqa: E402
import test_lsp  # noqa: E402
from test_lsp import edited, lsp_test  # noqa: E402

client, editor = test_lsp.client, test_lsp.editor  # its fixtures: a server over stdio and a folder

UGLY = "model n_layer=6   n_head=6\nFROM base.config\n"


def apply(text: str, edit: types.TextEdit, codec: Codec) -> str:
    """text with edit made as a client makes it (lines end at \\n, \\r\\n or \\r; columns in code units)."""
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def offset(position: types.Position) -> int:
        line = text[starts[position.line]:].split("\n")[0].split("\r")[0]
        return starts[position.line] + codec.from_client(line, position.character)

    return text[:offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]


async def format_request(editor, name: str):
    return await editor.client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(editor.uri(name)), types.FormattingOptions(tab_size=4, insert_spaces=True)))


@lsp_test
async def test_formatting_is_one_edit_of_slo_fmts_layout(editor):
    await editor.open("fmt.config", UGLY)
    (edit,) = await format_request(editor, "fmt.config")
    assert edit.new_text == format_text(UGLY, str(editor.folder / "fmt.config"))
    assert edit.new_text == "FROM base.config\n\nMODEL n_layer=6 n_head=6\n"
    assert (edit.range.start, edit.range.end) == (types.Position(0, 0), types.Position(2, 0))
    await editor.change("fmt.config", edit.new_text)
    assert not await format_request(editor, "fmt.config")


@lsp_test
async def test_a_text_that_does_not_tokenize_gets_no_edit_and_the_server_goes_on(editor):
    await editor.open("quote.config", "MODEL n_layer=6\nLOGGING out_dir='out\n")
    assert not await format_request(editor, "quote.config")
    await editor.open("after.config", "data   batch_size=4\n")
    (edit,) = await format_request(editor, "after.config")
    assert edit.new_text == "DATA batch_size=4\n"


def served(name: str, text: str, codec: Codec | None = None):
    workspace = Workspace()
    path = "/nowhere/" + name
    return formatting(workspace.open(path, uri_of(path), text, 1), codec or Codec())


@pytest.mark.parametrize("text", ["\ufeffmodel a=1", "model a=1\r\ndata b=2\r\n", "model a=1\r\n# c\r", "model a='😀'  "])
@pytest.mark.parametrize("encoding", list(types.PositionEncodingKind))
def test_the_edit_spans_the_whole_text_as_the_client_counts_it(text, encoding):
    codec = Codec(encoding)
    (edit,) = served("a.config", text, codec)
    assert apply(text, edit, codec) == format_text(text)


def test_other_formats_are_left_alone():
    assert served("a.toml", "[model]\nn_layer  =  2\n") is None
    assert served("a.py", "n_layer  =  2\n") is None


@given(text=edited() | st.text(st.characters(exclude_categories=[])))
def test_any_text_is_formatted_or_left_alone(text):
    codec = Codec()
    found = served("fuzz.config", text, codec)
    try:
        expected = format_text(text)
    except ConfigError:
        assert found is None
        return
    assert apply(text, found[0], codec) == expected if found else expected == text
