"""The guards of the training loop: stop signals, the finite-loss check, and the compile fallback.

``StopSignals`` turns SIGINT and SIGTERM into a request the loop honours
between steps; ``FiniteCheck`` stops a run on a non-finite loss or gradient
norm before anything is saved (checking deferred steps in one read of the
device); ``CompileFallback`` runs the first compiled call of each mode and,
where torch.compile fails there, gives back the plain model to use.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass

import torch

from ..errors import RunError
from .device import compile_failure_message
from .distributed.placement import compile_failure_in_group

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While entered (in the main thread), SIGINT and SIGTERM set ``signum``: the loop finishes its step,
    saves and returns. A second SIGINT interrupts at once."""

    def __init__(self, say):
        self.say = say
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.say(f"{signal.Signals(signum).name}: finishing the step, then saving a checkpoint "
                 "(Ctrl-C again stops at once)")

    def stopping(self) -> bool:
        """Whether a stop signal reached this process."""
        return self.signum is not None

    def agreed(self, group) -> bool:
        """Whether a stop signal reached this process or, in a data-parallel run, any rank. A collective:
        every rank asks at the same points of the loop, so all stop after the same step."""
        agreed = group.agreed_signal(self.signum)
        if agreed is not None and self.signum is None:  # never store None: a signal may arrive meanwhile
            self.signum = agreed
        return agreed is not None


class FiniteCheck:
    """Non-finite losses and gradient norms, found before the weights they would change are saved.
    kept() says in words what checkpoint the run leaves behind."""

    def __init__(self, group, kept):
        self.group, self.kept = group, kept
        self._deferred: list[tuple[int, torch.Tensor]] = []  # (iter, loss and gradient norm) not yet checked

    def defer(self, iter_num: int, checked: torch.Tensor) -> None:
        self._deferred.append((iter_num, checked))

    def check(self, now: int) -> float | None:
        """Check every step not yet checked, in one read of the device: RunError naming the first whose
        loss or gradient norm is not finite (the mean over ranks: a non-finite value on any rank makes it
        non-finite on all, so all stop). The last one's loss; None when none was waiting. now: the
        iteration the run is at."""
        if not self._deferred:
            return None
        iters = [it for it, _ in self._deferred]
        values = self.group.mean(torch.stack([c for _, c in self._deferred])).reshape(len(iters), -1).tolist()
        self._deferred.clear()
        for it, row in zip(iters, values):
            if not all(math.isfinite(v) for v in row):
                what = f"the loss is {row[0]}" if not math.isfinite(row[0]) else f"the gradient norm is {row[1]}"
                when = ("the run stopped before updating the weights" if it == now else
                        f"found at iter {now}, the run stopped and saved nothing after it")
                raise RunError(f"{what} at iter {it}; {when}. {self.kept()} Try a lower learning_rate, "
                               "a longer warmup_iters, grad_clip=1.0, or dtype=bfloat16/float32 instead of float16")
        return values[-1][0]

    def check_losses(self, losses: dict[str, float], iter_num: int) -> dict[str, float]:
        """An evaluation's losses, or RunError when one is not finite."""
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise RunError(f"the {' and '.join(bad)} loss is {list(bad.values())[0]} at the evaluation of iter "
                           f"{iter_num}; nothing was saved. {self.kept()} Try a lower learning_rate or dtype=float32")
        return losses


@dataclass(frozen=True)
class Forwards:
    """What the model runs as: ``train`` (compiled, then wrapped for data parallelism) and ``eval``
    (compiled, not wrapped: rank 0 evaluates alone); compiled: whether torch.compile is in them."""

    train: torch.nn.Module
    eval: torch.nn.Module
    compiled: bool

    @classmethod
    def of(cls, model, compiled: bool, group) -> Forwards:
        """The model compiled whole (where its blocks were not compiled for sharding), then wrapped by
        the collectives (DDP: nanoGPT's order)."""
        whole = torch.compile(model) if compiled and not group.shards else model
        return cls(group.wrap(whole), whole, compiled)

    @classmethod
    def plain(cls, model) -> Forwards:
        return cls(model, model, False)


class CompileFallback:
    """The first compiled call in each mode ("train", "eval"); where compilation fails there, a message
    and the call again without torch.compile, on the same random state."""

    def __init__(self, world_size: int, say):
        self.world_size, self.say = world_size, say
        self._proven: set[str] = set()

    def run(self, mode: str, forwards: Forwards, call, model, reset):
        """(call(forwards), the Forwards to use from now on): the plain model's where compilation failed
        (reset() first undoes what the failed call left, such as gradients)."""
        if not forwards.compiled or mode in self._proven:
            return call(forwards), forwards
        rng_state = torch.get_rng_state()
        try:
            result = call(forwards)
        except (RunError, KeyboardInterrupt):
            raise
        except Exception as e:  # Dynamo and Inductor raise many types; all mean "cannot compile here"
            if self.world_size > 1:  # the ranks cannot all swap models at once
                raise compile_failure_in_group(e) from e
            self.say(compile_failure_message(e))
            plain = Forwards.plain(model)
            reset()
            torch.set_rng_state(rng_state)
            return call(plain), plain
        self._proven.add(mode)
        return result, forwards
