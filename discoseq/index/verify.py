"""``verify_index``: recheck an index against its sources, column by column."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from discoseq.errors import IndexFormatError
from discoseq.index.builder import SCANNED, line_scanner, scan_chunk
from discoseq.index.columns import check_added_columns
from discoseq.index.format import RECORDS_FILE
from discoseq.index.reader import CutIndex
from discoseq.index.shar import verify_fields
from discoseq.index.sources import fingerprint_file, stat_matches

MAX_PROBLEMS = 50


@dataclass
class VerifyReport:
    """What ``verify_index`` found; ``ok`` when ``problems`` is empty."""

    path: str
    rows: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def verify_index(
    path: str | os.PathLike[str], chunk_rows: int = 65536, recount: int = 0
) -> VerifyReport:
    """Recompute source fingerprints, check every column's invariants, and recompute every
    cut's columns from its record, comparing with what the index holds. Every stored record is
    decompressed (each zstd frame's checksum checked) and their sizes checked against the header.

    :param recount: rows (evenly spread) of every added token column to count again with its
        tokenizer (0: check those columns' values and tokenizer fingerprints only).
    """
    index = CutIndex.open(path, check_sources=False)
    report = VerifyReport(str(path), len(index))
    n = len(index)
    for i, src in enumerate(index.header.sources):
        if src["format"] == "cutset":
            continue
        if not Path(src["path"]).is_file():
            if src["records"] == "stored":  # the index does not need it
                report.notes.append(
                    f"source {i} {src['path']} no longer exists (its records are stored in the "
                    "index; not fingerprinted)"
                )
            else:
                report.add(f"source {i} {src['path']} no longer exists")
            continue
        try:
            found = fingerprint_file(src["path"])
        except OSError as e:
            report.add(f"source {i} {src['path']} cannot be read ({e.strerror})")
            continue
        if found != src["fingerprint"]:
            report.add(f"source {i} {src['path']} content changed (fingerprint {found})")
        elif stat_matches(src) is not None:
            report.notes.append(f"source {i} {src['path']}: mtime changed, content identical")

    cols = {name: index.column(name) for name in SCANNED}
    d = cols["duration"]
    if n and not (np.isfinite(d).all() and (d > 0).all()):
        report.add("column duration holds non-finite or non-positive values")
    if n and int(cols["cut_type"].max()) > 3:
        report.add("column cut_type holds unknown codes")
    src_ids = index.column("source_id")
    n_sources = len(index.header.sources)
    if n and (src_ids.min() < 0 or src_ids.max() >= n_sources):
        report.add("column source_id points outside the sources")
    offsets = np.asarray(index.column("id_offsets"))
    blob = np.asarray(index.column("id_blob"))
    if np.any(np.diff(offsets) <= 0) or offsets[0] != 0 or offsets[-1] != blob.shape[0]:
        # the id spans cannot be trusted: neither hash nor decode them
        report.add("column id_offsets is not strictly increasing (empty or misordered ids)")
    else:
        _check_ids(report, offsets, blob)
        from discoseq._core.idhash import hash_spans

        hashes = hash_spans(blob, offsets)
        order = np.asarray(index.column("id_hash_rows"))
        if n and (
            not np.array_equal(np.sort(order), np.arange(n))
            or not np.array_equal(hashes[order], index.column("id_hash_sorted"))
        ):
            report.add("id lookup table (id_hash_sorted/id_hash_rows) does not match the ids")
    record_offset = index.column("record_offset").astype(np.int64)
    if n and record_offset.min() < 0:
        row = int(np.argmin(record_offset))
        report.add(f"column record_offset row {row} is negative ({int(record_offset[row])})")
    end = record_offset + index.column("record_length")
    for i, src in enumerate(index.header.sources):
        mask = src_ids == i
        if not mask.any():
            continue
        limit = (
            index.header.records["size"]
            if src["records"] == "stored"
            else _size_or_missing(src["path"])
        )
        if limit >= 0 and int(end[mask].max()) > limit:
            where = src["path"] if src["records"] == "inplace" else RECORDS_FILE
            report.add(f"records of source {i} point past the end of {where}")
    if "shar" in index.header.raw:  # a Shar corpus: its field files and member ranges
        for problem in verify_fields(index):
            report.add(problem)
    if index.header.extra_columns:  # added by add-column
        problems, notes = check_added_columns(index, recount)
        for problem in problems:
            report.add(problem)
        report.notes.extend(notes)
    if not report.ok:
        return report

    scan = line_scanner()
    # every stored record is decompressed (its frame's checksum checked) by ``records``
    is_stored = np.array([s["records"] == "stored" for s in index.header.sources])
    stored_bytes = 0
    longest = 0
    for start in range(0, n, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, n))
        try:
            records = index.records(rows)
        except Exception as e:
            report.add(f"rows {start}..{rows[-1]}: cannot read records ({e})")
            continue
        lengths = [len(r) for r, s in zip(records, is_stored[src_ids[rows]], strict=True) if s]
        stored_bytes += sum(lengths)
        longest = max(longest, max(lengths, default=0))
        buf = b"\n".join(records) + b"\n"

        def on_bad(message: str, line_no: int, skippable: bool, start: int = start) -> None:
            report.add(f"row {start + line_no}: record no longer a valid cut ({message})")

        fresh, keep, id_source = scan_chunk(scan(buf), buf, on_bad)
        if not keep.all() or len(keep) != len(rows):
            continue
        for name in SCANNED:
            stored = np.asarray(cols[name][rows])
            bad = np.flatnonzero(fresh[name] != stored)
            if bad.size:
                r = int(rows[bad[0]])
                report.add(
                    f"column {name} row {r}: index holds {stored[bad[0]]}, record gives "
                    f"{fresh[name][bad[0]]} ({bad.size} rows differ in this chunk)"
                )
        data = np.frombuffer(id_source, np.uint8)
        for j in range(len(rows)):
            got = bytes(data[fresh["id_start"][j] : fresh["id_end"][j]])
            try:
                held = index.cut_id(int(rows[j])).encode()
            except IndexFormatError as e:
                report.add(str(e))
                break
            if got != held:
                report.add(f"row {int(rows[j])}: record id {got!r} differs from the index")
                break
    meta = index.header.records
    if meta["codec"] != "none" and report.ok:
        for key, total in (("raw_size", stored_bytes), ("max_record_bytes", longest)):
            if total != meta[key]:
                report.add(f"records.{key} is {meta[key]}, the stored records give {total}")
    return report


def _check_ids(report: VerifyReport, offsets: np.ndarray, blob: np.ndarray) -> None:
    """Every id is UTF-8 (the ids are decoded as a whole, then located if one is not)."""
    try:
        blob.tobytes().decode("utf-8")
    except UnicodeDecodeError as e:
        row = int(np.searchsorted(offsets, e.start, side="right")) - 1
        report.add(f"column id_blob: the id of row {row} is not UTF-8 ({e.reason})")


def _size_or_missing(path: str) -> int:
    """The size of a regular file, or -1 if it is not one (reported elsewhere)."""
    try:
        return os.path.getsize(path) if Path(path).is_file() else -1
    except OSError:
        return -1
