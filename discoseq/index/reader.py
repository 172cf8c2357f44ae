"""``CutIndex``: a read-only, memory-mapped view of an index directory, and lazy resolution of
rows to Lhotse cuts."""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError
from discoseq.index.format import (
    COLUMNS,
    CUT_COLUMNS,
    RECORDS_FILE,
    ROWS_FORMAT,
    Header,
    open_column,
    read_header,
)
from discoseq.index.records import FrameError, RecordDecoder, dictionary_fingerprint
from discoseq.index.shar import SharFields, stale_field_file
from discoseq.index.shar import open_columns as shar_columns_of
from discoseq.index.sources import stat_matches

#: Records of a source read in place, asked one after another and at most this many bytes apart,
#: are read with one ``pread`` (the bytes between them are read and dropped: cheaper than a
#: system call each) ...
COALESCE_GAP = 4096
#: ... and one ``pread`` reads at most this many bytes (unless one record is longer).
COALESCE_BYTES = 1 << 20


class CutIndex:
    """A cut index opened with ``mmap_mode="r"``: columns are shared by every process that maps
    them, and a pickled ``CutIndex`` travels as its path (each DataLoader worker maps it again).
    """

    _decoder: RecordDecoder | None = None  # set by open (format 2: zstd frames)
    _stored_map: mmap.mmap | None = None  # records.bin, mapped on first use

    def __init__(self, path: Path, header: Header, arrays: Mapping[str, np.ndarray]) -> None:
        self.path = path
        self.header = header
        self._arrays = dict(arrays)
        self._fds: dict[int, int] = {}
        self._fd_pid = os.getpid()
        self._lock = threading.Lock()
        self._lookup: Any = None
        blob = self._arrays["id_blob"]
        self._id_bytes = memoryview(blob.data) if blob.size else memoryview(b"")
        self._inplace = np.array(
            [s["records"] == "inplace" for s in header.sources] or [False], dtype=bool
        )
        self._all_stored = not self._inplace.any()  # every record in records.bin
        self._all_inplace = bool(self._inplace.all())  # every record read from its source
        shar = header.raw.get("shar")  # a Lhotse Shar corpus: fields attached at resolution
        self._shar = SharFields(path, shar, self._arrays) if shar else None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], check_sources: bool = True) -> CutIndex:
        """Map an index directory, validating its header and every column file.

        :param check_sources: check cheaply (size, mtime) that the source manifests are unchanged
            and raise :class:`StaleIndexError` if not; pass False to opt out.
        """
        # absolute: records.bin is opened lazily, possibly after the working directory changed
        # (and a pickled index travels as this path to workers that may start elsewhere)
        directory = Path(path).absolute()
        header = read_header(directory)
        n = header.num_rows
        arrays = {}
        for name in COLUMNS:
            length = header.columns[name]["length"]
            arrays[name] = open_column(directory, name, length)
        for name, meta in header.extra_columns.items():  # added by add-column, validated
            arrays[name] = open_column(directory, name, n, meta["file"], meta["dtype"])
        if "shar" in header.raw:  # a Shar corpus's field byte ranges (validated header entry)
            arrays.update(shar_columns_of(directory, header.raw["shar"], n))
        records = directory / RECORDS_FILE
        expected = header.records.get("size")
        if not records.is_file() or records.stat().st_size != expected:
            found = records.stat().st_size if records.is_file() else "missing"
            raise IndexFormatError(
                f"{records}: expected {expected} bytes, found {found}; rebuild the index"
            )
        offsets = arrays["id_offsets"]
        if n and (offsets[0] != 0 or offsets[n] != arrays["id_blob"].shape[0]):
            raise IndexFormatError(
                f"{directory / 'id_offsets.npy'}: offsets do not span id_blob; rebuild the index"
            )
        index = cls(directory, header, arrays)
        index._open_records_codec()
        if check_sources:
            index.check_sources()
        return index

    def check_sources(self) -> None:
        """Raise :class:`StaleIndexError` if a source file changed size or mtime, or is gone
        while its records are read from it in place. A moved or deleted source whose records
        are stored in the index (``.jsonl.gz``, ``.json``, ``--store-records``) is fine."""
        for source in self.header.sources:
            if source["format"] == "cutset":
                continue
            if source["records"] == "stored" and not os.path.exists(source["path"]):
                continue
            problem = stat_matches(source)
            self._raise_stale(problem)
        if self._shar is not None:  # a Shar corpus's field files are read in place
            self._raise_stale(stale_field_file(self.header.raw["shar"]))

    def _raise_stale(self, problem: str | None) -> None:
        if problem is not None:
            raise StaleIndexError(
                f"index {self.path} is stale: {problem}. Rebuild it with "
                f"`discoseq-index build ... -o {self.path} --force`, or use it as it is: "
                f"`CutIndex.open({str(self.path)!r}, check_sources=False)` (a sampler or "
                "create_dataloader takes that index in place of the path)",
                path=self.path,
                problem=problem,
            )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (str(self.path),))

    # -- columns -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.header.num_rows

    def __repr__(self) -> str:
        return f"CutIndex({str(self.path)!r}, rows={len(self)})"

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """The per-cut columns (read-only arrays of length ``len(self)``): the built-in ones,
        then the :attr:`extra_columns`."""
        return {name: self._arrays[name] for name in (*CUT_COLUMNS, *self.extra_columns)}

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """The names of the columns added after the build (``discoseq-index add-column``)."""
        return tuple(self.header.extra_columns)

    def column_identity(self, name: str) -> str | None:
        """What identifies an added column's values (its file, unique per write, and its
        tokenizer's fingerprint), so a plan state can tell a replaced column; None for a built-in
        column (the index fingerprint covers those)."""
        meta = self.header.extra_columns.get(name)
        if meta is None:
            return None
        return f"{meta['file']}:{meta.get('tokenizer_fingerprint')}"

    def column(self, name: str) -> np.ndarray:
        """One column by name (any of :data:`discoseq.index.format.COLUMNS`, or an added one)."""
        if name not in self._arrays:
            raise KeyError(f"no column {name!r}; columns are {sorted(self._arrays)}")
        return self._arrays[name]

    @property
    def duration(self) -> np.ndarray:
        return self._arrays["duration"]

    @property
    def num_frames(self) -> np.ndarray:
        return self._arrays["num_frames"]

    @property
    def num_samples(self) -> np.ndarray:
        return self._arrays["num_samples"]

    @property
    def num_features(self) -> np.ndarray:
        return self._arrays["num_features"]

    @property
    def num_tokens(self) -> np.ndarray:
        return self._arrays["num_tokens"]

    @property
    def fingerprint(self) -> str:
        """A short hash of the index's content: the sources' content fingerprints, row counts
        and format. Equal for indexes built separately (e.g. on each node) from the same
        manifests; paths, mtimes and build times do not enter it."""
        h = self.header
        content = {
            "format_version": ROWS_FORMAT.get(h.raw["format_version"], h.raw["format_version"]),
            "num_rows": h.num_rows,
            "sources": [(s["format"], s["fingerprint"], s["rows"]) for s in h.sources],
            "skipped": h.build.get("skipped", 0),
        }
        if "shar" in h.raw:  # a Shar corpus: its field files too
            content["shar"] = [
                (f["name"], [e["fingerprint"] for e in f["files"]]) for f in h.raw["shar"]["fields"]
            ]
        digest = hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=8)
        return digest.hexdigest()

    # -- ids -----------------------------------------------------------------------------------
    def _check_row(self, row: int) -> int:
        n = len(self)
        r = int(row)
        if r < 0:
            r += n
        if not 0 <= r < n:
            raise IndexError(f"row {row} out of range for an index of {n} rows")
        return r

    def cut_id(self, row: int) -> str:
        """The id of the cut at ``row``."""
        return self.cut_ids([self._check_row(row)])[0]

    def cut_ids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The ids of ``rows``, in order."""
        return self._ids_of(self._check_rows(rows))

    def _ids_of(self, rows: np.ndarray) -> list[str]:
        """:meth:`cut_ids` of rows already checked."""
        offsets = self._arrays["id_offsets"]
        starts, ends = offsets[rows], offsets[rows + 1]
        if rows.size and (
            starts.min() < 0 or (ends < starts).any() or ends.max() > len(self._id_bytes)
        ):
            bad = (starts < 0) | (ends < starts) | (ends > len(self._id_bytes))
            row = int(rows[np.flatnonzero(bad)[0]])
            raise IndexFormatError(
                f"{self.path / 'id_offsets.npy'}: row {row}: id span "
                f"{int(offsets[row])}..{int(offsets[row + 1])} is outside id_blob "
                f"({len(self._id_bytes)} bytes); the index is corrupted, rebuild it"
            )
        blob = self._id_bytes
        out: list[str] = []
        append = out.append
        try:
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                append(str(blob[s:e], "utf-8"))
        except UnicodeDecodeError as err:
            raise IndexFormatError(
                f"{self.path / 'id_blob.npy'}: row {int(rows[len(out)])}: the cut id is not "
                f"UTF-8 ({err}); the index is corrupted, rebuild it"
            ) from None
        return out

    def _check_rows(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        return checked_rows(rows, len(self))

    def row_of(self, cut_id: str) -> int:
        """The row of a cut id (binary search over sorted id hashes; no dict of all ids)."""
        try:
            if self._lookup is None:
                from discoseq._core.idhash import IdLookup

                a = self._arrays
                self._lookup = IdLookup(
                    a["id_hash_sorted"], a["id_hash_rows"], a["id_offsets"], a["id_blob"]
                )
            row = self._lookup.find(cut_id.encode())
        except ValueError as e:  # a lookup entry outside the index (checked before it is read)
            raise IndexFormatError(
                f"{self.path / 'id_hash_rows.npy'}: {e}; the index is corrupted, rebuild it"
            ) from e
        if row < 0:
            raise KeyError(f"cut id {cut_id!r} is not in index {self.path}")
        return int(row)

    def __contains__(self, cut_id: object) -> bool:
        if not isinstance(cut_id, str):
            return False
        try:
            self.row_of(cut_id)
        except KeyError:
            return False
        return True

    # -- records -------------------------------------------------------------------------------
    def _open_records_codec(self) -> None:
        """Load the decoder of ``records.bin`` (format 2), checking the dictionary file's size
        and fingerprint against the header: a damaged dictionary would decode every record
        wrongly, so it is refused here, not record by record."""
        self._decoder = None
        records = self.header.records
        if records["codec"] == "none":  # format 1: uncompressed JSON lines
            return
        dictionary = b""
        meta = records.get("dictionary")
        if meta is not None:
            path = self.path / meta["file"]
            try:
                dictionary = path.read_bytes() if path.is_file() else b""
            except OSError as e:
                raise IndexFormatError(
                    f"{path}: cannot be read ({e.strerror}); rebuild the index"
                ) from e
            if (
                len(dictionary) != meta["size"]
                or dictionary_fingerprint(dictionary) != meta["fingerprint"]
            ):
                found = f"{len(dictionary)} bytes" if path.is_file() else "missing"
                raise IndexFormatError(
                    f"{path}: the records' dictionary is damaged ({found}, expected "
                    f"{meta['size']} bytes with fingerprint {meta['fingerprint']}); "
                    "rebuild the index"
                )
        self._decoder = RecordDecoder(dictionary, records["max_record_bytes"])

    def _stored_records(self) -> mmap.mmap | bytes:
        """``records.bin`` mapped read-only (its size was checked on open): a batch's stored
        records are sliced from it, with no system call per record."""
        mapped = self._stored_map
        if mapped is None:
            if not self.header.records["size"]:
                return b""
            fd = self._fd(-1)
            with self._lock:
                if self._stored_map is None:
                    try:
                        self._stored_map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    except (OSError, ValueError) as e:
                        raise StaleIndexError(
                            f"index {self.path}: cannot map {RECORDS_FILE} ({e}); "
                            "rebuild the index",
                            path=self.path,
                        ) from e
                mapped = self._stored_map
        return mapped

    def _fd(self, source_id: int) -> int:
        """A file descriptor for a source's records, opened once per process (``-1``:
        ``records.bin``)."""
        pid = os.getpid()
        if pid != self._fd_pid:  # forked (e.g. a DataLoader worker): never share descriptors
            self._fds = {}
            self._fd_pid = pid
            self._lock = threading.Lock()
        fd = self._fds.get(source_id)
        if fd is None:
            with self._lock:
                fd = self._fds.get(source_id)
                if fd is None:
                    path = self._records_path(source_id)
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except OSError as e:
                        raise StaleIndexError(
                            f"index {self.path}: cannot read the records of source {source_id} "
                            f"({path}: {e.strerror}); it was moved or deleted after the build: "
                            "rebuild the index (or build with --store-records to keep them)",
                            path=self.path,
                        ) from e
                    self._fds[source_id] = fd
        return fd

    def _records_path(self, source_id: int) -> str:
        if source_id >= 0 and self._inplace[source_id]:
            return str(self.header.sources[source_id]["path"])
        return str(self.path / RECORDS_FILE)

    def _check_record_spans(
        self, rows: np.ndarray, src: np.ndarray, off: np.ndarray, length: np.ndarray
    ) -> None:
        """The columns that address records (``source_id``, ``record_offset``) hold values
        ``open`` does not scan; check those of ``rows`` before using them as addresses."""
        n_sources = len(self.header.sources)
        bad_src = (src < 0) | (src >= n_sources)
        if bad_src.any():
            i = int(np.flatnonzero(bad_src)[0])
            raise IndexFormatError(
                f"{self.path / 'source_id.npy'}: row {int(rows[i])}: source_id {int(src[i])} "
                f"is not one of the {n_sources} sources; the index is corrupted, rebuild it"
            )
        stored = ~self._inplace[src]
        end = off + length.astype(np.int64)
        bad = (off < 0) | (end < off) | (stored & (end > self.header.records["size"]))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = RECORDS_FILE if stored[i] else self._records_path(int(src[i]))
            raise IndexFormatError(
                f"{self.path / 'record_offset.npy'}: row {int(rows[i])}: record span "
                f"{int(off[i])}+{int(length[i])} is outside {where}; the index is corrupted, "
                "rebuild it"
            )

    def records(self, rows: Sequence[int] | np.ndarray) -> list[bytes]:
        """The raw JSON records of ``rows``, in the order asked: a source read in place costs
        one ``pread`` per run of neighbouring records (per record when they lie apart); stored
        records are sliced from the mapped ``records.bin`` and decompressed (format 2) in one
        loop, with no system call."""
        return self._records_of(self._check_rows(rows))

    def _records_of(self, rows: np.ndarray) -> list[bytes]:
        """:meth:`records` of rows already checked."""
        a = self._arrays
        src = a["source_id"][rows]
        off = a["record_offset"][rows]
        length = a["record_length"][rows]
        if not rows.size:
            return []
        if self._all_stored:  # every record in records.bin: four reductions check the spans
            end = off + length  # int64: a wrapped sum is negative
            if (
                src.min() < 0
                or src.max() >= len(self.header.sources)
                or off.min() < 0
                or end.min() < 0
                or end.max() > self.header.records["size"]
            ):
                self._check_record_spans(rows, src.astype(np.int64), off, length)
            return self._read_stored(rows, off, length)
        src_a = src.astype(np.int64)
        self._check_record_spans(rows, src_a, off, length)
        out: list[bytes] = [b""] * len(rows)
        if self._all_inplace:  # no masks: every record read from its source
            self._read_inplace(
                list(range(len(rows))), rows, src_a.tolist(), off.tolist(), length.tolist(), out
            )
            return out
        stored = ~self._inplace[src_a]
        if stored.any():
            at = np.flatnonzero(stored)
            for i, data in zip(
                at.tolist(), self._read_stored(rows[at], off[at], length[at]), strict=True
            ):
                out[i] = data
        if not stored.all():
            at = np.flatnonzero(~stored)
            self._read_inplace(
                at.tolist(), rows, src_a[at].tolist(), off[at].tolist(), length[at].tolist(), out
            )
        return out

    def _read_stored(self, rows: np.ndarray, off: np.ndarray, length: np.ndarray) -> list[bytes]:
        """The records of ``rows`` (stored in ``records.bin``, spans already checked)."""
        data = self._stored_records()
        decoder = self._decoder
        if decoder is None:  # format 1: the JSON lines themselves
            view = memoryview(data)
            spans = zip(off.tolist(), length.tolist(), strict=True)
            return [bytes(view[o : o + n]) for o, n in spans]
        try:
            return decoder.decompress_spans(data, off.tolist(), length.tolist())
        except FrameError as e:
            i = e.position
            raise IndexFormatError(
                f"{self.path / RECORDS_FILE}: row {int(rows[i])}: its record (bytes "
                f"{int(off[i])}+{int(length[i])}) does not decompress ({e.reason}); the index "
                "is corrupted, rebuild it"
            ) from None

    def _read_inplace(
        self,
        pos: list[int],
        rows: np.ndarray,
        srcs: list[int],
        offs: list[int],
        lens: list[int],
        out: list,
    ) -> None:
        """Fill ``out[pos[q]]`` with the record of source ``srcs[q]`` at ``offs[q]`` (``lens[q]``
        bytes), read in place: records that follow one another in the order asked, each starting
        at most :data:`COALESCE_GAP` bytes after the previous one ends (a sequential batch, a
        window read in file order), are read with one ``pread`` of at most
        :data:`COALESCE_BYTES`; others with one each. ``rows[pos[q]]`` names a record in errors."""
        sizes: dict[int, int] = {}
        pread = os.pread
        k, m = 0, len(pos)
        while k < m:
            s, a, n = srcs[k], offs[k], lens[k]
            b = a + n
            j = k + 1
            while j < m and srcs[j] == s and b <= offs[j] <= b + COALESCE_GAP:
                if offs[j] + lens[j] - a > COALESCE_BYTES:
                    break
                b = offs[j] + lens[j]
                j += 1
            fd = self._fd(s)
            try:
                size = sizes.get(s)
                if size is None:
                    size = sizes[s] = os.fstat(fd).st_size
                # past the end: read what is there, so a corrupted length never sizes a buffer
                data = pread(fd, min(b - a, max(size - a, 0)), a)
            except OSError as e:  # e.g. the source path is now a directory
                raise StaleIndexError(
                    f"index {self.path}: row {int(rows[pos[k]])}: cannot read its record from "
                    f"{self._records_path(s)} ({e.strerror}); rebuild the index",
                    path=self.path,
                ) from e
            if j == k + 1:
                if len(data) != n:
                    self._raise_truncated(rows[pos[k]], s)
                out[pos[k]] = data
            else:
                for q in range(k, j):
                    record = data[offs[q] - a : offs[q] - a + lens[q]]
                    if len(record) != lens[q]:
                        self._raise_truncated(rows[pos[q]], s)
                    out[pos[q]] = record
            k = j

    def _raise_truncated(self, row: int, source_id: int) -> None:
        raise StaleIndexError(
            f"index {self.path}: row {int(row)}: record of source "
            f"{self.header.sources[source_id]['path']} is truncated (the source changed after "
            "the build, or the index is corrupted); rebuild the index",
            path=self.path,
        )

    def records_in_file_order(self, rows: Sequence[int] | np.ndarray) -> dict[int, bytes]:
        """The raw records of ``rows`` by row (duplicates read once), read sorted by source and
        byte offset, so a window of batches costs one forward pass over each file."""
        unique = np.unique(self._check_rows(rows))
        order = np.lexsort(
            (self._arrays["record_offset"][unique], self._arrays["source_id"][unique])
        )
        unique = unique[order]
        return dict(zip(unique.tolist(), self.records(unique), strict=True))

    def record_dicts(
        self, rows: Sequence[int] | np.ndarray, records: Mapping[int, bytes] | None = None
    ) -> list[dict[str, Any]]:
        """The records of ``rows`` as dicts, each checked to carry its row's cut id.

        :param records: raw records by row, already read (e.g. by
            :meth:`records_in_file_order`); read now when None.
        """
        return self._checked_dicts(self._check_rows(rows), records)[0]

    def _checked_dicts(
        self,
        rows: np.ndarray,
        records: Mapping[int, bytes] | None,
        decode: Callable[[dict[str, Any]], Any] | None = None,
    ) -> tuple[list[Any], list[str]]:
        """(:meth:`record_dicts`, the cut ids) of rows already checked; with ``decode``, each
        record's ``decode(record)`` instead of the dict, in the same pass."""
        raw = self._records_of(rows) if records is None else [records[r] for r in rows.tolist()]
        ids = self._ids_of(rows)
        loads = orjson.loads
        out: list[Any] = []
        append = out.append
        for cut_id, data in zip(ids, raw, strict=True):
            try:
                record = loads(data)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or record.get("id") != cut_id:
                row = int(rows[len(out)])
                raise StaleIndexError(
                    f"index {self.path}: the record of row {row} (cut {cut_id!r}, "
                    f"{self.where(row)}) does not match its source any more; rebuild the index",
                    path=self.path,
                )
            if decode is None:
                append(record)
                continue
            try:
                append(decode(record))
            except Exception as e:  # whatever Lhotse raises: say which cut and where it is
                row = int(rows[len(out)])
                raise ManifestError(
                    f"Lhotse cannot load cut {cut_id!r} (row {row} of index {self.path}): "
                    f"{type(e).__name__}: {e}; fix the record and rebuild the index",
                    *self._source_line(row),
                ) from e
        return out, ids

    def resolve(
        self, rows: Sequence[int] | np.ndarray, records: Mapping[int, bytes] | None = None
    ) -> Any:
        """A Lhotse ``CutSet`` of the cuts at ``rows``, in the order asked; reads only those.

        Each cut is built as Lhotse's ``deserialize_cut`` builds it: common ``MonoCut`` shapes
        directly (:mod:`discoseq.index.decode`, checked equal at first use), every other cut
        type (also a standalone ``PaddingCut`` line, which Lhotse's lazy manifest reader
        misreads) by ``deserialize_cut`` itself.
        A Lhotse Shar corpus's cuts get their fields as ``CutSet.from_shar`` attaches them
        (:class:`~discoseq.index.shar.SharFields`).

        :param records: raw records by row, already read (see :meth:`record_dicts`).
        """
        from lhotse import CutSet

        from discoseq.index.decode import cut_decoder

        rows = self._check_rows(rows)
        cuts = self._checked_dicts(rows, records, cut_decoder())[0]
        if self._shar is not None:  # a Shar corpus: each cut's field data, read in file order
            self._shar.attach(rows, cuts)
        return CutSet.from_cuts(cuts)

    def _source_line(self, row: int) -> tuple[str | None, int | None]:
        """(source path, line) of ``row``, as far as the columns can be trusted."""
        s = int(self._arrays["source_id"][row])
        if not 0 <= s < len(self.header.sources):
            return None, None
        return str(self.header.sources[s]["path"]), int(self._arrays["source_line"][row])

    def where(self, row: int) -> str:
        """``path:line`` of the record of ``row`` in its source (for messages)."""
        path, line = self._source_line(self._check_row(row))
        return f"{path}:{line}" if path is not None else "source unknown"

    def close(self) -> None:
        if self._stored_map is not None:
            try:
                self._stored_map.close()
            except BufferError:  # a view of it is still held: unmapped when collected
                pass
            self._stored_map = None
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        if self._shar is not None:
            self._shar.close()

    def __del__(self) -> None:
        try:
            if self._fd_pid == os.getpid():
                self.close()
        except Exception:
            pass


def checked_rows(rows: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """``rows`` as int64, each a row of an index of ``n`` rows (IndexError otherwise)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = int(np.flatnonzero((rows < 0) | (rows >= n))[0])
        raise IndexError(
            f"rows[{bad}]={int(rows[bad])} is out of range for an index of {n} rows (0..{n - 1})"
        )
    return rows


def _reopen(path: str) -> CutIndex:
    # Workers trust the parent's check of the sources: a worker must not fail on a stat race.
    return CutIndex.open(path, check_sources=False)
