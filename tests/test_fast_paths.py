"""The loading fast paths of the tokenizer module: read and type_values, by example, and the twins agree.

test_properties checks type_values against the schema's converters, and a
whole load with it against one without it.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo import ConfigError, _parser_py, loads, resolve
from slo.schema import DEFAULTS, KEYS, RULES

try:
    from slo import _parser as _parser_c
except ImportError:  # test_lexer insists on the extension where it is expected
    _parser_c = None

needs_c = pytest.mark.skipif(_parser_c is None, reason="extension not built")


def as_entries(d):
    return {k: ((k, raw, 1, 1, len(k) + 2, len(k) + 2 + len(raw), quote), "f.config", None) for k, (raw, quote) in d.items()}


def type_values(d):
    """type_values's typed keys, and its rest; the other keys keep their defaults."""
    final, rest, _ = _parser_py.type_values(as_entries(d))
    assert final.keys() == DEFAULTS.keys()
    assert all(final[k] == DEFAULTS[k] for k in DEFAULTS if k not in d or k in rest)
    return {k: final[k] for k in d if k not in rest}, rest


def test_type_values_leaves_interpolation_and_odd_spellings():
    d = {"max_iters": ("1e3", 0), "lr_decay_iters": ("${max_iters}", 0), "out_dir": ("${x}", 2), "n_layer": ("0", 0)}
    typed, rest = type_values(d)
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
def test_read_twins_agree(text):
    assert _parser_py.read(text, "p") == _parser_c.read(text, "p")
    sets = _parser_py.read(text, "p")[1]
    assert _parser_py.chain(sets, "p") == _parser_c.chain(sets, "p")


def test_read_sorts_and_reports():
    text = "FROM base\nMODEL n_layer=2 batch_size=3 n_layer=4\nENV A=1 A=2\nFROM late\nNOPE x=1\n"
    bases, sets, env, problems, errors, entries, env_entries = _parser_py.read(text, "f")
    assert [b[0] for b in bases] == ["base"]
    assert [(i[0], i[1]) for i in sets] == [("n_layer", "2"), ("n_layer", "4")]
    assert [(i[0], i[1]) for i in env] == [("A", "1"), ("A", "2")]
    assert [(kind, s[0], i and i[0]) for kind, s, i in problems] == [
        ("key", "MODEL", "batch_size"), ("twice", "MODEL", "n_layer"), ("twice", "ENV", "A"),
        ("late-from", "FROM", None), ("directive", "NOPE", None)]
    assert errors == []
    assert entries == _parser_py.chain(sets, "f") and env_entries == _parser_py.chain(env, "f")
    assert entries["n_layer"][0][1] == "4" and entries["n_layer"][2][0][1] == "2"
    assert entries["n_layer"][1] == "f" and entries["n_layer"][2][2] is None


def test_type_values_takes_plain_references():
    d = {"max_iters": ("5000", 0), "lr_decay_iters": ("${max_iters}", 0), "warmup_iters": ("${eval_iters}", 0),
         "min_lr": ("${max_iters}", 0), "beta1": ("${rope_theta}", 0), "out_dir": ("${n_layer}", 0),
         "dataset": ("${env:DATA}", 0), "seed": ("${nope}", 0)}
    typed, rest = type_values(d)
    # set and typed, or not set: its default; both already of the key's type
    assert typed == {"max_iters": 5000, "lr_decay_iters": 5000, "warmup_iters": 200}
    # an int for a float, out of range, an int for a str, the environment, no such key: the resolver's work
    assert rest == ["min_lr", "beta1", "out_dir", "dataset", "seed"]


def test_a_load_runs_only_the_rules_of_the_keys_it_sets(monkeypatch):
    """The defaults satisfy every rule, so a config that sets 3 keys is checked by the one rule that reads them."""
    ran = []
    counted = tuple((keys, lambda v, keys=keys, check=check: ran.append(keys) or check(v)) for keys, check in RULES)
    monkeypatch.setattr(resolve, "RULES", counted)
    monkeypatch.setattr(resolve, "_RULES_OF_BITS", {})
    text = "MODEL n_layer=2\nDATA batch_size=4\nTRAIN max_iters=10\n"
    assert loads(text)["max_iters"] == 10
    assert ran == [("stop_iter", "max_iters")]
    ran.clear()
    with pytest.raises(ConfigError, match="stop_iter=20 is beyond max_iters=10"):
        loads(text, overrides=["--stop_iter=20", "--n_embd=100"])
    assert ran == [keys for keys, _ in RULES if {"stop_iter", "n_embd"} & set(keys)]


@pytest.mark.parametrize("twin", [_parser_py, pytest.param(_parser_c, marks=needs_c)], ids=["py", "c"])
def test_type_values_names_the_rules_that_read_a_key_set(twin, monkeypatch):
    monkeypatch.setattr(resolve, "_RULES_OF_BITS", {})
    entries = as_entries({"n_head": ("4", 0), "n_layer": ("2", 0)})
    first = resolve.rules_of(twin.type_values(entries)[2])
    assert resolve.rules_of(twin.type_values(entries)[2]) is first  # remembered
    assert [keys for keys, _ in first] == [keys for keys, _ in RULES if "n_head" in keys]
    assert twin.type_values(as_entries({"n_layer": ("2", 0)}))[2] == 0  # no rule reads n_layer
    toml_entries = {"".join(k): v for k, v in entries.items()}  # equal keys, not the schema's own strings
    assert twin.type_values(toml_entries)[2] == twin.type_values(entries)[2]
