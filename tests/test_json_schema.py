"""slo keys --json-schema: a valid draft 2020-12 schema that takes every TOML config slo writes and refuses
what slo refuses (and, where marked, what it would only take loosely: a string for a number or a bool)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jsonschema = pytest.importorskip("jsonschema")

from slo import ConfigError, dumps, load  # noqa: E402
from slo.convert import convert  # noqa: E402
from slo.json_schema import ecma_pattern, json_schema  # noqa: E402
from slo.schema import KEYS, SECTION_KEYS  # noqa: E402
from test_fmt import written  # noqa: E402
from test_properties import valid_configs, valid_configs_by_rule  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.config"))
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def errors(toml_text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(tomllib.loads(toml_text))]


def test_the_schema_is_valid_draft_2020_12_and_what_slo_keys_prints():
    jsonschema.Draft202012Validator.check_schema(json_schema())
    done = subprocess.run([sys.executable, "-m", "slo", "keys", "--json-schema"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and json.loads(done.stdout) == json_schema()


def test_every_key_of_the_schema_is_there_with_its_default_and_doc():
    schema = json_schema()
    for section, names in SECTION_KEYS.items():
        assert list(schema["properties"][section.lower()]["properties"]) == list(names)
    for name, key in KEYS.items():
        found = schema["$defs"][name]
        assert found["description"].startswith(key.doc)
        assert found["default"] == ("None" if key.default is None else key.default)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_the_shipped_configs_as_toml_are_valid(config, tmp_path):
    out = tmp_path / (config.stem + ".toml")
    convert([str(config)], str(out))
    cfg = load(str(config))
    for text in (out.read_text(), dumps(cfg, "toml"), dumps(cfg, "toml", only_set=True)):
        assert errors(text) == []


def test_a_sweep_as_toml_is_valid(tmp_path):
    (tmp_path / "sweep.config").write_text("SWEEP learning_rate=1e-3,3e-3 dropout=uniform(0,0.2) n_layer=2,4 "
                                           "seed=0 trials=4 halving=3 rungs=2\nENV OMP_NUM_THREADS=1\n")
    convert([str(tmp_path / "sweep.config")], str(tmp_path / "sweep.toml"))
    assert errors((tmp_path / "sweep.toml").read_text()) == []
    assert errors('[sweep]\nseed = [1, 2]\nbias = [true, false]\ndtype = ["float32", "auto"]\n') == []


# (TOML, whether slo refuses it too: False where slo's reader takes it, as text it types, and the schema,
# being an editor's check of the TOML slo writes, is stricter)
WRONG = {
    "unknown table": ('[modle]\nn_layer = 2\n', True),
    "unknown key": ('[model]\nn_layers = 2\n', True),
    "key in the wrong table": ('[data]\nn_layer = 2\n', True),
    "key at the top": ('n_layer = 2\n', True),
    "wrong type": ('[model]\nn_layer = "six"\n', True),
    "a fraction for an int": ('[model]\nn_layer = 2.5\n', True),
    "a table for a value": ('[model]\nn_layer = {a = 1}\n', True),
    "an array outside [sweep]": ('[model]\nn_layer = [1, 2]\n', True),
    "out of range": ('[model]\nn_layer = 0\n', True),
    "above the maximum": ('[ddp]\nmaster_port = 65536\n', True),
    "at an exclusive bound": ('[train]\nbeta1 = 1.0\n', True),
    "float out of range": ('[model]\ndropout = 1.5\n', True),
    "bad choice": ('[system]\ndtype = "float8"\n', True),
    "bad pattern": ('[system]\ndevice = "cuda:x"\n', True),
    "empty string": ('[logging]\nout_dir = ""\n', True),
    "a string where a bool is due": ('[model]\nbias = "true"\n', False),
    "a string where a number is due": ('[model]\nn_layer = "6"\n', False),
    "None for a key that takes none": ('[model]\nn_layer = "None"\n', True),
    "empty extends": ('extends = []\n', True),
    "extends of a number": ('extends = 3\n', True),
    "bad ENV name": ('[env]\n1X = "a"\n', True),
    "ENV not a string": ('[env]\nA = 1\n', True),
    "unknown sweep key": ('[sweep]\nn_layers = [1, 2]\n', True),
    "sweep setting out of range": ('[sweep]\ntrials = 0\n', True),
    "sweep choice out of range": ('[sweep]\nn_layer = [0, 2]\n', True),
    "empty sweep choices": ('[sweep]\nn_layer = []\n', True),
    "a sweep metric that names no task": ('[sweep]\nn_layer = [1, 2]\nmetric = "hellaswag"\n', True),
    "a sweep goal that is neither": ('[sweep]\nn_layer = [1, 2]\nmetric = "val_loss"\ngoal = "up"\n', True),
    "a sweep metric that is no string": ('[sweep]\nn_layer = [1, 2]\nmetric = 1\n', True),
}


@pytest.mark.parametrize("name", WRONG)
def test_wrong_toml_is_refused(name, tmp_path):
    text, slo_too = WRONG[name]
    assert errors(text), f"the schema takes {text!r}"
    path = tmp_path / "wrong.toml"
    path.write_text(text)
    if slo_too:
        with pytest.raises(ConfigError):
            load(str(path))
    else:
        load(str(path))


@pytest.mark.parametrize("text", ['[model]\nvocab_size = "None"\n', '[train]\nstop_iter = "null"\n',
                                  '[lr_schedule]\nlr_decay_iters = "${max_iters}"\n', '[train]\nmax_iters = 1e3\n',
                                  '[system]\ndtype = "${env:DTYPE:-auto}"\n', '[model]\ndropout = 0\n',
                                  'extends = "base.toml"\n', '[env]\n_A1 = "x"\n',
                                  '[sweep]\nn_layer = [1, 2]\nmetric = "hellaswag/acc_norm"\ngoal = "max"\n'])
def test_what_slo_takes_the_schema_takes(text):
    assert errors(text) == []


@settings(max_examples=100)
@given(valid_configs())
def test_any_valid_config_as_toml_is_valid(case):
    assert errors(written(*case, "toml")) == []


@settings(max_examples=50)
@given(valid_configs_by_rule())
def test_any_valid_config_by_rule_as_toml_is_valid(case):
    assert errors(written(*case, "toml")) == []


@pytest.mark.parametrize("name", [name for name, key in KEYS.items() if key.pattern])
@settings(max_examples=60)
@given(text=st.text(st.sampled_from("hf:autocpumda0123\n.x")) | st.sampled_from(["hf:", "hf:\n", "cuda:12\n", ""]))
def test_a_pattern_means_what_it_means_to_slo(name, text):
    expected = re.fullmatch(KEYS[name].pattern, text, re.DOTALL) is not None
    assert (re.search(ecma_pattern(KEYS[name].pattern), text) is not None) == expected
