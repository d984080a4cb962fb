"""TOML configs (SPEC section 7): reading, errors at their place, writing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo import ConfigError, dumps, load
from slo.formats import toml


def errors_of(*args, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)
    return [f"{d.line}:{d.col}: {d.message}" for d in info.value.errors]


def test_tables_extends_env(write):
    write("base.config", "MODEL n_layer=4 n_head=4 n_embd=128\nTRAIN max_iters=100\n")
    path = write("a.toml", (
        'extends = ["base.config"]\n'
        "[model]\nn_layer = 8\nuse_rope = true\n"
        "[train]\nlearning_rate = 1\n"           # an int for a float key: typed by the schema
        '[lr_schedule]\nlr_decay_iters = "${max_iters}"\nmin_lr = 0\nwarmup_iters = 0\n'
        '[logging]\nout_dir = "price-$$5"\n'
        '[advanced]\nn_kv_head = "None"\n'
        '[env]\nOMP_NUM_THREADS = "4"\n'
    ))
    cfg = load(path)
    assert (cfg["n_layer"], cfg["n_head"], cfg["use_rope"]) == (8, 4, True)
    assert cfg["learning_rate"] == 1.0 and type(cfg["learning_rate"]) is float
    assert cfg["lr_decay_iters"] == 100
    assert cfg["out_dir"] == "price-$5"
    assert cfg["n_kv_head"] is None and cfg.is_set("n_kv_head")
    assert cfg.env == {"OMP_NUM_THREADS": "4"}
    assert (cfg.origin("use_rope").line, cfg.origin("use_rope").col) == (4, 12)


def test_upper_case_tables_dotted_keys_and_inline_tables(write):
    cfg = load(write("a.toml", 'data.batch_size = 3\nmodel = { n_layer = 2 }\n[TRAIN]\nmax_iters = 5\n'))
    assert (cfg["batch_size"], cfg["n_layer"], cfg["max_iters"]) == (3, 2, 5)
    assert cfg.origin("batch_size").line == 1 and cfg.origin("n_layer").line == 2


def test_extends_may_be_one_string_or_span_lines(write):
    write("a.config", "MODEL n_layer=2\n")
    write("b.toml", "[model]\nn_head=2\nn_embd=64\n")
    assert load(write("c.toml", 'extends = "a.config"\n'))["n_layer"] == 2
    cfg = load(write("d.toml", 'extends = [\n  "a.config",\n  "b.toml",\n]\n'))
    assert (cfg["n_layer"], cfg["n_head"]) == (2, 2)
    [error] = errors_of(write("e.toml", 'extends = [\n  "a.config",\n  "missing.toml",\n]\n'))
    assert error.startswith("3:3: Config file not found: ") and error.endswith("missing.toml")


@pytest.mark.parametrize("text, expected", [
    ("[modle]\nn_layer = 2\n", "1:1: Unknown table [modle] (did you mean [model]?)"),
    ("[model]\nn_layr = 2\n", "2:1: Unknown key n_layr (did you mean n_layer?)"),
    ("[model]\nbatch_size = 2\n", "2:1: batch_size belongs to DATA, not MODEL"),
    ("n_layer = 2\n", "1:1: n_layer belongs in the [model] table"),
    ("frm = 2\n", "1:1: Unknown key frm"),
    ("extend = ['a.toml']\n", "1:1: Unknown key extend (did you mean extends?)"),
    ("[model]\nn_head = [1, 2]\n", "2:10: n_head takes one value (a number, string or boolean), not a TOML array"),
    ("[train]\nmax_iters = 1979-05-27\n", "2:13: max_iters takes one value (a number, string or boolean), not a TOML date or time"),
    ("[env]\nOMP_NUM_THREADS = 4\n", "2:19: ENV OMP_NUM_THREADS=4 must be a string: quote it"),
    ('[env]\n"1X" = "a"\n', "2:1: Invalid ENV name '1X': use letters, digits and _, not starting with a digit"),
    ("[model]\nn_layer = 0\n", "2:11: n_layer=0 is out of range: must be 1 <= x <= 4096"),
    ('[model]\nn_layer = "six"  # words\n', "2:11: n_layer=six is not an int"),
    ("[model]\nn_layer = true\n", "2:11: n_layer=True is not an int"),
    ("[model]\nn_layer = = 3\n", "2:11: TOML syntax error: Invalid value"),
    ("[model]\nn_layer = 3\n[model]\n", "3:7: TOML syntax error: Cannot declare ('model',) twice"),
    ("[model]\nn_layer = ", "2:11: TOML syntax error: Invalid value"),
    ("extends = 3\n", "1:11: extends must be a path or a list of paths: extends = [\"base.toml\"]"),
])
def test_errors_at_their_place(write, text, expected):
    assert errors_of(write("bad.toml", text)) == [expected]


def test_every_error_is_reported(write):
    errors = errors_of(write("bad.toml", "[modle]\n[model]\nn_layr = 1\nn_head = 0\n"))
    assert [e.split(":")[0] for e in errors] == ["1", "3", "4"]


def test_bom_and_crlf(write):
    cfg = load(write("a.toml", b"\xef\xbb\xbf[model]\r\nn_layer = 3\r\n"))
    assert cfg["n_layer"] == 3 and cfg.origin("n_layer").line == 2


def test_positions_of_values_and_trailing_comments():
    text = ('a = "x # not a comment"  # one\n[model]\nb = """two\nlines"""\nc = [1,\n  2] # three\n'
            "'q.k' . d = 'v' # four\n")
    where = toml.positions(text)
    assert where[("a",)][:5] == (1, 1, 5, 1, 24)
    assert where[("model", "b")][:5] == (3, 1, 5, 4, 9)
    assert where[("model", "c")][3:5] == (6, 5)
    assert where[("model", "q.k", "d")][:3] == (7, 1, 13)
    assert [line[where[("model", "q.k", "d")][4] - 1:] for line in text.split("\n")[6:7]] == [" # four"]


def test_comments_above_a_table_go_to_its_first_key():
    text = "# the head\n\n# about the model\n[model]\n# layers\nn_layer = 2  # two\nn_head = 2\n[env]\nA = 'b' # env\n"
    comments = toml.read_comments(text)
    assert comments.header == [" the head"]
    assert comments.above == {"n_layer": [" about the model", " layers"]}
    assert comments.trailing == {"n_layer": " two", "ENV.A": " env"}


def test_written_values_read_back_as_themselves(write):
    cfg = load(write("a.config", "LOGGING out_dir='${max_iters}$$ \"q\" #x' wandb_run_name=\"a\\tb\"\n"
                                 "MODEL vocab_size=None\nTRAIN learning_rate=1\n"))
    text = dumps(cfg, "toml", only_set=True)
    assert 'out_dir = "$${max_iters}$$$$ \\"q\\" #x"' in text
    assert "vocab_size" not in text and "None" not in text and "learning_rate = 1.0" in text  # TOML has no null
    assert load(write("b.toml", text)) == cfg
    assert load(write("c.toml", dumps(cfg, "toml"))) == cfg
    over_base = dumps(cfg, "toml", only_set=True, bases=["base.toml"])  # a None over a base is kept, as text
    assert 'vocab_size = "None"' in over_base
    write("base.toml", "[model]\nvocab_size = 500\n")
    assert load(write("d.toml", over_base))["vocab_size"] is None


def test_show_format_toml(slo_cli, write):
    path = write("a.config", "MODEL n_layer=2 n_head=2 n_embd=64\nENV A=b\n")
    result = slo_cli("show", path, "--format", "toml")
    assert result.returncode == 0, result.stderr
    assert "[model]\nn_layer = 2\n" in result.stdout and '[env]\nA = "b"\n' in result.stdout
    assert load(write("b.toml", result.stdout)) == load(path)


@pytest.mark.parametrize("text", [
    "[model]\nn_layer = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "a = " + "{b=" * 3000 + "1" + "}" * 3000 + "\n",
    "[model]\nn_layer = " + "9" * 100_000 + "\n",
], ids=["deep-arrays", "deep-inline-tables", "huge-int"])
def test_deep_or_huge_input_is_an_error_not_a_crash(write, text, hang_guard):
    with hang_guard(20):
        with pytest.raises(ConfigError):
            load(write("deep.toml", text))


@settings(max_examples=150)
@given(st.lists(st.sampled_from(list('[]{}="\'#.,\n ab1-_$\\') + ["model", "n_layer", "env", "extends", '"""']),
                max_size=40).map("".join))
def test_any_text_is_read_or_refused_never_crashes(text):
    src = toml.read(text, "<fuzz>")
    for d in src.errors:
        assert d.message
    toml.read_comments(text)


def test_from_and_extends_work_across_formats(write):
    write("c.py", "n_layer = 2\nn_head = 2\nn_embd = 32 * 2\nbatch_size = 4\n")
    write("sub/b.toml", 'extends = ["../c.py"]\n[model]\nn_layer = 3\n[data]\nblock_size = 64\n')
    top = write("a.config", "FROM sub/b.toml\nDATA batch_size=8\n")
    cfg = load(top)
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["batch_size"], cfg["block_size"]) == (3, 2, 64, 8, 64)
    assert str(cfg.origin("n_embd")).endswith("c.py:3:10")
    assert str(cfg.origin("block_size")).endswith("b.toml:5:14")
