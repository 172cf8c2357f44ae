"""Stage 2, grouping: the epoch's rows in segments (one per bucket, or one for the whole epoch),
in the order packing reads them.

SEQUENTIAL keeps index order in one segment; RANDOM shuffles all rows with the stream of
``(seed, epoch, PURPOSE_CUTS | 0)``; BUCKETED estimates bucket edges of equal total cost on the
full column (or takes the given ones; 2D duration x tokens as NeMo), groups rows by flat bucket
``b`` (stable: index order) and, with ``shuffle``, shuffles each with the stream of
``(seed, epoch, PURPOSE_CUTS | b)``. A ``per_source`` mixture splits each bucket by source.
(Copies of a cut that a mixture takes more than once stay in one segment: packing keeps them
out of one batch.) Memory: the grouped row array (8 B/cut) besides the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discoseq._core import bucketing, rng
from discoseq.config import SamplerConfig
from discoseq.plan import scratch
from discoseq.plan.select import Selection
from discoseq.strategy import SamplingStrategy

__all__ = ["Groups", "group_rows"]


@dataclass
class Groups:
    """Rows in segments: segment ``s`` is ``rows[seg_offsets[s]:seg_offsets[s + 1]]``.

    :param bucket_edges: the interior edges of the first bucketing dimension (empty unless
        BUCKETED).
    :param token_edges: ``(B, T - 1)`` token edges per bucket (zeros where a bucket is empty).
    :param segment_bucket: the flat bucket of each segment when segments are split by source
        (None: segment ``s`` is bucket ``s``).
    :param segment_source: the source of each segment with ``mix_batches="per_source"``.
    """

    rows: np.ndarray
    seg_offsets: np.ndarray
    bucket_edges: np.ndarray
    token_edges: np.ndarray
    segment_bucket: np.ndarray | None = None
    segment_source: np.ndarray | None = None


def empty_edges(config: SamplerConfig) -> tuple[np.ndarray, np.ndarray]:
    """The edges of a plan with no rows: none estimated."""
    B, T = config.duration_buckets, config.token_buckets
    return np.empty(0, dtype=np.float64), np.zeros((B, max(T - 1, 0)), dtype=np.float64)


PURPOSE_SPREAD = 6 << 32


def spread_copies(groups: Groups, config: SamplerConfig, epoch: int) -> None:
    """Order each segment (in place) so the copies of a cut that a mixture takes ``c`` times
    lie about ``1/c`` of the segment apart: copy ``k`` of a cut is due at ``(k + u) / c``
    (``u`` uniform per cut, keyed by the epoch), rows sorted by due time. A cut taken once
    gets a uniform place: the order stays a random one. Packing then rarely meets a copy of a
    cut already in the open batch (it would close the batch early, see ``pack``), so batches
    stay full. (A cut's copies lie in one segment, a bucket of its source: ``k`` counts them
    there; which copy gets which ``k`` does not matter, they are the same row.)"""
    rows = groups.rows
    by_row = np.argsort(rows, kind="stable")  # equal rows (a cut's copies) side by side
    sorted_rows = rows[by_row]
    n = rows.shape[0]
    first = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]]) if n else by_row
    sizes = np.diff(np.r_[first, n])
    copy = np.empty(n, dtype=np.float64)  # k: the copy's number among its cut's copies
    copy[by_row] = np.arange(n) - np.repeat(first, sizes)
    copies = np.empty(n, dtype=np.float64)  # c
    copies[by_row] = np.repeat(sizes, sizes)
    key = np.uint64(rng.derive_key(config.seed, epoch, PURPOSE_SPREAD))
    with np.errstate(over="ignore"):  # splitmix64 of (row ^ key), wrapping arithmetic
        z = rows.astype(np.uint64) ^ key
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    due = (copy + u) / copies
    seg = np.repeat(np.arange(groups.seg_offsets.shape[0] - 1), np.diff(groups.seg_offsets))
    groups.rows[:] = rows[np.lexsort((due, seg))]


def group_rows(selection: Selection, config: SamplerConfig, epoch: int) -> Groups:
    """Segments of the selected rows for ``epoch`` (see the module docstring)."""
    offsets = selection.source_offsets
    if offsets is not None and config.mix_batches == "per_source":
        return _per_source(selection, offsets, config, epoch)
    if config.strategy is SamplingStrategy.BUCKETED:
        return _bucketed(selection, config, epoch)
    rows = selection.rows
    if rows is None:
        rows = np.arange(selection.cuts_in, dtype=np.int64)
    if config.strategy is SamplingStrategy.RANDOM:
        rng.shuffle(rows, rng.derive_key(config.seed, epoch, rng.PURPOSE_CUTS))
    edges, token_edges = empty_edges(config)
    return Groups(rows, np.array([0, rows.shape[0]], dtype=np.int64), edges, token_edges)


def _per_source(
    selection: Selection, source_offsets: np.ndarray, config: SamplerConfig, epoch: int
) -> Groups:
    """A ``per_source`` mixture's segments: each bucket split by source, source-major (so the
    batches of a step share a source), each segment shuffled with its own stream.

    The selection holds its sources one after another and grouping by bucket is stable, so
    inside a bucket each source's rows are a contiguous run, and source ``s``'s rows all lie
    in ``[source_offsets[s], source_offsets[s + 1])``: ``row < source_offsets[s]`` holds on a
    prefix of the bucket, found by binary search (no per-row label, no sort)."""
    if config.strategy is SamplingStrategy.BUCKETED:
        rows, offsets, edges, token_edges = _group_by_bucket(selection, config)
    else:
        assert selection.rows is not None  # a mixture's selection
        rows = selection.rows
        offsets = np.array([0, rows.shape[0]], dtype=np.int64)
        edges, token_edges = empty_edges(config)
    nb = offsets.shape[0] - 1
    num_sources = source_offsets.shape[0] - 1
    bounds = np.asarray(source_offsets, dtype=np.int64)
    # runs[b, s]: where source s starts inside bucket b (a binary search on the monotone
    # predicate above; searchsorted compares only, so it finds that boundary)
    runs = np.empty((nb, num_sources + 1), dtype=np.int64)
    for b in range(nb):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        runs[b] = lo + np.searchsorted(rows[lo:hi], bounds)
    order = [(s, b) for s in range(num_sources) for b in range(nb)]  # segment order
    slices = [rows[runs[b, s] : runs[b, s + 1]] for s, b in order]
    seg_offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum([x.shape[0] for x in slices], out=seg_offsets[1:])
    # memory an earlier plan handed back (the planner gives these rows back once ordered)
    out = scratch.empty(rows.shape[0], np.int64)
    if slices:
        np.concatenate(slices, out=out)
    if rows is not selection.rows:  # the rows grouped by bucket, read no more
        scratch.give_back(rows)
    offs = seg_offsets
    if config.effective_shuffle:
        _shuffle_segments(out, offs, config, epoch)
    return Groups(
        out,
        offs,
        edges,
        token_edges,
        np.array([b for _, b in order], dtype=np.int64),
        np.array([s for s, _ in order], dtype=np.int64),
    )


def _bucketed(selection: Selection, config: SamplerConfig, epoch: int) -> Groups:
    rows, seg_offsets, edges, token_edges = _group_by_bucket(selection, config)
    if config.effective_shuffle:
        _shuffle_segments(rows, seg_offsets, config, epoch)
    return Groups(rows, seg_offsets, edges, token_edges)


def _group_by_bucket(
    selection: Selection, config: SamplerConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The selected rows grouped by flat bucket (stable), with the edges that made them."""
    col = selection.column
    # 1D with estimated edges: the estimate also counts each bucket's rows, so grouping is one
    # pass (the scatter) instead of two
    sized = config.token_buckets <= 1 and config.bucket_edges is None
    sizes = np.empty(config.duration_buckets, dtype=np.int64) if sized else None
    edges = estimate_edges(selection, config, sizes)
    max_token = _token_histogram_bound(selection, config)
    # memory an earlier plan handed back (the planner gives these rows back once ordered)
    out = scratch.empty(selection.num_rows, np.int64)
    if max_token is not None and config.total_buckets <= 256:
        # estimated token edges, and grouping: one call, each row's first bucket found once
        rows, offsets, token_edges = bucketing.group_by_bucket_2d(
            selection.rows, bucketing.KEY_KINDS[config.bucket_method], col("duration"),
            col("num_frames"), col("num_features"), col("num_tokens"), edges,
            config.token_buckets, max_token, out,
        )  # fmt: skip
        return rows, offsets, edges, token_edges
    token_edges = estimate_token_edges(selection, config, edges)
    rows, offsets = bucketing.group_by_bucket(
        selection.rows, bucketing.KEY_KINDS[config.bucket_method], col("duration"),
        col("num_frames"), col("num_features"), col("num_tokens"), edges,
        token_edges.reshape(-1), config.token_buckets, sizes, out,
    )  # fmt: skip
    return rows, offsets, edges, token_edges


def _shuffle_segments(
    rows: np.ndarray, offsets: np.ndarray, config: SamplerConfig, epoch: int
) -> None:
    """Shuffle segment ``s`` of ``rows`` in place with the stream of
    ``(seed, epoch, PURPOSE_CUTS | s)``."""
    keys = np.array(
        [
            rng.derive_key(config.seed, epoch, rng.PURPOSE_CUTS | s)
            for s in range(offsets.shape[0] - 1)
        ],
        dtype=np.uint64,
    )
    rng.shuffle_segments(rows, offsets, keys)


def estimate_edges(
    selection: Selection, config: SamplerConfig, sizes: np.ndarray | None = None
) -> np.ndarray:
    """The interior edges of the first bucketing dimension: given, or of equal total cost
    (then ``sizes``, when given, receives the rows of each bucket)."""
    if config.bucket_edges is not None:
        if sizes is not None:
            raise ValueError("sizes are counted only when the edges are estimated")
        return np.asarray(config.bucket_edges, dtype=np.float64)
    col = selection.column
    lo, hi = _key_bounds(selection, config)
    return bucketing.estimate_edges(
        selection.rows, bucketing.KEY_KINDS[config.bucket_method], col("duration"),
        col("num_frames"), col("num_features"), col("num_tokens"), config.duration_buckets,
        lo, hi, sizes,
    )  # fmt: skip


def _key_bounds(selection: Selection, config: SamplerConfig) -> tuple[float, float]:
    """Bounds that bracket every bucketing key, so the edges' estimate skips its own pass for
    them (``(1.0, 0.0)``: unknown). Durations: the column's, known from the selection. Frames
    (and frames x features): the columns' least and greatest values, two vector reductions
    where the kernel's pass converts each key to a double (36 ms at 10M rows, against 5 ms),
    when no value is negative (a -1, missing, in a row left out would not bracket as bits)."""
    if config.bucket_method == "duration":
        return selection.duration_bounds
    frames = selection.column("num_frames")
    if frames.shape[0] == 0:
        return 1.0, 0.0
    lo_f, hi_f = int(frames.min()), int(frames.max())
    if config.bucket_method == "num_frames":
        return (float(lo_f), float(hi_f)) if lo_f >= 0 else (1.0, 0.0)
    features = selection.column("num_features")
    lo_n, hi_n = int(features.min()), int(features.max())
    if min(lo_f, lo_n) < 0 or hi_f * hi_n >= 1 << 63:  # (the kernel's key is an int64 product)
        return 1.0, 0.0
    # integer products, then doubles: rounding to a double keeps their order, so these
    # bracket every row's key (its product, rounded)
    return float(lo_f * lo_n), float(hi_f * hi_n)


def _token_histogram_bound(selection: Selection, config: SamplerConfig) -> int | None:
    """The largest token value, when token edges are to be estimated (2D, no given edges) and
    a histogram of token values per bucket fits ``MAX_TOKEN_HISTOGRAM``; else None."""
    if config.token_buckets <= 1 or config.token_bucket_edges is not None:
        return None
    tokens = selection.column("num_tokens")
    max_token = int(tokens.max()) if tokens.shape[0] else 0
    if config.duration_buckets * (max_token + 1) > bucketing.MAX_TOKEN_HISTOGRAM:
        return None
    return max_token


def estimate_token_edges(
    selection: Selection, config: SamplerConfig, edges: np.ndarray
) -> np.ndarray:
    """``(B, T - 1)`` token edges: given, or of equal total tokens within each bucket."""
    B, T = config.duration_buckets, config.token_buckets
    if T > 1 and config.token_bucket_edges is not None:
        return np.asarray(config.token_bucket_edges, dtype=np.float64)
    token_edges = np.zeros((B, max(T - 1, 0)), dtype=np.float64)
    if T <= 1:
        return token_edges
    col = selection.column
    empty = np.empty(0, dtype=np.int64)
    tokens = col("num_tokens")
    max_token = _token_histogram_bound(selection, config)
    if max_token is not None:
        # one pass: a histogram of tokens per bucket (the same edges as estimating each
        # bucket's tokens on their own, see the kernel)
        return bucketing.estimate_token_edges(
            selection.rows, bucketing.KEY_KINDS[config.bucket_method], col("duration"),
            col("num_frames"), col("num_features"), tokens, edges, T, max_token,
        )  # fmt: skip
    # Token counts too large for a histogram: group once by the first dimension, then estimate
    # each bucket's edges on a contiguous copy of its tokens. The final grouping starts again
    # from the selection (index order): reading the columns through the grouped rows would be a
    # strided, cache-unfriendly pass.
    g1, off1 = bucketing.group_by_bucket(
        selection.rows, bucketing.KEY_KINDS[config.bucket_method], col("duration"),
        col("num_frames"), col("num_features"), tokens, edges, np.empty(0, np.float64), 1,
    )  # fmt: skip
    t_kind = bucketing.KEY_KINDS["num_tokens"]
    for b in range(B):
        sub = tokens[g1[off1[b] : off1[b + 1]]]
        if sub.size == 0:
            continue  # an empty bucket keeps zero edges (as the reference)
        token_edges[b] = bucketing.estimate_edges(
            None, t_kind, col("duration"), empty, empty, sub, T
        )
    return token_edges
