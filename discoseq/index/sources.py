"""Reading cut manifests as chunks of whole JSON lines, fingerprinting the bytes as they stream.

Every input becomes the same thing for the builder: a sequence of :class:`Chunk` (bytes holding
complete ``\\n``-separated JSON records). ``.jsonl`` is read as is, so its records can later be
read in place by byte offset; ``.jsonl.gz`` is decompressed in a stream; a ``.json`` array and an
in-memory or lazy ``CutSet`` are re-serialised one record per line (with orjson) and their records
are stored inside the index.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from discoseq.errors import ManifestError

CHUNK_BYTES = 4 << 20


@dataclass
class Chunk:
    """Whole lines of one source: ``data`` starts at byte ``offset`` of the (decompressed) stream
    and its first line is line ``first_line`` (1-based)."""

    data: bytes
    offset: int
    first_line: int


@dataclass
class Source:
    """One input: where it came from and how its records are kept."""

    path: str
    format: str  # "jsonl", "jsonl.gz", "json" or "cutset"
    records: str  # "inplace" or "stored"
    size: int | None = None
    mtime_ns: int | None = None
    fingerprint: str | None = None
    rows: int = 0
    _hasher: Any = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "records": self.records,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
        }


def manifest_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".jsonl.gz"):
        return "jsonl.gz"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".json.gz"):
        return "json.gz"
    raise ManifestError(
        "unsupported manifest extension; expected .jsonl, .jsonl.gz or .json "
        "(Lhotse cut manifests, e.g. written by CutSet.to_file)",
        str(path),
    )


def file_source(path: Path, store_records: bool) -> Source:
    """Describe a manifest file, checking it exists and has a supported extension."""
    if not path.exists():
        raise ManifestError("no such file", str(path))
    if not path.is_file():
        raise ManifestError("not a regular file", str(path))
    fmt = manifest_format(path)
    st = path.stat()
    inplace = fmt == "jsonl" and not store_records
    return Source(
        path=str(path.resolve()),
        format=fmt,
        records="inplace" if inplace else "stored",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )


def fingerprint_file(path: str | Path, progress: Callable[[int], None] | None = None) -> str:
    """``blake2b-128:<hex>`` of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
            if progress is not None:
                progress(len(block))
    return "blake2b-128:" + h.hexdigest()


def _raw_blocks(source: Source, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """The file's bytes in blocks, hashed on the way; sets the fingerprint at the end."""
    h = hashlib.blake2b(digest_size=16)
    with open(source.path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
            if progress is not None:
                progress(len(block))
            yield block
    source.fingerprint = "blake2b-128:" + h.hexdigest()


def _gunzip(blocks: Iterable[bytes], path: str) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream."""
    d = zlib.decompressobj(wbits=31)
    for block in blocks:
        while block:
            try:
                out = d.decompress(block)
            except zlib.error as e:
                raise ManifestError(f"corrupted gzip data ({e})", path) from e
            if out:
                yield out
            if d.eof:
                block = d.unused_data
                d = zlib.decompressobj(wbits=31)
            else:
                block = b""
    tail = d.flush()
    if tail:
        yield tail


def _line_chunks(stream: Iterable[bytes]) -> Iterator[Chunk]:
    """Regroup a byte stream into chunks that end on a line boundary."""
    pending = b""
    offset = 0
    line = 1
    for block in stream:
        data = pending + block if pending else block
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        head, pending = data[: cut + 1], data[cut + 1 :]
        yield Chunk(head, offset, line)
        offset += len(head)
        line += head.count(b"\n")
    if pending:
        yield Chunk(pending, offset, line)


def file_chunks(source: Source, progress: Callable[[int], None] | None = None) -> Iterator[Chunk]:
    """Chunks of whole JSON lines of a manifest file (a ``.json`` array is turned into lines)."""
    blocks = _raw_blocks(source, progress)
    if source.format in ("jsonl.gz", "json.gz"):
        blocks = _gunzip(blocks, source.path)
    if source.format in ("jsonl", "jsonl.gz"):
        yield from _line_chunks(blocks)
        return
    # A JSON array is small by nature (Lhotse writes large sets as .jsonl): load it whole.
    data = b"".join(blocks)
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ManifestError(f"malformed JSON ({e})", source.path) from e
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise ManifestError(
            f"expected a JSON array of cuts, found {type(items).__name__}", source.path
        )
    yield from _records_as_chunks(items)


def _records_as_chunks(items: Iterable[Any]) -> Iterator[Chunk]:
    """Serialise records one per line, in chunks; line i is item i (1-based)."""
    lines: list[bytes] = []
    size = 0
    offset = 0
    first = 1
    for item in items:
        line = orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        lines.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            data = b"".join(lines)
            yield Chunk(data, offset, first)
            offset += len(data)
            first += len(lines)
            lines, size = [], 0
    if lines:
        yield Chunk(b"".join(lines), offset, first)


def cutset_chunks(cuts: Iterable[Any]) -> Iterator[Chunk]:
    """Chunks of an in-memory or lazy Lhotse ``CutSet`` (each cut's ``to_dict()``)."""
    return _records_as_chunks(cut.to_dict() for cut in cuts)


def stat_matches(source: dict[str, Any]) -> str | None:
    """Cheap check that a file source is unchanged; returns what differs, or None."""
    path = source["path"]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path} no longer exists"
    if st.st_size != source["size"]:
        return f"{path} changed size ({source['size']} -> {st.st_size} bytes)"
    if st.st_mtime_ns != source["mtime_ns"]:
        return f"{path} was modified after the index was built"
    return None
