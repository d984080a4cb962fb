"""Seeing runs: slo plot, slo runs, slo diff and TensorBoard logging, on real (tiny) runs."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slo
from slo.cli import main as slo_main
from slo.formats.config_lang import quote
from slo.errors import RunError
from slo.report.plot import DPI, FIGURE_SIZE, plot_runs
from slo.report.run_folder import read_origins, read_run, top_config_file
from slo.report.runs import format_table, sort_runs
from slo.runner.train_command import main as train_main
from tiny_run import metrics, tiny_config

pytest.importorskip("matplotlib")
pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HEIGHT = int(FIGURE_SIZE[0] * DPI), int(FIGURE_SIZE[1] * DPI)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def train_run(*args: str) -> int:
    return train_main([str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs: a (8 iters, lr 1e-2) and b (4 iters, lr 3e-3, TensorBoard on)."""
    root = tmp_path_factory.mktemp("runs")
    a = tiny_config(root, "a")
    b = tiny_config(root, "b", max_iters=4, extra="TRAIN learning_rate=3e-3\nLOGGING tensorboard_log=True\n")
    for config in (a, b):
        assert train_run(config) == 0
    return root


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature and the chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:16 + length]
    (crc,) = struct.unpack(">I", data[16 + length:20 + length])
    assert crc == zlib.crc32(kind + body)
    width, height = struct.unpack(">II", body[:8])
    return width, height


def lines_per_axes(fig) -> list[int]:
    return [len(ax.get_lines()) for ax in fig.axes]


# ---------------------------------------------------------------- slo plot


def test_plot_of_one_run_is_a_png_of_the_figure_size(runs, tmp_path, capsys):
    out = tmp_path / "one.png"
    assert slo_main(["plot", str(runs / "a"), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert png_size(out) == (WIDTH, HEIGHT)
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (HEIGHT, WIDTH)


def test_plot_draws_train_and_val_loss_lr_and_throughput_per_run(runs):
    fig = plot_runs([read_run(runs / "a")])
    loss_iter, loss_tokens = fig.axes[:2]
    assert lines_per_axes(fig) == [2, 2, 1, 1]
    train, val = metrics(runs / "a")
    train_line, val_line = loss_iter.get_lines()
    assert list(train_line.get_xdata()) == list(train) and list(train_line.get_ydata()) == list(train.values())
    assert list(val_line.get_xdata()) == [0, 4, 8] and list(val_line.get_ydata()) == list(val.values())
    assert loss_iter.get_yscale() == "log"
    assert max(loss_tokens.get_lines()[0].get_xdata()) == 8 * 4 * 16 * 2  # iters x batch x block x accumulation
    legend = [t.get_text() for t in loss_tokens.get_legend().get_texts()]
    assert legend[0] == f"a: a.config (best val {min(val.values()):.3f})"


def test_plot_overlays_several_runs_with_a_legend_naming_each(runs, tmp_path, monkeypatch, capsys):
    fig = plot_runs([read_run(runs / "a"), read_run(runs / "b")])
    assert lines_per_axes(fig) == [4, 4, 2, 2]
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any(t.startswith("a: a.config") for t in legend) and any(t.startswith("b: b.config") for t in legend)
    monkeypatch.chdir(tmp_path)
    assert slo_main(["plot", str(runs / "a"), str(runs / "b")]) == 0
    assert png_size(tmp_path / "runs.png") == (WIDTH, HEIGHT)


def test_plot_of_one_run_goes_into_its_out_dir_by_default(runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(runs / "b", run)
    assert slo_main(["plot", str(run)]) == 0
    assert png_size(run / "loss.png") == (WIDTH, HEIGHT)


def test_plot_without_matplotlib_says_how_to_install_it(runs, monkeypatch, capsys):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    assert slo_main(["plot", str(runs / "a")]) == 1
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'slo[plot]'" in err and "Traceback" not in err


def test_plot_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert slo_main(["plot", str(tmp_path)]) == 1
    assert "not a run's out_dir" in capsys.readouterr().err
    assert slo_main(["plot", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_plot_leaves_out_a_run_that_has_logged_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    assert slo_main(["plot", str(tmp_path / "empty")]) == 1
    assert "nothing to plot" in capsys.readouterr().err


# ---------------------------------------------------------------- slo runs


def test_runs_lists_each_run_with_its_numbers(runs, capsys):
    assert slo_main(["runs", str(runs), "--sort", "name"]) == 0
    header, row_a, row_b = capsys.readouterr().out.splitlines()
    assert header.split() == ["RUN", "CONFIG", "ITERS", "BEST", "VAL", "TOK/S", "STATUS", "UPDATED"]
    for row, name, iters in ((row_a, "a", 8), (row_b, "b", 4)):
        _, val = metrics(runs / name)
        speeds = [json.loads(line)["tokens_per_s"] for line in (runs / name / "metrics.jsonl").open()
                  if "tokens_per_s" in line]
        cells = row.split()
        assert cells[:3] == [name, f"{name}.config", f"{iters}/{iters}"]
        assert cells[3] == f"{min(val.values()):.4f}"
        assert cells[4] == f"{statistics.median(speeds):,.0f}"
        assert cells[5] == "finished"


def test_run_status_running_resumable_crashed(runs, tmp_path):
    run_dir = tmp_path / "stopped"
    shutil.copytree(runs / "a", run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines[:6]) + "\n")  # as if it were at iter 4
    run = read_run(run_dir)
    assert run.iters_done == 4 and run.max_iters == 8
    assert run.status(now=run.updated + 1) == "running"
    assert run.status(now=run.updated + 10_000) == "resumable"
    (run_dir / "ckpt.pt").unlink()
    assert read_run(run_dir).status(now=run.updated + 10_000) == "crashed"


def test_running_window_grows_with_the_gaps_between_records(runs):
    run = read_run(runs / "a")
    assert run.running_window() == 120
    for i, rec in enumerate(run.train + run.evals):
        rec["time"] = 600.0 * i
    assert run.running_window() == 1800


def test_runs_sorts_running_first_then_newest(runs, tmp_path):
    for name in ("old", "new", "live"):
        shutil.copytree(runs / "a", tmp_path / name)
    (tmp_path / "live" / "metrics.jsonl").write_text(
        "".join((runs / "a" / "metrics.jsonl").read_text().splitlines(keepends=True)[:3]))
    now = max(p.stat().st_mtime for p in (tmp_path / "live").iterdir()) + 1
    for name, age in (("old", 5000), ("new", 3000)):
        for p in (tmp_path / name).iterdir():
            os.utime(p, (now - age, now - age))
    found = sort_runs([read_run(tmp_path / n) for n in ("old", "new", "live")], "updated", now)
    assert [r.path.name for r in found] == ["live", "new", "old"]
    table = format_table(found, tmp_path, now).splitlines()
    assert "running" in table[1] and "1h ago" in table[3] and "50m ago" in table[2]


def test_runs_searches_two_levels_and_skips_what_is_not_a_run(runs, tmp_path, capsys):
    shutil.copytree(runs / "a", tmp_path / "sweep" / "lr-high")
    shutil.copytree(runs / "b", tmp_path / "b")
    shutil.copytree(runs / "a", tmp_path / "x" / "y" / "too-deep")
    (tmp_path / "notes").mkdir()
    assert slo_main(["runs", str(tmp_path), "--sort", "name"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["b", "sweep/lr-high"]


def test_runs_reads_a_checkpoint_when_that_is_all_there_is(runs, tmp_path, capsys):
    (tmp_path / "nanogpt-out").mkdir()
    shutil.copy(runs / "a" / "ckpt.pt", tmp_path / "nanogpt-out")
    assert slo_main(["runs", str(tmp_path)]) == 0
    _, val = metrics(runs / "a")
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[2:4] == ["8/8", f"{min(val.values()):.4f}"] and row[5] == "finished"


def test_runs_of_an_empty_folder_and_of_a_missing_one(tmp_path, capsys):
    assert slo_main(["runs", str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().err
    assert slo_main(["runs", str(tmp_path / "missing")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_runs_answers_without_importing_torch(runs):
    code = ("import sys; from slo.cli import main; code = main(['runs', sys.argv[1]]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, str(runs)], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "no torch"


def test_runs_skips_a_run_whose_config_json_is_broken(runs, tmp_path, capsys):
    shutil.copytree(runs / "a", tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text("{not json")
    shutil.copytree(runs / "b", tmp_path / "fine")
    assert slo_main(["runs", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "fine" in out and "broken" not in out
    assert "skipped" in err and "config.json" in err


def test_damaged_run_files_give_notes_not_tracebacks(runs, tmp_path, capsys):
    import torch

    shutil.copytree(runs / "a", tmp_path / "garbled")
    (tmp_path / "garbled" / "config.origins.json").write_bytes(bytes(range(256)) * 2)
    shutil.copytree(runs / "a", tmp_path / "metrics-only")
    (tmp_path / "metrics-only" / "config.json").unlink()
    (tmp_path / "metrics-only" / "ckpt.pt").write_bytes(b"")  # cut short: the metrics are still there
    (tmp_path / "nanogpt").mkdir()
    torch.save({"model": {}, "config": {"max_iters": 3, 1: 2}, "env": ["x"], "iter_num": 3,
                "best_val_loss": torch.tensor(2.5)}, tmp_path / "nanogpt" / "ckpt.pt")
    assert slo_main(["runs", str(tmp_path), "--sort", "name"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert sorted(rows) == ["garbled", "metrics-only", "nanogpt"]
    assert rows["nanogpt"][2:4] == ["3/3", "2.5000"]  # nanoGPT's best_val_loss is a 0-d tensor
    assert slo_main(["plot", str(tmp_path / "metrics-only"), "-o", str(tmp_path / "m.png")]) == 0
    assert slo_main(["diff", str(tmp_path / "garbled"), str(tmp_path / "nanogpt" / "ckpt.pt")]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_plot_output_a_folder_or_a_name_without_suffix(runs, tmp_path, capsys):
    assert slo_main(["plot", str(runs / "a"), "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'loss.png'}\n"
    assert slo_main(["plot", str(runs / "a" / "config.json"), "-o", str(tmp_path / "curves")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'curves.png'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "loss.png"]


# ---------------------------------------------------------------- slo diff


def test_diff_takes_trust_py_uppercase_suffixes_and_refuses_json_that_is_no_config(runs, tmp_path, capsys):
    (tmp_path / "loop.py").write_text("for i in range(2):\n    pass\nn_layer = 3\n")
    (tmp_path / "UP.CONFIG").write_text("MODEL n_layer=3\n")
    assert slo_main(["diff", str(tmp_path / "loop.py"), str(tmp_path / "UP.CONFIG")]) == 2
    assert "--trust-py" in capsys.readouterr().err
    assert slo_main(["diff", str(tmp_path / "loop.py"), str(tmp_path / "UP.CONFIG"), "--trust-py"]) == 0
    (tmp_path / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256, "source": "x"}))
    capsys.readouterr()
    assert slo_main(["diff", str(runs / "a"), str(tmp_path / "meta.json")]) == 2
    assert "is not a config" in capsys.readouterr().err




def test_diff_of_two_runs_shows_each_difference_and_its_origin(runs, capsys):
    assert slo_main(["diff", str(runs / "a"), str(runs / "b")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [f"--- A: {runs / 'a'}", f"+++ B: {runs / 'b'}"]
    keys = [line.split()[0] for line in out[2:-1:2]]
    assert keys == ["learning_rate", "max_iters", "out_dir", "tensorboard_log"]
    assert out[-1] == "4 keys differ"
    lr_a, lr_b = out[2], out[3]
    assert lr_a.split()[1:3] == ["-", "0.01"] and lr_a.split()[3].startswith(f"{runs / 'a.config'}:3:")
    assert lr_b.split()[:2] == ["+", "0.003"] and lr_b.split()[2].startswith(f"{runs / 'b.config'}:7:")
    tb_a = next(line for line in out if line.startswith("tensorboard_log"))
    assert tb_a.split()[1:] == ["-", "False", "default"]


def test_diff_of_a_run_and_the_config_it_came_from_is_empty(runs, capsys):
    assert slo_main(["diff", str(runs / "a"), str(runs / "a.config")]) == 0
    assert capsys.readouterr().out.startswith("no differences")
    assert slo_main(["diff", str(runs / "a" / "config.json"), str(runs / "a")]) == 0


def test_diff_of_two_configs_names_the_file_and_line_of_each_value(tmp_path, capsys):
    (tmp_path / "base.config").write_text("MODEL n_layer=4 n_head=4 n_embd=128\nTRAIN max_iters=100\n")
    (tmp_path / "child.config").write_text("FROM base.config\nMODEL n_layer=6\nENV OMP_NUM_THREADS=2\n")
    assert slo_main(["diff", str(tmp_path / "base.config"), str(tmp_path / "child.config")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["n_layer", "-", "4", f"{tmp_path / 'base.config'}:1:15"]
    assert out[3].split() == ["+", "6", f"{tmp_path / 'child.config'}:2:15"]
    assert out[4].split() == ["ENV.OMP_NUM_THREADS", "-", "(not", "set)"]
    assert out[5].split() == ["+", "2", f"{tmp_path / 'child.config'}:3:21"]
    assert out[-1] == "2 keys differ"


def test_diff_of_a_checkpoint_says_run_when_nothing_tells_the_origin(runs, capsys):
    assert slo_main(["diff", str(runs / "b"), str(runs / "a" / "ckpt.pt")]) == 1
    out = capsys.readouterr().out.splitlines()
    lr_b = out[out.index(next(line for line in out if line.startswith("learning_rate"))) + 1]
    assert lr_b.split() == ["+", "0.01", "run", "B"]


def test_diff_exit_2_on_trouble(runs, tmp_path, capsys):
    (tmp_path / "bad.config").write_text("MODEL n_layers=4\n")
    assert slo_main(["diff", str(runs / "a.config"), str(tmp_path / "bad.config")]) == 2
    assert "did you mean n_layer" in capsys.readouterr().err
    assert slo_main(["diff", str(runs / "a"), str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert slo_main(["diff", str(runs / "a"), str(tmp_path)]) == 2
    assert "not a run's out_dir" in capsys.readouterr().err


def test_run_config_label_is_the_top_file_and_its_command_line_overrides(tmp_path):
    (tmp_path / "base.config").write_text("MODEL n_layer=4 n_head=4 n_embd=128\nTRAIN max_iters=100\n")
    (tmp_path / "child.config").write_text("FROM base.config\nMODEL n_layer=6\n")
    cfg = slo.load(tmp_path / "child.config", overrides=["--max_iters=50", "--out_dir=/tmp/x"])
    provenance = cfg.origins()
    assert top_config_file(provenance) == "child.config"
    assert provenance["n_layer"] == [f"{tmp_path / 'child.config'}:2:15", f"{tmp_path / 'base.config'}:1:15",
                                     "default"]
    assert provenance["max_iters"][0] == "cli"


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30))
def test_origins_are_read_back_whatever_the_value(tmp_path_factory, name):
    cfg = slo.loads(f"LOGGING wandb_run_name={quote(name)}\n", path="x.config")
    assert cfg["wandb_run_name"] == name
    path = tmp_path_factory.mktemp("origins") / "config.origins.json"
    path.write_text(json.dumps(cfg.origins()), encoding="utf-8")
    provenance = read_origins(path)
    assert provenance["wandb_run_name"][0] == str(cfg.origin("wandb_run_name"))


# ---------------------------------------------------------------- TensorBoard


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_metrics(runs):
    folder = runs / "b" / "tensorboard"
    assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())
    logged = scalars(folder)
    assert {"train/loss", "val/loss", "lr", "tokens_per_s", "mfu"} <= set(logged)
    train, val = metrics(runs / "b")
    assert [s for s, _ in logged["train/loss"]] == list(train)
    assert [v for _, v in logged["train/loss"]] == pytest.approx(list(train.values()), rel=1e-6)
    assert [s for s, _ in logged["val/loss"]] == list(val) == [0, 4]
    assert [v for _, v in logged["val/loss"]] == pytest.approx(list(val.values()), rel=1e-6)
    assert not (runs / "a" / "tensorboard").exists()


def test_a_resumed_run_replaces_what_was_logged_past_its_checkpoint(runs, tmp_path):
    run_dir = tmp_path / "resumed"
    shutil.copytree(runs / "b", run_dir)
    from torch.utils.tensorboard import SummaryWriter

    # as if the run had gone on past its checkpoint at iter 4, then died; TensorBoard reads
    # event files in name order, which starts with the second they were made in
    (first,) = (run_dir / "tensorboard").iterdir()
    made = int(first.name.split(".")[3])
    with SummaryWriter(str(tmp_path / "stale")) as stale:
        for step in (4, 5):
            stale.add_scalar("train/loss", 99.0, step)
        stale.add_scalar("val/loss", 99.0, 6)
    (stale_file,) = (tmp_path / "stale").iterdir()
    stale_file.rename(run_dir / "tensorboard" / f"events.out.tfevents.{made + 1:010d}.stale")
    time.sleep(max(0.0, made + 2 - time.time()))
    config = runs / "b.config"
    assert train_run(config, f"--out_dir={run_dir}", "--init_from=resume", "--max_iters=8") == 0
    logged = scalars(run_dir / "tensorboard")
    train, val = metrics(run_dir)
    assert [s for s, _ in logged["train/loss"]] == list(train) == list(range(8))
    assert 99.0 not in [v for _, v in logged["train/loss"] + logged["val/loss"]]
    assert [s for s, _ in logged["val/loss"]] == list(val) == [0, 4, 8]
    assert [v for _, v in logged["val/loss"]] == pytest.approx(list(val.values()), rel=1e-6)


def test_tensorboard_missing_says_how_to_install_it(tmp_path, monkeypatch):
    from slo.runner.metrics.tensorboard import TensorBoardLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(RunError, match=r"pip install 'slo\[tensorboard\]'"):
        TensorBoardLog(tmp_path)


def test_train_fails_cleanly_when_tensorboard_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    config = tiny_config(tmp_path, "tb", max_iters=1, extra="LOGGING tensorboard_log=True\n")
    assert train_run(config) == 1
    err = capsys.readouterr().err
    assert "pip install 'slo[tensorboard]'" in err and "Traceback" not in err


def test_plot_of_a_nanogpt_run_says_it_wrote_no_metrics(runs, tmp_path, capsys):
    (tmp_path / "nano").mkdir()
    shutil.copy(runs / "a" / "ckpt.pt", tmp_path / "nano" / "ckpt.pt")  # nanoGPT writes ckpt.pt only
    assert slo_main(["plot", str(tmp_path / "nano"), "-o", str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err
    assert "wrote no metrics (it has no metrics.jsonl" in err and "logged nothing yet" not in err


def test_diff_leaves_out_keys_at_their_default_on_both_sides_unless_all(runs, tmp_path, capsys):
    from slo.runner.checkpoint.store import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(runs / "a" / "ckpt.pt")
    ckpt["config"] = {k: v for k, v in ckpt["config"].items() if k not in ("use_rope", "qk_norm")}  # nanoGPT has none
    (tmp_path / "nano").mkdir()
    save_checkpoint(tmp_path / "nano" / "ckpt.pt", ckpt)
    assert slo_main(["diff", str(runs / "a" / "ckpt.pt"), str(tmp_path / "nano" / "ckpt.pt")]) == 0
    assert "no differences" in capsys.readouterr().out
    assert slo_main(["diff", "--all", str(runs / "a" / "ckpt.pt"), str(tmp_path / "nano" / "ckpt.pt")]) == 1
    out = capsys.readouterr().out
    assert "use_rope" in out and "(not set)" in out and "2 keys differ" in out


def test_check_and_show_of_an_out_dir_read_its_resolved_config(runs, capsys):
    assert slo_main(["check", str(runs / "b")]) == 0
    assert "ok (" in capsys.readouterr().out
    assert slo_main(["show", str(runs / "b"), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == json.loads((runs / "b" / "config.json").read_text())
    assert slo_main(["show", str(runs / "b"), "--max_iters=9", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_iters"] == 9
