"""Datasets, tokenizers, token files and batches (slo/runner/data/text_tokenizers.py, dataset.py, batches.py, corpus.py)."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from slo.errors import RunError
from slo.runner.data import corpus
from slo.runner.data.batches import Batches
from slo.runner.data.datasets import HEADER_INTS, ShardedTokens, load_meta, open_dataset, unigram_entropy, write_dataset
from slo.runner.data.text_tokenizers import CharTokenizer, Tokenizer


def make_dataset(folder, train, val, meta=None, dtype=np.uint16):
    folder.mkdir(parents=True, exist_ok=True)
    np.asarray(train, dtype=dtype).tofile(folder / "train.bin")
    np.asarray(val, dtype=dtype).tofile(folder / "val.bin")
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def write_llmc(path, tokens, magic=20240520, version=1, count=None, dtype=np.uint16):
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = magic, version, len(tokens) if count is None else count
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=dtype).tobytes())


BYTE_META = {"tokenizer": "byte", "vocab_size": 256}


@pytest.fixture(scope="session")
def builtin(tmp_path_factory):
    """The built-in corpus, built once for the session the way a run builds it: on first use."""
    data_dir = tmp_path_factory.mktemp("data")
    corpus.ensure_builtin(data_dir, "builtin")
    return open_dataset(data_dir, "builtin", block_size=64, vocab_size=256)


# ---------------------------------------------------------------- tokenizers


@given(st.text())
def test_byte_tokenizer_round_trip(text):
    tok = Tokenizer.from_meta(BYTE_META)
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text


@given(st.text(min_size=1))
def test_char_tokenizer_round_trip(text):
    tok = Tokenizer.from_meta({"tokenizer": "char", "itos": sorted(set(text))})
    assert tok.vocab_size == len(set(text))
    assert tok.decode(tok.encode(text)) == text
    assert Tokenizer.from_meta(json.loads(json.dumps(tok.meta))).encode(text) == tok.encode(text)


def test_decode_replaces_ids_outside_the_vocabulary():
    assert Tokenizer.from_meta(BYTE_META).decode([104, 105, 300]) == "hi\ufffd"
    assert CharTokenizer(["a", "b"]).decode([0, 1, 7]) == "ab\ufffd"


def test_char_encode_names_unknown_characters():
    with pytest.raises(RunError, match=r"outside this dataset's 2-character vocabulary: 'z'"):
        CharTokenizer(["a", "b"]).encode("abz")


def test_nanogpt_meta_dict_is_char_level():
    tok = Tokenizer.from_meta({"vocab_size": 3, "itos": {0: "\n", 1: "a", 2: "b"}, "stoi": {"\n": 0, "a": 1, "b": 2}})
    assert isinstance(tok, CharTokenizer)
    assert tok.encode("ba\n") == [2, 1, 0]


def test_unknown_tokenizer_knows_its_size_but_refuses_text():
    tok = Tokenizer.from_meta({"tokenizer": "sentencepiece", "vocab_size": 32000})
    assert not tok.available and tok.vocab_size == 32000
    with pytest.raises(RunError, match="tokenizer \\(sentencepiece\\) is not available"):
        tok.decode([1, 2])
    with pytest.raises(RunError, match="not available"):
        tok.encode("hi")


def test_no_meta_means_gpt2():
    tok = Tokenizer.from_meta({})
    assert tok.name == "gpt2" and tok.vocab_size == 50257
    if not tok.available:
        with pytest.raises(RunError, match="tiktoken"):
            tok.decode([1])


@pytest.mark.parametrize("meta, message", [
    ([1, 2], "not a mapping"),
    ({"vocab_size": "big"}, "vocab_size must be an integer from 1 to"),
    ({"tokenizer": "char", "vocab_size": 3}, "needs its itos"),
    ({"itos": {1: "a"}}, "itos is not numbered"),
    ({"tokenizer": "byte", "vocab_size": 256, "dtype": "int8"}, "dtype must be one of"),
])
def test_bad_meta(meta, message):
    with pytest.raises(RunError, match=message):
        Tokenizer.from_meta(meta)


# ---------------------------------------------------------------- meta files


def test_load_meta_json(tmp_path):
    make_dataset(tmp_path / "d", [1], [1], BYTE_META)
    assert load_meta(tmp_path, "d")["tokenizer"] == "byte"


def test_load_meta_nothing(tmp_path):
    (tmp_path / "d").mkdir()
    assert load_meta(tmp_path, "d") == {}


def test_load_meta_bad_json(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.json").write_text("{oops")
    with pytest.raises(RunError, match="meta.json cannot be read"):
        load_meta(tmp_path, "d")


def test_load_nanogpt_meta_pkl(tmp_path):
    chars = sorted(set("hello world\n"))
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.pkl").write_bytes(pickle.dumps(meta))
    loaded = load_meta(tmp_path, "d")
    assert loaded["tokenizer"] == "char" and loaded["itos"] == chars and "stoi" not in loaded
    tok = Tokenizer.from_meta(loaded)
    assert tok.decode(tok.encode("hello")) == "hello"


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_meta_pkl_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 3, "x": _Exploit(marker)}))
    with pytest.raises(RunError, match=r"meta.pkl was not loaded: it asks for (posix|nt)\.system"):
        load_meta(tmp_path, "d")
    assert not marker.exists()


def test_corrupt_meta_pkl(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 65})[:-5])
    with pytest.raises(RunError, match="meta.pkl is corrupt"):
        load_meta(tmp_path, "d")


# ---------------------------------------------------------------- datasets


def test_open_byte_dataset(tmp_path):
    text = "def f(x):\n    return x\n"
    ids = list(text.encode())
    make_dataset(tmp_path / "d", ids, ids[:8], BYTE_META)
    ds = open_dataset(tmp_path, "d", block_size=7)
    assert ds.vocab_size == 256 and ds.train.dtype == np.uint16
    assert ds.tokenizer.decode(ds.train) == text
    assert ds.path == tmp_path / "d"


def test_open_uint32_dataset(tmp_path):
    ids = [0, 65535, 65536, 69999, 5]
    make_dataset(tmp_path / "d", ids, ids, {"tokenizer": "x", "vocab_size": 70000}, dtype=np.uint32)
    ds = open_dataset(tmp_path, "d")
    assert ds.train.dtype == np.uint32 and ds.train.tolist() == ids
    assert ds.tokenizer is None and ds.vocab_size == 70000


def test_meta_dtype_uint32_with_small_vocab(tmp_path):
    make_dataset(tmp_path / "d", [1, 2, 3], [4, 5], {**BYTE_META, "dtype": "uint32"}, dtype=np.uint32)
    assert open_dataset(tmp_path, "d").val.tolist() == [4, 5]


def test_nanogpt_dataset_without_meta_is_gpt2(tmp_path):
    make_dataset(tmp_path / "owt", [50256, 1, 2], [3, 4])
    ds = open_dataset(tmp_path, "owt", vocab_size=50304)
    assert ds.vocab_size is None and ds.meta == {}
    assert ds.train.tolist() == [50256, 1, 2]


def test_llmc_shards(tmp_path):
    folder = tmp_path / "fineweb10B"
    folder.mkdir()
    write_llmc(folder / "fineweb_val_000000.bin", [50256, 10, 11, 12])
    write_llmc(folder / "fineweb_train_000001.bin", list(range(100)))
    write_llmc(folder / "fineweb_train_000002.bin", list(range(1000, 1050)))
    ds = open_dataset(tmp_path, "fineweb10B", block_size=3)
    assert ds.val.tolist() == [50256, 10, 11, 12]
    assert isinstance(ds.train, ShardedTokens) and len(ds.train) == 150
    assert ds.train.shards[1].tolist() == list(range(1000, 1050))
    assert ds.meta == {"tokenizer": "gpt2"} and ds.vocab_size is None


def test_llmc_llama3_shard_is_uint32(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for split in ("train", "val"):
        write_llmc(folder / f"{split}.bin", [128000, 5, 6], magic=20240801, version=7, dtype=np.uint32)
    ds = open_dataset(tmp_path, "d")
    assert ds.train.tolist() == [128000, 5, 6] and ds.vocab_size == 128256


@pytest.mark.parametrize("how, message", [
    ("version", "has version 3, expected 1; the file is corrupt"),
    ("count", "header says 20 tokens .* but the file has 1044 bytes: it is truncated or corrupt"),
    ("short", "llm.c header cut short \\(100 of 1024 bytes\\)"),
])
def test_corrupt_llmc_file(tmp_path, how, message):
    folder = tmp_path / "d"
    make_dataset(folder, [1, 2, 3], [1, 2, 3], BYTE_META)
    bad = folder / "train.bin"
    if how == "version":
        write_llmc(bad, range(10), version=3)
    elif how == "count":
        write_llmc(bad, range(10), count=20)
    else:
        write_llmc(bad, range(10))
        bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(RunError, match=message):
        open_dataset(tmp_path, "d")


def test_truncated_raw_file(tmp_path):
    folder = make_dataset(tmp_path / "d", [1, 2, 3], [1, 2], BYTE_META)
    (folder / "val.bin").write_bytes((folder / "val.bin").read_bytes()[:-1])
    with pytest.raises(RunError, match="val.bin has 3 bytes, not a whole number of uint16 tokens.*truncated"):
        open_dataset(tmp_path, "d")


def test_empty_file(tmp_path):
    make_dataset(tmp_path / "d", [1, 2, 3], [], BYTE_META)
    with pytest.raises(RunError, match="val.bin is empty"):
        open_dataset(tmp_path, "d")


def test_token_id_beyond_vocabulary(tmp_path):
    make_dataset(tmp_path / "d", [1, 2, 300], [1, 2], BYTE_META)
    with pytest.raises(RunError, match="train.bin holds token id 300, but the vocabulary has only 256 ids"):
        open_dataset(tmp_path, "d")


def test_token_id_beyond_the_models_vocabulary(tmp_path):
    make_dataset(tmp_path / "d", [1, 2, 3], [1, 60000])
    with pytest.raises(RunError, match="token id 60000, but the vocabulary has only 50304 ids.*MODEL vocab_size"):
        open_dataset(tmp_path, "d", vocab_size=50304)


def test_split_shorter_than_block_size(tmp_path):
    make_dataset(tmp_path / "d", range(100), range(10), BYTE_META)
    open_dataset(tmp_path, "d", block_size=9)
    with pytest.raises(RunError, match=r"the val split of .*d is too short for block_size=64: it has 10 tokens "
                                       r".* block_size \+ 1 = 65; use a smaller block_size \(at most 9\)"):
        open_dataset(tmp_path, "d", block_size=64)


def test_missing_dataset_folder(tmp_path):
    (tmp_path / "shakespeare").mkdir()
    with pytest.raises(RunError) as err:
        open_dataset(tmp_path, "openwebtext")
    message = str(err.value)
    assert f"dataset folder {tmp_path / 'openwebtext'} does not exist" in message
    assert "holds: shakespeare" in message
    assert "slo prepare" in message and "dataset=builtin" in message


def test_missing_data_dir(tmp_path):
    with pytest.raises(RunError, match="nowhere does not exist"):
        open_dataset(tmp_path / "nowhere", "openwebtext")


def test_missing_val_bin(tmp_path):
    folder = make_dataset(tmp_path / "d", [1, 2], [1, 2], BYTE_META)
    (folder / "val.bin").unlink()
    with pytest.raises(RunError, match=r"has no val.bin \(.* holds: meta.json, train.bin\); make it again with `slo"):
        open_dataset(tmp_path, "d")


# ---------------------------------------------------------------- writing


def test_unigram_entropy_of_known_distributions():
    assert unigram_entropy(np.array([0, 1]), np.array([0, 1, 1, 0]), 2) == pytest.approx(np.log(2))
    # counts (3 + 1, 0 + 1) of 5: val of only 1s costs log 5
    assert unigram_entropy(np.array([0, 0, 0]), np.array([1, 1]), 2) == pytest.approx(np.log(5))


def test_write_dataset_keeps_a_folder_another_writer_finished(tmp_path):
    folder = tmp_path / "d"
    assert write_dataset(folder, np.arange(5), np.arange(3), BYTE_META)
    assert not write_dataset(folder, np.arange(9), np.arange(9), BYTE_META)
    assert len(open_dataset(tmp_path, "d").train) == 5
    assert write_dataset(folder, np.arange(9), np.arange(9), BYTE_META, replace=True)
    assert len(open_dataset(tmp_path, "d").train) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folders left


# ---------------------------------------------------------------- the built-in corpus


def test_builtin_corpus(builtin):
    assert builtin.meta["tokenizer"] == "byte" and builtin.vocab_size == 256
    assert builtin.meta["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert 2.0 < builtin.meta["unigram_entropy_nats"] < 6.0
    assert 1_000_000 < len(builtin.train) and 50_000 < len(builtin.val) < len(builtin.train)
    assert builtin.meta["tokens"] == {"train": len(builtin.train), "val": len(builtin.val)}
    text = builtin.tokenizer.decode(builtin.val[:20_000])
    assert "def " in text and "import " in text


def test_builtin_corpus_is_deterministic(tmp_path):
    a = corpus.build_builtin(tmp_path / "a", max_bytes=100_000)
    b = corpus.build_builtin(tmp_path / "b", max_bytes=100_000)
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_builtin_corpus_built_by_several_processes_at_once(tmp_path):
    code = "import sys; from slo.runner.data.corpus import build_builtin; build_builtin(sys.argv[1], max_bytes=300_000)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "builtin")]) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builtin"]
    ds = open_dataset(tmp_path, "builtin")
    assert len(ds.train) == ds.meta["tokens"]["train"]


def test_builtin_folder_with_files_missing_says_how_to_rebuild(tmp_path):
    corpus.build_builtin(tmp_path / "builtin", max_bytes=50_000)
    (tmp_path / "builtin" / "train.bin").unlink()
    with pytest.raises(RunError, match="slo prepare --builtin -o .* --force"):
        open_dataset(tmp_path, "builtin")


# ---------------------------------------------------------------- batches


def counting(n):
    """Token i is i: every row of a batch must count up by one."""
    return np.arange(n, dtype=np.uint16)


def test_batch_shapes_and_shift():
    x, y = Batches(counting(1000), batch_size=4, block_size=16).next()
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)


def test_batches_never_run_past_the_end():
    block = 8
    batches = Batches(counting(block + 3), batch_size=64, block_size=block, seed=0)
    starts = set()
    for _ in range(20):
        x, y = batches.next()
        assert int(y.max()) <= block + 2
        starts.update(x[:, 0].tolist())
    assert starts == {0, 1, 2}


def test_batches_reproducible_per_seed_and_rank():
    def draw(**kw):
        b = Batches(counting(5000), 8, 32, **kw)
        return [b.next()[0] for _ in range(3)]

    same = draw(seed=1, rank=0), draw(seed=1, rank=0)
    assert all(torch.equal(a, b) for a, b in zip(*same))
    assert not torch.equal(draw(seed=1, rank=0)[0], draw(seed=1, rank=1)[0])
    assert not torch.equal(draw(seed=1, rank=0)[0], draw(seed=2, rank=0)[0])


def test_batches_do_not_touch_the_global_rngs():
    torch.manual_seed(0)
    np.random.seed(0)
    Batches(counting(5000), 8, 32).next()
    after = torch.rand(1), np.random.rand()
    torch.manual_seed(0)
    np.random.seed(0)
    assert (torch.rand(1), np.random.rand()) == after


def test_batches_resume_from_state_dict():
    tokens = counting(5000)
    first = Batches(tokens, 8, 32, seed=7)
    for _ in range(5):
        first.next()
    buf = io.BytesIO()
    torch.save({"data": first.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["data"]
    resumed = Batches(tokens, 8, 32, seed=99)
    resumed.load_state_dict(state)
    for _ in range(3):
        (x1, y1), (x2, y2) = first.next(), resumed.next()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert resumed.drawn == first.drawn == 8


def test_batches_bad_state():
    with pytest.raises(RunError, match="data position cannot be restored"):
        Batches(counting(100), 2, 4).load_state_dict({"rng": {"bit_generator": "MT19937"}, "drawn": 1})


def test_sharded_batches_stay_inside_one_shard():
    shards = ShardedTokens([np.arange(0, 50, dtype=np.uint16), np.arange(1000, 1003, dtype=np.uint16),
                            np.arange(2000, 2040, dtype=np.uint16)])
    batches = Batches(shards, batch_size=32, block_size=6, seed=3)
    seen = set()
    for _ in range(10):
        x, y = batches.next()
        assert torch.equal(y, x + 1)  # a row across shards would jump
        seen.update((x[:, 0] // 1000).tolist())
    assert seen == {0, 2}  # the 3-token shard is too short for a row


def test_batches_too_short():
    with pytest.raises(RunError, match="it has 10 tokens and a batch row needs block_size \\+ 1 = 11"):
        Batches(counting(10), 2, 10)


def test_batches_from_the_builtin_corpus(builtin):
    x, y = Batches(builtin.train, 64, 256).next()
    assert x.shape == (64, 256) and int(x.max()) < 256
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_a_batch_with_an_id_past_the_vocabulary_is_a_run_error():
    tokens = np.zeros(5000, dtype=np.uint16)
    tokens[2000:2100] = 999  # past the vocabulary, where a spot check of the file might not look
    batches = Batches(tokens, 8, 16, seed=3, vocab_size=256, name="data/x's train split")
    with pytest.raises(RunError, match=r"data/x's train split holds token id 999, but the model's vocabulary"):
        for _ in range(1000):
            batches.next()


def test_a_hugging_face_tokenizer_json_travels_in_the_meta():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    bpe = tokenizers.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["def f(x):\n    return x * 2\n"] * 20,
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = Tokenizer.from_meta({"tokenizer": "hf", "tokenizer_json": bpe.to_str()})
    ids = tok.encode("def f(x):\n    return x * 2\n")
    assert tok.available and len(ids) < 20 and tok.decode(ids) == "def f(x):\n    return x * 2\n"
    assert Tokenizer.from_meta(tok.meta).encode("return x") == tok.encode("return x")
    with pytest.raises(RunError, match="tokenizer.json of this model cannot be read"):
        Tokenizer.from_meta({"tokenizer": "hf", "tokenizer_json": "{not json"})
    with pytest.raises(RunError, match="needs its tokenizer.json text"):
        Tokenizer.from_meta({"tokenizer": "hf", "vocab_size": 300})
