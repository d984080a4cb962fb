"""Hostile configs (tests/data/hostile/): bounded work and memory, and a clear error, never a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slo
from slo.errors import QUOTED, Diagnostic
from slo.interpolate import MAX_EXPANDED, MAX_EXPANDED_TOTAL

HOSTILE = Path(__file__).parent / "data" / "hostile"


def errors_of(path: Path) -> list[Diagnostic]:
    with pytest.raises(slo.ConfigError) as info:
        slo.load(path)
    return info.value.errors


def test_a_long_env_chain_resolves_without_recursion():
    cfg = slo.load(HOSTILE / "env_chain.config")  # 3,000 links: Python's recursion limit is 1,000
    assert cfg["out_dir"] == "out/end" and cfg.env["A0"] == "end"


def test_a_long_key_chain_resolves_without_recursion():
    # a chain through keys and ENV names, each step a new frame: 2,000 ENV links, then two keys
    text = "ENV " + " ".join(f'K{i}="${{env:K{i + 1}}}"' for i in range(2000)) + " K2000=${out_dir}\n"
    text += "LOGGING out_dir=${wandb_project} wandb_project=deep\nDATA data_dir=${env:K0}\n"
    assert slo.loads(text)["data_dir"] == "deep"


def test_doubling_references_stop_at_the_cap_naming_the_key_and_chain():
    [error] = errors_of(HOSTILE / "env_doubling.config")
    assert error.message.startswith(f"ENV A39 expands to more than {MAX_EXPANDED:,} characters (through env:A0 -> ")
    assert "env:A39)" in error.message and "... 28 more ..." in error.message
    assert error.line == 2 and error.source.startswith("ENV A0=")


def test_nested_references_across_keys_stop_at_the_cap():
    [error] = errors_of(HOSTILE / "nested_references.config")
    assert error.message.startswith("data_dir expands to more than")
    assert "(through out_dir -> wandb_project -> wandb_run_name -> data_dir)" in error.message


def test_many_values_under_the_cap_stop_at_the_total():
    each = MAX_EXPANDED // 2
    n = MAX_EXPANDED_TOTAL // each + 2
    text = f"ENV BIG={'x' * 1000}\nENV " + " ".join(f'C{i}="' + "${env:BIG}" * (each // 1000) + '"' for i in range(n))
    [error] = errors_text(text)
    assert "interpolated values pass" in error.message and f"{MAX_EXPANDED_TOTAL:,}" in error.message


def errors_text(text: str) -> list[Diagnostic]:
    with pytest.raises(slo.ConfigError) as info:
        slo.loads(text)
    return info.value.errors


def test_cycles_are_still_found_where_they_close():
    errors = errors_text("ENV A=${env:B}\nENV B=${env:C}\nENV C=${env:A}\n")
    assert [(e.line, e.message) for e in errors] == [(1, "Reference cycle: env:A -> env:B -> env:C -> env:A")]


def test_every_name_set_twice_in_a_megabyte_loads_in_linear_time(hang_guard):
    n = 60_000  # two lines of about 530 KB each; the old linear scan per repeat took minutes
    text = "ENV " + " ".join(f"N{i}=a" for i in range(n)) + "\nENV " + " ".join(f"N{i}=b" for i in range(n)) + "\n"
    assert len(text) > 1_000_000
    with hang_guard(60):
        cfg = slo.loads(text)
    assert len(cfg.warnings) == n and cfg.env["N7"] == "b"
    assert "first at <string>:1:" in cfg.warnings[7].message


def test_warnings_quote_a_bounded_slice_of_a_long_line():
    cfg = slo.load(HOSTILE / "one_line_5000_sets.config")
    assert len(cfg.warnings) == 4999
    rendered = [w.render() for w in cfg.warnings]
    assert max(len(r) for r in rendered) < 500  # the line itself is 50,000 characters
    last = cfg.warnings[-1]
    source_line, caret_line = rendered[-1].splitlines()[1:]
    assert source_line.strip().startswith("...") and caret_line.strip().startswith("^~")
    assert source_line[caret_line.index("^"):].startswith("n_layer=")  # the caret is under its key
    assert last.col == 1 + len("MODEL ") + 4999 * len("n_layer=1 ")


@given(st.integers(0, 3000), st.integers(1, 3000), st.integers(0, 3000))
def test_the_caret_points_at_the_same_text_in_any_window(before, width, after):
    line = "a" * before + "".join(chr(0x41 + i % 26) for i in range(width)) + "z" * after
    d = Diagnostic("f", 1, before + 1, "m", before + 1 + width, source=line)
    _, source_line, caret_line = d.render().split("\n")
    start = caret_line.index("^")
    shown = source_line[start:start + caret_line.count("~") + 1]
    assert len(source_line) <= 2 * QUOTED + 2 * width + 20 and len(source_line) <= 2 + 4 * QUOTED + 20 + 140
    assert shown[:min(width, QUOTED)] == line[before:before + min(width, QUOTED)]


def test_a_key_set_thousands_of_times_pickles_flat():
    cfg = slo.load(HOSTILE / "key_set_3000_times.config")
    copy = pickle.loads(pickle.dumps(cfg))  # pickled for each process of a data-parallel run
    assert copy == cfg and copy.origins() == cfg.origins()
    assert len(copy.origin("max_iters").chain()) == 3000 and copy["max_iters"] == 3000


@given(st.lists(st.sampled_from(["MODEL n_layer=1", "MODEL n_layer=2", "ENV A=1", "ENV B=2", "TRAIN seed=3"]),
                max_size=30))
def test_pickling_keeps_every_origin(lines):
    cfg = slo.loads("\n".join(lines) + "\n", path="p.config")
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy == cfg and copy.origins() == cfg.origins() and copy.explain() == cfg.explain()
