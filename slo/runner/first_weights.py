"""Where a run's first weights come from, and the model shape they decide.

``init_from`` names them (SPEC section 12): ``scratch`` (none), ``resume``
(``out_dir/ckpt.pt`` or ``out_dir/ckpt.sharded``, whichever was saved last,
continued exactly), a checkpoint file or out_dir
(its weights, a fresh optimizer), ``gpt2`` ... ``gpt2-xl`` (OpenAI's GPT-2,
the Hugging Face repos of those names) or ``hf:NAME`` (a local Hugging Face
model folder, or a hub repo id; slo.runner.hf.hub finds it).

Whatever the weights, they decide the model's shape: a shape key left at its
default takes their value (``adopt_shape``, recorded as the key's origin), and
one set in a config or on the command line to another value is an error
naming both. ``dropout`` and the other training-only keys stay the config's;
a smaller ``block_size`` crops a learned position table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import RunError, first_line
from ..outdir.files import CHECKPOINT_NAME, SHARDED_NAME
from ..schema import HF_PREFIX, PRETRAINED, SCHEMA_VERSION, SHAPE_KEYS, TRAINING_ONLY_KEYS, format_value
from .checkpoint.store import checkpoint_file, clean_state_dict, latest_checkpoint, load_checkpoint
from .model.gpt import ModelArgs

POSITIONS = "transformer.wpe.weight"  # the learned position table, cropped to a smaller block_size


@dataclass
class Source:
    """The weights a run starts from."""

    kind: str  # "resume", "checkpoint" or "pretrained"
    name: str  # for messages: "the checkpoint out/ckpt.pt", "the pretrained gpt2 (/cache/...)"
    path: Path  # the checkpoint file, or the model folder
    shape: dict  # every shape key, as the weights have it
    state: dict  # the weights, under slo's parameter names
    ckpt: dict | None = None  # the whole checkpoint (resume and checkpoint)
    meta: dict | None = None  # the tokenizer that comes with the weights, when known


def open_source(init_from: str, out_dir: Path) -> Source | None:
    """The weights init_from names (None for scratch); out_dir is the run's, whose latest checkpoint
    (ckpt.pt or ckpt.sharded) init_from=resume continues."""
    if init_from == "scratch":
        return None
    if init_from in PRETRAINED or init_from.startswith(HF_PREFIX):
        return _pretrained(init_from)
    own = latest_checkpoint(out_dir)
    if init_from == "resume":
        if own is None:
            raise RunError(f"init_from=resume but {out_dir / CHECKPOINT_NAME} does not exist, nor {SHARDED_NAME} "
                           f"(out_dir={out_dir}); point out_dir at the run to continue, or start one with "
                           "init_from=scratch")
        path, kind = own, "resume"
    else:
        path = checkpoint_file(Path(init_from).expanduser())
        kind = "resume" if own is not None and path.exists() and path.resolve() == own.resolve() else "checkpoint"
    # a sharded checkpoint being resumed loads into each rank's shards later; whole weights are read now
    ckpt = load_checkpoint(path, map_location="cpu", weights=kind == "checkpoint")
    if "model_args" not in ckpt:
        raise RunError(f"{path} has no model_args, so its model cannot be rebuilt; use a ckpt.pt written by slo "
                       "or nanoGPT")
    args = ModelArgs.from_dict(ckpt["model_args"])
    state = clean_state_dict(ckpt["model"])
    _check_fit(args, state, f"the checkpoint {path}")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else None
    return Source(kind, f"the checkpoint {path}", path, asdict(args), state, ckpt, meta)


def _check_fit(args: ModelArgs, state: dict, name: str) -> None:
    """RunError unless the weights are those of the model args describes (compared on the meta
    device: a damaged model_args is found before a model of its size is allocated)."""
    import torch

    from .model.gpt import GPT

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in GPT(args).state_dict().items()}
    wrong = [f"{k} {tuple(state[k].shape)} vs {shape}" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != shape]
    missing = [k for k in expected if k not in state]
    if wrong or missing:
        shown = "; ".join(wrong[:3] + [f"missing {k}" for k in missing[:3]])
        raise RunError(f"the model_args of {name} do not fit its weights ({shown}): the file is damaged or was "
                       "written by another program; use another checkpoint")


def adopt_shape(cfg, source: Source):
    """cfg with every shape key it leaves at its default set to the weights' value; RunError naming
    each key set explicitly to another value (or a block_size longer than the weights have)."""
    conflicts, changes = [], {}
    for key in SHAPE_KEYS:
        theirs, ours = source.shape[key], cfg[key]
        if key in TRAINING_ONLY_KEYS or ours == theirs or _same_model(key, ours, source.shape):
            continue
        if not cfg.is_set(key):
            changes[key] = theirs
        elif key != "block_size":
            conflicts.append(f"{key}={format_value(ours)} (from {cfg.origin(key)}) but {source.name} has "
                             f"{key}={format_value(theirs)}")
        elif ours > theirs:
            conflicts.append(f"block_size={ours} (from {cfg.origin(key)}) is longer than the {theirs} positions "
                             f"of {source.name}")
        elif source.kind == "resume" and POSITIONS in source.state:
            conflicts.append(f"block_size={ours} (from {cfg.origin(key)}) would crop the position table of the "
                             f"run being resumed ({theirs} positions): resume with its block_size, or start "
                             f"from its weights with init_from={source.path}")
    if conflicts:
        raise RunError("the model's shape comes from its weights, and the config sets it otherwise: "
                       + "; ".join(conflicts) + ". Remove those keys (or set them to the weights' values), "
                       "or start with init_from=scratch")
    if not changes:
        return cfg
    return cfg.derive(changes, f"<{source.name}>")


def _same_model(key: str, ours, shape: dict) -> bool:
    """True when key=ours makes the same model as the weights' shape though the values differ."""
    if key == "n_kv_head":
        return ours is None and shape["n_kv_head"] == shape["n_head"]
    if key == "rope_theta":
        return not shape["use_rope"]
    if key == "activation":
        return shape["use_swiglu"]
    if key == "mlp_ratio":  # the width counts, not the ratio that gives it
        return ModelArgs(**{**shape, key: ours}).mlp_hidden == ModelArgs(**shape).mlp_hidden
    return False


def weights_for(source: Source, block_size: int) -> dict:
    """The source's weights for a model of block_size positions (a learned table is cropped)."""
    state = source.state
    table = state.get(POSITIONS)
    if table is not None and table.shape[0] > block_size:
        state = {**state, POSITIONS: table[:block_size].clone()}
    return state


def load_weights(model, source: Source | None, block_size: int) -> None:
    """The source's whole weights into the model, before it is sharded (a sharded checkpoint being
    resumed loads later, into the shards: slo.runner.checkpoint.resume)."""
    if source is None:
        return
    if source.ckpt is not None:
        version = source.ckpt.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise RunError(f"{source.path} was written by a newer slo (schema {version}, this one reads up to "
                           f"{SCHEMA_VERSION}); upgrade slo")
        if source.kind == "resume" and source.ckpt.get("sharded"):
            return
    try:
        model.load_state_dict(weights_for(source, block_size))
    except RuntimeError as e:
        raise RunError(f"the weights of {source.name} do not fit the model ({first_line(e)}); they were "
                       "made by another program or a damaged file") from None


def weights_tokenizer(source: Source | None, data_meta: dict, say) -> dict | None:
    """The tokenizer meta of the weights (None when unknown), with a note when the dataset's
    tokens were made by another tokenizer (its ids fit, but mean other text)."""
    meta = source.meta if source is not None else None
    if meta and data_meta and source.kind == "pretrained":
        ours, theirs = data_meta.get("tokenizer", "gpt2"), meta.get("tokenizer", "gpt2")
        if ours != theirs or (ours == "hf" and data_meta.get("tokenizer_json") != meta.get("tokenizer_json")):
            say(f"note: the dataset's tokens are {ours}'s and {source.name} was trained on {theirs}'s: its "
                f"ids fit the vocabulary but mean other text; prepare the data with the model's tokenizer")
    return meta


# ---------------------------------------------------------------- pretrained models


def _pretrained(init_from: str) -> Source:
    from .hf.hub import model_folder
    from .hf.mapping import read_hf_folder

    folder, label = model_folder(init_from)
    shape_keys, state, meta = read_hf_folder(folder)
    shape = asdict(ModelArgs(**shape_keys))  # checked, and every shape key present
    return Source("pretrained", f"the pretrained {label}", folder, shape, state, None, meta)
