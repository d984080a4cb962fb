"""slo: train small GPT models from a declarative, Dockerfile-style config language.

The config API (``load``, ``loads``, ``dumps``, ``Config``, ``ConfigError``,
``tokenize``) never imports torch; the trainer lives in ``slo.runner``.
"""

from .config import Config, Origin
from .dump import dumps
from .errors import ConfigError, Diagnostic
from .resolve import load, loads
from .tokenizer import tokenize

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Diagnostic", "Origin", "dumps", "load", "loads", "tokenize", "__version__"]
