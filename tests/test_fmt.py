"""slo fmt: the canonical layout, its golden files, the rules it must keep on any valid config, and the command.

- ``data/fmt/NAME.config`` beside ``NAME.expected``: what fmt makes of it. Each case also checks that the
  expected text is a fixed point and that both texts hold the same statements (FROM paths first).
- For random valid configs laid out at random (case, blanks, comments, continuations, split statements):
  the formatted text resolves to the same values and formatting it again changes nothing.
- The command: --check 0/1/2, --diff, ``-``, other formats refused, errors in one line each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slo import ConfigError, dumps, loads
from slo.cli import main
from slo.fmt import WIDTH, format_text
from slo.statements import END_COL, FROM_PATH, KEY, KEY_COL, LINE, QUOTE, VALUE
from slo.lexer import tokenize
from test_properties import any_text, as_override, valid_configs

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = sorted((ROOT / "tests" / "data" / "fmt").glob("*.config"))


def meaning(text: str) -> tuple[list, list]:
    """What a text says, as the resolver reads it: the FROM paths, then every other directive's items, in order."""
    bases, items = [], []
    for directive, _, _, found in tokenize(text):
        if directive == "FROM":
            bases += [(item[FROM_PATH], item[-1]) for item in found]
        else:
            items += [(directive, item[KEY], item[VALUE], item[QUOTE]) for item in found]
    return bases, items


@pytest.mark.parametrize("case", GOLDEN, ids=lambda p: p.stem)
def test_golden(case):
    text = case.read_text()
    expected = case.with_suffix(".expected").read_text()
    assert format_text(text, str(case)) == expected
    assert format_text(expected) == expected
    assert meaning(expected) == meaning(text)
    for line in expected.splitlines():  # a line past WIDTH holds one pair too long for any line
        assert len(line) <= WIDTH or sum("=" in word for word in line.split()) == 1, line


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.config")), ids=lambda p: p.name)
def test_the_shipped_configs_are_formatted(config):
    assert format_text(config.read_text(), str(config)) == config.read_text()


def test_line_ends_and_byte_order_mark():
    assert format_text("\ufeffmodel n_layer=2\r\n\r\n\r\ndata batch_size=4\r\n") == "MODEL n_layer=2\n\nDATA batch_size=4\n"
    assert format_text("") == format_text("\n\n  \n") == ""


@pytest.mark.parametrize("text", ['MODEL a="x\n', "MODEL n_layer = 6\n", "= 1\n", "FROM\n"])
def test_a_text_that_does_not_tokenize_is_a_config_error(text):
    with pytest.raises(ConfigError) as e:
        format_text(text, "x.config")
    assert e.value.errors[0].path == "x.config" and e.value.errors[0].line == 1


# ---- the rules, on random valid configs ------------------------------------------------------------

BASE_DIR = Path(tempfile.mkdtemp(prefix="slo-fmt-"))
(BASE_DIR / "base.config").write_text("LOGGING log_interval=7\nENV FROM_BASE=1\n")

_blanks = st.sampled_from([" ", "  ", "\t", " \t "])
_between_pairs = st.one_of(_blanks, st.sampled_from([" \\\n", "\\\n", " \\\n   ", " \\  \n\t", " \\\n  # a note \\\n  ",
                                                     " \\\n#\n", " \\\n   \\\n  "]))
_between_statements = st.sampled_from(["\n", "\n", "\n\n", "\n\n\n", "\n# a comment\n", "\n  #indented\n\n",
                                       " # trailing\n", "\t#t\n\n", " \\\n\n", " \\\n# only a comment\n\n"])


@st.composite
def case_of(draw, word: str) -> str:
    return "".join(c.lower() if draw(st.booleans()) else c for c in word)


@st.composite
def laid_out(draw, text: str) -> str:
    """text's statements at random: directives in any case, each split into runs of pairs, any layout."""
    lines = text.split("\n")
    out = [draw(st.sampled_from(["", "# header\n\n", "\n\n", "  # c\n"]))]
    for directive, _, _, items in tokenize(text):
        pairs = [lines[item[LINE] - 1][item[KEY_COL] - 1:item[END_COL] - 1] for item in items]
        while pairs:
            n = draw(st.integers(1, len(pairs)))
            run, pairs = pairs[:n], pairs[n:]
            out.append(draw(st.sampled_from(["", " ", "\t"])) + draw(case_of(directive)) + draw(_blanks))
            out.append("".join(pair + (draw(_between_pairs) if i < len(run) - 1 else "") for i, pair in enumerate(run)))
            out.append(draw(_between_statements))
    return "".join(out)


def written(values: dict, env: dict, format: str = "config") -> str:
    """The keys and ENV values of a case of valid_configs, as slo writes them."""
    overrides = [as_override(k, v) for k, v in values.items()] + [f"--ENV.{n}={v.replace('$', '$$')}"
                                                                  for n, v in env.items()]
    return dumps(loads("", overrides=overrides), format, only_set=True)


def resolved(text: str) -> tuple[dict, dict]:
    cfg = loads(text, path=BASE_DIR / "c.config")
    return cfg.to_dict(), cfg.env


@settings(max_examples=150)
@given(valid_configs(), st.data())
def test_formatting_keeps_the_meaning_and_is_idempotent(case, data):
    canonical = written(*case)
    assert format_text(canonical) == canonical  # what slo writes is already in the layout
    base = data.draw(st.sampled_from(["", "FROM base.config\n", "from  base.config \\\n\n", "From \\\n  base.config\n"]))
    body = data.draw(laid_out(canonical))
    expected = resolved(base + canonical)
    if data.draw(st.booleans()):
        text = base + body
        assert resolved(text) == expected  # the layout drawn means what slo wrote
    else:
        text = body + base  # FROM last: an error that fmt mends
    formatted = format_text(text, str(BASE_DIR / "c.config"))
    assert resolved(formatted) == expected
    assert format_text(formatted) == formatted
    assert meaning(formatted) == meaning(text)


@settings(max_examples=300)
@given(any_text)
def test_any_text_is_formatted_to_the_same_statements_or_refused(text):
    try:
        formatted = format_text(text)
    except ConfigError:
        return
    assert meaning(formatted) == meaning(text)
    assert format_text(formatted) == formatted


# ---- the command ------------------------------------------------------------------------------------

UGLY = "model n_layer=2   n_head=2\nFROM base.config\n"
PRETTY = "FROM base.config\n\nMODEL n_layer=2 n_head=2\n"


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ugly.config").write_text(UGLY)
    (tmp_path / "pretty.config").write_text(PRETTY)
    (tmp_path / "bad.config").write_text("MODEL n_layer=2\nDATA dataset='x\n")
    return tmp_path


def fmt(capsys, *args) -> tuple[int, str, str]:
    status = main(["fmt", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def test_check(files, capsys):
    assert fmt(capsys, "--check", "pretty.config") == (0, "", "")
    assert fmt(capsys, "--check", "pretty.config", "ugly.config") == (1, "", "would reformat ugly.config\n")
    status, _, err = fmt(capsys, "--check", "ugly.config", "bad.config", "pretty.config")
    assert status == 2 and "would reformat ugly.config" in err
    assert "bad.config:2:14: error: Unterminated single-quoted string" in err
    assert (files / "ugly.config").read_text() == UGLY


def test_diff_prints_the_change_and_writes_nothing(files, capsys):
    status, out, _ = fmt(capsys, "--diff", "ugly.config", "pretty.config")
    assert status == 0 and (files / "ugly.config").read_text() == UGLY
    assert out.splitlines()[:2] == ["--- ugly.config (as written)", "+++ ugly.config (formatted)"]
    assert "-model n_layer=2   n_head=2\n" in out and "+MODEL n_layer=2 n_head=2\n" in out and "pretty" not in out
    status, out, err = fmt(capsys, "--diff", "--check", "ugly.config")
    assert status == 1 and "+MODEL" in out and "would reformat ugly.config" in err


def test_files_are_rewritten_in_place_keeping_their_mode(files, capsys):
    os.chmod(files / "ugly.config", 0o640)
    assert fmt(capsys, "ugly.config", "pretty.config") == (0, "", "reformatted ugly.config\n")
    assert (files / "ugly.config").read_text() == PRETTY
    assert os.stat(files / "ugly.config").st_mode & 0o777 == 0o640
    assert sorted(p.name for p in files.iterdir()) == ["bad.config", "pretty.config", "ugly.config"]


def test_a_link_is_followed(files, capsys):
    os.symlink("ugly.config", files / "link.config")
    assert fmt(capsys, "link.config")[0] == 0
    assert (files / "link.config").is_symlink() and (files / "ugly.config").read_text() == PRETTY


def test_stdin_to_stdout(files, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(UGLY))
    assert fmt(capsys, "-") == (0, PRETTY, "")
    monkeypatch.setattr(sys, "stdin", io.StringIO(UGLY))
    assert fmt(capsys, "--check", "-") == (1, "", "would reformat -\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("MODEL a='x\n"))
    status, _, err = fmt(capsys, "-")
    assert status == 2 and err.startswith("<stdin>:1:9: error: Unterminated single-quoted string")


@pytest.mark.parametrize("name, formatter", [("a.toml", "taplo"), ("a.py", "ruff format"), ("A.TOML", "taplo")])
def test_other_formats_are_refused(files, capsys, name, formatter):
    (files / name).write_text("[model]\nn_layer=2\n")
    status, out, err = fmt(capsys, name)
    assert status == 2 and out == "" and formatter in err and err.count("\n") == 1
    assert (files / name).read_text() == "[model]\nn_layer=2\n"


def test_a_missing_unreadable_or_read_only_file_is_one_line(files, capsys):
    status, _, err = fmt(capsys, "missing.config", "pretty.config")
    assert status == 2 and err.splitlines() == ["missing.config: error: Config file not found: missing.config",
                                                "1 error"]
    (files / "sub").mkdir()
    assert "sub: error: Cannot read sub: Is a directory" in fmt(capsys, "sub")[2]
    os.chmod(files / "ugly.config", 0o444)
    status, _, err = fmt(capsys, "ugly.config")
    assert status == 1 and err == "error: Cannot write ugly.config: it is read-only (make it writable, or use --check or --diff)\n"
    assert (files / "ugly.config").read_text() == UGLY
    assert fmt(capsys, "--check", "ugly.config")[0] == 1


def test_the_verb_from_a_new_process(files):
    done = subprocess.run([sys.executable, "-m", "slo", "fmt", "-"], input=UGLY, capture_output=True, text=True,
                          cwd=files, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (0, PRETTY, "")


# ---- the pre-commit hook -------------------------------------------------------------------------------

def test_the_pre_commit_hook_runs_slo_fmt_check(files):
    import re
    import shlex

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "slo-fmt"]
    assert hook["language"] == "python" and re.search(hook["files"], "a/b.config") and not re.search(hook["files"], "b.toml")
    entry = shlex.split(hook["entry"]) + shlex.split(" ".join(hook.get("args", [])))
    assert entry[0] == "slo"
    for name, status in (("pretty.config", 0), ("ugly.config", 1)):
        done = subprocess.run([sys.executable, "-m", "slo", *entry[1:], name], capture_output=True, text=True,
                              cwd=files, timeout=300)
        assert done.returncode == status, done.stderr
    assert (files / "ugly.config").read_text() == UGLY
