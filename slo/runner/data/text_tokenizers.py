"""Text to token ids and back, and the meta that names a dataset's tokenizer.

A dataset's meta names its tokenizer: ``{"tokenizer": "byte", "vocab_size": 256}``,
``{"tokenizer": "char", "vocab_size": N, "itos": [...]}``, or GPT-2 BPE (through
tiktoken) when it names none, as nanoGPT's openwebtext does. ``normalize_meta``
checks a meta and turns nanoGPT's ``meta.pkl`` form into this one.
"""

from __future__ import annotations

import json

import numpy as np

from ...errors import RunError, first_line
from ...outdir.files import shown

GPT2_VOCAB_SIZE = 50257
TOKEN_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
MAX_VOCAB = 1 << 32  # the ids a uint32 token file holds


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
        if kind == "hf":
            return HfTokenizer(meta["tokenizer_json"], meta.get("vocab_size"))
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


class HfTokenizer(UnavailableTokenizer):
    """A Hugging Face ``tokenizer.json`` (a pretrained model's, or one trained for a dataset), run by
    the ``tokenizers`` library; its text travels in the meta, so a checkpoint decodes without the file."""

    def __init__(self, tokenizer_json: str, vocab_size: int | None = None):
        super().__init__("hf", vocab_size, "a Hugging Face tokenizer needs the tokenizers library: "
                                           "pip install 'slo[hf]'")
        self.tokenizer_json = tokenizer_json
        try:
            from tokenizers import Tokenizer as Backend
        except ImportError:
            self.backend = None
        else:
            try:
                self.backend = Backend.from_str(tokenizer_json)
            except Exception as e:  # the library's own error type for a damaged file
                raise RunError(f"the tokenizer.json of this model cannot be read ({first_line(e)})") from None
            self.vocab_size = vocab_size or self.backend.get_vocab_size()
        self.available = self.backend is not None

    @property
    def meta(self) -> dict:
        return {"tokenizer": "hf", "vocab_size": self.vocab_size, "tokenizer_json": self.tokenizer_json}

    def encode(self, text: str) -> list[int]:
        if self.backend is None:
            self._refuse()
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        if self.backend is None:
            self._refuse()
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)


class Gpt2Tokenizer(UnavailableTokenizer):
    """GPT-2 BPE through tiktoken, when it is installed."""

    def __init__(self, vocab_size: int):
        super().__init__("gpt2", vocab_size, "GPT-2 BPE needs tiktoken: pip install tiktoken")
        try:
            import tiktoken
        except ImportError:
            self.encoding = None
        else:
            try:
                self.encoding = tiktoken.get_encoding("gpt2")
            except Exception as e:  # tiktoken fetches the BPE files once: network errors of every kind
                self.encoding = None
                self.why = (f"tiktoken could not load GPT-2's BPE ({first_line(e)[:120]}); it downloads it once: "
                            "run once with a network, or set TIKTOKEN_CACHE_DIR to a folder that holds it")
        self.available = self.encoding is not None

    def encode(self, text: str) -> list[int]:
        if self.encoding is None:
            self._refuse()
        return self.encoding.encode(text, allowed_special={"<|endoftext|>"})

    def decode(self, ids) -> str:
        if self.encoding is None:
            self._refuse()
        return self.encoding.decode([int(i) for i in ids])


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
    if vocab is not None and (not isinstance(vocab, int) or isinstance(vocab, bool) or not 1 <= vocab <= MAX_VOCAB):
        raise RunError(f"{source}: vocab_size must be an integer from 1 to {MAX_VOCAB:,}, not {shown(vocab)}")
    kind = meta.get("tokenizer")
    if kind is not None and not isinstance(kind, str):
        raise RunError(f"{source}: tokenizer must be a name such as \"byte\", \"char\" or \"gpt2\", not {shown(kind)}")
    if kind == "hf" and not isinstance(meta.get("tokenizer_json"), str):
        raise RunError(f"{source}: a Hugging Face tokenizer needs its tokenizer.json text (tokenizer_json)")
    if meta.get("tokenizer") == "char" and "itos" not in meta:
        raise RunError(f"{source}: a char-level tokenizer needs its itos list; prepare the dataset again")
    dtype = meta.get("dtype")
    if dtype is not None and (not isinstance(dtype, str) or dtype not in TOKEN_DTYPES):
        raise RunError(f"{source}: dtype must be one of {', '.join(TOKEN_DTYPES)}, not {shown(dtype)}")
    try:  # a run copies the meta into its out_dir and checkpoint as JSON
        json.dumps(meta)
    except (TypeError, ValueError, RecursionError) as e:
        raise RunError(f"{source} holds a value that is not plain data ({(first_line(e) or type(e).__name__)[:100]}); prepare the "
                       "dataset again") from None
    return meta
