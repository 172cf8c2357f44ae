"""Reading cut manifests as chunks of whole JSON lines, fingerprinting the bytes as they stream.

Every input becomes the same thing for the builder: a sequence of :class:`Chunk` (bytes holding
complete ``\\n``-separated JSON records). ``.jsonl`` is read as is, so its records can later be
read in place by byte offset; ``.jsonl.gz`` is decompressed in a stream; a ``.json`` array and an
in-memory or lazy ``CutSet`` are re-serialised one record per line (with orjson) and their records
are stored inside the index.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson
from isal import igzip, isal_zlib

from discoseq.errors import ManifestError

T = TypeVar("T")
# isal_zlib.error is a class; its stub says otherwise.
_GZIP_ERRORS = (OSError, EOFError, cast(type[BaseException], isal_zlib.error))

CHUNK_BYTES = 4 << 20
PIECE_BYTES = 1 << 20
RAW_BLOCK_BYTES = 1 << 20


def _fingerprint_hasher() -> hashlib.blake2b:
    """A fresh hasher for a source's fingerprint (see :func:`_fingerprint`)."""
    return hashlib.blake2b(digest_size=16)


def _fingerprint(hasher: hashlib.blake2b) -> str:
    """A source's fingerprint, ``blake2b-128:<hex>``, from its hasher."""
    return "blake2b-128:" + hasher.hexdigest()


@dataclass
class Chunk:
    """Whole lines of one source; ``data`` starts at byte ``offset`` of the (decompressed)
    stream."""

    data: bytes | memoryview
    offset: int


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
    given: str | None = None  # the path as given, made absolute but not resolved (a symlink)
    _hasher: Any = field(default=None, repr=False)

    def update_fingerprint(self, data: bytes | memoryview) -> None:
        """Fingerprint an in-memory source by the records it contributes."""
        if self._hasher is None:
            self._hasher = _fingerprint_hasher()
        self._hasher.update(data)
        self.fingerprint = _fingerprint(self._hasher)

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "records": self.records,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            **({"given": self.given} if self.given is not None else {}),
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
        if (path / "header.json").is_file():
            raise ManifestError(
                "a discoseq index, not a manifest: build reads Lhotse cut manifests (an index "
                "is used as it is: give its path to the sampler, analyze or benchmark)",
                str(path),
            )
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
        given=os.path.abspath(path),
    )


class _HashingReader(io.RawIOBase):
    """A raw file reader that fingerprints (and reports) the bytes as they are read: the one
    place where a source's bytes are read, whether plain, gunzipped or only fingerprinted."""

    def __init__(self, path: str | Path, progress: Callable[[int], None] | None) -> None:
        self._file = open(path, "rb")
        self._hasher = _fingerprint_hasher()
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        if n:
            self._hasher.update(memoryview(buffer)[:n])
            if self._progress is not None:
                self._progress(n)
        return n

    def read_to_end(self) -> str:
        """Read what is left and return the fingerprint of the whole file."""
        while self.read(RAW_BLOCK_BYTES):
            pass
        return _fingerprint(self._hasher)

    def close(self) -> None:
        self._file.close()
        super().close()


def fingerprint_file(path: str | Path, progress: Callable[[int], None] | None = None) -> str:
    """``blake2b-128:<hex>`` of a file's bytes."""
    with _HashingReader(path, progress) as raw:
        return raw.read_to_end()


def _raw_blocks(source: Source, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """The file's bytes in blocks, fingerprinted on the way (set on ``source`` at the end)."""
    with _HashingReader(source.path, progress) as raw:
        while block := raw.read(RAW_BLOCK_BYTES):
            yield block
        source.fingerprint = raw.read_to_end()


def _gunzip(source: Source, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip file in pieces, with ISA-L's igzip (about 4x
    zlib's speed: decompression is most of the cost of indexing a ``.jsonl.gz``)."""
    with _HashingReader(source.path, progress) as raw:
        try:
            with igzip.IGzipFile(fileobj=raw, mode="rb") as f:
                while piece := f.read(PIECE_BYTES):
                    yield piece
        except _GZIP_ERRORS as e:
            kind = "truncated" if isinstance(e, EOFError) else "corrupted"
            raise ManifestError(f"{kind} gzip file ({e})", source.path) from e
        source.fingerprint = raw.read_to_end()


def _line_chunks(stream: Iterable[bytes]) -> Iterator[Chunk]:
    """Regroup a byte stream into chunks of about ``CHUNK_BYTES`` that end on a line boundary
    (memoryviews, so the bytes are joined once and not copied again)."""
    parts: list[bytes] = []
    size = 0
    offset = 0
    for block in stream:
        parts.append(block)
        size += len(block)
        if size < CHUNK_BYTES:
            continue
        data = b"".join(parts) if len(parts) > 1 else parts[0]
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            parts = [data]
            continue
        yield Chunk(memoryview(data)[:cut], offset)
        offset += cut
        rest = data[cut:]
        parts, size = ([rest], len(rest)) if rest else ([], 0)
    if parts:
        data = b"".join(parts)
        if data:
            yield Chunk(memoryview(data), offset)


def _plain_line_chunks(source: Source, progress: Callable[[int], None] | None) -> Iterator[Chunk]:
    """:func:`_line_chunks` of a plain file, read straight into each chunk's buffer (one copy
    of the bytes instead of three: blocks, their join, the rest after the last line), and
    fingerprinted there (set on ``source`` at the end)."""
    with _HashingReader(source.path, progress) as raw:
        rest = b""
        offset = 0
        size = CHUNK_BYTES
        while True:
            buf = bytearray(max(size, len(rest) + CHUNK_BYTES))
            buf[: len(rest)] = rest
            view = memoryview(buf)
            filled = len(rest)
            while filled < len(buf) and (n := raw.readinto(view[filled:])):
                filled += n
            if filled < len(buf):  # the end of the file
                if filled:
                    yield Chunk(view[:filled], offset)
                break
            cut = buf.rfind(b"\n", 0, filled) + 1
            if cut == 0:  # a line longer than the buffer: a larger one
                rest, size = bytes(view[:filled]), 2 * len(buf)
                continue
            yield Chunk(view[:cut], offset)
            offset += cut
            rest, size = bytes(view[cut:filled]), CHUNK_BYTES
        source.fingerprint = raw.read_to_end()


def file_chunks(source: Source, progress: Callable[[int], None] | None = None) -> Iterator[Chunk]:
    """Chunks of whole JSON lines of a manifest file (a ``.json`` array is turned into lines)."""
    if source.format == "jsonl":
        yield from _plain_line_chunks(source, progress)
        return
    if source.format in ("jsonl.gz", "json.gz"):
        blocks = _gunzip(source, progress)
    else:
        blocks = _raw_blocks(source, progress)
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
    for item in items:
        line = orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        lines.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            data = b"".join(lines)
            yield Chunk(data, offset)
            offset += len(data)
            lines, size = [], 0
    if lines:
        yield Chunk(b"".join(lines), offset)


def prefetch(chunks: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Produce items in a background thread, at most ``depth`` ahead, so that work which
    releases the GIL (reading, hashing, decompressing, scanning) overlaps with the consumer's."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        """Queue ``item`` unless the consumer stopped (then a full queue is never emptied)."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(done)
        except BaseException as e:
            put(e)

    thread = threading.Thread(target=produce, name="discoseq-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


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
    except OSError as e:  # a path that cannot be stat'ed (permissions, a file as a directory)
        return f"{path} cannot be read ({e.strerror})"
    if st.st_size != source["size"]:
        return f"{path} changed size ({source['size']} -> {st.st_size} bytes)"
    if st.st_mtime_ns != source["mtime_ns"]:
        return f"{path} was modified after the index was built"
    return None
