"""``slo prepare --tokenizer bpe:N``: a byte-level BPE trained on the input, in a process that a signal stops.

The tokenizers library trains in Rust, where Python's signal handlers cannot
run: trained in the command's own process, Ctrl-C and SIGTERM would wait for
the training to end. So ``train_apart`` trains in a child process, a fresh
interpreter running ``trainer_main``, which reads the input itself and sends
back the tokenizer.json; the command waits for it and kills it when it is
stopped. A fresh interpreter, not a fork: a forked child would inherit a
Rust thread pool whose threads it lacks (the library then trains on one
thread), the command's other threads and its signal handlers; and not
multiprocessing's spawn, which runs the caller's main script again in the
child. The child has a session of its own, so that Ctrl-C reaches the
command alone, and ends itself when its stdin closes, so that it outlives no
command, even one killed with SIGKILL.

The pre-tokenizer is GPT-2's byte-level one, then a cut of each pre-token
into runs of at most MAX_PRETOKEN bytes: the trainer's time grows with the
square of the longest pre-token (a run of letters with no space, such as a
paragraph of Chinese or a DNA sequence, is one, as is a long run of digits,
spaces or punctuation), and a megabyte of letters did not finish in a
quarter of an hour. The cut is part of the tokenizer.json, so encoding sees
the same pieces, and a long word encodes in time linear in its length too.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterable, Iterator

from ...errors import RunError
from .encode import EOT_TEXT, SIGNAL_TURN_S, TokenizerPlan, hf_library
from .inputs import Reader, piece_texts, progress_bar

MAX_PRETOKEN = 256  # bytes: longer than any token a BPE of GPT-2's pattern learns from text


def pre_tokenizer():
    """GPT-2's byte-level pre-tokenizer, each of its pieces then cut into runs of at most MAX_PRETOKEN bytes
    (after the byte-level step a character stands for a byte)."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=False),
        pre_tokenizers.Split(Regex(f".{{1,{MAX_PRETOKEN}}}"), "isolated"),
    ])


def train_bpe(plan: TokenizerPlan, texts: Iterable[str], n_docs: int) -> None:
    """Train plan's bpe:N on texts, here: GPT-2's byte-level BPE (its pattern, its byte alphabet first, pieces
    capped), N - 1 ids learned and the end of text as the last."""
    library = hf_library(plan.spec)
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = library.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=plan.train_vocab - 1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer, length=n_docs)
    backend.add_special_tokens([EOT_TEXT])
    plan.tokenizer_json = backend.to_str()
    plan.vocab_size = backend.get_vocab_size(with_added_tokens=True)
    plan.eot_id = backend.token_to_id(EOT_TEXT)


def train_apart(plan: TokenizerPlan, reader: Reader, stride: int, n_docs: int, progress: bool) -> None:
    """Train plan's bpe:N on every stride-th piece of reader's input in a process of its own, which this one
    kills when it is interrupted (Ctrl-C, SIGTERM) or fails; an error there is raised here."""
    root = str(Path(__file__).resolve().parents[3])  # this slo, wherever it was imported from
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               start_new_session=True)  # Ctrl-C reaches this process only, which decides
    finished = False
    try:
        with contextlib.suppress(BrokenPipeError):  # it died at once: it answers nothing, and its status says why
            pickle.dump((plan, reader, stride, n_docs, progress), trainer.stdin)
            trainer.stdin.flush()  # kept open: the trainer ends when it closes, however this process ends
        print(f"training {plan.spec} on {reader.total_bytes / stride / 1e6:,.1f} MB of text", file=sys.stderr,
              flush=True)
        try:
            while not select.select([trainer.stdout], [], [], SIGNAL_TURN_S)[0]:
                pass  # waited for in turns: a stop signal another thread took is acted on at the next
            outcome = pickle.load(trainer.stdout)
        except (EOFError, pickle.UnpicklingError):  # it died before it could answer
            outcome = None
        finished = True
    finally:
        if not finished:
            trainer.kill()  # SIGKILL: it may be in Rust, where no handler runs
        for pipe in (trainer.stdin, trainer.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        code = trainer.wait()
    if outcome is None:
        how = f"was killed by signal {-code}" if code < 0 else f"ended with status {code}"
        raise RunError(f"the process training {plan.spec} {how} (out of memory?); try a smaller N or less input")
    if isinstance(outcome, BaseException):
        raise outcome
    plan.tokenizer_json, plan.vocab_size, plan.eot_id = outcome


TRAINER = "import sys; sys.path.insert(0, sys.argv[1]); from slo.runner.prepare.bpe import trainer_main; trainer_main()"


def trainer_main() -> None:
    """The trainer's side: the work from stdin, the tokenizer (or the error) to stdout."""
    work, answer = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else prints goes to stderr, not into the answer
    plan, reader, stride, n_docs, progress = pickle.load(work)
    threading.Thread(target=_end_with_parent, daemon=True).start()
    try:
        train_bpe(plan, _training_texts(plan, reader, stride, progress), n_docs)
        outcome = (plan.tokenizer_json, plan.vocab_size, plan.eot_id)
    except (RunError, OSError) as e:  # the parent says it as it says its own
        outcome = e
    pickle.dump(outcome, answer)
    answer.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # its work done, it leaves at once, as _end_with_parent would when the parent closes its stdin


def _end_with_parent() -> None:
    """A parent killed with SIGKILL cannot kill this process: it ends itself once the parent's end of its
    stdin closes (the training releases the GIL, so this thread runs beside it)."""
    while os.read(0, 1 << 16):  # nothing more is sent: this returns b"" at the end
        pass
    os._exit(1)


def _training_texts(plan: TokenizerPlan, reader: Reader, stride: int, progress: bool) -> Iterator[str]:
    """The documents of every stride-th piece (so that the word counts stay bounded however large the input)."""
    with progress_bar(reader.total_bytes, f"training {plan.spec}", progress) as bar:
        for i, piece in enumerate(reader.pieces()):
            if i % stride == 0:
                yield from (t for t in piece_texts(piece, reader.text_key) if t)
            bar.update(piece.n_bytes)
