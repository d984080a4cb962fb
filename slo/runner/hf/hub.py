"""The Hugging Face hub: the local folder of a pretrained model, from the cache first, then the network.

A model is found as Hugging Face users keep them: the local cache first
(``HF_HOME``, ``HF_HUB_OFFLINE``), then the network; ``hf:PATH`` names a
local model folder.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import RunError, first_line
from ...schema import HF_PREFIX, PRETRAINED, PRETRAINED_REPOS

_PATTERNS = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]


def model_folder(init_from: str) -> tuple[Path, str]:
    """(the local folder holding the model init_from names, its name for messages)."""
    if init_from in PRETRAINED:
        repos = PRETRAINED_REPOS[init_from]
    else:
        repo = init_from[len(HF_PREFIX):]
        repos = (repo,)
        folder = Path(repo).expanduser()
        if folder.is_dir():
            return folder, str(folder)
        if repo.startswith((".", "/", "~")) or folder.exists() or repo.count("/") > 1:
            raise RunError(f"init_from={init_from}: {folder} is not a folder; give a Hugging Face model folder "
                           "(config.json and weights) or a hub repo id such as hf:openai-community/gpt2")
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:
        raise RunError(f"init_from={init_from} needs huggingface_hub and transformers: pip install 'slo[hf]'") from None
    for repo in repos:  # the cache under each name (nanoGPT's from_pretrained('gpt2') keeps models--gpt2)
        try:
            return Path(snapshot_download(repo, allow_patterns=_PATTERNS, local_files_only=True)), repo
        except Exception:  # the hub raises its own types for a missing cache
            continue
    repo, why = repos[0], "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            return Path(snapshot_download(repo, allow_patterns=_PATTERNS)), repo
        except Exception as e:  # and for network and auth problems
            why = first_line(e)
    names = " or ".join(repos)
    raise RunError(f"the weights of init_from={init_from} ({names}) are not in the Hugging Face cache "
                   f"({constants.HF_HUB_CACHE}) and could not be downloaded ({why}): run `hf download {repo}` on a "
                   "machine with a network and copy its cache here, or set HF_HOME to a cache that has them")
