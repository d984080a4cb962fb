"""``slo prepare``: text files and folders to datasets (slo/runner/prepare.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slo.cli import main
from slo.runner import corpus
from slo.runner.dataset import open_dataset


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


@pytest.mark.parametrize("args, message", [
    (["{src}"], "say where the dataset goes: -o DATA_DIR/NAME"),
    (["-o", "{tmp}/d"], "give text files or folders to read"),
    (["{tmp}/missing.txt", "-o", "{tmp}/d"], "missing.txt does not exist"),
    (["{src}/image.png", "-o", "{tmp}/d"], "no text found in 1 file"),
    (["{src}", "-o", "{tmp}/d", "--val_fraction", "1"], "--val_fraction must be between 0 and 1"),
    (["{src}", "--builtin", "-o", "{tmp}/d"], "--builtin takes no INPUT files"),
    (["{src}", "-o", "{src}/a.txt"], "exists and is not a folder"),
    (["{tmp}/tiny.txt", "-o", "{tmp}/d"], "3 tokens cannot be split with --val_fraction 0.1"),
    (["{src}", "-o", "{tmp}/d", "--val-fraction=0.2"], "unexpected arguments: --val-fraction=0.2"),
])
def test_errors(tmp_path, texts, capsys, args, message):
    (tmp_path / "tiny.txt").write_text("ab")
    args = [a.format(src=texts, tmp=tmp_path) for a in args]
    assert prepare(*args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") or "\nerror: " in err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "d").exists()
