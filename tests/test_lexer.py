"""The lexical rules of .config (SPEC section 2), run against both tokenizer twins.

Every test that takes the ``scan`` fixture runs twice: ``py`` (slo._parser_py)
and ``c`` (the compiled slo._parser). See _parser_py's docstring for the
shapes: a statement is (directive, line, col, items); a pair item is
(key, value, line, key_col, value_col, end_col, quote); a FROM item is
(path, line, col, end_col, quote); an error is (line, col, end_col, message).
"""

from __future__ import annotations

import importlib

import pytest

import slo
import slo.lexer
from slo import ConfigError
from slo.formats.config_lang import read_config

BARE, DOUBLE, SINGLE = 0, 1, 2


def ok(scan, text):
    statements, errors = scan(text)
    assert errors == []
    return statements


def only_error(scan, text):
    statements, errors = scan(text)
    assert len(errors) == 1, errors
    return errors[0]


def pairs(scan, text):
    """{key: value} over every statement of an error-free text."""
    return {item[0]: item[1] for _, _, _, items in ok(scan, text) for item in items}


# ---- the extension is really used ------------------------------------------

def test_extension_loaded_unless_disabled():
    """A silent fallback to the Python twin must not pass unnoticed."""
    if slo.lexer.NO_EXTENSIONS:
        assert slo.lexer.EXTENSION_LOADED is False
        assert slo.lexer.scan is importlib.import_module("slo._parser_py").scan
    else:
        assert slo.lexer.EXTENSION_LOADED is True, "the Cython tokenizer did not load: pip install -e ."
        assert slo.lexer.scan is importlib.import_module("slo._parser").scan


def test_twins_share_names():
    py = importlib.import_module("slo._parser_py")
    names = [n for n in slo.lexer.__all__ if n not in ("tokenize", "EXTENSION_LOADED", "NO_EXTENSIONS")]
    assert names == ["scan", "read", "chain", "type_values"] and all(callable(getattr(py, n)) for n in names)
    if not slo.lexer.NO_EXTENSIONS:
        c = importlib.import_module("slo._parser")
        assert all(getattr(c, n).__name__ == getattr(py, n).__name__ == n for n in names)


# ---- statements, items, positions --------------------------------------

def test_statement_shape_and_positions(scan):
    assert ok(scan, "MODEL n_layer=6 n_head=4") == [
        ("MODEL", 1, 1, [("n_layer", "6", 1, 7, 15, 16, BARE), ("n_head", "4", 1, 17, 24, 25, BARE)])]


def test_positions_over_several_lines(scan):
    text = ("# a comment\n"
            "\n"
            "  DATA   dataset=\"my data\"\tbatch_size=8\n"
            "TRAIN learning_rate='1e-3'\n")
    assert ok(scan, text) == [
        ("DATA", 3, 3, [("dataset", "my data", 3, 10, 18, 27, DOUBLE), ("batch_size", "8", 3, 28, 39, 40, BARE)]),
        ("TRAIN", 4, 1, [("learning_rate", "1e-3", 4, 7, 21, 27, SINGLE)]),
    ]


def test_columns_count_characters_not_bytes(scan):
    [(_, _, _, items)] = ok(scan, "DATA dataset=ünïcødé batch_size=2")
    assert items[0][1] == "ünïcødé"
    assert items[1][:6] == ("batch_size", "2", 1, 22, 33, 34)


def test_empty_text_and_blank_lines(scan):
    assert scan("") == ([], [])
    assert scan("\n\n   \n\t\n") == ([], [])
    assert scan("# only a comment") == ([], [])


def test_directive_without_pairs(scan):
    assert ok(scan, "MODEL\nDATA # nothing here") == [("MODEL", 1, 1, []), ("DATA", 2, 1, [])]


def test_directives_are_case_insensitive(scan):
    for word in ("model", "Model", "mOdEl", "MODEL"):
        assert ok(scan, f"{word} n_layer=2")[0][0] == "MODEL"
    assert ok(scan, "from base.config")[0][0] == "FROM"
    assert ok(scan, "lr_schedule decay_lr=false")[0][0] == "LR_SCHEDULE"


def test_keys_are_case_sensitive(scan):
    assert pairs(scan, "MODEL N_Layer=2") == {"N_Layer": "2"}


def test_unknown_directive_is_not_a_lexical_error(scan):
    assert ok(scan, "FOO a=1") == [("FOO", 1, 1, [("a", "1", 1, 5, 7, 8, BARE)])]


def test_value_may_contain_equals_and_backslashes(scan):
    assert pairs(scan, r"DATA a=b=c d=x\y e=C:\dir\file") == {"a": "b=c", "d": r"x\y", "e": r"C:\dir\file"}


# ---- BOM and line endings ---------------------------------------------------

def test_leading_bom_is_ignored(scan):
    assert ok(scan, "\ufeffMODEL n_layer=2") == [("MODEL", 1, 1, [("n_layer", "2", 1, 7, 15, 16, BARE)])]


def test_crlf_is_read_as_lf(scan):
    lf = "MODEL n_layer=2 \\\n  n_head=2\n# c\nDATA dataset='a b'\n"
    assert scan(lf.replace("\n", "\r\n")) == scan(lf)
    assert scan("\ufeff" + lf.replace("\n", "\r\n")) == scan(lf)
    assert pairs(scan, "MODEL n_layer=2\r\nDATA dataset=x\r\n") == {"n_layer": "2", "dataset": "x"}


def test_crlf_errors_are_located_as_with_lf(scan):
    lf = "MODEL a=1\nDATA b\nTRAIN c=\n"
    assert scan(lf.replace("\n", "\r\n")) == scan(lf)
    assert [e[:2] for e in scan(lf)[1]] == [(2, 6), (3, 7)]


# ---- comments ---------------------------------------------------------------

def test_comment_at_start_of_line_and_indented(scan):
    assert ok(scan, "# MODEL n_layer=1\n   # DATA x\n\t# y\nMODEL n_layer=2") == [
        ("MODEL", 4, 1, [("n_layer", "2", 4, 7, 15, 16, BARE)])]


def test_comment_after_whitespace_ends_the_statement(scan):
    assert pairs(scan, "MODEL n_layer=2 # n_head=3") == {"n_layer": "2"}
    assert pairs(scan, "MODEL n_layer=2\t# n_head=3") == {"n_layer": "2"}
    assert pairs(scan, "MODEL n_layer=2 #") == {"n_layer": "2"}


def test_hash_inside_a_bare_value_is_kept(scan):
    assert pairs(scan, "DATA dataset=a#b run=x# y=z#") == {"dataset": "a#b", "run": "x#", "y": "z#"}


def test_hash_inside_quotes_is_kept(scan):
    assert pairs(scan, "DATA a=\"x # y\" b='# z'") == {"a": "x # y", "b": "# z"}


def test_comment_may_hold_anything(scan):
    assert ok(scan, "# \"unterminated 'quote = \\x \\\nMODEL n_layer=1") == [
        ("MODEL", 2, 1, [("n_layer", "1", 2, 7, 15, 16, BARE)])]


def test_bare_value_cannot_start_with_hash(scan):
    line, col, end, message = only_error(scan, "DATA dataset=#x")
    assert (line, col, end) == (1, 14, 15)
    assert 'dataset="#..."' in message


# ---- continuation -----------------------------------------------------------

def test_continuation_joins_lines(scan):
    text = "MODEL n_layer=2 \\\n      n_head=4 \\\n  n_embd=64\nDATA batch_size=1"
    assert ok(scan, text) == [
        ("MODEL", 1, 1, [("n_layer", "2", 1, 7, 15, 16, BARE), ("n_head", "4", 2, 7, 14, 15, BARE),
                         ("n_embd", "64", 3, 3, 10, 12, BARE)]),
        ("DATA", 4, 1, [("batch_size", "1", 4, 6, 17, 18, BARE)]),
    ]


def test_continuation_right_after_a_value_or_directive(scan):
    assert ok(scan, "MODEL n_layer=2\\\nn_head=4") == [
        ("MODEL", 1, 1, [("n_layer", "2", 1, 7, 15, 16, BARE), ("n_head", "4", 2, 1, 8, 9, BARE)])]
    assert ok(scan, "MODEL\\\n n_layer=2") == [("MODEL", 1, 1, [("n_layer", "2", 2, 2, 10, 11, BARE)])]
    assert pairs(scan, "DATA a=\"x\"\\\n b='y'\\\n c=z") == {"a": "x", "b": "y", "c": "z"}


def test_blanks_after_the_backslash_still_continue(scan):
    assert pairs(scan, "MODEL n_layer=2 \\  \t\n n_head=4") == {"n_layer": "2", "n_head": "4"}


def test_comment_lines_inside_a_continuation_are_skipped(scan):
    text = "MODEL n_layer=2 \\\n# the heads\n    # and more\nn_head=4\nDATA batch_size=3"
    assert ok(scan, text) == [
        ("MODEL", 1, 1, [("n_layer", "2", 1, 7, 15, 16, BARE), ("n_head", "4", 4, 1, 8, 9, BARE)]),
        ("DATA", 5, 1, [("batch_size", "3", 5, 6, 17, 18, BARE)]),
    ]


def test_blank_line_ends_a_continuation(scan):
    assert ok(scan, "MODEL n_layer=2 \\\n\nDATA batch_size=3") == [
        ("MODEL", 1, 1, [("n_layer", "2", 1, 7, 15, 16, BARE)]),
        ("DATA", 3, 1, [("batch_size", "3", 3, 6, 17, 18, BARE)]),
    ]


def test_continuation_at_end_of_text(scan):
    assert pairs(scan, "MODEL n_layer=2 \\") == {"n_layer": "2"}
    assert pairs(scan, "MODEL n_layer=2 \\\n# trailing comment") == {"n_layer": "2"}


def test_backslash_not_at_end_of_line_is_text(scan):
    assert pairs(scan, r"DATA a=x\ b=y") == {"a": "x\\", "b": "y"}


def test_continuation_with_crlf(scan):
    assert pairs(scan, "MODEL n_layer=2 \\\r\n  n_head=4\r\n") == {"n_layer": "2", "n_head": "4"}


# ---- quoting ----------------------------------------------------------------

def test_double_quote_escapes(scan):
    [(_, _, _, [item])] = ok(scan, r'DATA a="q\" b\\ n\n t\t d\$"')
    # \$ comes out as $$, which interpolation reads as a literal $.
    assert item[1] == 'q" b\\ n\n t\t d$$'
    assert item[6] == DOUBLE


def test_double_quotes_keep_blanks_and_dollars(scan):
    assert pairs(scan, 'DATA a="  x  y " b="${max_iters}"') == {"a": "  x  y ", "b": "${max_iters}"}


def test_single_quotes_are_literal(scan):
    [(_, _, _, [item])] = ok(scan, r"""DATA a='no \n escapes \" $x ${y} \\ here'""")
    assert item[1] == r'no \n escapes \" $x ${y} \\ here'
    assert item[6] == SINGLE


def test_quote_kinds_and_empty_strings(scan):
    [(_, _, _, items)] = ok(scan, "LOGGING a=\"\" b='' c=x")
    assert [(i[0], i[1], i[6]) for i in items] == [("a", "", DOUBLE), ("b", "", SINGLE), ("c", "x", BARE)]
    assert [(i[4], i[5]) for i in items] == [(11, 13), (16, 18), (21, 22)]


def test_other_quote_inside_quotes(scan):
    assert pairs(scan, """DATA a="it's" b='say "hi"'""") == {"a": "it's", "b": 'say "hi"'}


def test_unknown_escape(scan):
    line, col, end, message = only_error(scan, r'DATA a="x\q"')
    assert (line, col, end) == (1, 10, 12)
    assert r"Unknown escape \q" in message and "single quotes" in message


def test_unterminated_double_quote(scan):
    assert only_error(scan, 'DATA a="abc') == (1, 8, 9, 'Unterminated double-quoted string: add the closing "')


def test_unterminated_single_quote(scan):
    assert only_error(scan, "DATA a='abc") == (1, 8, 9, "Unterminated single-quoted string: add the closing '")


def test_quotes_do_not_span_lines(scan):
    statements, errors = scan('DATA a="abc\nxyz" \nMODEL n_layer=1')
    assert errors[0][:2] == (1, 8) and "Unterminated double-quoted" in errors[0][3]
    assert ("MODEL", 3, 1, [("n_layer", "1", 3, 7, 15, 16, BARE)]) in statements


def test_quote_inside_a_bare_value(scan):
    line, col, end, message = only_error(scan, "DATA a=x\"y\"")
    assert (line, col) == (1, 9)
    assert "quote the whole value" in message


def test_text_right_after_a_closing_quote(scan):
    assert only_error(scan, "DATA a=\"x\"y")[:3] == (1, 11, 12)
    assert only_error(scan, "DATA a='x'y")[3] == "Expected whitespace after the closing quote"


# ---- key=value --------------------------------------------------------------

@pytest.mark.parametrize("text, fix", [
    ("MODEL n_layer = 6", "write n_layer=6"),
    ("MODEL n_layer =6", "write n_layer=6"),
    ("MODEL n_layer= 6", "write n_layer=6"),
    ("MODEL n_layer\t=\t6", "write n_layer=6"),
])
def test_whitespace_around_equals_shows_the_fix(scan, text, fix):
    line, col, end, message = only_error(scan, text)
    assert (line, col) == (1, 7)
    assert message.startswith("No whitespace is allowed around '='")
    assert message.endswith(fix)


def test_missing_value_is_an_error(scan):
    for text in ("LOGGING wandb_run_name=", "LOGGING wandb_run_name=\n", "LOGGING wandb_run_name= # c",
                 "LOGGING wandb_run_name= out_dir=x", "LOGGING wandb_run_name=\\\n out_dir=x"):
        line, col, end, message = only_error(scan, text)
        assert (line, col) == (1, 9), text
        assert message == 'Missing value after wandb_run_name=; write wandb_run_name="" for an empty string'


def test_empty_quoted_value_is_the_empty_string(scan):
    assert pairs(scan, "LOGGING wandb_run_name=\"\"") == {"wandb_run_name": ""}


def test_stray_equals(scan):
    assert only_error(scan, "MODEL =6") == (1, 7, 8, "Stray '=' with no key before it")
    assert only_error(scan, "MODEL n_layer=2 = n_head=2")[:2] == (1, 17)


def test_pair_without_equals(scan):
    assert only_error(scan, "MODEL n_layer") == (1, 7, 14, "Expected key=value, found 'n_layer' with no '='")
    assert only_error(scan, "MODEL n_layer=2 6")[:3] == (1, 17, 18)


def test_quoted_string_where_a_key_belongs(scan):
    assert only_error(scan, "MODEL \"n_layer\"=2")[:2] == (1, 7)
    assert "found a quoted string" in only_error(scan, "MODEL 'x'")[3]


@pytest.mark.parametrize("key", ["1layer", "n-layer", "n.layer", "ключ"])
def test_invalid_key(scan, key):
    line, col, end, message = only_error(scan, f"MODEL {key}=2")
    assert (line, col, end) == (1, 7, 7 + len(key))
    assert message.startswith(f"Invalid key {key!r}")


def test_statement_must_start_with_a_directive(scan):
    assert only_error(scan, "n_layer=6") == (1, 1, 10, "Expected a directive (such as MODEL or DATA) before n_layer=6")
    assert only_error(scan, "  @x y") == (1, 3, 5, "Expected a directive name, found '@x'")
    assert only_error(scan, "MODEL#x n_layer=1")[:2] == (1, 1)
    assert only_error(scan, "9MODEL n_layer=1")[:2] == (1, 1)


# ---- FROM -------------------------------------------------------------------

def test_from_paths(scan):
    assert ok(scan, "FROM base.config ../other 'with space.config' \"q\\\"uote\"") == [
        ("FROM", 1, 1, [("base.config", 1, 6, 17, BARE), ("../other", 1, 18, 26, BARE),
                        ("with space.config", 1, 27, 46, SINGLE), ('q"uote', 1, 47, 56, DOUBLE)])]


def test_from_with_continuation_and_several_lines(scan):
    assert ok(scan, "from a \\\n  b\nFROM c") == [
        ("FROM", 1, 1, [("a", 1, 6, 7, BARE), ("b", 2, 3, 4, BARE)]), ("FROM", 3, 1, [("c", 3, 6, 7, BARE)])]


def test_from_needs_a_path(scan):
    assert only_error(scan, "FROM") == (1, 1, 5, "FROM needs at least one path")
    assert only_error(scan, "FROM # nothing")[3] == "FROM needs at least one path"


def test_from_without_path_after_a_continuation(scan):
    """The error points at the FROM, and the lines after it keep their numbers."""
    assert scan("FROM \\\n\nMODEL n_layer=1") == (
        [("MODEL", 3, 1, [("n_layer", "1", 3, 7, 15, 16, BARE)])], [(1, 1, 5, "FROM needs at least one path")])
    assert scan("  FROM \\\n  # only a comment\n")[1] == [(1, 3, 7, "FROM needs at least one path")]


def test_from_path_errors(scan):
    assert only_error(scan, "FROM 'base")[:2] == (1, 6)
    assert only_error(scan, "FROM ba'se")[:2] == (1, 8)


# ---- error recovery ---------------------------------------------------------

def test_every_lexical_error_is_reported(scan):
    text = ("MODEL n_layer = 6\n"
            "DATA dataset=\"open\n"
            "TRAIN seed=1\n"
            "LOGGING out_dir=\n"
            "ENV A='x\n"
            "ADVANCED =1\n"
            "SYSTEM device\n")
    statements, errors = scan(text)
    assert [(e[0], e[1]) for e in errors] == [(1, 7), (2, 14), (4, 9), (5, 7), (6, 10), (7, 8)]
    assert statements == [("TRAIN", 3, 1, [("seed", "1", 3, 7, 12, 13, BARE)])]


def test_a_statement_with_an_error_is_dropped_whole(scan):
    statements, errors = scan("MODEL n_layer=2 n_head 6 n_embd=8\nDATA batch_size=1")
    assert len(errors) == 1
    assert statements == [("DATA", 2, 1, [("batch_size", "1", 2, 6, 17, 18, BARE)])]


def test_errors_inside_continuations_keep_line_numbers(scan):
    text = ("MODEL n_layer=2 \\\n"
            "  # comment\n"
            "  n_head = 4 \\\n"
            "  n_embd=8\n"
            "DATA batch_size 1\n"
            "TRAIN seed=\"x\n"
            "LOGGING out_dir=o\n")
    statements, errors = scan(text)
    assert [(e[0], e[1]) for e in errors] == [(3, 3), (5, 6), (6, 12)]
    assert statements == [("LOGGING", 7, 1, [("out_dir", "o", 7, 9, 17, 18, BARE)])]


def test_error_tuples_are_plain(scan):
    _, errors = scan("MODEL x")
    [(line, col, end, message)] = errors
    assert type(line) is int and type(col) is int and type(end) is int and type(message) is str
    assert end > col


# ---- tokenize(), the public wrapper -----------------------------------------

def test_tokenize_returns_statements():
    assert slo.tokenize("MODEL n_layer=2") == [("MODEL", 1, 1, [("n_layer", "2", 1, 7, 15, 16, BARE)])]
    assert slo.tokenize is slo.lexer.tokenize


def test_tokenize_raises_config_error_with_every_diagnostic():
    with pytest.raises(ConfigError) as info:
        slo.tokenize("MODEL n_layer = 6\nDATA x\n", path="f.config")
    errors = info.value.errors
    assert [(d.path, d.line, d.col) for d in errors] == [("f.config", 1, 7), ("f.config", 2, 6)]
    assert errors[1].source == "DATA x"
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("f.config:1:7: error: No whitespace is allowed around '='")


def test_tokenize_shows_the_right_source_line():
    """Lines are split at \\n only, as the tokenizer counts them (not at \\x1c or \\u2028)."""
    text = "\ufeffDATA dataset=a\u2028b other=c\x1cd\r\nMODEL n_layer\r\n"
    with pytest.raises(ConfigError) as info:
        slo.tokenize(text)
    [d] = info.value.errors
    assert (d.line, d.col, d.source) == (2, 7, "MODEL n_layer")


# ---- unknown directives are reported by the loader --------------------------

def test_unknown_directive_reported_by_read_config_with_suggestion():
    src = read_config("MODLE n_layer=2\nWIBBLE x=1\n", "f.config")
    assert [(d.line, d.col, d.end_col) for d in src.errors] == [(1, 1, 6), (2, 1, 7)]
    assert src.errors[0].message == "Unknown directive MODLE (did you mean MODEL?)"
    assert src.errors[1].message.startswith("Unknown directive WIBBLE (directives: FROM, MODEL,")
    assert src.sets == []


def test_read_config_collects_sets_bases_and_env():
    src = read_config("FROM a b\nFROM c\nmodel n_layer=2\nENV X=1\ndata batch_size=3\n", "f.config")
    assert [b[0] for b in src.bases] == ["a", "b", "c"]
    assert [i[:2] for i in src.sets] == [("n_layer", "2"), ("batch_size", "3")]
    assert [i[:2] for i in src.env] == [("X", "1")]
    assert src.errors == []
