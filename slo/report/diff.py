"""``slo diff A B``: what differs between two configs, or two runs' resolved configs.

A and B are each a config file (.config, .toml, .py, read by ``slo.load``),
a run's out_dir (its config.json, else its ckpt.pt's config), a config.json,
or a ckpt.pt. Every key that differs is shown with both values and where each
came from: the config's provenance, the run's config.origins.json, or else
``run A`` / ``run B``. When A and B are two trials' run folders of one sweep
(their parent's sweep.json lists both), only the keys the sweep varies are
shown unless ``--all``. Exit status as diff(1): 0 the same, 1 different, 2 trouble.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError
from ..formats import FORMATS
from ..formats.config_lang import quote
from ..outdir.files import CHECKPOINT_NAME, CONFIG_JSON, ORIGINS_JSON, shown
from ..schema import KEYS, format_value
from .run_folder import checkpoint_config, read_flat_config, read_origins, read_run
from .sweep_folder import shared_sweep_keys

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2
MAX_VALUE_WIDTH = 40
_ABSENT = object()


@dataclass
class Side:
    """One side of the comparison: flat values (ENV as ``ENV.NAME``) and where each came from."""

    name: str
    values: dict
    origins: dict[str, str]
    unknown_origin: str  # when nothing says where a value came from

    def origin(self, key: str) -> str:
        return self.origins.get(key) or self.unknown_origin


def load_side(arg: str, letter: str, trust_py: bool = False) -> Side:
    path = Path(arg)
    if path.suffix.lower() in FORMATS:
        return _config_side(arg, trust_py)
    if path.is_file() and path.name == CONFIG_JSON and (path.parent / ORIGINS_JSON).is_file():
        path = path.parent  # a run's config.json: its provenance is beside it
    if path.is_dir():
        return _run_side(path, letter)
    if not path.exists():
        raise RunError(f"{arg} does not exist; give a config file (.config, .toml, .py) or a run's out_dir")
    if path.suffix.lower() == ".json":
        values = read_flat_config(path)
        other = [k for k in values if k not in KEYS and not k.startswith("ENV.")]
        if other and len(other) >= len(values) - len(other):
            raise RunError(f"{arg} is not a config: most of its keys ({', '.join(map(shown, other[:3]))}...) are not "
                           "config keys; give a run's config.json, a config file or an out_dir")
        return Side(arg, values, {}, str(path))
    if path.suffix.lower() == ".pt":
        return _checkpoint_side(path, letter)
    raise RunError(f"{arg}: cannot tell what it is; give a config file (.config, .toml, .py), a run's out_dir, "
                   "a config.json or a ckpt.pt")


def _config_side(arg: str, trust_py: bool) -> Side:
    from ..resolve import load

    cfg = load(arg, trust_py=trust_py, trust_env=True)  # comparing runs nothing
    values = cfg.to_dict()
    origins = {k: str(cfg.origin(k)) for k in values}
    for name, value in cfg.env.items():
        values["ENV." + name] = value
        origins["ENV." + name] = str(cfg.origin("ENV." + name))
    return Side(arg, values, origins, arg)


def _run_side(path: Path, letter: str) -> Side:
    values = read_flat_config(path / CONFIG_JSON)
    if not values:
        if not (path / CHECKPOINT_NAME).is_file():
            raise RunError(f"{path} has neither {CONFIG_JSON} nor {CHECKPOINT_NAME}: it is not a run's out_dir")
        values = read_run(path).config
    provenance = read_origins(path / ORIGINS_JSON)
    return Side(str(path), values, {k: chain[0] for k, chain in provenance.items()}, f"run {letter}")


def _checkpoint_side(path: Path, letter: str) -> Side:
    from ..runner.checkpoint.store import load_checkpoint  # imports torch

    values = checkpoint_config(load_checkpoint(path, map_location="cpu"))
    if values is None:
        raise RunError(f"{path} holds no config to compare")
    return Side(str(path), values, {}, f"run {letter}")


def ordered_keys(a: dict, b: dict) -> list[str]:
    """Schema keys in schema order, then ENV names, then keys the schema does not know."""
    present = set(a) | set(b)
    schema = [k for k in KEYS if k in present]
    env = sorted(k for k in present if k.startswith("ENV."))
    other = sorted(present - set(schema) - set(env))
    return schema + env + other


def differences(a: Side, b: Side, every: bool = False) -> list[str]:
    """The keys whose values differ; unless every, not those where each side has the default or
    nothing (a nanoGPT checkpoint has no use_rope, a slo config its default False: no difference)."""
    keys = ordered_keys(a.values, b.values)
    return [k for k in keys if not same(a.values.get(k, _ABSENT), b.values.get(k, _ABSENT))
            and (every or not (_default_or_absent(a, k) and _default_or_absent(b, k)))]


def _default_or_absent(side: Side, key: str) -> bool:
    value = side.values.get(key, _ABSENT)
    return value is _ABSENT or (key in KEYS and same(value, KEYS[key].default))


def same(x, y) -> bool:
    """1 and 1.0 are the same value (JSON keeps no difference); True and 1, or 1 and "1", are not."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)):
        return x == y
    return type(x) is type(y) and x == y


def format_diff(a: Side, b: Side, keys: list[str]) -> str:
    texts = {k: (_text(a.values.get(k, _ABSENT)), _text(b.values.get(k, _ABSENT))) for k in keys}
    key_width = max(len(k) for k in keys)
    value_width = min(MAX_VALUE_WIDTH, max(len(t) for pair in texts.values() for t in pair))
    lines = [f"--- A: {a.name}", f"+++ B: {b.name}"]
    for key in keys:
        text_a, text_b = texts[key]
        lines.append(f"{key:<{key_width}}  - {text_a:<{value_width}}  {_where(a, key)}".rstrip())
        lines.append(f"{'':<{key_width}}  + {text_b:<{value_width}}  {_where(b, key)}".rstrip())
    lines.append(f"{len(keys)} key{'s' * (len(keys) != 1)} differ{'s' * (len(keys) == 1)}")
    return "\n".join(lines)


def _text(value) -> str:
    """A value as a config writes it; a string quoted when it must be (so '' shows)."""
    if value is _ABSENT:
        return "(not set)"
    return quote(value) if isinstance(value, str) else format_value(value)


def _where(side: Side, key: str) -> str:
    return "" if key not in side.values else side.origin(key)


def run_command(ns) -> int:
    try:
        a, b = load_side(ns.a, "A", ns.trust_py), load_side(ns.b, "B", ns.trust_py)
        sweep = None if ns.all else shared_sweep_keys(Path(ns.a), Path(ns.b))
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_TROUBLE
    keys = differences(a, b, ns.all)
    if sweep is not None:
        return _print_trial_diff(a, b, keys, *sweep)
    if not keys:
        print(f"no differences ({len(ordered_keys(a.values, b.values))} keys compared)")
        return EXIT_SAME
    print(format_diff(a, b, keys))
    return EXIT_DIFFERENT


def _print_trial_diff(a: Side, b: Side, keys: list[str], folder: Path, swept: list[str]) -> int:
    """Two trials of the sweep in folder: the differences in its swept keys, and how many others --all shows."""
    shown_keys = [k for k in keys if k in swept]
    others = len(differences(a, b, every=True)) - len(shown_keys)
    more = f"; {others} other key{'s' * (others != 1)} differ{'s' * (others == 1)} (--all shows them)" if others else ""
    if not shown_keys:
        print(f"no differences in the swept keys ({', '.join(swept) or 'none'}) of the sweep in {folder}{more}")
    else:
        print(format_diff(a, b, shown_keys))
        print(f"only the keys the sweep in {folder} varies{more}")
    return EXIT_DIFFERENT if keys else EXIT_SAME
