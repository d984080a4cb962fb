"""The tuples every reader makes and the resolver reads, and what they share about config text.

Tuples, not classes, because a long file makes many of them; these names say
which field is which. Both tokenizer twins, every format's reader, the
resolver, the converter and ``Config`` index them by these names (the
compiled twin mirrors them in a C enum that it checks against these at
import).

- An *item*, one ``key=value`` as read: ``(key, value, line, key_col,
  value_col, end_col, quote)``. TOML and ``.py`` readers make the same
  tuples, with typed values; line 0 is an item with no place in a file.
- A *FROM item*, one base as written: ``(path, line, col, end_col, quote)``.
- A *provenance entry*: ``(item, path of its file, the entry it overrode or
  None)``, so a chain of them is every assignment of one key, newest first.

Columns are 1-based and count characters; ``end_col`` is one past the end.
"""

from __future__ import annotations

KEY, VALUE, LINE, KEY_COL, VALUE_COL, END_COL, QUOTE = range(7)
FROM_PATH, FROM_LINE, FROM_COL, FROM_END_COL, FROM_QUOTE = range(5)
ENTRY_ITEM, ENTRY_PATH, OVERRIDDEN = range(3)

# How a value was written. In double quotes the tokenizer gives an escaped \$ as $$,
# which interpolation reads as a literal $; single-quoted values are never interpolated.
BARE, DOUBLE, SINGLE = range(3)


def is_interpolated(raw, quote: int) -> bool:
    """True when a value, as read, is text for interpolation (``${key}``, ``${env:NAME}``, ``$$``)."""
    return type(raw) is str and quote != SINGLE and "$" in raw


def normalize(text: str) -> str:
    """A config text as readers count its lines: no byte order mark, \\r\\n as \\n."""
    return text.lstrip("\ufeff").replace("\r\n", "\n")
