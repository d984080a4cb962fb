"""``slo check`` and ``slo show`` (SPEC section 10), run as a user runs them: in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from slo import dumps, load, loads

GOOD = """\
# a small model
MODEL n_layer=2 n_head=2 \\
      n_embd=64
DATA dataset=tiny batch_size=4
ENV OMP_NUM_THREADS=2
"""

BAD = """\
MODEL n_layer = 2
MODEL n_head=6 n_embd=100 batch_size=3
TRAIN learning_rate=fast
"""


@pytest.fixture
def files(write, tmp_path):
    write("good.config", GOOD)
    write("bad.config", BAD)
    write("base.config", "MODEL n_layer=4 n_head=4\nDATA batch_size=8\n")
    write("top.config", "FROM base.config\nMODEL n_layer=6\n")
    return tmp_path


def test_check_valid_exits_0(files, slo_cli):
    r = slo_cli("check", "good.config", cwd=files)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "good.config: ok (5 keys set, 0 warnings)\n"


def test_check_errors_exit_2_gcc_style_without_traceback(files, slo_cli):
    r = slo_cli("check", "bad.config", cwd=files)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert r.stderr == textwrap.dedent("""\
        bad.config:1:7: error: No whitespace is allowed around '=': write n_layer=2
          MODEL n_layer = 2
                ^~~~~~~~~
        bad.config:2:23: error: n_embd=100 is not divisible by n_head=6 (n_head from bad.config:2:14)
          MODEL n_head=6 n_embd=100 batch_size=3
                                ^~~
        bad.config:2:27: error: batch_size belongs to DATA, not MODEL
          MODEL n_head=6 n_embd=100 batch_size=3
                                    ^~~~~~~~~~
        bad.config:3:21: error: learning_rate=fast is not a float
          TRAIN learning_rate=fast
                              ^~~~
        4 errors
        """)


def test_check_warns_about_a_key_set_twice(write, tmp_path, slo_cli):
    write("twice.config", "MODEL n_layer=2\nMODEL n_layer=3\n")
    r = slo_cli("check", "twice.config", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr == textwrap.dedent("""\
        twice.config:2:7: warning: n_layer is set twice in this file (first at twice.config:1:7); the later value wins
          MODEL n_layer=3
                ^~~~~~~~~
        """)
    assert r.stdout == "twice.config: ok (1 keys set, 1 warning)\n"


def test_check_several_files_and_overrides(files, slo_cli):
    r = slo_cli("check", "good.config", "top.config", "--n_layer=3", "--DATA.batch_size=2", cwd=files)
    assert r.returncode == 0, r.stderr
    r = slo_cli("check", "good.config", "--n_layer=0", "--MODEL.batch_size=2", "--n_layrs=1", cwd=files)
    assert r.returncode == 2
    assert r.stderr.splitlines()[::3] == [
        "<command line>:1:11: error: n_layer=0 is out of range: must be 1 <= x <= 4096",
        "<command line>:1:15: error: batch_size belongs to DATA, not MODEL",
        "<command line>:1:36: error: Unknown key n_layrs (did you mean n_layer?)",
        "3 errors",
    ]


def test_check_missing_and_unreadable_files(files, write, slo_cli):
    write("junk.config", bytes(range(256)))
    for args in (["nothing.config"], ["junk.config"], []):
        r = slo_cli("check", *args, cwd=files)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr and "error:" in r.stderr
    assert slo_cli("check", "nothing", cwd=files).stderr.startswith("nothing.config: error: Config file not found")


def test_show_config_reads_back(files, slo_cli):
    r = slo_cli("show", "top.config", "--MODEL.n_head=2", cwd=files)
    assert r.returncode == 0, r.stderr
    expected = load(files / "top.config", overrides=["--n_head=2"])
    assert loads(r.stdout) == expected
    assert r.stdout == dumps(expected)
    assert slo_cli("show", "top.config", "--format", "config", cwd=files).stdout == dumps(load(files / "top.config"))


def test_show_json(files, slo_cli):
    r = slo_cli("show", "good.config", "--format", "json", "--ENV.EXTRA=1", cwd=files)
    assert r.returncode == 0, r.stderr
    cfg = load(files / "good.config")
    assert json.loads(r.stdout) == {**cfg.to_dict(), "ENV.OMP_NUM_THREADS": "2", "ENV.EXTRA": "1"}


def test_show_explain_names_origins_and_what_they_overrode(files, slo_cli):
    r = slo_cli("show", "top.config", "--explain", "--n_layer=8", cwd=files)
    assert r.returncode == 0, r.stderr
    lines = {line.split("=")[0].strip(): line for line in r.stdout.splitlines() if "=" in line}
    assert lines["n_layer"].split("#", 1)[1].strip() == (
        "cli (overrides 6 from top.config:2:15, 4 from base.config:1:15, 12 from default)")
    assert lines["n_head"].split("#", 1)[1].strip() == "base.config:1:24 (overrides 12 from default)"
    assert lines["n_embd"].split("#", 1)[1].strip() == "default"
    assert lines["n_layer"].split("#")[0].split() == ["n_layer", "=", "8"]
    assert r.stdout.startswith("[MODEL]\n")


def test_show_on_errors_exits_2(files, slo_cli):
    r = slo_cli("show", "bad.config", "--format", "json", cwd=files)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.endswith("4 errors\n")


def test_console_script_is_installed(files):
    slo = shutil.which("slo")
    assert slo, "the slo console script is not on PATH (pip install -e .)"
    r = subprocess.run([slo, "check", "good.config"], cwd=files, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [["check", "good.config"], ["check", "bad.config"],
                                  ["show", "good.config", "--explain"], ["show", "top.config", "--format", "json"]])
def test_config_commands_do_not_import_torch(files, args):
    code = ("import sys\n"
            "from slo.cli import main\n"
            f"rc = main({args!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=files, capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 2), r.stderr
    assert "torch was imported" not in r.stderr


def test_docs_keys_md_is_generated_from_the_schema():
    from pathlib import Path

    from slo import keys_doc

    shipped = (Path(__file__).parent.parent / "docs" / "keys.md").read_text(encoding="utf-8")
    assert shipped == keys_doc.markdown() + "\n", "regenerate it: slo keys --markdown > docs/keys.md"


def test_arguments_a_command_does_not_take_are_errors(files, slo_cli):
    r = slo_cli("keys", "extra", cwd=files)
    assert r.returncode == 2 and "slo keys: error: unrecognized arguments: extra" in r.stderr and not r.stdout
    r = slo_cli("show", "good.config", "--explain", "--format", "py", cwd=files)
    assert r.returncode == 2 and "--explain" in r.stderr and not r.stdout


def test_a_reader_that_goes_away_stops_output_quietly(files):
    import subprocess
    import sys

    # more output than a pipe holds, so the writer meets the closed pipe
    (files / "big.config").write_text("".join(f"ENV VAR_{i}={'x' * 60}\n" for i in range(3000)))
    proc = subprocess.Popen([sys.executable, "-m", "slo.cli", "show", "big.config", "--explain"], cwd=files,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # as `| head -1` does
    stderr = proc.stderr.read().decode()
    assert (proc.wait(timeout=300), stderr) == (141, "")
