"""The docs cannot drift from the code: every command in a runnable block of README.md and docs/*.md is
run, and every relative link in them points at a file (and a heading) that exists.

The convention, for whoever writes the docs:

- A fenced block is runnable when the line just before its opening fence is ``<!-- runnable -->``;
  with ``<!-- runnable: output -->`` the output the block shows must also be what the command
  printed (stdout and stderr together, trailing spaces aside), a line ``...`` standing for any lines.
- In a runnable block a line that starts with ``$ `` is a command, and the lines after it, up to the
  next ``$ `` line, are its output. In a block with no ``$ `` line every line is a command.
- A command is ``slo ...`` or ``python -m slo ...``; anything else in a runnable block fails the test,
  so no line of one goes unchecked. A ``\\`` at a line's end continues it; ``#`` starts a comment,
  and a comment ``# exits N`` says the command's exit status is N (otherwise it must be 0).
- A block just after ``<!-- file: NAME -->`` is written to NAME before the page's commands run.
- Each page runs in a temporary folder of its own holding a copy of configs/, its commands in order
  (so ``slo train`` then ``slo sample`` work), with tiny settings appended (TINY): seconds on a CPU.
  Mark only what runs on a CPU in seconds: GPU, torchrun, several-machine and GGUF examples stay unmarked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_TRAINING = ["--max_iters=2", "--warmup_iters=1", "--eval_interval=2", "--eval_iters=1", "--log_interval=1",
             "--batch_size=2", "--block_size=16", "--device=cpu", "--dtype=float32", "--compile=False"]
# Appended to a verb's arguments, after the doc's own, so they win.
TINY = {
    "train": _TRAINING,
    "sweep": _TRAINING,
    "bench": ["--steps", "1", "--warmup", "0", "--batch_size", "2", "--block_size", "16", "--compile", "off"],
    "sample": ["--max_new_tokens=8", "--device=cpu"],
}
# Verbs with no runnable example: the language server needs an editor on its stdin.
UNSHOWN = {"lsp"}

MARK = re.compile(r"<!--\s*(runnable(?::\s*output)?|file:\s*(\S+))\s*-->")
EXITS = re.compile(r"#.*\bexits? (\d+)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def blocks(text: str) -> list[tuple[str, str]]:
    """(the mark before it: 'runnable', 'runnable: output', 'file: NAME' or '', body) of each fenced block."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
            mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
            out.append((re.sub(r"\s+", " ", mark.group(1)) if mark else "", "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return out


def commands(body: str) -> list[tuple[str, list[str]]]:
    """(command line, the output lines shown after it) of a runnable block, continuations joined."""
    lines = body.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    out: list[tuple[str, list[str]]] = []
    pending = ""
    for line in lines:
        if prompted and not line.startswith("$ ") and not pending:
            if out:
                out[-1][1].append(line)
            continue
        line = line[2:] if prompted and not pending else line
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        if (pending + line).strip():
            out.append((pending + line.strip(), []))
        pending = ""
    return out


def argv(command: str) -> tuple[list[str], int]:
    """The program's arguments after ``slo`` and the exit status the doc expects."""
    expected = EXITS.search(command)
    words = shlex.split(command, comments=True)
    if words[:1] == ["slo"]:
        words = words[1:]
    elif words[:3] == ["python", "-m", "slo"]:
        words = words[3:]
    else:
        pytest.fail(f"a runnable block holds {command!r}, which is not a slo command: move it out of the block")
    if words and words[0] in TINY:
        words = words + TINY[words[0]]
    return words, int(expected.group(1)) if expected else 0


def matches(shown: list[str], printed: list[str]) -> bool:
    """Whether the printed lines are the shown ones, each ``...`` line standing for any run of lines."""
    pattern = "".join(r"(?:.*\n)*?" if line.strip() == "..." else re.escape(line.rstrip()) + r"\n" for line in shown)
    return re.fullmatch(pattern, "".join(line.rstrip() + "\n" for line in printed)) is not None


def runnable_pages() -> list[Path]:
    return [p for p in PAGES if any(mark.startswith("runnable") for mark, _ in blocks(p.read_text()))]


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_commands_a_page_shows_run(page, tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline", MPLBACKEND="Agg")
    steps = []
    for mark, body in blocks(page.read_text()):
        if mark.startswith("file:"):
            (tmp_path / mark.split(":", 1)[1].strip()).write_text(body + "\n")
        elif mark.startswith("runnable"):
            steps += [(line, shown, mark == "runnable: output") for line, shown in commands(body)]
    assert steps, f"{page.name} has runnable blocks but no command in them"
    for line, shown, check_output in steps:
        words, expected = argv(line)
        done = subprocess.run([sys.executable, "-m", "slo", *words], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        where = f"{page.relative_to(ROOT)}: `{line}` (run as slo {shlex.join(words)})"
        assert done.returncode == expected, f"{where} exited {done.returncode}, not {expected}:\n{done.stdout}"
        if check_output:
            assert matches(shown, done.stdout.splitlines()), f"{where} printed, not what the doc shows:\n{done.stdout}"


def test_every_verb_has_a_runnable_example():
    from slo.cli import COMMANDS

    shown = set()
    for page in PAGES:
        for mark, body in blocks(page.read_text()):
            if mark.startswith("runnable"):
                shown |= {argv(line)[0][0] for line, _ in commands(body)}
    assert shown >= set(COMMANDS) - UNSHOWN, f"no runnable example of {sorted(set(COMMANDS) - UNSHOWN - shown)}"
    assert {"--help", "--version"} <= shown


def test_the_convention_reads_blocks_as_documented():
    text = ("<!-- file: a.config -->\n```\nMODEL n_layer=2\n```\n\n<!-- runnable: output -->\n```\n"
            "$ slo check a.config \\\n    --n_layer=3      # exits 2\nerror\n...\n$ slo keys\n```\n\n"
            "```\nslo train x\n```\n")
    (m1, b1), (m2, b2), (m3, _) = blocks(text)
    assert (m1, b1, m2, m3) == ("file: a.config", "MODEL n_layer=2", "runnable: output", "")
    (c1, out1), (c2, out2) = commands(b2)
    assert (argv(c1), out1, argv(c2), out2) == ((["check", "a.config", "--n_layer=3"], 2), ["error", "..."],
                                                 (["keys"], 0), [])
    assert argv("slo sample out-small")[0] == ["sample", "out-small", *TINY["sample"]]
    assert matches(["a", "...", "c"], ["a", "b", "b", "c"]) and matches(["a", "..."], ["a"])
    assert not matches(["a", "c"], ["a", "b", "c"]) and not matches(["a"], ["a", "b"])
    with pytest.raises(pytest.fail.Exception, match="not a slo command"):
        argv("rm -rf out")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def links(page: Path) -> list[str]:
    prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_what_exists(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: {file.name} has no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A `b` c: d\n\n[x](p.md#a-b-c-d) [y](nope.md) ![z](p.md#gone) [w](https://example.com)\n"
                    "```\n[not a link](in-code.md)\n```\n")
    assert links(page) == ["p.md#a-b-c-d", "nope.md", "p.md#gone"]
    assert anchors(page) == {"a-b-c-d"}
