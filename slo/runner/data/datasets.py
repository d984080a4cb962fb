"""Datasets on disk: their token files and meta, opened for training and written atomically.

A dataset is a folder ``{data_dir}/{dataset}`` with ``train.bin`` and
``val.bin`` (token ids) and a ``meta.json`` that names the tokenizer (see
slo.runner.data.text_tokenizers). Also read: nanoGPT's ``meta.pkl`` (never unpickling
anything but plain data), and llm.c / modded-nanogpt token files, which
start with a 256-int32 header. The built-in corpus is made by
slo.runner.data.corpus before it is opened here. No torch here, so ``slo prepare``
stays light.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import atomic
from ...errors import RunError, first_line
from ...outdir.files import read_json
from .text_tokenizers import TOKEN_DTYPES, Tokenizer, normalize_meta

BUILTIN = "builtin"
META_JSON = "meta.json"
META_PKL = "meta.pkl"
SPLITS = ("train", "val")

# llm.c header: int32[256] = magic, version, token count, then zeros; tokens follow.
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
LLMC_FORMATS = {20240520: (1, np.dtype("<u2")), 20240801: (7, np.dtype("<u4"))}  # magic -> (version, token dtype)
LLMC_META = {  # what the tokens are when the dataset has no meta of its own
    20240520: {"tokenizer": "gpt2"},  # llm.c and modded-nanogpt GPT-2 shards
    20240801: {"tokenizer": "llama3", "vocab_size": 128256},
}
VOCAB_ADVICE = ("the token files do not match the dataset's meta (prepare it again), or the model's vocabulary is "
                "too small for them: raise MODEL vocab_size, or, where the weights of init_from decide it, prepare "
                "the data with their tokenizer")
ID_CHECK_CHUNK = 1 << 20
MAX_META_BYTES = 64 << 20  # a meta.pkl (a char vocabulary) is far smaller  # tokens read at each of the start, middle and end of a file


# ---------------------------------------------------------------- meta


class _ForbiddenObject(Exception):
    pass


class _PlainDataUnpickler(pickle._Unpickler):
    """Refuses every class and function: a meta.pkl holds only dicts, ints and strs. The pure-Python
    unpickler: its memo is a dict, where the C one grows an array to any index a file names."""

    def find_class(self, module, name):
        raise _ForbiddenObject(f"it asks for {module}.{name}, and only plain data (dicts, ints, strs) is read")


def load_meta(data_dir, dataset) -> dict:
    """The dataset's meta.json, else its nanoGPT meta.pkl (plain data only), else {}."""
    folder = Path(data_dir) / dataset
    path = folder / META_JSON
    if path.is_file():
        try:
            meta = read_json(path)
        except (OSError, ValueError) as e:
            raise RunError(f"{path} cannot be read ({first_line(e)}); fix it or prepare the dataset again") from None
        return normalize_meta(meta, str(path))
    path = folder / META_PKL
    if path.is_file():
        if path.stat().st_size > MAX_META_BYTES:
            raise RunError(f"{path} is larger than {MAX_META_BYTES:,} bytes: not a dataset's meta")
        try:  # from memory: a length the file claims is read as what is there, never allocated first
            meta = _PlainDataUnpickler(io.BytesIO(path.read_bytes())).load()
        except _ForbiddenObject as e:
            raise RunError(f"{path} was not loaded: {e}; replace it with a meta.json (`slo prepare`)") from None
        except Exception as e:  # a corrupt pickle can raise almost anything
            raise RunError(f"{path} is corrupt ({type(e).__name__}: {first_line(e) or type(e).__name__}); replace it with a meta.json "
                           "(`slo prepare`)") from None
        return normalize_meta(meta, str(path))
    return {}


# ---------------------------------------------------------------- token files


class ShardedTokens:
    """Several token files read as one split; a window never crosses a shard boundary."""

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.dtype = shards[0].dtype

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def __repr__(self) -> str:
        return f"ShardedTokens({len(self.shards)} shards, {len(self)} tokens)"


def _raw_dtype(meta: dict) -> np.dtype:
    name = meta.get("dtype")
    vocab = meta.get("vocab_size") or 0
    if name is None:
        return TOKEN_DTYPES["uint32" if vocab > 65536 else "uint16"]
    if name == "uint16" and vocab > 65536:
        raise RunError(f"the dataset's meta says dtype uint16, but vocab_size {vocab} needs uint32; prepare it again")
    return TOKEN_DTYPES[name]


def read_tokens(path, dtype=TOKEN_DTYPES["uint16"]) -> np.ndarray:
    """A read-only memmap of the token ids in ``path``: llm.c format when its header says so, else raw ``dtype``."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise RunError(f"{path} is empty; prepare the dataset again")
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if _llmc_magic(path, head) is not None:
        return _read_llmc(path, head, size)
    dtype = np.dtype(dtype)
    if size % dtype.itemsize:
        raise RunError(
            f"{path} has {size} bytes, not a whole number of {dtype.name} tokens ({dtype.itemsize} bytes each): "
            "the file is truncated or corrupt; prepare the dataset again"
        )
    return np.memmap(path, dtype=dtype, mode="r")


def _llmc_magic(path: Path, head: bytes | None = None) -> int | None:
    """The llm.c magic number ``path`` starts with, or None for a raw token file."""
    if head is None:
        with open(path, "rb") as f:
            head = f.read(4)
    magic = int.from_bytes(head[:4], "little", signed=True) if len(head) >= 4 else None
    return magic if magic in LLMC_FORMATS else None


def _read_llmc(path: Path, head: bytes, size: int) -> np.ndarray:
    if len(head) < HEADER_BYTES:
        raise RunError(f"{path} has an llm.c header cut short ({size} of {HEADER_BYTES} bytes): the file is truncated")
    magic, version, count = (int(v) for v in np.frombuffer(head, dtype="<i4", count=3))
    want_version, dtype = LLMC_FORMATS[magic]
    if version != want_version:
        raise RunError(
            f"{path}: llm.c header with magic {magic} has version {version}, expected {want_version}; the file is corrupt"
        )
    expected = HEADER_BYTES + count * dtype.itemsize
    if count <= 0 or size != expected:
        raise RunError(
            f"{path}: its header says {count} tokens ({expected} bytes with the header), "
            f"but the file has {size} bytes: it is truncated or corrupt; download or prepare it again"
        )
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(count,))


def _split_files(folder: Path, split: str) -> list[Path]:
    """``{split}.bin``, else llm.c-style shards such as ``fineweb_{split}_000001.bin``."""
    single = folder / f"{split}.bin"
    if single.is_file():
        return [single]
    return sorted(p for p in folder.glob(f"*{split}*.bin") if p.is_file())


def _check_ids(tokens: np.ndarray, vocab_size: int, path) -> None:
    """Reads at most three chunks (start, middle, end): cheap even for a file of many GB."""
    n = len(tokens)
    starts = {0, max(0, n // 2 - ID_CHECK_CHUNK // 2), max(0, n - ID_CHECK_CHUNK)}
    top = max(int(tokens[s : s + ID_CHECK_CHUNK].max()) for s in starts)
    if top >= vocab_size:
        raise RunError(
            f"{path} holds token id {top}, but the vocabulary has only {vocab_size} ids (0..{vocab_size - 1}): "
            + VOCAB_ADVICE
        )


def _describe_folder(folder: Path) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return f"{folder} does not exist"
    return f"{folder} holds: {', '.join(names)}" if names else f"{folder} is empty"


@dataclass(frozen=True, eq=False)
class TokenDataset:
    """A dataset's two splits as memmaps, its meta, and its tokenizer when slo can run it."""

    path: Path
    train: np.ndarray | ShardedTokens
    val: np.ndarray | ShardedTokens
    meta: dict = field(default_factory=dict)
    vocab_size: int | None = None
    tokenizer: Tokenizer | None = None


def open_dataset(data_dir, dataset, *, block_size: int | None = None, vocab_size: int | None = None) -> TokenDataset:
    """Open ``{data_dir}/{dataset}`` (``dataset=builtin`` once slo.runner.data.corpus has made it).

    The token ids are checked (a sample of them) against the vocabulary size
    the meta states and, when given, ``vocab_size`` (the model's); when
    ``block_size`` is given, each split must hold at least one batch row.
    """
    folder = Path(data_dir) / dataset
    if not folder.is_dir():
        raise RunError(
            f"dataset folder {folder} does not exist (data_dir={data_dir}, dataset={dataset}); "
            f"{_describe_folder(Path(data_dir))}. Make it with `slo prepare TEXT_FILES... -o {folder}`, "
            f"or set DATA dataset={BUILTIN} to train on the built-in corpus"
        )
    meta = load_meta(data_dir, dataset)
    files = {split: _split_files(folder, split) for split in SPLITS}
    for split, paths in files.items():
        if not paths:
            inputs = "--builtin" if dataset == BUILTIN else "TEXT_FILES..."
            rebuild = f"`slo prepare {inputs} -o {folder} --force`"
            raise RunError(
                f"dataset {folder} has no {split}.bin ({_describe_folder(folder)}); make it again with {rebuild}"
            )
    if not meta:  # an llm.c header says which tokens follow
        meta = dict(LLMC_META.get(_llmc_magic(files["train"][0]), {}))
    raw_dtype = _raw_dtype(meta)
    splits = {}
    for split, paths in files.items():
        shards = [read_tokens(p, raw_dtype) for p in paths]
        limits = [v for v in (meta.get("vocab_size"), vocab_size) if v is not None]
        for path, tokens in zip(paths, shards):
            if limits:
                _check_ids(tokens, min(limits), path)
        splits[split] = shards[0] if len(shards) == 1 else ShardedTokens(shards)
        if block_size is not None:
            check_length(splits[split], block_size, f"the {split} split of {folder}")
    tokenizer = Tokenizer.from_meta(meta)
    return TokenDataset(
        path=folder,
        train=splits["train"],
        val=splits["val"],
        meta=meta,
        vocab_size=meta.get("vocab_size"),
        tokenizer=tokenizer if tokenizer.available else None,
    )


def check_length(tokens, block_size: int, name: str) -> None:
    longest = max(len(s) for s in tokens.shards) if isinstance(tokens, ShardedTokens) else len(tokens)
    if longest < block_size + 1:
        what = "its longest shard has" if isinstance(tokens, ShardedTokens) else "it has"
        raise RunError(
            f"{name} is too short for block_size={block_size}: {what} {longest} tokens and a batch row needs "
            f"block_size + 1 = {block_size + 1}; use a smaller block_size (at most {max(longest - 1, 1)}) or more data"
        )


# ---------------------------------------------------------------- writing


def write_dataset(folder, train: np.ndarray, val: np.ndarray, meta: dict, *, replace: bool = False) -> bool:
    """Write train.bin, val.bin and meta.json into ``folder`` atomically.

    Everything is written into a temporary folder beside it, then renamed,
    so a reader never sees half a dataset. When ``folder`` already has files
    and ``replace`` is False, the existing folder wins (another process built
    it first) and False is returned.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    vocab = meta["vocab_size"]
    dtype_name = "uint32" if vocab > 65536 else "uint16"
    meta = {**meta, "dtype": dtype_name}
    tmp = atomic.folder_beside(folder)
    try:
        for name, tokens in (("train.bin", train), ("val.bin", val)):
            with open(tmp / name, "wb") as f:
                np.asarray(tokens).astype(TOKEN_DTYPES[dtype_name], copy=False).tofile(f)
                atomic.synced(f)
        with open(tmp / META_JSON, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
            atomic.synced(f)
        return atomic.replace_folder(tmp, folder, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unigram_entropy(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy in nats of ``val`` under the unigram distribution of ``train`` (add-one smoothing).

    The loss a model gets by knowing only how often each token occurs: a
    trained model must beat it clearly.
    """
    counts = np.bincount(np.asarray(train), minlength=vocab_size)[:vocab_size] + 1.0
    log_p = np.log(counts / counts.sum())
    val_counts = np.bincount(np.asarray(val), minlength=vocab_size)[:vocab_size]
    return float(-(val_counts * log_p).sum() / max(len(val), 1))


def counts_entropy(train_counts: np.ndarray, val_counts: np.ndarray) -> float:
    """unigram_entropy from each split's count of every id (what a streaming writer keeps; its ids all fit)."""
    log_p = np.log((train_counts + 1.0) / (train_counts + 1.0).sum())
    return float(-(val_counts * log_p).sum() / max(int(val_counts.sum()), 1))


LLMC_HEADERS = {"uint16": (20240520, 1), "uint32": (20240801, 7)}  # token dtype -> llm.c (magic, version)
COUNTED_VOCAB = 1 << 24  # the largest vocabulary whose ids a TokenWriter counts (for the unigram baseline)


class TokenWriter:
    """A dataset written as its token ids come: ``{split}.bin``, or llm.c shards ``{split}_000000.bin`` of
    ``shard_tokens`` ids each, in a temporary folder beside ``folder`` (atomic's names). ``finish`` adds
    meta.json and moves it into place; leaving the ``with`` block before that removes what was written, so an
    interruption leaves no half-made dataset, and the one there, if any, as it was (a killed writer leaves a
    temporary folder that the next one sweeps)."""

    def __init__(self, folder, vocab_size: int, shard_tokens: int | None = None):
        self.folder = Path(folder)
        self.dtype_name = "uint32" if vocab_size > 65536 else "uint16"
        self.dtype = TOKEN_DTYPES[self.dtype_name]
        self.vocab_size, self.shard_tokens = vocab_size, shard_tokens
        self.tokens = {s: 0 for s in SPLITS}
        self.counts = {s: np.zeros(vocab_size, np.int64) for s in SPLITS} if vocab_size <= COUNTED_VOCAB else None
        self.files: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}  # closed files and their ids
        self._open: dict = {}  # split -> [file, path, ids in it]
        self._made = [p for p in (self.folder.parent, *self.folder.parent.parents) if not p.exists()]
        self.tmp = atomic.folder_beside(self.folder)
        self.done = False

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc) -> None:
        for f, _, _ in self._open.values():
            f.close()
        self._open.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for path in self._made if not self.done else ():
            try:
                path.rmdir()  # a folder made for it and still empty
            except OSError:
                break

    def write(self, split: str, ids: np.ndarray) -> None:
        ids = np.asarray(ids).astype(self.dtype, copy=False)
        if self.counts is not None and len(ids):
            self.counts[split] += np.bincount(ids, minlength=self.vocab_size)[:self.vocab_size]
        self.tokens[split] += len(ids)
        while len(ids):
            entry = self._open.get(split) or self._start(split)
            room = len(ids) if not self.shard_tokens else self.shard_tokens - entry[2]
            entry[0].write(memoryview(np.ascontiguousarray(ids[:room])))
            entry[2] += min(room, len(ids))
            ids = ids[room:]
            if entry[2] == self.shard_tokens:
                self._close(split)

    def _start(self, split: str) -> list:
        name = f"{split}_{len(self.files[split]):06d}.bin" if self.shard_tokens else f"{split}.bin"
        f = open(self.tmp / name, "wb")
        f.write(self._header(0) if self.shard_tokens else b"")
        self._open[split] = entry = [f, self.tmp / name, 0]
        return entry

    def _header(self, count: int) -> bytes:
        header = np.zeros(HEADER_INTS, dtype="<i4")
        header[:3] = (*LLMC_HEADERS[self.dtype_name], count)
        return header.tobytes()

    def _close(self, split: str) -> None:
        f, path, count = self._open.pop(split)
        with f:
            if self.shard_tokens:
                f.seek(0)
                f.write(self._header(count))
            atomic.synced(f)
        self.files[split].append((path, count))

    def move_tail(self, n: int, source: str = "train", target: str = "val") -> None:
        """Move the last n ids of ``source`` to ``target`` (a split by tokens, once all are written)."""
        if source in self._open:
            self._close(source)
        offset = HEADER_BYTES if self.shard_tokens else 0
        cut, start, kept = self.tokens[source] - n, 0, []
        for path, count in self.files[source]:
            stay = min(max(cut - start, 0), count)
            if stay < count:
                tokens = np.memmap(path, dtype=self.dtype, mode="r", offset=offset, shape=(count,))
                for at in range(stay, count, ID_CHECK_CHUNK):
                    chunk = np.array(tokens[at:at + ID_CHECK_CHUNK])
                    self.write(target, chunk)
                    if self.counts is not None:
                        self.counts[source] -= np.bincount(chunk, minlength=self.vocab_size)[:self.vocab_size]
                del tokens
                self._truncate(path, stay, offset)
            if stay:
                kept.append((path, stay))
            start += count
        self.files[source], self.tokens[source] = kept, cut

    def _truncate(self, path: Path, count: int, offset: int) -> None:
        if not count:
            return path.unlink()
        with open(path, "r+b") as f:
            f.truncate(offset + count * self.dtype.itemsize)
            if self.shard_tokens:
                f.write(self._header(count))
            atomic.synced(f)

    def finish(self, meta: dict, files: dict[str, str] | None = None, *, replace: bool = False) -> bool:
        """Close the token files, write meta.json (and ``files``: name -> text) and move the folder into
        place; False when ``folder`` had files and ``replace`` is False (as write_dataset)."""
        for split in list(self._open):
            self._close(split)
        for name, text in {**(files or {}), META_JSON: json.dumps({**meta, "dtype": self.dtype_name}, indent=1)}.items():
            with open(self.tmp / name, "w", encoding="utf-8") as f:
                f.write(text if name != META_JSON else text + "\n")
                atomic.synced(f)
        self.done = atomic.replace_folder(self.tmp, self.folder, replace)
        return self.done


