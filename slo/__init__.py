"""slo: train small GPT models from a declarative, Dockerfile-style config language.

The config API (``load``, ``loads``, ``dumps``, ``Config``, ``ConfigError``,
``tokenize``) never imports torch; ``train`` imports the runner (and torch) when
it is called.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .config import Config, Origin
from .dump import dumps
from .errors import ConfigError, Diagnostic, RunError
from .resolve import load, loads
from .lexer import tokenize

try:
    __version__ = _version("slo")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def train(cfg: Config):
    """Train cfg in this process, as ``slo train`` does, and return its TrainResult (iter_num, best_val_loss,
    last_loss, stopped_by). Raises RunError on a run-time problem.

        import slo
        result = slo.train(slo.load("configs/small.config", overrides=["--max_iters=100"]))
        print(result.iter_num, result.best_val_loss)
    """
    from .runner.train_command import train as train_config

    return train_config(cfg)


__all__ = ["Config", "ConfigError", "Diagnostic", "Origin", "RunError", "dumps", "load", "loads", "tokenize", "train",
           "__version__"]
