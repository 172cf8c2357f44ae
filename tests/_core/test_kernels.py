"""Each compiled kernel against its slow twin in reference_plan.py, incl. read-only inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq._core import bucketing, packing, rng, sharding, sources
from discoseq.config import SamplerConfig
from tests import reference_plan as ref

U64 = st.integers(0, (1 << 64) - 1)
EMPTY_I = np.empty(0, np.int64)
EMPTY_F = np.empty(0, np.float64)


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------------- rng


def test_splitmix64_known_answer() -> None:
    # SplitMix64 seeded with 1 (state = 1 before the first increment): published first output.
    assert rng.raw_stream(1, 1)[0] == 10451216379200822465


@given(U64, U64, U64)
def test_derive_key_matches_reference(seed: int, epoch: int, purpose: int) -> None:
    assert rng.derive_key(seed, epoch, purpose) == ref.derive_key(seed, epoch, purpose)


def test_derive_key_is_not_seed_plus_epoch() -> None:
    assert rng.derive_key(1, 0, 0) != rng.derive_key(0, 1, 0)
    assert (
        len({rng.derive_key(s, e, p) for s in range(4) for e in range(4) for p in range(4)}) == 64
    )


@given(U64, st.integers(0, 50))
def test_raw_stream_matches_reference(key: int, n: int) -> None:
    s = ref.Stream(key)
    assert rng.raw_stream(key, n).tolist() == [s.next() for _ in range(n)]


@given(U64, st.lists(st.integers(1, (1 << 63) - 1) | st.integers(1, 10), max_size=40))
def test_bounded_matches_reference(key: int, bounds: list[int]) -> None:
    s = ref.Stream(key)
    expect = [s.bounded(b) for b in bounds]
    got = rng.bounded_stream(key, readonly(np.array(bounds, dtype=np.int64)))
    assert got.tolist() == expect
    assert all(0 <= g < b for g, b in zip(expect, bounds, strict=True))


def test_bounded_is_unbiased_enough() -> None:
    draws = rng.bounded_stream(7, np.full(60000, 3, dtype=np.int64))
    counts = np.bincount(draws, minlength=3)
    assert counts.min() > 19000 and counts.max() < 21000


@given(U64, st.lists(st.integers(-5, 1000), max_size=60))
def test_shuffle_matches_reference(key: int, values: list[int]) -> None:
    a = np.array(values, dtype=np.int64)
    rng.shuffle(a, key)
    assert a.tolist() == ref.shuffle(values, key)


def test_shuffle_segments_matches_reference() -> None:
    a = np.arange(30, dtype=np.int64)
    offsets = np.array([0, 0, 7, 8, 30], dtype=np.int64)
    keys = np.array([11, 12, 13, 14], dtype=np.uint64)
    rng.shuffle_segments(a, readonly(offsets), readonly(keys))
    expect = []
    for s in range(4):
        expect += ref.shuffle(list(range(offsets[s], offsets[s + 1])), 11 + s)
    assert a.tolist() == expect


def test_rng_validation() -> None:
    with pytest.raises(ValueError, match="seed"):
        rng.derive_key(-1, 0, 0)
    with pytest.raises(ValueError, match="bounds"):
        rng.bounded_stream(0, np.array([0], dtype=np.int64))
    with pytest.raises(ValueError, match="keys"):
        rng.shuffle_segments(np.arange(3), np.array([0, 3]), np.array([], dtype=np.uint64))


# ---------------------------------------------------------------------------------- bucketing

durations = st.lists(
    st.floats(0.01, 40.0) | st.sampled_from([0.5, 12.0, 1e5]), min_size=1, max_size=200
)


@given(durations, st.integers(1, 12), st.booleans())
def test_estimate_edges_matches_reference(values: list[float], nb: int, subset: bool) -> None:
    d = readonly(np.array(values))
    rows = np.arange(0, d.size, 2 if subset else 1, dtype=np.int64)
    got = bucketing.estimate_edges(readonly(rows), 0, d, EMPTY_I, EMPTY_I, EMPTY_I, nb)
    expect = ref.estimate_edges(d[rows], "duration", nb)
    assert got.tolist() == expect.tolist()
    if not subset:
        assert bucketing.estimate_edges(None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, nb).tolist() == (
            expect.tolist()
        )


@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=200),
    st.integers(2, 9),
    st.sampled_from(["num_frames", "num_features", "num_tokens"]),
)
def test_estimate_edges_integer_keys(values: list[int], nb: int, method: str) -> None:
    col = readonly(np.array(values, dtype=np.int64))
    feats = readonly(np.full(col.size, 80, dtype=np.int64))
    cols = {"num_frames": col, "num_features": feats, "num_tokens": col}
    kind = bucketing.KEY_KINDS[method]
    rows = np.arange(col.size, dtype=np.int64)
    got = bucketing.estimate_edges(rows, kind, EMPTY_F, col, feats, col, nb)
    expect = ref.estimate_edges(ref.keys_of(cols, method, rows), method, nb)
    assert got.tolist() == expect.tolist()


def test_estimate_edges_balances_cost() -> None:
    d = np.random.default_rng(0).gamma(4.0, 3.0, 100_000) + 0.5
    edges = bucketing.estimate_edges(None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 10)
    per = np.bincount(np.searchsorted(edges, d, side="left"), weights=d, minlength=10)
    assert per.max() / per.min() < 1.01


@given(durations, st.lists(st.floats(0.1, 50.0), max_size=8), st.booleans())
def test_group_by_bucket_matches_reference(
    values: list[float], edges: list[float], sub: bool
) -> None:
    d = readonly(np.array(values))
    e = readonly(np.array(sorted(edges)))
    rows = np.arange(0, d.size, 3 if sub else 1, dtype=np.int64)
    grouped, off = bucketing.group_by_bucket(
        readonly(rows), 0, d, EMPTY_I, EMPTY_I, EMPTY_I, e, EMPTY_F, 1
    )
    ids = np.searchsorted(e, d[rows], side="left")
    expect = np.concatenate([rows[ids == b] for b in range(e.size + 1)])
    assert grouped.tolist() == expect.tolist()
    assert np.diff(off).tolist() == np.bincount(ids, minlength=e.size + 1).tolist()


def test_group_by_bucket_2d() -> None:
    gen = np.random.default_rng(1)
    d = readonly(gen.uniform(0.5, 20, 500))
    tok = readonly(gen.integers(0, 300, 500))
    edges = np.array([5.0, 10.0])
    tedges = np.array([[50.0, 100.0], [80.0, 160.0], [100.0, 200.0]])
    grouped, off = bucketing.group_by_bucket(
        None, 0, d, EMPTY_I, EMPTY_I, tok, edges, tedges.reshape(-1), 3
    )
    ids = ref.bucket_ids(d, tok, edges, tedges, 3)
    expect = np.concatenate([np.flatnonzero(ids == s) for s in range(9)])
    assert grouped.tolist() == expect.tolist()
    assert off.size == 10


# ------------------------------------------------------------------------------------ packing


@given(
    durations,
    st.floats(1.0, 100.0),
    st.integers(1, 6),
    st.booleans(),
    st.booleans(),
    st.none() | st.floats(1.0, 30.0),
    st.booleans(),
)
def test_pack_matches_reference(
    values: list[float],
    cap: float,
    max_cuts: int,
    sum_mode: bool,
    exclude: bool,
    q: float | None,
    frame_cap: bool,
) -> None:
    """Both packing loops: the general one (a frame cap) and the one for duration and cut caps
    only, which must make the same batches bit for bit."""
    d = readonly(np.array(values))
    frames = readonly((d * 100).astype(np.int64))
    max_frames = 2500 if frame_cap else None
    rows = np.arange(d.size, dtype=np.int64)[::-1].copy()
    seg = np.array([0, d.size // 2, d.size], dtype=np.int64)
    kept, off, bseg, bcost, bdur, sb, nover = packing.pack(
        rows,
        seg,
        d,
        frames,
        np.array([cap, cap / 2]),
        np.array([max_cuts, 3]),
        max_frames,
        q,
        sum_mode,
        exclude,
    )
    segs = [
        list(range(d.size - 1, d.size - 1 - d.size // 2, -1)),
        list(range(d.size - 1 - d.size // 2, -1, -1)),
    ]
    batches, eseg, ecost, edur, enover = ref.pack(
        segs, d, frames, [cap, cap / 2], [max_cuts, 3], max_frames, q, sum_mode, exclude
    )
    assert kept == sum(len(b) for b in batches)
    assert [rows[off[i] : off[i + 1]].tolist() for i in range(off.size - 1)] == batches
    assert bseg.tolist() == eseg and bcost.tolist() == ecost and bdur.tolist() == edur
    assert nover == enover
    assert np.diff(sb).tolist() == [eseg.count(0), eseg.count(1)]


@given(
    durations,
    st.sampled_from([5, 40, 300]),
    st.booleans(),
    st.booleans(),
    st.none() | st.sampled_from([12.5, 25.0]),
    st.none() | st.sampled_from([1.0, 7.5, 100.0]),
)
def test_pack_token_cap_matches_reference(
    values: list[float],
    cap: int,
    sum_mode: bool,
    exclude: bool,
    rate: float | None,
    quadratic: float | None,
) -> None:
    """The kernel's own token costs (text, audio tokens at ``rate``, the quadratic term) pack
    as the reference packs an array of those costs."""
    d = readonly(np.array(values))
    text = readonly(np.where(np.arange(d.size) % 5 == 0, -1, (d * 3).astype(np.int64)))
    rows = np.arange(d.size, dtype=np.int64)[::-1].copy()
    seg = np.array([0, d.size], dtype=np.int64)
    order = rows.tolist()  # pack compacts rows in place
    kept, off, _, bcost, _, _, nover = packing.pack(
        rows, seg, d, EMPTY_I, np.array([np.inf]), np.array([2**62]), None, None, sum_mode,
        exclude, tokens=text, max_tokens=cap, audio_rate=rate, quadratic_tokens=quadratic,
    )  # fmt: skip
    config = SamplerConfig(max_tokens=cap, audio_tokens_per_second=rate, quadratic_tokens=quadratic)
    costs = ref.token_costs({"duration": d, "num_tokens": text}, config)
    assert costs.dtype == (np.int64 if quadratic is None else np.float64)
    batches, _, ecost, _, enover = ref.pack(
        [order], d, None, [np.inf], [2**62], None, None, sum_mode, exclude,
        costs, cap,
    )  # fmt: skip
    assert kept == sum(len(b) for b in batches)
    assert [rows[off[i] : off[i + 1]].tolist() for i in range(off.size - 1)] == batches
    assert bcost.tolist() == ecost and nover == enover


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=60),
    st.integers(1, 8),
    st.booleans(),
    st.none() | st.sampled_from([20, 200]),
)
def test_pack_copies_match_reference(cuts: list[int], max_cuts: int, sum_mode: bool, tokens):
    """A multiset of index rows (a mixture's: a cut taken more than once is there more than
    once) with its repeated rows flagged by copy id (row - id_lo) packs as the reference packs
    it with every row's identity checked, with and without a token cap (whose layout holds
    the tokens)."""
    lo = 3  # rows below lo hold no copy id
    cut = np.array(cuts, dtype=np.int64)
    ncol = lo + int(cut.max()) + 3  # rows above the ids too
    d = readonly(1.0 + np.arange(ncol) * 0.5)
    counts = np.bincount(cut)
    copies = readonly(np.packbits(counts > 1, bitorder="little"))
    rows = (cut + lo)[::-1].copy()  # the plan's rows: index rows, some more than once
    order = rows.tolist()
    text = readonly(np.arange(ncol, dtype=np.int64) * 7)
    kept, off, _, bcost, _, _, _ = packing.pack(
        rows, np.array([0, rows.size], dtype=np.int64), d, EMPTY_I, np.array([30.0]),
        np.array([max_cuts]), None, None, sum_mode, False,
        tokens=None if tokens is None else text, max_tokens=tokens, copies=copies, id_lo=lo,
        num_ids=counts.size,
    )  # fmt: skip
    batches, _, ecost, _, _ = ref.pack(
        [order], d, None, [30.0], [max_cuts], None, None, sum_mode, False,
        None if tokens is None else text, tokens, np.arange(ncol),
    )  # fmt: skip
    assert kept == rows.size
    assert [rows[off[i] : off[i + 1]].tolist() for i in range(off.size - 1)] == batches
    assert bcost.tolist() == ecost
    for i in range(off.size - 1):  # no batch holds a cut twice
        got = rows[off[i] : off[i + 1]]
        assert np.unique(got).size == got.size


def test_pack_copies_in_large_batches_match_reference() -> None:
    """Batches holding hundreds of flagged rows (the open batch's table of copies grows many
    times) pack as the reference does."""
    gen = np.random.default_rng(3)
    ncol = 900
    d = readonly(np.full(ncol, 0.01))
    flagged = np.zeros(ncol, bool)
    flagged[100:800] = True
    # every cut first (700 flagged ones in the first batch), then the copies, shuffled
    parts = (np.arange(ncol), np.arange(100, 800), np.arange(100, 800))
    rows = np.concatenate([p[gen.permutation(p.size)] for p in parts]).astype(np.int64)
    order = rows.tolist()
    kept, off = packing.pack(
        rows, np.array([0, rows.size], dtype=np.int64), d, EMPTY_I, np.array([1e9]),
        np.array([2000]), None, None, False, False,
        copies=readonly(np.packbits(flagged, bitorder="little")), id_lo=0, num_ids=ncol,
    )[:2]  # fmt: skip
    batches = ref.pack(
        [order], d, None, [1e9], [2000], None, None, False, False, None, None, np.arange(ncol)
    )[0]
    assert kept == rows.size and len(batches) > 2 and len(batches[0]) >= ncol
    assert [rows[off[i] : off[i + 1]].tolist() for i in range(off.size - 1)] == batches


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([2, 9, 40, 120]),
    st.booleans(),
    st.booleans(),
    st.none() | st.just(2000),
)
def test_pack_copies_over_segments_and_many_batches_match_reference(
    seed: int, max_cuts: int, sum_mode: bool, exclude: bool, max_frames: int | None
) -> None:
    """Copies packed over several segments and many batches (the open batch's flagged rows
    emptied at each close and at each segment's start; batches of a few up to a hundred
    flagged rows, scanned or hashed), with oversize cuts going alone or left out, with and
    without a frame cap, as the reference packs them."""
    gen = np.random.default_rng(seed)
    ncol = 400
    d = gen.choice([0.05, 0.2, 1.0, 3.0, 50.0], ncol, p=[0.4, 0.3, 0.2, 0.08, 0.02])
    frames = readonly((d * 100).astype(np.int64))
    lo = 5  # the copy ids start at row 5
    rows = gen.integers(lo, ncol, 3000).astype(np.int64)  # most cuts several times
    rows[gen.random(rows.size) < 0.3] = 7  # one cut very often
    cuts = np.bincount(rows, minlength=ncol)
    seg = np.array([0, 700, 700, 2100, 3000], dtype=np.int64)
    segments = [rows[seg[k] : seg[k + 1]].tolist() for k in range(seg.size - 1)]
    cap_d = np.array([30.0, 30.0, 10.0, 30.0])
    kept, off, bseg, bcost, _, _, nover = packing.pack(
        rows, seg, readonly(d), frames, cap_d, np.full(4, max_cuts), max_frames, None,
        sum_mode, exclude, copies=readonly(np.packbits(cuts[lo:] > 1, bitorder="little")),
        id_lo=lo, num_ids=ncol - lo,
    )  # fmt: skip
    batches, eseg, ecost, _, enover = ref.pack(
        segments, d, frames, cap_d.tolist(), [max_cuts] * 4, max_frames, None, sum_mode,
        exclude, None, None, np.arange(ncol),
    )  # fmt: skip
    assert [rows[off[i] : off[i + 1]].tolist() for i in range(off.size - 1)] == batches
    assert kept == sum(len(b) for b in batches) and nover == enover
    assert bseg.tolist() == eseg and bcost.tolist() == ecost


@pytest.mark.parametrize("flagged", [packing.FEW_COPIES, packing.FEW_COPIES + 1])
def test_pack_few_and_many_copies_match_reference(flagged: int) -> None:
    """Up to ``FEW_COPIES`` flagged cuts, a filter settles most rows (and lets some unflagged
    ones through to their bit); one more and every row reads its bit. Both pack as the
    reference does, over many segments and batches."""
    gen = np.random.default_rng(flagged)
    ncol, lo = 60_000, 7
    d = readonly(gen.choice([0.5, 2.0, 9.0], ncol))
    ids = lo + gen.choice(ncol - lo, flagged, replace=False)
    rows = np.concatenate([np.arange(ncol), ids, ids[: flagged // 3]]).astype(np.int64)
    gen.shuffle(rows)
    bits = np.zeros(ncol - lo, bool)
    bits[ids - lo] = True
    seg = np.linspace(0, rows.size, 9).astype(np.int64)
    segments = [rows[seg[k] : seg[k + 1]].tolist() for k in range(seg.size - 1)]
    kept, off = packing.pack(
        rows, seg, d, EMPTY_I, np.full(8, 60.0), np.full(8, 40), None, None, False, False,
        copies=readonly(np.packbits(bits, bitorder="little")), id_lo=lo, num_ids=ncol - lo,
    )[:2]  # fmt: skip
    batches = ref.pack(
        segments, d, None, [60.0] * 8, [40] * 8, None, None, False, False, None, None,
        np.arange(ncol),
    )[0]  # fmt: skip
    assert kept == rows.size
    assert [rows[off[i] : off[i + 1]].tolist() for i in range(off.size - 1)] == batches


def test_pack_copies_outside_the_ids_are_not_checked() -> None:
    """Only rows whose id lies in [0, num_ids) and is flagged are checked: a repeated row
    outside that span may share a batch (its source repeats nothing), one inside may not; too
    few bits for the ids are refused."""
    d = np.ones(20)
    args = (np.array([0, 4], dtype=np.int64), d, EMPTY_I, np.array([10.0]), np.array([9]),
            None, None, False, False)  # fmt: skip
    copies = np.packbits(np.array([1, 0, 1], bool), bitorder="little")
    rows = np.array([5, 5, 12, 12], dtype=np.int64)  # 5 is outside [10, 13), 12 is id 2
    kept, off = packing.pack(rows, *args, copies=copies, id_lo=10, num_ids=3)[:2]
    assert kept == 4 and off.tolist() == [0, 3, 4]  # the second 12 closes the batch
    with pytest.raises(ValueError, match="copies needs one bit per copy id"):
        packing.pack(rows.copy(), *args, copies=copies, id_lo=10, num_ids=9)
    with pytest.raises(ValueError, match="num_ids=-1"):
        packing.pack(rows.copy(), *args, copies=copies, id_lo=10, num_ids=-1)
    with pytest.raises(ValueError, match="copies needs one bit per copy id"):  # no overflow
        packing.pack(rows.copy(), *args, copies=copies, id_lo=10, num_ids=2**63 - 1)


def test_pack_quadratic_tokens_validation() -> None:
    d = np.array([1.0, 2.0])
    seg = np.array([0, 2], dtype=np.int64)
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ValueError, match="quadratic_tokens"):
            packing.pack(
                np.arange(2, dtype=np.int64), seg, d, EMPTY_I, np.array([np.inf]),
                np.array([5]), None, None, False, False, tokens=np.array([1, 2]), max_tokens=9,
                quadratic_tokens=bad,
            )  # fmt: skip


@given(durations, st.integers(2, 30))
def test_sort_pools_matches_reference(values: list[float], pool: int) -> None:
    d = readonly(np.round(np.array(values), 1))  # ties
    rows = np.arange(d.size, dtype=np.int64)[::-1].copy()
    seg = np.array([0, d.size // 3, d.size], dtype=np.int64)
    segs = [rows[seg[s] : seg[s + 1]].tolist() for s in range(2)]
    packing.sort_pools(rows, readonly(seg), d, pool)
    assert rows.tolist() == [r for s in ref.sort_pools(segs, d, pool) for r in s]


# ----------------------------------------------------------------------------------- sharding


@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=6),
    st.integers(1, 8),
    U64,
    st.booleans(),
    st.booleans(),
)
def test_order_batches_matches_reference(
    counts: list[int], W: int, seed: int, shuffle: bool, drop_last: bool
) -> None:
    sb = readonly(np.cumsum([0, *counts]).astype(np.int64))
    order, pad, dropped = sharding.order_batches(
        sb,
        W,
        rng.derive_key(seed, 3, rng.PURPOSE_TAIL),
        rng.derive_key(seed, 3, rng.PURPOSE_ORDER),
        shuffle,
        drop_last,
    )
    e_order, e_pad, e_dropped = ref.order_batches(counts, W, seed, 3, shuffle, drop_last)
    assert order.tolist() == e_order
    assert pad.tolist() == e_pad
    assert dropped.tolist() == e_dropped
    assert order.size % W == 0 and pad.size < W


def test_gather_batches() -> None:
    rows = readonly(np.arange(10, dtype=np.int64))
    off = readonly(np.array([0, 3, 3, 10], dtype=np.int64))
    out, o = sharding.gather_batches(rows, off, readonly(np.array([2, 0, 1, 0], dtype=np.int64)))
    assert out.tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 0, 1, 2]
    assert o.tolist() == [0, 7, 10, 10, 13]
    with pytest.raises(ValueError, match="order"):
        sharding.gather_batches(rows, off, np.array([3], dtype=np.int64))


def test_kernels_on_readonly_memmap(tmp_path) -> None:
    path = tmp_path / "duration.npy"
    np.save(path, np.random.default_rng(2).uniform(0.5, 30, 1000))
    d = np.load(path, mmap_mode="r")
    assert not d.flags.writeable
    edges = bucketing.estimate_edges(None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 5)
    grouped, off = bucketing.group_by_bucket(
        None, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, edges, EMPTY_F, 1
    )
    kept, *_ = packing.pack(
        grouped,
        off,
        d,
        EMPTY_I,
        np.full(5, 100.0),
        np.full(5, 10**9, np.int64),
        None,
        None,
        False,
        False,
    )
    assert kept == 1000


# ------------------------------------------------------------------- row ids inside the columns
# Kernels read the columns through raw pointers (no bounds checks in the release build), so each
# one checks at its Python boundary that every row id it is given is a row of the columns (or
# its first pass over the rows tests each before reading it, and the boundary then names it).

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.mark.parametrize("bad", [-1, 10, 11, INT64_MIN, INT64_MAX])
@pytest.mark.parametrize("pos", [0, 5, 2047, 2048, 4999])
def test_first_bad_row_is_reported(bad: int, pos: int) -> None:
    n = 5000
    d = readonly(np.linspace(1.0, 2.0, 10))
    rows = np.arange(n, dtype=np.int64) % 10
    rows[pos] = bad
    if pos + 1 < n:
        rows[pos + 1] = -7  # a later bad row is not the one reported
    msg = rf"rows\[{pos}\]={bad} is not a row of duration \(expected 0 <= row < 10\)"
    with pytest.raises(ValueError, match="estimate_edges: " + msg):
        bucketing.estimate_edges(readonly(rows), 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 3)
    with pytest.raises(ValueError, match="estimate_edges: " + msg):  # bounds given: no min/max
        bucketing.estimate_edges(rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, 3, 1.0, 2.0)
    with pytest.raises(ValueError, match="group_by_bucket: " + msg):
        bucketing.group_by_bucket(rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, EMPTY_F, EMPTY_F, 1)
    with pytest.raises(ValueError, match="group_by_bucket: " + msg):  # sizes known: one pass
        bucketing.group_by_bucket(rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, EMPTY_F, EMPTY_F, 1,
                                  np.array([n], np.int64))  # fmt: skip
    many = np.linspace(1.0, 2.0, 300)  # more than 256 buckets: no byte per row's bucket
    with pytest.raises(ValueError, match="group_by_bucket: " + msg):
        bucketing.group_by_bucket(rows, 0, d, EMPTY_I, EMPTY_I, EMPTY_I, many, EMPTY_F, 1)
    with pytest.raises(ValueError, match="sort_pools: " + msg):
        packing.sort_pools(rows, np.array([0, n], np.int64), d, 4)
    before = rows.copy()
    for exclude in (False, True):  # checked in the loop (no row moves), or before it
        with pytest.raises(ValueError, match="pack: " + msg):
            packing.pack(
                rows, np.array([0, n], np.int64), d, EMPTY_I, np.array([1.5]),
                np.array([8], np.int64), None, None, False, exclude,
            )  # fmt: skip
        assert rows.tolist() == before.tolist()  # no row moved


@given(st.lists(st.integers(-3, 12), max_size=300), st.integers(1, 12))
def test_row_check_accepts_exactly_the_rows_of_the_column(values: list[int], ncol: int) -> None:
    rows = np.array(values, dtype=np.int64)
    d = readonly(np.arange(1, ncol + 1, dtype=np.float64))
    frames = readonly(np.arange(ncol, dtype=np.int64))
    bad = [i for i, r in enumerate(values) if not 0 <= r < ncol]
    for call in (
        lambda: bucketing.group_by_bucket(rows, 1, EMPTY_F, frames, EMPTY_I, EMPTY_I, EMPTY_F,
                                          EMPTY_F, 1),
        lambda: bucketing.estimate_edges(rows, 1, EMPTY_F, frames, EMPTY_I, EMPTY_I, 3),
        lambda: bucketing.estimate_edges(rows, 1, EMPTY_F, frames, EMPTY_I, EMPTY_I, 3, 0.0,
                                         float(ncol)),
        lambda: bucketing.estimate_edges(rows, 1, EMPTY_F, frames, EMPTY_I, EMPTY_I, 1),
        lambda: bucketing.group_by_bucket(rows, 1, EMPTY_F, frames, EMPTY_I, EMPTY_I, EMPTY_F,
                                          EMPTY_F, 1, np.array([rows.size], np.int64)),
        lambda: packing.sort_pools(rows.copy(), np.array([0, rows.size], np.int64), d, 2),
        lambda: packing.pack(rows.copy(), np.array([0, rows.size], np.int64), d, EMPTY_I,
                             np.array([30.0]), np.array([8], np.int64), None, None, False, False),
        lambda: packing.pack(rows.copy(), np.array([0, rows.size], np.int64), d, EMPTY_I,
                             np.array([3.0]), np.array([8], np.int64), None, None, False, True),
        lambda: packing.pack(rows.copy(), np.array([0, rows.size], np.int64), d, EMPTY_I,
                             np.array([30.0]), np.array([8], np.int64), None, None, False, False,
                             copies=np.full(2, 255, np.uint8), id_lo=0, num_ids=12),
    ):  # fmt: skip
        if bad:
            with pytest.raises(ValueError, match=rf"rows\[{bad[0]}\]={values[bad[0]]} "):
                call()
        else:
            call()


def test_row_check_on_an_empty_column() -> None:
    rows = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=r"rows\[0\]=0 is not a row of duration"):
        packing.sort_pools(rows, np.array([0, 1], np.int64), EMPTY_F, 2)
    packing.sort_pools(EMPTY_I.copy(), np.array([0, 0], np.int64), EMPTY_F, 2)


def test_key_columns_must_have_one_length() -> None:
    frames = readonly(np.arange(1, 11, dtype=np.int64))
    feats = readonly(np.full(9, 80, dtype=np.int64))
    tokens = readonly(np.arange(8, dtype=np.int64))
    d = readonly(np.linspace(1.0, 2.0, 10))
    numel = bucketing.KEY_KINDS["num_features"]
    with pytest.raises(ValueError, match="column num_features has 9 rows but num_frames has 10"):
        bucketing.estimate_edges(None, numel, EMPTY_F, frames, feats, EMPTY_I, 3)
    with pytest.raises(ValueError, match="column num_features has 9 rows but num_frames has 10"):
        bucketing.group_by_bucket(None, numel, EMPTY_F, frames, feats, EMPTY_I, EMPTY_F, EMPTY_F, 1)
    with pytest.raises(ValueError, match="column num_tokens has 8 rows but duration has 10"):
        bucketing.group_by_bucket(
            None, 0, d, EMPTY_I, EMPTY_I, tokens, np.array([1.5]), np.array([3.0, 4.0]), 2
        )
    # a column the key does not read may have any length (the planner passes all it has)
    assert bucketing.estimate_edges(None, 0, d, EMPTY_I, feats, tokens, 2).size == 1
    grouped, _ = bucketing.group_by_bucket(
        None, 0, d, frames[:3], EMPTY_I, tokens, np.array([1.5]), EMPTY_F, 1
    )
    assert sorted(grouped.tolist()) == list(range(10))


def test_sort_pools_checks_segment_offsets() -> None:
    d = readonly(np.ones(6))
    rows = np.arange(6, dtype=np.int64)
    with pytest.raises(ValueError, match=r"seg_offsets\[0\]=-2 must be >= 0"):
        packing.sort_pools(rows, np.array([-2, 6], np.int64), d, 2)
    with pytest.raises(ValueError, match="non-decreasing"):
        packing.sort_pools(rows, np.array([0, 4, 2, 6], np.int64), d, 2)
    with pytest.raises(ValueError, match="end within rows"):
        packing.sort_pools(rows, np.array([0, 7], np.int64), d, 2)


def test_gather_batches_checks_batch_offsets() -> None:
    rows = readonly(np.arange(10, dtype=np.int64))
    order = np.array([0], dtype=np.int64)
    for bad in ([0, 3, 11], [-1, 3, 10], [5, 3, 4]):
        with pytest.raises(
            ValueError, match=r"batch_offsets must lie within \[0, len\(rows\)=10\]"
        ):
            sharding.gather_batches(rows, np.array(bad, np.int64), order)
    with pytest.raises(ValueError, match=r"non-decreasing, found batch_offsets\[1\]=7 > "):
        sharding.gather_batches(rows, np.array([0, 7, 3, 10], np.int64), order)
    with pytest.raises(ValueError, match="at least one value"):
        sharding.gather_batches(rows, EMPTY_I, EMPTY_I)
    out, off = sharding.gather_batches(rows, np.array([2, 5, 5, 9], np.int64), order)
    assert out.tolist() == [2, 3, 4] and off.tolist() == [0, 3]


@given(
    n=st.integers(1, 300),
    nb=st.integers(1, 6),
    nt=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
    top=st.sampled_from([0, 3, 50, 2000]),
    use_rows=st.booleans(),
)
def test_token_edges_in_one_pass_equal_per_bucket_estimates(n, nb, nt, seed, top, use_rows):
    """estimate_token_edges == estimate_edges over each bucket's tokens (and the reference)."""
    gen = np.random.default_rng(seed)
    dur = np.round(gen.uniform(0.5, 30.0, n), 2)
    tokens = gen.integers(0, top + 1, n).astype(np.int64)
    edges = np.sort(gen.uniform(1.0, 29.0, nb - 1))
    rows = np.flatnonzero(gen.random(n) < 0.7).astype(np.int64) if use_rows else None
    kind = bucketing.KEY_KINDS["duration"]
    empty = np.empty(0, dtype=np.int64)
    got = bucketing.estimate_token_edges(
        rows, kind, dur, empty, empty, tokens, edges, nt, int(tokens.max()) if n else 0
    )
    sel = np.arange(n) if rows is None else rows
    b = np.searchsorted(edges, dur[sel], side="left")
    for k in range(nb):
        sub = tokens[sel[b == k]]
        expect = ref.estimate_edges(sub.astype(np.float64), "num_tokens", nt)
        assert got[k].tolist() == expect.tolist(), k


@given(
    n=st.integers(1, 400),
    nb=st.integers(1, 8),
    nt=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
    top=st.sampled_from([0, 3, 50, 2000]),
    use_rows=st.booleans(),
    kind=st.sampled_from(["duration", "num_frames", "num_features"]),
)
def test_group_by_bucket_2d_equals_the_two_kernels(n, nb, nt, seed, top, use_rows, kind):
    """One call = estimate_token_edges then group_by_bucket with those edges (and the
    reference's bucket ids); many segments exercise the staged scatter."""
    gen = np.random.default_rng(seed)
    dur = readonly(np.round(gen.uniform(0.5, 30.0, n), 2))
    frames = readonly(np.ceil(dur * 100).astype(np.int64))
    feats = readonly(gen.integers(1, 4, n).astype(np.int64))
    tokens = readonly(gen.integers(0, top + 1, n).astype(np.int64))
    k = bucketing.KEY_KINDS[kind]
    keys = {"duration": dur, "num_frames": frames, "num_features": frames * feats}[kind]
    edges = np.sort(gen.choice(keys, nb - 1)).astype(np.float64)
    rows = np.flatnonzero(gen.random(n) < 0.7).astype(np.int64) if use_rows else None
    top_token = int(tokens.max())
    cols = (dur, frames, feats, tokens)
    grouped, off, tedges = bucketing.group_by_bucket_2d(rows, k, *cols, edges, nt, top_token)
    expect_te = bucketing.estimate_token_edges(rows, k, *cols, edges, nt, top_token)
    expect_g, expect_off = bucketing.group_by_bucket(
        rows, k, *cols, edges, expect_te.reshape(-1), nt
    )
    assert tedges.tolist() == expect_te.tolist()
    assert grouped.tolist() == expect_g.tolist() and off.tolist() == expect_off.tolist()
    sel = np.arange(n) if rows is None else rows
    ids = ref.bucket_ids(keys[sel].astype(np.float64), tokens[sel], edges, tedges, nt)
    order = np.concatenate([sel[ids == s] for s in range(nb * nt)])
    assert grouped.tolist() == order.tolist()


def test_group_by_bucket_2d_refuses() -> None:
    dur = np.array([1.0, 2.0, 3.0])
    tokens = np.array([5, 1, 7], dtype=np.int64)
    kind = bucketing.KEY_KINDS["duration"]
    with pytest.raises(ValueError, match="exceed 256"):
        bucketing.group_by_bucket_2d(
            None, kind, dur, EMPTY_I, EMPTY_I, tokens, np.arange(1.0, 65.0), 4, 7
        )
    with pytest.raises(ValueError, match=r"outside \[0, 6\]"):
        bucketing.group_by_bucket_2d(
            None, kind, dur, EMPTY_I, EMPTY_I, tokens, np.array([2.5]), 2, 6
        )
    with pytest.raises(ValueError, match="histogram cells"):
        bucketing.group_by_bucket_2d(
            None, kind, dur, EMPTY_I, EMPTY_I, tokens, np.array([2.5]), 2, 2**40
        )
    with pytest.raises(ValueError, match="not a row"):
        bucketing.group_by_bucket_2d(
            np.array([5]), kind, dur, EMPTY_I, EMPTY_I, tokens, np.array([2.5]), 2, 7
        )


def test_token_edges_refuse_bad_bounds() -> None:
    dur = np.array([1.0, 2.0, 3.0])
    tokens = np.array([5, -1, 7], dtype=np.int64)
    empty = np.empty(0, dtype=np.int64)
    kind = bucketing.KEY_KINDS["duration"]
    with pytest.raises(ValueError, match=r"outside \[0, 7\]"):
        bucketing.estimate_token_edges(None, kind, dur, empty, empty, tokens, np.array([2.5]), 2, 7)
    with pytest.raises(ValueError, match=r"outside \[0, 6\]"):
        bucketing.estimate_token_edges(
            np.array([0, 2]), kind, dur, empty, empty, tokens, np.array([2.5]), 2, 6
        )
    with pytest.raises(ValueError, match="histogram cells"):
        bucketing.estimate_token_edges(
            None, kind, dur, empty, empty, tokens, np.array([2.5]), 2, 2**40
        )
    with pytest.raises(ValueError, match="rows"):
        bucketing.estimate_token_edges(
            np.array([5]), kind, dur, empty, empty, tokens, np.array([2.5]), 2, 7
        )


def test_gather_batches_into_an_allocated_array() -> None:
    rows = np.arange(10, dtype=np.int64)
    offsets = np.array([0, 3, 7, 10], dtype=np.int64)
    order = np.array([2, 0, 2], dtype=np.int64)
    want, want_off = sharding.gather_batches(rows, offsets, order)
    made: list[np.ndarray] = []

    def alloc(n: int) -> np.ndarray:
        made.append(np.full(n, -1, dtype=np.int64))
        return made[-1]

    got, got_off = sharding.gather_batches(rows, offsets, order, alloc)
    assert got is made[0] and got.tolist() == want.tolist() == [7, 8, 9, 0, 1, 2, 7, 8, 9]
    assert got_off.tolist() == want_off.tolist()
    with pytest.raises(ValueError, match=r"alloc\(9\) must return an int64 array of 9"):
        sharding.gather_batches(rows, offsets, order, lambda n: np.empty(n, np.int32))


# ------------------------------------------------------------------------- per-source totals


@given(
    st.lists(st.integers(0, 59), max_size=400),
    st.lists(st.integers(0, 60), min_size=1, max_size=6),
    st.integers(0, 2**32 - 1),
)
def test_source_totals_are_numpy_bincounts_to_the_bit(
    values: list[int], cuts: list[int], seed: int
) -> None:
    """Per source (consecutive row ranges, some empty): the rows' count and the sum of their
    durations in the order of the rows, the same floats as ``np.bincount`` with weights."""
    ends = np.array([*sorted(cuts[:-1]), 60], dtype=np.int64)
    d = readonly(np.random.default_rng(seed).uniform(0.1, 30.0, 60))
    rows = readonly(np.array(values, dtype=np.int64))
    counts, seconds = sources.source_totals(rows, readonly(ends), d)
    of = np.searchsorted(ends, rows, side="right")
    assert counts.tolist() == np.bincount(of, minlength=ends.size).tolist()
    want = np.bincount(of, weights=d[rows], minlength=ends.size)
    assert seconds.tolist() == want.tolist()


def test_source_totals_validation() -> None:
    d = np.ones(10)
    ends = np.array([4, 8], dtype=np.int64)
    with pytest.raises(ValueError, match=r"rows\[1\]=8 is not a row of the sources"):
        sources.source_totals(np.array([0, 8], np.int64), ends, d)  # beyond the last source
    with pytest.raises(ValueError, match=r"rows\[0\]=-1 is not a row"):
        sources.source_totals(np.array([-1], np.int64), ends, d)
    with pytest.raises(ValueError, match="non-decreasing"):
        sources.source_totals(np.array([0], np.int64), np.array([5, 4], np.int64), d)
    with pytest.raises(ValueError, match="at least one source"):
        sources.source_totals(np.array([0], np.int64), EMPTY_I, d)
    counts, seconds = sources.source_totals(EMPTY_I, ends, d)
    assert counts.tolist() == [0, 0] and seconds.tolist() == [0.0, 0.0]
