"""The schema: every directive and key, written once.

Validation, error messages, ``slo show``, the converters, ``--help`` and the
key reference in the docs all read this table; nothing else lists the keys.
Defaults are nanoGPT's ``train.py`` defaults except where noted in the doc.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

SCHEMA_VERSION = 1
MAX_SEED = 2**32 - 1  # what numpy's seed() takes; torch takes it plus any rank

# Directives that own keys, in the order a config is written out.
SECTIONS = ("MODEL", "ADVANCED", "DATA", "TRAIN", "LR_SCHEDULE", "LOGGING", "SYSTEM", "DDP")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Environment variables that choose which code runs: a config may set them only with --trust-env.
CODE_ENV = {
    "PATH": "the programs run by name",
    "PYTHONPATH": "where Python imports modules from", "PYTHONHOME": "the Python installation used",
    "PYTHONSTARTUP": "a file Python runs at start", "PYTHONINSPECT": "whether Python opens a prompt after the run",
    "PYTHONUSERBASE": "where Python imports user packages from", "PYTHONEXECUTABLE": "the Python program",
    "PYTHONPLATLIBDIR": "where Python imports modules from", "PYTHONBREAKPOINT": "a function Python imports and calls",
    "PYTHONWARNINGS": "warning categories Python imports",
    "BASH_ENV": "a file bash runs at start", "ENV": "a file sh runs at start",
    "CC": "the C compiler torch.compile runs", "CXX": "the C++ compiler torch.compile runs",
    "TORCHINDUCTOR_CACHE_DIR": "compiled code torch.compile loads", "TRITON_CACHE_DIR": "compiled kernels Triton loads",
    "TORCH_EXTENSIONS_DIR": "compiled extensions torch loads",
}
CODE_ENV_PREFIXES = {"LD_": "the libraries the dynamic linker loads", "DYLD_": "the libraries the dynamic linker loads"}


def code_env(name: str) -> str | None:
    """What an environment variable changes about the code that runs, or None when it is not such a variable."""
    if name in CODE_ENV:
        return CODE_ENV[name]
    return next((why for prefix, why in CODE_ENV_PREFIXES.items() if name.startswith(prefix)), None)


@dataclass(frozen=True)
class Key:
    name: str
    section: str
    type: type  # int, float, bool or str
    default: Any
    doc: str
    optional: bool = False  # None is accepted
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # full-match regex for str values (with `allowed` as its text)
    allowed: str = ""

    @property
    def type_name(self) -> str:
        name = self.type.__name__
        return f"{name} or None" if self.optional else name

    def range_text(self) -> str:
        """The rule as a person reads it: '>= 1', '0 <= x <= 1', 'one of a, b'."""
        if self.allowed:
            return self.allowed
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = f"{_num(self.ge)} <= " if self.ge is not None else f"{_num(self.gt)} < " if self.gt is not None else ""
        high = f" <= {_num(self.le)}" if self.le is not None else f" < {_num(self.lt)}" if self.lt is not None else ""
        if low and high:
            return f"{low}x{high}"
        if low:  # '1 <= ' reads better as '>= 1'
            return (">= " if self.ge is not None else "> ") + low.split()[0]
        return high.strip()


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


_K = Key
KEYS: dict[str, Key] = {k.name: k for k in (
    # MODEL: the shape of the network.
    _K("n_layer", "MODEL", int, 12, "Number of transformer blocks.", ge=1, le=4096),
    _K("n_head", "MODEL", int, 12, "Attention heads per block.", ge=1),
    _K("n_embd", "MODEL", int, 768, "Width of the residual stream; divisible by n_head.", ge=1),
    _K("dropout", "MODEL", float, 0.0, "Dropout probability (0 for pretraining, 0.1+ for finetuning).", ge=0, le=1),
    _K("bias", "MODEL", bool, False, "Biases in Linear and LayerNorm layers."),
    _K("vocab_size", "MODEL", int, None, "Vocabulary size; None: from the dataset's meta, else 50304.", optional=True, ge=1),
    _K("use_rope", "MODEL", bool, False, "Rotary position embeddings instead of learned positions; needs an even head size."),
    _K("use_rmsnorm", "MODEL", bool, False, "RMSNorm instead of LayerNorm."),
    _K("use_swiglu", "MODEL", bool, False, "SwiGLU MLP instead of GELU."),
    _K("activation", "MODEL", str, "gelu", "The MLP's activation when not SwiGLU: gelu (exact, nanoGPT's), gelu_tanh (its tanh approximation, GPT-2's gelu_new) or relu2 (ReLU squared, modded-nanogpt's).", choices=("gelu", "gelu_tanh", "relu2")),
    # ADVANCED: architecture details most runs leave alone.
    _K("n_kv_head", "ADVANCED", int, None, "Key/value heads for grouped-query attention; divides n_head; None: n_head.", optional=True, ge=1),
    _K("rope_theta", "ADVANCED", float, 10000.0, "RoPE base frequency.", gt=0),
    _K("tie_weights", "ADVANCED", bool, True, "Share the token embedding with the output head."),
    _K("norm_eps", "ADVANCED", float, 1e-5, "Epsilon of LayerNorm / RMSNorm.", gt=0),
    _K("init_std", "ADVANCED", float, 0.02, "Standard deviation of the weight init (residual projections scaled by 1/sqrt(2*n_layer)).", gt=0),
    _K("mlp_ratio", "ADVANCED", float, 4.0, "MLP hidden size / n_embd; SwiGLU uses 2/3 of it, rounded up to a multiple of 64.", gt=0),
    _K("qk_norm", "ADVANCED", bool, False, "Normalise queries and keys per head."),
    _K("activation_checkpointing", "ADVANCED", bool, False, "Recompute block activations in the backward pass to save memory."),
    _K("zero_init_proj", "ADVANCED", bool, False, "Start the attention output projection and the MLP down projection at zero (modded-nanogpt's init)."),
    _K("logit_softcap", "ADVANCED", float, 0.0, "Cap the logits smoothly: cap * tanh(logits / cap), in training, evaluation and sampling (Gemma 2, modded-nanogpt); 0: off.", ge=0),
    # DATA
    _K("dataset", "DATA", str, "openwebtext", "Dataset folder name under data_dir ('builtin': the corpus made from Python's own sources)."),
    _K("data_dir", "DATA", str, "data", "Folder that holds the datasets (nanoGPT: data)."),
    _K("batch_size", "DATA", int, 12, "Sequences per micro-batch.", ge=1),
    _K("block_size", "DATA", int, 1024, "Context length in tokens.", ge=1),
    _K("gradient_accumulation_steps", "DATA", int, 40, "Micro-batches per optimizer step (over all ranks).", ge=1),
    # TRAIN
    _K("learning_rate", "TRAIN", float, 6e-4, "Peak learning rate.", gt=0),
    _K("max_iters", "TRAIN", int, 600000, "Optimizer steps to run.", ge=0),
    _K("stop_iter", "TRAIN", int, None, "Stop early at this step, evaluating and saving there, while the schedule still runs to max_iters (init_from=resume continues); None: at max_iters.", optional=True, ge=0),
    _K("weight_decay", "TRAIN", float, 0.1, "AdamW weight decay (matrices only).", ge=0),
    _K("beta1", "TRAIN", float, 0.9, "AdamW beta1.", ge=0, lt=1),
    _K("beta2", "TRAIN", float, 0.95, "AdamW beta2.", ge=0, lt=1),
    _K("grad_clip", "TRAIN", float, 1.0, "Clip the gradient norm at this value; 0 disables.", ge=0),
    _K("optimizer", "TRAIN", str, "adamw", "adamw, or muon: torch.optim.Muon for the blocks' 2-D weight matrices (attention, MLP) and AdamW for the embeddings, head, norms and biases.", choices=("adamw", "muon")),
    _K("muon_lr", "TRAIN", float, 0.05, "Muon's peak learning rate (optimizer=muon); the schedule scales it by the same factor as learning_rate.", gt=0),
    _K("muon_momentum", "TRAIN", float, 0.95, "Muon's Nesterov momentum (optimizer=muon).", ge=0, lt=1),
    _K("muon_weight_decay", "TRAIN", float, 0.0, "Muon's decoupled weight decay (optimizer=muon): each step multiplies its matrices by 1 - lr * this.", ge=0),
    _K("embedding_lr_scale", "TRAIN", float, 1.0, "The token and position embeddings (and a tied head) learn at learning_rate times this.", gt=0),
    _K("head_lr_scale", "TRAIN", float, 1.0, "The untied output head learns at learning_rate times this; must be 1 with tie_weights=True.", gt=0),
    _K("init_from", "TRAIN", str, "scratch", "scratch, resume (from out_dir), a checkpoint path or out_dir, gpt2 (-medium, -large, -xl), or hf:NAME_OR_FOLDER.", pattern=r"(?!hf:\Z).+", allowed="scratch, resume, a checkpoint path, gpt2[-medium|-large|-xl] or hf:NAME"),
    _K("eval_only", "TRAIN", bool, False, "Evaluate once and exit."),
    _K("seed", "TRAIN", int, 1337, "Random seed (each data-parallel rank adds its rank).", ge=0, le=MAX_SEED),
    # LR_SCHEDULE
    _K("decay_lr", "LR_SCHEDULE", bool, True, "Follow the schedule; False: learning_rate at every step, no warmup (nanoGPT)."),
    _K("schedule", "LR_SCHEDULE", str, "cosine", "Decay shape (nanoGPT: cosine).", choices=("cosine", "linear", "constant", "wsd")),
    _K("warmup_iters", "LR_SCHEDULE", int, 2000, "Linear warmup steps; <= lr_decay_iters when decay_lr.", ge=0),
    _K("lr_decay_iters", "LR_SCHEDULE", int, 600000, "Step at which the learning rate reaches min_lr.", ge=0),
    _K("min_lr", "LR_SCHEDULE", float, 6e-5, "Final learning rate; <= learning_rate.", ge=0),
    _K("cooldown_iters", "LR_SCHEDULE", int, 0, "wsd only: length of the final decay to min_lr.", ge=0),
    # LOGGING
    _K("out_dir", "LOGGING", str, "out", "Folder for checkpoints, metrics and the resolved config.", pattern=r".+", allowed="a non-empty path"),
    _K("eval_interval", "LOGGING", int, 2000, "Steps between evaluations (and checkpoints).", ge=1),
    _K("log_interval", "LOGGING", int, 1, "Steps between log lines.", ge=1),
    _K("eval_iters", "LOGGING", int, 200, "Batches per evaluation.", ge=1),
    _K("always_save_checkpoint", "LOGGING", bool, True, "Save at every evaluation, not only when val loss improves."),
    _K("wandb_log", "LOGGING", bool, False, "Log to Weights & Biases (pip install 'slo[wandb]')."),
    _K("wandb_project", "LOGGING", str, "owt", "wandb project."),
    _K("wandb_run_name", "LOGGING", str, "gpt2", "wandb run name."),
    _K("tensorboard_log", "LOGGING", bool, False, "Write TensorBoard event files to out_dir/tensorboard/ (pip install 'slo[tensorboard]')."),
    _K("eval_tasks", "LOGGING", str, "", "lm-evaluation-harness task names, comma-separated, run by rank 0 as part of an evaluation, their scores in its record as task/metric (pip install 'slo[eval]'); empty: none.", pattern=r"(?:[^,\s]+(?:\s*,\s*[^,\s]+)*)?", allowed="task names separated by commas, or empty"),
    _K("eval_tasks_interval", "LOGGING", int, None, "Steps between the evaluations that also run eval_tasks (and the last one does); a multiple of eval_interval; None: every evaluation.", optional=True, ge=1),
    _K("eval_tasks_limit", "LOGGING", int, None, "Examples of each task in eval_tasks (its first N, lm-evaluation-harness's --limit); None: all.", optional=True, ge=1),
    _K("eval_tasks_path", "LOGGING", str, None, "A folder of task YAML files that eval_tasks may name beside the harness's own (its --include_path); None: the harness's only.", optional=True, pattern=r".+", allowed="a non-empty path"),
    _K("checkpoint_format", "LOGGING", str, "single", "single: out_dir/ckpt.pt, one file of the whole (gathered) weights and optimizer state, written by rank 0; sharded (strategy=fsdp): out_dir/ckpt.sharded/, a torch.distributed.checkpoint folder each rank writes its shards to.", choices=("single", "sharded")),
    # SYSTEM
    _K("device", "SYSTEM", str, "auto", "auto, cpu, cuda, cuda:N or mps (nanoGPT: cuda).", pattern=r"auto|cpu|cuda(:[0-9]+)?|mps", allowed="one of auto, cpu, cuda, cuda:N, mps"),
    _K("dtype", "SYSTEM", str, "auto", "Compute dtype; auto: bfloat16 where supported, else float32.", choices=("auto", "float32", "bfloat16", "float16")),
    _K("compile", "SYSTEM", bool, True, "torch.compile the model."),
    # DDP
    _K("backend", "DDP", str, "auto", "Process-group backend; auto: nccl on CUDA, gloo on CPU.", choices=("auto", "nccl", "gloo")),
    _K("nproc_per_node", "DDP", int, None, "Processes on this machine; None: visible GPUs, 1 on CPU.", optional=True, ge=1),
    _K("master_addr", "DDP", str, "127.0.0.1", "Rendezvous address.", pattern=r".+", allowed="a non-empty host"),
    _K("master_port", "DDP", int, 29500, "Rendezvous port.", ge=1, le=65535),
    _K("find_unused_parameters", "DDP", bool, False, "DistributedDataParallel's find_unused_parameters."),
    _K("strategy", "DDP", str, "ddp", "ddp: every process holds the whole model (DistributedDataParallel); fsdp: parameters, gradients and optimizer state sharded across the processes (FSDP2 fully_shard, per block and on the whole model).", choices=("ddp", "fsdp")),
    _K("fsdp_reshard_after_forward", "DDP", bool, True, "strategy=fsdp: free each block's gathered parameters after its forward and gather them again for the backward (less memory, more communication)."),
    _K("fsdp_cpu_offload", "DDP", bool, False, "strategy=fsdp: keep the parameter shards, their gradients and the optimizer state on the CPU, which runs the optimizer step (FSDP2's CPUOffloadPolicy)."),
)}

DEFAULTS: dict[str, Any] = {k.name: k.default for k in KEYS.values()}
SECTION_KEYS: dict[str, tuple[str, ...]] = {s: tuple(k.name for k in KEYS.values() if k.section == s) for s in SECTIONS}
# The keys that shape the network, and of those the ones that only change how it trains (not its weights).
SHAPE_KEYS = SECTION_KEYS["MODEL"] + SECTION_KEYS["ADVANCED"] + ("block_size",)
TRAINING_ONLY_KEYS = ("dropout", "init_std", "activation_checkpointing", "zero_init_proj")
NANOGPT_MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")  # its GPTConfig
PRETRAINED = {name: "openai-community/" + name for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
# the Hugging Face repos that hold them: the current name, then the one nanoGPT's from_pretrained('gpt2') caches
PRETRAINED_REPOS = {name: (repo, name) for name, repo in PRETRAINED.items()}
HF_PREFIX = "hf:"  # init_from=hf:NAME_OR_FOLDER
SWEEP = "SWEEP"  # its items name keys to sweep (slo.trials), not values to set
KEYED_DIRECTIVES = SECTIONS + (SWEEP,)  # the directives whose items are keys of the schema
DIRECTIVES = ("FROM",) + KEYED_DIRECTIVES + ("ENV",)


def suggest(word: str, candidates) -> str:
    """' (did you mean X?)' for the closest candidate, or ''."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in candidates}
        if word.lower() in lowered:
            match = [lowered[word.lower()]]
    return f" (did you mean {match[0]}?)" if match else ""


# ---- typing: text (or a TOML / Python value) to the key's type ----------

_INT = re.compile(r"[+-]?[0-9](?:_?[0-9])*\Z")
_BOOLS = {"true": True, "false": False}
_NONES = frozenset(("None", "none", "null"))


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and (value.isdecimal() and value.isascii() or _INT.match(value)):
        return int(value)
    number = _to_float(value)  # 1e3 and 1000.0 are whole numbers too
    if number.is_integer():
        return int(number)
    raise ValueError


def _float_text(text: str) -> float:
    # float() also takes surrounding spaces, 'nan' and 'inf': none is a config value.
    if text.strip() != text or not text:
        raise ValueError
    f = float(text)
    if not math.isfinite(f):
        raise ValueError
    return f


def _to_float(value: Any) -> float:
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ValueError
    if type(value) is int:
        return float(value)
    if type(value) is str:
        return _float_text(value)
    raise ValueError


def _to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str:
        return _BOOLS[value.lower()]
    raise ValueError


def _to_str(value: Any) -> str:
    if type(value) is str:
        return value
    raise ValueError


_CONVERTERS: dict[type, Callable[[Any], Any]] = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}


def _converter(key: Key) -> Callable[[Any], Any]:
    """One function per key that types and range-checks a value (the hot path of loading)."""
    to_type = _CONVERTERS[key.type]
    optional = key.optional
    in_range = _range_check(key)

    def conv(value: Any) -> Any:
        if optional and (value is None or (type(value) is str and value in _NONES)):
            return None
        try:
            out = to_type(value)
        except (ValueError, KeyError, OverflowError):
            raise ValueError(_type_message(key, value)) from None
        if in_range is not None and not in_range(out):
            raise ValueError(f"{key.name}={format_value(out) or chr(34) * 2} is out of range: must be {key.range_text()}")
        return out

    return conv


def _type_message(key: Key, value: Any) -> str:
    shown = value if type(value) is str else repr(value)
    expected = {int: "an int", float: "a float", bool: "a bool (true or false)", str: "a string"}[key.type]
    return f"{key.name}={shown} is not {expected}{' or None' if key.optional else ''}"


def _range_check(key: Key) -> Callable[[Any], bool] | None:
    if key.choices:
        return frozenset(key.choices).__contains__
    if key.pattern:
        pattern = re.compile(key.pattern, re.DOTALL)  # a value may hold a newline
        return lambda v: pattern.fullmatch(v) is not None
    bounds = [(op, x) for op, x in (("ge", key.ge), ("gt", key.gt), ("le", key.le), ("lt", key.lt)) if x is not None]
    if not bounds:
        return None
    if bounds == [("ge", key.ge)]:
        low = key.ge
        return lambda v: v >= low
    checks = {"ge": lambda v, x: v >= x, "gt": lambda v, x: v > x, "le": lambda v, x: v <= x, "lt": lambda v, x: v < x}
    return lambda v: all(checks[op](v, x) for op, x in bounds)


def format_value(v: Any) -> str:
    """The text of a typed value as a config writes it (and ${key} substitutes it)."""
    if v is None:
        return "None"
    if type(v) is bool:
        return "True" if v else "False"
    if type(v) is float:
        return repr(v)
    return str(v)


# ---- cross-field rules ---------------------------------------------------
# Each rule: (keys it reads, check(values) -> message or None). The first key
# is where the error points unless it was not set and another key was.

def _head_div(v):
    if v["n_embd"] % v["n_head"]:
        return f"n_embd={v['n_embd']} is not divisible by n_head={v['n_head']}"


def _rope_even(v):
    if v["use_rope"] and v["n_embd"] % v["n_head"] == 0 and (v["n_embd"] // v["n_head"]) % 2:
        return (f"use_rope needs an even head size, but n_embd={v['n_embd']} / n_head={v['n_head']}"
                f" = {v['n_embd'] // v['n_head']}")


def _kv_div(v):
    if v["n_kv_head"] is not None and v["n_head"] % v["n_kv_head"]:
        return f"n_kv_head={v['n_kv_head']} does not divide n_head={v['n_head']}"


def _activation_swiglu(v):
    if v["use_swiglu"] and v["activation"] != "gelu":
        return f"activation={v['activation']} has no effect with use_swiglu=True (SwiGLU gates with SiLU): drop one"


def _head_scale_tied(v):
    if v["tie_weights"] and v["head_lr_scale"] != 1:
        return (f"head_lr_scale={format_value(v['head_lr_scale'])} needs an untied head, but tie_weights=True "
                "(the head is the token embedding, which embedding_lr_scale scales): set tie_weights=False or drop it")


def _stop_iter(v):
    if v["stop_iter"] is not None and v["stop_iter"] > v["max_iters"]:
        return f"stop_iter={v['stop_iter']} is beyond max_iters={v['max_iters']}"


def _warmup(v):
    if v["decay_lr"] and v["warmup_iters"] > v["lr_decay_iters"]:
        return f"warmup_iters={v['warmup_iters']} is greater than lr_decay_iters={v['lr_decay_iters']}"


def _min_lr(v):
    # As in nanoGPT, min_lr is read only when the learning rate decays.
    if v["decay_lr"] and v["min_lr"] > v["learning_rate"]:
        return f"min_lr={format_value(v['min_lr'])} is greater than learning_rate={format_value(v['learning_rate'])}"


def _cooldown(v):
    if v["cooldown_iters"] and v["schedule"] != "wsd":
        return f"cooldown_iters={v['cooldown_iters']} only applies to schedule=wsd, not schedule={v['schedule']}"
    if v["schedule"] == "wsd" and v["decay_lr"] and v["warmup_iters"] + v["cooldown_iters"] > v["lr_decay_iters"]:
        return (f"cooldown_iters={v['cooldown_iters']} plus warmup_iters={v['warmup_iters']}"
                f" is more than lr_decay_iters={v['lr_decay_iters']}")


def _nccl(v):
    if v["backend"] == "nccl" and v["device"] in ("cpu", "mps"):
        return f"backend=nccl needs a CUDA device, but device={v['device']} (use backend=gloo or auto)"


def _accum_world(v):
    n = v["nproc_per_node"]
    if n is not None and v["gradient_accumulation_steps"] % n:
        return (f"gradient_accumulation_steps={v['gradient_accumulation_steps']} is not divisible by"
                f" nproc_per_node={n}: each of the {n} processes runs an equal share of the micro-steps")


def _fsdp_muon(v):
    if v["strategy"] == "fsdp" and v["optimizer"] == "muon":
        return ("optimizer=muon needs each weight matrix whole in one process (its orthogonalizing step) and "
                "strategy=fsdp shards them: use optimizer=adamw with fsdp, or strategy=ddp with muon")


def _fsdp_only(v):
    if v["strategy"] == "fsdp":
        return None
    for key, inert in (("fsdp_reshard_after_forward", True), ("fsdp_cpu_offload", False), ("checkpoint_format", "single")):
        if v[key] != inert:
            return f"{key}={format_value(v[key])} only applies to strategy=fsdp, not strategy={v['strategy']}"


def _tasks_interval(v):
    n, every = v["eval_tasks_interval"], v["eval_interval"]
    if n is not None and n % every:
        return (f"eval_tasks_interval={n} is not a multiple of eval_interval={every}: the tasks run as part of an "
                f"evaluation (use {every * max(1, round(n / every))}, or another multiple of {every})")


def _tasks_fsdp(v):
    if v["eval_tasks"] and v["strategy"] == "fsdp":
        return ("eval_tasks runs the tasks on rank 0 alone, but under strategy=fsdp every rank must join each "
                "forward pass: drop eval_tasks and run `slo eval OUT_DIR --tasks NAMES` on the checkpoint, "
                "or use strategy=ddp")


RULES: tuple[tuple[tuple[str, ...], Callable[[dict], str | None]], ...] = (
    (("n_embd", "n_head"), _head_div),
    (("use_rope", "n_embd", "n_head"), _rope_even),
    (("n_kv_head", "n_head"), _kv_div),
    (("activation", "use_swiglu"), _activation_swiglu),
    (("head_lr_scale", "tie_weights"), _head_scale_tied),
    (("warmup_iters", "lr_decay_iters", "decay_lr"), _warmup),
    (("stop_iter", "max_iters"), _stop_iter),
    (("min_lr", "learning_rate", "decay_lr"), _min_lr),
    (("cooldown_iters", "schedule", "warmup_iters", "lr_decay_iters"), _cooldown),
    (("backend", "device"), _nccl),
    (("gradient_accumulation_steps", "nproc_per_node"), _accum_world),
    (("strategy", "optimizer"), _fsdp_muon),
    (("eval_tasks_interval", "eval_interval"), _tasks_interval),
    (("eval_tasks", "strategy"), _tasks_fsdp),
    (("fsdp_reshard_after_forward", "fsdp_cpu_offload", "checkpoint_format", "strategy"), _fsdp_only),
)


CONVERT: dict[str, Callable[[Any], Any]] = {name: _converter(key) for name, key in KEYS.items()}
KEY_SECTION: dict[str, str] = {name: key.section for name, key in KEYS.items()}

# The fast typing table read by the tokenizer module's type_values (both twins):
# key -> (code, optional, low, low_open, high, high_open, check), where check is
# the frozenset of choices for FAST_CHOICE, the pattern's fullmatch for FAST_PATTERN. Codes:
FAST_INT, FAST_FLOAT, FAST_BOOL, FAST_STR, FAST_CHOICE, FAST_NONEMPTY, FAST_PATTERN = range(7)


def _fast_spec(key: Key) -> tuple:
    low, low_open = (key.gt, True) if key.gt is not None else (key.ge, False)
    high, high_open = (key.lt, True) if key.lt is not None else (key.le, False)
    check = None
    if key.type is str:
        if key.choices:
            code, check = FAST_CHOICE, frozenset(key.choices)
        elif key.pattern == ".+":
            code = FAST_NONEMPTY
        elif key.pattern:
            code, check = FAST_PATTERN, re.compile(key.pattern, re.DOTALL).fullmatch
        else:
            code = FAST_STR
    else:
        code = {int: FAST_INT, float: FAST_FLOAT, bool: FAST_BOOL}[key.type]
    return (code, key.optional, None if low is None else float(low), low_open,
            None if high is None else float(high), high_open, check)


FAST_TABLE: dict[str, tuple] = {name: _fast_spec(key) for name, key in KEYS.items()}
