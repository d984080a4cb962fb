"""Token ids for ``slo prepare``: the tokenizer ``--tokenizer`` names, and the workers that encode on every core.

The main process reads the inputs in pieces (slo.runner.prepare.inputs) and hands
them, a bounded number at a time, to a pool of worker processes; each turns a
piece into its train and val token ids, which come back in order and are
written as they come (``run_in_order``). Small inputs are encoded in the main
process, where starting workers would cost more than they save. Every
document is followed by the end-of-text id where the tokenizer has one, else
by a newline where it lacks one (as byte- and character-level datasets join
their files). No torch here, so ``slo prepare`` stays light.
"""

from __future__ import annotations

import json
import os
import signal
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ...errors import RunError, UsageError, first_line
from .inputs import Piece, piece_texts

EOT_TEXT = "<|endoftext|>"  # what bpe:N adds as its last id, GPT-2's end of text
EOT_NAMES = (EOT_TEXT, "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")  # looked for in a given tokenizer
BPE_VOCAB = (257, 1 << 20)  # bpe:N: the 256 bytes and the end of text at the least
HF_BATCH_CHARS = 256 << 10  # characters encoded by one call of tokenizers (see hf_batches)
HF_PIECE_BYTES = 1 << 20  # the largest piece for tokenizers, which holds every token of a call at once
WINDOW_PER_WORKER = 2  # pieces in flight per worker: enough to keep each busy, few enough to bound memory
SIGNAL_TURN_S = 0.2  # the longest the main thread waits on a worker before it looks at the signals again
TOKENIZER_NAMES = "bytes, char, gpt2, bpe:N, or the path of a tokenizer.json or a Hugging Face model folder"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (containers).
    The trainer's count too (slo.runner.device)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


# ---------------------------------------------------------------- the tokenizer


@dataclass
class TokenizerPlan:
    """The tokenizer of a dataset being made, and what its meta says of it."""

    kind: str  # the meta's tokenizer: byte, char, gpt2 or hf
    spec: str  # what --tokenizer said
    vocab_size: int | None = None  # None until trained (bpe:N) or seen (char)
    eot_id: int | None = None
    encoding: object = None  # gpt2: tiktoken's Encoding
    tokenizer_json: str | None = None  # hf: the tokenizer.json's text, trained or given
    itos: list[str] | None = None  # char: the alphabet
    train_vocab: int | None = None  # bpe:N: N, until trained

    @property
    def meta(self) -> dict:
        meta = {"tokenizer": self.kind, "vocab_size": self.vocab_size}
        if self.itos is not None:
            meta["itos"] = self.itos
        if self.tokenizer_json is not None:
            meta["tokenizer_json"] = self.tokenizer_json
        if self.eot_id is not None:
            meta["eot_id"] = self.eot_id
        return meta


def resolve_tokenizer(spec: str) -> TokenizerPlan:
    """The tokenizer --tokenizer names (a name, else a path); RunError when there is none such here."""
    if spec in ("bytes", "byte"):
        return TokenizerPlan("byte", spec, 256)
    if spec == "char":
        return TokenizerPlan("char", spec)
    if spec == "gpt2":
        encoding = gpt2_encoding()
        return TokenizerPlan("gpt2", spec, encoding.n_vocab, encoding.eot_token, encoding=encoding)
    if spec.startswith("bpe:"):
        size = spec[4:].replace("_", "")
        if not size.isdigit() or not BPE_VOCAB[0] <= int(size) <= BPE_VOCAB[1]:
            raise UsageError(f"--tokenizer {spec}: N must be a whole number of tokens from {BPE_VOCAB[0]} "
                           f"(the 256 bytes and the end of text) to {BPE_VOCAB[1]:,}, such as bpe:8192")
        hf_library(spec)
        return TokenizerPlan("hf", spec, train_vocab=int(size))
    path = Path(spec)
    if path.exists():
        return given_tokenizer(path)
    raise UsageError(f"unknown tokenizer {spec!r} (no such file or folder either): --tokenizer takes {TOKENIZER_NAMES}")


def gpt2_encoding():
    """tiktoken's GPT-2 encoding (what slo.runner.data.text_tokenizers.Gpt2Tokenizer loads), or RunError saying why not."""
    from ..data.text_tokenizers import GPT2_VOCAB_SIZE, Gpt2Tokenizer

    gpt2 = Gpt2Tokenizer(GPT2_VOCAB_SIZE)
    if gpt2.encoding is None:
        raise RunError(f"--tokenizer gpt2: {gpt2.why}")
    return gpt2.encoding


def hf_library(what: str):
    try:
        import tokenizers
    except ImportError:
        raise RunError(f"--tokenizer {what} needs the tokenizers library: pip install 'slo[hf]'") from None
    return tokenizers


def hf_backend(text: str, where: str):
    """A tokenizers Tokenizer from a tokenizer.json's text; RunError naming ``where`` when it is not one."""
    library = hf_library(where)
    try:
        return library.Tokenizer.from_str(text)
    except Exception as e:  # the library's own error type for a damaged file
        raise RunError(f"{where} is not a tokenizer.json that the tokenizers library reads "
                       f"({first_line(e)[:200] or type(e).__name__})") from None


def given_tokenizer(path: Path) -> TokenizerPlan:
    """A tokenizer.json, or the one in a Hugging Face model folder, used as it is."""
    folder = path if path.is_dir() else None
    file = path / "tokenizer.json" if folder else path
    if not file.is_file():
        raise RunError(f"{path} holds no tokenizer.json: --tokenizer takes {TOKENIZER_NAMES} "
                       "(a folder with only vocab.json and merges.txt: save it once with transformers' "
                       "AutoTokenizer, which writes tokenizer.json)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"cannot read {file}: {getattr(e, 'strerror', None) or first_line(e)}") from None
    backend = hf_backend(text, str(file))
    vocab = max(backend.get_vocab(with_added_tokens=True).values(), default=-1) + 1
    if vocab < 1:
        raise RunError(f"{file} defines no tokens; it is not a tokenizer to encode with")
    return TokenizerPlan("hf", str(path), vocab, find_eot(backend, folder, vocab), tokenizer_json=text)


def find_eot(backend, folder: Path | None, vocab: int) -> int | None:
    """The end-of-text id: the model folder's eos_token_id or eos_token, else a token of a usual name."""
    names = list(EOT_NAMES)
    if folder is not None:
        eos = _json_field(folder / "config.json", "eos_token_id")
        eos = eos[0] if isinstance(eos, list) and eos else eos
        if isinstance(eos, int) and not isinstance(eos, bool) and 0 <= eos < vocab:
            return eos
        token = _json_field(folder / "tokenizer_config.json", "eos_token")
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            names.insert(0, token)
    for name in names:
        found = backend.token_to_id(name)
        if found is not None:
            return found
    return None


def _json_field(path: Path, key: str):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data.get(key) if isinstance(data, dict) else None


# ---------------------------------------------------------------- a worker's side


class DocEncoder:
    """Documents to token ids with the plan's tokenizer, each followed by its separator."""

    def __init__(self, plan: TokenizerPlan):
        self.kind, self.eot = plan.kind, plan.eot_id
        self.dtype = np.dtype("<u2") if plan.vocab_size <= 65536 else np.dtype("<u4")
        if self.kind == "gpt2":
            self.encoding = plan.encoding
        elif self.kind == "hf":
            self.backend = hf_backend(plan.tokenizer_json, f"the tokenizer of --tokenizer {plan.spec}")
            if hasattr(self.backend, "encode_special_tokens"):
                self.backend.encode_special_tokens = True  # "<|endoftext|>" in a document is text, as in gpt2
        elif self.kind == "char":
            self.alphabet = np.array([ord(c) for c in plan.itos], dtype=np.uint32)
        self.newline = self.ids(["\n"])[0].astype(self.dtype) if self.eot is None else None

    def ids(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's token ids, with no separator."""
        if self.kind == "byte":
            return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]
        if self.kind == "gpt2":  # encode_ordinary's ids, as nanoGPT's prepare.py writes, without a list
            return [self.encoding.encode_to_numpy(t, allowed_special=set(), disallowed_special=()) for t in texts]
        if self.kind == "hf":
            return [ids for batch in hf_batches(texts) for ids in self._hf_ids(batch)]
        out = []
        for text in texts:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
            ids = np.searchsorted(self.alphabet, codes)
            if len(ids) and (ids.max() >= len(self.alphabet) or (self.alphabet[ids] != codes).any()):
                raise RunError("an input changed while slo prepare read it (a character it had not seen before); "
                               "prepare it again once nothing writes to it")
            out.append(ids)
        return out

    def _hf_ids(self, texts: list[str]) -> list[np.ndarray]:
        found = self.backend.encode_batch_fast(texts, add_special_tokens=False)
        return [np.array(e.ids, dtype=np.uint32) for e in found]

    def encode(self, texts: list[str], closed: bool = True) -> list[np.ndarray | None]:
        """Each document's ids and separator (none when ``closed`` is False: it goes on); None for no text."""
        out = []
        for text, ids in zip(texts, self.ids(texts)):
            if not text:
                out.append(None)
                continue
            ids = ids.astype(self.dtype, copy=False)
            if closed and self.eot is not None:
                ids = np.append(ids, np.array(self.eot, dtype=self.dtype))
            elif closed and not text.endswith("\n"):
                ids = np.concatenate([ids, self.newline])
            out.append(ids)
        return out


def hf_batches(texts: list[str]) -> Iterator[list[str]]:
    """texts in runs of about HF_BATCH_CHARS: tokenizers keeps some 100 bytes of each token it returns."""
    batch, size = [], 0
    for text in texts:
        if batch and size + len(text) > HF_BATCH_CHARS:
            yield batch
            batch, size = [], 0
        batch.append(text)
        size += len(text)
    if batch:
        yield batch


@dataclass
class Encoded:
    """A piece's token ids by split, and how many documents ended in it on each side."""

    train: np.ndarray
    val: np.ndarray
    docs: tuple[int, int]


_WORKER: dict = {}  # this process's encoder: a pool worker's, or the main process's while it encodes itself


def start_worker(plan: TokenizerPlan | None, text_key: str, in_pool: bool = False) -> None:
    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which stops the pool
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the main process's handler, forked with it
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread a worker: the workers are the parallelism
    _WORKER.update(text_key=text_key, encoder=DocEncoder(plan) if plan is not None and plan.vocab_size else None)


def encode_piece(piece: Piece, val_mask: np.ndarray) -> Encoded:
    encoder = _WORKER["encoder"]
    sides: tuple[list, list] = ([], [])
    for ids, is_val in zip(encoder.encode(piece_texts(piece, _WORKER["text_key"]), not piece.open_end), val_mask):
        if ids is not None:
            sides[bool(is_val)].append(ids)
    docs = (0, 0) if piece.open_end else (len(sides[0]), len(sides[1]))
    empty = np.zeros(0, dtype=encoder.dtype)
    return Encoded(*(np.concatenate(s) if s else empty for s in sides), docs)


def piece_alphabet(piece: Piece) -> np.ndarray:
    """The code points of a piece's text, sorted and each once."""
    text = "".join(piece_texts(piece, _WORKER["text_key"]))
    return np.unique(np.frombuffer(text.encode("utf-32-le"), dtype="<u4"))


# ---------------------------------------------------------------- the pool


def run_in_order(func: Callable, jobs: Iterable[tuple], setup: tuple, workers: int) -> Iterator[tuple]:
    """(job, func(*job)) for each job, in order: in this process when ``workers`` is 1, else in a pool of that
    many processes (each set up by ``start_worker(*setup)``) with a bounded number of jobs in flight."""
    if workers <= 1:
        start_worker(*setup)
        try:
            for job in jobs:
                yield job, func(*job)
        finally:
            _WORKER.clear()
        return
    pool, finished = _start_pool(workers, setup), False
    try:
        pending: deque = deque()
        for job in jobs:
            pending.append((job, pool.submit(func, *job)))
            if len(pending) >= workers * WINDOW_PER_WORKER:
                job, future = pending.popleft()
                yield job, _result(future)
        while pending:
            job, future = pending.popleft()
            yield job, _result(future)
        finished = True
    finally:
        _stop_pool(pool, finished)


def _start_pool(workers: int, setup: tuple):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # while forking: else tokenizers warns that it is forked
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(), initializer=start_worker,
                                   initargs=(*setup, True))
        pool.submit(int).result()  # starts the workers now (all of them, when they are forked)
    except Exception as e:
        raise RunError(f"the encoding workers could not start ({first_line(e) or type(e).__name__}); "
                       "try --workers 1") from None
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
    return pool


def _result(future):
    """The future's result, waited for in short turns: a stop signal that the kernel gives another thread
    (the pool's own) is acted on only when the main thread is back in the interpreter, which a wait with no
    end never is."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        while True:
            try:
                return future.result(timeout=SIGNAL_TURN_S)
            except TimeoutError:
                continue
    except BrokenProcessPool:
        raise RunError("an encoding worker died (killed, or out of memory?); try fewer --workers") from None


def _stop_pool(pool, finished: bool) -> None:
    if not finished:  # an error or an interruption: the work in flight is not wanted
        terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
        if terminate is not None:
            terminate()
        else:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
