"""Where config files are: a path named on the command line, and a base named by FROM.

Each comes as (display path, real path): the path as messages show it, and
the absolute path read. A path without a suffix that does not exist is
retried with ``.config``.
"""

from __future__ import annotations

import os

from .statements import DOUBLE, FROM_PATH, FROM_QUOTE


def _with_suffix(written: str, display: str, real: str) -> tuple[str, str]:
    if not os.path.splitext(written)[1] and not os.path.exists(real):
        return display + ".config", real + ".config"
    return display, real


def locate(path) -> tuple[str, str]:
    """(display path, real path) of a path given on the command line."""
    path = str(path)
    return _with_suffix(path, path, os.path.abspath(os.path.expanduser(path)))


def written_path(item: tuple) -> str:
    """The path of a FROM item. Paths are not interpolated: in a double-quoted one, the
    tokenizer's $$ for an escaped \\$ is a plain $."""
    path = item[FROM_PATH]
    return path.replace("$$", "$") if item[FROM_QUOTE] == DOUBLE else path


def base_paths(item: tuple, real_dir: str, display_dir: str = "") -> tuple[str, str]:
    """(display path, real path) of the base a FROM item names, relative to the folder of the
    file that names it (real_dir; display_dir, as messages show that folder)."""
    written = os.path.expanduser(written_path(item))
    return _with_suffix(written, os.path.normpath(os.path.join(display_dir, written)),
                        os.path.normpath(os.path.join(real_dir, written)))
