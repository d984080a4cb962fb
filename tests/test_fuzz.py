"""Fuzzing what slo reads: configs, and the files it reads back from a run (tests/fuzz_targets.py).

Each target runs under hypothesis for a bounded number of inputs (CI_EXAMPLES, the whole file
in well under a minute on two cores); SLO_FUZZ_EXAMPLES=N gives every target N instead, for a
longer hunt, and ``--hypothesis-profile=explore`` draws fresh inputs on each run:

    SLO_FUZZ_EXAMPLES=5000 python3 -m pytest -q tests/test_fuzz.py --hypothesis-profile=explore

Every crash found is kept in tests/data/fuzz/ as NAME-NNNN.SUFFIX (NAME a target; a ckpt file
holds the patch of fields, a torch.save'd dict) and replayed here. KNOWN_CRASHES lists those
whose fix has not landed in slo/: their replay is an expected failure, strict, so a fix shows
up as an XPASS that fails until its line is removed. The number of inputs each target was
given is printed in the terminal summary.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_targets as fz
from slo.schema import DIRECTIVES, KEYS

HANG_SECONDS = 20  # one input; a hang fails the test instead of stalling it
CI_EXAMPLES = {"config": 300, "toml": 150, "py": 150, "metrics": 150, "plot": 4, "configjson": 100,
               "origins": 60, "metajson": 80, "metapkl": 60, "ckpt": 40, "manifest": 80}

# Crashes whose fix is not in slo/ yet: corpus file -> (why, signature). The file's replay is an
# expected failure (strict: a fix makes it XPASS, which fails until the line is removed), and the
# fuzz tests let an input crash this way (counted as a known crash) rather than fail on it.
# A signature is (exception type, file, function, text in its message) at the innermost frame in
# slo/ (fuzz_targets.crash_signature); "" matches anything.
ALL_DIGITS = "Exceeds the limit"  # str() of an int past Python's 4,300 digits
KNOWN_CRASHES: dict[str, tuple[str, list[tuple[str, str, str, str]]]] = {
}


def known_crash(e: BaseException) -> str | None:
    """The corpus file of the known crash e is, if it is one."""
    got = fz.crash_signature(e)
    for name, (_, signatures) in KNOWN_CRASHES.items():
        for want in signatures:
            if all(w in g if i == 3 else w in ("", g) for i, (w, g) in enumerate(zip(want, got))):
                return name
    return None

# Known crashes that happen only on some machines: corpus file -> whether this is one.
ONLY_WHERE = {}


def examples(target: str) -> int:
    return int(os.environ.get("SLO_FUZZ_EXAMPLES") or CI_EXAMPLES[target])


def fuzz_settings(target: str):
    return settings(max_examples=examples(target), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class Summary:
    """Prints, at the end of the session, how many inputs each target was given."""

    def pytest_terminal_summary(self, terminalreporter):
        if not fz.COUNTS:
            return
        parts = [f"{t} {fz.inputs_tried(t)}" for t in fz.TARGETS if fz.inputs_tried(t)]
        terminalreporter.write_line(f"fuzz: {fz.inputs_tried()} inputs tried ({', '.join(parts)})")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    if not request.config.pluginmanager.has_plugin("slo-fuzz-summary"):
        request.config.pluginmanager.register(Summary(), "slo-fuzz-summary")


def report(target: str, before: int) -> None:
    """One line with -rA (or -s): the inputs this test gave the target, and how they ended."""
    ends = {what: n for (t, what), n in sorted(fz.COUNTS.items()) if t == target and what != "input"}
    print(f"fuzz {target}: {fz.inputs_tried(target) - before} inputs; outcomes so far {ends}")


# ---------------------------------------------------------------- pieces


def text_file(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "surrogateescape")


NUMBERS = ["0", "-1", "+1", "1_000", "1__0", "_1", "1_", "1e6", "3000.0", "1.5", ".5", "5.", "1e-400", "1e309",
           "-1e309", "inf", "-inf", "nan", "NaN", "Infinity", "0x10", "0o7", "0b1", "1j", "\u0663", "\uff11\uff12",
           "1e", "e1", "--1", "9" * 5000, "-" + "9" * 5000, "1" + "0" * 400, "1e" + "9" * 400,
           "0." + "0" * 400 + "1", "9" * 400 + ".0", "65536", "65535", "4294967296", "18446744073709551616"]
WORDS = ["None", "none", "null", "True", "true", "TRUE", "False", "false", "yes", "scratch", "resume", "gpt2",
         "hf:x", "cpu", "cuda:0", "cuda:" + "9" * 30, "mps", "auto", "float16", "bfloat16", "nccl", "gloo", "fsdp",
         "sharded", "wsd", "cosine", "builtin", "out", "a#b", "#x", "=", "a=b", "~", "~/x", "/dev/null", "$", "$$",
         "$$$", "${", "${}", "}", "${n_layer}", "${max_iters}", "${out_dir}", "${dataset}", "${nope}", "${env:HOME}",
         "${env:RUN}", "${env:UNSET}", "${env:UNSET:-d}", "${env:UNSET:-}", "${env:UNSET:-${n_layer}}", "${env:}",
         "${env:1X}", "${${n_layer}}", "${ENV.RUN}", "${env:RUN", "${n_layer", "\\", "\\\\", "\\$", "\\q", "\\n",
         "\x00", "\ufeff", "\u202e", "\U0001F600", "\u00e9", "\u00a0", "\t", "\x0b", "\x1b[31m", "\r", "\u2028"]
ENV_NAMES = ["RUN", "A", "PATH", "PYTHONPATH", "LD_PRELOAD", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "1X", "a-b",
             "_", "\u00e9"]
KEY_NAMES = sorted(KEYS)
FROM_PATHS = ["bases/small.config", "bases/small", "bases/data.config", "bases/common/model.config", "minimal.config",
              "small.config", "standard.config", "fuzz.config", "fuzz", "fuzz.toml", "fuzz.py", "nonexistent", "x.json",
              "/dev/null", "/dev/zero", "/proc/self/status", "bases", "bases/", "~", "~/x.config", "''", '""',
              '"a b.config"', "'bases/small.config'", "../" * 40 + "etc/passwd", "\x00", "a\\ b", "${n_layer}.config"]

values = st.one_of(
    st.sampled_from(NUMBERS), st.sampled_from(WORDS), st.sampled_from(KEY_NAMES).map(lambda k: "${%s}" % k),
    st.integers().map(str), st.floats().map(repr), st.text(max_size=8),
    st.lists(st.sampled_from(WORDS + NUMBERS[:20]), min_size=2, max_size=4).map("".join),
)
quoted = st.one_of(values, values.map(lambda v: f'"{v}"'), values.map(lambda v: f"'{v}'"),
                   values.map(lambda v: f'"{v}'), values.map(lambda v: f"'{v}"))
keys = st.one_of(st.sampled_from(KEY_NAMES), st.sampled_from(ENV_NAMES), st.text(max_size=4))
pair = st.tuples(keys, st.sampled_from(["=", "=", "=", " = ", "= ", " =", ""]), quoted).map("".join)
directive = st.sampled_from([*DIRECTIVES, "model", "Model", "ENV", "SWEEP", "FOO", "", "#", "MODEL#x",
                             "\uff2d\uff2f\uff24\uff25\uff2c"])
statement = st.one_of(
    st.tuples(directive, st.lists(pair, max_size=4)).map(lambda t: t[0] + " " + " ".join(t[1])),
    st.lists(st.sampled_from(FROM_PATHS), max_size=3).map(lambda ps: "FROM " + " ".join(ps)),
)
CONFIG_PIECES = ['"', "'", "\\", "\\\n", " \\\n", "\\\r\n", "#", " #", "=", "${", "}", "$", "\n", "\r", "\r\n",
                 "\x00", "\ufeff", "\udcff", "\U0001F600", "\t", " ", "\u00a0", "\u2028"]


def seeds(*patterns: str, base: Path = fz.REPO) -> list[str]:
    return [text_file(p) for pattern in patterns for p in sorted(base.glob(pattern))]


CONFIG_SEEDS = seeds("configs/*.config", "tests/data/valid/*.config", "tests/data/valid/bases/*.config",
                     "tests/data/invalid/*.config")
PY_SEEDS = seeds("tests/data/legacy/*.py", "tests/data/legacy/bad/*.py")


@st.composite
def mutated_lines(draw, seed_texts: list[str], new_line, pieces: list[str]):
    """A seed file with lines inserted, deleted, doubled, values swapped, characters put in, lines cut."""
    lines = draw(st.sampled_from(seed_texts)).split("\n")
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "double", "value", "piece", "continue", "cut"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == "insert":
            lines.insert(i, draw(new_line))
        elif not lines:
            continue
        elif kind == "delete":
            del lines[i]
        elif kind == "double":
            lines[i:i] = [lines[i]] * draw(st.integers(1, 3))
        elif kind == "value":
            spots = [m.end() for m in re.finditer(r"=\s*", lines[i])]
            if spots:
                at = draw(st.sampled_from(spots))
                rest = re.match(r"\S*", lines[i][at:]).end()
                lines[i] = lines[i][:at] + draw(quoted) + lines[i][at + rest:]
        elif kind == "piece":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(pieces)) + lines[i][at:]
        elif kind == "continue":
            lines[i] += draw(st.sampled_from([" \\", "\\", " \\ \t"]))
        else:
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


def as_bytes(text: str) -> bytes:
    """UTF-8, lone surrogates (a seed's undecodable bytes) written as their three bytes."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_bytes(draw, seed_bytes: list[bytes], pieces: list[bytes]):
    """Seed bytes with bytes put in, deleted, flipped, repeated or cut off."""
    data = bytearray(draw(st.sampled_from(seed_bytes)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "flip", "repeat", "cut"]))
        at = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(pieces), st.binary(min_size=1, max_size=8)))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "repeat":
            data[at:at] = bytes(data[at:at + draw(st.integers(1, 32))]) * draw(st.integers(1, 50))
        else:
            del data[at:]
    return bytes(data)


BYTE_PIECES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\r", b"\n", b"\r\n", b"\\", b'"', b"'",
               b"${", b"}", b"[", b"]", b"{", b"}", b",", b":", b"9" * 5000, b"1e999", b"NaN", b"-", b"."]


def config_inputs(suffix: str, lines, seed_texts: list[str], pieces: list[str]):
    file_texts = mutated_lines(seed_texts, lines, pieces)
    return st.one_of(
        file_texts.map(as_bytes),
        st.lists(lines, max_size=8).map(lambda ls: as_bytes("\n".join(ls))),
        mutated_bytes([as_bytes(t) for t in seed_texts], BYTE_PIECES),
        st.binary(max_size=200),
        st.text(max_size=200).map(as_bytes),
    )


CONFIG_LINES = st.one_of(statement, st.sampled_from(["", "# comment", "  ", "\\", "MODEL", "FROM"]))

# TOML: tables, key = value, extends
TOML_VALUES = ["1", "-1", "+1", "1_000", "0x10", "0o7", "0b1", "1e6", "inf", "-inf", "nan", "+nan", "1.5", "true",
               "false", '""', "''", '"${n_layer}"', '"$$"', '"$"', '"${env:RUN}"', "'${n_layer}'", '"""a\nb"""', "'''x'''",
               "[]", "[1, 2]", "[[[]]]", "{}", "{a = 1}", "1979-05-27", "1979-05-27T07:32:00Z", "07:32:00",
               '"\\u0000"', "9" * 5000, "-" + "9" * 5000, "0x" + "f" * 5000, "1e" + "9" * 400, "[" * 3000 + "]" * 3000,
               "{a=" * 600 + "1" + "}" * 600, '"' + "x" * 100_000 + '"', '"\\ud800"', '"a', "'a", "1 2", ""]
toml_value = st.one_of(st.sampled_from(TOML_VALUES), st.integers().map(str), st.floats().map(repr),
                       st.text(max_size=10).map(json.dumps), quoted.map(json.dumps),
                       st.lists(st.sampled_from(TOML_VALUES[:30]), max_size=3).map(lambda vs: "[" + ", ".join(vs) + "]"))
TOML_TABLES = ["[model]", "[MODEL]", "[data]", "[train]", "[env]", "[lr_schedule]", "[logging]", "[system]", "[ddp]",
               "[advanced]", "[foo]", "[model.sub]", "[[model]]", "[]", "[model", '["model"]', "[env.X]"]
TOML_KEYS = [*KEY_NAMES, "extends", "EXTENDS", "extends.x", '"n_layer"', "'a b'", "a.b", "", "RUN", "PYTHONPATH"]
toml_line = st.one_of(
    st.sampled_from(TOML_TABLES),
    st.tuples(st.sampled_from(TOML_KEYS), st.sampled_from([" = ", "=", " "]), toml_value).map("".join),
    st.lists(st.sampled_from(FROM_PATHS), max_size=3).map(lambda ps: "extends = " + json.dumps(ps)),
)

# legacy .py: name = expression
PY_ATOMS = ["1", "-1", "1.5", "1e308", "1e309", "0x" + "f" * 5000, "0x" + "f" * 1000, "9" * 5000, "10 ** 1200",
            "'a'", "'a' * 100001", "'$x'", "'${n_layer}'", "True", "None", "time.time()", "math.pi", "float('inf')",
            "float('nan')", "int('9' * 1000)", "int('9' * 1001)", "str(1)", "str(0x" + "f" * 5000 + ")", "b'x'",
            "1j", "...", "os.environ['A']", "n_layer", "batch_size", "_helper", "undefined", "int", "print", "[1]",
            "{}", "f'{1}'", "(1, 2)", "lambda: 1", "2 ** -1", "0 ** -1", "1 / 0", "'%d' % 1", "not 1", "~1"]
py_expr = st.recursive(
    st.sampled_from(PY_ATOMS) | st.integers().map(str) | st.floats().map(repr) | st.text(max_size=6).map(repr),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<<", "&", "and", "==", "if 1 else"]),
                  inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not ", "~"]), inner).map("".join),
        st.tuples(st.sampled_from(["str", "int", "float", "len", "abs", "math.sqrt", "time.time"]), inner)
        .map(lambda t: f"{t[0]}({t[1]})"),
    ), max_leaves=6)
PY_STATEMENTS = ["import time", "import math", "import os", "import sys", "import time as t", "from os import path",
                 "if 1: pass", "def f(): pass", "for i in []: pass", "print(1)", "pass", "'''doc'''", "n_layer += 1",
                 "x: int = 3", "os.environ['A'] = 'b'", "os.environ['1'] = 'b'", "os.environ['A'] = 1", "del x",
                 "x = y = 3", "(a, b) = 1, 2", "exec('1')", "__import__('os')", "x = " + "(" * 300 + "1" + ")" * 300,
                 "x = " + "-" * 100_000 + "1", "x = " + "1+" * 100_000 + "1", "x = " + "[" * 1000, "\x00", "\\"]
py_line = st.one_of(
    st.tuples(st.sampled_from([*KEY_NAMES, "_helper", "x", "unknown_key", "n_layers"]), py_expr)
    .map(lambda t: f"{t[0]} = {t[1]}"),
    st.sampled_from(PY_STATEMENTS),
)

# JSON texts, written as text so that they can hold what json.dumps would refuse to write
JSON_ATOMS = ["null", "true", "false", "0", "-0", "1", "-1", "1.5", "1e999", "-1e999", "NaN", "Infinity", "-Infinity",
              "1e-400", "9" * 5000, "-" + "9" * 5000, "1" + "0" * 19, "18446744073709551616", '""', '"x"', "[]", "{}",
              '"\\ud800"', '"\\u0000"', "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, "1.0",
              "256", "65536", "4294967296", "4294967297", '"uint16"', '"uint32"', '"byte"', '"char"', '"gpt2"', '"cli"']
json_atom = st.one_of(st.sampled_from(JSON_ATOMS), st.integers().map(str), st.floats(allow_nan=False).map(repr),
                      st.text(max_size=8).map(json.dumps))


def json_of(key_strategy):
    return st.recursive(json_atom, lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(key_strategy, inner), max_size=4)
        .map(lambda kv: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kv) + "}"),
    ), max_leaves=10)


def json_object(key_strategy, value_strategy):
    return st.lists(st.tuples(key_strategy, value_strategy), max_size=8).map(
        lambda kv: "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in kv) + "}")


def json_inputs(objects, seed_files):
    texts = st.one_of(objects, json_of(st.text(max_size=4)))
    return st.one_of(texts.map(as_bytes), st.deferred(lambda: mutated_bytes(seed_files(), BYTE_PIECES)),
                     st.binary(max_size=100))


def real_file(name: str):
    return lambda: [(fz.Assets.get().run / name).read_bytes()]


RECORD_KEYS = ["iter", "loss", "val_loss", "train_loss", "lr", "tokens_per_s", "mfu", "memory_mb", "ms_per_iter",
               "time", "tokens", "x", ""]
plain_number = st.one_of(st.integers(0, 1000).map(str), st.floats(0, 10, allow_nan=False).map(repr))
record = json_object(st.sampled_from(RECORD_KEYS), st.one_of(plain_number, plain_number, json_of(st.text(max_size=3))))
record_line = st.one_of(record, record, json_of(st.text(max_size=3)), st.binary(max_size=20).map(bytes.hex),
                        st.deferred(lambda: st.sampled_from(real_file("metrics.jsonl")()[0].decode().splitlines())))
metrics_inputs = st.one_of(
    st.tuples(st.lists(record_line, max_size=8), st.sampled_from(["\n", "\r\n"]))
    .map(lambda t: as_bytes(t[1].join(t[0]))),
    st.deferred(lambda: mutated_bytes(real_file("metrics.jsonl")(), BYTE_PIECES)),
    st.binary(max_size=100),
)

config_value = st.one_of(json_of(st.text(max_size=3)), json_atom, toml_value.map(json.dumps))
configjson_inputs = json_inputs(json_object(st.one_of(st.sampled_from([*KEY_NAMES, "ENV.X", "", "x", "0"]),
                                                      st.text(max_size=4)), config_value),
                                real_file("config.json"))
ORIGINS = ["cli", "default", "/x/a.config:1:2", "a.config:1", ":1:2", "", "run A", "a.config:99999999999999:1",
           "\n", "x" * 10_000 + ":1:1"]
origin_list = st.one_of(st.lists(st.one_of(st.sampled_from(ORIGINS), st.text(max_size=6)), max_size=3)
                        .map(json.dumps), json_atom)
origins_inputs = json_inputs(json_object(st.sampled_from([*KEY_NAMES, "ENV.X", "", "nope"]), origin_list),
                             real_file("config.origins.json"))

META_KEYS = ["tokenizer", "vocab_size", "itos", "stoi", "dtype", "eot_id", "tokens", "unigram_entropy_nats", "x"]
meta_value = st.one_of(
    st.sampled_from(['"byte"', '"char"', '"gpt2"', '"llama3"', '"bpe"', '""', "256", "255", "127", "1", "0", "-1",
                     "65536", "65537", "4294967296", "4294967297", '"256"', "256.0", "true", '"uint16"', '"uint32"',
                     '"int8"', '["uint16"]', '{"0": "a"}', '["a", "b"]', '"abc"', "null", "9" * 5000]),
    st.lists(st.sampled_from(['"a"', '"d"', '"e"', '"f"', '""', '"ab"', "1", "null"]), max_size=200)
    .map(lambda xs: "[" + ",".join(xs) + "]"),
    json_of(st.text(max_size=3)),
)
MANIFEST_KEYS = ["format", "definition", "trials", "rungs", "name", "values", "status", "rung", "error",
                 "best_val_loss", "iters", "score", "promoted", "ranking", "settings", "metric", "goal", "x"]
manifest_value = st.one_of(json_atom, json_of(st.sampled_from(MANIFEST_KEYS)),
                           st.sampled_from(['"finished"', '"pruned"', '"failed"', '"../x"', '".hidden"', '"a/b"',
                                            '"learning_rate=0.001"', "1", "-2", "[]", '"max"', '"t/acc"', "NaN"]))
manifest_inputs = json_inputs(json_object(st.sampled_from(MANIFEST_KEYS), manifest_value),
                              lambda: [fz.real_manifest()])
metajson_inputs = json_inputs(json_object(st.sampled_from(META_KEYS), meta_value),
                              lambda: [b'{"tokenizer": "byte", "vocab_size": 256}'])
def dag(depth: int) -> list:
    """A list whose repr has 2**depth leaves, pickled in a few bytes: each level holds the one below twice."""
    node = [0]
    for _ in range(depth):
        node = [node, node]
    return node


shared = st.integers(1, 16).map(dag)  # shared structure, kept small: the corpus holds the deep one (metapkl-0005)
huge_ints = st.sampled_from([5000, -5000]).map(lambda n: 10 ** abs(n) * (1 if n > 0 else -1))  # past str()'s limit
ITOS = [chr(i) for i in range(128)]
meta_python = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.binary(max_size=4),
              st.sampled_from(["byte", "char", "gpt2", 256, 128, 2**32, 2**32 + 1, "uint16", "uint32"]), huge_ints, shared),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner), st.frozensets(st.integers(), max_size=2),
                            st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=3)),
    max_leaves=8)
meta_dict = st.one_of(
    st.dictionaries(st.sampled_from(META_KEYS), meta_python, max_size=5),
    st.fixed_dictionaries({"vocab_size": st.sampled_from([128, 256, 100]), "itos": st.sampled_from([
        dict(enumerate(ITOS)), ITOS, {i: c for i, c in enumerate(ITOS) if i != 5}, {str(i): c for i, c in enumerate(ITOS)},
        ITOS[:10], tuple(ITOS)])}, optional={"stoi": meta_python, "tokenizer": meta_python, "x": meta_python}),
    meta_python,
)
NANOGPT_META = {"vocab_size": 128, "itos": dict(enumerate(ITOS)), "stoi": {c: i for i, c in enumerate(ITOS)}}
metapkl_inputs = st.one_of(
    st.tuples(meta_dict, st.integers(2, pickle.HIGHEST_PROTOCOL))  # protocols 0, 1 cannot write a huge int
    .map(lambda t: pickle.dumps(t[0], protocol=t[1])),
    mutated_bytes([pickle.dumps(NANOGPT_META, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)], BYTE_PIECES),
    st.binary(max_size=100),
)


# ---------------------------------------------------------------- checkpoint patches


def ckpt_paths() -> list[str]:
    """Dotted paths into the real checkpoint: every key down to three levels, and a few beside them."""
    found = [""]

    def walk(node, prefix, depth):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
        for i, (key, value) in enumerate(items):
            if i >= 4 and prefix.startswith(("model.", "optimizer.state.", "config.")):
                break
            path = f"{prefix}{key}"
            found.append(path)
            if depth < 3:
                walk(value, path + ".", depth + 1)

    walk(fz.Assets.get().ckpt, "", 0)
    return found + ["ranks", "ranks.0", "rng.cuda", "zzz"]


def tensors():
    import torch

    return [torch.tensor(5), torch.tensor(2.5), torch.tensor(float("nan")), torch.zeros(()), torch.zeros(3),
            torch.zeros(2, 2, dtype=torch.int64), torch.tensor([], dtype=torch.uint8), torch.ones(5056, dtype=torch.uint8),
            torch.zeros(1, dtype=torch.bool), torch.zeros(2, dtype=torch.complex64), torch.zeros(4, dtype=torch.bfloat16),
            torch.zeros(256, 32), torch.zeros(32, 256), torch.full((256, 32), float("nan")), torch.zeros(0, 32)]


def fuzz_values():
    atoms = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
        st.sampled_from([0, -1, 1, 2**63, -(2**63), 2**64, float("inf"), float("nan"), "", "resume",
                         "PCG64", "MT19937", "cpu", 3, 256, 10**9]), huge_ints, shared
        | st.deferred(lambda: st.sampled_from(tensors())),
    )
    return st.recursive(atoms, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-1, 3)), inner, max_size=3)), max_leaves=6)


@st.composite
def ckpt_patches(draw):
    paths = ckpt_paths()
    patch = {}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        original = fz.child_at(fz.Assets.get().ckpt, path)
        patch[path] = draw(st.one_of(st.just(fz.DELETE), fuzz_values(), st.sampled_from(variants(original))))
    return patch


def variants(value) -> list:
    """Near misses of a field's real value: another type, size or sign."""
    import torch

    out = [None, fz.DELETE]
    if isinstance(value, torch.Tensor):
        out += [value.to(torch.int32), value.to(torch.float64), value.reshape(-1)[:-1] if value.numel() else value,
                value.reshape(-1), value.unsqueeze(0), torch.full_like(value, float("nan")) if value.is_floating_point()
                else value + 1, value.tolist() if value.numel() < 64 else value.sum()]
    elif isinstance(value, bool):
        out += [not value, int(value)]
    elif isinstance(value, int):
        out += [value + 1, -value - 1, str(value), value * 10**20]
        out += [float(value), torch.tensor(value)] if abs(value) < 2**63 else []
    elif isinstance(value, float):
        out += [-value, int(value), str(value), float("nan"), float("inf"), torch.tensor(value)]
    elif isinstance(value, str):
        out += [value + "x", "", value.encode(), 0]
    elif isinstance(value, (list, tuple)):
        out += [list(value), tuple(value), list(value)[:-1], list(value) * 2, [], {i: v for i, v in enumerate(value)}]
    elif isinstance(value, dict):
        out += [{}, list(value.values()), {**value, "zzz": 1}, {str(k): v for k, v in value.items()}]
    return out


# ---------------------------------------------------------------- the fuzz tests


STRATEGIES = {
    "config": config_inputs(".config", CONFIG_LINES, CONFIG_SEEDS, CONFIG_PIECES),
    "toml": st.one_of(config_inputs(".toml", toml_line, ["[model]\nn_layer = 2\n"], CONFIG_PIECES),
                      st.deferred(lambda: mutated_lines(toml_seeds(), toml_line, CONFIG_PIECES).map(as_bytes))),
    "py": config_inputs(".py", py_line, PY_SEEDS, CONFIG_PIECES),
    "metrics": metrics_inputs,
    "plot": metrics_inputs,
    "configjson": configjson_inputs,
    "origins": origins_inputs,
    "metajson": metajson_inputs,
    "metapkl": metapkl_inputs,
    "ckpt": st.deferred(ckpt_patches),
    "manifest": manifest_inputs,
}


def toml_seeds() -> list[str]:
    import slo

    return [slo.dumps(slo.load(fz.Assets.get().world / name), "toml") for name in
            ("all_sections.config", "interpolation.config", "quoting.config", "env.config", "types.config")]


def fuzz_test(target: str):
    fn, _ = fz.TARGETS[target]

    @fuzz_settings(target)
    @given(data=STRATEGIES[target])
    def run(data, hang_guard):
        try:
            with hang_guard(HANG_SECONDS):
                fn(data)
        except Exception as e:
            name = known_crash(e)
            if name is None:
                raise
            fz.outcome(target, f"known crash {name}")

    def test(hang_guard):
        before = fz.inputs_tried(target)
        run(hang_guard=hang_guard)
        report(target, before)

    test.__name__ = f"test_fuzz_{target}"
    return test


test_fuzz_config = fuzz_test("config")
test_fuzz_toml = fuzz_test("toml")
test_fuzz_py = fuzz_test("py")
test_fuzz_metrics = fuzz_test("metrics")
test_fuzz_plot = pytest.mark.skipif(not fz.has_matplotlib(), reason="slo plot needs matplotlib")(fuzz_test("plot"))
test_fuzz_configjson = fuzz_test("configjson")
test_fuzz_origins = fuzz_test("origins")
test_fuzz_metajson = fuzz_test("metajson")
test_fuzz_metapkl = fuzz_test("metapkl")
test_fuzz_ckpt = fuzz_test("ckpt")
test_fuzz_manifest = fuzz_test("manifest")


# ---------------------------------------------------------------- the crash corpus


REPLAY_SECONDS = 5  # an unfixed hang in the corpus costs this, not HANG_SECONDS


def corpus_params():
    def marks(name):
        if name not in KNOWN_CRASHES or not ONLY_WHERE.get(name, lambda: True)():
            return []
        return [pytest.mark.xfail(strict=True, reason=KNOWN_CRASHES[name][0])]
    return [pytest.param(p, id=p.name, marks=marks(p.name)) for p in fz.corpus_files()]


@pytest.mark.parametrize("path", corpus_params())
def test_crash_corpus_replays_cleanly(path, hang_guard):
    fz.Assets.get().run  # noqa: B018 (built outside the time limit)
    before = fz.inputs_tried()
    with hang_guard(REPLAY_SECONDS):
        fz.replay(path)
    assert fz.inputs_tried() == before + 1


def test_every_known_crash_is_in_the_corpus():
    names = {p.name for p in fz.corpus_files()}
    assert sorted(set(KNOWN_CRASHES) - names) == []
