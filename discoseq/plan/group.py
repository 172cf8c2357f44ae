"""Stage 2, grouping: the epoch's rows in segments (one per bucket, or one for the whole epoch),
in the order packing reads them.

SEQUENTIAL keeps index order in one segment; RANDOM shuffles all rows with the stream of
``(seed, epoch, PURPOSE_CUTS | 0)``; BUCKETED estimates bucket edges of equal total cost on the
full column (or takes the given ones; 2D duration x tokens as NeMo), groups rows by flat bucket
``b`` (stable: index order) and, with ``shuffle``, shuffles each with the stream of
``(seed, epoch, PURPOSE_CUTS | b)``. When a mixture takes a cut more than once, each segment is
then split by round (a position's copy number), stable, so no batch can hold a cut twice.
Memory: the grouped row array (8 B/cut) besides the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discoseq._core import bucketing, rng
from discoseq.config import SamplerConfig
from discoseq.plan.select import Selection
from discoseq.strategy import SamplingStrategy

__all__ = ["Groups", "group_rows"]


@dataclass
class Groups:
    """Rows in segments: segment ``s`` is ``rows[seg_offsets[s]:seg_offsets[s + 1]]``.

    :param bucket_edges: the interior edges of the first bucketing dimension (empty unless
        BUCKETED).
    :param token_edges: ``(B, T - 1)`` token edges per bucket (zeros where a bucket is empty).
    :param segment_bucket: the flat bucket of each segment when segments are split by source or
        round (None: segment ``s`` is bucket ``s``).
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


def group_rows(selection: Selection, config: SamplerConfig, epoch: int) -> Groups:
    """Segments of the selected rows for ``epoch`` (see the module docstring)."""
    if config.strategy is SamplingStrategy.BUCKETED:
        groups = _bucketed(selection, config, epoch)
    else:
        rows = selection.rows
        if rows is None:
            rows = np.arange(selection.num_positions, dtype=np.int64)
        if config.strategy is SamplingStrategy.RANDOM:
            rng.shuffle(rows, rng.derive_key(config.seed, epoch, rng.PURPOSE_CUTS))
        edges, token_edges = empty_edges(config)
        groups = Groups(rows, np.array([0, rows.shape[0]], dtype=np.int64), edges, token_edges)
    if config.mix_batches == "per_source" and selection.position_source is not None:
        num_sources = len(selection.sources)
        groups = split_segments(groups, selection.position_source, num_sources, label_major=True)
    if selection.rounds is not None:
        num_rounds = int(selection.rounds.max()) + 1
        groups = split_segments(groups, selection.rounds, num_rounds, label_major=False)
    return groups


def split_segments(
    groups: Groups, labels: np.ndarray, num_labels: int, *, label_major: bool
) -> Groups:
    """Each segment split by a label of its positions (stable). ``label_major``: segment
    ``label * S + s`` (a source's segments side by side, e.g. ``per_source``), else
    ``s * L + label`` (a bucket's rounds side by side)."""
    nseg = groups.seg_offsets.shape[0] - 1
    seg = np.repeat(np.arange(nseg, dtype=np.int64), np.diff(groups.seg_offsets))
    lab = labels[groups.rows].astype(np.int64, copy=False)
    key = lab * nseg + seg if label_major else seg * num_labels + lab
    order = np.argsort(key, kind="stable")
    counts = np.bincount(key, minlength=nseg * num_labels)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    new = np.arange(nseg * num_labels, dtype=np.int64)
    old_seg = new % nseg if label_major else new // num_labels
    new_label = new // nseg if label_major else new % num_labels
    bucket = old_seg if groups.segment_bucket is None else groups.segment_bucket[old_seg]
    source = None if groups.segment_source is None else groups.segment_source[old_seg]
    if label_major:
        source = new_label
    return Groups(
        np.ascontiguousarray(groups.rows[order]),
        offsets,
        groups.bucket_edges,
        groups.token_edges,
        bucket,
        source,
    )


def _bucketed(selection: Selection, config: SamplerConfig, epoch: int) -> Groups:
    col = selection.column
    kind = bucketing.KEY_KINDS[config.bucket_method]
    edges = estimate_edges(selection, config)
    token_edges = estimate_token_edges(selection, config, edges)
    rows, seg_offsets = bucketing.group_by_bucket(
        selection.rows, kind, col("duration"), col("num_frames"), col("num_features"),
        col("num_tokens"), edges, token_edges.reshape(-1), config.token_buckets,
    )  # fmt: skip
    if config.effective_shuffle:  # each bucket with its own stream
        keys = np.array(
            [
                rng.derive_key(config.seed, epoch, rng.PURPOSE_CUTS | s)
                for s in range(config.total_buckets)
            ],
            dtype=np.uint64,
        )
        rng.shuffle_segments(rows, seg_offsets, keys)
    return Groups(rows, seg_offsets, edges, token_edges)


def estimate_edges(selection: Selection, config: SamplerConfig) -> np.ndarray:
    """The interior edges of the first bucketing dimension: given, or of equal total cost."""
    if config.bucket_edges is not None:
        return np.asarray(config.bucket_edges, dtype=np.float64)
    col = selection.column
    # the duration column's bounds (known from selection) bracket every key: one pass less
    lo, hi = selection.duration_bounds if config.bucket_method == "duration" else (1.0, 0.0)
    return bucketing.estimate_edges(
        selection.rows, bucketing.KEY_KINDS[config.bucket_method], col("duration"),
        col("num_frames"), col("num_features"), col("num_tokens"), config.duration_buckets,
        lo, hi,
    )  # fmt: skip


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
    # Group once by the first dimension, then estimate each bucket's edges on a contiguous copy
    # of its tokens (one gather instead of three strided passes). The final grouping starts
    # again from the selection (index order): reading the columns through the grouped rows
    # would be a strided, cache-unfriendly pass.
    col = selection.column
    empty = np.empty(0, dtype=np.int64)
    tokens = col("num_tokens")
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
