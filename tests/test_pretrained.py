"""init_from=gpt2 / hf:FOLDER: pretrained weights found as Hugging Face users keep them, the shape they
decide, finetuning from them, and the one-line error when they cannot be found (nothing is downloaded)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from slo.runner.checkpoint.store import load_checkpoint  # noqa: E402
from slo.runner.train_command import main as train_main  # noqa: E402
from test_checkpoint import Payload  # noqa: E402
from tiny_run import TEXT, make_dataset, metrics  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def pretrained_gpt2(folder: Path, steps: int = 60) -> float:
    """A tiny GPT-2 that has learned the tiny dataset a little, saved with save_pretrained; its val loss."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=256, n_positions=64,
                                     bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config)
    data = torch.tensor(list(TEXT.encode()), dtype=torch.long)
    split = int(len(data) * 0.9)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, split - 33, (16,), generator=generator)
        batch = torch.stack([data[s:s + 33] for s in starts.tolist()])
        loss = model(batch[:, :-1], labels=batch[:, :-1]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val = data[split:split + 32 * 40].view(40, 32)
        val_loss = model(val, labels=val).loss.item()
    model.save_pretrained(folder)
    return val_loss


def finetune_config(tmp_path: Path, init_from: str, extra: str = "") -> Path:
    """A finetuning config that sets no shape key: the weights decide them all."""
    data_dir = tmp_path / "data"
    if not (data_dir / "tiny").exists():
        make_dataset(data_dir)
    path = tmp_path / "finetune.config"
    path.write_text(
        f"TRAIN init_from='{init_from}' learning_rate=1e-3 max_iters=6\n"
        "MODEL dropout=0.0\n"
        f"DATA dataset=tiny data_dir='{data_dir}' batch_size=4 block_size=32 gradient_accumulation_steps=1\n"
        "LR_SCHEDULE warmup_iters=0 lr_decay_iters=6 min_lr=1e-4\n"
        f"LOGGING out_dir='{tmp_path / 'out'}' eval_interval=3 eval_iters=8 log_interval=1\n"
        "SYSTEM device=cpu dtype=float32 compile=False\n" + extra)
    return path


def publish_to_cache(hf_home: Path, repo: str, folder: Path) -> None:
    """folder's files as the Hugging Face cache holds a downloaded repo (snapshot, refs/main)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> tuple[Path, float]:
    folder = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    return folder, pretrained_gpt2(folder)


def test_finetuning_from_a_folder_starts_at_its_loss_and_goes_down(gpt2_folder, tmp_path, capsys):
    folder, pretrained_loss = gpt2_folder
    assert pretrained_loss < math.log(256) - 1  # it has learned something: a fresh model starts near ln 256
    assert train_main([str(finetune_config(tmp_path, f"hf:{folder}"))]) == 0
    out = capsys.readouterr().out
    assert f"starting from the weights of the pretrained {folder}" in out
    _, val = metrics(tmp_path / "out")
    assert abs(val[0] - pretrained_loss) < 0.15 and val[6] < val[0]
    ckpt = load_checkpoint(tmp_path / "out" / "ckpt.pt")
    args = ckpt["model_args"]
    assert (args["n_layer"], args["n_embd"], args["vocab_size"], args["bias"], args["block_size"]) == (2, 32, 256, True, 32)
    explained = (tmp_path / "out" / "config.explain.txt").read_text()
    assert "n_embd = 32" in explained and f"# <the pretrained {folder}>" in explained
    # resuming names no shape key either
    assert train_main([str(finetune_config(tmp_path, "resume")), "--max_iters=8", "--lr_decay_iters=8"]) == 0
    assert load_checkpoint(tmp_path / "out" / "ckpt.pt")["iter_num"] == 8


def test_a_shape_key_set_otherwise_names_both_places(gpt2_folder, tmp_path, capsys):
    folder, _ = gpt2_folder
    config = finetune_config(tmp_path, f"hf:{folder}", extra="MODEL n_layer=4\n")
    assert train_main([str(config), "--block_size=128"]) == 1
    err = capsys.readouterr().err
    assert f"n_layer=4 (from {config}:7:" in err and f"the pretrained {folder} has n_layer=2" in err
    assert "block_size=128 (from cli) is longer than the 64 positions" in err and err.count("\n") == 1


def test_a_dataset_with_ids_past_the_pretrained_vocabulary_is_refused_before_a_step(tmp_path, capsys):
    folder = tmp_path / "small-vocab"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100,
                                                         n_positions=64, bos_token_id=0, eos_token_id=0)
                                 ).save_pretrained(folder)
    assert train_main([str(finetune_config(tmp_path, f"hf:{folder}"))]) == 1
    err = capsys.readouterr().err
    err = err.splitlines()[-1] + "\n"  # after transformers' own progress bar
    assert err.startswith("error: ") and "100 ids (0..99)" in err and "prepare the data with their tokenizer" in err and not (tmp_path / "out" / "ckpt.pt").exists()


def test_gpt2_with_an_empty_cache_and_no_network_is_a_one_line_error(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    config = finetune_config(tmp_path, "gpt2")
    r = subprocess.run([sys.executable, "-m", "slo.cli", "train", str(config)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: the weights of init_from=gpt2 (openai-community/gpt2 or gpt2) are not in the "
                           f"Hugging Face cache ({tmp_path / 'hf' / 'hub'})") and "hf download openai-community/gpt2" in line


def test_gpt2_is_found_where_nanogpt_s_from_pretrained_cached_it(tmp_path):
    """nanoGPT calls from_pretrained('gpt2'), which the cache keeps as models--gpt2, not under openai-community."""
    folder = tmp_path / "tiny-gpt2"
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=256,
                                                         n_positions=32)).save_pretrained(folder)
    publish_to_cache(tmp_path / "hf", "gpt2", folder)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "slo.cli", "train", str(finetune_config(tmp_path, "gpt2")),
                        "--max_iters=1", "--eval_interval=1", "--eval_iters=1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "starting from the weights of the pretrained gpt2 with a fresh optimizer" in r.stdout
    args = load_checkpoint(tmp_path / "out" / "ckpt.pt")["model_args"]
    assert (args["n_layer"], args["n_embd"], args["block_size"]) == (1, 16, 32)


def test_nanogpt_finetune_shakespeare_runs_against_a_cached_stand_in(gpt2_folder, tmp_path):
    """nanoGPT's config/finetune_shakespeare.py, as written (init_from gpt2-xl, time.time() in a name),
    with a tiny stand-in for GPT-2 XL in a Hugging Face cache of its own; overrides only shrink the run."""
    folder, _ = gpt2_folder
    publish_to_cache(tmp_path / "hf", "openai-community/gpt2-xl", folder)
    make_dataset(tmp_path / "data", "shakespeare")
    (tmp_path / "finetune_shakespeare.py").write_text(
        "import time\n\nout_dir = 'out-shakespeare'\neval_interval = 5\neval_iters = 40\nwandb_log = False\n"
        "wandb_project = 'shakespeare'\nwandb_run_name = 'ft-' + str(time.time())\n\ndataset = 'shakespeare'\n"
        "init_from = 'gpt2-xl' # this is the largest GPT-2 model\n\n# only save checkpoints if the validation "
        "loss improves\nalways_save_checkpoint = False\n\n# the number of examples per iter:\nbatch_size = 1\n"
        "gradient_accumulation_steps = 32\nmax_iters = 20\n\n# finetune at constant LR\nlearning_rate = 3e-5\n"
        "decay_lr = False\n")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "slo.cli", "train", "finetune_shakespeare.py", "--data_dir=data",
                        "--device=cpu", "--compile=False", "--dtype=float32", "--max_iters=4",
                        "--gradient_accumulation_steps=2", "--eval_interval=2", "--eval_iters=2"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "starting from the weights of the pretrained openai-community/gpt2-xl" in r.stdout
    ckpt = load_checkpoint(tmp_path / "out-shakespeare" / "ckpt.pt")
    assert ckpt["config"]["init_from"] == "gpt2-xl" and ckpt["model_args"]["n_embd"] == 32
    assert ckpt["model_args"]["block_size"] == 64  # the stand-in's context: block_size was left to the weights
    assert json.loads((tmp_path / "out-shakespeare" / "config.json").read_text())["block_size"] == 64


def test_a_pytorch_model_bin_holding_other_objects_is_refused_as_such_and_never_run(tmp_path, capsys):
    folder = tmp_path / "hostile"
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=256,
                                                                 n_positions=32))
    model.config.save_pretrained(folder)
    marker = tmp_path / "ran"
    torch.save({**model.state_dict(), "payload": Payload(marker)}, folder / "pytorch_model.bin")
    assert train_main([str(finetune_config(tmp_path, f"hf:{folder}"))]) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    assert f"{folder / 'pytorch_model.bin'} holds Python objects other than tensors (posix.system), which slo " \
           "does not load" in err and "safetensors copy" in err
    assert "weights_only" not in err and "corrupt" not in err and "download it again" not in err
    whole = folder / "whole.bin"
    torch.save(model.state_dict(), whole)
    (folder / "pytorch_model.bin").write_bytes(whole.read_bytes()[:2000])  # cut short: that, and only that
    assert train_main([str(finetune_config(tmp_path, f"hf:{folder}"))]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pytorch_model.bin is truncated or corrupt (PytorchStreamReader failed reading zip archive" in line
    assert line.endswith("download it again") and "weights_only" not in line
