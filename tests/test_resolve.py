"""Resolution (SPEC section 4), typing and validation (3, 5) and the Python API (10)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

import slo
from slo import Config, ConfigError, dumps, load, loads
from slo.errors import Diagnostic
from slo import source as source_module
from slo.resolve import MAX_DEPTH
from slo.schema import DEFAULTS, KEYS, SECTION_KEYS, SECTIONS


def errors_of(call, *args, **kwargs) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    return info.value.errors


def first_lines(errors) -> list[str]:
    return [f"{d.location()}: {d.severity}: {d.message}" for d in errors]


def messages(errors) -> list[str]:
    return [d.message for d in errors]


# ---- the Python API -----------------------------------------------------------

def test_load_and_loads_agree(write, tmp_path):
    text = "MODEL n_layer=2 n_head=2 n_embd=64\nDATA dataset=tiny\nENV OMP_NUM_THREADS=2\n"
    path = write("a.config", text)
    cfg = load(path)
    assert isinstance(cfg, Config)
    assert cfg == loads(text, path=str(path))
    assert cfg == loads(text)
    assert (cfg["n_layer"], cfg["dataset"], cfg.env) == (2, "tiny", {"OMP_NUM_THREADS": "2"})


def test_item_and_section_access_agree_for_every_key():
    cfg = loads("MODEL n_layer=3\nDDP master_port=1234")
    assert cfg.model.n_layer == cfg["n_layer"] == 3
    assert cfg.ddp.master_port == 1234
    for section in SECTIONS:
        part = getattr(cfg, section.lower())
        assert dataclasses.is_dataclass(part)
        assert [f.name for f in dataclasses.fields(part)] == list(SECTION_KEYS[section])
        for key in SECTION_KEYS[section]:
            assert getattr(part, key) == cfg[key]
    with pytest.raises(AttributeError, match="sections: model"):
        cfg.modle  # noqa: B018


def test_config_is_immutable():
    cfg = loads("MODEL n_layer=3\nENV A=1")
    with pytest.raises(AttributeError, match="immutable"):
        cfg.n_layer = 4
    with pytest.raises(AttributeError):
        cfg.model = None
    with pytest.raises(TypeError):
        cfg["n_layer"] = 4  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.n_layer = 4
    cfg.to_dict()["n_layer"] = 99
    cfg.env["A"] = "changed"
    assert cfg["n_layer"] == 3 and cfg.env == {"A": "1"}


def test_to_dict_holds_every_key_and_no_env():
    cfg = loads("MODEL n_layer=3\nENV A=1")
    d = cfg.to_dict()
    assert list(d) == list(KEYS)
    assert d == {**DEFAULTS, "n_layer": 3}
    assert len(cfg) == len(KEYS) and set(cfg) == set(KEYS) and "n_layer" in cfg


def test_equality_and_hash():
    a = loads("MODEL n_layer=3\nENV A=1")
    b = loads("ENV A=1\nMODEL n_layer=3 n_layer=3")
    assert a == b and hash(a) == hash(b)
    assert a != loads("MODEL n_layer=3\nENV A=2")
    assert a != loads("MODEL n_layer=4\nENV A=1")


def test_origin_names_default_file_and_cli(write):
    path = write("a.config", "MODEL n_layer=3\nDATA   batch_size=4\nENV A=x\n")
    cfg = load(path, overrides=["--n_head=2", "--ENV.B=y"])
    assert str(cfg.origin("n_embd")) == "default" and cfg.origin("n_embd").kind == "default"
    assert str(cfg.origin("n_layer")) == f"{path}:1:15"
    assert str(cfg.origin("batch_size")) == f"{path}:2:19"
    assert str(cfg.origin("n_head")) == "cli"
    assert str(cfg.origin("ENV.A")) == f"{path}:3:7"
    assert str(cfg.origin("ENV.B")) == "cli"
    assert [cfg.is_set(k) for k in ("n_layer", "n_head", "n_embd")] == [True, True, False]
    with pytest.raises(KeyError):
        cfg.origin("n_layers")
    with pytest.raises(KeyError):
        cfg.origin("ENV.C")


def test_origin_remembers_what_it_overrode(write):
    write("base.config", "MODEL n_layer=2\n")
    path = write("top.config", "FROM base.config\nMODEL n_layer=4\n")
    origin = load(path, overrides=["--n_layer=6"]).origin("n_layer")
    assert [(o.kind, o.text) for o in origin.chain()] == [("cli", "6"), ("file", "4"), ("file", "2")]
    assert [str(o) for o in origin.chain()[1:]] == [f"{path}:2:15", f"{os.path.join(os.path.dirname(path), 'base.config')}:1:15"]


def test_config_error_is_a_value_error_with_diagnostics():
    errors = errors_of(loads, "MODEL n_layer=x\n\nDATA batch_size=0\n", path="bad.config")
    assert issubclass(ConfigError, ValueError)
    assert [(d.path, d.line, d.col) for d in errors] == [("bad.config", 1, 15), ("bad.config", 3, 17)]
    assert all(isinstance(d, Diagnostic) and d.severity == "error" for d in errors)
    with pytest.raises(ValueError) as info:
        loads("MODEL n_layer=x", path="bad.config")
    assert str(info.value) == ("bad.config:1:15: error: n_layer=x is not an int\n"
                               "  MODEL n_layer=x\n"
                               "                ^")


def test_public_names():
    for name in ("load", "loads", "dumps", "Config", "ConfigError", "tokenize"):
        assert hasattr(slo, name)


# ---- the schema's defaults are nanoGPT's (SPEC section 3) -------------------

SPEC_DEFAULTS = {
    "n_layer": 12, "n_head": 12, "n_embd": 768, "dropout": 0.0, "bias": False, "vocab_size": None,
    "use_rope": False, "use_rmsnorm": False, "use_swiglu": False,
    "n_kv_head": None, "rope_theta": 10000.0, "tie_weights": True, "norm_eps": 1e-5, "init_std": 0.02,
    "mlp_ratio": 4.0, "qk_norm": False, "activation_checkpointing": False,
    "dataset": "openwebtext", "data_dir": "data", "batch_size": 12, "block_size": 1024,
    "gradient_accumulation_steps": 40,
    "learning_rate": 6e-4, "max_iters": 600000, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
    "grad_clip": 1.0, "init_from": "scratch", "eval_only": False, "seed": 1337,
    "decay_lr": True, "schedule": "cosine", "warmup_iters": 2000, "lr_decay_iters": 600000, "min_lr": 6e-5,
    "cooldown_iters": 0,
    "out_dir": "out", "eval_interval": 2000, "log_interval": 1, "eval_iters": 200,
    "always_save_checkpoint": True, "wandb_log": False, "wandb_project": "owt", "wandb_run_name": "gpt2",
    "device": "auto", "dtype": "auto", "compile": True,
    "backend": "auto", "nproc_per_node": None, "master_addr": "127.0.0.1", "master_port": 29500,
    "find_unused_parameters": False,
}
SPEC_SECTIONS = {
    "MODEL": "n_layer n_head n_embd dropout bias vocab_size use_rope use_rmsnorm use_swiglu",
    "ADVANCED": "n_kv_head rope_theta tie_weights norm_eps init_std mlp_ratio qk_norm activation_checkpointing",
    "DATA": "dataset data_dir batch_size block_size gradient_accumulation_steps",
    "TRAIN": "learning_rate max_iters weight_decay beta1 beta2 grad_clip init_from eval_only seed",
    "LR_SCHEDULE": "decay_lr schedule warmup_iters lr_decay_iters min_lr cooldown_iters",
    "SYSTEM": "device dtype compile",
    "DDP": "backend nproc_per_node master_addr master_port find_unused_parameters",
}


@pytest.mark.parametrize("key", sorted(SPEC_DEFAULTS))
def test_default_matches_the_spec(key):
    value = DEFAULTS[key]
    assert (type(value), value) == (type(SPEC_DEFAULTS[key]), SPEC_DEFAULTS[key])


def test_keys_live_in_the_spec_sections():
    for section, keys in SPEC_SECTIONS.items():
        for key in keys.split():
            assert KEYS[key].section == section, key
    assert set(KEYS) >= set(SPEC_DEFAULTS)


def test_an_empty_config_is_all_defaults():
    assert loads("").to_dict() == DEFAULTS
    assert loads("# nothing\n\n").env == {}


# ---- typing by the key (SPEC section 3) -------------------------------------

@pytest.mark.parametrize("key, text, value", [
    ("n_layer", "6", 6), ("n_layer", "+6", 6), ("seed", "+3", 3), ("max_iters", "600_000", 600000),
    ("max_iters", "1e6", 1000000), ("max_iters", "3000.0", 3000), ("seed", "0", 0),
    ("learning_rate", "1", 1.0), ("learning_rate", "6e-4", 6e-4), ("learning_rate", ".5", 0.5),
    ("dropout", "0", 0.0), ("rope_theta", "1_000.5", 1000.5),
    ("bias", "true", True), ("bias", "TRUE", True), ("bias", "False", False), ("bias", "fAlSe", False),
    ("vocab_size", "None", None), ("vocab_size", "none", None), ("vocab_size", "null", None),
    ("vocab_size", "50304", 50304), ("n_kv_head", "null", None), ("nproc_per_node", "None", None),
    ("dataset", "shakespeare_char", "shakespeare_char"), ("dataset", "'123'", "123"), ("dataset", "123", "123"),
    ("wandb_run_name", '""', ""), ("wandb_run_name", "None", "None"), ("wandb_run_name", "true", "true"),
    ("device", "cuda:1", "cuda:1"), ("schedule", "wsd", "wsd"), ("dtype", "bfloat16", "bfloat16"),
    ("init_from", "ckpt/x.pt", "ckpt/x.pt"),
])
def test_values_are_typed_by_the_key(key, text, value):
    section = KEYS[key].section
    got = loads(f"{section} {key}={text}")[key]
    assert (type(got), got) == (type(value), value)


@pytest.mark.parametrize("key, text, message", [
    ("n_layer", "six", "n_layer=six is not an int"),
    ("n_layer", "2.5", "n_layer=2.5 is not an int"),
    ("n_layer", "true", "n_layer=true is not an int"),
    ("n_layer", "None", "n_layer=None is not an int"),
    ("n_layer", "1__0", "n_layer=1__0 is not an int"),
    ("learning_rate", "fast", "learning_rate=fast is not a float"),
    ("learning_rate", "nan", "learning_rate=nan is not a float"),
    ("learning_rate", "inf", "learning_rate=inf is not a float"),
    ("bias", "1", "bias=1 is not a bool (true or false)"),
    ("bias", "yes", "bias=yes is not a bool (true or false)"),
    ("vocab_size", "many", "vocab_size=many is not an int or None"),
    ("vocab_size", "NONE", "vocab_size=NONE is not an int or None"),
    ("n_layer", "0", "n_layer=0 is out of range: must be 1 <= x <= 4096"),
    ("dropout", "1.5", "dropout=1.5 is out of range: must be 0 <= x <= 1"),
    ("beta2", "1", "beta2=1.0 is out of range: must be 0 <= x < 1"),
    ("learning_rate", "0", "learning_rate=0.0 is out of range: must be > 0"),
    ("master_port", "70000", "master_port=70000 is out of range: must be 1 <= x <= 65535"),
    ("vocab_size", "0", "vocab_size=0 is out of range: must be >= 1"),
    ("schedule", "cosin", "schedule=cosin is out of range: must be one of cosine, linear, constant, wsd"),
    ("dtype", "fp16", "dtype=fp16 is out of range: must be one of auto, float32, bfloat16, float16"),
    ("device", "gpu", "device=gpu is out of range: must be one of auto, cpu, cuda, cuda:N, mps"),
    ("out_dir", '""', 'out_dir="" is out of range: must be a non-empty path'),
])
def test_bad_values_are_reported(key, text, message):
    section = KEYS[key].section
    [error] = errors_of(loads, f"{section} {key}={text}")
    assert error.message == message
    assert (error.line, error.col) == (1, len(section) + len(key) + 3)


# ---- command-line overrides ---------------------------------------------------

def test_overrides_are_typed_by_the_schema_never_by_eval():
    cfg = loads("", overrides=["--learning_rate=1", "--dataset=1", "--bias=TRUE", "--vocab_size=None"])
    assert (type(cfg["learning_rate"]), cfg["learning_rate"]) == (float, 1.0)
    assert cfg["dataset"] == "1" and cfg["bias"] is True and cfg["vocab_size"] is None
    [error] = errors_of(loads, "", overrides=["--n_layer=2+2"])
    assert error.message == "n_layer=2+2 is not an int"


def test_override_forms():
    cfg = loads("", overrides=["--MODEL.n_layer=3", "--model.n_head=3", "n_embd=48", "--ENV.A=x y", "--env.B="])
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"]) == (3, 3, 48)
    assert cfg.env == {"A": "x y", "B": ""}


def test_override_values_are_taken_whole():
    cfg = loads("", overrides=["--wandb_run_name=a b=c 'd' \"e\" #f", "--out_dir=x\ny"])
    assert cfg["wandb_run_name"] == "a b=c 'd' \"e\" #f" and cfg["out_dir"] == "x\ny"


def test_overrides_apply_left_to_right():
    cfg = loads("MODEL n_layer=2", overrides=["--n_layer=3", "--MODEL.n_layer=4"])
    assert cfg["n_layer"] == 4
    assert [o.text for o in cfg.origin("n_layer").chain()] == ["4", "3", "2"]


def test_override_errors():
    errors = errors_of(loads, "", overrides=["--n_layers=2", "--DATA.n_layer=2", "--MODL.n_layer=2",
                                             "--n_layer", "--ENV.1A=x", "--=3"])
    assert messages(errors) == [
        "Unknown key n_layers (did you mean n_layer?)",
        "n_layer belongs to MODEL, not DATA",
        "Unknown section MODL (did you mean MODEL?)",
        "Expected --key=value or --SECTION.key=value, found '--n_layer'",
        "Invalid ENV name '1A'",
        "Expected --key=value or --SECTION.key=value, found '--=3'",
    ]
    assert all(d.path == "<command line>" and d.line == 1 for d in errors)
    # Columns point into the arguments joined by spaces.
    assert [d.col for d in errors] == [3, 16, 33, 48, 60, 69]
    assert errors[0].source.startswith("--n_layers=2 --DATA.n_layer=2")


def test_an_override_type_error_points_at_the_value():
    [error] = errors_of(loads, "", overrides=["--n_head=2", "--n_layer=x"])
    assert (error.path, error.line, error.col, error.end_col) == ("<command line>", 1, 22, 23)


# ---- precedence (SPEC section 4) ----------------------------------------------

def test_precedence_defaults_bases_file_cli(write):
    write("base.config", "MODEL n_layer=2 n_head=2\nDATA batch_size=2\n")
    top = write("top.config", "FROM base.config\nMODEL n_head=4\nMODEL n_embd=64\n")
    cfg = load(top, overrides=["--n_embd=128"])
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["batch_size"], cfg["block_size"]) == (2, 4, 128, 2, 1024)


def test_later_base_overrides_only_what_it_sets(write):
    write("a.config", "MODEL n_layer=1 n_head=1\n")
    write("b.config", "MODEL n_head=2\n")
    write("c.config", "MODEL n_layer=3\n")
    cfg = load(write("top.config", "FROM a.config b.config\nFROM c.config\n"))
    assert (cfg["n_layer"], cfg["n_head"]) == (3, 2)
    cfg = load(write("rev.config", "FROM c.config b.config a.config\n"))
    assert (cfg["n_layer"], cfg["n_head"]) == (1, 1)


def test_a_base_brings_its_own_bases(write):
    write("root.config", "MODEL n_layer=1 n_head=1\nDATA batch_size=1\n")
    write("mid.config", "FROM root.config\nMODEL n_head=2\n")
    write("side.config", "MODEL n_layer=5\n")
    cfg = load(write("top.config", "FROM side.config mid.config\n"))
    # mid does not set n_layer itself, but its base does, and mid comes after side.
    assert (cfg["n_layer"], cfg["n_head"], cfg["batch_size"]) == (1, 2, 1)


def test_later_assignment_in_a_file_wins_with_a_warning():
    cfg = loads("MODEL n_layer=2\nDATA batch_size=3\nMODEL n_layer=4 \\\n  n_layer=5\n", path="f.config")
    assert cfg["n_layer"] == 5
    assert [(w.severity, w.line, w.col) for w in cfg.warnings] == [("warning", 3, 7), ("warning", 4, 3)]
    assert cfg.warnings[0].message == "n_layer is set twice in this file (first at f.config:1:7); the later value wins"
    assert "ENV.A is set twice" in loads("ENV A=1\nENV A=2").warnings[0].message
    assert loads("MODEL n_layer=2", overrides=["--n_layer=3"]).warnings == []


def test_several_files_merge_left_to_right(write):
    a = write("a.config", "MODEL n_layer=1 n_head=1\nENV X=a Y=a\n")
    b = write("b.config", "MODEL n_layer=2\nENV X=b\n")
    cfg = load(a, b, overrides=["--ENV.Y=cli"])
    assert (cfg["n_layer"], cfg["n_head"], cfg.env) == (2, 1, {"X": "b", "Y": "cli"})
    as_from = load(write("c.config", f"FROM {a}\nMODEL n_layer=2\nENV X=b\n"), overrides=["--ENV.Y=cli"])
    assert cfg == as_from
    assert str(cfg.origin("n_head")) == f"{a}:1:24"


def test_the_same_file_twice(write):
    a = write("a.config", "MODEL n_layer=3\n")
    assert load(a, a)["n_layer"] == 3


# ---- FROM -------------------------------------------------------------------------

def test_from_paths_are_relative_to_the_file(write, tmp_path, monkeypatch):
    write("configs/base/common.config", "MODEL n_layer=1\n")
    write("configs/base/model.config", "FROM common.config\nMODEL n_head=1\n")
    write("configs/runs/run.config", "FROM ../base/model.config\nDATA batch_size=1\n")
    monkeypatch.chdir(tmp_path / "configs")
    cfg = load("runs/run.config")
    assert (cfg["n_layer"], cfg["n_head"], cfg["batch_size"]) == (1, 1, 1)
    assert str(cfg.origin("n_layer")) == os.path.join("base", "common.config") + ":1:15"


def test_from_in_a_string_is_relative_to_its_path(write, tmp_path, monkeypatch):
    write("sub/base.config", "MODEL n_layer=7\n")
    assert loads("FROM base.config", path=str(tmp_path / "sub" / "x.config"))["n_layer"] == 7
    monkeypatch.chdir(tmp_path / "sub")
    assert loads("FROM base.config")["n_layer"] == 7


def test_one_file_named_two_ways_in_a_string_is_read_once(write, tmp_path, monkeypatch):
    write("sub/b.config", "MODEL n_layer=2\nMODEL n_layer=3\n")
    write("sub/c.config", "FROM ../sub/c.config\n")
    monkeypatch.chdir(tmp_path / "sub")
    cfg = loads(f"FROM b.config ../sub/b.config {tmp_path / 'sub' / 'b.config'}")
    assert [str(o) for o in cfg.origin("n_layer").chain()] == ["b.config:2:15", "b.config:1:15"]
    assert len(cfg.warnings) == 1
    with pytest.raises(ConfigError) as info:
        loads("FROM c.config")
    assert [d.render().splitlines()[0] for d in info.value.errors] == [
        "c.config:1:6: error: FROM cycle: c.config -> ../sub/c.config"]


def test_from_expands_the_home_folder(write, tmp_path, monkeypatch):
    write("home/mine.config", "MODEL n_layer=9\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert loads("FROM ~/mine.config", path=str(tmp_path / "x.config"))["n_layer"] == 9
    assert loads("FROM ~/mine", path=str(tmp_path / "x.config"))["n_layer"] == 9


def test_from_without_suffix_retries_config(write):
    write("base.config", "MODEL n_layer=5\n")
    write("plain", "MODEL n_layer=6\n")
    top = write("top.config", "FROM base\n")
    assert load(top)["n_layer"] == 5
    assert str(load(top).origin("n_layer")) == os.path.join(os.path.dirname(top), "base.config") + ":1:15"
    # A suffix-less path that exists is taken as written, and has no known format.
    [error] = errors_of(load, write("top2.config", "FROM plain\n"))
    assert error.message.startswith("Cannot read ") and "unknown config format" in error.message
    # Command-line files get the same retry.
    assert load(top.with_suffix(""))["n_layer"] == 5


def test_from_quoted_path_with_spaces_and_dollar(write):
    write("my dir/base.config", "MODEL n_layer=4\n")
    write("a$b.config", "MODEL n_layer=5\n")
    assert load(write("t1.config", "FROM 'my dir/base.config'\n"))["n_layer"] == 4
    assert load(write("t2.config", "FROM \"my dir/base\"\n"))["n_layer"] == 4
    assert load(write("t3.config", "FROM a$b.config\n"))["n_layer"] == 5
    assert load(write("t4.config", "FROM 'a$b.config'\n"))["n_layer"] == 5
    assert load(write("t5.config", "FROM \"a\\$b.config\"\n"))["n_layer"] == 5


def test_from_must_come_first(write):
    write("base.config", "MODEL n_layer=2\n")
    errors = errors_of(load, write("t.config", "FROM base.config\nMODEL n_head=2\n\nfrom base.config\n"))
    assert first_lines(errors) == [f"{errors[0].path}:4:1: error: FROM must come before every other directive"]


def test_missing_base_is_an_error_at_the_from_line(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("t.config", "# top\nFROM  nowhere.config other\n")
    errors = errors_of(load, "t.config")
    assert first_lines(errors) == ["t.config:2:7: error: Config file not found: nowhere.config",
                                   "t.config:2:22: error: Config file not found: other.config"]
    assert errors[0].source == "FROM  nowhere.config other"
    assert (errors[0].end_col, errors[1].end_col) == (21, 27)


def test_missing_file_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert first_lines(errors_of(load, "nothing.config")) == ["nothing.config: error: Config file not found: nothing.config"]
    assert first_lines(errors_of(load, "nothing")) == ["nothing.config: error: Config file not found: nothing.config"]
    assert messages(errors_of(load)) == ["No config file given"]


def test_from_cycle_prints_the_chain(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("a.config", "FROM b.config\n")
    write("b.config", "MODEL n_layer=2\nFROM c.config\n")
    write("c.config", "FROM a.config\n")
    write("b.config", "FROM c.config\nMODEL n_layer=2\n")
    assert first_lines(errors_of(load, "a.config")) == [
        "c.config:1:6: error: FROM cycle: a.config -> b.config -> c.config -> a.config"]
    write("self.config", "FROM self\n")
    assert messages(errors_of(load, "self.config")) == ["FROM cycle: self.config -> self.config"]


def test_from_depth_limit(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(MAX_DEPTH + 5):
        write(f"d{i}.config", f"FROM d{i + 1}.config\n")
    write(f"d{MAX_DEPTH + 5}.config", "MODEL n_layer=2\n")
    [error] = errors_of(load, "d0.config")
    assert error.message == f"FROM chain deeper than {MAX_DEPTH} files (starting at d0.config)"
    write(f"d{MAX_DEPTH - 1}.config", "MODEL n_layer=3\n")
    assert load("d0.config")["n_layer"] == 3


def test_unreadable_bases(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.config").mkdir()
    write("binary.config", b"MODEL n_layer=2\n\xff\xfe\n")
    write("t.config", "FROM folder.config binary.config notes.txt\n")
    assert first_lines(errors_of(load, "t.config")) == [
        "t.config:1:6: error: folder.config is a folder, not a config file",
        "t.config:1:20: error: binary.config is not UTF-8 text (byte 0xff at line 2)",
        "t.config:1:34: error: Cannot read notes.txt: unknown config format '.txt'; use .config, .toml or .py",
    ]


def test_odd_paths_are_config_errors(write, tmp_path):
    for text in ("FROM a\x00b.config\n", "FROM " + "x" * 5000 + ".config\n", "FROM /\n", "FROM .\n", "FROM ''\n"):
        with pytest.raises(ConfigError):
            loads(text, path=str(tmp_path / "t.config"))
    with pytest.raises(ConfigError):
        load(str(tmp_path / "a\x00b.config"))


def test_diamond_bases_are_read_and_reported_once(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("d.config", "FROM missing.config\nMODEL n_layer=x\n")
    write("b.config", "FROM d.config\n")
    write("c.config", "FROM d.config\n")
    write("a.config", "FROM b.config c.config\n")
    assert first_lines(errors_of(load, "a.config")) == [
        "d.config:1:6: error: Config file not found: missing.config",
        "d.config:2:15: error: n_layer=x is not an int"]


def test_many_assignments_of_one_key_do_not_overflow(write, hang_guard):
    write("many.config", "MODEL n_layer=1\n" * 3000)
    write("one.config", "MODEL n_layer=2\n")
    top = write("top.config", "FROM one.config many.config\n")
    with hang_guard(20):
        cfg = load(top, overrides=[f"--n_layer={i}" for i in range(1, 1500)])
        assert cfg["n_layer"] == 1499
        assert len(cfg.origin("n_layer").chain()) > 3000
        assert "overrides" in cfg.explain()


def test_a_lattice_of_bases_neither_hangs_nor_overflows(write, tmp_path, monkeypatch, hang_guard):
    """Each file names the next one twice: 2**40 paths through the chain, 41 files."""
    monkeypatch.chdir(tmp_path)
    for i in range(40):
        write(f"l{i}.config", f"FROM l{i + 1}.config l{i + 1}.config\nMODEL n_layer={i + 1}\n")
    write("l40.config", "MODEL n_layer=99 n_head=3\n")
    write("top.config", "FROM l0.config\n")
    with hang_guard(20):
        errors = errors_of(load, "top.config")
    # Once for each of the two paths in the one file where the limit is reached.
    deepest = f"l{MAX_DEPTH - 1}.config"
    assert first_lines(errors) == [f"{deepest}:1:{col}: error: FROM chain deeper than {MAX_DEPTH} files (starting at top.config)"
                                   for col in (6, 7 + len(deepest))]
    write("l20.config", "MODEL n_layer=21\n")
    with hang_guard(20):
        cfg = load("top.config")
    assert cfg["n_layer"] == 1
    assert len(cfg.origin("n_layer").chain()) == 21


# ---- interpolation -------------------------------------------------------------

def test_key_reference_takes_the_typed_value():
    cfg = loads("TRAIN max_iters=5000\nLR_SCHEDULE lr_decay_iters=${max_iters}")
    assert cfg["lr_decay_iters"] == 5000
    assert loads("MODEL n_head=${n_layer}")["n_head"] == 12


def test_reference_sees_the_final_value_wherever_it_is_set(write):
    write("base.config", "LR_SCHEDULE lr_decay_iters=${max_iters}\n")
    top = write("top.config", "FROM base.config\nTRAIN max_iters=100\nLR_SCHEDULE warmup_iters=10\n")
    cfg = load(top, overrides=["--max_iters=200"])
    assert cfg["lr_decay_iters"] == 200


def test_references_inside_text():
    cfg = loads("MODEL n_layer=6\nTRAIN seed=7\nLOGGING out_dir=out/${n_layer}L-s${seed}-${dropout}-${vocab_size}")
    assert cfg["out_dir"] == "out/6L-s7-0.0-None"


def test_whole_reference_to_another_type_is_converted_to_text():
    """wandb_run_name=${n_layer} is the text "6", not an error."""
    cfg = loads("MODEL n_layer=6 bias=true\nLOGGING wandb_run_name=${n_layer} wandb_project=${bias}")
    assert (cfg["wandb_run_name"], cfg["wandb_project"]) == ("6", "True")
    assert loads("TRAIN seed=${learning_rate}\nTRAIN learning_rate=2")["seed"] == 2
    assert messages(errors_of(loads, "MODEL n_layer=${dropout}\nMODEL dropout=0.5")) == ["n_layer=0.5 is not an int"]


def test_env_references(write):
    env = {"FROM_PROCESS": "p", "SHARED": "process"}
    cfg = loads("ENV SHARED=directive A=${env:FROM_PROCESS}\n"
                "LOGGING out_dir=${env:SHARED}/${env:A} wandb_project=${env:MISSING:-fallback}"
                " wandb_run_name=${env:MISSING:-}",
                env=env)
    assert (cfg["out_dir"], cfg["wandb_project"], cfg["wandb_run_name"]) == ("directive/p", "fallback", "")
    assert cfg.env == {"SHARED": "directive", "A": "p"}
    assert load(write("t.config", "DATA dataset=${env:DS}\n"), env={"DS": "tiny"})["dataset"] == "tiny"


def test_env_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("SLO_TEST_VAR", "from-os")
    assert loads("DATA dataset=${env:SLO_TEST_VAR}")["dataset"] == "from-os"
    assert messages(errors_of(loads, "DATA dataset=${env:SLO_TEST_VAR}", env={})) == [
        "Environment variable SLO_TEST_VAR is not set: set it, add ENV SLO_TEST_VAR=..., "
        "or give a default with ${env:SLO_TEST_VAR:-default}"]


def test_env_values_from_keys_and_numbers():
    cfg = loads("MODEL n_layer=3\nENV LAYERS=${n_layer} LR=${learning_rate} N=7")
    assert cfg.env == {"LAYERS": "3", "LR": "0.0006", "N": "7"}


def test_dollar_escapes_and_literal_strings():
    cfg = loads("LOGGING out_dir=a$$b wandb_project=\"c\\$d\" wandb_run_name='${n_layer}$$'\n"
                "DATA dataset=$HOME data_dir=cost$")
    assert (cfg["out_dir"], cfg["wandb_project"], cfg["wandb_run_name"]) == ("a$b", "c$d", "${n_layer}$$")
    assert (cfg["dataset"], cfg["data_dir"]) == ("$HOME", "cost$")
    assert loads("ENV A='${x}' B=\"\\${y}\"").env == {"A": "${x}", "B": "${y}"}


def test_interpolation_errors():
    text = ("LOGGING out_dir=${n_layrs}\n"
            "DATA dataset=${env:NOPE}\n"
            "TRAIN seed=${seed}\n"
            "MODEL n_layer=${n_head} n_head=${n_layer}\n"
            "LOGGING wandb_project=${max_iters\n"
            "ENV A=${env:B} B=${env:A}\n"
            "DATA data_dir=${env:1X}\n")
    errors = errors_of(loads, text, env={}, path="f.config")
    assert sorted(first_lines(errors)) == sorted([
        "f.config:1:17: error: Unknown key n_layrs in ${n_layrs} (did you mean n_layer?)",
        "f.config:2:14: error: Environment variable NOPE is not set: set it, add ENV NOPE=..., "
        "or give a default with ${env:NOPE:-default}",
        "f.config:3:12: error: Reference cycle: seed -> seed",
        "f.config:4:15: error: Reference cycle: n_layer -> n_head -> n_layer",
        "f.config:5:23: error: Unterminated ${ in '${max_iters': add the closing }",
        "f.config:6:7: error: Reference cycle: env:A -> env:B -> env:A",
        "f.config:7:15: error: Invalid environment variable name '1X' in ${env:1X}",
    ])


def test_a_cycle_through_env_and_keys_is_found():
    errors = errors_of(loads, "ENV A=${n_layer}\nMODEL n_layer=${env:A}", env={})
    assert len(errors) == 1 and errors[0].message.startswith("Reference cycle: ")


# ---- ENV -------------------------------------------------------------------------

def test_env_is_inherited_and_overridden(write):
    write("base.config", "ENV A=base B=base\n")
    top = write("top.config", "FROM base.config\nENV B=top C=\"x y\"\n")
    cfg = load(top, overrides=["--ENV.C=cli"])
    assert cfg.env == {"A": "base", "B": "top", "C": "cli"}
    assert str(cfg.origin("ENV.B")) == f"{top}:2:7"
    assert [o.text for o in cfg.origin("ENV.C").chain()] == ["cli", "x y"]


def test_env_values_are_strings():
    assert loads("ENV N=1 T=true E=''").env == {"N": "1", "T": "true", "E": ""}


# ---- validation: every error at once, cross-field rules -------------------------

def test_every_error_is_reported_at_once(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("base.config", "MODEL n_head=6\nDATA block_size = 8\n")
    write("t.config", "FROM base.config missing.config\n"
                      "MODEL n_embd=100 batch_size=2 dropuot=0.1\n"
                      "TRAIN learning_rate=fast\n"
                      "LR_SCHEDULE min_lr=1\n"
                      "FROM late.config\n")
    errors = errors_of(load, "t.config")
    assert sorted(first_lines(errors)) == sorted([
        "base.config:2:6: error: No whitespace is allowed around '=': write block_size=8",
        "t.config:1:18: error: Config file not found: missing.config",
        "t.config:2:18: error: batch_size belongs to DATA, not MODEL",
        "t.config:2:31: error: Unknown key dropuot (did you mean dropout?)",
        "t.config:3:21: error: learning_rate=fast is not a float",
        "t.config:5:1: error: FROM must come before every other directive",
        "t.config:2:14: error: n_embd=100 is not divisible by n_head=6 (n_head from base.config:1:14)",
    ])


RULE_CASES = [
    ("MODEL n_head=6\nMODEL n_embd=100",
     "f.config:2:14: error: n_embd=100 is not divisible by n_head=6 (n_head from f.config:1:14)"),
    ("MODEL n_embd=96 n_head=32 use_rope=true",
     "f.config:1:36: error: use_rope needs an even head size, but n_embd=96 / n_head=32 = 3"
     " (n_embd from f.config:1:14, n_head from f.config:1:24)"),
    ("MODEL n_head=12\nADVANCED n_kv_head=5",
     "f.config:2:20: error: n_kv_head=5 does not divide n_head=12 (n_head from f.config:1:14)"),
    ("LR_SCHEDULE warmup_iters=500 lr_decay_iters=100",
     "f.config:1:26: error: warmup_iters=500 is greater than lr_decay_iters=100 (lr_decay_iters from f.config:1:45)"),
    ("TRAIN learning_rate=1e-4\nLR_SCHEDULE min_lr=1e-3",
     "f.config:2:20: error: min_lr=0.001 is greater than learning_rate=0.0001 (learning_rate from f.config:1:21)"),
    ("LR_SCHEDULE schedule=linear cooldown_iters=10",
     "f.config:1:44: error: cooldown_iters=10 only applies to schedule=wsd, not schedule=linear"
     " (schedule from f.config:1:22)"),
    ("LR_SCHEDULE schedule=wsd warmup_iters=60 cooldown_iters=50 lr_decay_iters=100",
     "f.config:1:57: error: cooldown_iters=50 plus warmup_iters=60 is more than lr_decay_iters=100"
     " (warmup_iters from f.config:1:39, lr_decay_iters from f.config:1:75)"),
    ("SYSTEM device=cpu\nDDP backend=nccl",
     "f.config:2:13: error: backend=nccl needs a CUDA device, but device=cpu (use backend=gloo or auto)"
     " (device from f.config:1:15)"),
    ("DATA gradient_accumulation_steps=5\nDDP nproc_per_node=2",
     "f.config:1:34: error: gradient_accumulation_steps=5 is not divisible by nproc_per_node=2:"
     " each of the 2 processes runs an equal share of the micro-steps (nproc_per_node from f.config:2:20)"),
]


@pytest.mark.parametrize("text, expected", RULE_CASES)
def test_cross_field_rules_name_both_places(text, expected):
    assert first_lines(errors_of(loads, text, path="f.config")) == [expected]


def test_rule_error_names_a_base_and_the_command_line(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("base.config", "MODEL n_head=6\n")
    write("t.config", "FROM base.config\n")
    assert first_lines(errors_of(load, "t.config", overrides=["--n_embd=100"])) == [
        "<command line>:1:10: error: n_embd=100 is not divisible by n_head=6 (n_head from base.config:1:14)"]
    assert first_lines(errors_of(load, "t.config", overrides=["--n_head=5"])) == [
        "<command line>:1:10: error: n_embd=768 is not divisible by n_head=5"]


def test_rules_hold_for_defaults_and_are_skipped_after_a_type_error():
    loads("MODEL use_rope=true\nLR_SCHEDULE schedule=wsd")
    assert messages(errors_of(loads, "MODEL n_head=0 n_embd=100")) == ["n_head=0 is out of range: must be >= 1"]
    assert messages(errors_of(loads, "ADVANCED n_kv_head=x\nMODEL n_head=12")) == [
        "n_kv_head=x is not an int or None"]
    loads("LR_SCHEDULE decay_lr=false warmup_iters=500 lr_decay_iters=100")


# ---- dumps -------------------------------------------------------------------------

def test_dumps_config_reads_back(write):
    cfg = loads("MODEL n_layer=3\nLOGGING wandb_run_name='a b $x' out_dir=\"it's\\n\"\nENV A='$' B=\"'\\$\"")
    text = dumps(cfg)
    assert loads(text) == cfg
    assert text.startswith("MODEL n_layer=3 \\\n")
    only = dumps(cfg, only_set=True)
    assert "n_head" not in only and loads(only) == cfg


def test_dumps_json_is_flat_with_env():
    cfg = loads("MODEL n_layer=3\nENV A=x")
    data = json.loads(dumps(cfg, "json"))
    assert data == {**cfg.to_dict(), "ENV.A": "x"}


def test_dumps_keeps_bases(write):
    write("base.config", "MODEL n_layer=2\n")
    top = write("top.config", "FROM base.config\nDATA batch_size=3\n")
    cfg = load(top)
    text = dumps(cfg, only_set=True, bases=["base.config"])
    assert text.startswith("FROM base.config\n")
    assert loads(text, path=str(top)) == cfg


def test_dumps_rejects_an_unknown_format():
    with pytest.raises(ValueError, match="Unknown format"):
        dumps(loads(""), "yaml")


def test_origins_are_the_explained_chains_as_data(write):
    base = write("base.config", "MODEL n_layer=4\nENV A=1\n")
    top = write("top.config", "FROM base.config\nMODEL n_layer=6\nENV A=2 B=3\n")
    cfg = load(top, overrides=["--n_layer=8"])
    origins = cfg.origins()
    assert origins["n_layer"] == ["cli", f"{top}:2:15", f"{base}:1:15", "default"]
    assert origins["n_head"] == ["default"]
    assert origins["ENV.A"] == [f"{top}:3:7", f"{base}:2:7"]
    assert origins["ENV.B"] == [f"{top}:3:11"]
    assert set(origins) == set(cfg) | {"ENV.A", "ENV.B"}


def test_only_regular_files_of_bounded_size_are_read(write, tmp_path, monkeypatch, hang_guard):
    os.mkfifo(tmp_path / "pipe.config")
    (tmp_path / "zero.config").symlink_to("/dev/zero")
    top = write("top.config", "FROM pipe.config zero.config big.config\n")
    write("big.config", "MODEL n_layer=2\n" + "#" * 200 + "\n")
    monkeypatch.setattr(source_module, "MAX_FILE_BYTES", 100)
    with hang_guard(20):
        errors = errors_of(load, top)
    assert [d.message for d in errors] == [
        f"{tmp_path / 'pipe.config'} is not a regular file (a pipe, socket or device); name a config file",
        f"{tmp_path / 'zero.config'} is not a regular file (a pipe, socket or device); name a config file",
        f"{tmp_path / 'big.config'} is larger than 100 bytes: too large for a config file"]
