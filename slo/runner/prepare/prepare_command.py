"""``slo prepare``: text files, JSON lines or parquet to a dataset (train.bin, val.bin or shards, meta.json).

A document is a file, a JSON line or a row (slo.runner.prepare.inputs). Documents go
whole to train or val, the last ``--val_fraction`` of them by a shuffle seeded
with ``--seed``; where there are too few for that (one file, say), the last
``--val_fraction`` of the tokens is the validation split, as nanoGPT's
shakespeare_char does. The inputs are read in bounded pieces, encoded on every
usable core (slo.runner.prepare.encode) and written as they come into a temporary
folder (slo.runner.data.datasets.TokenWriter) that becomes the dataset only once it
is complete, so memory does not grow with the corpus and an interrupted run
leaves nothing half-made and the previous dataset as it was. A text file
counts as text when it is valid UTF-8 with no NUL byte; others are skipped
with a note. Hidden files and folders inside a folder are skipped too.
"""

from __future__ import annotations

import contextlib
import errno
import re
import signal
import sys
import threading
from pathlib import Path

from ...errors import RunError, UsageError

DEFAULT_BUILTIN_OUT = "data/builtin"
DATASET_FILES = frozenset(("train.bin", "val.bin", "meta.json", "meta.pkl", "tokenizer.json"))
SHARD_NAME = re.compile(r"(train|val)_\d{6}\.bin")
POOL_MIN_BYTES = 8 << 20  # smaller inputs are encoded in this process: starting workers would cost more
PIECE_BYTES = (256 << 10, 4 << 20)  # the smallest and largest piece handed to a worker
BPE_TRAIN_BYTES = 1 << 30  # the most of the input that bpe:N is trained on (spread over all of it)
PIECES_PER_WORKER = 8  # at the least, so that the workers finish together
DISK_ERRORS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO))
KIND_NAMES = {"byte": "byte-level", "char": "char-level", "gpt2": "GPT-2 BPE"}  # others: the --tokenizer given


def add_arguments(parser, command: str) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="text files or folders (read recursively), .jsonl, .jsonl.gz or .parquet files")
    parser.add_argument("-o", "--out", metavar="DATA_DIR/NAME", help="dataset folder to write")
    parser.add_argument("--tokenizer", metavar="T",
                        help="bytes (the default), char, gpt2 (tiktoken's GPT-2 BPE), bpe:N (a byte-level BPE of "
                             "N tokens trained on the input), or a tokenizer.json or Hugging Face model folder")
    parser.add_argument("--char", action="store_true", help="character-level tokens (the same as --tokenizer char)")
    parser.add_argument("--text_key", default="text", metavar="K",
                        help="the field of a JSON line, or the column of a parquet file, that holds the text "
                             "(default text)")
    parser.add_argument("--val_fraction", type=float, default=0.1, metavar="F",
                        help="share of the documents for validation, taken whole (of the tokens, taken from "
                             "the end, when there are too few documents); default 0.1")
    parser.add_argument("--seed", type=int, default=1337, metavar="S",
                        help="seed of the shuffle that chooses the validation documents (default 1337)")
    parser.add_argument("--shard_tokens", type=int, metavar="N",
                        help="write llm.c-format shards of N tokens (train_000000.bin, ...) instead of one file")
    parser.add_argument("--workers", type=int, metavar="N", help="encoding processes (default: the usable CPUs)")
    parser.add_argument("--builtin", action="store_true",
                        help=f"build the built-in corpus from Python's own sources (default -o {DEFAULT_BUILTIN_OUT})")
    parser.add_argument("--force", action="store_true", help="replace the output folder if it exists")


def run(ns, rest) -> int:
    try:
        with _terminate_as_exit():
            print(prepare(ns))
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    return 0


def describe_os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e}"


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM ends the command as Ctrl-C does, through every ``finally``: no temporary folder is left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prepare(ns) -> str:
    """Build the dataset ``ns`` asks for; returns the summary line."""
    spec = tokenizer_spec(ns)
    out = checked_output(ns)
    if ns.builtin:
        from ..data.corpus import build_builtin
        from ..data.datasets import load_meta

        build_builtin(out, replace=True)
        return summary(out, load_meta(out.parent, out.name))
    from .encode import HF_PIECE_BYTES, resolve_tokenizer
    from .inputs import Reader, find_sources

    plan = resolve_tokenizer(spec)
    reader = Reader(find_sources(ns.inputs), ns.text_key)
    n_docs = reader.count()
    workers = worker_count(plan, reader, ns.workers)
    largest = min(PIECE_BYTES[1], HF_PIECE_BYTES) if plan.kind == "hf" else PIECE_BYTES[1]
    reader.piece_bytes = max(PIECE_BYTES[0], min(largest, reader.total_bytes // (workers * PIECES_PER_WORKER)))
    progress = sys.stderr.isatty()
    if plan.train_vocab:
        train_tokenizer(plan, reader, n_docs, progress)
    if plan.kind == "char":
        find_alphabet(plan, reader, workers, progress)
    meta = write_tokens(out, plan, reader, n_docs, ns, workers, progress)
    return summary(out, meta)


def worker_count(plan, reader, asked: int | None) -> int:
    """Byte-level tokens need no workers (reading is the work), nor small inputs unless --workers asks."""
    from .encode import usable_cpus

    if plan.kind == "byte":
        return 1
    return asked or (1 if reader.total_bytes < POOL_MIN_BYTES else usable_cpus())


def tokenizer_spec(ns) -> str:
    if ns.char and ns.tokenizer not in (None, "char"):
        raise UsageError(f"--char and --tokenizer {ns.tokenizer} name two tokenizers; give one")
    if ns.builtin and ns.tokenizer not in (None, "bytes", "byte"):
        raise UsageError("--builtin makes the byte-level built-in corpus; another --tokenizer needs INPUT files")
    return "char" if ns.char else ns.tokenizer or "bytes"


def checked_output(ns) -> Path:
    """The output folder, once the arguments are known to make sense together."""
    out = Path(ns.out or (DEFAULT_BUILTIN_OUT if ns.builtin else ""))
    if not ns.out and not ns.builtin:
        raise UsageError(
            "say where the dataset goes: -o DATA_DIR/NAME (then train with DATA data_dir=DATA_DIR dataset=NAME)"
        )
    if ns.builtin and ns.inputs:
        raise UsageError("--builtin takes no INPUT files: it reads Python's own sources")
    if not ns.builtin and not ns.inputs:
        raise UsageError("give text files or folders to read (or --builtin for the built-in corpus)")
    if not 0 < ns.val_fraction < 1:
        raise UsageError(f"--val_fraction must be between 0 and 1 (exclusive), not {ns.val_fraction}")
    if not 0 <= ns.seed < 1 << 63:
        raise UsageError(f"--seed must be a whole number from 0 to 2**63 - 1, not {ns.seed}")
    if ns.shard_tokens is not None and ns.shard_tokens < 1:
        raise UsageError(f"--shard_tokens must be a positive number of tokens, not {ns.shard_tokens}")
    if ns.workers is not None and ns.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {ns.workers}")
    if not ns.text_key:
        raise UsageError("--text_key must name a field, not be empty")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder; choose another -o")
    if out.is_dir() and any(out.iterdir()):
        if not ns.force:
            raise RunError(f"{out} already exists; add --force to replace it, or choose another -o")
        check_replaceable(out, [] if ns.builtin else ns.inputs)
    return out


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
    others = sorted(p.name for p in out.iterdir() if p.name not in DATASET_FILES and not SHARD_NAME.fullmatch(p.name))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise RunError(f"{out} holds files that are not a dataset's ({shown}); --force replaces only a dataset "
                       "folder (train.bin, val.bin, meta.json): choose another -o")


def train_tokenizer(plan, reader, n_docs: int, progress: bool) -> None:
    """bpe:N, trained on the documents in a process of its own (slo.runner.prepare.bpe): all of them up to
    BPE_TRAIN_BYTES, else every k-th piece, so that its word counts stay bounded too."""
    from .bpe import train_apart

    stride = -(-reader.total_bytes // BPE_TRAIN_BYTES)
    if stride > 1:
        print(f"note: {plan.spec} is trained on every {stride}th piece of the input, about "
              f"{reader.total_bytes / stride / 1e9:.1f} of its {reader.total_bytes / 1e9:.1f} GB", file=sys.stderr)
    train_apart(plan, reader, stride, n_docs // stride, progress)
    if plan.vocab_size < plan.train_vocab:
        print(f"note: {plan.spec} learned only {plan.vocab_size:,} tokens: the input has no more pairs to merge",
              file=sys.stderr)


def find_alphabet(plan, reader, workers: int, progress: bool) -> None:
    """The characters of every document, and a newline (which follows a document that lacks one)."""
    import numpy as np

    from .encode import piece_alphabet, run_in_order
    from .inputs import progress_bar

    codes = np.array([ord("\n")], dtype=np.uint32)
    jobs = ((p,) for p in reader.pieces())
    with progress_bar(reader.total_bytes, "alphabet", progress) as bar, \
            contextlib.closing(run_in_order(piece_alphabet, jobs, (None, reader.text_key), workers)) as results:
        for (piece,), found in results:
            codes = np.union1d(codes, found)
            bar.update(piece.n_bytes)
    plan.itos = [chr(c) for c in codes.tolist()]
    plan.vocab_size = len(plan.itos)


def write_tokens(out: Path, plan, reader, n_docs: int, ns, workers: int, progress: bool) -> dict:
    """Encode every piece and write it as it comes; the meta of the dataset written."""
    from ..data.datasets import TokenWriter
    from .encode import encode_piece, run_in_order
    from .inputs import DocumentSplit, note_skipped, progress_bar

    split = DocumentSplit(n_docs, ns.val_fraction, ns.seed)
    docs = [0, 0]
    try:
        jobs = ((p, split.val_mask(p.first_doc, p.n_docs)) for p in reader.pieces())
        with TokenWriter(out, plan.vocab_size, ns.shard_tokens) as writer, \
                progress_bar(reader.total_bytes, plan.spec, progress) as bar, \
                contextlib.closing(run_in_order(encode_piece, jobs, (plan, ns.text_key), workers)) as results:
            for (piece, _), encoded in results:
                writer.write("train", encoded.train)
                writer.write("val", encoded.val)
                docs = [docs[0] + encoded.docs[0], docs[1] + encoded.docs[1]]
                bar.update(piece.n_bytes)
                bar.set_postfix_str(f"{sum(docs):,} docs, {sum(writer.tokens.values()):,} tokens", refresh=False)
            note_skipped(reader.skipped)
            check_splits(writer, split, ns.val_fraction, reader)
            meta = dataset_meta(plan, reader, split, writer, docs, ns)
            files = {"tokenizer.json": plan.tokenizer_json} if plan.tokenizer_json is not None else {}
            writer.finish(meta, files, replace=True)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        raise RunError(f"cannot write the dataset {out}: {describe_os_error(e)}; nothing was written "
                       "(free some space, or choose another -o)") from None
    return meta


def check_splits(writer, split, val_fraction: float, reader) -> None:
    """Both splits hold tokens; a split by tokens (too few documents) moves the last ones to val."""
    total = sum(writer.tokens.values())
    if not total:
        raise RunError(f"no text found in {len(reader.sources)} file(s): slo prepare reads UTF-8 text files, "
                       ".jsonl, .jsonl.gz and .parquet")
    if split.whole:
        for name, count in writer.tokens.items():
            if not count:
                raise RunError(f"the {name} split got no tokens: its documents are empty; give more text, or "
                               "another --val_fraction or --seed")
        return
    n_val = int(round(total * val_fraction))
    if n_val < 1 or n_val >= total:
        raise RunError(
            f"{total} tokens cannot be split with --val_fraction {val_fraction}: "
            "both splits need at least one token; give more text or another fraction"
        )
    writer.move_tail(n_val)


def dataset_meta(plan, reader, split, writer, docs: list[int], ns) -> dict:
    from ..data.datasets import counts_entropy

    meta = {**plan.meta, "tokenizer_spec": plan.spec, "source": [str(p) for p in ns.inputs],
            "files": reader.files_read, "documents": docs[0] + docs[1],
            "split": "documents" if split.whole else "tokens", "val_fraction": ns.val_fraction, "seed": ns.seed}
    if split.whole:
        meta["val_documents"] = docs[1]
    if any(s.kind != "text" for s in reader.sources):
        meta["text_key"] = ns.text_key
    if ns.shard_tokens:
        meta["shard_tokens"] = ns.shard_tokens
    meta["tokens"] = dict(writer.tokens)
    if writer.counts is not None:
        meta["unigram_entropy_nats"] = round(counts_entropy(writer.counts["train"], writer.counts["val"]), 4)
    return meta


def summary(out: Path, meta: dict) -> str:
    tokens = meta["tokens"]
    kind = KIND_NAMES.get(meta["tokenizer"]) or meta.get("tokenizer_spec") or meta["tokenizer"]
    baseline = meta.get("unigram_entropy_nats")
    return (
        f"wrote {out}: {tokens['train']:,} train and {tokens['val']:,} val tokens, "
        f"{kind} vocabulary of {meta['vocab_size']:,}"
        + (f"; unigram baseline {baseline:.3f} nats" if baseline is not None else "") + "\n"
        f"train on it with: DATA data_dir={out.parent} dataset={out.name}"
        f"  (or --data_dir={out.parent} --dataset={out.name})"
    )
