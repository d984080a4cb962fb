"""``SloLM``: lm-evaluation-harness's language model over slo's GPT and tokenizer, as they are in memory.

It scores and generates as the harness's own Hugging Face model (HFLM) does,
so a task gives the same numbers here as on the model ``slo export`` writes:

- the harness's TemplateLM splits each (context, continuation) pair into
  tokens, an empty context conditioned on the end-of-text token;
- loglikelihood requests run longest first, right-padded in batches; a
  sequence longer than block_size keeps its last block_size + 1 tokens (the
  context is cut from the left); the log-softmax is float32;
- rolling loglikelihoods are the harness's disjoint windows of block_size;
- generation cuts the context to its last block_size - max_gen_toks tokens
  and runs the model's KV cache, stopping a row at the end-of-text token or
  once its text holds a stop sequence, then cuts the text at the first one.
  slo's model takes no attention mask, so a batch holds requests of one
  context length (HFLM pads them on the left): the tokens are the same.

The end-of-text token is the one ``slo export`` names (see ``end_of_text_id``).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import Collator
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ..errors import RunError
from ..runner.device import autocast
from ..runner.hf.export import EOT_TEXT, end_of_text
from ..runner.data.text_tokenizers import GPT2_VOCAB_SIZE

log = logging.getLogger(__name__)
DEFAULT_MAX_GEN_TOKS = 256  # the harness's HFLM's
MAX_TOKEN_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")  # by priority
GENERATION_KEYS = {"until", "do_sample", "temperature", "top_k", *MAX_TOKEN_KEYS}


def end_of_text_id(tokenizer, vocab_size: int, meta: dict | None = None) -> int:
    """The end-of-text id slo export writes for this tokenizer: the meta's eot_id, else byte 255 or the id
    past a character alphabet, GPT-2's 50256, a trained BPE's <|endoftext|>; RunError when there is none."""
    eot = (meta or {}).get("eot_id")
    if isinstance(eot, int) and not isinstance(eot, bool) and 0 <= eot < vocab_size:
        return eot
    eot, note = None, None
    if tokenizer.name in ("byte", "char"):
        eot, note = end_of_text(tokenizer.meta, vocab_size)
    elif tokenizer.name == "gpt2":
        eot = GPT2_VOCAB_SIZE - 1
    elif getattr(tokenizer, "backend", None) is not None:
        eot = tokenizer.backend.token_to_id(EOT_TEXT)
    if eot is None:
        raise RunError(note or f"the tokenizer ({tokenizer.name}) has no {EOT_TEXT} token, which "
                       "lm-evaluation-harness needs to score a text with no context")
    return eot


class SloLM(TemplateLM):
    """The harness's LM over ``model`` (slo's GPT) and ``tokenizer`` (slo's Tokenizer): batches of
    ``batch_size`` on ``device`` (default: the model's), forward passes in ``dtype`` (float32: as is)."""

    def __init__(self, model, tokenizer, device=None, batch_size: int = 16, dtype=torch.float32,
                 eot_id: int | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS):
        super().__init__()
        if batch_size < 1:
            raise RunError(f"batch_size={batch_size} must be >= 1")
        self.model = model
        self.slo_tokenizer = tokenizer
        self._device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self._device)
        self.batch_size = batch_size
        self.dtype = dtype
        self.default_max_gen_toks = max_gen_toks
        self._eot = end_of_text_id(tokenizer, model.args.vocab_size) if eot_id is None else eot_id
        self.ignored: set[str] = set()  # the generation options warned of

    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def max_length(self) -> int:
        return self.model.args.block_size

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.slo_tokenizer.encode(string)

    def tok_decode(self, tokens) -> str:
        return self.slo_tokenizer.decode(tokens)

    @contextlib.contextmanager
    def evaluating(self):
        """The model in eval mode (no dropout), put back in the mode it was in after: a model in training
        is evaluated between steps."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def log_probs(self, idx: torch.Tensor) -> torch.Tensor:
        """log-softmax over the vocabulary (float32) at every position of idx (B, T)."""
        with self.evaluating(), autocast(self._device, self.dtype):
            logits, _ = self.model(idx.to(self._device))
        return F.log_softmax(logits.float(), dim=-1)

    # ---------------------------------------------------------------- scoring

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of the continuation's log-probabilities, whether each of its tokens is the argmax) for each
        ((context, continuation) or None, context ids, continuation ids)."""
        collator = Collator(requests, sort_fn=lambda r: (-len(r[1] + r[2]), tuple(r[1] + r[2])))
        results = []
        for chunk in collator.get_batched(n=self.batch_size):
            longest = max(len(continuation) for _, _, continuation in chunk)
            if longest > self.max_length:
                raise RunError(f"a continuation of {longest} tokens is longer than the model's block_size="
                               f"{self.max_length}: it cannot be scored in one window")
            inputs = [(context + continuation)[-(self.max_length + 1):][:-1] for _, context, continuation in chunk]
            idx = torch.zeros(len(inputs), max(map(len, inputs)), dtype=torch.long)  # right-padded
            for row, ids in zip(idx, inputs):
                row[:len(ids)] = torch.tensor(ids)
            for (key, _, continuation), ids, logp in zip(chunk, inputs, self.log_probs(idx)):
                target = torch.tensor(continuation, device=logp.device)
                logp = logp[len(ids) - len(continuation):len(ids)]
                answer = (float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all()))
                results.append(answer)
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, answer)
        return collator.get_original(results)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The log-probability of each whole text, in the harness's disjoint windows of max_length tokens,
        the first after the end-of-text token."""
        windows, counts = [], []
        for (text,) in (request.args for request in requests):
            rolling = get_rolling_token_windows(token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                                                max_seq_len=self.max_length, context_len=1)
            pieces = [(None, *make_disjoint_window(window)) for window in rolling]
            windows += pieces
            counts.append(len(pieces))
        scores = iter(self._loglikelihood_tokens(windows))
        totals = [sum(next(scores)[0] for _ in range(n)) for n in counts]
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # ---------------------------------------------------------------- generation

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Each request's continuation of its context, up to a stop sequence, the end of text or max_gen_toks."""
        groups = defaultdict(list)  # (context length, options) -> [(request index, context ids)]
        for i, (context, gen_kwargs) in enumerate(request.args for request in requests):
            options = self.generation_options(gen_kwargs)
            room = self.max_length - options[1]
            if room < 1:
                raise RunError(f"max_gen_toks={options[1]} leaves no room for a context in the model's "
                               f"block_size={self.max_length}; give the task a smaller max_gen_toks")
            ids = self.tok_encode(context)[-room:]
            groups[len(ids), options].append((i, ids))
        results = [""] * len(requests)
        for (_, options), members in sorted(groups.items(), key=lambda item: -item[0][0]):
            for start in range(0, len(members), self.batch_size):
                batch = members[start:start + self.batch_size]
                texts = self.generate_batch([ids for _, ids in batch], *options)
                for (i, _), text in zip(batch, texts):
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results

    def generation_options(self, gen_kwargs: dict) -> tuple:
        """(stop sequences, max_gen_toks, temperature, top_k) from a request's generation kwargs, read as the
        harness reads them: do_sample false (or absent with no temperature) is greedy."""
        unknown = set(gen_kwargs) - GENERATION_KEYS - self.ignored
        if unknown:
            log.warning("slo eval ignores the generation options %s", ", ".join(sorted(unknown)))
            self.ignored |= unknown  # said once
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        max_gen_toks = next((int(gen_kwargs[k]) for k in MAX_TOKEN_KEYS if gen_kwargs.get(k) is not None),
                            self.default_max_gen_toks)
        temperature = float(gen_kwargs.get("temperature") or 0.0)
        if gen_kwargs.get("do_sample") is False:
            temperature = 0.0
        top_k = gen_kwargs.get("top_k")
        return tuple(s for s in until if s), max_gen_toks, temperature, int(top_k) if top_k else None

    @torch.no_grad()
    def generate_batch(self, contexts: list[list[int]], until: tuple, max_gen_toks: int, temperature: float,
                       top_k: int | None) -> list[str]:
        """The continuations of contexts (all one length) as texts, each cut at its first stop sequence."""
        idx = torch.tensor(contexts, dtype=torch.long, device=self._device)
        new = [[] for _ in contexts]
        done = [False] * len(contexts)
        with self.evaluating(), autocast(self._device, self.dtype):
            for step in self.model.generate_steps(idx, max_gen_toks, temperature=temperature, top_k=top_k):
                for row, token in enumerate(step[:, 0].tolist()):
                    if done[row]:
                        continue
                    if token == self._eot:
                        done[row] = True
                        continue
                    new[row].append(token)
                    done[row] = bool(until) and any(stop in self.tok_decode(new[row]) for stop in until)
                if all(done):
                    break
        return [cut_at_stop(self.tok_decode(tokens), until) for tokens in new]


def cut_at_stop(text: str, until) -> str:
    """text up to the first of the stop sequences it holds, as the harness cuts a generation."""
    for stop in until:
        text = text.split(stop)[0]
    return text
