"""SWEEP: what a config sweeps, and the trials it makes.

``SWEEP learning_rate=1e-3,3e-3 n_layer=2,4`` is a grid of four trials;
``SWEEP trials=20 seed=0 learning_rate=log(1e-4,1e-2)`` draws twenty at
random. A value is a comma list of choices, or (random search only) a range:
``log(a,b)`` (log-uniform, 0 < a < b), ``uniform(a,b)`` or ``int(a,b)``
(inclusive). The sweep's own settings are ``trials``, ``seed`` (a single
integer: the draws' seed; a list or range sweeps the training seed),
``halving`` and ``rungs`` (successive halving), and ``metric`` and ``goal``:
what ranks the trials (validation loss, lowest first, unless ``metric``
names an evaluation task's ``TASK/METRIC`` score, such as
``hellaswag/acc_norm``, highest first).

Each trial is a set of items, one per swept key, placed where the SWEEP item
is (a choice at its own column), which the resolver puts over the files'
values; its name, ``key=value,key=value``, is also its run folder's name.
Drawn numbers are rounded to three significant digits, so a name says
exactly what the trial ran with. Nothing here reads files or imports torch.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass

from .ranking import VAL_LOSS, Ranking, default_goal
from .schema import CONVERT, KEYS, MAX_SEED, format_value, suggest
from .statements import BARE, KEY, KEY_COL, LINE, QUOTE, VALUE, VALUE_COL


@dataclass(frozen=True)
class Setting:
    """One of the sweep's own settings: an integer from low to high, or a text (one of choices, or one
    that matches pattern, which allowed says in words)."""
    doc: str
    low: int = 0
    high: int = 0
    choices: tuple = ()
    pattern: str = ""
    allowed: str = ""

    @property
    def is_int(self) -> bool:
        return not (self.choices or self.pattern)


SETTINGS = {
    "trials": Setting("Random search: draw this many trials (a grid when not given).", 1, 100_000),
    "seed": Setting("The draws' seed, one integer (a list or a range of seeds sweeps the training seed).", 0, MAX_SEED),
    "halving": Setting("Successive halving: the best 1/N of the trials at each rung go on to the next.", 2, 100),
    "rungs": Setting("Successive halving's rungs (3 when halving is given alone).", 1, 10),
    "metric": Setting("What ranks the trials (successive halving's promotions and the sweep's table): val_loss, or "
                      "an evaluation task's TASK/METRIC score from LOGGING eval_tasks, such as hellaswag/acc_norm.",
                      pattern=r"val_loss|[^/\s]+/[^/\s]+", allowed="val_loss or TASK/METRIC, such as hellaswag/acc_norm"),
    "goal": Setting("Whether the best trial has the lowest (min) or the highest (max) metric; by default min for "
                    "losses, perplexities and bits per byte, max for accuracies and other scores.", choices=("min", "max")),
}
MAX_TRIALS = 100_000  # a grid larger than this is refused
MAX_NAME = 200  # bytes (UTF-8) of a trial's folder name, under the 255 of most file systems; longer ones are
# cut and numbered
_RANGE = re.compile(r"(log|uniform|int)\((.*)\)\Z", re.DOTALL)
_DIGITS = 3  # significant digits of a drawn float


@dataclass(frozen=True)
class Axis:
    """One swept key: its choices (items) or its range, and where the SWEEP item is."""
    key: str
    item: tuple
    path: str
    choices: tuple = ()  # items, one per choice, each at its own place
    kind: str = "list"  # list, log, uniform or int
    low: float = 0.0
    high: float = 0.0

    @property
    def text(self) -> str:
        """As written: ``1e-3,3e-3`` or ``log(1e-4,1e-2)`` (a TOML array as its comma list)."""
        value = self.item[VALUE]
        if isinstance(value, (list, tuple)):
            return ",".join(v if type(v) is str else format_value(v) for v in value)
        return value if type(value) is str else format_value(value)


@dataclass(frozen=True)
class Definition:
    axes: tuple  # Axis, in the order written
    settings: dict  # trials, seed, halving, rungs: int or None; metric, goal: str
    places: dict  # setting -> (item, path) where it was set

    def describe(self) -> dict:
        """The definition as plain data (what sweep.json records, and compares on a rerun)."""
        return {"swept": {a.key: a.text for a in self.axes}, "settings": dict(self.settings)}


@dataclass(frozen=True)
class Trial:
    name: str  # key=value,key=value: also its run folder's name under the sweep's out_dir
    values: dict  # swept key -> its typed value in this trial
    config: object  # its slo.Config (out_dir: the sweep's out_dir / name)


@dataclass(frozen=True)
class Sweep:
    definition: Definition
    trials: tuple  # Trial, in order: the grid's, or as drawn

    @property
    def keys(self) -> tuple:
        return tuple(a.key for a in self.definition.axes)

    def trial(self, name: str) -> Trial | None:
        return next((t for t in self.trials if t.name == name), None)

    def pairs(self) -> list[tuple[str, object]]:
        """The SWEEP items to write: each swept key's text as written, then each setting given."""
        d = self.definition
        return [(a.key, a.text) for a in d.axes] + [(k, v) for k, v in d.settings.items() if k in d.places]

    def explain(self) -> list[str]:
        """Each SWEEP item with where it was written, then the trials."""
        d = self.definition
        places = {a.key: (a.item, a.path) for a in d.axes} | d.places
        lines = []
        for key, value in self.pairs():
            item, path = places[key]
            lines.append(f"  {key} = {value}".ljust(40) + f"  # {path}:{item[LINE]}:{item[VALUE_COL]}")
        return lines + self.listing()

    def listing(self, most: int = 50) -> list[str]:
        """describe(), then a line per trial (the first most of them)."""
        lines = [self.describe()] + ["  " + t.name for t in self.trials[:most]]
        if len(self.trials) > most:
            lines.append(f"  ... and {len(self.trials) - most} more")
        return lines

    def describe(self) -> str:
        """One line: what is swept and how many trials, and the successive halving if any."""
        d = self.definition
        how = f"{d.settings['trials']} drawn at random (seed {d.settings['seed'] or 0})" if d.settings["trials"] \
            else "a grid"
        n = len(self.trials)
        text = f"sweep of {n} trial{'s' * (n != 1)}, {how}: " + " ".join(f"{a.key}={a.text}" for a in d.axes)
        if d.settings["halving"]:
            text += f"; successive halving by {d.settings['halving']} over {d.settings['rungs']} rungs"
        ranking = Ranking.of(d.settings)
        if ranking != Ranking():
            text += f"; ranked by {ranking.describe()}"
        return text


def is_swept(item: tuple) -> bool:
    """Under slo sweep, whether a command-line --key=value is a SWEEP item: a setting other than
    seed, a comma list or a range."""
    key, value = item[KEY], item[VALUE]
    return key in SETTINGS and key != "seed" or type(value) is str and ("," in value or bool(_RANGE.match(value)))


def is_setting(item: tuple) -> bool:
    """A SWEEP item that sets the sweep (trials, halving, rungs, or seed given as one integer)."""
    key, value = item[KEY], item[VALUE]
    if key != "seed":
        return key in SETTINGS
    if type(value) is str:
        return not ("," in value or _RANGE.match(value))
    return not isinstance(value, (list, tuple))  # a TOML array of seeds sweeps the training seed


def unknown_key(key: str) -> str | None:
    """The error for a SWEEP key that is neither a config key nor a setting."""
    if key in KEYS or key in SETTINGS:
        return None
    return f"Unknown key {key} in SWEEP{suggest(key, list(KEYS) + list(SETTINGS))}"


def definition(entries: dict, errors: list) -> Definition:
    """The Definition of the merged SWEEP entries (key -> (item, path)); each problem is appended to
    errors as (item, path, message)."""
    axes, settings, places = [], dict.fromkeys(SETTINGS), {}
    for key, (item, path) in entries.items():
        if is_setting(item):
            value = _setting(item, errors, path)
            if value is not None:
                settings[key], places[key] = value, (item, path)
        else:
            axis = _axis(item, path, errors)
            if axis is not None:
                axes.append(axis)
    random_search = settings["trials"] is not None
    for axis in axes:
        if axis.kind != "list" and not random_search:
            _fail(errors, axis.item, axis.path, f"{axis.key}={axis.text} is a range: ranges need random search "
                  "(add trials=N to SWEEP), or give a comma list")
    if not axes and entries and not errors:
        item, path = next(iter(entries.values()))
        _fail(errors, item, path, "SWEEP sets how to sweep but names no key to sweep (add key=a,b)")
    if settings["rungs"] is not None and settings["halving"] is None:
        item, path = places["rungs"]
        _fail(errors, item, path, "rungs needs halving=N (successive halving keeps the best 1/N at each rung)")
    if settings["halving"] is not None and settings["rungs"] is None:
        settings["rungs"] = 3
    _goal(settings, places, errors)
    return Definition(tuple(axes), settings, places)


def setting_value(key: str, raw) -> int | str:
    """Setting key's value raw as read: an int however written (20, 2e1), or its text; ValueError, saying
    what it must be, when it is not one the setting takes."""
    setting = SETTINGS[key]
    if setting.is_int:
        try:
            value = CONVERT["max_iters"](raw)
        except ValueError:
            value = None
        if value is None or not setting.low <= value <= setting.high:
            raise ValueError(f"must be an integer from {setting.low:,} to {setting.high:,}")
        return value
    if type(raw) is not str or not (raw in setting.choices if setting.choices else re.fullmatch(setting.pattern, raw)):
        raise ValueError(f"must be {' or '.join(setting.choices) if setting.choices else setting.allowed}")
    return raw


def _setting(item: tuple, errors: list, path: str) -> int | str | None:
    try:
        return setting_value(item[KEY], item[VALUE])
    except ValueError as e:
        _fail(errors, item, path, f"{item[KEY]}={_shown(item)} {e}")
        return None


def _goal(settings: dict, places: dict, errors: list) -> None:
    """settings' metric (val_loss when not given) and goal (from the metric's name when not given)."""
    metric = settings["metric"] = settings["metric"] or VAL_LOSS
    if metric == VAL_LOSS and settings["goal"] == "max":
        item, path = places["goal"]
        _fail(errors, item, path, "goal=max would rank the highest val_loss first: drop goal (a lower loss is better), "
              "or rank by a task's score with metric=TASK/METRIC")
    if settings["goal"] is None:
        settings["goal"] = default_goal(metric)
        if settings["goal"] is None:
            item, path = places["metric"]
            _fail(errors, item, path, f"metric={metric}: whether a higher or a lower {metric} is better is not known "
                  "here; add goal=max or goal=min to SWEEP")


def _axis(item: tuple, path: str, errors: list) -> Axis | None:
    key, raw = item[KEY], item[VALUE]
    if isinstance(raw, (list, tuple)):  # a TOML array: its values are the choices, at the array's place
        if not raw:
            _fail(errors, item, path, f"SWEEP {key} is an empty list: give choices, such as {key}=a,b")
            return None
        return Axis(key, item, path, tuple((key, v) + item[LINE:] for v in raw))
    if type(raw) is not str:  # a TOML scalar: one choice
        return Axis(key, item, path, (item,))
    if _RANGE.match(raw):
        return _range_axis(item, path, errors)
    if not raw:
        _fail(errors, item, path, f"SWEEP {key}= is an empty list: give choices, such as {key}=a,b")
        return None
    choices, col = [], item[VALUE_COL] + (item[QUOTE] != BARE)
    for piece in raw.split(","):
        if not piece:
            _fail(errors, item, path, f"SWEEP {key}={raw} has an empty choice (two commas, or one at an end)")
            return None
        place = (col, col + len(piece)) if item[QUOTE] == BARE else (item[VALUE_COL], item[VALUE_COL] + len(raw) + 2)
        choices.append((key, piece, item[LINE], item[KEY_COL], place[0], place[1], item[QUOTE]))
        col += len(piece) + 1
    return Axis(key, item, path, tuple(choices))


def _range_axis(item: tuple, path: str, errors: list) -> Axis | None:
    key, raw = item[KEY], item[VALUE]
    kind, inner = _RANGE.match(raw).groups()
    spec = KEYS.get(key)
    ends = inner.split(",")
    want = int if kind == "int" else float
    try:
        low, high = (_number(e, want) for e in ends)
    except ValueError:
        low = None
    if low is None:
        _fail(errors, item, path, f"{key}={raw}: {kind}(a,b) takes two {'integers' if want is int else 'numbers'}")
        return None
    if spec.type not in (int, float) or (spec.type is int and kind != "int"):
        _fail(errors, item, path, f"{key} is {'an int' if spec.type is int else 'a ' + spec.type.__name__}: "
              f"{'use int(a,b) or ' if spec.type is int else ''}give a comma list of choices")
        return None
    if low > high:
        _fail(errors, item, path, f"{key}={raw}: the ends are swapped; write {kind}({format_value(high)},{format_value(low)})")
        return None
    if low == high:
        _fail(errors, item, path, f"{key}={raw} is a single value; give a < b, or set {key} outside SWEEP")
        return None
    if kind == "log" and low <= 0:
        _fail(errors, item, path, f"{key}={raw}: log(a,b) needs 0 < a (it draws log-uniformly)")
        return None
    for end in (low, high):
        try:
            CONVERT[key](end)
        except ValueError:
            _fail(errors, item, path, f"{key}={raw} reaches {format_value(end)}, outside {key}'s range: "
                  f"{spec.range_text()}")
            return None
    return Axis(key, item, path, kind=kind, low=low, high=high)


def _number(text: str, want: type):
    """An end of a range: a finite float, or an int written as one (ValueError otherwise)."""
    value = want(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _fail(errors: list, item: tuple, path: str, message: str) -> None:
    errors.append((item, path, message))


def _shown(item: tuple) -> str:
    return item[VALUE] if type(item[VALUE]) is str else format_value(item[VALUE])


# ---- trials -----------------------------------------------------------------

def plan(d: Definition) -> tuple[list[tuple[str, dict]], str | None]:
    """([(name, {key: item})], None) for every trial, or ([], the problem): a grid in order (the
    first axis slowest), or trials drawn at random by seed, no combination drawn twice."""
    if d.settings["trials"] is None:
        size = math.prod(len(a.choices) for a in d.axes)
        if size > MAX_TRIALS:
            return [], f"the grid has {size:,} trials, more than {MAX_TRIALS:,}; sweep fewer values, or draw trials=N"
        combos = list(itertools.product(*(a.choices for a in d.axes)))
    else:
        combos, problem = _draw(d)
        if problem:
            return [], problem
    varied = [i for i, a in enumerate(d.axes) if a.kind != "list" or len(a.choices) > 1] or list(range(len(d.axes)))
    names = _unique_names([_name([(d.axes[i].key, combo[i]) for i in varied]) for combo in combos])
    return [(name, {a.key: item for a, item in zip(d.axes, combo)}) for name, combo in zip(names, combos)], None


def _unique_names(names: list[str]) -> list[str]:
    """names, each one met again (equal after making it a folder name, or cut short) numbered
    ``name~2``, ``name~3``, ...: the first number that is no other trial's name, as written or numbered."""
    taken = set(names)
    used: set[str] = set()
    tried: dict[str, int] = {}  # name -> the last number tried for it
    out = []
    for name in names:
        if name in used:
            n = tried.get(name, 1) + 1
            while f"{name}~{n}" in taken:
                n += 1
            tried[name] = n
            name = f"{name}~{n}"
            taken.add(name)
        used.add(name)
        out.append(name)
    return out


def _draw(d: Definition) -> tuple[list[tuple], str | None]:
    rng = random.Random(d.settings["seed"] or 0)
    trials = d.settings["trials"]
    space = math.prod(len(a.choices) if a.kind == "list" else math.inf for a in d.axes)
    if space < trials:
        return [], (f"trials={trials} but the lists give only {space} combinations: sweep them as a grid "
                    f"(leave out trials), or ask for at most {space}")
    seen, combos = set(), []
    for _ in range(trials * 100):
        combo = tuple(_drawn(a, rng) for a in d.axes)
        key = tuple(c[VALUE] for c in combo)
        if key not in seen:
            seen.add(key)
            combos.append(combo)
            if len(combos) == trials:
                return combos, None
    return [], f"could not draw {trials} different trials (the ranges are too narrow at {_DIGITS} digits); ask for fewer"


def _drawn(axis: Axis, rng: random.Random) -> tuple:
    """One random choice of axis, as an item at the SWEEP item's place (a number for a range)."""
    if axis.kind == "list":
        return rng.choice(axis.choices)
    if axis.kind == "int":
        value = rng.randint(int(axis.low), int(axis.high))
    elif axis.kind == "log":
        value = _round(math.exp(rng.uniform(math.log(axis.low), math.log(axis.high))))
    else:
        value = _round(rng.uniform(axis.low, axis.high))
    if KEYS[axis.key].type is int:
        value = int(value)
    item = axis.item
    return (axis.key, value) + item[LINE:]


def _round(x: float) -> float:
    return float(f"{x:.{_DIGITS}g}")


def _name(pairs: list[tuple[str, tuple]]) -> str:
    """key=value,key=value: a trial's name and folder, its values as the schema writes them."""
    parts = []
    for key, item in pairs:
        try:
            text = format_value(CONVERT[key](item[VALUE]))
        except ValueError:  # reported when the trial is resolved; interpolated text stays as written
            text = _shown(item)
        parts.append(f"{key}={text}")
    name = re.sub(r"[/\\\x00-\x1f]", "_", ",".join(parts))
    if name.startswith("."):
        name = "_" + name[1:]
    raw = name.encode("utf-8", "surrogatepass")
    return name if len(raw) <= MAX_NAME else raw[:MAX_NAME - 3].decode("utf-8", "ignore") + "..."
