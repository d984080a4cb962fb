"""The loading fast paths of the tokenizer module: both twins agree, and agree with the schema.

type_values types plain values without the schema's converters; whatever
it types must be exactly what the converter gives, and whatever it leaves
must be left by both twins alike.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo import _parser_py
from slo.resolve import SECTION_SET
from slo.schema import CONVERT, FAST_TABLE, KEY_SECTION, KEYS

try:
    from slo import _parser as _parser_c
except ImportError:  # test_tokenizer insists on the extension where it is expected
    _parser_c = None

needs_c = pytest.mark.skipif(_parser_c is None, reason="extension not built")

plain_words = st.sampled_from([
    "0", "1", "12", "-3", "+4", "007", "1_000", "1e3", "1e-3", "3000.0", "0.5", "1.", ".5", "nan", "inf", "-inf",
    "1e999", "True", "false", "TRUE", "yes", "None", "none", "null", "", " 1", "cosine", "wsd", "auto", "cuda:0",
    "bfloat16", "gloo", "x", "$", "${max_iters}", "a$$b", "99999999999999999999", "65535", "65536", "٣",
])
raw_values = st.one_of(plain_words, st.text(alphabet="0123456789.eE+-_ $", max_size=8), st.text(max_size=6))
entries = st.dictionaries(
    st.sampled_from(sorted(KEYS)),
    st.tuples(raw_values, st.sampled_from([0, 1, 2])),
    max_size=12,
)


def as_entries(d):
    return {k: ((k, raw, 1, 1, len(k) + 2, len(k) + 2 + len(raw), quote), "f.config", None) for k, (raw, quote) in d.items()}


def same(a, b):
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


@given(entries)
@settings(max_examples=400)
def test_type_values_agrees_with_the_schema(d):
    typed, rest = _parser_py.type_values(as_entries(d), FAST_TABLE)
    assert set(typed) | set(rest) == set(d) and not set(typed) & set(rest)
    for key, value in typed.items():
        assert same(value, CONVERT[key](d[key][0])), key


@needs_c
@given(entries)
@settings(max_examples=400)
def test_type_values_twins_agree(d):
    py = _parser_py.type_values(as_entries(d), FAST_TABLE)
    c = _parser_c.type_values(as_entries(d), FAST_TABLE)
    assert py[1] == c[1]
    assert py[0].keys() == c[0].keys() and all(same(py[0][k], c[0][k]) for k in py[0])


def test_type_values_leaves_interpolation_and_odd_spellings():
    d = {"max_iters": ("1e3", 0), "lr_decay_iters": ("${max_iters}", 0), "out_dir": ("${x}", 2), "n_layer": ("0", 0)}
    typed, rest = _parser_py.type_values(as_entries(d), FAST_TABLE)
    assert typed == {"out_dir": "${x}"}  # single quotes: never interpolated
    assert rest == ["max_iters", "lr_decay_iters", "n_layer"]  # n_layer=0 is out of range


statement_text = st.lists(st.one_of(
    st.sampled_from(["FROM a.config", "from b", "MODEL", "DATA", "ENV", "TRAIN", "BOGUS", "model"]).flatmap(
        lambda d: st.lists(st.sampled_from(sorted(KEYS) + ["OMP", "zzz", "batch_size"]), max_size=4).map(
            lambda ks: d + "".join(f" {k}=1" for k in ks))),
    st.just("# comment"),
), max_size=10).map("\n".join)


@needs_c
@given(statement_text)
def test_index_statements_twins_agree(text):
    statements, _ = _parser_py.scan(text)
    py = _parser_py.index_statements(statements, KEY_SECTION, SECTION_SET)
    assert py == _parser_c.index_statements(statements, KEY_SECTION, SECTION_SET)
    assert _parser_py.chain(py[1], "p") == _parser_c.chain(py[1], "p")


def test_index_statements_sorts_and_reports():
    text = "FROM base\nMODEL n_layer=2 batch_size=3 n_layer=4\nENV A=1 A=2\nFROM late\nNOPE x=1\n"
    statements, _ = _parser_py.scan(text)
    bases, sets, env, problems = _parser_py.index_statements(statements, KEY_SECTION, SECTION_SET)
    assert [b[0] for b in bases] == ["base"]
    assert [(i[0], i[1]) for i in sets] == [("n_layer", "2"), ("n_layer", "4")]
    assert [(i[0], i[1]) for i in env] == [("A", "1"), ("A", "2")]
    assert [(kind, s[0], i and i[0]) for kind, s, i in problems] == [
        ("key", "MODEL", "batch_size"), ("twice", "MODEL", "n_layer"), ("twice", "ENV", "A"),
        ("late-from", "FROM", None), ("directive", "NOPE", None)]
    entries = _parser_py.chain(sets, "f")
    assert entries["n_layer"][0][1] == "4" and entries["n_layer"][2][0][1] == "2"
