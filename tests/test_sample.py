"""`slo sample`: text from a checkpoint, with the dataset's tokenizer, and clear errors."""

from __future__ import annotations

import json
import pickle
import sys
from types import SimpleNamespace

import pytest
import torch

import argparse

from slo.runner import sample
from slo.errors import RunError
from slo.runner.checkpoint.store import save_checkpoint
from slo.runner.model.gpt import GPT, ModelArgs
from slo.runner.sample import generate_text, sample_from

TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=16)


class Bytes:
    """The smallest tokenizer: one id per UTF-8 byte."""

    vocab_size = 256

    def encode(self, text):
        return list(text.encode())

    def decode(self, ids):
        return bytes(ids).decode(errors="replace")


def tiny_model(vocab_size=256, **options) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelArgs(**TINY, vocab_size=vocab_size, **options)).eval()


def save_run(folder, model: GPT, config=None, prefix="") -> None:
    state = {"model": {prefix + k: v for k, v in model.state_dict().items()}, "model_args": model.args.to_dict(),
             "iter_num": 10, "best_val_loss": 1.0, "config": config or {"dataset": "builtin", "data_dir": "nowhere"}}
    save_checkpoint(folder / "ckpt.pt", state)


def main(argv: list[str]) -> int:
    """``slo sample ARGS`` as slo.cli runs it: known options parsed, the rest handed to run()."""
    assert argv[0] == "sample"
    parser = argparse.ArgumentParser(prog="slo sample")
    sample.add_arguments(parser, "sample")
    ns, rest = parser.parse_known_args(argv[1:])
    return sample.run(ns, rest)


def options(out_dir, **changes):
    values = dict(out_dir=str(out_dir), prompt="ab", max_new_tokens=12, temperature=0.8, top_k=200,
                  num_samples=1, seed=1337, device="cpu", dtype="float32", data_dir=None)
    return SimpleNamespace(**{**values, **changes})


# ---------------------------------------------------------------- generate_text


def test_generate_text_continues_the_prompt_for_each_sample():
    texts = generate_text(tiny_model(), Bytes(), "hello", max_new_tokens=30, num_samples=3,
                          generator=torch.Generator().manual_seed(0))
    assert len(texts) == 3
    assert all(t.startswith("hello") for t in texts)
    assert len(set(texts)) > 1  # the rows of one batch are sampled independently


def test_generate_text_is_reproducible_per_seed():
    def draw(seed):
        return generate_text(tiny_model(), Bytes(), "x", max_new_tokens=40, temperature=1.0, top_k=None,
                             generator=torch.Generator().manual_seed(seed))
    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_greedy_text_is_the_models_argmax_continuation():
    model = tiny_model(use_rope=True)
    text = generate_text(model, Bytes(), "ab", max_new_tokens=20, temperature=0)[0]
    expected = model.generate(torch.tensor([[97, 98]]), 20, temperature=0, use_cache=False)[0].tolist()
    assert text == Bytes().decode(expected)


def test_a_tiny_temperature_is_greedy_not_a_crash():
    model = tiny_model()
    idx = torch.tensor([[97, 98]])
    greedy = model.generate(idx, 20, temperature=0)
    assert torch.equal(model.generate(idx, 20, temperature=1e-45, top_k=None), greedy)


def test_an_empty_prompt_is_a_run_error():
    with pytest.raises(RunError, match="prompt is empty"):
        generate_text(tiny_model(), Bytes(), "", max_new_tokens=5)


def test_the_progress_bar_goes_to_stderr_only(capsys):
    generate_text(tiny_model(), Bytes(), "a", max_new_tokens=5, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "sampling" in captured.err


# ---------------------------------------------------------------- the command


def test_slo_sample_uses_the_meta_json_beside_the_checkpoint(tmp_path, capsys):
    save_run(tmp_path, tiny_model())
    (tmp_path / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    code = main(["sample", str(tmp_path), "--prompt", "def ", "--max_new_tokens", "10", "--num_samples", "2",
                 "--device", "cpu", "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    first, second = captured.out.split("\n" + "-" * 40 + "\n")
    assert first.startswith("def ") and second.startswith("def ")
    assert main(["sample", str(tmp_path / "ckpt.pt"), "--prompt", "def ", "--max_new_tokens", "10",
                 "--num_samples", "2", "--device", "cpu", "--seed", "3"]) == 0
    assert capsys.readouterr().out == captured.out  # a .pt path works too, and the seed fixes the text


def test_slo_sample_finds_the_dataset_named_in_the_config(tmp_path):
    itos = list("\n abcdefgh")
    data = tmp_path / "data" / "letters"
    data.mkdir(parents=True)
    (data / "meta.json").write_text(json.dumps({"tokenizer": "char", "vocab_size": len(itos), "itos": itos}))
    out = tmp_path / "out"
    save_run(out, tiny_model(vocab_size=len(itos)), {"dataset": "letters", "data_dir": str(tmp_path / "data")})
    [text] = sample_from(options(out, prompt="abc", max_new_tokens=30))
    assert text.startswith("abc") and len(text) == 33 and set(text) <= set(itos)


def test_the_meta_saved_in_the_checkpoint_wins_over_a_meta_json_written_since(tmp_path):
    itos = list("\n abcdefgh")
    model = tiny_model(vocab_size=len(itos))
    save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_args": model.args.to_dict(),
                                           "meta": {"tokenizer": "char", "vocab_size": len(itos), "itos": itos}})
    # a later run into the same out_dir that stopped before saving left another dataset's meta
    (tmp_path / "meta.json").write_text(json.dumps({"tokenizer": "char", "vocab_size": 3, "itos": list("xyz")}))
    [text] = sample_from(options(tmp_path, prompt="abc", max_new_tokens=30))
    assert text.startswith("abc") and len(text) == 33 and set(text) <= set(itos)


def test_slo_sample_reads_a_nanogpt_run_with_meta_pkl(tmp_path, monkeypatch):
    """nanoGPT: '_orig_mod.' names, a config without data_dir, data/<dataset>/meta.pkl with stoi/itos dicts."""
    chars = sorted(set("first citizen:\nbefore we proceed any further, hear me speak."))
    data = tmp_path / "data" / "shakespeare_char"
    data.mkdir(parents=True)
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}, f)
    out = tmp_path / "out-shakespeare-char"
    model = tiny_model(vocab_size=len(chars), bias=True)
    nano_args = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=True, vocab_size=len(chars), dropout=0.0)
    torch.save({"model": {"_orig_mod." + k: v for k, v in model.state_dict().items()}, "model_args": nano_args,
                "optimizer": {}, "iter_num": 5000, "best_val_loss": torch.tensor(1.47),
                "config": {"dataset": "shakespeare_char", "batch_size": 64}}, (out.mkdir() or out) / "ckpt.pt")
    monkeypatch.chdir(tmp_path)
    [text] = sample_from(options("out-shakespeare-char", prompt="hear me", max_new_tokens=40, top_k=5))
    assert text.startswith("hear me") and len(text) == 47 and set(text) <= set(chars)
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.chdir(elsewhere.mkdir() or elsewhere)  # run from another folder: data/ is found beside the out_dir
    [again] = sample_from(options(str(out), prompt="hear me", max_new_tokens=40, top_k=5))
    assert again == text
    moved = tmp_path / "datasets"
    (tmp_path / "data").rename(moved)  # the data moved: --data_dir says where
    [moved_text] = sample_from(options(str(out), prompt="hear me", max_new_tokens=40, top_k=5, data_dir=str(moved)))
    assert moved_text == text


def test_a_missing_checkpoint_prints_an_error_without_traceback(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nothing"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no checkpoint at") and "Traceback" not in err


def test_a_corrupt_checkpoint_prints_an_error_without_traceback(tmp_path, capsys):
    (tmp_path / "ckpt.pt").write_bytes(b"PK\x03\x04 not really a zip file")
    assert main(["sample", str(tmp_path), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--num_samples", "0"], "--num_samples=0 must be >= 1"),
    (["--temperature", "-1"], "--temperature=-1.0 must be a number >= 0"),
    (["--temperature", "inf"], "--temperature=inf must be a number >= 0"),
    (["--max_new_tokens", "-5"], "--max_new_tokens=-5 must be >= 0"),
    (["--top_k", "-1"], "--top_k=-1 must be >= 0"),
    (["--prompt", "FILE:/no/such/prompt.txt"], "cannot read the prompt file"),
    (["--device", "gpu"], "--device=gpu must be auto, cpu, cuda, cuda:N, mps"),
])
def test_bad_options_are_errors(tmp_path, capsys, args, message):
    save_run(tmp_path, tiny_model())
    assert main(["sample", str(tmp_path), "--device", "cpu", *args]) == 1
    assert message in capsys.readouterr().err


def test_unknown_arguments_are_refused(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--temprature", "0.5"]) == 2
    assert "unknown arguments: --temprature 0.5" in capsys.readouterr().err


def test_a_prompt_file_is_read(tmp_path):
    save_run(tmp_path, tiny_model())
    (tmp_path / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    (tmp_path / "prompt.txt").write_text("once upon")
    [text] = sample_from(options(tmp_path, prompt=f"FILE:{tmp_path / 'prompt.txt'}", max_new_tokens=3))
    assert text.startswith("once upon")


def test_a_tokenizer_larger_than_the_model_is_a_run_error(tmp_path):
    save_run(tmp_path, tiny_model(vocab_size=8))
    (tmp_path / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    with pytest.raises(RunError, match="the tokenizer has 256 tokens but the model only 8"):
        sample_from(options(tmp_path))


def test_a_checkpoint_without_any_meta_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # GPT-2 BPE, the fallback, cannot load here
    save_run(tmp_path, tiny_model())
    with pytest.raises(RunError, match=r"no meta.json or meta.pkl in .* and nowhere/builtin.*tiktoken"):
        sample_from(options(tmp_path))


def test_a_gpt2_dataset_without_tiktoken_s_cached_bpe_names_that_cause_alone(tmp_path, capsys, monkeypatch):
    from fuzz_targets import offline

    pytest.importorskip("tiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))  # nothing cached: it would download
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "empty-cache"))
    (tmp_path / "data" / "owt").mkdir(parents=True)
    (tmp_path / "data" / "owt" / "meta.json").write_text(json.dumps({"tokenizer": "gpt2", "vocab_size": 50257}))
    save_run(tmp_path / "out", tiny_model(vocab_size=50304), config={"dataset": "owt", "data_dir": str(tmp_path / "data")})
    with offline():
        assert main(["sample", str(tmp_path / "out"), "--device", "cpu"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: cannot encode the prompt: the meta of {tmp_path / 'data' / 'owt'} says tokenizer "
                           "'gpt2', and tiktoken could not load GPT-2's BPE")
    assert "TIKTOKEN_CACHE_DIR" in line and "meta.json" not in line
