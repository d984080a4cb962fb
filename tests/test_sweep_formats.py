"""SWEEP in every format: TOML's [sweep] table read with errors at their place, written by the .config
and TOML writers, kept by slo-convert and slo show, refused for nanoGPT's .py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo import ConfigError, dumps, load
from slo.convert import convert, main
from slo.formats import config_lang, toml
from slo.formats.document import from_config
from slo.schema import format_value


def trials(cfg) -> list:
    """What a sweep runs: its settings, then each trial's name and typed values."""
    assert cfg.sweep is not None
    return [cfg.sweep.definition.settings] + [(t.name, [(k, v, type(v)) for k, v in t.values.items()])
                                              for t in cfg.sweep.trials]


def errors_of(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return [f"{d.line}:{d.col}: {d.message}" for d in info.value.errors]


GRID = ("# a grid\n"
        "TRAIN max_iters=10\n"
        "# the grid itself\n"
        "SWEEP learning_rate=1e-3,3e-3 \\\n"
        "      n_layer=2,4  # four trials\n"
        "ENV OMP_NUM_THREADS=2\n"
        "SWEEP halving=2 rungs=2 seed=0,1 dataset=\"a,b c\"\n")
RANDOM = ("TRAIN max_iters=10\n"
          "SWEEP trials=5 seed=3 learning_rate=log(1e-4,1e-2) dropout=uniform(0,0.3) n_layer=int(1,3) bias=True,False\n")


# ---- slo-convert ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [GRID, RANDOM], ids=["grid", "random"])
def test_config_toml_config_keeps_the_trials(write, tmp_path, text):
    src = write("a.config", text)
    convert([str(src)], str(tmp_path / "a.toml"))
    convert([str(tmp_path / "a.toml")], str(tmp_path / "back.config"))
    original = load(src)
    for path in ("a.toml", "back.config"):
        again = load(tmp_path / path)
        assert again == original and trials(again) == trials(original)


def test_the_sweep_and_its_comments_come_along(write, tmp_path):
    convert([str(write("a.config", GRID))], str(tmp_path / "a.toml"))
    text = (tmp_path / "a.toml").read_text()
    assert text.endswith('[sweep]\n# the grid itself\nlearning_rate = [0.001, 0.003]\nn_layer = [2, 4]  # four trials\n'
                         'halving = 2\nrungs = 2\nseed = [0, 1]\ndataset = ["a", "b c"]\n')
    convert([str(tmp_path / "a.toml")], str(tmp_path / "back.config"))
    assert (tmp_path / "back.config").read_text() == (
        "# a grid\nTRAIN max_iters=10\nENV OMP_NUM_THREADS=2\n\n# the grid itself\n"
        "SWEEP learning_rate=0.001,0.003 \\\n      n_layer=2,4  # four trials\n"
        "SWEEP halving=2 \\\n      rungs=2 \\\n      seed=0,1 \\\n      dataset='a,b c'\n")


def test_a_range_is_a_string_and_settings_are_integers(write, tmp_path):
    convert([str(write("a.config", RANDOM))], str(tmp_path / "a.toml"))
    assert (tmp_path / "a.toml").read_text().endswith(
        '[sweep]\ntrials = 5\nseed = 3\nlearning_rate = "log(1e-4,1e-2)"\ndropout = "uniform(0,0.3)"\n'
        'n_layer = "int(1,3)"\nbias = [true, false]\n')


def test_a_sweep_in_a_base_is_kept_or_flattened(write, tmp_path):
    write("base.config", "TRAIN max_iters=10\nSWEEP n_layer=2,4 trials=2\n")
    child = write("child.config", "FROM base.config\nSWEEP learning_rate=1e-3,3e-3\n")
    original = trials(load(child))
    convert([str(child)], str(tmp_path / "out" / "kept.toml"))
    assert "n_layer" not in (tmp_path / "out" / "kept.toml").read_text()  # it follows its base
    convert([str(child)], str(tmp_path / "flat.toml"), flatten=True)
    for path in ("out/kept.toml", "flat.toml"):
        assert trials(load(tmp_path / path)) == original


def test_interpolation_in_a_swept_value_stays_one(write, tmp_path):
    src = write("a.config", "TRAIN max_iters=7\nSWEEP wandb_run_name=r${max_iters},b\n")
    for ext in ("toml", "config"):
        convert([str(src)], str(tmp_path / f"b.{ext}"))
        again = load(tmp_path / f"b.{ext}")
        assert trials(again) == trials(load(src))
        assert again.sweep.trials[0].config["wandb_run_name"] == "r7"


def test_a_single_quoted_dollar_stays_literal_in_config_and_is_refused_for_toml(write, tmp_path, capsys):
    src = write("a.config", "SWEEP wandb_run_name='a$b,c'\n")
    convert([str(src)], str(tmp_path / "b.config"))
    assert trials(load(tmp_path / "b.config")) == trials(load(src))
    assert main([str(src), "-o", str(tmp_path / "b.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{src}:1:7: SWEEP wandb_run_name has a $ that is not interpolated" in err
    assert not (tmp_path / "b.toml").exists()


def test_a_toml_choice_with_a_comma_is_refused_for_config(write, tmp_path, capsys):
    src = write("a.toml", '[sweep]\ndataset = ["a,b", "c"]\n')
    assert main([str(src), "-o", str(tmp_path / "b.config")]) == 2
    assert f"{src}:2:1: SWEEP dataset has a choice with a comma in it" in capsys.readouterr().err


@pytest.mark.parametrize("base", [False, True], ids=["own", "in-base"])
def test_converting_a_sweep_to_py_is_refused_in_one_line(write, tmp_path, capsys, base):
    if base:
        write("base.config", "TRAIN max_iters=10\nSWEEP n_layer=2,4\n")
        src = write("a.config", "FROM base.config\nMODEL n_head=2\n")
        where = f"{tmp_path / 'base.config'}:2:7"
    else:
        src = write("a.config", "TRAIN max_iters=10\nSWEEP n_layer=2,4\n")
        where = f"{src}:2:7"
    assert main([str(src), "-o", str(tmp_path / "a.py")]) == 2
    err = capsys.readouterr().err
    assert err == (f"slo-convert: error: {where}: SWEEP cannot be written to {tmp_path / 'a.py'}: a .py config "
                   "(nanoGPT's) has no sweeps; convert to .config or .toml, which keep it\n")
    assert not (tmp_path / "a.py").exists()


# ---- TOML's [sweep] -----------------------------------------------------------------------------

def test_toml_sweep_table(write):
    cfg = load(write("a.toml", '[train]\nmax_iters = 10\n[sweep]\nlearning_rate = [1e-3, 3e-3]\n'
                               'dropout = "uniform(0,0.2)"\nn_layer = 2\ntrials = 3\nseed = 1\n'))
    assert cfg.sweep.keys == ("learning_rate", "dropout", "n_layer")
    assert cfg.sweep.definition.settings == {"trials": 3, "seed": 1, "halving": None, "rungs": None,
                                             "metric": "val_loss", "goal": "min"}
    assert len(cfg.sweep.trials) == 3 and all(t.values["n_layer"] == 2 for t in cfg.sweep.trials)
    assert {t.values["learning_rate"] for t in cfg.sweep.trials} <= {1e-3, 3e-3}
    # a choice's origin is the array's place
    assert (cfg.sweep.trials[0].config.origin("learning_rate").line,
            cfg.sweep.trials[0].config.origin("learning_rate").col) == (4, 17)


def test_toml_seed_array_sweeps_the_training_seed(write):
    cfg = load(write("a.toml", "[SWEEP]\nseed = [1, 2]\n"))
    assert [t.config["seed"] for t in cfg.sweep.trials] == [1, 2] and cfg.sweep.definition.settings["seed"] is None


@pytest.mark.parametrize("text, expected", [
    ("[sweep]\nlerning_rate = [1e-3]\n", "2:1: Unknown key lerning_rate in SWEEP (did you mean learning_rate?)"),
    ("[sweep]\nlearning_rate = []\n",
     "2:17: learning_rate = [] is an empty array: give the choices to sweep, such as learning_rate = [a, b]"),
    ('[train]\nmax_iters = 3\n\n[sweep]\ntrials = 2\nlearning_rate = "log(0,1)"\n',
     "6:17: learning_rate=log(0,1): log(a,b) needs 0 < a (it draws log-uniformly)"),
    ("[sweep]\nn_layer = [2, 0]\n", "2:11: n_layer=0 is out of range: must be 1 <= x <= 4096"),
    ("[sweep]\nn_layer = [[1], 2]\n",
     "2:11: n_layer: each choice is one value (a number, string or boolean), not a TOML array"),
    ("[sweep]\nn_layer = { a = 1 }\n", '2:11: n_layer takes the choices to sweep (n_layer = [a, b]), a range as a '
                                       'string (n_layer = "log(a,b)") or one value, not a TOML table'),
    ("[sweep]\nn_layer = [2]\ntrials = [1, 2]\n", "3:10: trials takes one integer, not a TOML array"),
    ("[sweep]\nn_layer = [2]\ntrials = 2.5\n", "3:10: trials=2.5 must be an integer from 1 to 100,000"),
    ("[sweep]\nseed = [4]\n", "2:8: seed = [4] sweeps one training seed: set seed in [train], "
                              "or give the draws' seed as an integer (seed = 0)"),
    ('[sweep]\nout_dir = ["a", "b"]\n',
     "2:1: out_dir is the sweep's folder (each trial runs in a folder under it), so it is not swept"),
    ("[sweep]\nmax_iters = [2, 3]\n[train]\nmax_iters = 3\n", "2:13: max_iters is swept here and set at {path}:4: "
                                                              "remove one"),
    ("[sweeps]\nn_layer = [2]\n", "1:1: Unknown table [sweeps] (did you mean [sweep]?)"),
])
def test_toml_sweep_errors_at_their_place(write, text, expected):
    path = write("bad.toml", text)
    assert errors_of(path) == [expected.format(path=path)]


# ---- slo show, and the writers ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["toml", "config"])
def test_show_of_a_sweep_reads_back_with_the_same_trials(slo_cli, write, tmp_path, fmt):
    src = write("a.config", GRID)
    result = slo_cli("show", src, "--format", fmt)
    assert result.returncode == 0, result.stderr
    again = load(write(f"shown.{fmt}", result.stdout))
    assert again == load(src) and trials(again) == trials(load(src))


def test_show_of_a_toml_sweep_as_config(write):
    cfg = load(write("a.toml", '[sweep]\nlearning_rate = [1e-3, 3e-3]\nseed = [0, 1]\ntrials = 3\n'))
    text = dumps(cfg, "config")
    assert "SWEEP learning_rate=0.001,0.003 \\\n      seed=0,1 \\\n      trials=3\n" in text
    assert trials(load(write("b.config", text))) == trials(cfg)


def test_show_as_py_says_the_sweep_is_not_in_the_file(write):
    text = dumps(load(write("a.config", "MODEL n_head=2\nSWEEP n_layer=2,4\n")), "py", only_set=True)
    assert text == ("# MODEL\nn_head = 2\n\n# SWEEP n_layer=2,4\n"
                    "# (not in this file: nanoGPT has no sweeps; slo sweep runs it from a .config or .toml)\n")
    assert load(write("b.py", text)).sweep is None


# ---- any small grid, both writers ---------------------------------------------------------------

CHOICES = {
    "learning_rate": st.floats(1e-4, 1.0).map(lambda x: float(f"{x:.3g}")),  # not under min_lr's default
    "n_layer": st.integers(1, 12),
    "dropout": st.floats(0.0, 0.9).map(lambda x: round(x, 2)),
    "batch_size": st.integers(1, 64),
}


def spelled(value) -> st.SearchStrategy[str]:
    """Ways to write a choice in a .config: as the schema writes it, or in another spelling of the number."""
    forms = [format_value(value)]
    if type(value) is int:
        forms += [f"{value}.0", f"{value:e}"]
    else:
        forms += [f"{value:e}", f"{value:g}"]
    return st.sampled_from(forms)


@st.composite
def grids(draw) -> list[tuple[str, list[str]]]:
    keys = draw(st.lists(st.sampled_from(sorted(CHOICES)), min_size=1, max_size=3, unique=True))
    return [(key, [draw(CHOICES[key].flatmap(spelled)) for _ in range(draw(st.integers(1, 3)))]) for key in keys]


@settings(max_examples=60)
@given(grid=grids(), halving=st.booleans())
def test_any_small_grid_reads_back_from_both_writers(grid, halving):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        sweep = " ".join(f"{key}={','.join(choices)}" for key, choices in grid) + " halving=2" * halving
        source = root / "a.config"
        source.write_text(f"TRAIN max_iters=10\nSWEEP {sweep}\n")
        original = load(source)
        doc = from_config(original, only_set=True)
        for name, writer in (("b.config", config_lang), ("b.toml", toml)):
            (root / name).write_text(writer.write(doc))
            again = load(root / name)
            assert again == original and trials(again) == trials(original), (root / name).read_text()
