"""``discoseq._core.idhash`` against its pure-Python twin :func:`py_hash`, and the id lookup."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq._core.idhash import IdLookup, hash_spans

U64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & U64
    return h


def fmix64(h: int) -> int:
    """murmur3's 64-bit finaliser."""
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & U64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & U64
    return h ^ (h >> 33)


def py_hash(cut_id: bytes) -> int:
    """The id hash: 64-bit FNV-1a over the UTF-8 bytes, then murmur3's finaliser."""
    return fmix64(fnv1a64(cut_id))


def spans(ids: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    blob = np.frombuffer(b"".join(ids), np.uint8)
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum([len(i) for i in ids], out=offsets[1:])
    return blob, offsets


IDS = [b"", b"a", b"cut-1", b"1088-134315-0000", "é中😀".encode(), bytes(range(256))]


def test_twin_known_answers() -> None:
    # published FNV-1a 64 test vectors; fmix64 fixes 0
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    assert fmix64(0) == 0


def test_hash_spans_matches_twin() -> None:
    blob, offsets = spans(IDS)
    assert hash_spans(blob, offsets).tolist() == [py_hash(i) for i in IDS]


@given(st.lists(st.binary(max_size=40) | st.text(max_size=12).map(str.encode), max_size=30))
def test_hash_spans_matches_twin_generated(ids: list[bytes]) -> None:
    blob, offsets = spans(ids)
    blob.flags.writeable = False  # index columns are read-only memmaps
    assert hash_spans(blob, offsets).tolist() == [py_hash(i) for i in ids]


def test_hash_spans_validation() -> None:
    blob = np.frombuffer(b"abcd", np.uint8)
    with pytest.raises(ValueError, match="at least one"):
        hash_spans(blob, np.empty(0, np.int64))
    for bad in ([0, 2, 5], [0, -1, 4], [-1, 2, 4], [0, 2, 99]):
        with pytest.raises(ValueError, match="outside the blob"):
            hash_spans(blob, np.array(bad, np.int64))
    reversed_span = hash_spans(blob, np.array([3, 1, 4], np.int64))
    assert reversed_span.tolist() == [py_hash(b""), py_hash(b"bcd")]


def lookup(ids: list[bytes]) -> IdLookup:
    blob, offsets = spans(ids)
    hashes = hash_spans(blob, offsets)
    rows = np.argsort(hashes, kind="stable").astype(np.int64)
    return IdLookup(hashes[rows], rows, offsets, blob)


def test_id_lookup_finds_every_id() -> None:
    ids = [f"cut-{i}".encode() for i in range(500)] + ["é中😀".encode()]
    lk = lookup(ids)
    for row, cut_id in enumerate(ids):
        assert lk.find(cut_id) == row
    assert lk.find(b"cut-500") == -1
    assert lk.find(b"") == -1


def test_id_lookup_compares_bytes_on_equal_hashes() -> None:
    # Two rows claiming the hash of b"b": only the row whose bytes match is returned.
    blob, offsets = spans([b"a", b"b"])
    h = py_hash(b"b")
    lk = IdLookup(np.array([h, h], np.uint64), np.array([0, 1], np.int64), offsets, blob)
    assert lk.find(b"b") == 1
    assert lk.find(b"a") == -1


def test_id_lookup_rejects_corrupt_arrays() -> None:
    blob, offsets = spans([b"a", b"b"])
    h = np.array([py_hash(b"a"), py_hash(b"a")], np.uint64)
    with pytest.raises(ValueError, match="inconsistent lengths"):
        IdLookup(h, np.array([0], np.int64), offsets, blob)
    with pytest.raises(ValueError, match="not a row"):
        IdLookup(h, np.array([7, 0], np.int64), offsets, blob).find(b"a")
    with pytest.raises(ValueError, match="not a row"):
        IdLookup(h, np.array([-1, 0], np.int64), offsets, blob).find(b"a")
    bad_offsets = np.array([0, 1, 9], np.int64)
    with pytest.raises(ValueError, match="outside the id blob"):
        IdLookup(h, np.array([1, 0], np.int64), bad_offsets, blob).find(b"a")
