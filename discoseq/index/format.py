"""The on-disk format of a discoseq cut index (format version 2; version 1 is still read).

An index is a directory::

    OUT/
      header.json          the header, written last (its presence marks a complete index)
      <column>.npy         one NumPy ``.npy`` file (format 1.0, little-endian) per column
      records.bin          compressed records of sources not read in place (may be empty)
      records.dict         the zstd dictionary of those records (absent when none was trained)

``header.json`` is a small JSON object:

``magic``            ``"DISCOSEQ-CUT-INDEX"``
``format_version``   integer, this module's :data:`FORMAT_VERSION` (not the package version)
``num_rows``         number of cuts N
``columns``          ``{name: {"file", "dtype", "length"}}`` for every column below
``sources``          list of ``{"path", "format", "records", "size", "mtime_ns", "fingerprint",
                     "rows"}``; ``records`` is ``"inplace"`` (read from ``path`` by byte offset) or
                     ``"stored"`` (read from ``records.bin``); ``fingerprint`` is
                     ``blake2b-128:<hex>`` of the file's bytes (for an in-memory CutSet, of the
                     records it contributed); optional ``given``: the file's path as given,
                     absolute but not resolved (a symlink's own path; ``path`` is resolved)
``records``          ``{"file": "records.bin", "codec": "zstd", "size": bytes, "level": int,
                     "dictionary": {"file": "records.dict", "size": bytes, "fingerprint":
                     "blake2b-128:<hex>"} or null, "raw_size": bytes uncompressed,
                     "max_record_bytes": the longest record uncompressed}``
                     (:mod:`discoseq.index.records`). Each stored record is one zstd frame
                     (content size and checksum in it) compressed with the dictionary, so a
                     cut is read and decompressed alone. Format 1: ``{"file", "codec": "none",
                     "size"}``, records stored as uncompressed JSON lines.
``build``            the build options; ``discoseq_version``; ``created`` (UTC ISO time)
``shar``             optional, for a Lhotse Shar corpus (:mod:`discoseq.index.shar`; the sources
                     are its cut shards): ``{"fields": [{"name", "kind", "files"}], "origins",
                     "origins_are_paths"}`` (each cut shard as given: ``cut.shard_origin``);
                     ``kind`` ``"tar"`` or ``"jsonl"``; ``files`` one ``{"path", "size", "mtime_ns",
                     "fingerprint"}`` per cut shard (a tar's also ``"suffix"``, its data members'
                     extension; its fingerprint is of its member table); a jsonl field also has
                     ``"file": "shar_<name>.bin"`` (its lines, copied) and ``"size"``. Columns
                     per field (<i8, -1: no value): ``shar_<name>_offset``, ``shar_<name>_size``
                     (a tar field also ``shar_<name>_meta_offset``, ``shar_<name>_meta_size``:
                     its ``.json`` member)
``extra_columns``    optional: ``{name: {"file", "dtype", "length", "tokenizer",
                     "tokenizer_fingerprint", "created"}}``, the columns added after the build by
                     ``discoseq-index add-column`` (:mod:`discoseq.index.columns`): ``<i8`` token
                     counts of length N (-1: no supervision has a text), in ``<name>.<hex8>.npy``;
                     ``tokenizer`` is the spec (a model file's absolute path or
                     ``module:function``), ``tokenizer_fingerprint`` ``blake2b-128:<hex>`` of the
                     model file or of the function's module source (null: no source)

Columns, all of length N unless noted; ``-1`` is the one sentinel for "this cut has no such
value" (Lhotse returns ``None``):

=================  =====  ==========================================================
``duration``       <f8    ``cut.duration`` in seconds (always > 0)
``num_frames``     <i8    ``cut.num_frames`` (-1: no features)
``num_samples``    <i8    ``cut.num_samples`` (-1: no recording)
``num_features``   <i8    ``cut.num_features``, the feature dimension (-1: no features)
``num_tokens``     <i8    characters (code points) of supervision text, summed over the
                          cut's supervisions (-1: no supervision has a text)
``num_supervisions`` <i4  ``len(cut.supervisions)``
``cut_type``       u1     0 MonoCut, 1 MixedCut, 2 PaddingCut, 3 MultiCut
``source_id``      <i4    position in ``sources``
``source_line``    <i8    1-based line of the record in its source (element for ``.json``)
``record_offset``  <i8    byte offset of the record: in its source file (read in place) or,
                          for a stored record, of its zstd frame in ``records.bin``
``record_length``  <u4    byte length of the record in its source file, or of its frame in
                          ``records.bin`` (compressed; format 1: the JSON line itself)
``id_offsets``     <i8    N+1 offsets into ``id_blob``; cut id of row r is
                          ``id_blob[id_offsets[r]:id_offsets[r+1]]`` (UTF-8)
``id_blob``        u1     all cut ids, concatenated
``id_hash_sorted`` <u8    64-bit hashes of the ids (:func:`discoseq._core.idhash`), sorted
``id_hash_rows``   <i8    the row of each entry of ``id_hash_sorted``
=================  =====  ==========================================================

``id_hash_sorted`` + ``id_hash_rows`` give id -> row lookup by binary search plus one id
comparison, with no Python dict of all ids. Every file is written into a temporary sibling
directory that is renamed into place only when complete. An added column's file is renamed into
the index, then the header is replaced atomically (:func:`replace_header`): a file no header
names is a leftover of an interrupted ``add-column`` and is ignored (and removed by the next one).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from discoseq.errors import IndexFormatError

MAGIC = "DISCOSEQ-CUT-INDEX"
FORMAT_VERSION = 2
#: The oldest format this version reads (format 1: records stored uncompressed).
OLDEST_READABLE_VERSION = 1
#: Formats that changed only how records are kept -> the format whose rows they hold: an
#: index's fingerprint (which a saved sampler state is checked against) stays the same when
#: the same manifests are indexed again in the newer format.
ROWS_FORMAT = {2: 1}
HEADER_FILE = "header.json"
RECORDS_FILE = "records.bin"
DICT_FILE = "records.dict"
MAX_HEADER_BYTES = 64 * 1024 * 1024

CUT_TYPES = ("MonoCut", "MixedCut", "PaddingCut", "MultiCut")
CUT_TYPE_CODE = {name: i for i, name in enumerate(CUT_TYPES)}
CUT_TYPE_CODE["Cut"] = 0  # Lhotse < 0.8 called MonoCut "Cut"; Lhotse reads it as a MonoCut.

MISSING = -1


def is_json_int(value: object) -> TypeGuard[int]:
    """A JSON integer as ``json``/``orjson`` decode it: an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_json_number(value: object) -> TypeGuard[int | float]:
    """A JSON number as ``json``/``orjson`` decode it: an ``int`` or ``float``, not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


#: Column name -> dtype, in the order they are written. Length N except ``id_offsets`` (N+1)
#: and ``id_blob`` (total id bytes).
COLUMNS: dict[str, str] = {
    "duration": "<f8",
    "num_frames": "<i8",
    "num_samples": "<i8",
    "num_features": "<i8",
    "num_tokens": "<i8",
    "num_supervisions": "<i4",
    "cut_type": "|u1",
    "source_id": "<i4",
    "source_line": "<i8",
    "record_offset": "<i8",
    "record_length": "<u4",
    "id_offsets": "<i8",
    "id_blob": "|u1",
    "id_hash_sorted": "<u8",
    "id_hash_rows": "<i8",
}

#: The per-cut numbers computed from each record (as Lhotse computes them).
VALUE_COLUMNS = (
    "duration",
    "num_frames",
    "num_samples",
    "num_features",
    "num_tokens",
    "num_supervisions",
)

#: Columns exposed as per-cut data through ``CutIndex.columns``.
CUT_COLUMNS = (*VALUE_COLUMNS, "cut_type", "source_id")

_NPY_HEADER_BYTES = 128  # reserved so the shape can be filled in after streaming the data


class ColumnWriter:
    """Streams a 1-D column to a ``.npy`` file, filling in its length when closed.

    With ``first_row``, it writes into a column file another writer created (and closes), from
    that row on, and leaves the file's header to that writer: a worker process of a parallel
    build writes its rows where they belong in the index (:meth:`claim` counts them there)."""

    def __init__(self, path: Path, dtype: str, first_row: int | None = None) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._owns_header = first_row is None
        if first_row is None:
            self._file = open(path, "wb")
            self._file.write(b"\0" * _NPY_HEADER_BYTES)
            self._file.flush()  # before another process writes past it (first_row)
        else:
            self._file = open(os.open(path, os.O_WRONLY), "wb")
            self._file.seek(_NPY_HEADER_BYTES + first_row * self.dtype.itemsize)

    def append(self, values: np.ndarray) -> None:
        arr = np.ascontiguousarray(values, dtype=self.dtype)
        self._file.write(arr.data)
        self.length += int(arr.shape[0])

    def close(self) -> None:
        if self._owns_header:
            header = _npy_header(self.dtype, self.length)
            self._file.seek(0)
            self._file.write(header)
        self._file.close()

    def claim(self, length: int) -> None:
        """Count ``length`` values written after this writer's last one by another writer of
        the file (``first_row=self.length``), and move past them."""
        self._file.flush()
        self.length += length
        self._file.seek(_NPY_HEADER_BYTES + self.length * self.dtype.itemsize)

    def append_file(self, path: Path, length: int) -> None:
        """Append the first ``length`` values of column file ``path`` (of this dtype), copied
        file to file (:func:`copy_range`)."""
        if length == 0:
            return
        column = load_column(path)
        assert isinstance(column, np.memmap)
        assert column.dtype == self.dtype and column.shape[0] >= length, (path, column.dtype)
        offset = column.offset
        del column
        self._file.flush()  # buffered: flushed before and re-positioned after the copy
        with open(path, "rb") as f:
            copy_range(f.fileno(), self._file.fileno(), offset, length * self.dtype.itemsize)
        self._file.seek(0, os.SEEK_END)
        self.length += length

    def adopt(self, path: Path, length: int) -> None:
        """Make column file ``path`` (``length`` values of this dtype) this writer's, which
        holds nothing yet (or only what ``path`` starts with too): renamed into its place."""
        column = load_column(path)
        assert column.dtype == self.dtype and column.shape[0] == length, (path, column.shape)
        del column
        self._file.close()
        move_file(path, self.path)
        self._file = reopen_for_writing(self.path)
        self.length = length


def move_file(path: Path, target: Path) -> None:
    """Move file ``path`` to ``target``, a file of the build that holds nothing worth keeping:
    removed first, then renamed onto. (A rename that replaces a file makes ext4 allocate and
    start writing the moved file's data, its guard for rename-over-replace: 20 ms per 40 MB,
    on the serial end of a parallel build; onto no file, a rename costs under a millisecond.)"""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
    os.rename(path, target)


COPY_BYTES = 4 << 20  # bytes read and written at a time where the kernel cannot copy


def copy_range(src: int, dst: int, offset: int, size: int) -> None:
    """Append ``size`` bytes of file ``src`` from ``offset`` at file ``dst``'s position: in the
    kernel (``os.copy_file_range``, no copy through this process), else read and written."""
    end = offset + size
    while offset < end:
        try:
            copied = os.copy_file_range(src, dst, end - offset, offset)
        except OSError as e:  # another file system, or no such call: copy the usual way
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            copied = 0
        if copied == 0:
            data = os.pread(src, min(COPY_BYTES, end - offset), offset)
            if not data:
                raise OSError(errno.EIO, f"a part file ended {end - offset} bytes early")
            copied = os.write(dst, data)
        offset += copied


def reopen_for_writing(path: Path) -> Any:
    """``path`` open for writing at its end, not truncated, and not in append mode (a column's
    header is written at 0 when it is closed; ``os.copy_file_range`` refuses append mode)."""
    f = open(os.open(path, os.O_WRONLY), "wb")
    f.seek(0, os.SEEK_END)
    return f


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    text = repr({"descr": dtype.str, "fortran_order": False, "shape": (length,)})
    prefix = b"\x93NUMPY\x01\x00"
    body_len = _NPY_HEADER_BYTES - len(prefix) - 2
    body = text.encode("latin1")
    body = body + b" " * (body_len - len(body) - 1) + b"\n"
    return prefix + body_len.to_bytes(2, "little") + body


def write_column(path: Path, values: np.ndarray, dtype: str) -> None:
    """Write a whole column at once (same layout as :class:`ColumnWriter`)."""
    writer = ColumnWriter(path, dtype)
    writer.append(values)
    writer.close()


_LOAD_LOCK = threading.Lock()


def load_column(path: Path, mmap: bool = True) -> np.ndarray:
    """``np.load`` of a column file (mapped read-only, or read with ``mmap=False``), one call at
    a time: NumPy parses the header with ``ast``, whose constructor is not thread-safe in
    CPython 3.11 (``SystemError``), and a parallel build opens part files in several threads."""
    with _LOAD_LOCK:
        return np.load(path, mmap_mode="r" if mmap else None)


def mapped_column(path: Path, dtype: str, length: int) -> np.ndarray:
    """A new column file of ``length`` values (the layout of :class:`ColumnWriter`), mapped for
    writing in place: a kernel fills it without a copy of its result in memory first. Its disk
    space is reserved first (``posix_fallocate``): a full disk is an ``OSError`` here, not a
    ``SIGBUS`` when a page of the mapping is written. An empty column is an empty array (its
    file holds the header alone)."""
    kind = np.dtype(dtype)
    size = _NPY_HEADER_BYTES + length * kind.itemsize
    with open(path, "wb") as f:
        f.write(_npy_header(kind, length))
        f.flush()
        if not hasattr(os, "posix_fallocate"):  # not on macOS: the file's size only
            f.truncate(size)
        else:
            try:
                os.posix_fallocate(f.fileno(), 0, size)
            except OSError as e:  # named: a full disk is reported with the file
                raise OSError(e.errno, e.strerror, str(path)) from e
    if length == 0:
        return np.empty(0, dtype=kind)
    return np.memmap(path, dtype=kind, mode="r+", offset=_NPY_HEADER_BYTES, shape=(length,))


@dataclass(frozen=True)
class Header:
    """The validated content of ``header.json``."""

    num_rows: int
    columns: Mapping[str, Mapping[str, Any]]
    sources: list[dict[str, Any]]
    records: Mapping[str, Any]
    build: Mapping[str, Any]
    discoseq_version: str
    created: str
    raw: Mapping[str, Any]
    extra_columns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def write_header(directory: Path, header: Mapping[str, Any]) -> None:
    data = json.dumps(header, indent=2, sort_keys=False).encode()
    path = directory / HEADER_FILE
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace_header(directory: Path, header: Mapping[str, Any]) -> None:
    """Replace the header of a finished index atomically: a temporary file, fsynced, renamed
    over ``header.json``, and the directory fsynced (readers see the old or the new header)."""
    data = json.dumps(header, indent=2, sort_keys=False).encode()
    tmp = directory / f".{HEADER_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / HEADER_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_header(directory: Path) -> Header:
    """Read and validate ``header.json`` in order: magic, version, keys, columns."""
    path = directory / HEADER_FILE
    if directory.is_file():
        raise IndexFormatError(
            f"{directory} is a file, not an index directory; if it is a cut manifest, build an "
            f"index from it with `discoseq-index build {directory} -o OUT.idx` (discoseq analyze "
            "and benchmark, and DiscoSeqSampler, also take the manifest itself)"
        )
    if not directory.is_dir():
        raise IndexFormatError(f"{directory}: not an index directory (it does not exist)")
    if not path.is_file():
        raise IndexFormatError(
            f"{path}: missing; {directory} is not a complete discoseq index "
            "(build one with `discoseq-index build MANIFEST -o OUT`)"
        )
    size = path.stat().st_size
    if size > MAX_HEADER_BYTES:
        raise IndexFormatError(f"{path}: header is {size} bytes, expected a small JSON file")
    try:
        raw = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFormatError(f"{path}: header is not valid JSON ({e}); rebuild the index") from e
    except RecursionError as e:  # nesting far deeper than any header discoseq writes
        raise IndexFormatError(
            f"{path}: header is not an index header (JSON nested too deeply); rebuild the index"
        ) from e
    if not isinstance(raw, dict) or raw.get("magic") != MAGIC:
        found = raw.get("magic") if isinstance(raw, dict) else type(raw).__name__
        raise IndexFormatError(f"{path}: field 'magic' expected {MAGIC!r}, found {found!r}")
    version = raw.get("format_version")
    if not is_json_int(version) or version < 1:
        raise IndexFormatError(f"{path}: field 'format_version' is {version!r}, expected an int")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: format_version {version} is newer than this discoseq supports "
            f"({FORMAT_VERSION}); upgrade discoseq or rebuild with `discoseq-index build`"
        )
    if version < OLDEST_READABLE_VERSION:
        raise IndexFormatError(
            f"{path}: format_version {version} is no longer supported (current "
            f"{FORMAT_VERSION}); rebuild with `discoseq-index build`"
        )
    expected_types = {
        "num_rows": int,
        "columns": dict,
        "sources": list,
        "records": dict,
        "build": dict,
        "discoseq_version": str,
        "created": str,
    }
    for key, typ in expected_types.items():
        if key not in raw:
            raise IndexFormatError(f"{path}: field {key!r} is missing")
        if not (is_json_int(raw[key]) if typ is int else isinstance(raw[key], typ)):
            raise IndexFormatError(
                f"{path}: field {key!r} expected {typ.__name__}, found {type(raw[key]).__name__}"
            )
    n = raw["num_rows"]
    if n < 0:
        raise IndexFormatError(f"{path}: field 'num_rows' is negative ({n})")
    columns = raw["columns"]
    for name, dtype in COLUMNS.items():
        meta = columns.get(name)
        if not isinstance(meta, dict):
            raise IndexFormatError(f"{path}: column {name!r} is missing from 'columns'")
        if meta.get("dtype") != dtype:
            raise IndexFormatError(
                f"{path}: column {name!r} dtype expected {dtype!r}, found {meta.get('dtype')!r}"
            )
        if meta.get("file") != f"{name}.npy":
            raise IndexFormatError(
                f"{path}: column {name!r} file expected '{name}.npy', found {meta.get('file')!r}"
            )
        expected_len = _expected_length(name, n, columns)
        if not is_json_int(meta.get("length")) or meta["length"] != expected_len:
            raise IndexFormatError(
                f"{path}: column {name!r} length expected {expected_len}, "
                f"found {meta.get('length')!r}"
            )
    _check_sources(path, raw["sources"], n)
    _check_records(path, raw["records"], version)
    _check_build(path, raw["build"])
    if "shar" in raw:
        _check_shar(path, raw, n)
    extra_columns = _check_extra_columns(path, raw.get("extra_columns", {}), n)
    return Header(
        num_rows=n,
        columns=columns,
        sources=raw["sources"],
        records=raw["records"],
        build=raw["build"],
        discoseq_version=raw["discoseq_version"],
        created=raw["created"],
        raw=raw,
        extra_columns=extra_columns,
    )


#: Field -> (accepted types, description) of each entry of ``sources`` (None: may be null).
_SOURCE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "path": ((str,), "a path"),
    "format": ((str,), "a format name"),
    "records": ((str,), "'inplace' or 'stored'"),
    "size": ((int, type(None)), "a byte count or null"),
    "mtime_ns": ((int, type(None)), "an integer or null"),
    "fingerprint": ((str, type(None)), "a fingerprint or null"),
    "rows": ((int,), "a row count"),
}
SOURCE_FORMATS = ("jsonl", "jsonl.gz", "json", "json.gz", "cutset")


def _check_sources(path: Path, sources: list[Any], n: int) -> None:
    """Every source entry well typed; at least one source; their rows add up to ``n``."""
    if not sources:
        raise IndexFormatError(
            f"{path}: field 'sources' is empty, expected at least one source; rebuild the index"
        )
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise IndexFormatError(
                f"{path}: sources[{i}] expected an object, found {type(src).__name__}"
            )
        for key, (types, what) in _SOURCE_FIELDS.items():
            if key not in src:
                raise IndexFormatError(f"{path}: sources[{i}] lacks field {key!r}")
            value = src[key]
            if not isinstance(value, types) or isinstance(value, bool):
                raise IndexFormatError(
                    f"{path}: sources[{i}].{key} expected {what}, found {value!r}"
                )
        if not src["path"] or "\0" in src["path"]:
            raise IndexFormatError(f"{path}: sources[{i}].path {src['path']!r} is not a path")
        if src["records"] not in ("inplace", "stored"):
            raise IndexFormatError(
                f"{path}: sources[{i}].records expected 'inplace' or 'stored', "
                f"found {src['records']!r}"
            )
        if src["format"] not in SOURCE_FORMATS:
            raise IndexFormatError(
                f"{path}: sources[{i}].format expected one of {list(SOURCE_FORMATS)}, "
                f"found {src['format']!r}"
            )
        if src["rows"] < 0 or (src["size"] is not None and src["size"] < 0):
            raise IndexFormatError(f"{path}: sources[{i}] has a negative row count or size")
        if "given" in src and not isinstance(src["given"], str):
            raise IndexFormatError(
                f"{path}: sources[{i}].given expected a path, found {src['given']!r}"
            )
    total = sum(src["rows"] for src in sources)
    if total != n:
        raise IndexFormatError(
            f"{path}: the sources' rows add up to {total}, expected num_rows {n}; rebuild the index"
        )


def _check_records(path: Path, records: Mapping[str, Any], version: int) -> None:
    """``records``: format 1 stores records uncompressed (codec ``"none"``); format 2 as zstd
    frames, with an optional dictionary."""
    codec = "none" if version == 1 else "zstd"
    if records.get("codec") != codec:
        raise IndexFormatError(
            f"{path}: records.codec expected {codec!r} (format {version}), "
            f"found {records.get('codec')!r}"
        )
    if records.get("file") != RECORDS_FILE:
        raise IndexFormatError(
            f"{path}: records.file expected {RECORDS_FILE!r}, found {records.get('file')!r}"
        )
    counts = ("size",) if version == 1 else ("size", "level", "raw_size", "max_record_bytes")
    for key in counts:
        value = records.get(key)
        if not is_json_int(value) or value < 0:
            raise IndexFormatError(f"{path}: records.{key} expected a count, found {value!r}")
    if version == 1:
        return
    dictionary = records.get("dictionary", "missing")
    if dictionary is None:
        return
    if (
        not isinstance(dictionary, dict)
        or dictionary.get("file") != DICT_FILE
        or not is_json_int(dictionary.get("size"))
        or dictionary["size"] <= 0
        or not isinstance(dictionary.get("fingerprint"), str)
    ):
        raise IndexFormatError(
            f"{path}: records.dictionary expected null or {{'file': {DICT_FILE!r}, 'size', "
            f"'fingerprint'}}, found {dictionary!r}"
        )


def _check_build(path: Path, build: Mapping[str, Any]) -> None:
    """The build options that readers use (``info``, the fingerprint) are well typed."""
    skipped = build.get("skipped", 0)
    if not is_json_int(skipped) or skipped < 0:
        raise IndexFormatError(f"{path}: build.skipped expected a count, found {skipped!r}")
    examples = build.get("skipped_examples", [])
    if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
        raise IndexFormatError(f"{path}: build.skipped_examples expected a list of messages")


#: An added column's name: an identifier, not a built-in column's name.
EXTRA_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: An added column's file: ``<name>.<8 hex digits>.npy`` (a new file for every version).
EXTRA_COLUMN_FILE = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63})\.[0-9a-f]{8}\.npy")
EXTRA_COLUMN_DTYPE = "<i8"


def _check_extra_columns(path: Path, extra: Any, n: int) -> dict[str, Mapping[str, Any]]:
    """``extra_columns``: each entry named like an identifier that is no built-in column, an
    ``<i8`` column of length ``n`` in its own ``<name>.<hex8>.npy``, with its tokenizer."""
    if not isinstance(extra, dict):
        raise IndexFormatError(
            f"{path}: field 'extra_columns' expected an object, found {type(extra).__name__}"
        )
    for name, meta in extra.items():
        where = f"{path}: extra_columns[{name!r}]"
        if not EXTRA_COLUMN_NAME.fullmatch(name) or name in COLUMNS:
            raise IndexFormatError(f"{where}: not a valid added column name")
        if not isinstance(meta, dict):
            raise IndexFormatError(f"{where} expected an object, found {type(meta).__name__}")
        file = meta.get("file")
        match = EXTRA_COLUMN_FILE.fullmatch(file) if isinstance(file, str) else None
        if match is None or match.group(1) != name:
            raise IndexFormatError(f"{where}.file expected '{name}.<hex8>.npy', found {file!r}")
        if meta.get("dtype") != EXTRA_COLUMN_DTYPE:
            raise IndexFormatError(
                f"{where}.dtype expected {EXTRA_COLUMN_DTYPE!r}, found {meta.get('dtype')!r}"
            )
        if not is_json_int(meta.get("length")) or meta["length"] != n:
            raise IndexFormatError(f"{where}.length expected {n}, found {meta.get('length')!r}")
        for key in ("tokenizer", "created"):
            if not isinstance(meta.get(key), str):
                raise IndexFormatError(f"{where}.{key} expected a string, found {meta.get(key)!r}")
        fingerprint = meta.get("tokenizer_fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise IndexFormatError(
                f"{where}.tokenizer_fingerprint expected a fingerprint or null, found "
                f"{fingerprint!r}"
            )
    return extra


SHAR_FIELD_KINDS = ("tar", "jsonl")
SHAR_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def shar_columns(field_name: str, kind: str) -> dict[str, str]:
    """The columns (name -> dtype) holding a Shar field's byte ranges, in their order."""
    parts = ("offset", "size", "meta_offset", "meta_size") if kind == "tar" else ("offset", "size")
    return {f"shar_{field_name}_{part}": "<i8" for part in parts}


def _check_shar(path: Path, raw: Mapping[str, Any], n: int) -> None:
    """The optional ``shar`` entry: well-typed fields, one file per source, their columns."""
    shar = raw["shar"]
    fields = shar.get("fields") if isinstance(shar, dict) else None
    if not isinstance(fields, list):
        raise IndexFormatError(f"{path}: field 'shar' expected {{'fields': [...]}}")
    origins = shar.get("origins")
    if (
        not isinstance(origins, list)
        or len(origins) != len(raw["sources"])
        or not all(isinstance(o, str) for o in origins)
        or not isinstance(shar.get("origins_are_paths"), bool)
    ):
        raise IndexFormatError(f"{path}: shar.origins expected one cut shard name per source")
    seen = set()
    for i, f in enumerate(fields):
        where = f"{path}: shar.fields[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise IndexFormatError(f"{where} expected an object with a 'name'")
        name, kind, files = f["name"], f.get("kind"), f.get("files")
        if not SHAR_FIELD_NAME.fullmatch(name) or name in seen or kind not in SHAR_FIELD_KINDS:
            raise IndexFormatError(f"{where}: bad or repeated name {name!r} or kind {kind!r}")
        seen.add(name)
        if not isinstance(files, list) or len(files) != len(raw["sources"]):
            raise IndexFormatError(f"{where}.files expected one entry per source")
        for e in files:
            ok = isinstance(e, dict) and isinstance(e.get("path"), str)
            ok = ok and all(is_json_int(e.get(k)) for k in ("size", "mtime_ns"))
            ok = ok and isinstance(e.get("fingerprint"), str)
            if not ok or (kind == "tar" and not isinstance(e.get("suffix"), str)):
                raise IndexFormatError(f"{where}.files: entry {e!r} is not a field file")
        if kind == "jsonl" and (
            f.get("file") != f"shar_{name}.bin" or not is_json_int(f.get("size")) or f["size"] < 0
        ):
            raise IndexFormatError(f"{where}: expected file 'shar_{name}.bin' and its size")
        for column, dtype in shar_columns(name, kind).items():
            meta = raw["columns"].get(column)
            expected = {"file": f"{column}.npy", "dtype": dtype, "length": n}
            if meta != expected:
                raise IndexFormatError(
                    f"{path}: column {column!r} expected {expected}, found {meta!r}"
                )


def _expected_length(name: str, n: int, columns: Mapping[str, Any]) -> int:
    if name == "id_offsets":
        return n + 1
    if name == "id_blob":
        length = columns.get("id_blob", {}).get("length")
        return length if is_json_int(length) and length >= 0 else -1
    return n


def open_column(
    directory: Path, name: str, length: int, file: str | None = None, dtype_str: str | None = None
) -> np.ndarray:
    """Map one column read-only, checking its ``.npy`` header against the expected layout.

    :param file: the file name (default ``<name>.npy``); ``dtype_str`` the dtype (default the
        built-in column's): an added column's entry in ``extra_columns`` gives both.
    """
    path = directory / (file if file is not None else f"{name}.npy")
    dtype = np.dtype(dtype_str if dtype_str is not None else COLUMNS[name])
    if not path.is_file():
        raise IndexFormatError(f"{path}: column file is missing; rebuild the index")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version != (1, 0):
                raise ValueError(f"npy version {version}")
            shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(f)
            data_start = f.tell()
    except Exception as e:  # numpy's header parser raises many kinds (e.g. tokenize.TokenError)
        raise IndexFormatError(
            f"{path}: not a valid .npy column ({type(e).__name__}: {e}); rebuild the index"
        ) from e
    if not isinstance(found_dtype, np.dtype) or not isinstance(shape, tuple):
        raise IndexFormatError(f"{path}: not a valid .npy column header; rebuild the index")
    if found_dtype != dtype or fortran or shape != (length,):
        raise IndexFormatError(
            f"{path}: column {name!r} expected dtype {dtype.str} shape ({length},), "
            f"found dtype {found_dtype.str} shape {shape}; rebuild the index"
        )
    expected_size = data_start + length * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected_size:
        raise IndexFormatError(
            f"{path}: column {name!r} file is {actual} bytes, expected {expected_size} "
            "(truncated or corrupted); rebuild the index"
        )
    if length == 0:
        return np.empty(0, dtype=dtype)
    # A plain ndarray view of the map: np.memmap's per-index overhead is not worth keeping.
    return np.memmap(path, dtype=dtype, mode="r", offset=data_start, shape=(length,)).view(
        np.ndarray
    )
