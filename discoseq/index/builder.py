"""``build_index``: compile Lhotse cut manifests into an index directory, streaming, in bounded
memory, into a temporary sibling that is renamed into place only when complete."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import functools
import glob
import os
import queue as queue_module
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from discoseq._version import __version__
from discoseq.errors import IndexWriteError, ManifestError
from discoseq.index.fields import NotACutError, RecordError, fields_from_record
from discoseq.index.format import (
    COLUMNS,
    DICT_FILE,
    FORMAT_VERSION,
    HEADER_FILE,
    MAGIC,
    RECORDS_FILE,
    VALUE_COLUMNS,
    ColumnWriter,
    copy_range,
    is_json_int,
    load_column,
    mapped_column,
    move_file,
    reopen_for_writing,
    write_header,
)
from discoseq.index.owner import claim, release, remove_abandoned
from discoseq.index.records import (
    CODEC,
    LEVEL,
    RecordEncoder,
    dictionary_fingerprint,
    take_sample,
    train_dictionary,
)
from discoseq.index.shar import index_fields, shar_input
from discoseq.index.sources import (
    Chunk,
    Source,
    cutset_chunks,
    file_chunks,
    file_source,
    prefetch,
)

SCANNED = (*VALUE_COLUMNS, "cut_type")  # what the scanner (or the exact path) computes
#: The columns of one value per row that need no change when rows come before them: a worker
#: process writes them into the index's own files at their rows when it knows its first row
#: (see :func:`_index_in_processes`); ``record_offset`` too for records read in place.
PLACED = (*SCANNED, "source_id", "source_line", "record_length")
MAX_REPORTED_ERRORS = 20
#: Added to a bad record's error when bad records raise (not to a line of another manifest).
SKIP_HINT = (
    " (to skip bad records and count them in the header instead, build the index with them "
    "skipped: discoseq-index build ... --on-error skip, build_index(..., on_error='skip'))"
)


class WorkerDiedError(RuntimeError):
    """A worker process of ``jobs`` > 1 was killed (out of memory, a signal): no Python
    exception to report, so this names what it was working on. Nothing was written."""


def stop_workers(pool: Any) -> None:
    """Stop a ``ProcessPoolExecutor``'s workers now (an error, Ctrl-C): cancel what is queued
    and terminate the running ones instead of waiting for their current task."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


#: Most threads that merge the parts' id hashes at the end of a build (:func:`merge_threads`).
MAX_MERGE_THREADS = 4


def usable_cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def merge_threads() -> int:
    """Threads for merging the parts' sorted id hashes at the end of a build, when the workers
    are done: the cores this process may use, at most :data:`MAX_MERGE_THREADS` (the arrays are
    the same however many; no memory more)."""
    return max(1, min(usable_cores(), MAX_MERGE_THREADS))


def pipeline_threads(processes: int) -> bool:
    """Whether each of ``processes`` building processes reads, scans and compresses in threads
    of its own: when there are at least two cores for each. With fewer, the processes keep the
    cores busy by themselves, and handing chunks between threads only adds CPU time (measured:
    5-6% more per cut with two workers on two cores)."""
    return usable_cores() // processes >= 2


def line_scanner() -> Callable[[bytes | memoryview], dict[str, np.ndarray]]:
    """The compiled scanner of cut JSON lines, :func:`discoseq._core.cutscan.scan_cut_lines`:
    the :data:`SCANNED` values, line span and id span of every non-blank line of a buffer, with
    the lines it cannot compute with certainty flagged for :func:`scan_chunk` to complete.

    :func:`build_index` and :func:`~discoseq.index.verify_index` both scan through it, so a
    verification recomputes the columns exactly as the build did. The compiled module is looked
    up on each call (a test may swap ``scan_cut_lines`` for its exact-path twin).
    """
    from discoseq._core.cutscan import scan_cut_lines

    return scan_cut_lines


def gather_spans(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``data[starts[i]:ends[i]]``; returns (bytes, lengths): compiled,
    :func:`discoseq._core.idhash.gather_spans`."""
    from discoseq._core.idhash import gather_spans as gather

    return gather(
        data, np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(ends, np.int64)
    )


def gather_ids(
    buf: bytes | memoryview, extra: bytes, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ids ``starts[i]:ends[i]`` of a chunk ``buf`` concatenated, and their lengths, where
    a span from ``len(buf)`` on lies in ``extra`` (the ids the exact path read, see
    :func:`complete_chunk`): as if gathered from ``buf + extra``, without copying ``buf``."""
    data = np.frombuffer(buf, np.uint8)
    if not extra:
        return gather_spans(data, starts, ends)
    base = len(buf)
    late = starts >= base
    # the ids in ``buf`` (the others empty), then those in ``extra``, then interleaved by row
    blob_buf, len_buf = gather_spans(data, np.where(late, 0, starts), np.where(late, 0, ends))
    blob_extra, len_extra = gather_spans(
        np.frombuffer(extra, np.uint8), starts[late] - base, ends[late] - base
    )
    lengths = len_buf.copy()
    lengths[late] = len_extra
    first = np.cumsum(len_buf) - len_buf
    first[late] = len(blob_buf) + np.cumsum(len_extra) - len_extra
    both = np.concatenate([blob_buf, blob_extra])
    return gather_spans(both, first, first + lengths)


def scan_chunk(
    cols: dict[str, np.ndarray],
    buf: bytes | memoryview,
    on_bad: Callable[[str, int, bool], None],
) -> tuple[dict[str, np.ndarray], np.ndarray, bytes | memoryview]:
    """Complete the compiled scanner's columns ``cols`` of ``buf`` with the exact Python path
    for the lines it flagged. ``on_bad(message, line_no, skippable)`` raises or lets the line
    be skipped (``skippable`` False: the line is no cut at all, from another kind of manifest).

    Returns (columns, keep mask, the bytes that ``id_start``/``id_end`` refer to).
    """
    cols, keep, extra = complete_chunk(cols, buf, on_bad)
    return cols, keep, (b"".join([buf, extra]) if extra else buf)


def complete_chunk(
    cols: dict[str, np.ndarray],
    buf: bytes | memoryview,
    on_bad: Callable[[str, int, bool], None],
) -> tuple[dict[str, np.ndarray], np.ndarray, bytes]:
    """:func:`scan_chunk` without joining: returns (columns, keep mask, ``extra``), where the
    ids the exact path read are in ``extra``, at ``id_start - len(buf)`` (the build gathers
    them with :func:`gather_ids` and never copies the chunk)."""
    keep = np.ones(len(cols["start"]), dtype=bool)
    # An empty id is valid JSON and the scanner passes it; the exact path rejects it by name.
    slow = np.flatnonzero((cols["status"] != 0) | (cols["id_end"] == cols["id_start"]))
    extra: list[bytes] = []
    base = len(buf)
    for i in slow.tolist():
        line_no = int(cols["line_no"][i])
        try:
            f = fields_from_record(orjson.loads(buf[cols["start"][i] : cols["end"][i]]))
        except orjson.JSONDecodeError as e:  # a record is one line: its column says where
            on_bad(f"malformed JSON at column {e.colno} of the line ({e.msg})", line_no, True)
            keep[i] = False
            continue
        except RecordError as e:
            on_bad(str(e), line_no, not isinstance(e, NotACutError))
            keep[i] = False
            continue
        except ArithmeticError as e:  # a number no cut can hold; fields names most of them
            on_bad(f"a value is out of range ({type(e).__name__}: {e})", line_no, True)
            keep[i] = False
            continue
        for name in SCANNED:
            cols[name][i] = getattr(f, name)
        cut_id = f.cut_id.encode()
        cols["id_start"][i] = base
        cols["id_end"][i] = base + len(cut_id)
        base += len(cut_id)
        extra.append(cut_id)
    return cols, keep, b"".join(extra)


#: Most bytes of placed columns a worker holds in memory while its part's first row is not yet
#: known (:class:`_HeldColumn`); past them it waits for the row.
HOLD_BYTES = 64 << 20


class _HeldColumn:
    """A placed column's values, held in memory from the start of a part until the part's first
    row is known (the building process counts the rows before it while the worker scans):
    then written into the index's file at that row (:meth:`_IndexWriter.place`)."""

    def __init__(self, dtype: str) -> None:
        self.dtype = np.dtype(dtype)
        self.pieces: list[np.ndarray] = []
        self.nbytes = 0

    def append(self, values: np.ndarray) -> None:
        arr = np.ascontiguousarray(values, dtype=self.dtype)
        self.pieces.append(arr)
        self.nbytes += arr.nbytes


class _IndexWriter:
    """Appends scanned chunks to the column files of an index being built in ``tmp``.

    ``placed`` (a part, in a worker process): (the index's directory, the part's first row or a
    function that returns it once known (None before), the columns written straight into the
    index's files from that row instead of into ``tmp``: held in memory until the row is known,
    so the worker scans meanwhile)."""

    def __init__(
        self,
        tmp: Path,
        on_error: str,
        dictionary: bytes = b"",
        placed: tuple[Path, int | Callable[[], int | None], Sequence[str]] | None = None,
    ) -> None:
        from discoseq._core.idhash import hash_spans

        self._hash_spans = hash_spans
        self._scan = line_scanner()
        self.tmp = tmp
        self.on_error = on_error
        names = [*SCANNED, "source_id", "source_line", "record_offset", "record_length"]
        self._index_dir, self._first_row, self.placed = (
            placed if placed is not None else (tmp, 0, ())
        )
        self.columns = {
            name: ColumnWriter(tmp / f"{name}.npy", COLUMNS[name])
            for name in names
            if name not in self.placed
        }
        self.held = {name: _HeldColumn(COLUMNS[name]) for name in names if name in self.placed}
        self.place(wait=False)
        self.id_offsets = ColumnWriter(tmp / "id_offsets.npy", COLUMNS["id_offsets"])
        self.id_offsets.append(np.zeros(1, np.int64))
        self.id_blob = ColumnWriter(tmp / "id_blob.npy", COLUMNS["id_blob"])
        self.id_hash = ColumnWriter(tmp / "id_hash_unsorted.npy", COLUMNS["id_hash_sorted"])
        # parts (jobs > 1) bring their hashes sorted, with each one's row within the part
        # (close_part): finish merges these runs instead of sorting every hash here
        self.runs: list[tuple[int, int]] = []  # (first row, rows) of each sorted run
        self.run_rows: ColumnWriter | None = None
        self.records = open(tmp / RECORDS_FILE, "wb")
        self.records_size = 0
        self.encoder = RecordEncoder(dictionary)
        self.raw_records_size = 0  # stored records' bytes before compression
        self.max_record_bytes = 0  # the longest stored record, uncompressed
        self.rows = 0
        self.skipped = 0
        self.errors: list[str] = []

    def place(self, wait: bool) -> None:
        """Open the placed columns in the index's files at the part's first row and write what
        they hold, once the row is known; with ``wait``, wait for it."""
        if not self.held:
            return
        first_row = self._first_row if isinstance(self._first_row, int) else self._first_row()
        while first_row is None and wait:
            time.sleep(0.002)
            assert not isinstance(self._first_row, int)
            first_row = self._first_row()
        if first_row is None:
            return
        for name, held in self.held.items():
            writer = ColumnWriter(self._index_dir / f"{name}.npy", COLUMNS[name], first_row)
            for values in held.pieces:
                writer.append(values)
            self.columns[name] = writer
        self.held = {}

    def _column(self, name: str) -> ColumnWriter | _HeldColumn:
        """Where ``add`` appends column ``name``: its writer, or its values held."""
        return self.held.get(name) or self.columns[name]

    def scanned(
        self,
        chunks: Iterable[Chunk],
        stored: bool = False,
        threads: bool = True,
        read_apart: bool = False,
    ) -> Generator[tuple[Chunk, dict[str, np.ndarray]], None, None]:
        """Chunks with their compiled scan. With ``threads``, produced in background threads
        while this thread writes columns: reading (fingerprinting, decompressing) and scanning
        in one, or each in its own with ``read_apart`` (a plain file's fingerprint costs about
        as much as its scan), all releasing the GIL. With ``stored``, every scanned line is
        also compressed, a frame each (``scan["frames"]``, ``scan["frame_lengths"]``), in
        another thread. The threads are stopped when this ends. Without ``threads``, all in
        this thread, chunk after chunk (the same values)."""
        scan = self._scan
        compress = self.encoder.compress_spans

        def compressed(
            item: tuple[Chunk, dict[str, np.ndarray]],
        ) -> tuple[Chunk, dict[str, np.ndarray]]:
            chunk, cols = item
            frames, lengths = compress(chunk.data, cols["start"], cols["end"])
            cols["frames"] = np.frombuffer(frames, np.uint8)
            cols["frame_lengths"] = lengths
            return chunk, cols

        if not threads:
            for chunk in chunks:
                item = (chunk, scan(chunk.data))
                yield compressed(item) if stored else item
            return
        stages: list[Generator[Any, None, None]] = []
        if read_apart:
            stages.append(prefetch(iter(chunks)))
            chunks = stages[-1]
        stages.append(prefetch((chunk, scan(chunk.data)) for chunk in chunks))
        if stored:  # compressing is as costly as reading and scanning: a thread of its own
            stages.append(prefetch(map(compressed, stages[-1])))
        try:
            yield from stages[-1]
        finally:
            for stage in reversed(stages):  # the last first: it may wait on the one before
                stage.close()

    def add(
        self,
        chunk: Chunk,
        scanned: dict[str, np.ndarray],
        source: Source,
        source_id: int,
        first_line: int,
    ) -> int:
        """Append a scanned chunk whose first line is ``first_line`` (1-based); returns its
        line count."""
        buf = chunk.data

        def on_bad(message: str, line_no: int, skippable: bool) -> None:
            self._error(message, source, first_line + line_no, skippable)

        scan, keep, extra = complete_chunk(scanned, buf, on_bad)
        if len(keep):  # lines = those up to the last record + the blank ones after it
            last_end = int(scan["end"][-1])
            lines = int(scan["line_no"][-1]) + bytes(buf[last_end:]).count(b"\n")
        else:
            lines = bytes(buf).count(b"\n")
        rows = np.flatnonzero(keep)
        m = int(rows.size)
        if m == 0:
            return lines
        kept: np.ndarray | slice = rows if m < len(keep) else slice(None)  # no copy if all
        if self.held:
            self.place(wait=sum(h.nbytes for h in self.held.values()) > HOLD_BYTES)
        column = self._column
        for name in SCANNED:
            column(name).append(scan[name][kept])
        starts, ends = scan["start"][kept], scan["end"][kept]
        column("source_id").append(np.full(m, source_id, np.int32))
        column("source_line").append(first_line + scan["line_no"][kept])
        if source.format == "cutset":  # no file to fingerprint: fingerprint its records
            source.update_fingerprint(buf)
        if source.records == "inplace":
            column("record_offset").append(chunk.offset + starts)
            column("record_length").append(ends - starts)
        else:  # the kept records' frames (compressed by ``scanned``), one after another
            frames, lengths = scan["frames"], scan["frame_lengths"]
            if m < len(keep):
                frame_ends = np.cumsum(lengths)
                starts_f = (frame_ends - lengths)[rows]
                frames, lengths = gather_spans(frames, starts_f, frame_ends[rows])
            offsets = np.cumsum(lengths) - lengths
            column("record_offset").append(self.records_size + offsets)
            column("record_length").append(lengths)
            self.records.write(frames.data)
            self.records_size += int(lengths.sum())
            raw = ends - starts
            self.raw_records_size += int(raw.sum())
            self.max_record_bytes = max(self.max_record_bytes, int(raw.max()))
        blob, lengths = gather_ids(buf, extra, scan["id_start"][kept], scan["id_end"][kept])
        local = np.zeros(m + 1, np.int64)
        np.cumsum(lengths, out=local[1:])
        self.id_blob.append(blob)
        self.id_offsets.append(self.id_blob.length - int(local[-1]) + local[1:])
        self.id_hash.append(self._hash_spans(blob, local))
        self.rows += m
        source.rows += m
        return lines

    def _error(self, message: str, source: Source, line: int, skippable: bool = True) -> None:
        if self.on_error == "raise":
            raise ManifestError(message + (SKIP_HINT if skippable else ""), source.path, line)
        error = ManifestError(message, source.path, line)
        self.skipped += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(str(error))

    def finish(self, sources: Sequence[Source]) -> dict[str, Any]:
        """Close the columns, build the id lookup, check ids are unique; returns column meta."""
        for writer in self.columns.values():
            writer.close()
        for writer in (self.id_offsets, self.id_blob, self.id_hash):
            writer.close()
        self.records.close()
        hashes = load_column(self.tmp / "id_hash_unsorted.npy")
        # the id lookup's two columns are sorted or merged straight into their mapped files
        # (let go of on any error too: a kept traceback would keep them mapped)
        out = _lookup_files(self.tmp, self.rows)
        try:
            if self.run_rows is None:  # a stable argsort
                from discoseq._core.idhash import sort_hashes

                sort_hashes(hashes, out=out)
            else:
                self._merge_runs(hashes, out)
            del hashes
            # side by side (the end of a parallel build waits on these): an error in one is
            # raised once all are done, and the build's directory is then removed
            spent = [self.tmp / "id_hash_unsorted.npy"]
            if self.run_rows is not None:
                spent.append(self.run_rows.path)
            _run_all(
                [
                    *(functools.partial(os.unlink, path) for path in spent),
                    functools.partial(_check_unique, self.tmp, *out, sources),
                ]
            )
        finally:
            del out
        lengths = {name: w.length for name, w in self.columns.items()}
        lengths.update(
            id_offsets=self.id_offsets.length,
            id_blob=self.id_blob.length,
            id_hash_sorted=self.rows,
            id_hash_rows=self.rows,
        )
        return {
            name: {"file": f"{name}.npy", "dtype": dtype, "length": lengths[name]}
            for name, dtype in COLUMNS.items()
        }

    def _merge_runs(self, hashes: np.ndarray, out: tuple[np.ndarray, np.ndarray]) -> None:
        """The id hashes sorted, and their rows, into ``out``: from the parts' sorted runs
        (merged by :func:`~discoseq._core.idhash.merge_sorted_runs`) and the rows added here
        between them (a CutSet's: sorted here first). The same arrays as a stable argsort of
        all hashes."""
        from discoseq._core.idhash import merge_sorted_runs

        assert self.run_rows is not None
        self.run_rows.close()
        run_rows = load_column(self.run_rows.path)
        spans: list[tuple[int, int, bool]] = []  # (first row, end, from a part)
        row = 0
        for first, m in self.runs:
            if first > row:
                spans.append((row, first, False))
            spans.append((first, first + m, True))
            row = first + m
        if row < self.rows:
            spans.append((row, self.rows, False))
        rows: np.ndarray = run_rows  # when the parts' runs cover every row
        if not all(part for *_, part in spans):  # rows added here: sorted into runs of their own
            hashes, rows = np.array(hashes), np.empty(self.rows, np.int64)
            taken = 0
            for start, end, part in spans:
                if part:
                    rows[start:end] = run_rows[taken : taken + end - start]
                    taken += end - start
                else:
                    local = np.argsort(hashes[start:end], kind="stable")
                    hashes[start:end] = hashes[start:end][local]
                    rows[start:end] = local
        bounds = [0] + [end for _, end, _ in spans]
        merge_sorted_runs(hashes, rows, np.asarray(bounds, np.int64), merge_threads(), out=out)
        del rows, run_rows

    def abort(self) -> None:
        self.records.close()

    def close_part(self) -> dict[str, Any]:
        """Close the files of a part (one source indexed in a worker process, see
        :func:`_index_part`) and sort its id hashes there, in the worker
        (``id_hash_sorted.npy``, and each one's row in ``id_hash_rows.npy``); returns what
        :meth:`add_part` needs besides the files."""
        self.place(wait=True)
        for writer in (*self.columns.values(), self.id_offsets, self.id_blob, self.id_hash):
            writer.close()
        self.records.close()
        from discoseq._core.idhash import sort_hashes

        # a stable argsort, into the part's mapped files
        hashes = load_column(self.id_hash.path, mmap=False)
        sort_hashes(hashes, out=_lookup_files(self.tmp, self.rows))
        os.unlink(self.id_hash.path)
        return {
            "rows": self.rows,
            "skipped": self.skipped,
            "errors": self.errors,
            "records_size": self.records_size,
            "raw_records_size": self.raw_records_size,
            "max_record_bytes": self.max_record_bytes,
            "placed": list(self.placed),
        }

    def add_part(self, part: Path, summary: dict[str, Any], stored: bool) -> None:
        """Append a part's rows as :meth:`add` would have appended them: the same bytes, with
        record offsets (of stored records) and id offsets moved past what is already here.
        Columns that need no change are copied file to file (``ColumnWriter.append_file``), or
        were written into this index's files at their rows by the worker (``placed``: only
        counted here); the part's sorted id hashes become a run for :meth:`finish` to merge.
        The files of a part with nothing before it are taken as they are (renamed,
        :meth:`_adopt_part`). The files are written in threads, one file each (the copies
        run in the kernel or in NumPy, without the GIL): the parts' appends are the serial end
        of a parallel build."""
        m = summary["rows"]
        if self.run_rows is None:
            self.run_rows = ColumnWriter(self.tmp / "id_hash_run_rows.npy", "<i8")
        if self.rows == 0 and self.records_size == 0 and self.id_blob.length == 0:
            self._adopt_part(part, summary)
            return
        run_rows = self.run_rows
        records_size = self.records_size
        blob_base = self.id_blob.length
        # each writes one file of this index from one file of the part
        copies: list[tuple[Callable[[], None], Path]] = []
        for name, writer in self.columns.items():
            if name in summary["placed"]:
                writer.claim(m)
            elif name == "record_offset" and stored:

                def moved(writer: ColumnWriter = writer, name: str = name) -> None:
                    for values in _column_pieces(part / f"{name}.npy", m):
                        writer.append(values + records_size)

                copies.append((moved, part / f"{name}.npy"))
            else:
                path = part / f"{name}.npy"
                copies.append((functools.partial(writer.append_file, path, m), path))

        def id_offsets() -> None:
            for k, values in enumerate(_column_pieces(part / "id_offsets.npy", m + 1)):
                self.id_offsets.append((values[1:] if k == 0 else values) + blob_base)  # 0: ours

        def records() -> None:
            self.records.flush()
            with open(part / RECORDS_FILE, "rb") as f:
                copy_range(f.fileno(), self.records.fileno(), 0, summary["records_size"])
            self.records.seek(0, os.SEEK_END)

        blob_length = int(load_column(part / "id_offsets.npy")[m]) if m else 0
        blob, hashes, runs = (
            part / "id_blob.npy",
            part / "id_hash_sorted.npy",
            part / "id_hash_rows.npy",
        )
        copies += [
            (id_offsets, part / "id_offsets.npy"),
            (functools.partial(self.id_blob.append_file, blob, blob_length), blob),
            (functools.partial(self.id_hash.append_file, hashes, m), hashes),
            (functools.partial(run_rows.append_file, runs, m), runs),
            (records, part / RECORDS_FILE),
        ]
        # each part file removed once copied, in the copy's thread (not after, one by one)
        _run_all([functools.partial(_copy_then_remove, copy, path) for copy, path in copies])
        self._count_part(summary)

    def _adopt_part(self, part: Path, summary: dict[str, Any]) -> None:
        """The first part's files become this index's (no offset moves past nothing: they hold
        the bytes :meth:`add_part` would copy); moved, not copied, as nothing is here yet."""
        m = summary["rows"]
        for name, writer in self.columns.items():
            if name in summary["placed"]:
                writer.claim(m)
            else:
                writer.adopt(part / f"{name}.npy", m)
        blob_length = int(load_column(part / "id_offsets.npy")[m]) if m else 0
        self.id_offsets.adopt(part / "id_offsets.npy", m + 1)  # its 0 stands for ours
        self.id_blob.adopt(part / "id_blob.npy", blob_length)
        self.id_hash.adopt(part / "id_hash_sorted.npy", m)
        assert self.run_rows is not None
        self.run_rows.adopt(part / "id_hash_rows.npy", m)
        self.records.close()
        move_file(part / RECORDS_FILE, self.tmp / RECORDS_FILE)
        self.records = reopen_for_writing(self.tmp / RECORDS_FILE)
        self._count_part(summary)

    def _count_part(self, summary: dict[str, Any]) -> None:
        """Count an appended part's rows, records and skipped lines."""
        m = summary["rows"]
        self.runs.append((self.rows, m))
        self.records_size += summary["records_size"]
        self.raw_records_size += summary["raw_records_size"]
        self.max_record_bytes = max(self.max_record_bytes, summary["max_record_bytes"])
        self.rows += m
        self.skipped += summary["skipped"]
        self.errors = (self.errors + summary["errors"])[:MAX_REPORTED_ERRORS]


def _copy_then_remove(copy: Callable[[], None], source: Path) -> None:
    """Run ``copy`` (which copies ``source`` into a file of the index), then remove ``source``."""
    copy()
    os.unlink(source)


def _lookup_files(directory: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The id lookup's columns in ``directory`` (sorted hashes, and each one's row), as new
    files of ``rows`` values mapped for writing (:func:`~discoseq.index.format.mapped_column`)."""
    return (
        mapped_column(directory / "id_hash_sorted.npy", COLUMNS["id_hash_sorted"], rows),
        mapped_column(directory / "id_hash_rows.npy", COLUMNS["id_hash_rows"], rows),
    )


def _run_all(tasks: Sequence[Callable[[], None]]) -> None:
    """Run ``tasks`` (each writing files no other one writes) in threads, one per usable core
    (at most :data:`MAX_MERGE_THREADS`); the first exception is raised once all are done."""
    threads = min(merge_threads(), len(tasks))
    if threads <= 1:
        for task in tasks:
            task()
        return
    from concurrent.futures import ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(threads)
    futures = [pool.submit(task) for task in tasks]
    try:
        wait(futures)
    finally:  # interrupted (Ctrl-C): no file is written after the caller removes the directory
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
    for future in futures:
        future.result()


PART_ROWS = 1 << 20  # rows of a part's column appended at a time (bounded memory)


def _column_pieces(path: Path, length: int) -> Iterator[np.ndarray]:
    """A part's column file in pieces of :data:`PART_ROWS` values."""
    if length == 0:
        return
    column = load_column(path)
    for start in range(0, length, PART_ROWS):
        yield np.asarray(column[start : start + PART_ROWS])


def _index_source(
    writer: _IndexWriter,
    item: Any,
    source: Source,
    source_id: int,
    update_bytes: Callable[[int], None] | None,
    update_cuts: Callable[[int], object] | None,
    threads: bool = True,
) -> None:
    """Read, scan and append every record of one source (``item``: a CutSet source's cuts);
    ``threads``: see :meth:`_IndexWriter.scanned` (a plain file is read in a thread apart)."""
    chunks = cutset_chunks(item) if source.format == "cutset" else file_chunks(source, update_bytes)
    line = 1
    stored = source.records == "stored"
    scans = writer.scanned(chunks, stored, threads, read_apart=source.format == "jsonl")
    with contextlib.closing(scans):  # its threads stopped now, even when a record is bad
        for chunk, scanned in scans:
            rows = source.rows
            line += writer.add(chunk, scanned, source, source_id, line)
            if update_cuts is not None:
                update_cuts(source.rows - rows)


def _check_not_empty(source: Source, skipped: int) -> None:
    if source.rows == 0:
        raise ManifestError(
            "contains no cuts"
            + (f" ({skipped} skipped)" if skipped else "")
            + "; an index of nothing is almost certainly a mistake",
            source.path,
        )


_progress_queue: Any = None  # a worker process's queue for cut counts (None: no progress)
_first_rows: Any = None  # shared with the workers: each part's first row once counted (-1: not)
_part_pids: Any = None  # shared with the workers: the process indexing each part (0: none now)
_parent_pid = 0  # in a worker: the building process


def _init_part_worker(queue: Any, first_rows: Any, part_pids: Any) -> None:
    global _progress_queue, _first_rows, _part_pids, _parent_pid
    _progress_queue = queue
    _first_rows = first_rows
    _part_pids = part_pids
    _parent_pid = os.getppid()


def _known_first_row(slot: int) -> int | None:
    """In a worker process: the first row of part ``slot`` once the building process has
    counted the rows before it (:func:`_index_in_processes`), else None. A worker whose building
    process is gone (killed while counting) exits rather than wait for ever."""
    row = int(_first_rows[slot])
    if row < 0 and os.getppid() != _parent_pid:
        os._exit(1)
    return row if row >= 0 else None


def _index_part(
    part: str,
    slot: int,
    entries: Sequence[tuple[int, Source]],
    on_error: str,
    dictionary: bytes,
    placed: tuple[str, bool] | None,
    threads: bool,
) -> tuple[list[Source], dict[str, Any]]:
    """In a worker process: index consecutive file sources (``(source_id, source)``) one after
    another into the part directory ``part`` (part number ``slot``); returns the sources (rows,
    fingerprints) and the part's summary, ``{"error": (message, path, line)}`` for a manifest
    error to raise in the parent, or ``{"empty": (position, skipped)}`` for a source without
    cuts (both end the part).

    ``placed``: (the index's directory, records read in place): the :data:`PLACED` columns (and
    ``record_offset`` for records read in place) are written into the index's own files from
    the part's first row (held in memory while the building process counts the rows before it,
    so the worker scans from the start). ``threads``: :func:`pipeline_threads`."""
    _part_pids[slot] = os.getpid()  # while set, this process dying is this part's failure
    placement = None
    if placed is not None:
        index_dir, inplace = placed
        names = (*PLACED, "record_offset") if inplace else PLACED
        placement = (Path(index_dir), functools.partial(_known_first_row, slot), names)
    writer = _IndexWriter(Path(part), on_error, dictionary, placement)
    queue = _progress_queue
    done: list[Source] = []
    try:
        for k, (source_id, source) in enumerate(entries):
            progress = queue.put if queue else None
            _index_source(writer, None, source, source_id, None, progress, threads)
            done.append(source)
            if source.rows == 0:
                skipped = writer.skipped
                writer.close_part()
                return done, {"empty": (k, skipped)}
        return done, writer.close_part()
    except ManifestError as e:
        writer.close_part()
        return done, {"error": (str(e), e.path, e.line)}
    finally:
        _part_pids[slot] = 0  # done: a later death of this process is another part's


def _part_ranges(sources: Sequence[Source], jobs: int) -> list[list[int]]:
    """The file sources split into at most ``jobs`` runs of consecutive sources of about equal
    bytes (more when CutSets, indexed in the building process, lie between them, or sources
    whose records are read in place next to stored ones: a part's are one or the other): one
    part each, so that the first is taken as it is and fewer are appended."""
    files = [i for i, s in enumerate(sources) if s.format != "cutset"]
    parts = min(jobs, len(files))
    sizes = [max(1, sources[i].size or 0) for i in files]
    total = sum(sizes)
    ranges: list[list[int]] = []
    before = 0
    last = -1
    for i, size in zip(files, sizes, strict=True):
        k = min(parts - 1, parts * (2 * before + size) // (2 * total))  # by its middle byte
        before += size
        joins = ranges and ranges[-1][-1] == i - 1 and sources[i - 1].records == sources[i].records
        if joins and k == last:
            ranges[-1].append(i)
        else:
            ranges.append([i])
        last = k
    return ranges


COUNT_BLOCK_BYTES = 1 << 20  # bytes read at a time when counting a file's rows (in the caches)


def _count_rows(path: str) -> int:
    """The rows a plain ``.jsonl`` gives when every non-blank line is a cut (``on_error`` raise):
    its non-blank lines (:func:`~discoseq._core.cutscan.count_records`), read in blocks into one
    buffer (bounded memory, whatever the file's size)."""
    from discoseq._core.cutscan import count_records

    buf = bytearray(COUNT_BLOCK_BYTES)
    view = memoryview(buf)
    rows = 0
    kept = 0  # bytes of an unfinished line, moved to the front of the buffer
    with open(path, "rb", buffering=0) as f:
        while True:
            if kept == len(buf):  # a line longer than the buffer: a larger one
                buf = buf + bytearray(len(buf))
                view = memoryview(buf)
            n = f.readinto(view[kept:])
            if not n:
                return rows + int(count_records(view[:kept]))
            end = kept + n
            cut = buf.rfind(b"\n", 0, end) + 1
            rows += int(count_records(view[:cut]))
            view[: end - cut] = view[cut:end]
            kept = end - cut


def _placeable(ranges: list[list[int]], sources: Sequence[Source], on_error: str) -> int:
    """How many parts, from the first, can be placed: the rows before each are counted before
    they are scanned, which needs every input before it to be a plain ``.jsonl`` whose every
    non-blank line is a row (``on_error`` raise: any other line stops the build)."""
    placeable = 0
    for rng in ranges:
        if rng[0] > 0 and on_error != "raise":
            break
        if any(sources[i].format != "jsonl" for i in range(rng[0])):
            break
        placeable += 1
    return placeable


def _index_in_processes(
    writer: _IndexWriter,
    tmp: Path,
    items: Sequence[Any],
    sources: list[Source],
    jobs: int,
    on_error: str,
    dictionary: bytes,
    update_cuts: Callable[[int], object] | None,
) -> None:
    """Index the file sources in ``jobs`` worker processes, runs of consecutive files into a
    part directory each (:func:`_part_ranges`), and append the parts in input order (CutSet
    sources are indexed here, in their turn): the same bytes as indexing them one after
    another. The first error in input order is raised; on any error or interruption the
    workers are terminated.

    When the rows before a part are known before it is scanned (plain ``.jsonl`` inputs before
    it, counted here while the workers scan: :func:`_placeable`), its worker writes the
    :data:`PLACED` columns straight into the index's files at its rows: only the ids, their
    hashes and stored records are appended from the part (the first part's are renamed)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # fork: workers start at once and never re-run the caller's script (spawn would, and a
    # script without a __main__ guard would then start workers of its own)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue() if update_cuts is not None else None
    ranges = _part_ranges(sources, jobs)
    placeable = _placeable(ranges, sources, on_error)
    first_rows = ctx.Array("q", [-1] * len(ranges), lock=False)
    part_pids = ctx.Array("q", len(ranges), lock=False)
    workers = min(jobs, len(ranges))
    threads = pipeline_threads(workers)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_part_worker,
        initargs=(queue, first_rows, part_pids),
    )

    def drain() -> None:
        while queue is not None and update_cuts is not None:
            try:
                update_cuts(queue.get_nowait())
            except queue_module.Empty:
                return

    try:
        pending = {}
        for k, rng in enumerate(ranges):
            (tmp / f"part-{k}").mkdir()
            inplace = all(sources[i].records == "inplace" for i in rng)
            placed = (str(tmp), inplace) if k < placeable else None
            entries = [(i, sources[i]) for i in rng]
            pending[k] = pool.submit(
                _index_part,
                str(tmp / f"part-{k}"),
                k,
                entries,
                on_error,
                dictionary,
                placed,
                threads,
            )
        processes = dict(getattr(pool, "_processes", {}))  # pid -> Process: which one died
        counted: dict[int, int] = {}  # rows of each plain file before a placed part
        row = 0
        for k in range(placeable):
            first_rows[k] = row
            if k + 1 < placeable:
                for i in ranges[k]:
                    counted[i] = _count_rows(sources[i].path)
                    row += counted[i]
        starts = {rng[0]: k for k, rng in enumerate(ranges)}
        for i, (item, source) in enumerate(zip(items, sources, strict=True)):
            if source.format == "cutset":  # here, in its turn
                _index_source(writer, item, source, i, None, update_cuts, threads)
                _check_not_empty(source, writer.skipped)
                continue
            if i not in starts:  # indexed with the part of a source before it
                continue
            k = starts[i]
            rng = ranges[k]
            while not wait([pending[k]], timeout=0.1, return_when=FIRST_COMPLETED).done:
                drain()
            try:
                done, summary = pending.pop(k).result()
            except BrokenProcessPool as e:  # killed (e.g. out of memory), not an exception
                dead = _died(processes, part_pids, list(range(k, len(ranges))))
                what = " and ".join(_part_files(ranges[j], sources) for j in dead or [k])
                raise WorkerDiedError(
                    f"the worker process indexing {what} died ({e}); nothing was "
                    "written. Retry with fewer --jobs (memory?) or --jobs 1"
                ) from e
            drain()
            for j, src in zip(rng[: len(done)], done, strict=True):
                sources[j] = src
            if "error" in summary:
                message, path, line = summary["error"]
                error = ManifestError(message)
                error.path, error.line = path, line
                raise error
            if "empty" in summary:
                position, skipped = summary["empty"]
                _check_not_empty(sources[rng[position]], writer.skipped + skipped)
            if k < placeable and writer.rows != first_rows[k]:
                _changed_while_counted(rng[0], counted, sources)
            writer.add_part(tmp / f"part-{k}", summary, source.records == "stored")
            shutil.rmtree(tmp / f"part-{k}")  # add_part has moved or removed its files
    except BaseException:
        # stop the workers now (not after their current file), before the parts are removed
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)
        if queue is not None:
            queue.close()


def _died(processes: dict[int, Any], part_pids: Any, parts: list[int]) -> list[int]:
    """Which of ``parts`` a worker process was indexing when it died (ended, and not by the
    pool's own terminating of the others once one died): those to name."""
    ended: set[int] = set()
    deadline = time.monotonic() + 1.0
    while not ended and time.monotonic() < deadline:
        for pid, process in processes.items():
            code = process.exitcode
            if code is not None and code != -signal.SIGTERM:
                ended.add(pid)
        if not ended:
            time.sleep(0.01)
    return [k for k in parts if part_pids[k] in ended]


def _part_files(files: list[int], sources: Sequence[Source]) -> str:
    """A part's files, for a message: the first, and the last with their count."""
    if len(files) == 1:
        return sources[files[0]].path
    return f"{sources[files[0]].path} to {sources[files[-1]].path} ({len(files)} files)"


def _changed_while_counted(first: int, counted: dict[int, int], sources: Sequence[Source]) -> None:
    """Raise naming the file before source ``first`` whose rows differ from those counted
    before it was scanned (it changed meanwhile): rows written at the wrong place."""
    for i in range(first):
        if i in counted and counted[i] != sources[i].rows:
            raise ManifestError(
                f"changed while it was being indexed ({counted[i]} cuts when counted, "
                f"{sources[i].rows} when read); build the index again",
                sources[i].path,
            )
    raise AssertionError(f"the rows before source {first} differ from those counted")


def _check_unique(
    tmp: Path, sorted_hashes: np.ndarray, order: np.ndarray, sources: Sequence[Source]
) -> None:
    """Raise naming the first duplicated cut id and where both copies are."""
    if sorted_hashes.size < 2:
        return
    same = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    if same.size == 0:
        return
    offsets = load_column(tmp / "id_offsets.npy")
    blob = load_column(tmp / "id_blob.npy")
    src = load_column(tmp / "source_id.npy")
    line = load_column(tmp / "source_line.npy")

    def cut_id(row: int) -> bytes:
        return bytes(blob[offsets[row] : offsets[row + 1]])

    duplicates = []
    for k in same.tolist():
        a, b = sorted(
            (int(order[k]), int(order[k + 1]))
        )  # equal hashes: compare the ids themselves
        if cut_id(a) == cut_id(b):
            duplicates.append((a, b))
    if not duplicates:
        return
    a, b = min(duplicates)
    where_a = f"{sources[int(src[a])].path}:{int(line[a])}"
    where_b = f"{sources[int(src[b])].path}:{int(line[b])}"
    raise ManifestError(
        f"duplicate cut id {cut_id(a).decode(errors='replace')!r} at {where_a} and {where_b} "
        f"({len(duplicates)} duplicated ids in all); cut ids must be unique across all inputs"
    )


def _records_dictionary(items: Sequence[Any], sources: Sequence[Source]) -> bytes:
    """The zstd dictionary of the stored records, trained on a fixed sample
    (:func:`~discoseq.index.records.take_sample`: the first lines of the stored sources, in
    input order, read ahead of the build); ``b""`` when no source is stored or the sample is
    too small. A function of the inputs alone, so every build of them gets the same one."""

    def lines() -> Iterator[bytes]:
        for item, source in zip(items, sources, strict=True):
            if source.records != "stored":
                continue
            if source.format == "cutset":
                chunks = cutset_chunks(item)
            else:  # a copy: reading the start must not set the source's fingerprint
                chunks = file_chunks(dataclasses.replace(source))
            try:
                for chunk in chunks:
                    yield from bytes(chunk.data).split(b"\n")
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

    return train_dictionary(take_sample(lines()))


def _as_sources(inputs: Any) -> list[Any]:
    if isinstance(inputs, str | os.PathLike):
        return [inputs]
    if hasattr(inputs, "to_eager") or hasattr(inputs, "subset"):  # a Lhotse CutSet
        return [inputs]
    return list(inputs)


def _known_cut_count(items: Sequence[Any]) -> int | None:
    """How many cuts the inputs hold, when every one is an eager CutSet (else None: unknown
    until read)."""
    total = 0
    for item in items:
        if isinstance(item, str | os.PathLike) or getattr(item, "is_lazy", True):
            return None
        total += len(item)
    return total


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not (out.is_dir() and ((out / HEADER_FILE).is_file() or not any(out.iterdir()))):
        raise FileExistsError(
            f"{out} exists and is not a discoseq index (no {HEADER_FILE}); choose another "
            "output path: force=True (--force) replaces only an index or an empty directory"
        )
    if not force:
        raise FileExistsError(f"{out} already exists; pass force=True (--force) to replace it")


def build_index(
    inputs: str | os.PathLike[str] | Any | Iterable[Any],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    on_error: str = "raise",
    store_records: bool = False,
    progress: bool = False,
    jobs: int = 1,
) -> Any:
    """Compile Lhotse cut manifests into an index directory and open it.

    :param inputs: a manifest path (``.jsonl``, ``.jsonl.gz``, ``.json``), a Lhotse ``CutSet``
        (eager or lazy), or a sequence of these; rows keep the order given. Or a Lhotse Shar
        set, alone: its directory, or Lhotse's dict ``{"cuts": [...], "<field>": [...]}``
        (:mod:`discoseq.index.shar`: field data is read from its files at resolution).
    :param out: the index directory to create.
    :param force: replace an existing index at ``out``.
    :param on_error: ``"raise"`` stops at the first bad record naming file and line; ``"skip"``
        skips bad records, counting them in ``header.build.skipped``. Duplicate ids, empty
        manifests and unreadable files are errors either way.
    :param store_records: copy ``.jsonl`` records into the index instead of reading them in
        place, so the index keeps working if the manifest is moved or deleted.
    :param progress: show a progress bar over the input bytes (over the cuts when a CutSet
        is among the inputs, or with ``jobs`` > 1: the cuts indexed by all processes).
    :param jobs: index the input files in this many worker processes, each a run of
        consecutive files of about equal bytes (into a part of the temporary directory,
        appended in input order when done; rows of plain ``.jsonl`` files written straight
        into the index when the rows before them can be counted first): the index is
        byte-identical to ``jobs=1`` (same rows, order, records and header apart from
        ``created``). Useful from two input files on; CutSets are indexed in this process.
        The temporary directory holds the parts besides the index until they are appended.
    :returns: the opened :class:`~discoseq.index.CutIndex`.
    """
    from discoseq.index.reader import CutIndex

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    if not is_json_int(jobs) or jobs < 1:
        raise ValueError(f"jobs must be a positive number of processes, found {jobs!r}")
    out = Path(out)
    shar = shar_input(inputs)  # a Lhotse Shar set: its cut shards are the sources
    items = _as_sources(inputs if shar is None else shar.cut_paths)
    if not items:
        raise ManifestError("no inputs given; pass at least one cut manifest or CutSet")
    sources: list[Source] = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            sources.append(file_source(Path(item), store_records))
        else:
            sources.append(Source(path="<CutSet>", format="cutset", records="stored"))
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("building", "old"):  # what builders killed before they finished left here
        remove_abandoned(out.parent, f".{glob.escape(out.name)}.{kind}-*")
    tmp = _sibling_dir(out, "building")
    bar = None
    writer = None
    try:
        # Progress in input bytes, or in cuts when a CutSet is among the inputs (it has no bytes)
        # or when worker processes index the files (they count the cuts they append).
        parallel = jobs > 1 and sum(s.format != "cutset" for s in sources) > 1
        count_cuts = parallel or any(s.format == "cutset" for s in sources)
        if progress:
            from tqdm import tqdm

            desc = f"indexing -> {out.name}"
            if count_cuts:
                bar = tqdm(total=_known_cut_count(items), unit=" cuts", unit_scale=True, desc=desc)
            else:
                total = sum(s.size or 0 for s in sources)
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc)
        update_bytes = bar.update if bar is not None and not count_cuts else None
        update_cuts = bar.update if bar is not None and count_cuts else None
        dictionary = _records_dictionary(items, sources)
        if dictionary:
            (tmp / DICT_FILE).write_bytes(dictionary)
        writer = _IndexWriter(tmp, on_error, dictionary)
        if parallel:
            _index_in_processes(
                writer, tmp, items, sources, jobs, on_error, dictionary, update_cuts
            )
        for source_id, (item, source) in enumerate(zip(items, sources, strict=True)):
            if parallel:
                break
            threads = pipeline_threads(1)
            _index_source(writer, item, source, source_id, update_bytes, update_cuts, threads)
            _check_not_empty(source, writer.skipped)
        columns = writer.finish(sources)
        shar_entry = None
        if shar is not None:  # the byte ranges of every cut's members in the field files
            if bar is not None:  # the cuts are done: one bar at a time (no cursor moves in a log)
                bar.close()
                bar = None
            shar_columns, shar_entry = index_fields(shar, tmp, sources, writer.skipped, progress)
            columns.update(shar_columns)
        header = {
            "magic": MAGIC,
            "format_version": FORMAT_VERSION,
            "num_rows": writer.rows,
            "columns": columns,
            "sources": [s.describe() for s in sources],
            "records": {
                "file": RECORDS_FILE,
                "codec": CODEC,
                "size": writer.records_size,
                "level": LEVEL,
                "dictionary": {
                    "file": DICT_FILE,
                    "size": len(dictionary),
                    "fingerprint": dictionary_fingerprint(dictionary),
                }
                if dictionary
                else None,
                "raw_size": writer.raw_records_size,
                "max_record_bytes": writer.max_record_bytes,
            },
            "build": {
                "on_error": on_error,
                "store_records": store_records,
                "skipped": writer.skipped,
                "skipped_examples": writer.errors,
            },
            "discoseq_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if shar_entry is not None:
            header["shar"] = shar_entry
        write_header(tmp, header)
        release(tmp)
        _replace_dir(tmp, out, force)
    except BaseException as e:
        if writer is not None:
            writer.abort()
        written = _bytes_in(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            raise _disk_full(e, out, written) from e
        raise
    finally:
        if bar is not None:
            bar.close()
    return CutIndex.open(out)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _bytes_in(directory: Path) -> int | None:
    """Bytes in the files of ``directory`` (None if it cannot be read)."""
    try:
        return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    except OSError:
        return None


def _disk_full(e: OSError, out: Path, written: int | None) -> IndexWriteError:
    try:
        free: int | None = shutil.disk_usage(out.parent).free
    except OSError:
        free = None
    what = "quota exceeded" if e.errno == errno.EDQUOT else "no space left on the device"
    amounts = []
    if written is not None:
        amounts.append(f"{written:,} bytes were written before it filled")
    if free is not None:
        amounts.append(f"{free:,} bytes are free now")
    return IndexWriteError(
        f"cannot write the index {out}: {what} while writing {e.filename or out.parent}"
        + (f" ({'; '.join(amounts)})" if amounts else "")
        + ". The index needs about 100 bytes per cut plus its ids, and the records stored in it "
        "(.jsonl.gz, .json, CutSet, --store-records), compressed to about the size of a "
        ".jsonl.gz (twice that while --jobs parts are appended). Nothing was left behind; free "
        "some space or choose another output directory",
        path=out,
        written=written,
        errno=e.errno or 0,
    )


def _sibling_dir(out: Path, kind: str) -> Path:
    """A new empty directory ``.<name>.<kind>-<random>`` beside ``out``, with the permissions
    ``mkdir`` gives (0o777 minus the umask, like every file written into it): the finished
    index is this directory renamed, and ``tempfile.mkdtemp``'s private 0o700 would leave it
    unreadable to everyone else on a shared machine."""
    for _ in range(100):
        path = out.parent / f".{out.name}.{kind}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno in _DISK_FULL:
                raise _disk_full(e, out, 0) from e
            raise
        try:
            claim(path)  # so a later build can tell this directory was abandoned
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)
            if e.errno in _DISK_FULL:
                raise _disk_full(e, out, 0) from e
            raise
        return path
    raise FileExistsError(f"cannot create a temporary directory beside {out}")


def _replace_dir(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished index into place. Without ``force``, a rename that fails when ``out``
    appeared meanwhile (another build finished first): at most one of two builds succeeds.
    With ``force``, an older index at ``out`` is moved aside and removed after."""
    if not force or not out.exists():
        try:
            os.rename(tmp, out)  # refuses a non-empty directory or a file at ``out``
        except OSError as e:
            exists = e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
            if exists and force and (out / HEADER_FILE).is_file():
                return _replace_dir(tmp, out, force)  # another forced build was first: replace
            if exists:
                raise FileExistsError(
                    f"{out} already exists (another build wrote it meanwhile); pass force=True "
                    "(--force) to replace it"
                ) from e
            raise
        return
    old = _sibling_dir(out, "old")
    os.replace(out, old / "index")
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
