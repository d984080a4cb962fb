"""slo runs, slo plot and slo diff of a sweep's folder: real (tiny) trial runs beside a sweep.json."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from slo.cli import main as slo_main
from slo.errors import RunError
from slo.report.plot import colours, plot_sweep
from slo.report.sweep_folder import format_sweep_table, shared_sweep_keys
from slo.outdir.lock import RunLock
from slo.sweeps.manifest import Manifest, TrialRecord, write_manifest
from slo.runner.train_command import main as train_main
from tiny_run import metrics, tiny_config

pytest.importorskip("matplotlib")

ERROR = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity)\n"
         "Traceback lines that the table must not show")
TRAINED = {"learning_rate=0.01,n_layer=1": "finished", "learning_rate=0.003,n_layer=2": "finished",
           "learning_rate=0.001,n_layer=1": "pruned"}
NOT_RUN = {"learning_rate=0.0003,n_layer=2": "pending", "learning_rate=0.03,n_layer=2": "failed"}


def values(name: str) -> dict:
    lr, layers = (part.split("=")[1] for part in name.split(","))
    return {"learning_rate": float(lr), "n_layer": int(layers)}


def best_val(run_dir) -> float:
    return min(metrics(run_dir)[1].values())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep folder: three trained trials (two finished, one pruned), one pending, one failed."""
    root = tmp_path_factory.mktemp("sweeps")
    config = tiny_config(root, "base", max_iters=4)
    folder = root / "sweep1"
    records = []
    for name, status in TRAINED.items():
        v = values(name)
        assert train_main([str(config), f"--out_dir={folder / name}", f"--learning_rate={v['learning_rate']}",
                           f"--n_layer={v['n_layer']}"]) == 0
        records.append(TrialRecord(name, v, status, 0, None, best_val(folder / name), 4))
    records.append(TrialRecord("learning_rate=0.0003,n_layer=2", values("learning_rate=0.0003,n_layer=2")))
    records.append(TrialRecord("learning_rate=0.03,n_layer=2", values("learning_rate=0.03,n_layer=2"),
                               "failed", -1, ERROR))
    write_manifest(folder, Manifest({"axes": ["learning_rate", "n_layer"]}, records,
                                    [{"rung": 0, "max_iters": 4, "ranking": [], "promoted": []}]))
    return folder


def ranked_trained(sweep) -> list[str]:
    return sorted(TRAINED, key=lambda name: best_val(sweep / name))


def table_rows(text: str) -> tuple[list[str], list[list[str]], str]:
    header, *rows, counts = text.splitlines()
    return header.split(), [row.split(maxsplit=5) for row in rows], counts


# ---------------------------------------------------------------- slo runs SWEEP_DIR


def test_sweep_table_ranks_trials_by_val_loss_with_a_column_per_swept_key(sweep, capsys):
    header, rows, counts = table_rows(format_sweep_table(sweep))
    assert header == ["learning_rate", "n_layer", "ITERS", "BEST", "VAL", "TOK/S", "STATUS"]
    order = ranked_trained(sweep) + list(NOT_RUN)
    assert [f"learning_rate={r[0]},n_layer={r[1]}" for r in rows] == order
    for row, name in zip(rows, order[:3]):
        assert row[2:4] == ["4/4", f"{best_val(sweep / name):.4f}"]
        assert row[4].replace(",", "").isdigit() and row[5] == TRAINED[name]
    assert counts == "5 trials: 1 pending, 2 finished, 1 failed, 1 pruned"
    assert slo_main(["runs", str(sweep)]) == 0
    assert capsys.readouterr().out == format_sweep_table(sweep) + "\n"


def test_sweep_table_shows_pending_and_failed_trials_last_with_the_error_shortened(sweep):
    pending, failed = format_sweep_table(sweep).splitlines()[-3:-1]
    assert pending.split() == ["0.0003", "2", "-", "-", "-", "pending"]
    status = failed.split(maxsplit=5)[5]
    assert status.startswith("failed: RuntimeError: CUDA out of memory. Tried") and status.endswith("...")
    assert len(status) == 60 and "Traceback" not in status


def test_a_trial_locked_by_a_live_run_shows_running(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    name = ranked_trained(sweep)[0]
    with RunLock(copy / name):
        row = format_sweep_table(copy).splitlines()[1]
        assert row.split()[-1] == "running"
        assert "1 running" in format_sweep_table(copy).splitlines()[-1]
    assert format_sweep_table(copy).splitlines()[1].split()[-1] == TRAINED[name]


def test_a_sweep_under_the_folder_given_lists_its_trials_with_their_sweep_status(sweep, tmp_path, capsys):
    shutil.copytree(sweep, tmp_path / "group" / "sweep1")  # trials three levels down: still found
    assert slo_main(["runs", str(tmp_path), "--sort", "name"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert sorted(rows) == sorted(f"group/sweep1/{name}" for name in TRAINED)
    for name, status in TRAINED.items():
        assert rows[f"group/sweep1/{name}"][-3] == status


def test_runs_of_a_sweep_imports_no_torch(sweep):
    code = ("import sys; from slo.cli import main; code = main(['runs', sys.argv[1]]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(code)")
    # waits for the process to end; the guard, as generous as the suite's others, only ends a hang
    proc = subprocess.run([sys.executable, "-c", code, str(sweep)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "no torch"


# ---------------------------------------------------------------- slo plot SWEEP_DIR


def test_plot_of_a_sweep_has_a_line_per_trial_labelled_by_its_swept_values(sweep, capsys):
    fig = plot_sweep(sweep)
    assert [len(ax.get_lines()) for ax in fig.axes] == [6, 6, 3, 3]  # train + val per trial on the loss panels
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()][:3]
    expected = []
    for name in ranked_trained(sweep):
        v = values(name)
        status = "" if TRAINED[name] == "finished" else f" [{TRAINED[name]}]"
        expected.append(f"learning_rate={v['learning_rate']}, n_layer={v['n_layer']}{status} "
                        f"(best val {best_val(sweep / name):.3f})")
    assert legend == expected
    assert fig._suptitle.get_text() == f"sweep {sweep}: 3 of 5 trials"
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: trial learning_rate=0.0003, n_layer=2 (pending) has no metrics; left out of the plot",
                   "note: trial learning_rate=0.03, n_layer=2 (failed) has no metrics; left out of the plot"]


def test_plot_colours_stay_distinct_past_the_default_cycle():
    assert colours(3) == ["C0", "C1", "C2"]
    assert len(set(colours(25))) == 25


def test_plot_of_a_sweep_writes_a_png(sweep, tmp_path, capsys):
    out = tmp_path / "sweep.png"
    assert slo_main(["plot", str(sweep), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert slo_main(["plot", str(sweep), str(sweep / next(iter(TRAINED)))]) == 1
    assert "is a sweep folder: plot it alone" in capsys.readouterr().err


# ---------------------------------------------------------------- slo diff TRIAL TRIAL


def test_diff_of_two_trials_shows_only_the_swept_keys_unless_all(sweep, capsys):
    a, b = (str(sweep / name) for name in ("learning_rate=0.01,n_layer=1", "learning_rate=0.003,n_layer=2"))
    assert slo_main(["diff", a, b]) == 1
    out = capsys.readouterr().out.splitlines()
    keys = [line.split()[0] for line in out[2:-2:2]]
    assert sorted(keys) == ["learning_rate", "n_layer"] and out[-2] == "2 keys differ"
    assert out[-1] == f"only the keys the sweep in {sweep} varies; 1 other key differs (--all shows them)"
    assert next(line for line in out if line.startswith("n_layer")).split()[1:4] == ["-", "1", "cli"]
    assert slo_main(["diff", "--all", a, b]) == 1
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in out[2:-1:2]) == ["learning_rate", "n_layer", "out_dir"]
    assert out[-1] == "3 keys differ"


def test_diff_of_trials_of_one_swept_key_and_of_a_trial_and_another_run(sweep, tmp_path, capsys):
    a, b = (sweep / name for name in ("learning_rate=0.01,n_layer=1", "learning_rate=0.001,n_layer=1"))
    assert slo_main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[:3] == ["learning_rate", "-", "0.01"] and out[-2] == "1 key differs"
    shutil.copytree(b, tmp_path / "elsewhere")  # not a trial of the sweep: an ordinary diff
    assert shared_sweep_keys(a, tmp_path / "elsewhere") is None
    assert shared_sweep_keys(a, a) is None
    assert slo_main(["diff", str(a), str(tmp_path / "elsewhere")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[2:-1:2]] == ["learning_rate", "out_dir"]


# ---------------------------------------------------------------- a damaged sweep.json


@pytest.mark.parametrize("text", ["{not json", '{"format": 7, "trials": []}', '{"format": 1, "definition": {}, '
                                  '"trials": [{"name": "../x", "values": {}}]}'])
def test_a_damaged_or_foreign_sweep_json_is_a_one_line_error(sweep, tmp_path, capsys, text):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    (copy / "sweep.json").write_text(text)
    a, b = (str(copy / name) for name in list(TRAINED)[:2])
    for args, code in ((["runs", str(copy)], 1), (["plot", str(copy), "-o", str(tmp_path / "p.png")], 1),
                       (["diff", a, b], 2)):  # slo diff's trouble is 2 (1 is "different")
        assert slo_main(args) == code
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
        assert "sweep.json cannot be read" in err and "Traceback" not in err
    with pytest.raises(RunError, match="sweep.json cannot be read"):
        format_sweep_table(copy)
    assert slo_main(["runs", str(tmp_path), "--sort", "name"]) == 0  # above the sweep: its trials, with a note
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 + len(TRAINED) and err.startswith("note: ") and "sweep.json" in err


def test_sweep_table_of_a_folder_without_sweep_json(tmp_path):
    with pytest.raises(RunError, match="is not a sweep folder"):
        format_sweep_table(tmp_path)
