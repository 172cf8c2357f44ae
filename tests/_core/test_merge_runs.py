"""``sort_hashes`` (a part's id hashes, sorted in its worker) and ``merge_sorted_runs`` (the
parts' sorted runs merged by the parent) give the arrays of one stable argsort of all the hashes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from discoseq._core.idhash import merge_sorted_runs, sort_hashes


def sorted_runs(hashes: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run of ``hashes`` sorted stably, with each hash's position within its run."""
    runs, rows = hashes.copy(), np.zeros(hashes.size, np.int64)
    for a, b in itertools.pairwise(bounds.tolist()):
        local = np.argsort(hashes[a:b], kind="stable")
        runs[a:b], rows[a:b] = hashes[a:b][local], local
    return runs, rows


@pytest.mark.parametrize(
    "n,k,distinct", [(0, 1, 5), (1, 1, 5), (9, 3, 3), (500, 7, 40), (3000, 40, 1 << 62)]
)
def test_equals_a_stable_argsort_of_all_hashes(n: int, k: int, distinct: int) -> None:
    rng = np.random.default_rng(n + k)
    hashes = rng.integers(0, distinct, n, dtype=np.uint64)
    hashes[: n // 4] = np.uint64((1 << 64) - 1)  # the largest hash, repeated across runs
    rng.shuffle(hashes)
    cuts = np.sort(rng.integers(0, n + 1, k - 1))  # some runs are empty
    bounds = np.concatenate([[0], cuts, [n]]).astype(np.int64)
    merged, rows = merge_sorted_runs(*sorted_runs(hashes, bounds), bounds)
    expected = np.argsort(hashes, kind="stable")
    assert rows.dtype == np.int64 and merged.dtype == np.uint64
    assert np.array_equal(rows, expected)
    assert np.array_equal(merged, hashes[expected])


def test_no_runs() -> None:
    merged, rows = merge_sorted_runs(
        np.empty(0, np.uint64), np.empty(0, np.int64), np.zeros(1, np.int64)
    )
    assert merged.size == rows.size == 0


def test_bad_input_is_refused() -> None:
    hashes = np.array([1, 5, 2, 3], np.uint64)
    rows = np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError, match=r"hashes\[1\] > hashes\[2\] inside a run"):
        merge_sorted_runs(hashes, rows, np.array([0, 4], np.int64))
    with pytest.raises(ValueError, match="bounds must not decrease"):
        merge_sorted_runs(hashes, rows, np.array([0, 3, 2, 4], np.int64))
    with pytest.raises(ValueError, match="bounds must run from 0 to 4"):
        merge_sorted_runs(hashes, rows, np.array([0, 3], np.int64))
    with pytest.raises(ValueError, match="rows holds 3 values for 4 hashes"):
        merge_sorted_runs(hashes, rows[:3], np.array([0, 2, 4], np.int64))


@pytest.mark.parametrize("n,distinct", [(0, 1), (1, 1), (10, 2), (5000, 300), (20000, 1 << 64)])
def test_sort_hashes_is_a_stable_argsort(n: int, distinct: int) -> None:
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, distinct, n, dtype=np.uint64)
    hashes[: n // 5] = np.uint64((1 << 64) - 1)  # every digit at its largest value
    rng.shuffle(hashes)
    sorted_hashes, order = sort_hashes(hashes)
    expected = np.argsort(hashes, kind="stable")
    assert order.dtype == np.int64 and sorted_hashes.dtype == np.uint64
    assert np.array_equal(order, expected)
    assert np.array_equal(sorted_hashes, hashes[expected])


@pytest.mark.parametrize("threads", [2, 3, 5])
@pytest.mark.parametrize("distinct", [7, 1 << 64])
def test_threads_give_the_same_arrays(threads: int, distinct: int) -> None:
    """Merging by spans of hash values, in threads: the arrays of one stable argsort, also when
    most hashes are equal (they fall in one span)."""
    from discoseq._core import idhash

    n = 3 * idhash.MIN_THREAD_HASHES * threads  # enough for every thread to get some
    rng = np.random.default_rng(threads)
    hashes = rng.integers(0, distinct, n, dtype=np.uint64)
    hashes[: n // 7] = np.uint64((1 << 64) - 1)
    rng.shuffle(hashes)
    expected = np.argsort(hashes, kind="stable")
    cuts = np.sort(rng.integers(0, n + 1, 6))
    bounds = np.concatenate([[0], cuts, [0, n]]).astype(np.int64)  # an empty run too
    bounds.sort()
    merged, rows = merge_sorted_runs(*sorted_runs(hashes, bounds), bounds, threads)
    assert np.array_equal(rows, expected)
    assert np.array_equal(merged, hashes[expected])


def test_results_go_into_given_arrays(tmp_path: Path) -> None:
    """``out``: both kernels write into the arrays given (the build's mapped column files),
    the same values as into new ones; a wrong array is refused before anything is written."""
    from discoseq.index.format import mapped_column

    rng = np.random.default_rng(5)
    n = 3 * (1 << 16) * 2
    hashes = rng.integers(0, 1 << 64, n, dtype=np.uint64)
    bounds = np.array([0, n // 3, n], np.int64)
    runs = sorted_runs(hashes, bounds)
    expected = np.argsort(hashes, kind="stable")
    for threads in (1, 2):
        out = (
            mapped_column(tmp_path / f"h{threads}.npy", "<u8", n),
            mapped_column(tmp_path / f"r{threads}.npy", "<i8", n),
        )
        merged, rows = merge_sorted_runs(*runs, bounds, threads, out=out)
        assert merged is out[0] and rows is out[1]
        del merged, rows, out
        assert np.array_equal(np.load(tmp_path / f"r{threads}.npy"), expected)
        assert np.array_equal(np.load(tmp_path / f"h{threads}.npy"), hashes[expected])
    out = (np.empty(n, np.uint64), np.empty(n, np.int64))
    sorted_hashes, order = sort_hashes(hashes, out=out)
    assert sorted_hashes is out[0] and order is out[1]
    assert np.array_equal(order, expected)
    bad = [
        (np.empty(n, np.int64), np.empty(n, np.int64)),  # hashes of another dtype
        (np.empty(n, np.uint64), np.empty(n - 1, np.int64)),  # rows too short
        (np.empty(2 * n, np.uint64)[::2], np.empty(n, np.int64)),  # not contiguous
    ]
    readonly = np.zeros(n, np.int64)
    readonly.flags.writeable = False
    bad.append((np.empty(n, np.uint64), readonly))
    for arrays in bad:
        with pytest.raises(ValueError, match="must be a writable contiguous"):
            merge_sorted_runs(*runs, bounds, out=arrays)
        with pytest.raises(ValueError, match="must be a writable contiguous"):
            sort_hashes(hashes, out=arrays)
    assert not readonly.any()


def test_mapped_column_has_the_layout_of_a_written_one(tmp_path: Path) -> None:
    """A mapped column, once filled, is byte for byte the file ``write_column`` writes."""
    from discoseq.index.format import mapped_column, write_column

    for n in (0, 1, 1000):
        values = np.arange(n, dtype=np.int64) * 7
        mapped = mapped_column(tmp_path / "m.npy", "<i8", n)
        mapped[:] = values
        del mapped
        write_column(tmp_path / "w.npy", values, "<i8")
        assert (tmp_path / "m.npy").read_bytes() == (tmp_path / "w.npy").read_bytes()
        assert np.array_equal(np.load(tmp_path / "m.npy"), values)


def test_threads_must_be_positive() -> None:
    hashes = np.arange(4, dtype=np.uint64)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        merge_sorted_runs(hashes, np.arange(4, dtype=np.int64), np.array([0, 4]), 0)


def test_gather_spans() -> None:
    from discoseq._core.idhash import gather_spans

    data = np.frombuffer(b"abcdefghij", np.uint8)
    starts = np.array([2, 0, 9, 10, 4], np.int64)
    ends = np.array([5, 1, 10, 10, 4], np.int64)  # empty spans, one at the very end
    blob, lengths = gather_spans(data, starts, ends)
    assert bytes(blob) == b"cde" + b"a" + b"j"
    assert lengths.tolist() == [3, 1, 1, 0, 0]
    blob, lengths = gather_spans(data, starts[:0], ends[:0])
    assert blob.size == 0 and lengths.size == 0
    with pytest.raises(ValueError, match=r"span 1 \[3, 11\) is not inside the data \[0, 10\)"):
        gather_spans(data, np.array([0, 3], np.int64), np.array([1, 11], np.int64))
    with pytest.raises(ValueError, match=r"span 0 \[3, 2\)"):
        gather_spans(data, np.array([3], np.int64), np.array([2], np.int64))


@pytest.mark.parametrize("n", [2, 5, 100, 50_000])
def test_evenly_spread_hashes_with_repeats_sort_stably(n: int) -> None:
    """Hashes spread evenly over the 64-bit range are sorted by buckets (a few a bucket, then
    insertion): stable for repeated values too (each value here appears about twice)."""
    rng = np.random.default_rng(n)
    values = rng.integers(0, (1 << 64) - 1, max(1, n // 2), dtype=np.uint64)
    hashes = values[rng.integers(0, values.size, n)]
    sorted_hashes, order = sort_hashes(hashes)
    expected = np.argsort(hashes, kind="stable")
    assert np.array_equal(order, expected)
    assert np.array_equal(sorted_hashes, hashes[expected])
