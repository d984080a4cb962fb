"""slo-convert (SPEC section 9): every format to every other, with and without --flatten."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo import ConfigError, load
from slo.convert import UsageError, convert, main
from slo.formats import config_lang, legacy_py, toml
from slo.formats.document import Document
from slo.schema import DEFAULTS, ENV_NAME, KEYS, RULES, code_env

from test_legacy_py import exact_types_hold

DATA = Path(__file__).parent / "data" / "legacy"
FORMATS = ("config", "toml", "py")
WRITERS = {"config": config_lang, "toml": toml, "py": legacy_py}


# ---- generated configs ----------------------------------------------------------------

def _text(allow_newlines: bool, allow_nul: bool = True):
    banned = ("" if allow_newlines else "\n\r") + ("" if allow_nul else "\x00")
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=banned), max_size=12)


def _number(key, kind):
    low = key.ge if key.ge is not None else key.gt
    high = key.le if key.le is not None else key.lt
    if kind is int:
        low = -2**62 if low is None else int(low) + (key.gt is not None)
        high = 2**62 if high is None else int(high) - (key.lt is not None)
        return st.integers(low, high)
    return st.floats(-1e300 if low is None else low, 1e300 if high is None else high,
                     exclude_min=key.gt is not None, exclude_max=key.lt is not None,
                     allow_nan=False, allow_infinity=False)


# Keys bound by cross-field rules draw from values that mostly keep them.
_SPECIAL = {
    "n_head": st.sampled_from([1, 2, 3, 4, 6, 8, 12]),
    "n_embd": st.integers(1, 20).map(lambda k: 48 * k),
    "n_kv_head": st.sampled_from([None, 1, 2]),
    "learning_rate": st.floats(6e-4, 10.0),
    "min_lr": st.floats(0.0, 5e-4),
    "warmup_iters": st.integers(0, 1000),
    "lr_decay_iters": st.integers(1000, 10**7),
    "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "mps"]),
    "nproc_per_node": st.sampled_from([None, 1, 2, 4]),
    "eval_tasks": st.sampled_from(["", "hellaswag", "arc_easy,piqa"]),
}


def value_of(name: str):
    key = KEYS[name]
    if name in _SPECIAL:
        return _SPECIAL[name]
    if key.choices:
        values = st.sampled_from(key.choices)
    elif key.type is bool:
        values = st.booleans()
    elif key.type is str:
        values = _text(allow_newlines=not key.pattern).filter(lambda s: not key.pattern or s)
        if key.optional:  # the text None (any case) is None itself in every format
            values = values.filter(lambda s: s.strip().lower() != "none")
    else:
        values = _number(key, key.type)
    return st.one_of(st.none(), values) if key.optional else values


KEY_VALUES = st.fixed_dictionaries({}, optional={name: value_of(name) for name in KEYS})
ENV_VALUES = st.dictionaries(st.from_regex(ENV_NAME, fullmatch=True).filter(lambda n: len(n) < 20 and code_env(n) is None),
                             _text(allow_newlines=True, allow_nul=False), max_size=3)  # no NUL in an environment


def repaired(base: dict, child: dict) -> tuple[dict, dict]:
    """base and child without the keys of any cross-field rule their merge breaks (defaults pass all)."""
    base, child = dict(base), dict(child)
    while True:
        final = {**DEFAULTS, **base, **child}
        broken = [keys for keys, check in RULES if check(final)]
        if not broken:
            return base, child
        for key in broken[0]:
            base.pop(key, None)
            child.pop(key, None)


@st.composite
def cases(draw):
    base_values, child_values = repaired(draw(KEY_VALUES), draw(KEY_VALUES))
    has_base = draw(st.booleans())
    if not has_base:
        base_values = {}
    return {
        "base": (draw(st.sampled_from(FORMATS)), base_values, draw(ENV_VALUES)) if has_base else None,
        "child": (child_values, draw(ENV_VALUES)),
        "flatten": draw(st.booleans()),
        "out_in_subfolder": draw(st.booleans()),
    }


def write_config(path: Path, fmt: str, values: dict, env: dict, bases=()) -> Path:
    path.write_bytes(WRITERS[fmt].write(Document(values, env, list(bases))).encode())
    return path


def same(a, b) -> None:
    """The same resolved values with the same types, and the same ENV."""
    assert a == b
    assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}


def expected_values(case) -> tuple[dict, dict]:
    values, env = {}, {}
    if case["base"]:
        values.update(case["base"][1])
        env.update(case["base"][2])
    values.update(case["child"][0])
    env.update(case["child"][1])
    return values, env


def check_conversion(src_fmt: str, dst_fmt: str, case) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bases = []
        if case["base"] and src_fmt != "py":  # a .py has no FROM
            base_fmt, values, env = case["base"]
            bases = [write_config(root / f"base.{base_fmt}", base_fmt, values, env).name]
        else:  # the values drawn with a base in mind may break a rule without it
            case = dict(case, base=None, child=(repaired({}, case["child"][0])[1], case["child"][1]))
        child = write_config(root / f"child.{src_fmt}", src_fmt, *case["child"], bases)
        original = load(child)
        values, env = expected_values(case)
        same({k: original[k] for k in values}, values)
        assert original.env == env
        assert all(original[k] == v for k, v in DEFAULTS.items() if k not in values)

        out = root / ("out" if case["out_in_subfolder"] else "") / f"converted.{dst_fmt}"
        convert([str(child)], str(out), flatten=case["flatten"])
        assert child.read_bytes().decode() == WRITERS[src_fmt].write(Document(*case["child"], bases))  # untouched
        converted = load(out)
        same(converted, original)
        assert converted.env == original.env

        if bases and not case["flatten"] and dst_fmt != "py":
            # The inheritance is kept: the output still names the base and follows it.
            (root / bases[0]).unlink()
            with pytest.raises(ConfigError, match="not found"):
                load(out)
        elif bases:
            (root / bases[0]).unlink()
            same(load(out), original)  # stands alone
        if dst_fmt == "py":
            exact_types_hold(out.read_bytes().decode(), original)


@pytest.mark.parametrize("src_fmt, dst_fmt", list(itertools.product(FORMATS, FORMATS)))
@settings(max_examples=30)
@given(case=cases())
def test_every_pair_of_formats_converts_losslessly(src_fmt, dst_fmt, case):
    check_conversion(src_fmt, dst_fmt, case)


# ---- keeping FROM, and flattening --------------------------------------------------------------

def test_without_flatten_the_output_follows_its_base(write, tmp_path):
    base = write("base.config", "TRAIN max_iters=1000\nMODEL n_layer=4\n")
    child = write("child.config", "FROM base.config\nLR_SCHEDULE lr_decay_iters=${max_iters} warmup_iters=10\n"
                                  "LOGGING out_dir=run-${n_layer}\n")
    convert([str(child)], str(tmp_path / "out" / "child.toml"))
    text = (tmp_path / "out" / "child.toml").read_text()
    assert 'extends = ["../base.config"]' in text and 'lr_decay_iters = "${max_iters}"' in text
    assert "n_layer =" not in text and "max_iters =" not in text  # the base's values stay there
    base.write_text("TRAIN max_iters=5000\nMODEL n_layer=8\n")
    cfg = load(tmp_path / "out" / "child.toml")
    assert (cfg["lr_decay_iters"], cfg["out_dir"]) == (5000, "run-8")
    assert cfg == load(child)


def test_flatten_writes_every_value_set(write, tmp_path):
    write("base.config", "TRAIN max_iters=1000\nENV A=1\n")
    child = write("child.config", "FROM base.config\nLR_SCHEDULE lr_decay_iters=${max_iters} warmup_iters=0\n")
    convert([str(child)], str(tmp_path / "flat.config"), flatten=True)
    assert (tmp_path / "flat.config").read_text() == (
        "TRAIN max_iters=1000\nLR_SCHEDULE warmup_iters=0 \\\n            lr_decay_iters=1000\nENV A=1\n")


def test_bases_converted_alongside_are_named_under_their_new_name(write, tmp_path):
    write("configs/base.config", "MODEL n_layer=4 n_head=4 n_embd=128\n")
    write("configs/mid.toml", 'extends = ["base.config"]\n[train]\nmax_iters = 10\n')
    write("configs/top.config", "FROM mid.toml base\nDATA batch_size=2\n")
    inputs = [str(tmp_path / "configs" / n) for n in ("top.config", "mid.toml", "base.config")]
    assert main([*inputs, "-o", str(tmp_path / "py_free"), "--to", "toml"]) == 0
    out = tmp_path / "py_free"
    assert 'extends = ["mid.toml", "base.toml"]' in (out / "top.toml").read_text()
    assert 'extends = ["base.toml"]' in (out / "mid.toml").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["base.toml", "mid.toml", "top.toml"]
    (tmp_path / "configs" / "base.config").unlink()
    assert load(out / "top.toml")["n_layer"] == 4


def test_a_base_not_converted_keeps_its_name(write, tmp_path):
    write("a/base.py", "n_layer = 4\n")
    write("a/child.config", "FROM base.py\nDATA batch_size=2\n")
    convert([str(tmp_path / "a" / "child.config")], str(tmp_path / "a" / "child.toml"))
    assert (tmp_path / "a" / "child.toml").read_text().startswith('extends = ["base.py"]\n')


def test_a_py_output_is_always_flat(write, tmp_path):
    write("base.toml", "[model]\nn_layer = 4\n")
    child = write("child.config", "FROM base.toml\nDATA batch_size=2\n")
    convert([str(child)], str(tmp_path / "out.py"))
    assert (tmp_path / "out.py").read_text() == "# MODEL\nn_layer = 4\n\n# DATA\nbatch_size = 2\n"


# ---- comments -----------------------------------------------------------------------------------

CONFIG_WITH_COMMENTS = """\
# A small model for tests
# (two header lines)

# the base
FROM base.config  # shared settings

# shape of the network
MODEL n_layer=6 \\
      # one comment line inside the statement
      dropout=0.1  # trailing, after dropout
TRAIN max_iters=500  # short run
ENV OMP_NUM_THREADS=2  # threads

# the end
"""

TOML_WITH_COMMENTS = """\
# A small model for tests
# (two header lines)

# the base
extends = ["base.config"]  # shared settings

[model]
# shape of the network
n_layer = 6
# one comment line inside the statement
dropout = 0.1  # trailing, after dropout

[train]
max_iters = 500  # short run

[env]
OMP_NUM_THREADS = "2"  # threads

# the end
"""

PY_WITH_COMMENTS = """\
# A small model for tests
# (two header lines)

# MODEL
# shape of the network
n_layer = 6
n_head = 2
n_embd = 64
# one comment line inside the statement
dropout = 0.1  # trailing, after dropout

# TRAIN
max_iters = 500  # short run

# ENV
import os
os.environ['OMP_NUM_THREADS'] = '2'  # threads

# the end
"""


def converted_with_comments(write, tmp_path, name):
    """CONFIG_WITH_COMMENTS (beside its base) converted to tmp_path / name: (the input, the text written)."""
    write("base.config", "MODEL n_head=2 n_embd=64\n")
    src = write("a.config", CONFIG_WITH_COMMENTS)
    convert([str(src)], str(tmp_path / name))
    return src, (tmp_path / name).read_text()


def test_comments_survive_config_toml_config(write, tmp_path):
    src, toml_text = converted_with_comments(write, tmp_path, "a.toml")
    assert toml_text == TOML_WITH_COMMENTS
    convert([str(tmp_path / "a.toml")], str(tmp_path / "back.config"))
    assert (tmp_path / "back.config").read_text() == CONFIG_WITH_COMMENTS  # the same text, comments and all
    assert load(tmp_path / "back.config") == load(src)
    # and once more: the text is stable
    convert([str(tmp_path / "back.config")], str(tmp_path / "again.toml"))
    assert (tmp_path / "again.toml").read_text() == toml_text


def test_comments_survive_config_to_py(write, tmp_path):
    _, text = converted_with_comments(write, tmp_path, "a.py")
    assert text == PY_WITH_COMMENTS
    # read back: the group comments are the writer's own, not the keys'
    convert([str(tmp_path / "a.py")], str(tmp_path / "b.config"))
    assert (tmp_path / "b.config").read_text().startswith(
        "# A small model for tests\n# (two header lines)\n\n# shape of the network\nMODEL n_layer=6 \\\n")


def test_legacy_comments_come_along(tmp_path):
    convert([str(DATA / "train_shakespeare_char.py")], str(tmp_path / "char.toml"))
    text = (tmp_path / "char.toml").read_text()
    assert text.startswith("# a small character-level model on the works of Shakespeare\n")
    assert "# a baby GPT\nn_layer = 6\n" in text
    assert "block_size = 256  # characters of context\n" in text
    assert text.endswith("# on a laptop, also set\n# device = 'cpu'\n# compile = False\n")


# ---- the legacy files, every way ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["train_shakespeare_char.py", "train_gpt2.py", "finetune_shakespeare.py"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_legacy_files_convert(tmp_path, name, fmt):
    original = load(DATA / name)
    convert([str(DATA / name)], str(tmp_path / f"out.{fmt}"))
    converted = load(tmp_path / f"out.{fmt}")
    if name.startswith("finetune"):  # time.time() is read again: the rest is the same
        assert converted["wandb_run_name"].startswith("ft-")
        converted = load(tmp_path / f"out.{fmt}", overrides=[f"--wandb_run_name={original['wandb_run_name']}"])
        assert not converted.warnings
    same(converted, original)


# ---- the command line ---------------------------------------------------------------------------

def test_cli_converts_and_reports(write, tmp_path, capsys):
    src = write("a.config", "MODEL n_layer=2\n")
    assert main([str(src), "-o", str(tmp_path / "a.toml")]) == 0
    assert capsys.readouterr().out == f"{src} -> {tmp_path / 'a.toml'}\n"


def test_cli_config_error_exit_2_nothing_written(write, tmp_path, capsys):
    src = write("a.config", "MODEL n_layr=2\n")
    assert main([str(src), "-o", str(tmp_path / "a.toml")]) == 2
    err = capsys.readouterr().err
    assert "a.config:1:7: error: Unknown key n_layr (did you mean n_layer?)" in err and "Traceback" not in err
    assert not (tmp_path / "a.toml").exists()


def test_cli_legacy_error_names_trust_py_and_trust_py_converts(tmp_path, capsys):
    path = DATA / "bad" / "unsupported_def.py"
    assert main([str(path), "-o", str(tmp_path / "a.config")]) == 2
    assert "--trust-py" in capsys.readouterr().err
    assert main([str(path), "-o", str(tmp_path / "a.config"), "--trust-py"]) == 0
    assert (tmp_path / "a.config").read_text() == (
        "# expect: 4: A function definition\nMODEL n_layer=4 \\\n      n_head=4\n")


@pytest.mark.parametrize("args, message", [
    (["a.config", "-o", "a.json"], "slo-convert writes .config, .toml or .py (for JSON: slo show --format json)"),
    (["a.config", "-o", "a.config"], "is an input: slo-convert never modifies its inputs"),
    (["a.config", "b.config", "-o", "out"], "Give --to config, toml or py"),
    (["a.config", "-o", "x.toml", "--to", "py"], "--to py does not match the extension of x.toml"),
    (["a.config", "b.config", "-o", "a.config", "--to", "toml"], "is a file: with several inputs, -o names a folder"),
    (["a.config", "sub/a.toml", "-o", "out", "--to", "py"], "would both be written to"),
])
def test_cli_usage_errors_exit_2(write, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    write("a.config", "MODEL n_layer=2\n")
    write("b.config", "MODEL n_layer=3\n")
    write("sub/a.toml", "[model]\nn_layer = 3\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_files_read_through_from_or_a_link_are_never_written(write, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = write("base.config", "MODEL n_layer=2\n")
    top = write("top.config", "FROM base.config\nMODEL n_head=2\n")
    os.symlink("top.config", tmp_path / "link.config")
    os.symlink(".", tmp_path / "same")
    before = {p: p.read_bytes() for p in (base, top)}
    for args, message in ((["top.config", "-o", "base.config"], "base.config is read by top.config (through FROM)"),
                          (["top.config", "-o", "base.toml", "--flatten"], None),
                          (["link.config", "-o", "top.config"], "top.config is an input"),
                          (["top.config", "-o", "same/top.config"], "same/top.config is an input")):
        status = main(args)
        err = capsys.readouterr().err
        if message is None:
            assert status == 0, err
        else:
            assert status == 2 and message in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in (base, top)} == before


def test_input_untouched_output_replaced_atomically(write, tmp_path):
    src = write("a.config", "MODEL n_layer=2\n")
    before = src.read_bytes(), os.stat(src).st_mtime_ns
    out = write("out/a.toml", "old contents\n")
    os.chmod(out, 0o640)
    convert([str(src)], str(out))
    assert (src.read_bytes(), os.stat(src).st_mtime_ns) == before
    assert out.read_text() == "[model]\nn_layer = 2\n"
    assert os.stat(out).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.toml"]  # no temporary file left


def test_an_unwritable_folder_is_exit_1(write, tmp_path, capsys):
    src = write("a.config", "MODEL n_layer=2\n")
    blocker = write("file", "x")
    assert main([str(src), "-o", str(blocker / "a.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("slo-convert: error: Cannot write") and "Traceback" not in err


def test_console_script_runs(write, tmp_path):
    import subprocess
    import sys
    src = write("a.py", "n_layer = 3 * 2\n")
    result = subprocess.run([sys.executable, "-m", "slo.convert", str(src), "-o", str(tmp_path / "a.config")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.config").read_text() == "MODEL n_layer=6\n"


def test_convert_api_errors(write, tmp_path):
    with pytest.raises(UsageError):
        convert([], str(tmp_path / "x.toml"))
    with pytest.raises(ConfigError):
        convert([str(tmp_path / "missing.config")], str(tmp_path / "x.toml"))


def test_a_value_from_time_time_is_said_to_be_frozen_at_conversion(write, tmp_path, capsys):
    source = write("run.py", "import time\nwandb_run_name = 'run' + str(time.time())\nmax_iters = 10\n")
    assert main([str(source), "-o", str(tmp_path / "run.config")]) == 0
    err = capsys.readouterr().err
    written = load(tmp_path / "run.config")["wandb_run_name"]
    assert f"warning: wandb_run_name was frozen at conversion: {tmp_path / 'run.config'} holds " \
           f"wandb_run_name={written}, what time.time() gave now" in err
