"""``slo prepare``: turn text files or folders into a dataset (train.bin, val.bin, meta.json).

Files are read in sorted order and joined; the last ``--val_fraction`` of the
tokens is the validation split (as nanoGPT's shakespeare_char does). A file
counts as text when it is valid UTF-8 with no NUL byte; others are skipped
with a note. Hidden files and folders inside a folder are skipped too.
The whole text is held in memory while it is encoded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RunError

DEFAULT_BUILTIN_OUT = "data/builtin"


def add_arguments(parser, command: str) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="text files or folders (read recursively)")
    parser.add_argument("-o", "--out", metavar="DATA_DIR/NAME", help="dataset folder to write")
    parser.add_argument("--char", action="store_true", help="character-level tokens (default: UTF-8 bytes)")
    parser.add_argument("--val_fraction", type=float, default=0.1, metavar="F",
                        help="share of the tokens, taken from the end, for validation (default 0.1)")
    parser.add_argument("--builtin", action="store_true",
                        help=f"build the built-in corpus from Python's own sources (default -o {DEFAULT_BUILTIN_OUT})")
    parser.add_argument("--force", action="store_true", help="replace the output folder if it exists")


def run(ns, rest) -> int:
    try:
        if rest:
            raise RunError(f"unexpected arguments: {' '.join(rest)}")
        print(prepare(ns))
    except (RunError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def prepare(ns) -> str:
    """Build the dataset ``ns`` asks for; returns the summary line."""
    from .dataset import write_dataset

    out = Path(ns.out or (DEFAULT_BUILTIN_OUT if ns.builtin else ""))
    if not ns.out and not ns.builtin:
        raise RunError(
            "say where the dataset goes: -o DATA_DIR/NAME (then train with DATA data_dir=DATA_DIR dataset=NAME)"
        )
    if ns.builtin and ns.inputs:
        raise RunError("--builtin takes no INPUT files: it reads Python's own sources")
    if not ns.builtin and not ns.inputs:
        raise RunError("give text files or folders to read (or --builtin for the built-in corpus)")
    if not 0 < ns.val_fraction < 1:
        raise RunError(f"--val_fraction must be between 0 and 1 (exclusive), not {ns.val_fraction}")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder; choose another -o")
    if out.is_dir() and any(out.iterdir()):
        if not ns.force:
            raise RunError(f"{out} already exists; add --force to replace it, or choose another -o")
        check_replaceable(out, [] if ns.builtin else ns.inputs)

    if ns.builtin:
        from .corpus import build_builtin
        from .dataset import load_meta

        build_builtin(out, replace=True)
        meta = load_meta(out.parent, out.name)
    else:
        texts = read_texts(find_files(ns.inputs), progress=sys.stderr.isatty())
        train, val, meta = encode(texts, ns.char, ns.val_fraction)
        meta["source"] = [str(p) for p in ns.inputs]
        meta["files"] = len(texts)
        write_dataset(out, train, val, meta, replace=True)
    tokens = meta["tokens"]
    return (
        f"wrote {out}: {tokens['train']:,} train and {tokens['val']:,} val tokens, "
        f"{meta['tokenizer']}-level vocabulary of {meta['vocab_size']}; "
        f"unigram baseline {meta['unigram_entropy_nats']:.3f} nats\n"
        f"train on it with: DATA data_dir={out.parent} dataset={out.name}"
        f"  (or --data_dir={out.parent} --dataset={out.name})"
    )


DATASET_FILES = frozenset(("train.bin", "val.bin", "meta.json", "meta.pkl"))


def check_replaceable(out: Path, inputs: list[str]) -> None:
    """RunError unless --force may replace out: a dataset folder holding nothing else, that is
    neither the current folder nor above it, and that holds none of the inputs."""
    real, cwd = out.resolve(), Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise RunError(f"-o {out} is the current folder or holds it; --force replaces only a dataset folder: "
                       "choose -o DATA_DIR/NAME")
    for name in inputs:
        source = Path(name).resolve()
        if source == real or real in source.parents or source in real.parents:
            raise RunError(f"{name} is inside -o {out} (or holds it), which --force would replace; "
                           "write the dataset to another folder")
    others = sorted(p.name for p in out.iterdir() if p.name not in DATASET_FILES)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise RunError(f"{out} holds files that are not a dataset's ({shown}); --force replaces only a dataset "
                       "folder (train.bin, val.bin, meta.json): choose another -o")


def find_files(inputs: list[str]) -> list[Path]:
    """The files named, and every file under the folders named, in sorted order."""
    files = []
    for name in inputs:
        path = Path(name)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(
                p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_symlink():
            raise RunError(f"{name} is a broken link")
        elif path.exists():
            raise RunError(f"{name} is neither a file nor a folder")
        else:
            raise RunError(f"{name} does not exist")
    return files


def read_texts(files: list[Path], progress: bool = False) -> list[str]:
    """The text of each file that is UTF-8 text; the others are skipped with a note on stderr."""
    from tqdm import tqdm

    texts, skipped = [], []
    total = sum(p.stat().st_size for p in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc="reading", disable=not progress) as bar:
        for path in files:
            try:
                data = path.read_bytes()
                if b"\0" in data:
                    raise UnicodeError("a NUL byte")
                texts.append(data.decode("utf-8"))
            except (OSError, UnicodeError):
                skipped.append(path)
            bar.update(path.stat().st_size)
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"note: skipped {len(skipped)} file(s) that are not readable UTF-8 text: {shown}", file=sys.stderr)
    if not any(texts):
        raise RunError(f"no text found in {len(files)} file(s): slo prepare reads UTF-8 text files")
    return texts


def encode(texts: list[str], char_level: bool, val_fraction: float):
    """(train ids, val ids, meta) for the joined texts."""
    import numpy as np

    from .dataset import unigram_entropy

    text = "".join(t if t.endswith("\n") or not t else t + "\n" for t in texts)
    if char_level:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        alphabet = np.unique(codes)
        ids = np.searchsorted(alphabet, codes)
        itos = [chr(c) for c in alphabet.tolist()]
        meta = {"tokenizer": "char", "vocab_size": len(itos), "itos": itos}
    else:
        ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        meta = {"tokenizer": "byte", "vocab_size": 256}
    n_val = int(round(len(ids) * val_fraction))
    if n_val < 1 or n_val >= len(ids):
        raise RunError(
            f"{len(ids)} tokens cannot be split with --val_fraction {val_fraction}: "
            "both splits need at least one token; give more text or another fraction"
        )
    train, val = ids[:-n_val], ids[-n_val:]
    meta["tokens"] = {"train": len(train), "val": len(val)}
    meta["unigram_entropy_nats"] = round(unigram_entropy(train, val, meta["vocab_size"]), 4)
    return train, val, meta
