"""The final values the tokenizer's fast typing left: interpolated, then typed by the schema.

``${key}`` is another key's final value, ``${env:NAME}`` an environment
value (the config's ENV first, then the process's), ``${env:NAME:-default}``
the same with a default, and ``$$`` a ``$``. A value that is one ``${key}``
and nothing else takes that key's typed value. References are followed as
they are met, so a cycle is found where it closes.
"""

from __future__ import annotations

from typing import Any, Callable

from .schema import CONVERT, ENV_NAME, KEYS, format_value, suggest
from .statements import QUOTE, VALUE, is_interpolated

FAILED = object()  # a value whose error is already reported


class Interpolation:
    """Types the keys given to run() into final, and every ENV value.

    entries and env_entries map each name to its provenance entry; error_at(item,
    path, message) reports a problem at an item of the file at path.
    """

    def __init__(self, final: dict, entries: dict, env_entries: dict, environ, error_at: Callable):
        self.final = final  # key -> final value; a key in pending still holds its default
        self.entries = entries
        self.env_entries = env_entries
        self.environ = environ
        self.error_at = error_at
        self.env_final: dict[str, Any] = {}
        self.pending: set[str] = set()
        self.active: list[str] = []  # the keys and env:NAMEs being interpolated

    def run(self, keys: list[str]) -> dict[str, Any]:
        """Type keys into final (FAILED where that failed); returns the final ENV values."""
        self.pending = set(keys)
        for key in keys:
            if key in self.pending:
                self.value_of(key)
        for name in self.env_entries:
            if name not in self.env_final:
                self.env_value(name)
        return self.env_final

    def value_of(self, key: str) -> Any:
        """The final typed value of a schema key (FAILED once its error is reported)."""
        if key not in self.pending:
            return self.final[key]
        item, path, _ = self.entries[key]
        raw = item[VALUE]
        if key in self.active:
            return self.cycle(key, item, path)
        if is_interpolated(raw, item[QUOTE]):
            raw = self.interpolate(key, raw, item, path)
            if raw is not FAILED and type(raw) is not str and KEYS[key].type is str:
                raw = format_value(raw)  # wandb_run_name=${n_layer} is the text "6"
        if raw is FAILED:
            result = FAILED
        else:
            try:
                result = CONVERT[key](raw)
            except ValueError as e:
                self.error_at(item, path, str(e))
                result = FAILED
        self.final[key] = result
        self.pending.discard(key)
        return result

    def env_value(self, name: str) -> Any:
        """An environment value: ENV directives first, then the process environment; None if unset."""
        if name in self.env_final:
            return self.env_final[name]
        entry = self.env_entries.get(name)
        if entry is None:
            return self.environ.get(name)
        item, path, _ = entry
        raw = item[VALUE]
        tag = "env:" + name
        if tag in self.active:
            return self.cycle(tag, item, path)
        if type(raw) is not str:
            self.error_at(item, path, f"ENV {name}={format_value(raw)} must be a string: quote it")
            raw = FAILED
        elif is_interpolated(raw, item[QUOTE]):
            raw = self.interpolate(tag, raw, item, path)
            if raw is not FAILED and type(raw) is not str:
                raw = format_value(raw)
        self.env_final[name] = raw
        return raw

    def cycle(self, tag: str, item: tuple, path: str) -> Any:
        """FAILED, with the error reported: tag (a key or env:NAME) is being interpolated already."""
        self.error_at(item, path, "Reference cycle: " + " -> ".join(self.active[self.active.index(tag):] + [tag]))
        return FAILED

    def interpolate(self, tag: str, raw: str, item: tuple, path: str) -> Any:
        """raw, the value of tag (a key or env:NAME), with ${key}, ${env:NAME[:-default]} and $$
        replaced (FAILED after an error)."""
        self.active.append(tag)
        try:
            out = []
            i = 0
            n = len(raw)
            while True:
                j = raw.find("$", i)
                if j < 0:
                    out.append(raw[i:])
                    return "".join(out)
                out.append(raw[i:j])
                nxt = raw[j + 1:j + 2]
                if nxt == "$":
                    out.append("$")
                    i = j + 2
                elif nxt == "{":
                    k = raw.find("}", j + 2)
                    if k < 0:
                        self.error_at(item, path, f"Unterminated ${{ in {raw!r}: add the closing }}")
                        return FAILED
                    value = self.reference(raw[j + 2:k], item, path)
                    if value is FAILED:
                        return FAILED
                    if j == 0 and k == n - 1:
                        return value
                    out.append(value if type(value) is str else format_value(value))
                    i = k + 1
                else:
                    out.append("$")
                    i = j + 1
        finally:
            self.active.pop()

    def reference(self, ref: str, item: tuple, path: str) -> Any:
        if ref.startswith("env:"):
            name, has_default, default = ref[4:].partition(":-")
            if not ENV_NAME.match(name):
                self.error_at(item, path, f"Invalid environment variable name {name!r} in ${{{ref}}}")
                return FAILED
            value = self.env_value(name)
            if value is None:
                if has_default:
                    return default
                self.error_at(item, path, (
                    f"Environment variable {name} is not set: set it, add ENV {name}=..., "
                    f"or give a default with ${{env:{name}:-default}}"))
                return FAILED
            return value
        if ref not in KEYS:
            self.error_at(item, path, f"Unknown key {ref} in ${{{ref}}}{suggest(ref, KEYS)}")
            return FAILED
        return self.value_of(ref)
