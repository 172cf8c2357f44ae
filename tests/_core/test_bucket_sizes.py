"""Bucket sizes counted while estimating edges, one-pass grouping with known sizes, and the
bucket lookup table (keys in a bin with an edge, bins with several edges, keys outside the
table's range) against the reference assignment ``searchsorted(edges, key, "left")``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq._core import bucketing
from tests import reference_plan as ref

EMPTY_I = np.empty(0, np.int64)
EMPTY_F = np.empty(0, np.float64)

# few distinct values (many keys equal to an edge, edges repeated) or many
durations = st.lists(
    st.sampled_from([0.5, 1.0, 2.25, 12.0, 12.01, 30.0, 1e5]) | st.floats(0.01, 40.0),
    min_size=1,
    max_size=300,
)


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def expect_grouping(keys: np.ndarray, rows: np.ndarray, edges: np.ndarray) -> list[int]:
    ids = ref.bucket_ids(keys, None, edges, np.empty((0, 0)), 1)
    return np.concatenate([rows[ids == b] for b in range(edges.size + 1)]).tolist()


@given(durations, st.integers(1, 12), st.sampled_from([1, 2, 3]))
def test_sizes_and_one_pass_grouping_match_reference(
    values: list[float], nb: int, step: int
) -> None:
    d = readonly(np.array(values))
    rows = readonly(np.arange(0, d.size, step, dtype=np.int64))
    sizes = np.full(nb, -7, dtype=np.int64)
    edges = bucketing.estimate_edges(rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, nb, sizes=sizes)
    assert edges.tolist() == ref.estimate_edges(d[rows], "duration", nb).tolist()
    ids = ref.bucket_ids(d[rows], None, edges, np.empty((0, 0)), 1)
    assert sizes.tolist() == np.bincount(ids, minlength=nb).tolist()
    counted = bucketing.group_by_bucket(rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1)
    sized = bucketing.group_by_bucket(
        rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1, readonly(sizes)
    )
    assert sized[0].tolist() == counted[0].tolist() == expect_grouping(d[rows], rows, edges)
    assert sized[1].tolist() == counted[1].tolist()


@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=300),
    st.integers(2, 9),
    st.sampled_from(["num_frames", "num_features", "num_tokens"]),
)
def test_sizes_of_integer_keys(values: list[int], nb: int, method: str) -> None:
    col = readonly(np.array(values, dtype=np.int64))
    feats = readonly(np.full(col.size, 80, dtype=np.int64))
    cols = {"num_frames": col, "num_features": feats, "num_tokens": col}
    kind = bucketing.KEY_KINDS[method]
    sizes = np.empty(nb, dtype=np.int64)
    edges = bucketing.estimate_edges(None, kind, EMPTY_F, col, feats, col, nb, sizes=sizes)
    keys = ref.keys_of(cols, method, np.arange(col.size))
    ids = ref.bucket_ids(keys, None, edges, np.empty((0, 0)), 1)
    assert sizes.tolist() == np.bincount(ids, minlength=nb).tolist()
    grouped, off = bucketing.group_by_bucket(
        None, kind, EMPTY_F, col, feats, col, edges, EMPTY_F, 1, sizes
    )
    assert grouped.tolist() == expect_grouping(keys, np.arange(col.size), edges)
    assert np.diff(off).tolist() == sizes.tolist()


def test_sizes_at_scale_with_bounds() -> None:
    # 200k keys rounded to 10 ms: every edge bin holds thousands of keys equal to its edge
    gen = np.random.default_rng(3)
    d = np.round(np.where(gen.random(200_000) < 0.8, gen.normal(14, 2, 200_000), 3.0), 2)
    d = np.clip(d, 0.5, 30.0)
    sizes = np.empty(30, dtype=np.int64)
    edges = bucketing.estimate_edges(
        None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 30, float(d.min()), float(d.max()), sizes
    )
    assert np.isin(d, edges).mean() > 0.01  # the lookup's edge bins are exercised
    assert sizes.tolist() == np.bincount(np.searchsorted(edges, d), minlength=30).tolist()
    grouped, off = bucketing.group_by_bucket(
        None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1, sizes
    )
    assert grouped.tolist() == expect_grouping(d, np.arange(d.size), edges)
    assert np.diff(off).tolist() == sizes.tolist()


def test_sizes_of_one_bucket_and_no_rows() -> None:
    d = np.array([3.0, 1.0, 2.0])
    sizes = np.full(1, -1, dtype=np.int64)
    assert bucketing.estimate_edges(None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 1, sizes=sizes).size == 0
    assert sizes.tolist() == [3]
    sizes = np.full(4, -1, dtype=np.int64)
    empty_rows = np.empty(0, dtype=np.int64)
    edges = bucketing.estimate_edges(empty_rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 4, sizes=sizes)
    assert sizes.tolist() == [0, 0, 0, 0]
    grouped, off = bucketing.group_by_bucket(
        empty_rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1, sizes
    )
    assert grouped.size == 0 and off.tolist() == [0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "edges",
    [
        [1.0, 1.0, float(np.nextafter(1.0, 2.0)), 2.0, 1e6],  # several edges in one bin
        [5.0, 5.0, 5.0],  # all edges equal: a table of one bin
        [0.25, 0.5, 17.0, 17.0, 17.000000001, 30.0],
        [1e-300, 1.0, 1e300],  # the widest table: a shift leaves few bins
    ],
)
def test_lookup_table_matches_searchsorted(edges: list[float]) -> None:
    e = np.array(edges)
    near = np.concatenate([e, np.nextafter(e, 0.0), np.nextafter(e, np.inf)])
    keys = np.concatenate(
        [
            near,
            [0.0, 1e-320, 0.1, 3.0, 5e5, 1e7, 1e308],
            np.random.default_rng(0).uniform(0, 40, 500),
        ]
    )
    rows = np.arange(keys.size, dtype=np.int64)
    grouped, off = bucketing.group_by_bucket(
        None, 0, keys, EMPTY_I, EMPTY_I, EMPTY_I, e, EMPTY_F, 1
    )
    assert grouped.tolist() == expect_grouping(keys, rows, e)
    ids = np.searchsorted(e, keys, side="left")
    sizes = np.bincount(ids, minlength=e.size + 1)
    assert np.diff(off).tolist() == sizes.tolist()
    again, _ = bucketing.group_by_bucket(
        None, 0, keys, EMPTY_I, EMPTY_I, EMPTY_I, e, EMPTY_F, 1, sizes
    )
    assert again.tolist() == grouped.tolist()


def test_wrong_sizes_are_refused() -> None:
    d = np.array([1.0, 5.0, 5.0, 9.0, 2.0, 7.0])
    edges = np.array([3.0, 6.0])  # buckets: rows [0, 4], [1, 2], [3, 5]
    args = (None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1)
    right = np.array([2, 2, 2], dtype=np.int64)
    assert bucketing.group_by_bucket(*args, right)[0].tolist() == [0, 4, 1, 2, 3, 5]
    with pytest.raises(ValueError, match="3 buckets"):
        bucketing.group_by_bucket(*args, np.array([3, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="sum to the 6 rows"):
        bucketing.group_by_bucket(*args, np.array([2, 2, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        bucketing.group_by_bucket(*args, np.array([-1, 4, 3], dtype=np.int64))
    for wrong in ([3, 2, 1], [1, 2, 3], [0, 0, 6], [6, 0, 0]):
        with pytest.raises(ValueError, match="not the numbers of rows in each bucket"):
            bucketing.group_by_bucket(*args, np.array(wrong, dtype=np.int64))
    # more rows than a bucket's size, past a full staging block (16 rows)
    many = np.concatenate([np.full(40, 1.0), np.full(40, 9.0)])
    many_args = (None, 0, many, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1)
    with pytest.raises(ValueError, match="not the numbers of rows in each bucket"):
        bucketing.group_by_bucket(*many_args, np.array([20, 0, 60], dtype=np.int64))
    with pytest.raises(ValueError, match="sizes has 2 values"):
        bucketing.estimate_edges(
            None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 3, sizes=np.empty(2, np.int64)
        )


def test_grouping_into_a_given_array() -> None:
    """``out``: the grouped rows are written into the caller's array (memory kept from an
    earlier plan) and it is returned; a wrong one is refused before anything is written."""
    gen = np.random.default_rng(4)
    d = np.round(gen.uniform(0.5, 30.0, 500), 2)
    e = np.array([5.0, 10.0, 20.0])
    empty_i, empty_f = np.empty(0, np.int64), np.empty(0)
    args = (None, bucketing.KEY_KINDS["duration"], d, empty_i, empty_i, empty_i, e, empty_f, 1)
    want, offsets = bucketing.group_by_bucket(*args)
    out = np.full(500, -7, dtype=np.int64)
    got, got_offsets = bucketing.group_by_bucket(*args, None, out)
    assert got is out and np.array_equal(out, want) and np.array_equal(got_offsets, offsets)
    for bad in (np.empty(499, np.int64), np.empty(500, np.int32), np.empty(1000, np.int64)[::2]):
        with pytest.raises(ValueError, match="out must be a writable contiguous int64 array"):
            bucketing.group_by_bucket(*args, None, bad)
    tokens = np.floor(d * 10).astype(np.int64)
    args2 = (None, bucketing.KEY_KINDS["duration"], d, empty_i, empty_i, tokens, e, 2, 400)
    want2 = bucketing.group_by_bucket_2d(*args2)
    out2 = np.full(500, -7, dtype=np.int64)
    got2 = bucketing.group_by_bucket_2d(*args2, out2)
    assert got2[0] is out2 and np.array_equal(out2, want2[0])
    assert np.array_equal(got2[1], want2[1]) and np.array_equal(got2[2], want2[2])
