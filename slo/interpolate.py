"""The final values the tokenizer's fast typing left: interpolated, then typed by the schema.

``${key}`` is another key's final value, ``${env:NAME}`` an environment
value (the config's ENV first, then the process's), ``${env:NAME:-default}``
the same with a default, and ``$$`` a ``$``. A value that is one ``${key}``
and nothing else takes that key's typed value. References are followed as
they are met, so a cycle is found where it closes.

Following them needs no recursion, however long the chain: each value being
interpolated is a frame (a generator that yields the name it needs next) on
an explicit stack. An expanded value longer than MAX_EXPANDED, or a config
whose expansions together pass MAX_EXPANDED_TOTAL, is an error, so a few
bytes that double at every reference cannot fill the memory.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .schema import CONVERT, ENV_NAME, KEYS, format_value, suggest
from .statements import QUOTE, VALUE, is_interpolated

FAILED = object()  # a value whose error is already reported
MAX_EXPANDED = 1 << 20  # characters in one interpolated value
MAX_EXPANDED_TOTAL = 16 << 20  # characters in all of one config's interpolated values
_UNSET = object()  # known()'s answer for a name that needs a frame of its own


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
        self.active: list[str] = []  # the keys and env:NAMEs being interpolated, outermost first
        self.expanded = 0  # characters expanded so far, against MAX_EXPANDED_TOTAL

    def run(self, keys: list[str]) -> dict[str, Any]:
        """Type keys into final (FAILED where that failed); returns the final ENV values."""
        self.pending = set(keys)
        for key in keys:
            if key in self.pending:
                self.resolve(key)
        for name in self.env_entries:
            if name not in self.env_final:
                self.resolve("env:" + name)
        return self.env_final

    # ---- the stack ------------------------------------------------------

    def known(self, tag: str) -> Any:
        """tag's value (a key, or env:NAME) when no frame is needed for it, else _UNSET."""
        if tag.startswith("env:"):
            name = tag[4:]
            if name in self.env_final:
                return self.env_final[name]
            if name not in self.env_entries:
                return self.environ.get(name)
            return _UNSET
        return _UNSET if tag in self.pending else self.final[tag]

    def resolve(self, tag: str) -> Any:
        """tag's final value, each reference it needs resolved first by a frame of its own."""
        stack = [self.frame(tag)]
        self.active.append(tag)
        on_stack = None  # the set of active, made when a second frame is needed
        reply = None
        while True:
            try:
                need = stack[-1].send(reply)
            except StopIteration as done:
                stack.pop()
                if on_stack is not None:
                    on_stack.discard(self.active[-1])
                self.active.pop()
                if not stack:
                    return done.value
                reply = done.value
                continue
            if on_stack is None:
                on_stack = set(self.active)
            if need in on_stack:
                reply = self.cycle(need)
                continue
            stack.append(self.frame(need))
            self.active.append(need)
            on_stack.add(need)
            reply = None

    def frame(self, tag: str) -> Iterator:
        """A frame that stores and returns tag's final value; it yields each name it needs first."""
        return self.env_frame(tag[4:]) if tag[:4] == "env:" else self.key_frame(tag)

    def key_frame(self, key: str) -> Iterator:
        item, path, _ = self.entries[key]
        raw = item[VALUE]
        if is_interpolated(raw, item[QUOTE]):
            raw = yield from self.interpolate(key, raw, item, path)
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

    def env_frame(self, name: str) -> Iterator:
        item, path, _ = self.env_entries[name]
        raw = item[VALUE]
        if type(raw) is not str:
            self.error_at(item, path, f"ENV {name}={format_value(raw)} must be a string: quote it")
            raw = FAILED
        elif is_interpolated(raw, item[QUOTE]):
            raw = yield from self.interpolate("env:" + name, raw, item, path)
            if raw is not FAILED and type(raw) is not str:
                raw = format_value(raw)
        self.env_final[name] = raw
        return raw

    def cycle(self, tag: str) -> Any:
        """FAILED, with the error reported at tag's value: tag is being interpolated already."""
        if tag.startswith("env:"):
            item, path, _ = self.env_entries[tag[4:]]
        else:
            item, path, _ = self.entries[tag]
        self.error_at(item, path, "Reference cycle: " + chain_text(self.active[self.active.index(tag):] + [tag]))
        return FAILED

    # ---- one value ------------------------------------------------------

    def interpolate(self, tag: str, raw: str, item: tuple, path: str) -> Iterator:
        """raw, the value of tag (a key or env:NAME), with ${key}, ${env:NAME[:-default]} and $$
        replaced (FAILED after an error); yields each name whose value it needs."""
        out = []
        size = 0
        i = 0
        n = len(raw)
        while True:
            j = raw.find("$", i)
            if j < 0:
                piece = raw[i:]
            else:
                piece = raw[i:j]
                nxt = raw[j + 1:j + 2]
                if nxt == "$":
                    piece += "$"
                    i = j + 2
                elif nxt == "{":
                    k = raw.find("}", j + 2)
                    if k < 0:
                        self.error_at(item, path, f"Unterminated ${{ in {clip(raw)!r}: add the closing }}")
                        return FAILED
                    ref = raw[j + 2:k]
                    need = self.reference(ref, item, path)
                    if need is FAILED:
                        return FAILED
                    value = self.known(need)
                    if value is _UNSET:
                        value = yield need
                    if value is FAILED:
                        return FAILED
                    if need[:4] == "env:" and not (type(value) is str and (value.isascii() or is_utf8(value))):
                        value = self.unset(ref, item, path) if value is None else self.not_utf8(need, item, path)
                        if value is FAILED:
                            return FAILED
                    if j == 0 and k == n - 1:
                        return value
                    piece += value if type(value) is str else format_value(value)
                    i = k + 1
                else:
                    piece += "$"
                    i = j + 1
            size += len(piece)
            self.expanded += len(piece)
            if size > MAX_EXPANDED or self.expanded > MAX_EXPANDED_TOTAL:
                return self.too_long(tag, size, item, path)
            out.append(piece)
            if j < 0:
                return "".join(out)

    def reference(self, ref: str, item: tuple, path: str) -> Any:
        """The name (a key or env:NAME) that ${ref} needs, or FAILED after an error."""
        if ref.startswith("env:"):
            name = ref[4:].partition(":-")[0]
            if not ENV_NAME.match(name):
                self.error_at(item, path, f"Invalid environment variable name {clip(name)!r} in ${{{clip(ref)}}}")
                return FAILED
            return "env:" + name
        if ref not in KEYS:
            self.error_at(item, path, f"Unknown key {clip(ref)} in ${{{clip(ref)}}}{suggest(ref, KEYS)}")
            return FAILED
        return ref

    def unset(self, ref: str, item: tuple, path: str) -> Any:
        """${env:NAME[:-default]} of a variable that is not set: its default, or FAILED after an error."""
        name, has_default, default = ref[4:].partition(":-")
        if has_default:
            return default
        self.error_at(item, path, (
            f"Environment variable {name} is not set: set it, add ENV {name}=..., "
            f"or give a default with ${{env:{name}:-default}}"))
        return FAILED

    def not_utf8(self, tag: str, item: tuple, path: str) -> Any:
        self.error_at(item, path, f"Environment variable {tag[4:]} is not UTF-8 text (it holds bytes that were "
                                  "not decoded); set it in UTF-8")
        return FAILED

    def too_long(self, tag: str, size: int, item: tuple, path: str) -> Any:
        chain = chain_text(self.active[:self.active.index(tag) + 1])
        if size > MAX_EXPANDED:
            what = f"{display(tag)} expands to more than {MAX_EXPANDED:,} characters"
        elif self.expanded - size > MAX_EXPANDED_TOTAL:
            return FAILED  # past the total already, and reported where it was passed
        else:
            what = f"the config's interpolated values pass {MAX_EXPANDED_TOTAL:,} characters in all at {display(tag)}"
        self.error_at(item, path, f"{what} (through {chain}): a reference repeated or nested too often")
        return FAILED


def is_utf8(text: str) -> bool:
    """False when text holds lone surrogates: bytes of a command line or environment that were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(tag: str) -> str:
    """A key or env:NAME as a config names it."""
    return "ENV " + tag[4:] if tag.startswith("env:") else tag


def chain_text(tags: list[str], most: int = 12) -> str:
    """tags joined by arrows, the middle left out past most of them."""
    if len(tags) > most:
        tags = tags[:most // 2] + [f"... {len(tags) - most} more ..."] + tags[-most // 2:]
    return " -> ".join(tags)


def clip(text: str, most: int = 80) -> str:
    """text, or its start and end around an ellipsis when longer than most characters."""
    return text if len(text) <= most else text[:most // 2] + "..." + text[-most // 2:]
