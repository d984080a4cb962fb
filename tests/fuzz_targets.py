"""Fuzz targets: one input into a real slo reader, which must accept it or refuse it cleanly.

Each target takes one input and feeds it to the readers slo really uses:

- ``config``, ``toml``, ``py``: a config file's bytes, through ``slo.load`` (and ``slo.loads``
  for ``.config``), ``slo check`` and ``slo diff``; a config that loads must also dump to every
  format and load back the same. Clean refusal: ``slo.ConfigError``.
- ``metrics``, ``plot``, ``configjson``, ``origins``: one file of a run's out_dir
  (``metrics.jsonl``, ``config.json``, ``config.origins.json``) beside the real files of a tiny
  run, through the run readers, ``slo runs``, ``slo diff`` (and ``slo plot``) and the trim a
  resumed run does to its metrics. Clean refusal: ``slo.errors.RunError``, a skipped line,
  or a one-line ``error:`` and an exit status from the command, never a traceback.
- ``metajson``, ``metapkl``: a dataset's meta, through ``load_meta``, ``open_dataset``, the
  tokenizer, the meta lookup of ``slo sample``, and a one-step training run on the dataset.
- ``ckpt``: fields of a real checkpoint replaced (a dict of dotted path -> value, ``DELETE``
  to remove one), saved with ``torch.save``, then read by ``slo runs`` / ``slo diff`` /
  ``slo sample`` and resumed (``init_from=resume``) for one training step.

A target returns normally when slo behaved; anything else (an exception slo should have
turned into its clean one, a traceback from a command, a broken round trip) is raised.
``COUNTS`` tallies the inputs each target was given and what became of them.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import io
import math
import os
import random
import shutil
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

import slo
import slo.cli
from slo.errors import RunError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CORPUS = TESTS / "data" / "fuzz"
FUZZ_ENV = {"HOME": "/nonexistent-home", "USER": "fuzz", "RUN": "exp1"}  # ${env:...} sees only these
DELETE = ("__slo_fuzz_delete__",)  # a ckpt patch value: remove the field
BIG_VOCAB = 4096  # a meta naming a larger vocabulary is read, but not trained on (memory, time)
MAX_READ_MEMORY = 64 << 20  # bytes of Python allocations reading a small file may peak at

COUNTS: Counter = Counter()  # (target, outcome) -> inputs


# ---------------------------------------------------------------- what every target shares


class Assets:
    """Built once per process: a folder of configs that FROM can reach, and a real tiny run."""

    _made: Assets | None = None

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="slo-fuzz-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.world = self.root / "world"  # configs/*.config and tests/data/valid, for FROM
        shutil.copytree(TESTS / "data" / "valid", self.world)
        for path in sorted((REPO / "configs").glob("*.config")):
            shutil.copy(path, self.world / path.name)
        self._run = None

    @classmethod
    def get(cls) -> Assets:
        if cls._made is None:
            cls._made = cls()
        return cls._made

    @property
    def dataset(self) -> Path:
        """A byte-level dataset folder: train.bin, val.bin, meta.json (made without torch)."""
        from tiny_run import make_dataset

        if not (self.root / "data" / "tiny").is_dir():
            make_dataset(self.root / "data")
        return self.root / "data" / "tiny"

    @property
    def run(self) -> Path:
        """The out_dir of a real two-step run: metrics.jsonl, config.json, origins, meta.json, ckpt.pt."""
        if self._run is None:
            from tiny_run import tiny_config

            self.dataset  # noqa: B018 (made first, so tiny_config finds it)
            self._config = tiny_config(self.root, "out", max_iters=2)
            rc, out, err = train(slo.load(self._config))
            assert rc == 0, out + err
            self._run = self.root / "out"
        return self._run

    @property
    def config(self) -> Path:
        """The tiny run's config file (2 layers, 32 wide, on the dataset, out_dir the run)."""
        self.run  # noqa: B018
        return self._config

    @property
    def ckpt(self) -> dict:
        run = self.run
        if not hasattr(self, "_ckpt"):
            from slo.runner.checkpoint.store import load_checkpoint

            self._ckpt = load_checkpoint(run / "ckpt.pt")
        return self._ckpt


@contextlib.contextmanager
def offline():
    """No connection, not even a name lookup, leaves this process while the body runs: a reader
    that tries one gets an OSError, as it would on a machine without a network."""
    import socket
    from unittest import mock

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (the fuzz tests run offline)")

    with mock.patch.object(socket.socket, "connect", refuse), mock.patch.object(socket, "getaddrinfo", refuse), \
            mock.patch.object(socket, "create_connection", refuse):
        yield


def gpt2_needs_download() -> bool:
    """tiktoken is installed but has not cached GPT-2's BPE, so making the encoding needs the network."""
    try:
        import tiktoken
    except ImportError:
        return False
    try:
        with offline():
            tiktoken.get_encoding("gpt2")
    except Exception:
        return True
    return False


class Blowup(AssertionError):
    """Reading a small file took far more memory than the file could justify."""


@contextlib.contextmanager
def small_footprint(what: str, limit: int = MAX_READ_MEMORY):
    """Fail with Blowup when the body's Python allocations peak above limit (tracemalloc)."""
    import tracemalloc

    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        if not tracing:
            tracemalloc.stop()
    if peak > limit:
        raise Blowup(f"{what} took {peak / 2**20:,.0f} MiB of memory")


@contextlib.contextmanager
def bounded_memory(extra: int = 1 << 30):
    """The process may map at most extra more bytes while the body runs (RLIMIT_AS), so an input
    that makes slo allocate gigabytes gets a MemoryError instead of the machine's memory."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        old = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError):  # not Linux: unbounded
        yield
        return
    limit = mapped + extra if old[1] == resource.RLIM_INFINITY else min(mapped + extra, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def outcome(target: str, what: str) -> None:
    COUNTS[target, what] += 1


def crash_signature(e: BaseException) -> tuple[str, str, str, str]:
    """(exception type, file, function, message) of a crash, at its innermost frame in slo/ (else
    its innermost frame): what KNOWN_CRASHES in test_fuzz.py matches."""
    frames = traceback.extract_tb(e.__traceback__)
    inside = [f for f in frames if f"{os.sep}slo{os.sep}" in f.filename] or frames
    where = inside[-1] if inside else None
    return (type(e).__name__, Path(where.filename).name if where else "", where.name if where else "",
            str(e).split("\n")[0][:200])


def inputs_tried(target: str | None = None) -> int:
    return sum(n for (t, what), n in COUNTS.items() if what == "input" and t == (target or t))


def clean(target: str, allowed: tuple, fn):
    """fn()'s value, or None when it raised one of the allowed (clean) exceptions."""
    try:
        value = fn()
    except allowed as e:
        outcome(target, type(e).__name__)
        if isinstance(e, slo.ConfigError):
            assert e.errors and all(d.render() for d in e.errors)
        return None
    outcome(target, "accepted")
    return value


def cli(*args) -> tuple[int, str, str]:
    """``slo ARGS`` in this process: (exit status, stdout, stderr). An exception is a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = slo.cli.main([str(a) for a in args])
    assert isinstance(rc, int), rc
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return rc, out.getvalue(), err.getvalue()


def command_refused(rc: int, err: str, codes: tuple, fine: tuple = (0,)) -> None:
    """The command ended with one of codes; one that failed (not in fine) said why in its last
    line of stderr, ``error: ...``, and every other line there is a note or a warning."""
    assert rc in codes, (rc, err)
    if rc in fine:
        return
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert all(line.startswith(("note: ", "warning: ")) for line in lines[:-1]), err


def train(cfg) -> tuple[int, str, str]:
    """``slo train`` of a loaded config in this process (its peak-FLOP/s probe skipped: 0.4 s a run),
    with the global random states left as they were."""
    from unittest import mock

    import torch

    import slo.runner.trainer as trainer_module
    from slo.runner.train_command import train_config

    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    env = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    patch = mock.patch.object(trainer_module, "peak_flops", lambda device, dtype: 1e12, create=True)
    try:
        with patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = train_config(cfg)
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
        os.environ.clear()
        os.environ.update(env)
    return rc, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def scratch():
    """A fresh folder for one input, removed after it."""
    path = Path(tempfile.mkdtemp(prefix="input-", dir=Assets.get().root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- configs


def same_values(a: dict, b: dict) -> bool:
    def norm(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v
    return a.keys() == b.keys() and all(norm(a[k]) == norm(b[k]) for k in a)


def round_trips(cfg, work: Path) -> None:
    """A config that loaded dumps to every format, and each dump loads back to the same values."""
    assert slo.dumps(cfg, "json")
    cfg.explain()
    for fmt in ("config", "toml", "py"):
        path = work / f"round-trip.{fmt}"
        path.write_text(slo.dumps(cfg, fmt), encoding="utf-8")
        back = slo.load(path, env=FUZZ_ENV)
        assert same_values(back.to_dict(), cfg.to_dict()), (fmt, path.read_text(encoding="utf-8"))
        assert dict(back.env) == dict(cfg.env), fmt


def config_target(data: bytes, suffix: str = ".config") -> None:
    """A config file's bytes (.config, .toml or .py), in a folder of configs FROM can reach."""
    name = {".config": "config", ".toml": "toml", ".py": "py"}[suffix]
    outcome(name, "input")
    world = Assets.get().world
    path = world / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        with scratch() as work:
            cfg = clean(name, (slo.ConfigError,), lambda: slo.load(path, env=FUZZ_ENV))
            if cfg is not None:
                round_trips(cfg, work)
            if suffix == ".config":
                text = data.decode("utf-8", "replace")
                cfg = clean(name, (slo.ConfigError,), lambda: slo.loads(text, path=str(path), env=FUZZ_ENV))
                if cfg is not None:
                    round_trips(cfg, work)
            rc, _, err = cli("check", path)
            assert rc in (0, 2), (rc, err)
            rc, _, err = cli("diff", path, world / "minimal.config")
            assert rc in (0, 1, 2), (rc, err)
    finally:
        path.unlink()


# ---------------------------------------------------------------- a run's files


def run_folder(work: Path, files: dict[str, bytes | None]) -> Path:
    """work/out: the real run's metrics.jsonl, config.json and config.origins.json, with files
    replacing them (None: left out)."""
    from slo.outdir.files import CONFIG_JSON, METRICS_NAME, ORIGINS_JSON

    out = work / "out"
    out.mkdir()
    real = Assets.get().run
    for name in (METRICS_NAME, CONFIG_JSON, ORIGINS_JSON):
        data = files.get(name, (real / name).read_bytes())
        if data is not None:
            (out / name).write_bytes(data)
    return out


def check_records(records: list) -> None:
    from slo.outdir.files import RECORD_NUMBERS

    for rec in records:
        assert isinstance(rec, dict) and ("loss" in rec or "val_loss" in rec), rec
        assert type(rec["iter"]) is int and rec["iter"] >= 0, rec
        for key in RECORD_NUMBERS:
            value = rec.get(key)
            assert value is None or (type(value) in (int, float) and float(value) == float(value) or
                                     math.isnan(value)), (key, value)


def read_back(target: str, out: Path, sorts=("loss",)) -> None:
    """Everything that reads the run in out: read_run and its summary, slo runs (by each of sorts),
    slo diff of it and the real run both ways round."""
    from slo.report.run_folder import read_run

    run = clean(target, (RunError,), lambda: read_run(out))
    if run is not None:
        check_records(run.train + run.evals)
        run.status(now=run.updated + 1)
        run.progress, run.best_val_loss, run.tokens_per_s, run.config_label()
    for sort in sorts:
        rc, _, err = cli("runs", out.parent, "--sort", sort)
        command_refused(rc, err, (0,))
    real = Assets.get().run
    for a, b in ((out, real), (real, out)):
        rc, _, err = cli("diff", a, b)
        command_refused(rc, err, (0, 1, 2), fine=(0, 1))


def metrics_target(data: bytes) -> None:
    """A metrics.jsonl: read_records, read_run, slo runs, slo diff, and a resume's trim."""
    from slo.outdir.files import read_records
    from slo.runner.metrics.runlog import trim_metrics

    outcome("metrics", "input")
    with scratch() as work:
        out = run_folder(work, {"metrics.jsonl": data})
        records = read_records(out / "metrics.jsonl")
        check_records(records)
        read_back("metrics", out, sorts=("updated", "name", "loss"))
        for resume_iter in (0, 1, 2**62):
            trimmed = work / f"trim-{resume_iter}.jsonl"
            trimmed.write_bytes(data)
            dropped = trim_metrics(trimmed, resume_iter)
            assert isinstance(dropped, int) and dropped >= 0
            kept = read_records(trimmed)
            assert len(kept) == trimmed.read_bytes().count(b"\n") <= len(records)  # every line kept is a record


def plot_target(data: bytes) -> None:
    """A metrics.jsonl drawn by slo plot."""
    outcome("plot", "input")
    with scratch() as work:
        out = run_folder(work, {"metrics.jsonl": data})
        rc, _, err = cli("plot", out, "-o", work / "curves.png")
        command_refused(rc, err, (0, 1))
        assert rc or (work / "curves.png").stat().st_size > 0
        outcome("plot", "refused" if rc else "drawn")


def cli_origins(keys) -> bytes:
    import json

    return json.dumps({k: ["cli", "default"] for k in keys}).encode()


def configjson_target(data: bytes) -> None:
    """A run's config.json, whose every key the origins say came from the command line (so
    slo runs shows each value): read_run, slo runs, slo diff of the folder and of the file."""
    from slo.schema import KEYS

    outcome("configjson", "input")
    with scratch() as work:
        keys = [*KEYS, "ENV.X", "", "x", "0"]
        out = run_folder(work, {"config.json": data, "config.origins.json": cli_origins(keys)})
        read_back("configjson", out)
        loose = work / "loose.json"  # a config.json with no origins beside it
        loose.write_bytes(data)
        for path in (out / "config.json", loose):
            rc, _, err = cli("diff", path, Assets.get().run / "config.json")
            command_refused(rc, err, (0, 1, 2), fine=(0, 1))


def origins_target(data: bytes) -> None:
    """A run's config.origins.json: read_run, slo runs, slo diff."""
    outcome("origins", "input")
    with scratch() as work:
        read_back("origins", run_folder(work, {"config.origins.json": data}))


TRIALS = ("learning_rate=0.001", "learning_rate=0.002")  # the trial folders of the fuzzed sweep


def real_manifest() -> bytes:
    """The sweep.json slo sweep writes for a two-trial sweep of the real run's config."""
    from slo.sweeps.manifest import Manifest, TrialRecord

    trials = [TrialRecord(name, {"learning_rate": float(name.split("=")[1])}, "finished", 0, None, 2.5, 8, 0.5)
              for name in TRIALS]
    settings = {"trials": None, "seed": None, "halving": 3, "rungs": 2, "metric": "t/acc", "goal": "max"}
    definition = {"swept": {"learning_rate": "1e-3,2e-3"}, "settings": settings, "trials": list(TRIALS),
                  "config": {}, "env": {}, "max_iters": dict.fromkeys(TRIALS, 8), "command": []}
    return Manifest(definition, trials, [{"rung": 0, "max_iters": 3, "metric": "t/acc", "ranking": [[TRIALS[0], 0.5]],
                                          "promoted": [TRIALS[0]]}]).to_json().encode()


def manifest_target(data: bytes) -> None:
    """A sweep folder's sweep.json beside two real trial runs: slo runs of the folder, slo diff of
    the two trials; each ends well or with a one-line error."""
    outcome("manifest", "input")
    with scratch() as work:
        folder = work / "sweep"
        folder.mkdir()
        for name in TRIALS:
            run_folder(work, {}).rename(folder / name)
        (folder / "sweep.json").write_bytes(data)
        rc, _, err = cli("runs", folder)
        command_refused(rc, err, (0, 1))
        rc, _, err = cli("diff", folder / TRIALS[0], folder / TRIALS[1])
        command_refused(rc, err, (0, 1, 2), fine=(0, 1))


# ---------------------------------------------------------------- a dataset's meta


def meta_target(data: bytes, name: str = "meta.json") -> None:
    """A dataset's meta.json or meta.pkl beside real token files: load_meta, open_dataset, its
    tokenizer and slo sample's meta lookup (in bounded memory), then one step of training on the
    dataset and slo sample of the run."""
    target = "metajson" if name == "meta.json" else "metapkl"
    outcome(target, "input")
    with scratch() as work, bounded_memory():
        folder = work / "data" / "tiny"
        folder.mkdir(parents=True)
        for split in ("train.bin", "val.bin"):  # and no other meta than this one
            shutil.copy(Assets.get().dataset / split, folder / split)
        (folder / name).write_bytes(data)
        with small_footprint(f"reading a {len(data):,}-byte {name}"):
            ds = read_meta(target, folder)
        if ds is None or (ds.vocab_size or BIG_VOCAB + 1) > BIG_VOCAB:  # none: GPT-2's 50,304
            return
        out = work / "out"
        cfg = slo.load(Assets.get().config, overrides=[f"--data_dir={folder.parent}", f"--out_dir={out}",
                                                       "--max_iters=1", "--eval_iters=1"])
        rc, _, err = train(cfg)
        command_refused(rc, err, (0, 1))
        if rc == 0:
            rc, _, err = cli("sample", out, "--max_new_tokens=2", "--device=cpu", "--dtype=float32", "--prompt=d")
            command_refused(rc, err, (0, 1))
            rc, _, err = cli("diff", out, Assets.get().run)
            command_refused(rc, err, (0, 1, 2), fine=(0, 1))


def read_meta(target: str, folder: Path):
    """Every reader of the meta in folder; the dataset open_dataset made of it, or None."""
    from slo.runner.data.datasets import load_meta, open_dataset
    from slo.runner.sample import tokenizer_for
    from slo.runner.data.text_tokenizers import Tokenizer

    meta = clean(target, (RunError,), lambda: load_meta(folder.parent, folder.name))
    if meta is not None:
        clean(target, (RunError,), lambda: Tokenizer.from_meta(meta))
    ds = clean(target, (RunError,), lambda: open_dataset(folder.parent, folder.name, block_size=16))
    if ds is not None and ds.tokenizer is not None:
        clean(target, (RunError,), lambda: ds.tokenizer.decode(ds.tokenizer.encode("def f(x):\n")))
    clean(target, (RunError,), lambda: tokenizer_for({"model_args": {"vocab_size": 256}}, folder))
    return ds


def metajson_target(data: bytes) -> None:
    meta_target(data, "meta.json")


def metapkl_target(data: bytes) -> None:
    meta_target(data, "meta.pkl")


# ---------------------------------------------------------------- a checkpoint's fields


def is_delete(value) -> bool:
    return type(value) is tuple and len(value) == 1 and isinstance(value[0], str) and value[0] == DELETE[0]


def patched(ckpt, patch: dict):
    """A copy of ckpt with each dotted path in patch set to its value (DELETE removes it; the
    path "" replaces the whole checkpoint). A path that leads nowhere changes nothing."""
    ckpt = copy.deepcopy(ckpt)
    for path, value in patch.items():
        if path == "":
            ckpt = copy.deepcopy(value)
        else:
            ckpt = _with(ckpt, path.split("."), copy.deepcopy(value))
    return ckpt


def _with(node, parts: list[str], value):
    """node with the field at parts set to value (or removed); tuples are rebuilt."""
    key, rest = parts[0], parts[1:]
    number = key.lstrip("-").isdigit()
    if isinstance(node, dict):
        key = int(key) if number and int(key) in node else key  # optimizer state is keyed by int
        if rest:
            if key in node:
                node[key] = _with(node[key], rest, value)
        elif is_delete(value):
            node.pop(key, None)
        else:
            node[key] = value
        return node
    if isinstance(node, (list, tuple)) and number and -len(node) <= int(key) < len(node):
        items, i = list(node), int(key)
        if rest:
            items[i] = _with(items[i], rest, value)
        elif is_delete(value):
            del items[i]
        else:
            items[i] = value
        return items if isinstance(node, list) else tuple(items)
    return node


def child_at(node, path: str):
    """The value at a dotted path (None when there is none)."""
    for part in path.split(".") if path else ():
        if isinstance(node, dict):
            node = node.get(int(part) if part.lstrip("-").isdigit() and int(part) in node else part)
        elif isinstance(node, (list, tuple)) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def ckpt_target(patch: dict) -> None:
    """The real checkpoint with fields replaced: loaded, listed, diffed, sampled, then resumed."""
    import torch

    from slo.runner.checkpoint.store import load_checkpoint

    outcome("ckpt", "input")
    assets = Assets.get()
    state = patched(assets.ckpt, patch)
    with scratch() as work, bounded_memory():
        out = work / "out"
        out.mkdir()
        torch.save(state, out / "ckpt.pt")
        clean("ckpt", (RunError,), lambda: load_checkpoint(out))
        read_back("ckpt", out)
        rc, _, err = cli("diff", out / "ckpt.pt", assets.run / "ckpt.pt")
        command_refused(rc, err, (0, 1, 2), fine=(0, 1))
        rc, _, err = cli("sample", out, "--max_new_tokens=2", "--device=cpu", "--dtype=float32", "--prompt=d")
        command_refused(rc, err, (0, 1))
        iter_num = assets.ckpt["iter_num"]
        cfg = slo.load(assets.config, overrides=["--init_from=resume", f"--out_dir={out}", f"--max_iters={iter_num + 1}",
                                                 "--eval_iters=1"])
        rc, _, err = train(cfg)
        command_refused(rc, err, (0, 1))
        outcome("ckpt", "resumed" if rc == 0 else "resume refused")


def load_patch(path: Path) -> dict:
    import torch

    patch = torch.load(path, weights_only=True)
    assert isinstance(patch, dict), f"{path} should hold a dict of dotted path -> value"
    return patch


# ---------------------------------------------------------------- the corpus


def _offline(fn):
    def target(data):
        with offline():
            fn(data)
    target.__doc__ = fn.__doc__
    return target


TARGETS = {  # name -> (target, file suffix), each run offline; a corpus file is NAME-NNNN.SUFFIX
    "config": (_offline(config_target), ".config"),
    "toml": (_offline(lambda data: config_target(data, ".toml")), ".toml"),
    "py": (_offline(lambda data: config_target(data, ".py")), ".py"),
    "metrics": (_offline(metrics_target), ".jsonl"),
    "plot": (_offline(plot_target), ".jsonl"),
    "configjson": (_offline(configjson_target), ".json"),
    "origins": (_offline(origins_target), ".json"),
    "metajson": (_offline(metajson_target), ".json"),
    "metapkl": (_offline(metapkl_target), ".pkl"),
    "ckpt": (_offline(ckpt_target), ".pt"),
    "manifest": (_offline(manifest_target), ".json"),
}


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "README.md") if CORPUS.is_dir() else []


def replay(path: Path) -> None:
    """Feed one corpus file to the target its name gives."""
    name = path.name.rsplit("-", 1)[0]
    assert name in TARGETS and path.name.endswith(TARGETS[name][1]), f"{path.name}: not NAME-NNNN.SUFFIX of a target"
    fn, _ = TARGETS[name]
    fn(load_patch(path) if name == "ckpt" else path.read_bytes())


def save_crash(name: str, value) -> Path:
    """Write a crashing input as the next NAME-NNNN.SUFFIX in the corpus (for the hunting script)."""
    CORPUS.mkdir(parents=True, exist_ok=True)
    suffix = TARGETS[name][1]
    n = 1 + max((int(p.name[len(name) + 1:-len(suffix)]) for p in CORPUS.glob(f"{name}-*{suffix}")
                 if p.name[len(name) + 1:-len(suffix)].isdigit()), default=0)
    path = CORPUS / f"{name}-{n:04d}{suffix}"
    if name == "ckpt":
        import torch

        torch.save(value, path)
    else:
        path.write_bytes(value)
    return path
