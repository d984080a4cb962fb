"""``slo sample OUT_DIR``: generate text from a checkpoint (slo's or nanoGPT's ckpt.pt).

The text is encoded and decoded with the dataset's tokenizer: a ``meta.json``
beside the checkpoint first, else the meta of the dataset named in the
checkpoint's config (nanoGPT's ``meta.pkl`` included), else GPT-2 BPE as
nanoGPT does (needs tiktoken).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import RunError
from ..schema import KEYS, MAX_SEED

PROGRESS_MIN_TOKENS = 100  # fewer new tokens than this come back too fast for a progress bar


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add = parser.add_argument
    add("out_dir", metavar="OUT_DIR", help="a run's out_dir holding ckpt.pt, or a .pt file")
    add("--prompt", metavar="TEXT", default="\n",
        help="text to continue; FILE:path reads it from a file (default: a newline)")
    add("--max_new_tokens", metavar="N", type=int, default=200, help="tokens to generate per sample (default: 200)")
    add("--temperature", metavar="T", type=float, default=0.8, help="0: greedy; below 1: less random (default: 0.8)")
    add("--top_k", metavar="K", type=int, default=200, help="sample among the k likeliest tokens; 0: all (default: 200)")
    add("--num_samples", metavar="N", type=int, default=1, help="samples to draw, as one batch (default: 1)")
    add("--seed", metavar="N", type=int, default=1337, help="random seed (default: 1337)")
    add("--device", metavar="DEVICE", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    add("--data_dir", metavar="DIR", default=None,
        help="where the run's dataset lives, for its meta.json / meta.pkl (default: the run's data_dir, "
             "looked up from here and from beside the out_dir)")
    add("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"), help="compute dtype (default: auto)")


def run(ns, rest) -> int:
    if rest:
        print(f"error: unknown arguments: {' '.join(rest)} (see slo sample --help)", file=sys.stderr)
        return 2
    try:
        texts = sample_from(ns)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for i, text in enumerate(texts):
        if i:
            print("-" * 40)
        print(text)
    return 0


def _check_options(ns) -> None:
    problems = []
    if ns.max_new_tokens < 0:
        problems.append(f"--max_new_tokens={ns.max_new_tokens} must be >= 0")
    if not 0 <= ns.temperature < float("inf"):
        problems.append(f"--temperature={ns.temperature} must be a number >= 0 (0 is greedy)")
    if ns.top_k < 0:
        problems.append(f"--top_k={ns.top_k} must be >= 0 (0 keeps every token)")
    if not 0 <= ns.seed <= MAX_SEED:
        problems.append(f"--seed={ns.seed} must be from 0 to {MAX_SEED}")
    if ns.num_samples < 1:
        problems.append(f"--num_samples={ns.num_samples} must be >= 1")
    if not re.fullmatch(KEYS["device"].pattern, ns.device):
        problems.append(f"--device={ns.device} must be {KEYS['device'].allowed.removeprefix('one of ')}")
    if problems:
        raise RunError("; ".join(problems))


def read_prompt(prompt: str) -> str:
    """The prompt text; ``FILE:path`` reads it from a file (nanoGPT's convention)."""
    if not prompt.startswith("FILE:"):
        try:
            prompt.encode("utf-8")  # bytes the terminal passed undecoded come as lone surrogates
        except UnicodeEncodeError as e:
            byte = prompt[e.start].encode("utf-8", "surrogateescape")
            raise RunError(f"the prompt is not UTF-8 text (byte 0x{byte.hex()} at character {e.start + 1}); "
                           "give it in UTF-8, or as FILE:path to a UTF-8 file") from None
        return prompt
    path = Path(prompt[5:])
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RunError(f"the prompt file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                       f"{e.start}); save it as UTF-8") from None
    except OSError as e:
        raise RunError(f"cannot read the prompt file {path}: {e.strerror or e}") from None


def sample_from(ns) -> list[str]:
    """Load the checkpoint named by ns.out_dir and return ns.num_samples texts."""
    _check_options(ns)
    prompt = read_prompt(ns.prompt)

    import torch

    from .checkpoint.store import load_checkpoint, model_from_checkpoint
    from .device import autocast, is_allocation_failure, pick_device, pick_dtype

    device = pick_device(ns.device)
    dtype = pick_dtype(ns.dtype, device)
    path = Path(ns.out_dir)
    ckpt = load_checkpoint(path)
    folder = path if path.is_dir() else path.parent
    tokenizer = tokenizer_for(ckpt, folder, getattr(ns, "data_dir", None))
    model = model_from_checkpoint(ckpt, device)
    del ckpt  # the weights now live in the model
    model.eval()
    torch.manual_seed(ns.seed)
    generator = torch.Generator(device=device).manual_seed(ns.seed)
    show_progress = sys.stderr.isatty() and ns.max_new_tokens >= PROGRESS_MIN_TOKENS
    try:
        with autocast(device, dtype):
            return generate_text(model, tokenizer, prompt, max_new_tokens=ns.max_new_tokens,
                                 temperature=ns.temperature, top_k=ns.top_k or None,
                                 num_samples=ns.num_samples, generator=generator, progress=show_progress)
    except (MemoryError, RuntimeError) as e:
        if not is_allocation_failure(e):
            raise
        raise RunError(f"out of memory drawing {ns.num_samples:,} samples of {ns.max_new_tokens:,} tokens on {device}: "
                       "lower --num_samples (they are drawn as one batch)") from None


def tokenizer_for(ckpt: dict, folder: Path, data_dir: str | None = None):
    """The tokenizer of the checkpoint's dataset: the meta saved in the checkpoint, else meta.json
    (or meta.pkl) in ``folder``, else that of the dataset named by the checkpoint's config (in
    data_dir, else the run's data_dir: from here, then beside the out_dir, as nanoGPT lays out
    ``out-NAME/`` and ``data/NAME/``), else GPT-2 BPE."""
    from .data.datasets import load_meta
    from .data.text_tokenizers import Tokenizer

    folder = folder.resolve()
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else None
    if meta:
        looked = [f"the checkpoint in {folder}"]
    else:
        looked = [str(folder)]
        meta = load_meta(folder.parent, folder.name)
    config = ckpt.get("config")
    if not meta and isinstance(config, dict) and isinstance(config.get("dataset"), str):
        given = data_dir or (config.get("data_dir") if isinstance(config.get("data_dir"), str) else "data")
        places = [Path(given).expanduser()]
        if data_dir is None and not places[0].is_absolute():
            places.append(folder.parent / places[0])
        for place in places:
            looked.append(str(place / config["dataset"]))
            meta = load_meta(place, config["dataset"])
            if meta:
                break
    tokenizer = Tokenizer.from_meta(meta)
    if not tokenizer.available:  # the meta found names a tokenizer this machine lacks, or no meta was found
        if meta:
            raise RunError(f"cannot encode the prompt: the meta of {looked[-1]} says tokenizer {tokenizer.name!r}, "
                           f"and {tokenizer.why}")
        raise RunError(f"cannot encode the prompt: no meta.json or meta.pkl in {' and '.join(looked)}, and "
                       f"{tokenizer.why}. Copy the dataset's meta.json into {folder} if the data lives elsewhere")
    model_args = ckpt.get("model_args")
    model_vocab = model_args.get("vocab_size") if isinstance(model_args, dict) else None
    if isinstance(model_vocab, int) and tokenizer.vocab_size and tokenizer.vocab_size > model_vocab:
        raise RunError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {model_vocab}: "
                       f"the meta found ({' or '.join(looked)}) belongs to another dataset; copy the right "
                       f"meta.json into {folder}")
    return tokenizer


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = 200, num_samples: int = 1, generator=None,
                  progress: bool = False) -> list[str]:
    """num_samples continuations of prompt, drawn as one batch; each text starts with the prompt."""
    import torch
    from tqdm import tqdm

    ids = tokenizer.encode(prompt)
    if not ids:
        raise RunError("the prompt is empty: give --prompt some text (the default is a newline)")
    device = next(model.parameters()).device
    idx = torch.tensor(ids, dtype=torch.long, device=device).repeat(num_samples, 1)  # (num_samples, T)
    steps = model.generate_steps(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)
    new = [token for token in tqdm(steps, total=max_new_tokens, disable=not progress, unit="tok",
                                   desc="sampling", leave=False, file=sys.stderr)]
    out = torch.cat([idx, *new], dim=1).tolist()
    return [tokenizer.decode(row) for row in out]
