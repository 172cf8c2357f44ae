"""Test helper: change one stored record of a built index as a tampering user (or a bug) would,
re-encoding it with the index's own codec so the index still opens."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from discoseq.index.format import DICT_FILE, HEADER_FILE, RECORDS_FILE
from discoseq.index.records import RecordDecoder, RecordEncoder


def rewrite_stored_record(index_dir: Path, row: int, change: Callable[[bytes], bytes]) -> None:
    """Replace the stored record of ``row`` by ``change(record)``: re-compressed with the
    index's dictionary, ``records.bin`` rewritten, later offsets, the length and the header's
    sizes updated."""
    header = json.loads((index_dir / HEADER_FILE).read_text())
    meta = header["records"]
    dictionary = (index_dir / DICT_FILE).read_bytes() if meta["dictionary"] else b""
    offsets = np.load(index_dir / "record_offset.npy")
    lengths = np.load(index_dir / "record_length.npy")
    data = (index_dir / RECORDS_FILE).read_bytes()
    o, n = int(offsets[row]), int(lengths[row])
    record = RecordDecoder(dictionary, meta["max_record_bytes"]).decompress(data[o : o + n])
    new = change(record)
    frame, _ = RecordEncoder(dictionary).compress_spans(new, np.array([0]), np.array([len(new)]))
    (index_dir / RECORDS_FILE).write_bytes(data[:o] + frame + data[o + n :])
    shift = len(frame) - n
    offsets[offsets > o] += shift
    lengths[row] = len(frame)
    np.save(index_dir / "record_offset.npy", offsets)
    np.save(index_dir / "record_length.npy", lengths)
    meta["size"] = len(data) + shift
    meta["max_record_bytes"] = max(meta["max_record_bytes"], len(new))
    (index_dir / HEADER_FILE).write_text(json.dumps(header, indent=2))
