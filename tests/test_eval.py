"""slo eval: lm-evaluation-harness's tasks on slo's own model give the scores its hf model gives on the
export, the loglikelihoods are the model's log-softmax sums, generation stops at a stop sequence, and the
command's errors are one line. Local tasks only (JSONL under tmp_path), never a download."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"  # before datasets reads them

import torch  # noqa: E402
from test_hf import SHAPES, export, save_run  # noqa: E402

from slo import cli  # noqa: E402
from slo.errors import RunError  # noqa: E402
from slo.runner.data.text_tokenizers import ByteTokenizer, Tokenizer  # noqa: E402

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("transformers")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from slo.evals.lm import SloLM, cut_at_stop  # noqa: E402

BYTES = {"tokenizer": "byte", "vocab_size": 256}
TEXT = "".join(f"def f{i}(x):\n    return x * {i % 7} + {i % 3}\n\n" for i in range(60))
MC = [{"question": f"def f{i}(x):\n    return x *", "choices": [" 1", " 2", " 3", " 4"], "label": i % 4}
      for i in range(6)]
LL = [{"context": "def f1(x):\n    return", "continuation": " x * 1"},
      {"context": TEXT[:80], "continuation": TEXT[80:100]},  # longer than block_size: cut from the left
      {"context": "x", "continuation": " + 2\n"}]
ROLLING = [{"text": TEXT[:40]}, {"text": TEXT[100:190]}, {"text": "ab"}]
GEN = [{"prompt": f"def f{i}(x):\n", "answer": f"    return x * {i % 7} "} for i in range(5)] + [{"prompt": "x", "answer": "y"}]


def metrics(*specs: str) -> str:
    """A YAML metric_list of name[:aggregation:higher_is_better] (default: mean, true)."""
    lines = ["metric_list:"]
    for spec in specs:
        name, aggregation, higher = spec.split(":") if ":" in spec else (spec, "mean", "true")
        lines += [f"  - metric: {name}", f"    aggregation: {aggregation}", f"    higher_is_better: {higher}"]
    return "\n".join(lines) + "\n"


TASKS = {  # name: (data, the YAML's task-specific lines)
    "slo_mc": (MC, "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
               "doc_to_target: '{{label}}'\n" + metrics("acc", "acc_norm")),
    "slo_ll": (LL, "output_type: loglikelihood\ndoc_to_text: '{{context}}'\ndoc_to_target: '{{continuation}}'\n"
               + metrics("perplexity:perplexity:false", "acc")),
    "slo_rolling": (ROLLING, "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
                    + metrics("word_perplexity:weighted_perplexity:false",
                            "byte_perplexity:weighted_perplexity:false", "bits_per_byte:bits_per_byte:false")),
    "slo_gen": (GEN, "output_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{answer}}'\n"
                "generation_kwargs:\n  until: [\"\\n\", \"+\"]\n  max_gen_toks: 8\n  do_sample: false\n"
                + metrics("exact_match")),
}


def write_tasks(folder: Path) -> Path:
    """The four tasks as YAML files reading JSONL files beside them (dataset_path: json)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (docs, lines) in TASKS.items():
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        (folder / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\n{lines}")
    return folder


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def manager(tasks):
    return TaskManager(include_path=str(tasks))


def bpe_meta() -> dict:
    """A byte-level BPE of 300 tokens trained here on TEXT, as slo prepare --tokenizer bpe:300 makes it."""
    from slo.runner.prepare.bpe import train_bpe
    from slo.runner.prepare.encode import TokenizerPlan

    plan = TokenizerPlan("hf", "bpe:300", train_vocab=300)
    train_bpe(plan, TEXT.split("\n\n"), 60)
    return plan.meta


def train(model, meta: dict, steps: int = 80):
    """model trained a few steps on TEXT, so that it answers some questions and writes newlines and
    spaces; in eval mode."""
    ids = torch.tensor(Tokenizer.from_meta(meta).encode(TEXT))
    block = model.args.block_size
    starts = torch.randint(0, len(ids) - block - 1, (steps, 8), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for batch in starts:
        x = torch.stack([ids[i:i + block] for i in batch])
        y = torch.stack([ids[i + 1:i + block + 1] for i in batch])
        optimizer.zero_grad()
        model(x, y)[1].backward()
        optimizer.step()
    return model.eval()


def trained_run(folder: Path, meta: dict, shape: str):
    """A run folder whose ckpt.pt holds a model of shape trained on TEXT; returns the model."""
    from slo.runner.checkpoint.store import load_checkpoint, save_checkpoint

    model = train(save_run(folder, meta, vocab_size=meta["vocab_size"], **SHAPES[shape][0]), meta)
    save_checkpoint(folder / "ckpt.pt", {**load_checkpoint(folder), "model": model.state_dict()})
    return model

CASES = {"gpt2-bpe": ("gpt2", "bpe"), "llama-bytes": ("llama", "byte"), "gpt2-bytes": ("gpt2", "byte"),
         "llama-bpe": ("llama", "bpe")}


@pytest.fixture(scope="module", params=list(CASES))
def run(request, tmp_path_factory) -> tuple[Path, Path]:
    """(a run folder with a ckpt.pt of a random model, its export folder)."""
    shape, tokenizer = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    meta = bpe_meta() if tokenizer == "bpe" else BYTES
    trained_run(folder, meta, shape)
    assert export(folder, "-o", folder / "hf") == 0
    return folder, folder / "hf"


def evaluate(model, model_args, manager, **options):
    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=list(TASKS), task_manager=manager,
                                   batch_size=4, bootstrap_iters=0, **options)


def slo_evaluate(folder: Path, manager, batch_size: int = 4):
    from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint
    from slo.runner.sample import tokenizer_for

    ckpt = load_checkpoint(folder)
    lm = SloLM(model_from_checkpoint(ckpt), tokenizer_for(ckpt, folder), batch_size=batch_size,
               eot_id=ckpt["meta"].get("eot_id"))
    return evaluate(lm, None, manager), lm


def scores(results) -> dict:
    return {task: {k: v for k, v in metrics.items() if "," in k and "stderr" not in k}
            for task, metrics in results["results"].items()}


def test_scores_equal_lm_evals_hf_model_on_the_export(run, manager):
    """acc, acc_norm and exact_match exactly; the perplexities to float32's rounding of logits; and the
    responses themselves (log-likelihoods, greedy flags, generated texts) request by request."""
    folder, hf = run
    ours, _ = slo_evaluate(folder, manager)
    theirs = evaluate("hf", {"pretrained": str(hf), "device": "cpu"}, manager)
    mine, their = scores(ours), scores(theirs)
    assert mine.keys() == their.keys() == set(TASKS)
    for task in TASKS:
        assert mine[task].keys() == their[task].keys()
        for metric, value in mine[task].items():
            if metric.startswith(("acc", "exact_match")):
                assert value == their[task][metric], (task, metric)
            else:
                assert math.isclose(value, their[task][metric], rel_tol=1e-5), (task, metric)
    for task in TASKS:
        for a, b in zip(ours["samples"][task], theirs["samples"][task], strict=True):
            for x, y in zip(a["filtered_resps"], b["filtered_resps"], strict=True):
                assert type(x) is type(y)
                if isinstance(x, str):
                    assert x == y
                elif isinstance(x, tuple):  # (log-likelihood, greedy)
                    assert x[0] == pytest.approx(y[0], abs=1e-4) and x[1] == y[1]
                else:
                    assert x == pytest.approx(y, abs=1e-4)

@functools.cache
def trained(shape: str = "gpt2", tokenizer: str = "byte"):
    """(a model of shape trained on TEXT, its tokenizer)."""
    import tempfile

    meta = bpe_meta() if tokenizer == "bpe" else BYTES
    with tempfile.TemporaryDirectory() as folder:
        return trained_run(Path(folder), meta, shape), Tokenizer.from_meta(meta)

def direct_loglikelihood(model, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """The model's own log-softmax sum over continuation after context (cut to block_size + 1 from the left)."""
    ids = (context + continuation)[-(model.args.block_size + 1):]
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    logp = torch.log_softmax(logits[0].double(), dim=-1)[-len(continuation):]
    target = torch.tensor(continuation)
    return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())


def requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=0) for a in args]


@pytest.mark.parametrize("shape", ["gpt2", "llama"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_loglikelihoods_are_the_models_log_softmax_sums(shape, batch_size):
    model, tokenizer = trained(shape)
    lm = SloLM(model, tokenizer, batch_size=batch_size)
    pairs = [("def f(x):", " return x"), ("", "abc"), (TEXT[:70], TEXT[70:75]), ("a", "b"), ("ab ", "cd")]
    got = lm.loglikelihood(requests("loglikelihood", pairs))
    for (context, continuation), (logp, greedy) in zip(pairs, got, strict=True):
        whole = tokenizer.encode(context.rstrip() + context[len(context.rstrip()):] + continuation)
        head = tokenizer.encode(context.rstrip()) or [lm.eot_token_id]
        want = direct_loglikelihood(model, head, whole[len(tokenizer.encode(context.rstrip())):])
        assert logp == pytest.approx(want[0], abs=1e-5)
        assert greedy == want[1]


def test_a_greedy_continuation_is_flagged_greedy():
    model, tokenizer = trained()
    lm = SloLM(model, tokenizer)
    context = tokenizer.encode("def f(x):")
    greedy = model.generate(torch.tensor([context]), 4, temperature=0)[0, len(context):].tolist()
    other = [(greedy[0] + 1) % 256, *greedy[1:]]
    (_, flag), (_, other_flag) = lm._loglikelihood_tokens([(None, context, greedy), (None, context, other)])
    assert (flag, other_flag) == (True, False)


def test_rolling_loglikelihood_is_the_whole_texts_log_probability():
    """Windows of block_size after the end-of-text token: the first token scored after it, each next window
    after the tokens before it."""
    model, tokenizer = trained()
    lm = SloLM(model, tokenizer, batch_size=2)
    text = TEXT[:75]
    ids = tokenizer.encode(text)
    want = sum(direct_loglikelihood(model, [lm.eot_token_id, *ids[:start]][-32:], ids[start:start + 32])[0]
               for start in range(0, len(ids), 32))
    (got,) = lm.loglikelihood_rolling(requests("loglikelihood_rolling", [(text,)]))
    assert got == pytest.approx(want, abs=1e-4)


class CountingModel(torch.nn.Module):
    """The model, counting the tokens its generate_steps yields."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.args, self.steps = model, model.args, 0

    def forward(self, idx):
        return self.inner(idx)

    def generate_steps(self, *args, **kwargs):
        for step in self.inner.generate_steps(*args, **kwargs):
            self.steps += 1
            yield step


def test_generation_stops_at_the_stop_sequence():
    model, tokenizer = trained()
    counting = CountingModel(model)
    lm = SloLM(counting, tokenizer)
    (free,) = lm.generate_until(requests("generate_until", [("def f", {"max_gen_toks": 12})]))
    assert counting.steps == 12 and len(free.encode()) >= 6
    stop = free[3:5]
    counting.steps = 0
    (cut,) = lm.generate_until(requests("generate_until", [("def f", {"until": [stop], "max_gen_toks": 12})]))
    assert cut == free[:free.index(stop)]
    assert counting.steps == len(tokenizer.encode(free[:free.index(stop) + len(stop)]))


def test_generation_batches_give_the_texts_one_at_a_time_gives():
    """Contexts of several lengths in batches of 2 (each batch one length) and alone."""
    model, tokenizer = trained("llama")
    prompts = [("def f", {"max_gen_toks": 6}), ("x = ", {"max_gen_toks": 6}), ("def g", {"max_gen_toks": 6}),
               ("return", {"until": ["a"], "max_gen_toks": 6}), (TEXT[:60], {"max_gen_toks": 6})]
    batched = SloLM(model, tokenizer, batch_size=2).generate_until(requests("generate_until", prompts))
    alone = [SloLM(model, tokenizer, batch_size=1).generate_until(requests("generate_until", [p]))[0]
             for p in prompts]
    assert batched == alone
    context = torch.tensor([tokenizer.encode(TEXT[:60])[-(32 - 6):]])
    assert batched[-1] == tokenizer.decode(model.generate(context, 6, temperature=0)[0, context.size(1):])


def test_cut_at_stop_keeps_the_text_before_the_first_stop():
    assert cut_at_stop("abcdef", ("d", "b")) == "a"
    assert cut_at_stop("abc", ()) == "abc"


def test_end_of_text_is_the_exports():
    model, _ = trained()
    assert SloLM(model, ByteTokenizer()).eot_token_id == 255
    bpe_model, tokenizer = trained(tokenizer="bpe")
    assert SloLM(bpe_model, tokenizer).eot_token_id == tokenizer.vocab_size - 1
    assert tokenizer.decode([tokenizer.vocab_size - 1]) == "<|endoftext|>"


# ---------------------------------------------------------------- the command


def slo_eval(*argv) -> int:
    return cli.main(["eval", *map(str, argv)])


@pytest.fixture(scope="module")
def byte_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("byte_run")
    save_run(folder, BYTES)
    return folder


def test_the_command_prints_the_harness_table_and_writes_json(byte_run, tasks, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert slo_eval(byte_run, "--tasks", "slo_mc,slo_gen", "--include_path", tasks, "--batch_size", "2",
                    "--device", "cpu", "--limit", "3", "--num_fewshot", "1", "--json", out) == 0
    printed = capsys.readouterr().out
    assert "|  Tasks  |" in printed or "|Tasks" in printed.replace(" ", "")
    assert "slo_mc" in printed and "acc_norm" in printed and "exact_match" in printed
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"slo_mc", "slo_gen"}
    assert data["n-samples"]["slo_mc"]["effective"] == 3
    assert data["n-shot"] == {"slo_mc": 1, "slo_gen": 1}
    assert "samples" not in data
    assert 0 <= data["results"]["slo_mc"]["acc,none"] <= 1


def test_an_unknown_task_names_the_closest_known(byte_run, tasks, capsys):
    assert slo_eval(byte_run, "--tasks", "slo_mcc,hellaswagg", "--include_path", tasks) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'slo_mcc' (closest: slo_mc" in err and "'hellaswagg' (closest: hellaswag" in err


def test_a_missing_hub_dataset_is_one_line(byte_run, tmp_path):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "slo", "eval", str(byte_run), "--tasks", "arc_easy",
                             "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "the dataset allenai/ai2_arc is not in the Hugging Face datasets cache" in lines[0]
    assert "HF_DATASETS_OFFLINE" in lines[0]


def test_without_lm_eval_the_command_says_how_to_install_it(byte_run, tmp_path):
    (tmp_path / "lm_eval").mkdir()
    (tmp_path / "lm_eval" / "__init__.py").write_text("raise ImportError('no lm_eval here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "slo", "eval", str(byte_run), "--tasks", "x"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert (result.returncode, result.stderr) == (1, "error: slo eval needs lm-evaluation-harness: "
                                                      "pip install 'slo[eval]'\n")


@pytest.mark.parametrize("flags, said", [
    (["--limit", "0"], "--limit=0 must be >= 1"), (["--batch_size", "0"], "--batch_size=0 must be >= 1"),
    (["--include_path", "/no/such/folder"], "--include_path /no/such/folder is not a folder"),
    (["--device", "tpu"], "--device=tpu must be")])
def test_options_out_of_range_are_usage_errors(byte_run, flags, said, capsys):
    assert slo_eval(byte_run, "--tasks", "slo_mc", *flags) == 2
    assert said in capsys.readouterr().err


def test_a_continuation_longer_than_block_size_is_one_line():
    model, tokenizer = trained()
    with pytest.raises(RunError, match="a continuation of 40 tokens is longer than the model's block_size=32"):
        SloLM(model, tokenizer)._loglikelihood_tokens([(None, [1], list(range(40)))])


def test_an_ignored_generation_option_is_warned_of_once(caplog):
    model, tokenizer = trained()
    lm = SloLM(model, tokenizer)
    lm.generate_until(requests("generate_until", [("a", {"max_gen_toks": 2, "top_p": 0.9})] * 3))
    assert [r.getMessage() for r in caplog.records] == ["slo eval ignores the generation options top_p"]


def test_a_missing_local_data_file_is_one_line(byte_run, tmp_path, capsys):
    (tmp_path / "gone.yaml").write_text(TASKS_YAML_GONE.format(path=tmp_path / "gone.jsonl"))
    assert slo_eval(byte_run, "--tasks", "slo_gone", "--include_path", tmp_path, "--device", "cpu") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "a dataset of the tasks is missing" in err[0] and "gone.jsonl" in err[0]


TASKS_YAML_GONE = ("task: slo_gone\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {path}\n"
                   "test_split: test\noutput_type: loglikelihood\ndoc_to_text: '{{{{a}}}}'\ndoc_to_target: '{{{{b}}}}'\n")


def test_a_model_in_training_is_scored_in_eval_mode_and_left_training():
    """The trainer's model between steps: dropout off while scored, its mode as it was after."""
    from slo.runner.model.gpt import GPT, ModelArgs

    model, tokenizer = trained()
    dropped = GPT(ModelArgs(**{**model.args.to_dict(), "dropout": 0.5}))
    dropped.load_state_dict(model.state_dict())
    lm = SloLM(dropped.train(), tokenizer)
    pairs = requests("loglikelihood", [("def f(x):", " return x")])
    assert lm.loglikelihood(pairs) == SloLM(model, tokenizer).loglikelihood(pairs)
    lm.generate_until(requests("generate_until", [("def", {"max_gen_toks": 2})]))
    assert dropped.training


@pytest.mark.parametrize("vocab, eot", [(8, 5), (5, None)])
def test_a_character_tokenizers_end_of_text_is_the_id_past_its_alphabet(vocab, eot):
    from slo.runner.model.gpt import GPT, ModelArgs

    meta = {"tokenizer": "char", "vocab_size": 5, "itos": ["a", "b", " ", "c", "é"]}
    model = GPT(ModelArgs(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=vocab))
    if eot is None:  # the alphabet fills vocab_size and has no newline: no end of text
        with pytest.raises(RunError, match="has no end-of-text token"):
            SloLM(model, Tokenizer.from_meta(meta))
    else:
        assert SloLM(model, Tokenizer.from_meta(meta)).eot_token_id == eot


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert slo_eval(tmp_path / "nothing", "--tasks", "slo_mc") == 1
    assert capsys.readouterr().err.startswith(f"error: no checkpoint at {tmp_path / 'nothing'}")
