"""Legacy nanoGPT .py configs (SPEC section 8): read without running, --trust-py, written back."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo import ConfigError, dumps, load
from slo.formats import legacy_py
from slo.schema import DEFAULTS, KEYS

DATA = Path(__file__).parent / "data" / "legacy"
BAD = sorted((DATA / "bad").glob("*.py"))
UNSUPPORTED = [p for p in BAD if p.name.startswith("unsupported_")]


def errors_of(*args, **kwargs):
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)
    return info.value.errors


# ---- nanoGPT's own shapes --------------------------------------------------------

def test_char_level_shakespeare():
    cfg = load(DATA / "train_shakespeare_char.py")
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["dropout"]) == (6, 6, 384, 0.2)
    assert cfg["learning_rate"] == 1e-3 and type(cfg["learning_rate"]) is float
    assert cfg["always_save_checkpoint"] is False
    assert cfg["dataset"] == "shakespeare_char"
    assert cfg["beta2"] == 0.99
    assert cfg["device"] == DEFAULTS["device"]  # only in a comment in the file
    assert cfg.origin("block_size").line == 19
    assert not cfg.warnings


def test_gpt2_124m_arithmetic():
    cfg = load(DATA / "train_gpt2.py")
    assert cfg["gradient_accumulation_steps"] == 40
    assert cfg["weight_decay"] == 0.1
    assert cfg["wandb_run_name"] == "gpt2-124M"
    assert cfg.origin("gradient_accumulation_steps").line == 13


def test_finetune_with_time_is_flagged_not_reproducible(slo_cli):
    path = DATA / "finetune_shakespeare.py"
    cfg = load(path)
    assert re.fullmatch(r"ft-\d+\.\d+", cfg["wandb_run_name"])
    assert cfg["decay_lr"] is False and cfg["learning_rate"] == 3e-5
    assert cfg["init_from"] == "gpt2-xl"
    [warning] = cfg.warnings
    assert warning.severity == "warning" and warning.line == 8
    assert "not reproducible" in warning.message
    result = slo_cli("check", path)
    assert result.returncode == 0, result.stderr
    assert "finetune_shakespeare.py:8:18: warning: wandb_run_name comes from time.time()" in result.stderr
    assert "not reproducible" in result.stderr


def test_the_file_is_never_run(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.py"
    path.write_text(f"n_layer = 4\nout_dir = __import__('os').system('touch {marker}')\n")
    [error] = errors_of(path)
    assert error.line == 2 and "--trust-py" in error.message
    assert not marker.exists()


# ---- what the reader accepts ------------------------------------------------------

@pytest.mark.parametrize("expression, value", [
    ("5 * 8", 40), ("6e5", 600000), ("1_000", 1000), ("2 ** 10", 1024), ("7 // 2", 3), ("7 % 4", 3),
    ("(1 + 2) * 3", 9), ("-(-4)", 4), ("+4", 4), ("int('12')", 12), ("int(3.0)", 3), ("int(1e3)", 1000),
])
def test_arithmetic_for_an_int_key(write, expression, value):
    cfg = load(write("a.py", f"max_iters = {expression}\n"))
    assert cfg["max_iters"] == value and type(cfg["max_iters"]) is int


@pytest.mark.parametrize("expression, value", [
    ("1 / 4", 0.25), ("6e-4 / 10", 6e-4 / 10), ("float(3)", 3.0), ("float('1e-3')", 1e-3), ("3", 3.0), ("1", 1.0),
])
def test_arithmetic_for_a_float_key(write, expression, value):
    cfg = load(write("a.py", f"learning_rate = {expression}\nmin_lr = 0.0\n"))
    assert cfg["learning_rate"] == value and type(cfg["learning_rate"]) is float


def test_names_assigned_earlier_helpers_and_strings(write):
    cfg = load(write("a.py", (
        '"""A docstring is fine."""\n'
        "import math\n"
        "_tokens_per_step = 491520\n"
        "block_size = 1024\n"
        "batch_size = _tokens_per_step // block_size // 40\n"
        "max_iters = 600000\n"
        "lr_decay_iters = max_iters\n"
        "warmup_iters = max_iters // 300\n"
        "max_iters += 1000\n"
        "n_layer = n_head = 4\n"
        "n_embd: int = 256\n"
        "out_dir = 'out-' + str(n_layer) + 'x' + str(n_embd)\n"
        "wandb_run_name = 'cost $5'\n"
    )))
    assert cfg["batch_size"] == 12
    assert (cfg["lr_decay_iters"], cfg["warmup_iters"], cfg["max_iters"]) == (600000, 2000, 601000)
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"]) == (4, 4, 256)
    assert cfg["out_dir"] == "out-4x256"
    assert cfg["wandb_run_name"] == "cost $5"  # Python strings are never interpolated


def test_time_flows_through_a_helper(write):
    cfg = load(write("a.py", "import time as t\n_stamp = int(t.time())\nwandb_run_name = 'run-' + str(_stamp)\n"))
    assert re.fullmatch(r"run-\d+", cfg["wandb_run_name"])
    [warning] = cfg.warnings
    assert warning.line == 3 and "not reproducible" in warning.message


def test_environ_is_env(write):
    cfg = load(write("a.py", "import os\nos.environ['OMP_NUM_THREADS'] = '4'\nos.environ['X'] = 'a' + 'b'\n"))
    assert cfg.env == {"OMP_NUM_THREADS": "4", "X": "ab"}
    assert cfg.origin("ENV.X").line == 3


def test_a_key_set_twice_warns(write):
    cfg = load(write("a.py", "n_layer = 4\nn_layer = 6\n"))
    assert cfg["n_layer"] == 6
    assert any("set twice" in w.message for w in cfg.warnings)


@settings(max_examples=60)
@given(st.recursive(
    st.integers(-50, 50).map(str) | st.floats(0.01, 100).map(repr),
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"),
    max_leaves=8))
def test_arithmetic_agrees_with_python(expression):
    try:
        expected = str(eval(expression))  # noqa: S307 - the test's own generated arithmetic
    except ZeroDivisionError:
        expected = None
    src = legacy_py.read(f"wandb_run_name = str({expression})\n", "<test>")
    if expected is None:
        [error] = src.errors
        assert error.message.startswith("Cannot evaluate")
    else:
        assert not src.errors
        assert src.sets[0][1] == expected


@pytest.mark.parametrize("text, message", [
    ("n_layer = " + "-" * 100_000 + "1\n", "nested too deeply"),
    ("n_layer = " + "1+" * 100_000 + "1\n", "nested too deeply"),
    ("n_layer = " + "(" * 1000 + "1" + ")" * 1000 + "\n", "too many nested parentheses"),
    ("learning_rate = 1.5 ** 100000\n", "too large a number"),
    ("n_layer = int('9' * 5000)\n", "the number is too large"),
    ("_a = 2 ** 4000\n_b = _a * _a\n", "too large a number"),
    ("learning_rate = (-8) ** 0.5\n", "a complex number"),
    ("n_layer = 1\x00\n", "null bytes"),
], ids=["unary-chain", "sum-chain", "parentheses", "float-power", "int-of-long-string", "product", "complex", "nul"])
def test_hostile_input_is_an_error_not_a_crash(write, text, message, hang_guard):
    with hang_guard(20):
        [error] = errors_of(write("a.py", text))
    assert message in error.message


@settings(max_examples=150)
@given(st.text(max_size=200))
def test_any_text_is_read_or_refused_never_crashes(text):
    src = legacy_py.read(text, "<fuzz>")
    for d in src.errors:
        assert d.message and d.line >= 0


# ---- what it refuses, and where -----------------------------------------------------

def _expected(path: Path) -> tuple[int, str]:
    line, text = re.fullmatch(r"# expect: (\d+): (.*)", path.read_text().split("\n")[0]).groups()
    return int(line), text


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_error_at_its_line(path, hang_guard):
    line, text = _expected(path)
    with hang_guard(10):
        errors = errors_of(path)
    assert [(d.line, text in d.message) for d in errors] == [(line, True)], [str(d) for d in errors]
    assert errors[0].path == str(path)


@pytest.mark.parametrize("path", UNSUPPORTED, ids=lambda p: p.stem)
def test_unsupported_construct_names_trust_py(path):
    [error] = errors_of(path)
    assert "--trust-py" in error.message


@pytest.mark.parametrize("path", UNSUPPORTED, ids=lambda p: p.stem)
def test_unsupported_construct_runs_with_trust_py(path):
    if path.stem == "unsupported_list":  # runs, but a list is no batch_size
        [error] = errors_of(path, trust_py=True)
        assert error.line == 2 and "is not an int" in error.message
    else:
        assert load(path, trust_py=True)["seed"] == DEFAULTS["seed"]


def test_every_error_of_a_file_is_reported(write):
    errors = errors_of(write("a.py", "import sys\nn_layer = 4\nfor i in range(2): pass\nn_layr = 3\n"))
    assert [d.line for d in errors] == [1, 3, 4]


def test_check_cli_exit_2_names_trust_py(slo_cli):
    result = slo_cli("check", DATA / "bad" / "unsupported_loop.py")
    assert result.returncode == 2
    assert "unsupported_loop.py:3:1: error: A loop" in result.stderr and "--trust-py" in result.stderr
    assert "Traceback" not in result.stderr


# ---- --trust-py ---------------------------------------------------------------------------

def test_trust_py_runs_with_nanogpt_defaults(write):
    path = write("a.py", (
        "def double(x):\n    return 2 * x\n"
        "n_layer = double(3)\n"
        "lr_decay_iters = max_iters // 2\n"   # max_iters: the default, as in nanoGPT
        "for _i in range(3):\n    n_embd = 64 * (_i + 1)\n"
    ))
    cfg = load(path, trust_py=True)
    assert (cfg["n_layer"], cfg["n_embd"], cfg["lr_decay_iters"]) == (6, 192, 300000)
    assert cfg.origin("n_layer").line == 3
    assert not cfg.is_set("max_iters")


def test_trust_py_a_default_written_again_overrides_a_base(write):
    base = write("base.config", "MODEL n_layer=4 n_head=4 n_embd=128\n")
    child = write("child.py", "n_layer = 12\n")
    assert load(base, child, trust_py=True)["n_layer"] == 12


def test_trust_py_checks_what_the_file_sets(write):
    errors = errors_of(write("a.py", "n_layers = 6\nn_head = 'six'\nimport os\n_ok = 1\n"), trust_py=True)
    assert [(d.line, d.message.split(" (")[0]) for d in errors] == [
        (1, "Unknown key n_layers"), (2, "n_head=six is not an int")]


def test_trust_py_error_while_running_is_at_its_line(write):
    [error] = errors_of(write("a.py", "n_layer = 4\n\nn_head = 1 / 0\n"), trust_py=True)
    assert error.line == 3 and "ZeroDivisionError" in error.message


def test_trust_py_environ_becomes_env_and_is_put_back(write, monkeypatch):
    monkeypatch.delenv("SLO_TEST_TRUST", raising=False)
    cfg = load(write("a.py", "import os\nos.environ['SLO_TEST_TRUST'] = 'yes'\n"), trust_py=True)
    assert cfg.env == {"SLO_TEST_TRUST": "yes"}
    assert "SLO_TEST_TRUST" not in os.environ


def test_trust_py_flag_on_check_and_show(slo_cli):
    path = DATA / "bad" / "unsupported_def.py"
    result = slo_cli("check", "--trust-py", path)
    assert result.returncode == 0, result.stderr
    result = slo_cli("show", path, "--trust-py", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert '"n_head": 4' in result.stdout


# ---- writing .py: nanoGPT loads it unchanged --------------------------------------------------

def nanogpt_configurator(text: str, overrides: list[str], environ: dict | None = None) -> dict:
    """What nanoGPT's configurator.py does: exec the config file into the globals (seeded
    with train.py's defaults), then apply --key=value with an exact type check.

    The environment the file sets is put into environ, and taken back from os.environ."""
    globals_ = {k: v for k, v in DEFAULTS.items() if v is not None}
    before = dict(os.environ)
    try:
        exec(text, globals_)  # noqa: S102 - the point of the test
        if environ is not None:
            environ.update({k: v for k, v in os.environ.items() if before.get(k) != v})
    finally:
        os.environ.clear()
        os.environ.update(before)
    for arg in overrides:
        key, val = arg[2:].split("=", 1)
        assert key in globals_, f"Unknown config key: {key}"
        try:
            attempt = ast.literal_eval(val)
        except (SyntaxError, ValueError):
            attempt = val
        assert type(attempt) is type(globals_[key]), f"{key}: {type(attempt)} vs {type(globals_[key])}"
        globals_[key] = attempt
    return globals_


def exact_types_hold(text: str, cfg) -> None:
    """Every key the file sets has exactly the type nanoGPT expects, and takes an override;
    the environment it sets is cfg's ENV."""
    assigned = {node.targets[0].id for node in ast.parse(text).body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    overrides = []
    for key in assigned:
        default = DEFAULTS[key]
        if default is None:  # a key nanoGPT does not have: int or None, as the schema says
            continue
        overrides.append(f"--{key}={default!r}" if type(default) is not str else f"--{key}={default}")
    namespace = nanogpt_configurator(text, overrides)  # the type check of every override passes
    environ: dict = {}
    file_values = nanogpt_configurator(text, [], environ)
    assert environ.items() <= cfg.env.items()
    for key in assigned:
        expected = KEYS[key].type
        if DEFAULTS[key] is None:
            assert file_values[key] is None or type(file_values[key]) is expected
        else:
            assert type(file_values[key]) is expected, key
            assert file_values[key] == cfg[key]
    assert namespace.keys() >= assigned


@pytest.mark.parametrize("name", ["train_shakespeare_char.py", "train_gpt2.py", "finetune_shakespeare.py"])
def test_written_py_passes_nanogpt_type_check(name):
    cfg = load(DATA / name)
    text = dumps(cfg, "py", only_set=True)
    exact_types_hold(text, cfg)
    full = dumps(cfg, "py")
    exact_types_hold(full, cfg)


def test_written_py_floats_are_floats(write, monkeypatch):
    cfg = load(write("a.config", "TRAIN learning_rate=1 max_iters=1e3 grad_clip=0\nMODEL dropout=0 vocab_size=None\n"
                                 "ENV SLO_TEST_WRITTEN=1\n"))
    text = dumps(cfg, "py", only_set=True)
    assert "learning_rate = 1.0\n" in text and "grad_clip = 0.0\n" in text and "dropout = 0.0\n" in text
    assert "max_iters = 1000\n" in text and "vocab_size = None\n" in text
    assert "import os\nos.environ['SLO_TEST_WRITTEN'] = '1'\n" in text
    monkeypatch.delenv("SLO_TEST_WRITTEN", raising=False)
    exact_types_hold(text, cfg)
    environ: dict = {}
    nanogpt_configurator(text, [], environ)
    assert environ == {"SLO_TEST_WRITTEN": "1"}  # nanoGPT's exec sets the variable
    assert load(write("b.py", text)) == cfg


def test_written_py_groups_under_a_comment_per_directive(write):
    cfg = load(write("a.config", "DATA batch_size=4\nMODEL n_layer=2\n"))
    assert dumps(cfg, "py", only_set=True) == "# MODEL\nn_layer = 2\n\n# DATA\nbatch_size = 4\n"


def test_show_format_py_is_a_nanogpt_config(slo_cli, write):
    path = write("a.config", "MODEL n_layer=2 n_head=2 n_embd=64\nTRAIN learning_rate=1 max_iters=1e3\n")
    result = slo_cli("show", path, "--format", "py")
    assert result.returncode == 0, result.stderr
    assert "learning_rate = 1.0\n" in result.stdout and "max_iters = 1000\n" in result.stdout
    cfg = load(path)
    exact_types_hold(result.stdout, cfg)
    assert load(write("b.py", result.stdout)) == cfg
