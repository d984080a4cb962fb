"""Rules with a universal shape, checked on random input (hypothesis).

1. The two tokenizers agree on any text, results and errors alike.
2. Over random FROM graphs, several files and command-line overrides, every
   key's final value is its last assignment in precedence order, and
   ``cfg.origin(key)`` names that assignment.
3. ``loads(dumps(cfg)) == cfg`` for random valid configs.
4. Nothing makes loading raise anything but ConfigError, or hang.
"""

from __future__ import annotations

import functools
import importlib
import json
import operator
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import slo.lexer
from slo import ConfigError, dumps, load, loads
from slo._parser_py import RULE_BITS
from slo.errors import Diagnostic
from slo.resolve import MAX_DEPTH, rules_of
from slo.schema import DEFAULTS, KEYS, RULES, code_env

# ---- text that looks like the language, and text that does not -------------------

PIECES = (
    "MODEL", "model", "DATA", "FROM", "from", "ENV", "LOGGING", "FOO", "n_layer", "n_head", "dataset", "out_dir",
    "max_iters", "lr_decay_iters", "A", "x", "1", "1e3", "_", "=", "==", '"', "'", "\\", "\\\\", '\\"', "\\$", "\\n",
    "\\q", "\\t", "\\\\t", "#", " # ", "$", "$$", "${", "}", "${n_layer}", "${env:A}", "${env:B:-d}", "${max_iters", "env:", ":-",
    "\n", "\r\n", "\r", " ", "  ", "\t", " \\\n", "\\\n", "\\ \n", "\ufeff", "\x00", "\x0b", "\x0c", "\\\r\n", "\u2028", "é", "中",
    "base.config", "t.config", "missing", "../", "~/",
)
language_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=40).map("".join)

# Statement-shaped text: a directive and key=value pairs, with odd pieces in every slot.
_directive = st.sampled_from(["MODEL", "model", "DATA", "FROM", "ENV", "FOO", "_X", "9A", "", "#", "MODEL#"])
_key = st.sampled_from(["n_layer", "_k", "k9", "9k", "", "a-b", '"k"', "N", "é"])
_value = st.lists(st.sampled_from(['"', "'", "\\", "\\t", "\\n", "\\$", '\\"', "\\q", "$", "${", "}", "#", " ", "=",
                                    "a", "1", "é", "\t", "\x0b", "\r"]), max_size=6).map("".join)
_quoted = st.one_of(_value, _value.map(lambda v: f'"{v}"'), _value.map(lambda v: f"'{v}'"))
_pair = st.tuples(_key, st.sampled_from(["=", "=", " = ", "= ", " =", ""]), _quoted).map("".join)
_statement = st.tuples(_directive, st.lists(_pair, max_size=4)).map(lambda t: t[0] + " " + " ".join(t[1]))
statement_text = st.lists(st.tuples(_statement, st.sampled_from(["\n", "\r\n", " \\\n", " \\ \t\n", "\\\n  # c\n", "\n\n"])),
                          max_size=6).map(lambda parts: "".join(a + b for a, b in parts))
any_text = st.one_of(language_text, statement_text, st.text(max_size=200))


needs_extension = pytest.mark.skipif(slo.lexer.NO_EXTENSIONS,
                                     reason="SLO_NO_EXTENSIONS is set: the compiled tokenizer is not used")


def _twins():
    return importlib.import_module("slo._parser_py"), importlib.import_module("slo._parser")


# ---- 1. the twins agree ----------------------------------------------------------------

@needs_extension
@settings(max_examples=250)
@given(any_text)
def test_tokenizers_agree(text):
    py, c = _twins()
    assert c.scan(text) == py.scan(text)
    # What the loader reads: the statements sorted into bases, assignments and problems.
    assert c.read(text, "p.config") == py.read(text, "p.config")


def _typed(mapping):
    return {k: (type(v), v) for k, v in mapping.items()}


raw_values = st.one_of(
    st.from_regex(r"[-+]?[0-9_.eE+-]{0,12}", fullmatch=True),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["None", "none", "null", "NULL", "True", "true", "TRUE", "False", "false", "", "\n", "a\nb",
                     "cosine", "wsd", "gloo", "cuda:0", "cpu", "auto", "float16", "nan", "inf", "-inf", "1e400",
                     "0x10", "١٢", "1_000", "${n_layer}", "$$", " 1", "1 "]),
    st.text(max_size=6))


@st.composite
def plain_entries(draw):
    """Provenance entries (item, path, None) for random keys and raw values, as type_values reads them."""
    entries = {}
    for key in draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=12, unique=True)):
        raw = draw(raw_values)
        entries[key] = ((key, raw, 1, 1, len(key) + 2, len(key) + 2 + len(raw), draw(st.sampled_from([0, 1, 2]))),
                        "p.config", None)
    return entries


@settings(max_examples=150)
@given(plain_entries())
def test_fast_typing_agrees_with_the_schema(entries):
    """type_values (both twins) types a value only as the key's own converter would."""
    from slo.schema import CONVERT
    twins = [importlib.import_module("slo._parser_py")]
    if not slo.lexer.NO_EXTENSIONS:
        twins.append(importlib.import_module("slo._parser"))
    results = []
    for twin in twins:
        final, rest, rules = twin.type_values(entries)
        assert rules == functools.reduce(operator.or_, (RULE_BITS[k] for k in entries), 0)
        assert set(rest) <= set(entries) and final.keys() == DEFAULTS.keys()
        assert _typed({k: final[k] for k in DEFAULTS if k not in entries or k in rest}) == _typed(
            {k: DEFAULTS[k] for k in DEFAULTS if k not in entries or k in rest})
        typed = {k: final[k] for k in entries if k not in rest}
        for key, value in typed.items():
            raw = entries[key][0][1]
            if "$" not in raw or entries[key][0][6] == 2:  # a ${key} reference: see the next test
                assert _typed({key: CONVERT[key](raw)}) == _typed({key: value}), key
        results.append((_typed(typed), list(rest)))
    assert all(r == results[0] for r in results)


@st.composite
def reference_text(draw):
    """Assignments of plain values and ${key} references, each under its own directive."""
    lines = []
    for key in draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=12)):
        same_type = sorted(k for k in KEYS if KEYS[k].type is KEYS[key].type)
        value = draw(st.one_of(raw_values, st.sampled_from(sorted(KEYS)).map(lambda k: "${%s}" % k),
                               st.sampled_from(same_type).map(lambda k: "${%s}" % k)))
        if not value or value[0] == "#" or set(value) & set(" \t\r\n\\\"'\f\v"):
            value = "'" + value.replace("'", "").replace("\n", "") + "'"
        lines.append(f"{KEYS[key].section} {key}={value}")
    return "\n".join(lines)


@settings(max_examples=200, deadline=None)
@given(reference_text())
def test_fast_typing_never_changes_a_load(text):
    """Loading with type_values gives the Config, or the errors, that the converters alone give."""
    from slo import resolve

    def load():
        try:
            cfg = slo.loads(text)
            return _typed(cfg.to_dict()), [str(o) for k in cfg for o in cfg.origin(k).chain()]
        except ConfigError as e:
            return str(e)

    fast = load()
    real = resolve.type_values
    resolve.type_values = lambda entries: (dict(DEFAULTS), list(entries), -1)  # every key to the converters, every rule
    try:
        assert load() == fast
    finally:
        resolve.type_values = real


def _lines(text):
    return text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(any_text)
def test_positions_point_into_the_text(scan, text):
    """Every item and error position names the text it was read from (both twins)."""
    statements, errors = scan(text)
    lines = _lines(text)
    for directive, line, col, items in statements:
        assert lines[line - 1][col - 1:col - 1 + len(directive)].upper() == directive
        for item in items:
            if directive == "FROM":
                path, line, col, end, quote = item
                written = lines[line - 1][col - 1:end - 1]
                assert written == path if quote == 0 else written[0] == written[-1] == "\"'"[quote - 1]
            else:
                key, value, line, key_col, value_col, end, quote = item
                src = lines[line - 1]
                assert src[key_col - 1:value_col - 1] == key + "="
                written = src[value_col - 1:end - 1]
                assert written == value if quote == 0 else written[0] == written[-1] == "\"'"[quote - 1]
                if quote == 2:
                    assert written[1:-1] == value
    for line, col, end, message in errors:
        assert 1 <= line <= len(lines)
        assert 1 <= col <= len(lines[line - 1]) + 1 and end > col
        assert message and message[0].isupper()


# ---- 2. precedence and provenance ---------------------------------------------------------

# Keys no cross-field rule reads, with the section they belong to.
INT_KEYS = ("n_layer", "batch_size", "block_size", "max_iters", "seed", "eval_interval", "log_interval",
            "eval_iters", "master_port")
STR_KEYS = ("dataset", "data_dir", "wandb_project", "wandb_run_name")
ENV_NAMES = ("A", "B", "OMP_NUM_THREADS")


@dataclass
class File:
    bases: list = field(default_factory=list)  # (index, written with .config)
    lines: list = field(default_factory=list)
    assignments: list = field(default_factory=list)  # (name, value, line, col)


@st.composite
def config_files(draw):
    """Random files f0..fN: each may FROM earlier ones; assignments laid out in random statements."""
    counter = iter(range(1, 10**6))
    files = []
    for i in range(draw(st.integers(1, 5))):
        f = File()
        if i:
            f.bases = draw(st.lists(st.tuples(st.integers(0, i - 1), st.booleans()), max_size=3))
        if f.bases:
            f.lines.append("FROM " + " ".join(f"f{j}.config" if suffix else f"f{j}" for j, suffix in f.bases))
        current = None  # the directive of the statement the last line belongs to
        for name in draw(st.lists(st.sampled_from(INT_KEYS + STR_KEYS + tuple("ENV." + n for n in ENV_NAMES)),
                                  max_size=8)):
            n = next(counter)
            if name.startswith("ENV."):
                directive, key, text = "ENV", name[4:], f"e{n}"
            else:
                directive, key = KEYS[name].section, name
                text = str(n) if name in INT_KEYS else draw(st.sampled_from([f"v{n}", f"'v {n}'", f'"v\\t{n}"']))
            value = n if name in INT_KEYS else text.strip("'\"").replace("\\t", "\t") if name in STR_KEYS else text
            layout = draw(st.sampled_from(["new", "same", "continued", "comment"]))
            pair = f"{key}={text}"
            if current != directive or layout == "new":
                written = draw(st.sampled_from([directive, directive.lower(), directive.title()]))
                f.lines.append(f"{written} {pair}")
                col = len(written) + len(key) + 3
            elif layout == "same":
                col = len(f.lines[-1]) + len(key) + 3
                f.lines[-1] += " " + pair
            else:
                f.lines[-1] += " \\"
                if layout == "comment":
                    f.lines.append("  # a comment inside the continuation")
                f.lines.append("    " + pair)
                col = len(key) + 6
            current = directive
            f.assignments.append((name, value, len(f.lines), col))
        files.append(f)
    cmdline = draw(st.lists(st.integers(0, len(files) - 1), min_size=1, max_size=3))
    overrides = []
    for name in draw(st.lists(st.sampled_from(INT_KEYS + STR_KEYS + tuple("ENV." + n for n in ENV_NAMES)),
                              max_size=4)):
        n = next(counter)
        if name.startswith("ENV."):
            overrides.append((name, f"c{n}", f"--ENV.{name[4:]}=c{n}"))
            continue
        text = str(n) if name in INT_KEYS else f"c {n}"
        form = draw(st.sampled_from(["--{k}={v}", "--{s}.{k}={v}", "--{l}.{k}={v}", "{k}={v}"]))
        section = KEYS[name].section
        arg = form.format(k=name, v=text, s=section, l=section.lower())
        overrides.append((name, n if name in INT_KEYS else text, arg))
    return files, cmdline, overrides


def expected_values(files, cmdline, overrides, folder):
    """The model: later assignments win, bases first, then the file top to bottom, then the CLI."""
    def resolved(i):
        out = {}
        for j, _ in files[i].bases:
            out.update(resolved(j))
        for name, value, line, col in files[i].assignments:
            out[name] = (value, f"{folder / f'f{i}.config'}:{line}:{col}")
        return out
    final = {}
    for i in cmdline:
        final.update(resolved(i))
    for name, value, _ in overrides:
        final[name] = (value, "cli")
    return final


@settings(max_examples=100)
@given(config_files())
def test_last_assignment_in_precedence_order_wins(case):
    files, cmdline, overrides = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, f in enumerate(files):
            (folder / f"f{i}.config").write_text("\n".join(f.lines) + "\n", encoding="utf-8")
        cfg = load(*[str(folder / f"f{i}.config") for i in cmdline], overrides=[o[2] for o in overrides], env={})
        expected = expected_values(files, cmdline, overrides, folder)
    for key in INT_KEYS + STR_KEYS:
        value, origin = expected.get(key, (DEFAULTS[key], "default"))
        assert (cfg[key], str(cfg.origin(key))) == (value, origin), key
        chain = cfg.origin(key).chain()
        assert len({(o.path, o.line, o.col) for o in chain}) == len(chain), "an assignment listed twice"
    assert cfg.env == {name[4:]: value for name, (value, _) in expected.items() if name.startswith("ENV.")}
    for name in cfg.env:
        assert str(cfg.origin("ENV." + name)) == expected["ENV." + name][1]


# ---- 3. round trip ---------------------------------------------------------------------------

TRICKY = " \t\n\r'\"$#\\{}=:-é中\u2028\x00\x0c"
str_values = st.one_of(st.text(max_size=12), st.text(alphabet=st.sampled_from(TRICKY + "ab1"), max_size=12),
                       st.sampled_from(["", "None", "true", "${n_layer}", "$$", "a#b", "#x", "it's", "\\", "--x=1"]))


def _number(key):
    k = KEYS[key]
    if k.type is int:
        low = int(k.ge) if k.ge is not None else -10**12
        high = int(k.le) if k.le is not None else 10**12
        return st.integers(low, high)
    low = k.ge if k.ge is not None else k.gt
    high = k.le if k.le is not None else k.lt
    return st.floats(min_value=low, max_value=high, exclude_min=k.gt is not None,
                     exclude_max=k.lt is not None, allow_nan=False, allow_infinity=False)


def _value(key):
    k = KEYS[key]
    if k.type is bool:
        base = st.booleans()
    elif k.type is str:
        if k.choices:
            base = st.sampled_from(k.choices)
        elif key == "device":
            base = st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:17", "mps"])
        elif key == "eval_tasks":  # task names: text rarely is
            base = st.sampled_from(["", "hellaswag", "arc_easy,piqa", "a , b"])
        elif k.pattern:
            base = str_values.filter(lambda s, p=k.pattern: re.fullmatch(p, s, re.DOTALL) is not None)
        else:
            base = str_values
    else:
        base = _number(key)
    return st.none() | base if k.optional else base


@st.composite
def valid_configs(draw):
    """Values for a random set of keys (and ENV) that pass every rule."""
    keys = draw(st.sets(st.sampled_from(sorted(KEYS))))
    values = {key: draw(_value(key)) for key in keys}
    final = {**DEFAULTS, **values}
    assume(all(check(final) is None for _, check in RULES))
    env = draw(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
        lambda n: code_env(n) is None), str_values, max_size=4))
    return values, env


def as_override(key, value):
    text = value.replace("$", "$$") if type(value) is str else repr(value) if type(value) is float else str(value)
    return f"--{key}={text}"


@st.composite
def valid_configs_by_rule(draw):
    """Values that pass the rules by construction, so the interesting keys are set often."""
    n_head = draw(st.integers(1, 16))
    values = {"n_head": n_head, "n_embd": n_head * 2 * draw(st.integers(1, 64)), "use_rope": draw(st.booleans()),
              "n_kv_head": draw(st.sampled_from([None] + [d for d in range(1, n_head + 1) if n_head % d == 0]))}
    decay = draw(st.integers(0, 10**6))
    warmup = draw(st.integers(0, decay))
    schedule = draw(st.sampled_from(KEYS["schedule"].choices))
    cooldown = draw(st.integers(0, decay - warmup)) if schedule == "wsd" else 0
    values.update(lr_decay_iters=decay, warmup_iters=warmup, schedule=schedule, cooldown_iters=cooldown)
    lr = draw(_number("learning_rate"))
    values.update(learning_rate=lr, min_lr=lr * draw(st.floats(0, 1)))
    nproc = draw(st.sampled_from([None, 1, 2, 4]))
    values.update(nproc_per_node=nproc, gradient_accumulation_steps=(nproc or 1) * draw(st.integers(1, 50)))
    values.update(device=draw(st.sampled_from(["cuda", "cuda:3", "auto"])), backend=draw(st.sampled_from(["nccl", "gloo"])))
    tied = draw(st.booleans())
    values.update(tie_weights=tied, head_lr_scale=1.0 if tied else draw(_number("head_lr_scale")))
    swiglu = draw(st.booleans())
    values.update(use_swiglu=swiglu, activation="gelu" if swiglu else draw(st.sampled_from(KEYS["activation"].choices)))
    groups = [("n_head", "n_embd", "use_rope", "n_kv_head"),
              ("lr_decay_iters", "warmup_iters", "schedule", "cooldown_iters"), ("learning_rate", "min_lr"),
              ("nproc_per_node", "gradient_accumulation_steps"), ("device", "backend"), ("tie_weights", "head_lr_scale"),
              ("use_swiglu", "activation")]
    chosen = draw(st.lists(st.sampled_from(groups), min_size=1, unique=True))
    return {k: values[k] for group in chosen for k in group}, {}


def _check_round_trip(values, env):
    overrides = [as_override(k, v) for k, v in values.items()] + [f"--ENV.{n}={v.replace('$', '$$')}" for n, v in env.items()]
    cfg = loads("", overrides=overrides)
    for key, value in values.items():
        assert (type(cfg[key]), cfg[key]) == (type(value), value)
    assert cfg.env == env
    for text in (dumps(cfg), dumps(cfg, only_set=True)):
        again = loads(text)
        assert again == cfg
        assert again.env == cfg.env
        assert {k: type(v) for k, v in again.to_dict().items()} == {k: type(v) for k, v in cfg.to_dict().items()}
    flat = json.loads(dumps(cfg, "json"))
    assert flat == {**cfg.to_dict(), **{"ENV." + n: v for n, v in env.items()}}


@settings(max_examples=100)
@given(valid_configs())
def test_dumps_then_loads_is_the_same_config(case):
    _check_round_trip(*case)


@settings(max_examples=60)
@given(valid_configs_by_rule())
def test_dumps_then_loads_with_rule_keys(case):
    _check_round_trip(*case)


# ---- 4. nothing but ConfigError, and no hang ---------------------------------------------------

def _only_config_errors(call, *args, **kwargs):
    """Run a load; it may succeed or raise ConfigError with renderable diagnostics, nothing else."""
    try:
        return call(*args, **kwargs)
    except ConfigError as e:
        assert e.errors and all(isinstance(d, Diagnostic) for d in e.errors)
        assert str(e)
        for d in e.errors:
            assert d.path and d.message and d.line >= 0 and d.col >= 0
        return None


junk_files = st.dictionaries(st.sampled_from(["base.config", "b.config", "sub/c.config", "missing"]),
                             language_text, max_size=3)


@settings(max_examples=120)
@given(language_text, junk_files)
def test_any_text_loads_or_raises_config_error(hang_guard, text, others):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, body in others.items():
            (folder / name).parent.mkdir(exist_ok=True)
            (folder / name).write_text(body, encoding="utf-8", errors="surrogatepass")
        with hang_guard(10):
            _only_config_errors(loads, text, path=str(folder / "t.config"), env={})
            _only_config_errors(loads, text, path=str(folder / "t.config"), env={}, overrides=[text])


@settings(max_examples=100)
@given(st.text(max_size=300))
def test_any_unicode_loads_or_raises_config_error(hang_guard, text):
    with hang_guard(10):
        _only_config_errors(loads, text, env={})


@settings(max_examples=100)
@given(st.binary(max_size=300))
def test_any_bytes_in_a_file_load_or_raise_config_error(hang_guard, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "junk.config"
        path.write_bytes(data)
        with hang_guard(10):
            _only_config_errors(load, str(path), env={})


@settings(max_examples=50)
@given(st.lists(st.text(max_size=30), max_size=6))
def test_any_overrides_load_or_raise_config_error(hang_guard, overrides):
    with hang_guard(10):
        _only_config_errors(loads, "MODEL n_layer=2", overrides=overrides, env={})


HUGE = {
    "million-digit int": "MODEL n_layer=" + "9" * 1_000_000,
    "4000-digit int": "TRAIN seed=" + "9" * 4000,
    "million-char word": "a" * 1_000_000,
    "million-char unterminated string": "DATA dataset=\"" + "x" * 1_000_000,
    "many references": "LOGGING out_dir=" + "${n_layer}" * 50_000,
    "many unterminated references": "LOGGING out_dir=" + "${" * 100_000,
    "one key set many times": "MODEL " + "n_layer=1 " * 20_000,
    "long continuation": "MODEL n_layer=1 \\\n" * 20_000,
    "comments ending in backslashes": "# \\\n" * 100_000,
    "million newlines": "\n" * 1_000_000,
    "float overflow and underflow": "TRAIN seed=1e308 max_iters=9e999 learning_rate=1e-400",
}


@pytest.mark.parametrize("text", list(HUGE.values()), ids=list(HUGE))
def test_huge_and_odd_inputs(hang_guard, text):
    with hang_guard(20):
        _only_config_errors(loads, text, env={})


def test_deep_from_chains_and_cycles(tmp_path, hang_guard):
    depth = MAX_DEPTH + 20
    for i in range(depth):
        (tmp_path / f"d{i}.config").write_text(f"FROM d{i + 1} d{i + 1}.config\nMODEL n_layer={i + 1}\n")
    (tmp_path / f"d{depth}.config").write_text("FROM d0\n")  # and a cycle back to the top
    with hang_guard(20):
        with pytest.raises(ConfigError) as info:
            load(str(tmp_path / "d0.config"))
    assert {d.message.split(":")[0] for d in info.value.errors} == {f"FROM chain deeper than {MAX_DEPTH} files (starting at {tmp_path / 'd0.config'})"}


def test_interpolation_cycles_of_every_length(hang_guard):
    keys = ["max_iters", "lr_decay_iters", "warmup_iters", "eval_interval", "eval_iters", "log_interval", "seed"]
    for length in range(1, len(keys) + 1):
        ring = keys[:length]
        text = "\n".join(f"{KEYS[k].section} {k}=${{{ring[(i + 1) % length]}}}" for i, k in enumerate(ring))
        with hang_guard(10):
            with pytest.raises(ConfigError) as info:
                loads(text)
        assert [d.message.split(":")[0] for d in info.value.errors] == ["Reference cycle"]


def test_unterminated_quotes_everywhere(hang_guard):
    for text in ("FROM 'x", 'FROM "x', "MODEL n_layer='2", 'ENV A="x', "DATA dataset=\"a\\", "DATA dataset='",
                 'DATA dataset="\\"'):
        with hang_guard(10):
            with pytest.raises(ConfigError, match="Unterminated|Unknown escape"):
                loads(text)


@pytest.mark.parametrize("suffix", [".toml", ".py"])
@settings(max_examples=40)
@given(data=st.one_of(st.binary(max_size=200), language_text.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_bases_of_other_formats_load_or_raise_config_error(hang_guard, suffix, data):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / f"base{suffix}"
        base.write_bytes(data)
        with hang_guard(10):
            _only_config_errors(loads, f"FROM base{suffix}\n", path=str(Path(tmp) / "t.config"), env={})


def test_the_defaults_satisfy_every_rule():
    assert [check(DEFAULTS) for _, check in RULES] == [None] * len(RULES)


@given(st.sets(st.sampled_from(sorted(KEYS))).flatmap(lambda keys: st.fixed_dictionaries({k: _value(k) for k in keys})))
def test_the_rules_of_the_keys_set_find_what_every_rule_finds(values):
    """A load checks only the rules that read a key it sets (type_values's bits, slo.resolve.rules_of): the same
    problems."""
    final = {**DEFAULTS, **values}
    every = [check(final) for _, check in RULES]
    picked = [check(final) for _, check in rules_of(functools.reduce(operator.or_, (RULE_BITS[k] for k in values), 0))]
    assert [m for m in picked if m] == [m for m in every if m]
