"""The compiled type_values remembers a pattern's verdict on a text: the same answers as the pattern,
before and after its memo forgets (past 256 texts), and as the Python twin."""

from __future__ import annotations

import pytest

from slo import _parser_py
from slo.schema import CONVERT

try:
    from slo import _parser as _parser_c
except ImportError:  # test_lexer insists on the extension where it is expected
    _parser_c = None


def typed(twin, key: str, raw: str):
    final, rest, _ = twin.type_values({key: ((key, raw, 1, 1, 2, 3, 0), "f.config", None)})
    return "rest" if key in rest else final[key]


def converted(key: str, raw: str):
    try:
        return CONVERT[key](raw)
    except ValueError:
        return "rest"


@pytest.mark.skipif(_parser_c is None, reason="extension not built")
def test_a_patterns_verdicts_are_remembered_and_forgotten_alike():
    texts = [f"cuda:{i}" for i in range(300)] + ["cuda:x", "auto", "cpu", "mps", "cuda", "gpu", "auto "]
    for _ in range(2):  # the second round reads the memo (and passes its limit again)
        for raw in texts:
            expected = converted("device", raw)
            assert typed(_parser_c, "device", raw) == typed(_parser_py, "device", raw) == expected, raw
    for raw in ["gpt2", "hf:", "hf:gpt2", "scratch", "resume"]:
        assert typed(_parser_c, "init_from", raw) == typed(_parser_py, "init_from", raw), raw
