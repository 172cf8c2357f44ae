"""``sort_hashes`` (a part's id hashes, sorted in its worker) and ``merge_sorted_runs`` (the
parts' sorted runs merged by the parent) give the arrays of one stable argsort of all the hashes."""

from __future__ import annotations

import itertools

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
