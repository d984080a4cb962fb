"""``slo plot OUT_DIR... [-o FILE.png]``: a run's curves as a picture, several runs overlaid.

Four panels: loss against iterations and against tokens (train loss at each
logged step, val loss at each evaluation, log scale), the learning rate, and
the throughput; then a panel per task metric of the evaluations (LOGGING
eval_tasks: ``hellaswag/acc_norm`` against iterations), two to a row, when a
run has them. Each run has one colour; the legend names its out_dir and
config. ``slo plot SWEEP_DIR`` draws a sweep's trials that have metrics, best
val loss first, each named by its swept values. matplotlib is an optional
extra; figures are drawn without a display (no pyplot, no global backend).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RunError
from ..outdir.files import METRICS_NAME, finite
from ..sweeps.manifest import is_sweep_dir
from .run_folder import Run, read_run, shorten
from .sweep_folder import read_sweep

FIGURE_SIZE = (12.0, 8.0)  # inches, for the four panels; each row of task panels adds ROW_HEIGHT
ROW_HEIGHT = 4.0  # inches
MAX_TASK_PANELS = 12  # task metrics drawn; the others are named on stderr
DPI = 100  # so the PNG is 1200 x 800 pixels
SINGLE_RUN_FILE = "loss.png"  # in the run's out_dir
SEVERAL_RUNS_FILE = "runs.png"  # in the current folder
INSTALL_HINT = "pip install 'slo[plot]'"
MAX_TITLE = 100  # characters
MAX_LABEL = 60  # characters of a run's config in the legend
TAB_COLOURS = 10  # matplotlib's default cycle; more runs than that take colours along a colormap


def import_matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RunError(f"slo plot draws with matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure


def run_names(runs: list[Run]) -> list[str]:
    """Each run's out_dir name, with as many parent folders as it takes to tell them apart."""
    for depth in range(1, 1 + max(len(r.path.resolve().parts) for r in runs)):
        names = ["/".join(r.path.resolve().parts[-depth:]) for r in runs]
        if len(set(names)) == len(names):
            return names
    return [str(r.path) for r in runs]


def run_labels(runs: list[Run], names: list[str]) -> list[str]:
    """``a: small.config --max_iters=100 (best val 1.234)``: each run's name, config and best val loss."""
    return [f"{name}: {shorten(run.config_label(), MAX_LABEL)}" + best_suffix(run.best_val_loss)
            for run, name in zip(runs, names)]


def best_suffix(best: float | None) -> str:
    return f" (best val {best:.3f})" if best is not None else ""


def colours(n: int) -> list:
    """n distinct colours: the default cycle for up to ten, else evenly along a colormap."""
    if n <= TAB_COLOURS:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps

    cmap = colormaps["turbo"]
    return [cmap(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def plot_runs(runs: list[Run], labels: list[str] | None = None, title: str | None = None):
    """The figure of runs' curves (a matplotlib Figure, not yet saved); labels name the runs in the
    legend (default: out_dir, config and best val loss), title heads it (default: the runs' names)."""
    Figure = import_matplotlib()
    from matplotlib.lines import Line2D

    tasks = task_metrics(runs)
    task_rows = (len(tasks) + 1) // 2
    fig = Figure(figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] + ROW_HEIGHT * task_rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(2 + task_rows, 2, squeeze=False)
    loss_iter, loss_tokens, lr_ax, speed_ax, *task_axes = axes.flat
    loss_tokens.sharey(loss_iter)
    lr_ax.sharex(loss_iter)
    speed_ax.sharex(loss_iter)
    names = run_names(runs)
    legend = []
    for run, label, colour in zip(runs, labels or run_labels(runs, names), colours(len(runs))):
        draw_run(run, colour, loss_iter, loss_tokens, lr_ax, speed_ax)
        for ax, name in zip(task_axes, tasks):
            ax.plot(*_points(run.evals, "iter", name), color=colour, lw=2.0, marker="o", ms=4)
        legend.append(Line2D([], [], color=colour, lw=2.0, label=label))
    legend += [Line2D([], [], color="0.4", lw=1.0, alpha=0.6, label="train loss (logged steps)"),
               Line2D([], [], color="0.4", lw=2.0, marker="o", ms=4, label="val loss (evaluations)")]
    label_axes(runs, loss_iter, loss_tokens, lr_ax, speed_ax)
    label_task_axes(task_axes, tasks, loss_iter)
    loss_tokens.legend(handles=legend, loc="upper right", fontsize="small" if len(runs) <= 8 else "x-small",
                       framealpha=0.9)
    fig.suptitle(title or _title(runs, names), fontsize="x-large")
    return fig


def task_metrics(runs: list[Run]) -> list[str]:
    """The task metrics the runs' evaluations hold, in the order they first appear (at most MAX_TASK_PANELS)."""
    names = list(dict.fromkeys(name for run in runs for name in run.task_metrics))
    if len(names) > MAX_TASK_PANELS:
        print(f"note: {len(names) - MAX_TASK_PANELS} task metric(s) left out of the plot: "
              f"{shorten(', '.join(names[MAX_TASK_PANELS:]), MAX_TITLE)}", file=sys.stderr)
    return names[:MAX_TASK_PANELS]


def label_task_axes(task_axes: list, tasks: list[str], loss_iter) -> None:
    """Each task panel titled by its metric, on the iterations of the loss panel; an odd last one hidden."""
    for ax in task_axes[len(tasks):]:
        ax.set_visible(False)
    for ax, name in zip(task_axes, tasks):
        ax.sharex(loss_iter)
        ax.set(title=name, xlabel="iteration (optimizer steps)", ylabel="score")
        ax.grid(True, which="major", alpha=0.3)


def draw_run(run: Run, colour: str, loss_iter, loss_tokens, lr_ax, speed_ax) -> None:
    """A run's lines: train and val loss on both loss panels, learning rate, throughput."""
    for ax, x in ((loss_iter, "iter"), (loss_tokens, "tokens")):
        train = _points(run.train, x, "loss")
        val = _points(run.evals, x, "val_loss")
        ax.plot(*train, color=colour, lw=1.0, alpha=0.6)
        ax.plot(*val, color=colour, lw=2.0, marker="o", ms=4)
    lr_ax.plot(*_points(run.train, "iter", "lr"), color=colour, lw=1.5)
    speed_ax.plot(*_points(run.train, "iter", "tokens_per_s"), color=colour, lw=1.0, alpha=0.8)


def _points(records: list[dict], x: str, y: str) -> tuple[list, list]:
    """(xs, ys) of the records that have finite numbers for both."""
    both = [r for r in records if finite(r.get(x)) and finite(r.get(y))]
    return [r[x] for r in both], [r[y] for r in both]


def label_axes(runs: list[Run], loss_iter, loss_tokens, lr_ax, speed_ax) -> None:
    from matplotlib.ticker import EngFormatter

    steps = "iteration (optimizer steps)"
    loss_iter.set(title="Loss by iteration", xlabel=steps, ylabel="cross-entropy loss (nats/token, log scale)")
    loss_tokens.set(title="Loss by tokens seen", xlabel="tokens seen")
    lr_ax.set(title="Learning rate", xlabel=steps, ylabel="learning rate")
    speed_ax.set(title="Throughput", xlabel=steps, ylabel="tokens per second")
    losses = [v for run in runs for v in _losses(run)]
    if losses and min(losses) > 0:
        loss_iter.set_yscale("log")  # shared with loss_tokens
        _plain_log_ticks(loss_iter)
    else:
        loss_iter.set_ylabel("cross-entropy loss (nats/token)")
    loss_tokens.xaxis.set_major_formatter(EngFormatter(sep=""))
    speed_ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in (loss_iter, loss_tokens, lr_ax, speed_ax):
        ax.grid(True, which="major", alpha=0.3)


def _title(runs: list[Run], names: list[str]) -> str:
    if len(runs) > 1:
        return shorten(f"{len(runs)} runs: " + ", ".join(names), MAX_TITLE)
    run = runs[0]
    return shorten(f"{names[0]} ({run.config_label()})", MAX_TITLE - 30) + f": {run.progress} iterations"


def _losses(run: Run) -> list[float]:
    return _points(run.train, "iter", "loss")[1] + _points(run.evals, "iter", "val_loss")[1]


def _plain_log_ticks(ax) -> None:
    """Ticks at 1, 1.5, 2, 3, 4, 5, 6 and 8 times powers of ten, labelled 2 rather than 2x10^0:
    a loss curve rarely spans more than a decade, where plain log ticks leave one label or none."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    ax.yaxis.set_major_formatter(formatter)
    ax.yaxis.set_minor_formatter(NullFormatter())


def default_output(runs: list[Run]) -> Path:
    return runs[0].path / SINGLE_RUN_FILE if len(runs) == 1 else Path(SEVERAL_RUNS_FILE)


def output_path(output: str | None, runs: list[Run], default: Path | None = None) -> Path:
    """Where the picture goes: -o as given (a folder gets the default name, a name without a
    suffix gets .png, as matplotlib would add), else the default (default_output's unless given)."""
    default = default or default_output(runs)
    if not output:
        return default
    path = Path(output)
    if path.is_dir():
        return path / default.name
    return path if path.suffix else path.with_name(path.name + ".png")


def save(fig, path: Path) -> None:
    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:  # ValueError: a suffix matplotlib cannot write
        raise RunError(f"cannot write {path}: {e}; give -o a writable FILE.png") from None


def run_command(ns) -> int:
    import_matplotlib()  # the install hint before any file is read
    sweeps = [folder for folder in ns.runs if is_sweep_dir(Path(folder))]
    if sweeps and len(ns.runs) > 1:
        raise RunError(f"{sweeps[0]} is a sweep folder: plot it alone (slo plot {sweeps[0]}), "
                       "or give its trials' run folders")
    if sweeps:
        return plot_sweep_command(Path(sweeps[0]), ns.output)
    runs = []
    for folder in ns.runs:
        run = read_run(folder)
        if not run.train and not run.evals:
            why = ("has logged nothing yet" if (run.path / METRICS_NAME).is_file() else
                   f"wrote no metrics (it has no {METRICS_NAME}: a nanoGPT run, or one that never logged)")
            print(f"note: {run.path} {why}; left out of the plot", file=sys.stderr)
            continue
        runs.append(run)
    if not runs:
        raise RunError(f"nothing to plot: the runs given have no records in {METRICS_NAME}")
    path = output_path(ns.output, runs)
    save(plot_runs(runs), path)
    print(f"wrote {path}")
    return 0


def plot_sweep(folder: Path):
    """The figure of a sweep folder's trials that have metrics, best first by the sweep's metric, each named by its
    swept values (and its status unless finished); the others are left out with a note on stderr.
    RunError when folder is not a sweep folder, its sweep.json is damaged, or no trial has metrics."""
    sweep = read_sweep(folder)
    trials = []
    for trial in sweep.ranked():
        if trial.has_metrics:
            trials.append(trial)
        else:
            print(f"note: trial {sweep.label(trial)} ({trial.status}) has no metrics; left out of the plot",
                  file=sys.stderr)
    if not trials:
        raise RunError(f"nothing to plot: no trial of the sweep in {folder} has records in {METRICS_NAME}")
    labels = [sweep.label(t) + ("" if t.status == "finished" else f" [{t.status}]") + best_suffix(t.best_val_loss)
              for t in trials]
    name = folder.resolve().name if folder.name in ("", ".", "..") else str(folder)
    title = shorten(f"sweep {name}: {len(trials)} of {len(sweep.trials)} trials", MAX_TITLE)
    return plot_runs([t.run for t in trials], labels, title)


def plot_sweep_command(folder: Path, output: str | None) -> int:
    """``slo plot SWEEP_DIR [-o FILE]``: the picture goes to SWEEP_DIR/loss.png unless -o says."""
    fig = plot_sweep(folder)
    path = output_path(output, [], default=folder / SINGLE_RUN_FILE)
    save(fig, path)
    print(f"wrote {path}")
    return 0
