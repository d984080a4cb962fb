"""How fast and how frugal `slo prepare --tokenizer gpt2` is, against nanoGPT's own method, on one machine.

    python benchmarks/bench_prepare.py [--sizes 10,100] [--repeat 1] [--workers N] [--json FILE]

A corpus of documents is generated here (pseudo-English: Zipf-distributed
words, punctuation, numbers, paragraphs, some accents and CJK) as a .jsonl
file at each size (MB of text; by default two sizes ten times apart). On it,
each in a fresh process, timed from start to exit, with the peak memory of
the process and all its children (the sum of their PSS, sampled every 20 ms):

  slo prepare         slo prepare corpus.jsonl --tokenizer gpt2 (all usable cores)
  nanoGPT, 1 process  what data/openwebtext/prepare.py computes: every document's
                      enc.encode_ordinary(text) + [enc.eot_token], the documents
                      held in memory, then concatenated into train.bin (uint16)
  nanoGPT, pool       the same with a process pool of one process per usable core
                      (as its datasets.map(num_proc=...) does)
  bpe:8192            slo prepare --tokenizer bpe:8192: the time to train the BPE
                      on the same text, and the whole run

GPT-2's real BPE cannot be fetched without a network, so by default both sides
use one locally built tiktoken Encoding: GPT-2's regex pattern, the 256 byte
ranks, merges of a byte-level BPE trained here on the first corpus (as many as
it yields, up to GPT-2's 50,000), and <|endoftext|> = 50256. The output names
it. With --real-gpt2 and tiktoken's GPT-2 files in its cache, the real one.
MB/s is megabytes of document text (UTF-8) per second of wall time. The JSON
goes to benchmarks/results/ unless --json says otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from resultfile import write_json  # benchmarks/resultfile.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_MERGES = 50000
SYLLABLES = ("ka ri to mo na shi ve lu pe ra en in an on er al or the st re de co ma li ti ne ro la se "
             "ba mi di pro con ex ter ment tion ing ly ous ive able").split()
OTHER_WORDS = "café naïve über façade déjà señor Zürich 日本語 東京 中文 данные ελληνικά".split()
ENC = None  # a child's tiktoken Encoding
SUFFIXES = ("", "", "", "", "", "", "", "", "", "", ",", ".", ".", "?", ";", ":", ".\n\n", "!")


# ---------------------------------------------------------------- the corpus


def vocabulary(rng) -> np.ndarray:
    words = {"".join(rng.choice(SYLLABLES, size=rng.integers(1, 5))) for _ in range(40000)}
    words = sorted(words) + [str(n) for n in rng.integers(0, 3000, 300)] + OTHER_WORDS
    words = np.array(words, dtype=object)
    rng.shuffle(words)
    return words


def make_corpus(path: Path, megabytes: float, seed: int) -> dict:
    """Documents of about 4.5 kB (lognormal, as openwebtext's) until megabytes of text; a .jsonl at path."""
    vocab = vocabulary(np.random.default_rng(0))  # the same words at every size
    weights = 1.0 / (np.arange(len(vocab)) + 2.7)
    cdf = np.cumsum(weights / weights.sum())
    rng = np.random.default_rng(seed)
    target, size, docs = int(megabytes * 1e6), 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            n = int(min(20000, max(20, rng.lognormal(6.3, 0.8))))
            words = vocab[np.minimum(np.searchsorted(cdf, rng.random(n)), len(vocab) - 1)]
            suffixes = np.array(SUFFIXES, dtype=object)[rng.integers(0, len(SUFFIXES), n)]
            text = " ".join(words + suffixes).replace("\n\n ", "\n\n").strip()
            text = text[0].upper() + text[1:]
            f.write(json.dumps({"text": text, "id": docs}, ensure_ascii=False) + "\n")
            size += len(text.encode("utf-8"))
            docs += 1
    return {"path": str(path), "text_bytes": size, "documents": docs, "file_bytes": path.stat().st_size}


def read_docs(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


# ---------------------------------------------------------------- the stand-in GPT-2 encoding


def gpt2_byte_names() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte (what byte-level BPE vocabularies spell), to the byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    names, extra = {}, 0
    for b in range(256):
        if b in keep:
            names[chr(b)] = b
        else:
            names[chr(256 + extra)] = b
            extra += 1
    return names


def build_local_gpt2(corpus: Path, ranks_file: Path) -> dict:
    """Train a byte-level BPE of GPT-2's pattern on corpus; write its ranks as tiktoken's .tiktoken format."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    t0 = time.perf_counter()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=256 + GPT2_MERGES, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(read_docs(corpus), trainer)
    names = gpt2_byte_names()
    ranks = {bytes([b]): b for b in range(256)}
    for token, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        ranks.setdefault(bytes(names[c] for c in token), len(ranks))
    with open(ranks_file, "w") as f:
        f.writelines(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items())
    return {"ranks": len(ranks), "merges": len(ranks) - 256, "trained_in_s": round(time.perf_counter() - t0, 2)}


def local_encoding(ranks_file: str):
    import tiktoken

    ranks = {}
    with open(ranks_file) as f:
        for line in f:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


# ---------------------------------------------------------------- what runs in each child process


def nanogpt_process(text):
    ids = ENC.encode_ordinary(text)  # encode_ordinary ignores any special tokens
    ids.append(ENC.eot_token)  # add the end of text token, e.g. 50256 for gpt2 bpe
    return np.array(ids, dtype=np.uint16)  # datasets keeps them in arrow; a uint16 array is smaller still


def nanogpt(corpus: str, out: Path, workers: int) -> dict:
    docs = read_docs(corpus)
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:  # datasets.map(num_proc=...)
            ids = pool.map(nanogpt_process, docs, chunksize=-(-len(docs) // workers))
    else:
        ids = [nanogpt_process(d) for d in docs]
    total = sum(len(a) for a in ids)
    arr = np.memmap(out / "train.bin", dtype=np.uint16, mode="w+", shape=(total,))
    idx, batches = 0, 1024  # nanoGPT writes in 1024 contiguous shards of the dataset
    for b in range(batches):
        part = ids[b * len(ids) // batches:(b + 1) * len(ids) // batches]
        if part:
            arr_batch = np.concatenate(part)
            arr[idx:idx + len(arr_batch)] = arr_batch
            idx += len(arr_batch)
    arr.flush()
    return {"tokens": total}


def child(mode: str, ranks_file: str, corpus: str, out: str, workers: int) -> None:
    global ENC
    import tiktoken

    out = Path(out)
    if ranks_file:
        ENC = local_encoding(ranks_file)
        tiktoken.get_encoding = lambda name: ENC  # what slo's Gpt2Tokenizer asks tiktoken for
    else:
        ENC = tiktoken.get_encoding("gpt2")
    if mode.startswith("nanogpt"):
        out.mkdir(parents=True, exist_ok=True)
        result = nanogpt(corpus, out, workers if mode == "nanogpt-pool" else 1)
    else:
        sys.path.insert(0, str(ROOT))
        from slo.cli import main
        from slo.runner.prepare import bpe

        trained = {}
        train_bpe = bpe.train_apart

        def timed(*args):
            t0 = time.perf_counter()
            train_bpe(*args)
            trained["train_s"] = time.perf_counter() - t0
        bpe.train_apart = timed
        tokenizer = "gpt2" if mode == "slo" else "bpe:8192"
        argv = ["prepare", corpus, "-o", str(out / "d"), "--tokenizer", tokenizer, "--val_fraction", "0.0005"]
        if main(argv + (["--workers", str(workers)] if workers else [])) != 0:
            sys.exit(1)
        meta = json.loads((out / "d" / "meta.json").read_text())
        result = {"tokens": meta["tokens"]["train"] + meta["tokens"]["val"], **trained}
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- the parent: time and memory


def tree_pss_kb(root: int) -> int:
    """The PSS of root and every descendant, in kB (RSS where smaps_rollup cannot be read)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier and p not in tree]
        tree.update(frontier)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            except OSError:
                pass
    return total


def measure(args: list[str]) -> dict:
    """Wall seconds, peak memory (MB, PSS of the process tree) and the RESULT line of one child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_kb(proc.pid))
            done.wait(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-2000:]}")
    result = json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT ")))
    return {"seconds": seconds, "peak_mb": peak[0] / 1024, **result}


def run_size(megabytes: float, seed: int, work: Path, ranks: str, workers: int, repeat: int) -> dict:
    corpus = make_corpus(work / f"corpus-{megabytes:g}MB.jsonl", megabytes, seed)
    rows = {}
    for mode in ("slo", "nanogpt-1", "nanogpt-pool", "bpe"):
        runs = []
        for _ in range(repeat):
            out = Path(tempfile.mkdtemp(dir=work, prefix=f"{mode}-"))
            runs.append(measure([mode, ranks, corpus["path"], str(out), str(workers)]))
            subprocess.run(["rm", "-rf", str(out)], check=True)
        best = min(runs, key=lambda r: r["seconds"])
        best["mb_per_s"] = corpus["text_bytes"] / 1e6 / best["seconds"]
        best["peak_mb"] = max(r["peak_mb"] for r in runs)
        rows[mode] = best
    if not rows["slo"]["tokens"] == rows["nanogpt-1"]["tokens"] == rows["nanogpt-pool"]["tokens"]:
        print(f"warning: token counts differ: { {m: r['tokens'] for m, r in rows.items()} }", file=sys.stderr)
    return {"megabytes": megabytes, "corpus": corpus, "methods": rows}


def print_table(sizes: list[dict], workers: int, encoding_note: str) -> None:
    names = {"slo": "slo prepare --tokenizer gpt2", "nanogpt-1": "nanoGPT, 1 process",
             "nanogpt-pool": f"nanoGPT, pool of {workers}"}
    print(f"\nencoding: {encoding_note}")
    print(f"{'text':>8}  {'method':<30} {'seconds':>8} {'MB/s':>7} {'peak MB':>8}  {'slo faster':>10} {'slo smaller':>11}")
    for size in sizes:
        rows = size["methods"]
        for mode, name in names.items():
            r = rows[mode]
            speed = rows["slo"]["mb_per_s"] / r["mb_per_s"]
            memory = r["peak_mb"] / rows["slo"]["peak_mb"]
            print(f"{size['corpus']['text_bytes'] / 1e6:>6.1f}MB  {name:<30} {r['seconds']:>8.2f} {r['mb_per_s']:>7.2f} "
                  f"{r['peak_mb']:>8.0f}  {speed:>9.2f}x {memory:>10.2f}x")
        bpe = rows["bpe"]
        print(f"{'':>8}  {'slo prepare --tokenizer bpe:8192':<30} {bpe['seconds']:>8.2f} {bpe['mb_per_s']:>7.2f} "
              f"{bpe['peak_mb']:>8.0f}  (training the BPE: {bpe.get('train_s', float('nan')):.2f} s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100", help="MB of text, comma-separated (default 10,100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each method; the fastest is kept")
    parser.add_argument("--workers", type=int, default=0, help="processes for slo and the pool (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real-gpt2", action="store_true", help="tiktoken's real GPT-2 BPE (needs its cache)")
    parser.add_argument("--json", help="where the results go (default benchmarks/results/bench_prepare-TIME.json)")
    ns = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from slo.runner.prepare.encode import usable_cpus

    workers = ns.workers or usable_cpus()
    sizes = [float(s) for s in ns.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_prepare-") as tmp:
        work = Path(tmp)
        ranks, note = "", "tiktoken's GPT-2 BPE"
        if not ns.real_gpt2:
            first = make_corpus(work / "train-encoding.jsonl", sizes[0], ns.seed + 1000)
            built = build_local_gpt2(Path(first["path"]), work / "local-gpt2.tiktoken")
            ranks = str(work / "local-gpt2.tiktoken")
            note = (f"GPT-2's real BPE cannot be downloaded here: a local tiktoken Encoding of GPT-2's pattern, "
                    f"256 bytes + {built['merges']:,} merges trained on a {sizes[0]:g} MB corpus of the same kind, "
                    f"<|endoftext|> = 50256, for both sides")
        print(f"{platform.processor() or platform.machine()}, {usable_cpus()} usable CPUs, Python "
              f"{platform.python_version()}; {note}", file=sys.stderr)
        results = [run_size(mb, ns.seed + i, work, ranks, workers, ns.repeat) for i, mb in enumerate(sizes)]
    print_table(results, workers, note)
    write_json({"encoding": note, "workers": workers, "usable_cpus": usable_cpus(),
                "python": platform.python_version(), "sizes": results}, "bench_prepare", ns.json)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        mode, ranks_file, corpus, out, workers = sys.argv[2:7]
        child(mode, ranks_file, corpus, out, int(workers))
    else:
        sys.exit(main())
