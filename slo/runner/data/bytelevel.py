"""GPT-2's byte-level spelling: a printable stand-in character for each byte, as byte-level BPE
vocabularies (Hugging Face's ByteLevel, llama.cpp's gpt2) write their tokens."""

from __future__ import annotations

import functools


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """byte -> its stand-in: the printable Latin-1 characters stand for themselves, the others for
    the characters from U+0100 on, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}
