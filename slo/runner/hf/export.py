"""``slo export RUN -o FOLDER``: a checkpoint as a Hugging Face model folder (``--format gguf``: as one
GGUF file for llama.cpp and ollama, see gguf_export.py).

The folder holds ``config.json``, ``model.safetensors`` (float32) and
``generation_config.json``, so that ``AutoModelForCausalLM.from_pretrained``
loads it and computes slo's logits; nanoGPT-shaped models become GPT-2,
RoPE + RMSNorm + SwiGLU ones Llama (see hf.py). The tokenizer comes along as
``tokenizer.json`` and ``tokenizer_config.json`` when the checkpoint's meta has
a Hugging Face form: a ``tokenizer.json`` carried in the meta, byte- and
character-level vocabularies (written with ``tokenizers``), and GPT-2 BPE when
its ``tokenizer.json`` is in the local Hugging Face cache (never downloaded).

Byte- and character-level datasets have no end-of-text id (slo prepare puts a
newline after each document), but lm-evaluation-harness and ``generate`` need
one, so the export names one (see ``end_of_text``): for bytes, id 255, spelled
``<|endoftext|>``: 0xFF is never a byte of UTF-8, so no text encodes to it; for
characters, the first id past the alphabet when the model has one (its
vocab_size padded), else the newline, with a note of what that costs.

The folder is written beside FOLDER under a temporary name and renamed into
place; an existing FOLDER is replaced only with ``--force``, and only when it
looks like an export (a config.json and weights).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from ... import atomic
from ...errors import RunError
from ...schema import PRETRAINED_REPOS


def add_arguments(parser, command: str) -> None:
    add = parser.add_argument
    add("run", metavar="RUN", help="a run's out_dir holding ckpt.pt, or a .pt file")
    add("-o", "--out", metavar="OUT", help="the Hugging Face model folder (--format hf) or the .gguf file "
        "(--format gguf) to write")
    add("--format", choices=FORMATS, default="hf", help="hf: a Hugging Face model folder (the default); gguf: one "
        "GGUF file for llama.cpp and ollama")
    add("--dtype", choices=GGUF_DTYPES, default="float32", help="the GGUF file's weights (norms, biases and "
        "positions stay float32); a Hugging Face folder is float32")
    add("--force", action="store_true", help="replace OUT if it holds an earlier export")


def run(ns, rest) -> int:
    try:
        lines, notes = export(ns)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print("\n".join(lines))
    return 0


FORMATS = ("hf", "gguf")
GGUF_DTYPES = ("float32", "float16")  # gguf_export.DTYPES, named here so that --help needs no numpy


def export(ns) -> tuple[list[str], list[str]]:
    """Write the export ns asks for; (the lines that say what was written, notes)."""
    gguf = getattr(ns, "format", "hf") == "gguf"
    dtype = getattr(ns, "dtype", "float32")
    if not ns.out:
        raise RunError(f"say where the model goes: -o {'FILE.gguf' if gguf else 'FOLDER'}")
    if dtype != "float32" and not gguf:
        raise RunError(f"--dtype {dtype} is for --format gguf; a Hugging Face folder is written in float32")
    out, source = Path(ns.out), Path(ns.run)
    if gguf:
        from .gguf import import_gguf

        import_gguf()  # before the work: say how to install it
        check_file_target(out, ns.force, source)
    else:
        check_target(out, ns.force, source)

    from ..checkpoint.store import clean_state_dict, load_checkpoint
    from .mapping import ARCHITECTURES, NAMES, hf_from_slo, import_safetensors
    from ..model.gpt import ModelArgs

    if not gguf:
        import_safetensors()  # before the work: say how to install it
    ckpt = load_checkpoint(source)
    if "model_args" not in ckpt:
        raise RunError(f"{source} has no model_args, so its model cannot be rebuilt; use a ckpt.pt written by "
                       "slo or nanoGPT")
    args = ModelArgs.from_dict(ckpt["model_args"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in clean_state_dict(ckpt["model"]).items()}
    config, hf_state = hf_from_slo(args, state)
    kind = config["model_type"]
    notes = [] if args.bias or kind != "gpt2" else ["the model has no biases and GPT-2 always has them: "
                                                    "they are written as zeros, which compute the same"]
    files, eot, why, note = tokenizer_files(ckpt.get("meta"), args)
    notes += [note] if note else []
    if gguf:
        if kind == "gpt2" and getattr(args, "activation", "gelu") == "gelu":
            notes.append("llama.cpp's GPT-2 computes GELU's tanh approximation and this model exact GELU: its "
                         "logits there differ a little from slo's")
        return export_gguf(out, source, kind, args, hf_state, files, eot, why, dtype), notes
    if why:
        notes.append(f"the tokenizer was not written: {why}")
    for key in ("bos_token_id", "eos_token_id"):
        config[key] = eot
    generation = {"_from_model_config": True, "bos_token_id": eot, "eos_token_id": eot}
    files = {"config.json": _json(config), "generation_config.json": _json(generation), **files}
    write_folder(out, files, hf_state)
    n = sum(t.numel() for t in hf_state.values())
    names = ", ".join(sorted([*files, "model.safetensors"]))
    return [f"wrote {out}: {NAMES[kind]} ({ARCHITECTURES[kind]}), {args.n_layer} layers, {args.n_embd} wide, "
            f"{args.vocab_size:,} tokens, {n:,} parameters: {names}",
            f"load it with: transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})"], notes


def export_gguf(out: Path, source: Path, kind: str, args, hf_state: dict, files: dict, eot: int | None,
                why: str | None, dtype: str) -> list[str]:
    """The GGUF file of a model hf.py has mapped; the lines that say what was written."""
    from .gguf import write_gguf
    from .mapping import NAMES

    if why:
        raise RunError(f"a GGUF file holds its tokenizer, and {why}")
    tokenizer = json.loads(files["tokenizer.json"])
    try:
        size = write_gguf(out, kind, args, hf_state, tokenizer, eot, dtype, name=source.resolve().name)
    except RunError as e:
        raise RunError(f"cannot write {out} as GGUF: {e}") from None
    n = sum(t.numel() for t in hf_state.values())
    return [f"wrote {out}: {NAMES[kind]} (GGUF {kind}), {args.n_layer} layers, {args.n_embd} wide, "
            f"{args.vocab_size:,} tokens, {n:,} parameters, {dtype}, {size:,} bytes",
            f"run it with: llama-cli -m {out}, or FROM {out} in an ollama Modelfile"]


def check_file_target(out: Path, force: bool, source: Path) -> None:
    """RunError unless out may be written as a file: absent, or, with force, an earlier GGUF file that is
    not the checkpoint being exported."""
    if out.is_dir():
        raise RunError(f"{out} is a folder; a GGUF export is one file: choose -o FILE.gguf")
    if not out.exists():
        return
    if not force:
        raise RunError(f"{out} already exists; add --force to replace it, or choose another -o")
    if out.resolve() == source.resolve():
        raise RunError(f"-o {out} is the checkpoint being exported; choose another -o")
    try:
        with open(out, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise RunError(f"cannot read {out}: {e.strerror or e}") from None
    if magic != b"GGUF":
        raise RunError(f"{out} is not a GGUF file; --force replaces only an earlier export: choose another -o")


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def check_target(out: Path, force: bool, source: Path) -> None:
    """RunError unless out may be written: absent or empty, or, with force, an earlier export that is
    neither the current folder (nor above it) nor holds the checkpoint being exported."""
    from .mapping import WEIGHT_FILES

    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder; choose another -o")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise RunError(f"{out} already exists; add --force to replace it, or choose another -o")
    real, cwd = out.resolve(), Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise RunError(f"-o {out} is the current folder or holds it; --force replaces only an export folder")
    held = source.resolve()
    if held == real or real in held.parents:
        raise RunError(f"{source} is inside -o {out}, which --force would replace; export to another folder")
    if not (out / "config.json").is_file() or not any((out / name).is_file() for name in WEIGHT_FILES):
        raise RunError(f"{out} does not look like an exported model (no config.json with model.safetensors or "
                       "pytorch_model.bin); --force replaces only an export folder: choose another -o")


def write_folder(out: Path, files: dict[str, bytes], hf_state: dict) -> None:
    """files and hf_state (as model.safetensors) into a temporary folder beside out, renamed into place."""
    from .mapping import import_safetensors

    safetensors = import_safetensors()
    parent = out.parent
    try:
        tmp = atomic.folder_beside(out)
    except OSError as e:
        raise RunError(f"cannot write into {parent}: {e.strerror or e}") from None
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                atomic.synced(f)
        safetensors.torch.save_file(hf_state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "model.safetensors").chmod(0o644)
        atomic.fsync_file(tmp / "model.safetensors")
        atomic.replace_folder(tmp, out)
    except (OSError, safetensors.SafetensorError) as e:
        raise RunError(f"could not write {out}: {getattr(e, 'strerror', None) or e}; nothing was replaced") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the tokenizer


class TokenizerExport(NamedTuple):
    files: dict[str, bytes]  # tokenizer.json and tokenizer_config.json, or none
    eot: int | None  # the end-of-text id, or None
    why: str | None  # why no files were written, or None
    note: str | None = None  # what the user should know of the end of text chosen, or None


def tokenizer_files(meta, args) -> TokenizerExport:
    """The tokenizer files (with the end-of-text id) for the tokenizer a checkpoint's meta names
    (nanoGPT's checkpoints, which have none, use GPT-2 BPE)."""
    from ..data.text_tokenizers import GPT2_VOCAB_SIZE, normalize_meta

    if not meta:
        if args.vocab_size < GPT2_VOCAB_SIZE:
            return TokenizerExport({}, None, "the checkpoint holds no tokenizer meta (was it trained by an older slo?)")
        meta = {"tokenizer": "gpt2"}
    try:
        meta = normalize_meta(meta, "the checkpoint's meta")
    except RunError as e:
        return TokenizerExport({}, None, str(e))
    kind, eot = meta.get("tokenizer"), meta.get("eot_id")
    eot = eot if isinstance(eot, int) and not isinstance(eot, bool) and 0 <= eot < args.vocab_size else None
    text, note = meta.get("tokenizer_json"), None
    try:
        if isinstance(text, dict):
            text = json.dumps(text, ensure_ascii=False)
        elif kind in ("byte", "char") and text is None:
            eot, note = end_of_text(meta, args.vocab_size)
            text = _byte_tokenizer(eot) if kind == "byte" else _char_tokenizer(meta["itos"], eot)
        elif (kind == "gpt2" or kind is None and args.vocab_size >= GPT2_VOCAB_SIZE) and text is None:
            text, eot = _cached_gpt2_tokenizer(), GPT2_VOCAB_SIZE - 1
            if text is None:
                return TokenizerExport({}, eot, "GPT-2 BPE's tokenizer.json is not in the Hugging Face cache and slo "
                                       "does not download; use AutoTokenizer.from_pretrained('openai-community/gpt2')"
                                       " with it")
    except ImportError:
        return TokenizerExport({}, eot, f"writing the {kind} tokenizer needs the tokenizers package: "
                                        "pip install tokenizers")
    if not isinstance(text, str):
        return TokenizerExport({}, eot, f"the checkpoint's tokenizer ({kind}) has no Hugging Face form slo can write")
    try:
        data = json.loads(text)
    except ValueError:
        return TokenizerExport({}, eot, "the tokenizer.json carried in the checkpoint's meta is not valid JSON")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": args.block_size}
    token = _token_text(data, eot)
    if token is not None:
        config.update(bos_token=token, eos_token=token)
    if kind in ("byte", "char"):  # "<|endoftext|>" in a text is its characters, as slo's own tokenizers read it
        config["split_special_tokens"] = True
    return TokenizerExport({"tokenizer.json": text.encode("utf-8"), "tokenizer_config.json": _json(config)},
                           eot, None, note)


EOT_TEXT = "<|endoftext|>"  # GPT-2's end of text, and bpe:N's
BYTE_EOT = 0xFF  # never a byte of UTF-8 text


def end_of_text(meta: dict, vocab_size: int) -> tuple[int | None, str | None]:
    """(the end-of-text id, a note on it or None) of a byte- or character-level meta, which have none."""
    if meta["tokenizer"] == "byte":
        return BYTE_EOT, None
    itos = meta["itos"]
    if vocab_size > len(itos):
        return len(itos), None
    if "\n" not in itos:
        return None, (f"the tokenizer has no end-of-text token: its {len(itos)} characters fill the model's "
                      f"vocab_size and have no newline; a model trained with vocab_size={len(itos) + 1} or more "
                      f"gets one ({EOT_TEXT}), which lm-evaluation-harness needs")
    newline = itos.index("\n")
    return newline, (f"the end-of-text token is the newline (id {newline}), the separator slo prepare puts after "
                     f"each document, as the {len(itos)} characters fill the model's vocab_size: generate() stops "
                     "at the first newline and decode(skip_special_tokens=True) drops newlines; a model trained "
                     f"with vocab_size={len(itos) + 1} or more gets an {EOT_TEXT} of its own")


def _token_text(data, token_id: int | None) -> str | None:
    """The text of token_id in a tokenizer.json's added tokens or vocabulary."""
    if token_id is None or not isinstance(data, dict):
        return None
    for token in data.get("added_tokens") or ():
        if isinstance(token, dict) and token.get("id") == token_id and isinstance(token.get("content"), str):
            return token["content"]
    vocab = data.get("model", {}).get("vocab") if isinstance(data.get("model"), dict) else None
    if isinstance(vocab, dict):
        return next((text for text, i in vocab.items() if i == token_id), None)
    return None


def _byte_tokenizer(eot: int | None = BYTE_EOT) -> str:
    """slo's byte-level vocabulary (id = UTF-8 byte) as a tokenizer.json, byte eot spelled <|endoftext|>."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from ..data.bytelevel import bytes_to_unicode

    spelled = bytes_to_unicode()
    vocab = {spelled[b]: b for b in range(256) if b != eot}
    if eot is not None and eot < 256:
        vocab[EOT_TEXT] = eot
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    if eot is not None:
        tokenizer.add_special_tokens([AddedToken(EOT_TEXT, special=True, normalized=False)])
    return tokenizer.to_str()


def _char_tokenizer(itos: list[str], eot: int | None = None) -> str:
    """A character-level vocabulary (nanoGPT's shakespeare_char) as a tokenizer.json; an eot past the
    alphabet is <|endoftext|>, one within it that character, made special."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(itos)}, merges=[]))
    tokenizer.decoder = decoders.Fuse()  # the characters side by side, not joined by spaces
    if eot is not None:
        text = itos[eot] if eot < len(itos) else EOT_TEXT
        tokenizer.add_special_tokens([AddedToken(text, special=True, normalized=False)])
    return tokenizer.to_str()


def _cached_gpt2_tokenizer() -> str | None:
    """GPT-2's tokenizer.json from the local Hugging Face cache; None when it is not there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo in PRETRAINED_REPOS["gpt2"]:  # where the Hugging Face cache keeps GPT-2's tokenizer
        path = try_to_load_from_cache(repo, "tokenizer.json")
        if isinstance(path, str):
            try:
                return Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return None
