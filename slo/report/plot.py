"""``slo plot OUT_DIR... [-o FILE.png]``: a run's curves as a picture, several runs overlaid.

Four panels: loss against iterations and against tokens (train loss at each
logged step, val loss at each evaluation, log scale), the learning rate, and
the throughput. Each run has one colour; the legend names its out_dir and
config. matplotlib is an optional extra; figures are drawn without a display
(no pyplot, no global backend).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RunError
from ..runner.files import METRICS_NAME
from .rundir import Run, finite, read_run, shorten

FIGURE_SIZE = (12.0, 8.0)  # inches
DPI = 100  # so the PNG is 1200 x 800 pixels
SINGLE_RUN_FILE = "loss.png"  # in the run's out_dir
SEVERAL_RUNS_FILE = "runs.png"  # in the current folder
INSTALL_HINT = "pip install 'slo[plot]'"
MAX_TITLE = 100  # characters
MAX_LABEL = 60  # characters of a run's config in the legend


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


def plot_runs(runs: list[Run]):
    """The figure of runs' curves (a matplotlib Figure, not yet saved)."""
    Figure = import_matplotlib()
    from matplotlib.lines import Line2D

    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 2)
    loss_iter, loss_tokens, lr_ax, speed_ax = axes.flat
    loss_tokens.sharey(loss_iter)
    lr_ax.sharex(loss_iter)
    speed_ax.sharex(loss_iter)
    names = run_names(runs)
    legend = []
    for i, (run, name) in enumerate(zip(runs, names)):
        colour = f"C{i % 10}"
        draw_run(run, colour, loss_iter, loss_tokens, lr_ax, speed_ax)
        best = run.best_val_loss
        label = f"{name}: {shorten(run.config_label(), MAX_LABEL)}"
        label += f" (best val {best:.3f})" if best is not None else ""
        legend.append(Line2D([], [], color=colour, lw=2.0, label=label))
    legend += [Line2D([], [], color="0.4", lw=1.0, alpha=0.6, label="train loss (logged steps)"),
               Line2D([], [], color="0.4", lw=2.0, marker="o", ms=4, label="val loss (evaluations)")]
    label_axes(runs, loss_iter, loss_tokens, lr_ax, speed_ax)
    loss_tokens.legend(handles=legend, loc="upper right", fontsize="small", framealpha=0.9)
    fig.suptitle(_title(runs, names), fontsize="x-large")
    return fig


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


def output_path(output: str | None, runs: list[Run]) -> Path:
    """Where the picture goes: -o as given (a folder gets the default name, a name without a
    suffix gets .png, as matplotlib would add), else the default."""
    if not output:
        return default_output(runs)
    path = Path(output)
    if path.is_dir():
        return path / (SINGLE_RUN_FILE if len(runs) == 1 else SEVERAL_RUNS_FILE)
    return path if path.suffix else path.with_name(path.name + ".png")


def save(fig, path: Path) -> None:
    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:  # ValueError: a suffix matplotlib cannot write
        raise RunError(f"cannot write {path}: {e}; give -o a writable FILE.png") from None


def run_command(ns) -> int:
    import_matplotlib()  # the install hint before any file is read
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
