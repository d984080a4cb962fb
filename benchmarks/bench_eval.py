"""Examples per second of `slo eval` (slo's own model in lm-evaluation-harness) against `lm_eval --model hf`
on the same model exported with `slo export`, on one machine, in one run.

    python benchmarks/bench_eval.py [--docs 200] [--repeat 3] [--batch_size 16] [--device cpu] [--json FILE]

A model of random weights (byte-level, GPT-2-shaped: --n_layer, --n_embd,
--block_size) is saved as a checkpoint and exported; two local tasks are
written as JSONL with their YAML (never a download): a multiple-choice task
of --docs questions with four choices (loglikelihood requests) and a
generate_until task of --docs // 4 prompts (up to 32 new tokens, a newline
stopping). Both models are loaded once; then, for each task, the harness's
simple_evaluate runs on slo's LM and on its hf model (HFLM), alternating,
--repeat times each, at the same batch size. Examples per second is the
task's documents over the wall time of one simple_evaluate; the figure is the
best of the repeats, and the ratio slo / hf. The scores of both are printed
(they agree). The JSON goes to benchmarks/results/ unless --json says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local tasks only
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from resultfile import write_json  # noqa: E402  benchmarks/resultfile.py, beside this script

WORDS = "def return self class import for while if else print range len None True False".split()


def write_model(folder: Path, ns) -> Path:
    """A random byte-level GPT-2-shaped checkpoint in folder and its export; the export's path."""
    from slo import cli
    from slo.runner.checkpoint.store import save_checkpoint
    from slo.runner.model.gpt import GPT, ModelArgs

    torch.manual_seed(0)
    model = GPT(ModelArgs(n_layer=ns.n_layer, n_head=ns.n_embd // 32, n_embd=ns.n_embd, block_size=ns.block_size,
                          vocab_size=256, bias=True))
    save_checkpoint(folder / "ckpt.pt", {"model": model.state_dict(), "model_args": model.args.to_dict(),
                                         "iter_num": 0, "best_val_loss": 0.0, "config": {},
                                         "meta": {"tokenizer": "byte", "vocab_size": 256}})
    assert cli.main(["export", str(folder), "-o", str(folder / "hf")]) == 0
    return folder / "hf"


def write_tasks(folder: Path, docs: int) -> dict[str, int]:
    """The two tasks' JSONL and YAML in folder; {task: documents}."""
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    tasks = {
        "bench_mc": ([{"question": text(12), "choices": [" " + text(2) for _ in range(4)], "label": rng.randrange(4)}
                      for _ in range(docs)],
                     "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
                     "doc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"),
        "bench_gen": ([{"prompt": text(10), "answer": text(3)} for _ in range(max(1, docs // 4))],
                      "output_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{answer}}'\n"
                      "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 32\n  do_sample: false\n"
                      "metric_list:\n  - metric: exact_match\n"),
    }
    for name, (rows, lines) in tasks.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (folder / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / name}.jsonl\n"
            f"test_split: test\n{lines}")
    return {name: len(rows) for name, (rows, _) in tasks.items()}


def timed(lm, task: str, manager) -> tuple[float, dict]:
    import lm_eval

    start = time.perf_counter()
    results = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, log_samples=False,
                                      bootstrap_iters=0)
    seconds = time.perf_counter() - start
    scores = {k: v for k, v in results["results"][task].items() if "," in k and "stderr" not in k}
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200, help="multiple-choice questions (default: 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side per task (default: 3)")
    parser.add_argument("--batch_size", type=int, default=16, help="both sides' batch size (default: 16)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--n_layer", type=int, default=4)
    parser.add_argument("--n_embd", type=int, default=128)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--json", help="where the results go (default: benchmarks/results/eval-TIME.json)")
    ns = parser.parse_args()

    import logging

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from slo.evals.lm import SloLM
    from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint
    from slo.runner.data.text_tokenizers import ByteTokenizer

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hf_folder = write_model(folder, ns)
        counts = write_tasks(folder, ns.docs)
        manager = TaskManager(include_path=str(folder))
        sides = {"slo": SloLM(model_from_checkpoint(load_checkpoint(folder)), ByteTokenizer(), device=ns.device,
                              batch_size=ns.batch_size),
                 "hf": HFLM(pretrained=str(hf_folder), device=ns.device, batch_size=ns.batch_size)}
        rows = {}
        for task, docs in counts.items():
            times = {side: [] for side in sides}
            scores = {}
            for _ in range(ns.repeat):
                for side, lm in sides.items():  # alternating: slo, hf, slo, hf, ...
                    seconds, scores[side] = timed(lm, task, manager)
                    times[side].append(seconds)
            best = {side: docs / min(t) for side, t in times.items()}
            rows[task] = {"docs": docs, "examples_per_s": best, "ratio_slo_over_hf": best["slo"] / best["hf"],
                          "seconds": times, "scores": scores}
            print(f"{task}: {docs} docs, slo {best['slo']:.1f} ex/s, hf {best['hf']:.1f} ex/s, "
                  f"ratio {best['slo'] / best['hf']:.2f}; scores slo {scores['slo']} hf {scores['hf']}")
    import lm_eval

    write_json({"benchmark": "eval", "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                                                 "torch": torch.__version__, "lm_eval": lm_eval.__version__,
                                                 "cpus": os.cpu_count(), "device": ns.device,
                                                 "threads": torch.get_num_threads()},
                "settings": vars(ns), "tasks": rows}, "eval", ns.json)


if __name__ == "__main__":
    main()
