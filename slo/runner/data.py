"""Datasets on disk, tokenizers, and random training batches.

A dataset is a folder ``{data_dir}/{dataset}`` with ``train.bin`` and
``val.bin`` (token ids) and a ``meta.json`` that names the tokenizer:
``{"tokenizer": "byte", "vocab_size": 256}`` or
``{"tokenizer": "char", "vocab_size": N, "itos": [...]}``. Also read:
nanoGPT's ``meta.pkl`` (never unpickling anything but plain data), and
llm.c / modded-nanogpt token files, which start with a 256-int32 header.

torch is imported only by ``Batches``, so ``slo prepare`` stays light.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RunError

BUILTIN = "builtin"
META_JSON = "meta.json"
META_PKL = "meta.pkl"
SPLITS = ("train", "val")
GPT2_VOCAB_SIZE = 50257

# llm.c header: int32[256] = magic, version, token count, then zeros; tokens follow.
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
LLMC_FORMATS = {20240520: (1, np.dtype("<u2")), 20240801: (7, np.dtype("<u4"))}  # magic -> (version, token dtype)
LLMC_META = {  # what the tokens are when the dataset has no meta of its own
    20240520: {"tokenizer": "gpt2"},  # llm.c and modded-nanogpt GPT-2 shards
    20240801: {"tokenizer": "llama3", "vocab_size": 128256},
}
TOKEN_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
ID_CHECK_CHUNK = 1 << 20  # tokens read at each of the start, middle and end of a file


# ---------------------------------------------------------------- tokenizers


class Tokenizer:
    """Text to token ids and back. ``Tokenizer.from_meta`` picks the kind."""

    name = "unknown"
    available = True  # False when this tokenizer cannot encode or decode here
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    @property
    def meta(self) -> dict:
        """What ``from_meta`` needs to build this tokenizer again (JSON-able)."""
        return {"tokenizer": self.name, "vocab_size": self.vocab_size}

    @staticmethod
    def from_meta(meta: dict) -> Tokenizer:
        meta = normalize_meta(meta)
        kind = meta.get("tokenizer")
        if kind == "byte":
            return ByteTokenizer()
        if kind == "char":
            return CharTokenizer(meta["itos"])
        if kind in (None, "gpt2"):  # nanoGPT's openwebtext has no meta: GPT-2 BPE
            return Gpt2Tokenizer(meta.get("vocab_size") or GPT2_VOCAB_SIZE)
        return UnavailableTokenizer(str(kind), meta.get("vocab_size"))


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes; ids outside 0..255 decode as U+FFFD."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i if 0 <= i < 256 else 0xFF for i in map(int, ids)).decode("utf-8", errors="replace")


class CharTokenizer(Tokenizer):
    """One id per character of the dataset's alphabet (nanoGPT's shakespeare_char)."""

    name = "char"

    def __init__(self, itos: list[str]):
        self.itos = list(itos)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    @property
    def meta(self) -> dict:
        return {"tokenizer": "char", "vocab_size": self.vocab_size, "itos": self.itos}

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
            raise RunError(
                f"the text has {len(unknown)} character(s) outside this dataset's "
                f"{self.vocab_size}-character vocabulary: {shown}; use only characters the model was trained on"
            )
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        n = self.vocab_size
        return "".join(self.itos[i] if 0 <= i < n else "\ufffd" for i in map(int, ids))


class UnavailableTokenizer(Tokenizer):
    """A tokenizer slo cannot run: the vocabulary size is known, the text is not."""

    available = False

    def __init__(self, name: str, vocab_size: int | None, why: str = ""):
        self.name = name
        self.vocab_size = vocab_size
        self.why = why or (
            "slo decodes only byte-level, character-level and GPT-2 (with tiktoken) datasets; "
            "make the dataset with `slo prepare` to get a meta.json it can read"
        )

    def _refuse(self):
        raise RunError(
            f"text cannot be encoded or decoded: this dataset's tokenizer ({self.name}) is not available: {self.why}"
        )

    def encode(self, text: str) -> list[int]:
        self._refuse()

    def decode(self, ids) -> str:
        self._refuse()


class Gpt2Tokenizer(UnavailableTokenizer):
    """GPT-2 BPE through tiktoken, when it is installed."""

    def __init__(self, vocab_size: int):
        super().__init__("gpt2", vocab_size, "GPT-2 BPE needs tiktoken: pip install tiktoken")
        try:
            import tiktoken
        except ImportError:
            self.encoding = None
        else:
            self.encoding = tiktoken.get_encoding("gpt2")
        self.available = self.encoding is not None

    def encode(self, text: str) -> list[int]:
        if self.encoding is None:
            self._refuse()
        return self.encoding.encode(text, allowed_special={"<|endoftext|>"})

    def decode(self, ids) -> str:
        if self.encoding is None:
            self._refuse()
        return self.encoding.decode([int(i) for i in ids])


# ---------------------------------------------------------------- meta


class _ForbiddenObject(Exception):
    pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Refuses every class and function: a meta.pkl holds only dicts, ints and strs."""

    def find_class(self, module, name):
        raise _ForbiddenObject(f"it asks for {module}.{name}, and only plain data (dicts, ints, strs) is read")


def normalize_meta(meta, source: str = "the dataset's meta") -> dict:
    """nanoGPT's ``{vocab_size, itos: {int: str}, stoi}`` becomes slo's char-level meta."""
    if not isinstance(meta, dict):
        raise RunError(f"{source} is not a mapping ({type(meta).__name__}); prepare the dataset again")
    meta = dict(meta)
    itos = meta.get("itos")
    if isinstance(itos, dict):
        try:
            itos = [itos[i] for i in range(len(itos))]
        except KeyError:
            raise RunError(f"{source}: itos is not numbered 0..{len(itos) - 1}; prepare the dataset again") from None
    if itos is not None:
        if not isinstance(itos, (list, tuple)) or not all(isinstance(c, str) for c in itos):
            raise RunError(f"{source}: itos must be a list of strings; prepare the dataset again")
        meta["itos"] = list(itos)
        meta.pop("stoi", None)
        meta.setdefault("tokenizer", "char")
        meta.setdefault("vocab_size", len(itos))
    vocab = meta.get("vocab_size")
    if vocab is not None and (not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1):
        raise RunError(f"{source}: vocab_size must be a positive integer, not {vocab!r}")
    if meta.get("tokenizer") == "char" and "itos" not in meta:
        raise RunError(f"{source}: a char-level tokenizer needs its itos list; prepare the dataset again")
    dtype = meta.get("dtype")
    if dtype is not None and dtype not in TOKEN_DTYPES:
        raise RunError(f"{source}: dtype must be one of {', '.join(TOKEN_DTYPES)}, not {dtype!r}")
    return meta


def load_meta(data_dir, dataset) -> dict:
    """The dataset's meta.json, else its nanoGPT meta.pkl (plain data only), else {}."""
    folder = Path(data_dir) / dataset
    path = folder / META_JSON
    if path.is_file():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunError(f"{path} cannot be read ({e}); fix it or prepare the dataset again") from None
        return normalize_meta(meta, str(path))
    path = folder / META_PKL
    if path.is_file():
        try:
            with open(path, "rb") as f:
                meta = _PlainDataUnpickler(f).load()
        except _ForbiddenObject as e:
            raise RunError(f"{path} was not loaded: {e}; replace it with a meta.json (`slo prepare`)") from None
        except Exception as e:  # a corrupt pickle can raise almost anything
            why = f"{type(e).__name__}: {e}"
            raise RunError(f"{path} is corrupt ({why}); replace it with a meta.json (`slo prepare`)") from None
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
            "the token files do not match the dataset's meta (prepare it again), or set MODEL vocab_size larger"
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
    """Open ``{data_dir}/{dataset}``; ``dataset=builtin`` is built on first use.

    The token ids are checked (a sample of them) against the vocabulary size
    the meta states and, when given, ``vocab_size`` (the model's); when
    ``block_size`` is given, each split must hold at least one batch row.
    """
    folder = Path(data_dir) / dataset
    if dataset == BUILTIN and not any((folder / name).exists() for name in ("train.bin", "val.bin", META_JSON)):
        from .corpus import build_builtin

        try:
            build_builtin(folder)
        except OSError as e:
            raise RunError(
                f"the built-in corpus cannot be written to {folder} ({e}); set DATA data_dir to a writable folder"
            ) from None
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
            _check_length(splits[split], block_size, f"the {split} split of {folder}")
    tokenizer = Tokenizer.from_meta(meta)
    return TokenDataset(
        path=folder,
        train=splits["train"],
        val=splits["val"],
        meta=meta,
        vocab_size=meta.get("vocab_size"),
        tokenizer=tokenizer if tokenizer.available else None,
    )


def _check_length(tokens, block_size: int, name: str) -> None:
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is not
        for name, tokens in (("train.bin", train), ("val.bin", val)):
            with open(tmp / name, "wb") as f:
                np.asarray(tokens).astype(TOKEN_DTYPES[dtype_name], copy=False).tofile(f)
                f.flush()
                os.fsync(f.fileno())
        with open(tmp / META_JSON, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        return _move_into_place(tmp, folder, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, folder: Path, replace: bool) -> bool:
    if replace and folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
        os.rename(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.rename(tmp, folder)  # replaces an empty folder; fails on one with files
    except OSError:
        if folder.is_dir() and any(folder.iterdir()):
            return False
        raise
    return True


def unigram_entropy(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy in nats of ``val`` under the unigram distribution of ``train`` (add-one smoothing).

    The loss a model gets by knowing only how often each token occurs: a
    trained model must beat it clearly.
    """
    counts = np.bincount(np.asarray(train), minlength=vocab_size)[:vocab_size] + 1.0
    log_p = np.log(counts / counts.sum())
    val_counts = np.bincount(np.asarray(val), minlength=vocab_size)[:vocab_size]
    return float(-(val_counts * log_p).sum() / max(len(val), 1))


# ---------------------------------------------------------------- batches


class Batches:
    """Random (x, y) windows of ``block_size`` tokens; y is x shifted by one.

    Rows are gathered in one numpy indexing operation, not a Python loop per
    row. The random stream is this object's own, seeded by (seed, rank), and
    ``state_dict`` captures its position so a resumed run draws exactly the
    batches an uninterrupted one would have.
    """

    def __init__(self, tokens, batch_size: int, block_size: int, device="cpu", seed: int = 1337, rank: int = 0,
                 vocab_size: int | None = None, name: str = "the token array"):
        import torch

        self.vocab_size = vocab_size  # when given, every batch is checked against it
        self.name = name

        self.batch_size = batch_size
        self.block_size = block_size
        self.device = torch.device(device)
        self.pin = self.device.type == "cuda"
        shards = tokens.shards if isinstance(tokens, ShardedTokens) else [tokens]
        _check_length(tokens, block_size, "the token array")
        # one view per shard whose rows are every (block_size + 1)-token window; no copy
        self._windows = [
            np.lib.stride_tricks.sliding_window_view(s, block_size + 1) for s in shards if len(s) > block_size
        ]
        self._window_ends = np.cumsum([len(w) for w in self._windows])
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, rank])))
        self.drawn = 0

    def _rows(self) -> np.ndarray:
        picks = self.rng.integers(0, self._window_ends[-1], size=self.batch_size)
        if len(self._windows) == 1:
            return self._windows[0][picks]
        shard = np.searchsorted(self._window_ends, picks, side="right")
        starts = np.concatenate([[0], self._window_ends[:-1]])
        rows = np.empty((self.batch_size, self.block_size + 1), dtype=self._windows[0].dtype)
        for s in np.unique(shard):  # one gather per shard hit, never one per row
            hit = shard == s
            rows[hit] = self._windows[s][picks[hit] - starts[s]]
        return rows

    def next(self):
        """The next (x, y) pair, int64 tensors of shape (batch_size, block_size) on the device."""
        import torch

        rows = self._rows()
        if self.vocab_size is not None and int(rows.max()) >= self.vocab_size:
            raise RunError(f"{self.name} holds token id {int(rows.max())}, but the model's vocabulary has only "
                           f"{self.vocab_size} ids (0..{self.vocab_size - 1}): the token files do not match the "
                           "dataset's meta (prepare it again), or set MODEL vocab_size larger")
        x = np.empty((self.batch_size, self.block_size), dtype=np.int64)
        y = np.empty((self.batch_size, self.block_size), dtype=np.int64)
        x[...] = rows[:, :-1]
        y[...] = rows[:, 1:]
        self.drawn += 1
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        if self.pin:
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        if self.device.type != "cpu":
            return x.to(self.device), y.to(self.device)
        return x, y

    __next__ = next

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.rng.bit_generator.state = state["rng"]
            self.drawn = int(state["drawn"])
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(
                f"the checkpoint's data position cannot be restored ({e}); start with init_from=scratch"
            ) from None
