"""The documents of ``slo prepare``'s inputs, read in bounded pieces, and their split into train and val.

A document is a text file, a line of a ``.jsonl`` or ``.jsonl.gz`` file (its
text under the text key) or a row of a ``.parquet`` file. Each has a number,
its place among the documents of all the inputs in order (a blank line or a
skipped file keeps its number and holds no text). ``Reader.count`` counts them
first, since the split needs their number; ``Reader.pieces`` then cuts the
inputs into pieces of about ``piece_bytes`` that a worker turns into texts
with ``piece_texts``. A text file longer than a piece is cut at a line end
that GPT-2's pattern cuts at too (a newline between two printable ASCII
characters), so its tokens are those of the whole file. No torch here.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import RunError, first_line

READ_BLOCK = 16 << 20  # bytes read at a time while counting lines
CUT_SLACK = 1 << 20  # how far past a piece's end a cut of a long text file is looked for
SAFE_CUT = re.compile(rb"[\x21-\x7e]\n(?=[\x21-\x7e])")
SPLIT_BLOCK = 1 << 16  # documents whose val share is drawn together (see DocumentSplit)
KINDS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl.gz", ".parquet": "parquet"}  # anything else is a text file
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
JSON_TYPES = {type(None): "null", bool: "true or false", list: "a list", dict: "an object"}  # else a number


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # text, jsonl, jsonl.gz or parquet
    size: int


@dataclass
class Piece:
    """Documents ``first_doc`` .. ``first_doc + n_docs - 1``, or a part of one long text file."""

    kind: str  # files (whole text files), part (of a long one), lines (of a jsonl file) or rows (of a parquet file)
    path: str
    first_doc: int
    n_docs: int
    n_bytes: int  # input bytes it stands for (the progress bar's unit)
    data: list[bytes] | bytes | None = None
    first_number: int = 1  # lines, rows: the number in its file of its first line or row
    row_group: int = 0  # rows: the parquet row group
    open_end: bool = False  # part: its document goes on in the next piece


def source_kind(path: Path) -> str:
    name = path.name.lower()
    return next((kind for suffix, kind in KINDS.items() if name.endswith(suffix)), "text")


def find_sources(inputs: list[str]) -> list[Source]:
    """The files named, and every file under the folders named (sorted, hidden ones left out), by kind."""
    files = []
    for name in inputs:
        path = Path(name)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(
                p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_symlink():
            raise RunError(f"{name} is a broken link")
        elif path.exists():
            raise RunError(f"{name} is neither a file nor a folder")
        else:
            raise RunError(f"{name} does not exist")
    return [Source(p, source_kind(p), p.stat().st_size) for p in files]


def cut_point(buf: bytes, target: int) -> int:
    """Where to end a piece of a long text at about ``target``: after a newline between two printable ASCII
    characters (every BPE of GPT-2's pattern cuts there too), else after any newline, else at a character."""
    match = SAFE_CUT.search(buf, target, target + CUT_SLACK)
    if match:
        return match.end()
    newline = buf.find(b"\n", target, target + CUT_SLACK)
    if newline >= 0:
        return newline + 1
    pos = min(target, len(buf))
    while pos < len(buf) and buf[pos] & 0xC0 == 0x80:  # never inside a UTF-8 sequence
        pos += 1
    return pos


def is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lines_in(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _gzip_error(path: Path, e: Exception) -> RunError:
    return RunError(f"{path} is not a readable gzip file ({first_line(e) or type(e).__name__}); "
                    "it is damaged, or name it without .gz")


@dataclass
class Reader:
    """The inputs of one ``slo prepare``: counted once, then read piece by piece (as often as needed)."""

    sources: list[Source]
    text_key: str = "text"
    piece_bytes: int = 4 << 20
    counts: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # text files that are not UTF-8 text
    files_read: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.sources)

    def count(self) -> int:
        """The number of documents; reads every jsonl file (a parquet file's metadata only)."""
        self.counts = [self._count(s) for s in self.sources]
        return sum(self.counts)

    def _count(self, source: Source) -> int:
        if source.kind == "text":
            return 1
        if source.kind == "parquet":
            return parquet_file(source.path, self.text_key).metadata.num_rows
        opener = gzip.open if source.kind == "jsonl.gz" else open
        total, last = 0, b"\n"
        try:
            with opener(source.path, "rb") as f:
                while block := f.read(READ_BLOCK):
                    total += block.count(b"\n")
                    last = block[-1:]
        except GZIP_ERRORS as e:
            raise _gzip_error(source.path, e) from None
        return total + (last != b"\n")

    def pieces(self) -> Iterator[Piece]:
        """Every document in order, as pieces; each one's document numbers are checked against the count."""
        self.skipped, self.files_read = [], 0
        first, batch, batch_bytes = 0, [], 0
        for source, count in zip(self.sources, self.counts):
            if source.kind == "text" and source.size <= self.piece_bytes:
                batch.append(source)
                batch_bytes += source.size
                if batch_bytes >= self.piece_bytes:
                    yield self._files(batch, first)
                    first, batch, batch_bytes = first + len(batch), [], 0
                continue
            if batch:
                yield self._files(batch, first)
                first, batch, batch_bytes = first + len(batch), [], 0
            seen, self.files_read = 0, self.files_read + (source.kind != "text")
            for piece in self._pieces_of(source, first):
                seen += piece.n_docs if not piece.open_end else 0
                yield piece
            if seen != count:
                raise RunError(f"{source.path} changed while slo prepare read it ({count:,} documents, then "
                               f"{seen:,}); prepare it again once nothing writes to it")
            first += count
        if batch:
            yield self._files(batch, first)

    def _pieces_of(self, source: Source, first: int) -> Iterator[Piece]:
        if source.kind == "text":
            return self._parts(source, first)
        if source.kind == "parquet":
            return self._row_groups(source, first)
        return self._lines(source, first)

    def _files(self, batch: list[Source], first: int) -> Piece:
        data = []
        for source in batch:
            try:
                text = source.path.read_bytes()
            except OSError:
                text = b"\0"
            if is_text(text):
                data.append(text)
                self.files_read += 1
            else:
                data.append(b"")
                self.skipped.append(str(source.path))
        return Piece("files", str(batch[0].path), first, len(batch), sum(s.size for s in batch), data)

    def _parts(self, source: Source, first: int) -> Iterator[Piece]:
        """A long text file in parts; not UTF-8 at its start, it is skipped; later, it is an error."""
        with open(source.path, "rb") as f:
            buf, at = b"", 0
            while True:
                buf += f.read(self.piece_bytes + CUT_SLACK - len(buf))
                last = at + len(buf) >= source.size
                if not buf and not last:
                    raise RunError(f"{source.path} changed while slo prepare read it; prepare it again once "
                                   "nothing writes to it")
                cut = len(buf) if last else cut_point(buf, self.piece_bytes)
                data, buf = buf[:cut], buf[cut:]
                if not is_text(data):
                    if at == 0:
                        self.skipped.append(str(source.path))
                        yield Piece("part", str(source.path), first, 1, source.size, b"")
                        return
                    raise RunError(f"{source.path} is not UTF-8 text past byte {at:,} (its start is); "
                                   "fix it or leave it out")
                self.files_read += at == 0
                at += len(data)
                yield Piece("part", str(source.path), first, 1, len(data), data, open_end=not last)
                if last:
                    return

    def _lines(self, source: Source, first: int) -> Iterator[Piece]:
        raw = open(source.path, "rb")
        with raw:
            f = gzip.GzipFile(fileobj=raw, mode="rb") if source.kind == "jsonl.gz" else raw
            line, at = 1, 0
            try:
                while data := f.read(self.piece_bytes):
                    if not data.endswith(b"\n"):
                        data += f.readline()
                    n = _lines_in(data)
                    yield Piece("lines", str(source.path), first, n, raw.tell() - at, data, first_number=line)
                    first, line, at = first + n, line + n, raw.tell()
            except GZIP_ERRORS as e:
                raise _gzip_error(source.path, e) from None

    def _row_groups(self, source: Source, first: int) -> Iterator[Piece]:
        meta = parquet_file(source.path, self.text_key).metadata
        rows = max(meta.num_rows, 1)
        row = 1
        for group in range(meta.num_row_groups):
            n = meta.row_group(group).num_rows
            yield Piece("rows", str(source.path), first, n, source.size * n // rows, first_number=row, row_group=group)
            first, row = first + n, row + n


def parquet_file(path: Path, text_key: str):
    """The pyarrow ParquetFile at path, checked to have a text column named text_key."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RunError(f"reading {path} needs pyarrow: pip install 'slo[parquet]'") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's ArrowInvalid and OSError for a damaged file
        raise RunError(f"{path} is not a readable parquet file ({first_line(e)})") from None
    schema = pf.schema_arrow
    if text_key not in schema.names:
        raise RunError(f"{path} has no column {text_key!r} (its columns: {', '.join(schema.names[:10])}); "
                       "name the text column with --text_key")
    kind = str(schema.field(text_key).type)
    if kind not in ("string", "large_string", "string_view"):
        raise RunError(f"{path}: column {text_key!r} holds {kind}, not text; name the text column with --text_key")
    return pf


# ---------------------------------------------------------------- a worker's side


def piece_texts(piece: Piece, text_key: str) -> list[str]:
    """The texts of a piece's documents, one per document number ("" for a blank line or a skipped file)."""
    if piece.kind == "files":
        return [data.decode("utf-8") for data in piece.data]
    if piece.kind == "part":
        return [piece.data.decode("utf-8")]
    if piece.kind == "rows":
        return _row_texts(piece, text_key)
    lines = piece.data.split(b"\n")
    if piece.data.endswith(b"\n"):
        lines.pop()
    return [_line_text(line, text_key, piece.path, piece.first_number + i) for i, line in enumerate(lines)]


def _line_text(line: bytes, key: str, path: str, number: int) -> str:
    if not line.strip():
        return ""
    try:
        record = json.loads(line)
    except RecursionError:
        raise RunError(f"{path}:{number}: the JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        raise RunError(f"{path}:{number}: not a line of JSON ({first_line(e)}); "
                       "a .jsonl file holds one JSON object a line") from None
    if not isinstance(record, dict):
        raise RunError(f"{path}:{number}: a {type(record).__name__}, not a JSON object")
    if key not in record:
        keys = ", ".join(list(record)[:10]) or "none"
        raise RunError(f"{path}:{number}: no {key!r} field (its fields: {keys}); "
                       "name the text field with --text_key")
    text = record[key]
    if not isinstance(text, str):
        raise RunError(f"{path}:{number}: {key!r} is {JSON_TYPES.get(type(text), 'a number')}, not a string")
    return text


def _row_texts(piece: Piece, key: str) -> list[str]:
    pf = parquet_file(Path(piece.path), key)
    texts = []
    for batch in pf.iter_batches(batch_size=4096, row_groups=[piece.row_group], columns=[key]):
        column = batch.column(0).to_pylist()
        if None in column:
            row = piece.first_number + len(texts) + column.index(None)
            raise RunError(f"{piece.path}: the {key!r} of row {row:,} is null, not text")
        texts += column
    return texts


# ---------------------------------------------------------------- the split


class DocumentSplit:
    """Which documents go to val: round(F * N) of the N, chosen by a shuffle seeded with ``seed``.

    The documents are taken in blocks of SPLIT_BLOCK; each block gets its share
    of the val documents (the cumulative share, rounded down), and those are the
    last of the block's documents in a shuffle seeded with (seed, block). So
    up to SPLIT_BLOCK documents it is exactly "the last F of them by a seeded
    shuffle", and for any number the memory is one block's, and any range of
    documents is answered on its own.
    """

    def __init__(self, n_docs: int, val_fraction: float, seed: int):
        self.n, self.seed = n_docs, seed
        self.k = round(n_docs * val_fraction)
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def whole(self) -> bool:
        """Whether documents can go whole to each side (else the tokens are split, as for one file)."""
        return 1 <= self.k < self.n

    def val_mask(self, first: int, count: int) -> np.ndarray:
        """True for each of documents first .. first + count - 1 that goes to val."""
        if not self.whole:
            return np.zeros(count, dtype=bool)
        out = np.empty(count, dtype=bool)
        pos, end = first, first + count
        while pos < end:
            block = pos // SPLIT_BLOCK
            start = block * SPLIT_BLOCK
            mask = self._block(block)
            stop = min(end, start + len(mask))
            out[pos - first:stop - first] = mask[pos - start:stop - start]
            pos = stop
        return out

    def _block(self, block: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == block:
            return self._cached[1]
        start = block * SPLIT_BLOCK
        size = min(SPLIT_BLOCK, self.n - start)
        if size <= 0:
            raise RunError("the inputs hold more documents than they did when counted; prepare them again "
                           "once nothing writes to them")
        share = self.k * (start + size) // self.n - self.k * start // self.n
        order = np.random.default_rng([self.seed, block]).permutation(size)
        mask = np.zeros(size, dtype=bool)
        mask[order[size - share:]] = True
        self._cached = (block, mask)
        return mask


def progress_bar(total: int, desc: str, shown: bool):
    """A bar of the input's bytes on stderr (shown only where ``shown``: a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not shown, file=sys.stderr)


def note_skipped(skipped: list[str]) -> None:
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"note: skipped {len(skipped)} file(s) that are not readable UTF-8 text: {shown}", file=sys.stderr)
