"""``slo prepare``: text files, JSON lines and parquet to datasets (slo/runner/prepare/prepare_command.py, sources.py, encode.py).

GPT-2's BPE cannot be downloaded here, so the gpt2 tests build a tiktoken
Encoding of their own with GPT-2's pattern, its end of text at 50256, and a
few merges, and hand it out as tiktoken.get_encoding("gpt2").
"""

from __future__ import annotations

import errno
import functools
import gzip
import json
import os
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.cli import main
from slo.runner.data import corpus
from slo.runner.prepare import bpe, encode, inputs as sources, prepare_command as prepare_module
from slo.runner.data.datasets import TokenWriter, load_meta, open_dataset, unigram_entropy
from slo.runner.prepare.inputs import SPLIT_BLOCK, DocumentSplit, cut_point
from slo.runner.data.text_tokenizers import Tokenizer
from tokenizers import Tokenizer as Backend

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
MERGES = ["th", "he", "the", " t", " the", "in", "ing", " a", "an", "er", "on", " w", "or", "ld", " wor", " world",
          "ü"]  # a few, so that ids past 255 occur


def local_gpt2():
    """A stand-in for tiktoken's GPT-2 encoding: its pattern, 256 byte ranks, MERGES, <|endoftext|> = 50256."""
    import tiktoken

    ranks = {bytes([i]): i for i in range(256)}
    for merge in MERGES:
        ranks[merge.encode("utf-8")] = len(ranks)
    return tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


GPT2 = local_gpt2()


def no_download(name):
    if name != "gpt2":
        raise ValueError(f"no encoding {name} here (and no network)")
    return GPT2


@pytest.fixture(autouse=True, scope="module")
def local_tiktoken():
    """tiktoken.get_encoding("gpt2") is the stand-in, for every test here: nothing is ever downloaded."""
    import tiktoken

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiktoken, "get_encoding", no_download)
        yield


@pytest.fixture
def gpt2():
    return GPT2


DOCS = ["the world in a thing\n", "ünïcödé and 日本語 text", "", "  spaces   and\ttabs\n\n\n", "<|endoftext|> is text here",
        "short", "another document with the words the world", "x" * 50, "line one\nline two\n", "last one"] * 3


def write_jsonl(path, docs, key="text"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if path.name.endswith(".gz") else open)(path, "wt", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({key: doc, "id": i}) + "\n")
    return path


def expected_split(docs, fraction=0.1, seed=1337):
    """(train docs, val docs) in order, as DocumentSplit chooses them."""
    mask = DocumentSplit(len(docs), fraction, seed).val_mask(0, len(docs))
    return [d for d, v in zip(docs, mask) if not v], [d for d, v in zip(docs, mask) if v]


def nanogpt_ids(enc, docs):
    """What nanoGPT's prepare.py writes for these documents: encode_ordinary, then the end of text."""
    return [i for d in docs if d for i in [*enc.encode_ordinary(d), enc.eot_token]]


@pytest.fixture
def texts(tmp_path):
    """A folder of text files, one binary file and one hidden folder."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / ".git").mkdir()
    (src / "a.txt").write_text("First file, ünïcödé and tabs\there.\n" * 20, encoding="utf-8")
    (src / "sub" / "b.md").write_text("# second\nno newline at the end", encoding="utf-8")
    (src / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return src


def joined(src):
    return (src / "a.txt").read_text(encoding="utf-8") + (src / "sub" / "b.md").read_text(encoding="utf-8") + "\n"


def prepare(*args):
    return main(["prepare", *map(str, args)])


@pytest.mark.parametrize("level", ["byte", "char"])
def test_round_trip(tmp_path, texts, capsys, level):
    out = tmp_path / "data" / "mine"
    assert prepare(texts, "-o", out, *(["--char"] if level == "char" else [])) == 0
    ds = open_dataset(tmp_path / "data", "mine", block_size=4)
    whole = np.concatenate([ds.train, ds.val])
    assert ds.tokenizer.decode(whole) == joined(texts)
    assert ds.tokenizer.encode(joined(texts)) == whole.tolist()
    assert ds.meta["tokenizer"] == level and ds.meta["files"] == 2
    assert len(ds.val) == round(len(whole) * 0.1)
    if level == "char":
        assert ds.meta["itos"] == sorted(set(joined(texts))) and ds.vocab_size == len(ds.meta["itos"])
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "dataset=mine" in captured.out
    assert "skipped 1 file(s) that are not readable UTF-8 text" in captured.err and "image.png" in captured.err
    assert "HEAD" not in captured.err and "reading" not in captured.err  # hidden folder skipped; no bar off a terminal


def test_val_fraction(tmp_path, texts):
    assert prepare(texts / "a.txt", "-o", tmp_path / "d", "--val_fraction", "0.5") == 0
    ds = open_dataset(tmp_path, "d")
    assert len(ds.train) == len(ds.val)


def test_char_vocabulary_beyond_uint16(tmp_path):
    alphabet = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000)
    text = alphabet + alphabet[:7_000] + "\n"
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    assert prepare(tmp_path / "big.txt", "-o", tmp_path / "d", "--char") == 0
    ds = open_dataset(tmp_path, "d")
    assert ds.meta["dtype"] == "uint32" and ds.train.dtype == np.uint32
    assert ds.vocab_size == len(alphabet) + 1  # and "\n"
    assert max(int(ds.train.max()), int(ds.val.max())) == len(alphabet)
    assert ds.tokenizer.decode(ds.train) + ds.tokenizer.decode(ds.val) == text


def test_output_exists_needs_force(tmp_path, texts, capsys):
    out = tmp_path / "d"
    assert prepare(texts, "-o", out) == 0
    assert prepare(texts / "a.txt", "-o", out) == 1
    assert "already exists; add --force to replace it" in capsys.readouterr().err
    assert prepare(texts / "a.txt", "-o", out, "--force", "--char") == 0
    assert json.loads((out / "meta.json").read_text())["tokenizer"] == "char"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "src"]


def test_force_replaces_only_a_dataset_folder(tmp_path, texts, capsys, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("notes\n" * 50)
    (project / "other.py").write_text("x = 1\n")
    before = sorted(p.name for p in project.iterdir())
    assert prepare(project / "notes.txt", "-o", project, "--force") == 1
    assert "is inside -o" in capsys.readouterr().err
    assert prepare(texts, "-o", project, "--force") == 1
    assert "holds files that are not a dataset's (notes.txt, other.py)" in capsys.readouterr().err
    monkeypatch.chdir(project)
    assert prepare(texts, "-o", ".", "--force") == 1
    assert "is the current folder" in capsys.readouterr().err
    assert sorted(p.name for p in project.iterdir()) == before


def test_builtin(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpus, "MAX_BYTES", 100_000)
    assert prepare("--builtin", "-o", tmp_path / "builtin") == 0
    ds = open_dataset(tmp_path, "builtin")
    assert ds.meta["tokenizer"] == "byte" and 2 < ds.meta["unigram_entropy_nats"] < 6
    assert "unigram baseline" in capsys.readouterr().out


def test_builtin_default_output(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_BYTES", 50_000)
    monkeypatch.chdir(tmp_path)
    assert prepare("--builtin") == 0
    assert (tmp_path / "data" / "builtin" / "train.bin").is_file()


@pytest.mark.parametrize("args, status, message", [
    (["{src}"], 2, "say where the dataset goes: -o DATA_DIR/NAME"),
    (["-o", "{tmp}/d"], 2, "give text files or folders to read"),
    (["{tmp}/missing.txt", "-o", "{tmp}/d"], 1, "missing.txt does not exist"),
    (["{src}/image.png", "-o", "{tmp}/d"], 1, "no text found in 1 file"),
    (["{src}", "-o", "{tmp}/d", "--val_fraction", "1"], 2, "--val_fraction must be between 0 and 1"),
    (["{src}", "--builtin", "-o", "{tmp}/d"], 2, "--builtin takes no INPUT files"),
    (["{src}", "-o", "{src}/a.txt"], 1, "exists and is not a folder"),
    (["{tmp}/tiny.txt", "-o", "{tmp}/d"], 1, "3 tokens cannot be split with --val_fraction 0.1"),
])
def test_errors(tmp_path, texts, capsys, args, status, message):
    """A run that fails is exit 1 (error: ...); arguments that cannot be acted on are usage errors, exit 2."""
    (tmp_path / "tiny.txt").write_text("ab")
    args = [a.format(src=texts, tmp=tmp_path) for a in args]
    assert prepare(*args) == status
    err = capsys.readouterr().err
    prefix = "error: " if status == 1 else "slo prepare: error: "
    assert err.startswith(prefix) or "\n" + prefix in err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_an_unknown_flag_is_a_usage_error(tmp_path, texts, capsys):
    with pytest.raises(SystemExit) as stopped:
        prepare(texts, "-o", tmp_path / "d", "--val-fraction=0.2")
    assert stopped.value.code == 2
    assert "unrecognized arguments: --val-fraction=0.2" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- tokenizers


def test_gpt2_writes_the_ids_nanogpt_writes(tmp_path, gpt2, capsys):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "gpt2") == 0
    ds = open_dataset(tmp_path, "d")
    train, val = expected_split(DOCS)
    assert ds.train.tolist() == nanogpt_ids(gpt2, train) and ds.val.tolist() == nanogpt_ids(gpt2, val)
    assert {k: ds.meta[k] for k in ("tokenizer", "vocab_size", "eot_id")} == {
        "tokenizer": "gpt2", "vocab_size": 50257, "eot_id": 50256}
    assert ds.meta["split"] == "documents" and ds.meta["documents"] == len([d for d in DOCS if d])
    assert ds.meta["val_documents"] == len([d for d in val if d]) and ds.meta["files"] == 1
    assert ds.tokenizer.decode(ds.train) == "".join(d + "<|endoftext|>" for d in train if d)
    assert "GPT-2 BPE vocabulary of 50,257" in capsys.readouterr().out


def test_every_input_kind_gives_the_same_tokens(tmp_path, gpt2):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    write_jsonl(tmp_path / "in" / "docs.jsonl", DOCS)
    write_jsonl(tmp_path / "in" / "docs.jsonl.gz", DOCS)
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "in" / "docs.parquet", row_group_size=7)
    for i, doc in enumerate(DOCS):
        (tmp_path / "in" / "files" / f"{i:03d}.txt").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / "files" / f"{i:03d}.txt").write_text(doc, encoding="utf-8")
    made = {}
    for name in ("docs.jsonl", "docs.jsonl.gz", "docs.parquet", "files"):
        assert prepare(tmp_path / "in" / name, "-o", tmp_path / name.replace(".", "_"), "--tokenizer", "gpt2") == 0
        ds = open_dataset(tmp_path, name.replace(".", "_"))
        made[name] = (ds.train.tolist(), ds.val.tolist())
    assert len({repr(v) for v in made.values()}) == 1
    train, val = expected_split(DOCS)
    assert made["files"] == (nanogpt_ids(gpt2, train), nanogpt_ids(gpt2, val))


def test_bpe_is_trained_on_the_input_and_travels_in_the_meta(tmp_path, capsys):
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 4)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "bpe:300") == 0
    ds = open_dataset(tmp_path, "d")
    meta, text = ds.meta, (tmp_path / "d" / "tokenizer.json").read_text(encoding="utf-8")
    assert meta["tokenizer"] == "hf" and meta["tokenizer_json"] == text and meta["tokenizer_spec"] == "bpe:300"
    assert meta["vocab_size"] == 300 and meta["eot_id"] == 299 and int(ds.train.max()) < 300
    train, _ = expected_split(DOCS * 4)
    assert ds.tokenizer.decode(ds.train) == "".join(d + "<|endoftext|>" for d in train if d)
    assert Tokenizer.from_meta(load_meta(tmp_path, "d")).encode("the world") == ds.tokenizer.encode("the world")
    assert "bpe:300 vocabulary of 300" in capsys.readouterr().out


def test_a_given_tokenizer_is_used_as_it_is(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 4)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "trained", "--tokenizer", "bpe:280") == 0
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer.json").write_bytes((tmp_path / "trained" / "tokenizer.json").read_bytes())
    (model / "config.json").write_text(json.dumps({"eos_token_id": 7}))
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "file", "--tokenizer", model / "tokenizer.json") == 0
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "folder", "--tokenizer", model) == 0
    trained, file, folder = (open_dataset(tmp_path, n) for n in ("trained", "file", "folder"))
    assert file.train.tolist() == trained.train.tolist() and file.meta["eot_id"] == trained.meta["eot_id"] == 279
    assert folder.meta["eot_id"] == 7 and folder.train.tolist().count(7) >= len(expected_split(DOCS * 4)[0]) - 12
    assert (tmp_path / "folder" / "tokenizer.json").read_bytes() == (model / "tokenizer.json").read_bytes()


def test_a_tokenizer_without_an_end_of_text_joins_documents_with_newlines(tmp_path):
    from tokenizers import Tokenizer as Backend, models, pre_tokenizers

    backend = Backend(models.WordLevel({c: i for i, c in enumerate("abc \n")}, unk_token="a"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    (tmp_path / "tokenizer.json").write_text(backend.to_str(), encoding="utf-8")
    write_jsonl(tmp_path / "docs.jsonl", ["ab", "c\n", "ba"] * 10)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", tmp_path / "tokenizer.json") == 0
    ds = open_dataset(tmp_path, "d")
    assert "eot_id" not in ds.meta and ds.vocab_size == 5
    train, _ = expected_split(["ab", "c\n", "ba"] * 10)
    ids = {c: i for i, c in enumerate("abc \n")}
    assert ds.train.tolist() == [ids[c] for d in train for c in (d if d.endswith("\n") else d + "\n")]


@functools.cache
def trained_bpe():
    plan = encode.TokenizerPlan("hf", "bpe:400", train_vocab=400)
    bpe.train_bpe(plan, DOCS + ["\x00\U0001F600 ñ ǅ"], len(DOCS) + 1)
    return plan


@settings(max_examples=25)
@given(st.text(max_size=300))
def test_gpt2_and_bpe_round_trip_any_text(text):
    for plan in (encode.TokenizerPlan("gpt2", "gpt2", 50257, 50256, encoding=GPT2), trained_bpe()):
        ids = encode.DocEncoder(plan).ids([text])[0]
        assert Tokenizer.from_meta(plan.meta).decode(ids.tolist()) == text
        if plan.kind == "gpt2":
            assert ids.tolist() == GPT2.encode_ordinary(text)


def long_run(kind: str, n: int) -> str:
    """n characters with no break GPT-2's pattern cuts at (base64: a line of it, with a few)."""
    rng = np.random.default_rng(0)
    if kind == "base64":
        import base64

        return base64.b64encode(rng.bytes(n * 3 // 4)).decode()
    alphabet = {"letters": string.ascii_letters, "digits": string.digits, "spaces": " \t",
                "punctuation": "=+-*/<>!&|", "cjk": "日本語漢字"}[kind]
    codes = np.array([ord(c) for c in alphabet], dtype="<u4")
    return codes[rng.integers(0, len(codes), n)].tobytes().decode("utf-32-le")


@pytest.mark.parametrize("kind", ["letters", "base64", "digits", "spaces", "punctuation", "cjk"])
def test_bpe_cuts_a_long_word_before_training_and_encoding(kind):
    from tokenizers import pre_tokenizers

    word = long_run(kind, 1 << 20)
    whole = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(word)[0][0]
    for pre in (bpe.pre_tokenizer(), Backend.from_str(trained_bpe().tokenizer_json).pre_tokenizer):
        pieces = pre.pre_tokenize_str(word)
        assert max(len(p) for p, _ in pieces) <= bpe.MAX_PRETOKEN  # what the trainer sees, and encoding
        assert "".join(p for p, _ in pieces) == whole  # cut, nothing lost


@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from(["a", "Zq", "日", " ", "7", "==", "\n", "é"]), st.integers(1, 400)),
                max_size=6))
def test_bpe_round_trips_long_runs(runs):
    text = "".join(chars * n for chars, n in runs)
    plan = trained_bpe()
    ids = encode.DocEncoder(plan).ids([text])[0]
    assert Tokenizer.from_meta(plan.meta).decode(ids.tolist()) == text
    pieces = Backend.from_str(plan.tokenizer_json).pre_tokenizer.pre_tokenize_str(text)
    assert all(len(p) <= bpe.MAX_PRETOKEN for p, _ in pieces)


def test_a_trained_bpe_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "tokenizer.json").write_text(trained_bpe().tokenizer_json, encoding="utf-8")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    text = "the world " + "x" * 1000 + " 日本語"
    ids = fast(text, add_special_tokens=False)["input_ids"]
    assert ids == encode.DocEncoder(trained_bpe()).ids([text])[0].tolist() and fast.decode(ids) == text


# ---------------------------------------------------------------- pieces, workers and shards


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few hundred bytes, and workers for any input, so that a small test takes every path."""
    monkeypatch.setattr(prepare_module, "PIECE_BYTES", (200, 200))
    monkeypatch.setattr(prepare_module, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(sources, "CUT_SLACK", 64)


@pytest.mark.parametrize("tokenizer", ["gpt2", "char", "bpe:300"])
def test_workers_and_pieces_change_nothing(tmp_path, gpt2, small_pieces, tokenizer):
    write_jsonl(tmp_path / "in" / "docs.jsonl", DOCS * 3)
    (tmp_path / "in" / "long.txt").write_text("the world and the thing\n" * 300 + "end", encoding="utf-8")
    results = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert prepare(tmp_path / "in", "-o", out, "--tokenizer", tokenizer, "--workers", workers) == 0
        results.append([(out / n).read_bytes() for n in ("train.bin", "val.bin", "meta.json")])
    assert results[0] == results[1]
    if tokenizer == "gpt2":
        ds = open_dataset(tmp_path, "w2")
        train, val = expected_split([*DOCS * 3, (tmp_path / "in" / "long.txt").read_text()])
        assert ds.train.tolist() + ds.val.tolist() == nanogpt_ids(gpt2, train) + nanogpt_ids(gpt2, val)


def test_shards_in_llmc_format(tmp_path, gpt2):
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 5)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "one", "--tokenizer", "gpt2") == 0
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "sh", "--tokenizer", "gpt2", "--shard_tokens", "100") == 0
    one, sharded = open_dataset(tmp_path, "one"), open_dataset(tmp_path, "sh", block_size=8)
    names = sorted(p.name for p in (tmp_path / "sh").iterdir())
    assert "train_000000.bin" in names and "val_000000.bin" in names and "train.bin" not in names
    assert np.concatenate(sharded.train.shards).tolist() == one.train.tolist()
    assert np.concatenate(sharded.val.shards).tolist() == one.val.tolist()
    assert all(len(s) == 100 for s in sharded.train.shards[:-1]) and sharded.meta["shard_tokens"] == 100
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "sh", "--tokenizer", "gpt2", "--force") == 0
    assert sorted(p.name for p in (tmp_path / "sh").iterdir()) == ["meta.json", "train.bin", "val.bin"]


@pytest.mark.parametrize("shard_tokens", [None, 7, 50])
def test_one_document_is_split_by_tokens(tmp_path, shard_tokens):
    text = "".join(f"line {i}\n" for i in range(60))
    (tmp_path / "one.txt").write_text(text)
    extra = ["--shard_tokens", str(shard_tokens)] if shard_tokens else []
    assert prepare(tmp_path / "one.txt", "-o", tmp_path / "d", "--val_fraction", "0.25", *extra) == 0
    ds = open_dataset(tmp_path, "d")
    parts = [np.concatenate(s.shards) if hasattr(s, "shards") else np.asarray(s) for s in (ds.train, ds.val)]
    assert bytes(parts[0].tolist() + parts[1].tolist()).decode() == text
    assert len(parts[1]) == round(len(text) * 0.25) and ds.meta["split"] == "tokens"
    whole = np.frombuffer(text.encode(), np.uint8)
    n_val = len(parts[1])
    assert ds.meta["unigram_entropy_nats"] == round(unigram_entropy(whole[:-n_val], whole[-n_val:], 256), 4)


@settings(max_examples=40)
@given(st.text(alphabet=st.sampled_from("ab \n\t.é日\u00a0"), max_size=400), st.integers(1, 60))
def test_a_long_text_cut_at_safe_points_encodes_as_the_whole(text, target):
    data, pieces = text.encode("utf-8"), []
    while len(data) > target:
        cut = cut_point(data, target)
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    assert b"".join(pieces) == text.encode("utf-8")
    texts = [p.decode("utf-8") for p in pieces]  # never cut inside a character
    if all(sources.SAFE_CUT.fullmatch(p[-2:] + q[:1]) for p, q in zip(pieces, pieces[1:])):
        assert [i for t in texts for i in GPT2.encode_ordinary(t)] == GPT2.encode_ordinary(text)


# ---------------------------------------------------------------- the split


@settings(max_examples=60)
@given(st.integers(1, 3 * SPLIT_BLOCK), st.floats(0.001, 0.999), st.integers(0, 2**40), st.data())
def test_documents_split_reproducibly_and_whole(n, fraction, seed, data):
    split = DocumentSplit(n, fraction, seed)
    whole = split.val_mask(0, n)
    assert int(whole.sum()) == (split.k if split.whole else 0)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5)))
    ranges = list(zip([0, *cuts], [*cuts, n]))
    fresh = DocumentSplit(n, fraction, seed)
    assert np.concatenate([fresh.val_mask(a, b - a) for a, b in ranges]).tolist() == whole.tolist()
    if split.whole and n <= SPLIT_BLOCK:  # exactly the last F of a shuffle seeded with the seed
        order = np.random.default_rng([seed, 0]).permutation(n)
        assert sorted(np.flatnonzero(whole).tolist()) == sorted(order[n - split.k:].tolist())


@settings(max_examples=30)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40), min_size=1,
                max_size=40), st.integers(0, 1000))
def test_any_documents_go_whole_to_one_side(tmp_path_factory, docs, seed):
    folder = tmp_path_factory.mktemp("docs")
    write_jsonl(folder / "docs.jsonl", docs)
    assert prepare(folder / "docs.jsonl", "-o", folder / "d", "--seed", str(seed), "--val_fraction", "0.3") in (0, 1)
    if not (folder / "d").exists():
        return  # too little text to split
    ds = open_dataset(folder, "d")
    data = {s: bytes(np.asarray(getattr(ds, s)).tolist()) for s in ("train", "val")}
    if ds.meta["split"] == "documents":
        train, val = expected_split(docs, 0.3, seed)
        assert data["train"].decode() == "".join(d if d.endswith("\n") else d + "\n" for d in train)
        assert data["val"].decode() == "".join(d if d.endswith("\n") else d + "\n" for d in val)
    else:  # too few documents: the last 30% of the tokens (bytes, which may cut a character)
        assert (data["train"] + data["val"]).decode() == "".join(d if d.endswith("\n") else d + "\n" for d in docs)


# ---------------------------------------------------------------- errors and interruptions


BAD_INPUTS = {
    "bad.jsonl": (b'{"text": "fine"}\n{"text": "cut sh\n', "bad.jsonl:2: not a line of JSON"),
    "list.jsonl": (b'{"text": "fine"}\n[1, 2]\n', "list.jsonl:2: a list, not a JSON object"),
    "key.jsonl": (b'{"text": "fine"}\n{"body": "x", "id": 3}\n', "key.jsonl:2: no 'text' field (its fields: body, id)"),
    "null.jsonl": (b'{"text": null}\n', "null.jsonl:1: 'text' is null, not a string"),
    "bytes.jsonl": (b'{"text": "\xff"}\n', "bytes.jsonl:1: not a line of JSON"),
    "bad.jsonl.gz": (b"not gzip at all", "bad.jsonl.gz is not a readable gzip file"),
    "cut.jsonl.gz": (gzip.compress(b'{"text": "a"}\n' * 100)[:-20], "cut.jsonl.gz is not a readable gzip file"),
    "bad.parquet": (b"PAR1 not really", "bad.parquet is not a readable parquet file"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_a_bad_input_is_one_line_and_leaves_the_dataset_as_it_was(tmp_path, capsys, name):
    data, message = BAD_INPUTS[name]
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    write_jsonl(tmp_path / "good.jsonl", DOCS)
    assert prepare(tmp_path / "good.jsonl", "-o", tmp_path / "d") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}
    (tmp_path / name).write_bytes(data)
    capsys.readouterr()
    assert prepare(tmp_path / "good.jsonl", tmp_path / name, "-o", tmp_path / "d", "--force") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("name", ["bad.jsonl", "key.jsonl", "null.jsonl"])
def test_a_bad_input_met_while_training_a_bpe_is_one_line(tmp_path, capfd, name):
    data, message = BAD_INPUTS[name]
    write_jsonl(tmp_path / "good.jsonl", DOCS)
    (tmp_path / name).write_bytes(data)
    assert prepare(tmp_path / "good.jsonl", tmp_path / name, "-o", tmp_path / "d", "--tokenizer", "bpe:300") == 1
    err = capfd.readouterr().err
    assert err.startswith("training bpe:300 on ") and err.count("\n") == 2, err  # the trainer's error, said here
    assert err.splitlines()[1].startswith("error: ") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["good.jsonl", name])


def test_parquet_column_errors(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"body": ["a first text", "a second"], "n": [1, 2]}), tmp_path / "t.parquet")
    pq.write_table(pa.table({"text": ["a", None]}), tmp_path / "nulls.parquet")
    for args, message in ((["--text_key", "missing"], "has no column 'missing' (its columns: body, n)"),
                          (["--text_key", "n"], "column 'n' holds int64, not text"),
                          (["--text_key", "body"], None)):
        assert prepare(tmp_path / "t.parquet", "-o", tmp_path / "d", "--force", *args) == (1 if message else 0)
        assert message is None or message in capsys.readouterr().err
    assert prepare(tmp_path / "nulls.parquet", "-o", tmp_path / "n") == 1
    assert "nulls.parquet: the 'text' of row 2 is null, not text" in capsys.readouterr().err


@pytest.mark.parametrize("args, status, message", [
    (["--tokenizer", "wordpiece"], 2, "unknown tokenizer 'wordpiece' (no such file or folder either): --tokenizer takes"),
    (["--tokenizer", "bpe:abc"], 2, "--tokenizer bpe:abc: N must be a whole number of tokens from 257"),
    (["--tokenizer", "bpe:100"], 2, "N must be a whole number of tokens from 257"),
    (["--tokenizer", "{tmp}/corrupt.json"], 1, "corrupt.json is not a tokenizer.json that the tokenizers library reads"),
    (["--tokenizer", "{tmp}"], 1, "holds no tokenizer.json"),
    (["--tokenizer", "gpt2", "--char"], 2, "--char and --tokenizer gpt2 name two tokenizers"),
    (["--shard_tokens", "0"], 2, "--shard_tokens must be a positive number"),
    (["--workers", "0"], 2, "--workers must be at least 1"),
    (["--seed", "-1"], 2, "--seed must be a whole number from 0"),
])
def test_argument_errors(tmp_path, capsys, args, status, message):
    """A bad value is a usage error (exit 2); a tokenizer file that cannot be read is a failed run (exit 1)."""
    (tmp_path / "corrupt.json").write_text('{"model": {"type": "BPE", "vocab": ')
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    args = [a.format(tmp=tmp_path) for a in args]
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", *args) == status
    err = capsys.readouterr().err
    prefix = "error: " if status == 1 else "slo prepare: error: "
    assert err.startswith(prefix) and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()


def test_gpt2_without_its_bpe_says_why(tmp_path, capsys, monkeypatch):
    import tiktoken

    def offline(name):
        raise ConnectionError("Max retries exceeded (no network)")
    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "gpt2") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --tokenizer gpt2: tiktoken could not load GPT-2's BPE (Max retries") and "\n" == err[-1]


def test_a_full_disk_leaves_nothing_half_made(tmp_path, capsys, monkeypatch):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}

    def full(self, split, ids):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp / f"{split}.bin"))
    monkeypatch.setattr(TokenWriter, "write", full)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--force", "--tokenizer", "char") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the dataset") and "No space left on device; nothing was written" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "docs.jsonl"]
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "new" / "deeper" / "e") == 1
    assert not (tmp_path / "new").exists()  # the folders made for it are gone too


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_leaves_the_previous_dataset(tmp_path, monkeypatch, small_pieces, workers):
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 5)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}
    written = []

    def interrupted(self, split, ids):
        written.append(len(ids))
        if len(written) > 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(TokenWriter, "write", interrupted)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--force", "--tokenizer", "gpt2",
                   "--workers", workers) == 130
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "docs.jsonl"]


HELD_PREPARE = """
import sys, threading
from slo.runner.prepare import encode, prepare_command as prepare
from slo.runner.data.datasets import TokenWriter
encode_piece, write = encode.encode_piece, TokenWriter.write
def held(piece, mask):  # every piece after the first waits until the command is stopped
    if piece.first_doc:
        threading.Event().wait()
    return encode_piece(piece, mask)
def announced(self, split, ids):
    write(self, split, ids)
    print("wrote a piece", file=sys.stderr, flush=True)
encode.encode_piece, TokenWriter.write = held, announced
prepare.PIECE_BYTES = (2000, 2000)
from slo.cli import main
sys.exit(main(sys.argv[1:]))
"""
PLAIN_PREPARE = "import sys; from slo.cli import main; sys.exit(main(sys.argv[1:]))"
# PLAIN_PREPARE whose main thread blocks the stop signals once the bpe trainer has started, beside a thread
# that takes them (as a progress bar's monitor thread may)
TRAINING_ELSEWHERE = """
import signal, subprocess, sys, threading
from slo.runner.prepare import bpe
popen = subprocess.Popen
def started(*args, **kwargs):
    trainer = popen(*args, **kwargs)
    threading.Thread(target=threading.Event().wait, daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    return trainer
bpe.subprocess = type(sys)("patched")
bpe.subprocess.__dict__.update(vars(subprocess), Popen=started)
from slo.cli import main
sys.exit(main(sys.argv[1:]))
"""
# HELD_PREPARE whose main thread blocks the stop signals once the pool has started: the kernel gives them to
# another thread (the pool's), as it may at any time, and the main thread must still act on them
HELD_ELSEWHERE = HELD_PREPARE.replace("from slo.cli import main", """import signal
start_pool = encode._start_pool
def started(*args):  # each pool's workers and threads are made as in any run: they take the signals
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    pool = start_pool(*args)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    return pool
encode._start_pool = started
from slo.cli import main""")


def start_prepare(hang_guard, script: str, args: list, line: str):
    """slo prepare ARGS run by script in a session of its own, once it has printed ``line`` (to stderr):
    the process and what it printed."""
    child = subprocess.Popen([sys.executable, "-c", script, "prepare", *map(str, args)], stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    seen = []
    try:
        with hang_guard(60):
            while line not in "".join(seen) and (text := child.stderr.readline()):
                seen.append(text)
        assert line in "".join(seen), "".join(seen)
    except BaseException:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        raise
    return child, "".join(seen)


def stop(child, sig) -> str:
    """Ctrl-C (SIGINT to the whole process group) or SIGTERM to the command; what it printed after."""
    if sig == signal.SIGINT:
        os.killpg(child.pid, sig)
    else:
        child.send_signal(sig)
    try:
        return child.communicate(timeout=60)[1]  # a guard against a hang; it stops at once
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise


def children(pid: int) -> dict[int, bytes]:
    """The live child processes of pid, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("script", [HELD_PREPARE, HELD_ELSEWHERE], ids=["signal to the main thread", "to another"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_way_leaves_the_previous_dataset(tmp_path, hang_guard, sig, script):
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 40)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}
    child, err = start_prepare(hang_guard, script, [tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--force",
                                                    "--tokenizer", "char", "--workers", "2"], "wrote a piece")
    err += stop(child, sig)
    assert child.returncode == 128 + sig and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "docs.jsonl"]


def start_bpe_training(tmp_path, hang_guard, *args, script: str = PLAIN_PREPARE):
    """slo prepare big.txt -o tmp_path/d --tokenizer bpe:1048576, on 8 MB of random letters (minutes to train),
    once its trainer has started: the command, what it printed, and the trainer's pid."""
    (tmp_path / "big.txt").write_text(long_run("letters", 8 << 20))
    child, err = start_prepare(hang_guard, script, [tmp_path / "big.txt", "-o", tmp_path / "d", *args,
                                                    "--tokenizer", "bpe:1048576"], "training bpe:1048576")
    started = children(child.pid)
    assert [b"slo.runner.prepare.bpe" in command for command in started.values()] == [True], started  # it trains apart
    return child, err, next(iter(started))


@pytest.mark.parametrize("script", [PLAIN_PREPARE, TRAINING_ELSEWHERE], ids=["signal to the main thread", "to another"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_bpe_training_at_once(tmp_path, hang_guard, sig, script):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}
    child, err, trainer = start_bpe_training(tmp_path, hang_guard, "--force", script=script)
    err += stop(child, sig)
    assert child.returncode == 128 + sig and "Traceback" not in err, err
    assert not alive(trainer)  # killed, and waited for
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "d", "docs.jsonl"]


def test_bpe_training_ends_with_a_killed_prepare(tmp_path, hang_guard):
    child, _, trainer = start_bpe_training(tmp_path, hang_guard)
    child.kill()  # SIGKILL: no time to stop the trainer
    child.wait()
    child.stderr.close()
    with hang_guard(60):
        while alive(trainer):
            time.sleep(0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_a_killed_bpe_trainer_is_one_line(tmp_path, hang_guard):
    child, err, trainer = start_bpe_training(tmp_path, hang_guard)
    os.kill(trainer, signal.SIGKILL)  # as the kernel's out-of-memory killer does
    err += child.communicate(timeout=60)[1]
    assert child.returncode == 1 and err.splitlines()[1:] == [
        "error: the process training bpe:1048576 was killed by signal 9 (out of memory?); try a smaller N or less "
        "input"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_a_killed_prepare_is_swept_by_the_next(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".d.tmp-{dead}-abc").mkdir()
    (tmp_path / f".d.tmp-{dead}-abc" / "train_000000.bin").write_bytes(b"\0" * 100)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "docs.jsonl"]


# ---------------------------------------------------------------- light, and seen


def test_prepare_never_imports_torch(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    script = ("import sys; from slo.cli import main\n"
              f"for tok in ('bytes', 'char', 'bpe:300'):\n"
              f"    assert main(['prepare', {str(tmp_path / 'docs.jsonl')!r}, '-o', {str(tmp_path)!r} + '/' + tok[:3],"
              " '--tokenizer', tok]) == 0\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_progress_bar_shows_speed_documents_and_tokens(tmp_path, capsys, monkeypatch):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "gpt2") == 0
    err = capsys.readouterr().err
    assert "B/s" in err and f"{len([d for d in DOCS if d]):,} docs" in err and " tokens" in err


def test_the_workers_run_in_a_pool(tmp_path, monkeypatch, small_pieces):
    started = []
    start_pool = encode._start_pool
    monkeypatch.setattr(encode, "_start_pool", lambda *a: started.append(a[0]) or start_pool(*a))
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 5)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "gpt2", "--workers", "2") == 0
    assert started == [2]
    monkeypatch.setattr(prepare_module, "POOL_MIN_BYTES", 1 << 30)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "e", "--tokenizer", "gpt2") == 0
    assert started == [2]  # a small input, no --workers: encoded here


def test_an_error_in_a_worker_is_one_line(tmp_path, capsys, small_pieces):
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 5)
    with open(tmp_path / "docs.jsonl", "a") as f:
        f.write('{"text": 3}\n')
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "gpt2", "--workers", "2") == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'docs.jsonl'}:{len(DOCS) * 5 + 1}: 'text' is a number, not a string\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


def test_pieces_stay_small_whatever_the_input(tmp_path):
    write_jsonl(tmp_path / "in" / "docs.jsonl", DOCS * 50)
    (tmp_path / "in" / "long.txt").write_text("a few words on a line\n" * 2000, encoding="utf-8")
    (tmp_path / "in" / "one line.txt").write_text("no newline at all " * 500, encoding="utf-8")
    for n in range(30):
        (tmp_path / "in" / "small" / f"{n}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / "small" / f"{n}.txt").write_text("tiny\n" * n)
    reader = sources.Reader(sources.find_sources([str(tmp_path / "in")]), piece_bytes=1000)
    n_docs = reader.count()
    pieces = list(reader.pieces())
    longest_line = max(len(json.dumps({"text": d, "id": 999})) + 1 for d in DOCS)
    for piece in pieces:
        size = len(piece.data) if isinstance(piece.data, bytes) else sum(map(len, piece.data or []))
        assert size <= 1000 + max(sources.CUT_SLACK, longest_line) + (1000 if piece.kind == "files" else 0)
    assert n_docs == len(DOCS) * 50 + 2 + 30 and pieces[-1].first_doc + pieces[-1].n_docs == n_docs
    parts = [p for p in pieces if p.kind == "part"]
    assert b"".join(p.data for p in parts) == (tmp_path / "in" / "long.txt").read_bytes() + (
        tmp_path / "in" / "one line.txt").read_bytes()
    assert [p.open_end for p in parts].count(False) == 2


def test_bpe_on_a_large_input_is_trained_on_a_spread_of_it(tmp_path, capsys, monkeypatch, small_pieces):
    monkeypatch.setattr(prepare_module, "BPE_TRAIN_BYTES", 1000)
    write_jsonl(tmp_path / "docs.jsonl", DOCS * 10)
    assert prepare(tmp_path / "docs.jsonl", "-o", tmp_path / "d", "--tokenizer", "bpe:300") == 0
    err = capsys.readouterr().err
    assert "note: bpe:300 is trained on every " in err and "th piece of the input" in err
    ds = open_dataset(tmp_path, "d")
    train, _ = expected_split(DOCS * 10)
    assert ds.tokenizer.decode(ds.train) == "".join(d + "<|endoftext|>" for d in train if d)
