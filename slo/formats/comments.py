"""Comments carried from one format to another.

Readers drop comments; a converter recovers them from the source text and
the positions of what was read. A comment belongs to something written in
the file (a key, ``ENV.NAME``, or ``FROM`` for the bases): the comment lines
directly above the line where it starts, and the comment at the end of the
line where it ends. Comment lines at the top of the file that belong to
nothing are its header; those after the last statement are its footer.

``.config``, TOML and Python all start a comment with ``#``, so one reading
serves the three. A comment's text is what follows the ``#``, as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..statements import normalize

# (name, first line, last line, column one past its end on the last line), in file order.
Anchor = tuple[str, int, int, int]


@dataclass
class Comments:
    header: list[str | None] = field(default_factory=list)  # None: a blank line between paragraphs
    above: dict[str, list[str]] = field(default_factory=dict)
    trailing: dict[str, str] = field(default_factory=dict)
    footer: list[str | None] = field(default_factory=list)

    def lines_above(self, name: str, indent: str = "") -> list[str]:
        return [f"{indent}#{text}" for text in self.above.get(name, ())]

    def after(self, name: str) -> str:
        """The trailing comment of name as it ends a line ('' when there is none)."""
        text = self.trailing.get(name)
        return "" if text is None else "  #" + text


def source_lines(text: str) -> list[str]:
    """The lines of a config text, as every reader counts them (see statements.normalize)."""
    return normalize(text).split("\n")


def comment_text(line: str) -> str | None:
    """The text after # of a line that is only a comment, else None."""
    stripped = line.lstrip()
    return stripped[1:].rstrip() if stripped.startswith("#") else None


def extract(lines: list[str], anchors: Iterable[Anchor], *,
            see_through: Callable[[str], bool] = lambda line: False,
            generated: Callable[[str], bool] = lambda text: False) -> Comments:
    """The comments of a file, given the anchors of what was read from it.

    see_through(line): a line the comments above an anchor may sit above
    (a TOML table header). generated(text): a comment a writer adds itself,
    dropped (a .py file's ``# MODEL``).
    """
    comments = Comments()
    claimed: set[int] = set()  # 0-based indexes of comment lines that belong to an anchor
    anchors = list(anchors)
    first_on_line: dict[int, str] = {}
    last_on_line: dict[int, tuple[str, int]] = {}
    for name, line, end_line, end_col in anchors:
        first_on_line.setdefault(line, name)
        last_on_line[end_line] = (name, end_col)
    for line, name in first_on_line.items():
        block = []
        i = line - 2
        while i >= 0:
            text = comment_text(lines[i])
            if text is not None:
                claimed.add(i)
                if not generated(text):
                    block.append(text)
            elif not see_through(lines[i]):
                break
            i -= 1
        if block:
            comments.above[name] = block[::-1]
    for end_line, (name, end_col) in last_on_line.items():
        if 0 < end_line <= len(lines):
            rest = lines[end_line - 1][max(end_col - 1, 0):].lstrip()
            if rest.startswith("#"):
                comments.trailing[name] = rest[1:].rstrip()
    code = [i for i, line in enumerate(lines) if line.strip() and comment_text(line) is None]
    if code:
        comments.header = _free_block(lines, range(code[0]), claimed, generated)
        comments.footer = _free_block(lines, range(code[-1] + 1, len(lines)), claimed, generated)
    else:
        comments.header = _free_block(lines, range(len(lines)), claimed, generated)
    return comments


def _free_block(lines: list[str], indexes: range, claimed: set[int], generated) -> list[str | None]:
    """The unclaimed comment lines among indexes, blank runs between them as one None."""
    block: list[str | None] = []
    for i in indexes:
        if i in claimed:
            continue
        text = comment_text(lines[i])
        if text is not None and not generated(text):
            block.append(text)
        elif not lines[i].strip() and block and block[-1] is not None:
            block.append(None)
    while block and block[-1] is None:
        block.pop()
    return block


def block_lines(block: list[str | None]) -> list[str]:
    """A header or footer as lines of text."""
    return ["" if text is None else "#" + text for text in block]
