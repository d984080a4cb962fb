"""The corpus: configs beside their expected results, each one its own test case.

- ``data/invalid/NAME.config`` beside ``NAME.expected``: the first line of every
  diagnostic (``path:line:col: error: message``), in the order reported, with
  paths relative to data/invalid.
- ``data/valid/NAME.config`` beside ``NAME.json``: every key the config sets,
  with its resolved value, and ``ENV.NAME`` for each environment variable;
  nothing else may be set.

Bases named by FROM live in the ``bases`` folders, which are not cases themselves.
Configs are loaded with an empty process environment, so ``${env:...}`` sees only ENV.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slo import ConfigError, dumps, load, loads

DATA = Path(__file__).resolve().parent / "data"
INVALID = sorted(p.stem for p in (DATA / "invalid").glob("*.config"))
VALID = sorted(p.stem for p in (DATA / "valid").glob("*.config"))


def test_the_corpus_is_there():
    assert len(INVALID) >= 40 and len(VALID) >= 10
    for name in INVALID:
        assert (DATA / "invalid" / f"{name}.expected").is_file(), name
    for name in VALID:
        assert (DATA / "valid" / f"{name}.json").is_file(), name


@pytest.mark.parametrize("name", INVALID)
def test_invalid(name, monkeypatch):
    monkeypatch.chdir(DATA / "invalid")
    expected = (DATA / "invalid" / f"{name}.expected").read_text(encoding="utf-8").splitlines()
    with pytest.raises(ConfigError) as info:
        load(f"{name}.config", env={})
    got = [f"{d.location()}: {d.severity}: {d.message}" for d in info.value.errors]
    assert got == expected
    for d in info.value.errors:
        if d.line:  # the caret display has the source line it points into
            assert d.source and 1 <= d.col <= len(d.source) + 1, d


def resolved(cfg) -> dict:
    values = {key: cfg[key] for key in cfg if cfg.is_set(key)}
    values.update({f"ENV.{name}": value for name, value in cfg.env.items()})
    return values


def typed(values: dict) -> dict:
    """Values with their types, so 1 and 1.0 and True differ."""
    return {k: (type(v).__name__, v) for k, v in values.items()}


@pytest.mark.parametrize("name", VALID)
def test_valid(name, monkeypatch):
    monkeypatch.chdir(DATA / "valid")
    expected = json.loads((DATA / "valid" / f"{name}.json").read_text(encoding="utf-8"))
    cfg = load(f"{name}.config", env={})
    assert typed(resolved(cfg)) == typed(expected)
    assert cfg.warnings == []


@pytest.mark.parametrize("name", VALID)
def test_valid_round_trip(name, monkeypatch):
    """load -> dumps -> loads gives the same config, whole or only the keys set."""
    monkeypatch.chdir(DATA / "valid")
    cfg = load(f"{name}.config", env={})
    again = loads(dumps(cfg), env={})
    assert again == cfg
    assert typed(again.to_dict()) == typed(cfg.to_dict())
    only_set = loads(dumps(cfg, only_set=True), env={})
    assert only_set == cfg
    assert typed(resolved(only_set)) == typed(resolved(cfg))


def test_valid_json_matches_show_json(monkeypatch):
    """The expected files use the same flat form as ``slo show --format json``."""
    monkeypatch.chdir(DATA / "valid")
    cfg = load("env.config", env={})
    shown = json.loads(dumps(cfg, "json"))
    expected = json.loads(Path("env.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in shown.items() if k in expected} == expected


SHIPPED = sorted((DATA.parent.parent / "configs").glob("*.config"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_load_cleanly_and_round_trip(path):
    cfg = load(path, env={})
    assert cfg.warnings == []
    assert loads(dumps(cfg), env={}) == cfg
