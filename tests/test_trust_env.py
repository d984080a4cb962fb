"""ENV that chooses which code runs (PYTHONPATH, LD_PRELOAD, ...) is a config error unless --trust-env says otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slo
from slo.runner.train_command import main as train_main
from slo.schema import CODE_ENV, CODE_ENV_PREFIXES, code_env


@pytest.mark.parametrize("name", sorted(CODE_ENV) + [p + "PRELOAD" for p in CODE_ENV_PREFIXES])
def test_each_code_choosing_variable_is_refused(name):
    with pytest.raises(slo.ConfigError, match=rf"ENV {name} changes .*--trust-env") as info:
        slo.loads(f"ENV {name}=/tmp/x\n", path="a.config")
    assert (info.value.errors[0].line, info.value.errors[0].col) == (1, 6 + len(name))
    assert slo.loads(f"ENV {name}=/tmp/x\n", trust_env=True).env == {name: "/tmp/x"}


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True))
def test_only_the_listed_variables_are_refused(name):
    text = f"ENV {name}=1\n"
    if code_env(name) is None:
        assert slo.loads(text).env == {name: "1"}
    else:
        with pytest.raises(slo.ConfigError, match="--trust-env"):
            slo.loads(text)


def test_every_place_an_env_value_comes_from_is_checked(write):
    base = write("base.toml", '[env]\nLD_PRELOAD = "evil.so"\n')
    top = write("top.config", "FROM base.toml\nENV A=1\n")
    with pytest.raises(slo.ConfigError) as info:
        slo.load(top, overrides=["--ENV.PYTHONPATH=/tmp/x"])
    assert sorted(d.path for d in info.value.errors) == sorted(["<command line>", str(base)])


def test_check_reports_it_and_train_runs_nothing(write, slo_cli, tmp_path, capsys):
    folder = tmp_path / "code"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = write("run.config", f"ENV PYTHONPATH='{folder}'\nDDP nproc_per_node=2\nDATA dataset=builtin\n")
    checked = slo_cli("check", config)
    assert checked.returncode == 2 and "ENV PYTHONPATH changes where Python imports modules from" in checked.stderr
    assert slo_cli("check", "--trust-env", config).returncode == 0
    assert train_main([str(config)]) == 2
    assert "--trust-env" in capsys.readouterr().err
    assert not marker.exists()
