"""Shard-block shuffle (``shard_block``): read locality for corpora on slow storage.

A whole-epoch plan draws every batch from the whole corpus, so a DataLoader worker's reads jump
across all shards. With ``shard_block = k`` the sources (the cut shards of a Lhotse Shar corpus,
the manifests of an index) are taken in blocks of ``k`` consecutive ones (block of a row =
``source_id // k``), MosaicML's ``py1b`` idea at the level of batches:

* grouping: each segment (bucket) is split by block, stable, so a batch holds cuts of one bucket
  *and* one block (the rows keep their shuffled order within the block);
* ordering: steps (groups of ``world_size`` batches, ordered and padded as without the option)
  are sorted by the rank of their block in a random permutation of the blocks keyed by
  ``(seed, epoch)``, stable, so the epoch visits one block at a time, its batches shuffled.

Bucket edges, caps and every cut's presence are unchanged; the cost is one more partial batch
per (bucket, block) pair, which ``discoseq analyze`` reports as the option's padding cost.
Memory: an int64 key and an argsort over the epoch's rows (16 B/cut) while grouping.
"""

from __future__ import annotations

import numpy as np

from discoseq._core import rng, sharding
from discoseq.config import SamplerConfig
from discoseq.plan.epoch_plan import EpochPlan
from discoseq.plan.group import Groups
from discoseq.plan.order import Ordered
from discoseq.plan.pack import Batches
from discoseq.plan.select import Selection
from discoseq.strategy import SamplingStrategy

__all__ = ["PURPOSE_SHARD_BLOCKS", "order_by_block", "sources_per_window", "split_by_block"]

PURPOSE_SHARD_BLOCKS = 11 << 32
"""The purpose of the block permutation: ``(seed, epoch, PURPOSE_SHARD_BLOCKS)``."""


def split_by_block(
    groups: Groups, selection: Selection, config: SamplerConfig
) -> tuple[Groups, np.ndarray]:
    """Split every segment by shard block (stable); returns the new groups and the block of
    each new segment."""
    k = config.shard_block
    assert k is not None
    nseg = groups.seg_offsets.shape[0] - 1
    block = selection.column("source_id")[groups.rows] // k
    nblocks = int(block.max()) + 1 if block.shape[0] else 1
    seg = np.repeat(np.arange(nseg, dtype=np.int64), np.diff(groups.seg_offsets))
    key = seg * nblocks + block
    order = np.argsort(key, kind="stable")
    counts = np.bincount(key, minlength=nseg * nblocks)
    used = np.flatnonzero(counts)
    offsets = np.zeros(used.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts[used], out=offsets[1:])
    old_bucket = (
        np.arange(nseg, dtype=np.int64) if groups.segment_bucket is None else groups.segment_bucket
    )
    split = Groups(
        rows=groups.rows[order],
        seg_offsets=offsets,
        bucket_edges=groups.bucket_edges,
        token_edges=groups.token_edges,
        segment_bucket=old_bucket[used // nblocks],
        segment_source=None,
    )
    return split, used % nblocks


def order_by_block(
    batches: Batches,
    segment_block: np.ndarray,
    config: SamplerConfig,
    epoch: int,
    world_size: int,
) -> Ordered:
    """The batches ordered as without blocks, then their steps sorted (stable) by their
    block's place in a keyed random permutation of the blocks; a padded last step stays last."""
    order, padding, dropped = sharding.order_batches(  # as order_batches, before the gather
        batches.seg_batch_offsets,
        world_size,
        rng.derive_key(config.seed, epoch, rng.PURPOSE_TAIL),
        rng.derive_key(config.seed, epoch, rng.PURPOSE_ORDER),
        config.strategy is SamplingStrategy.BUCKETED and config.effective_shuffle,
        config.drop_last,
    )
    if order.shape[0] == 0:
        rows, offsets = sharding.gather_batches(batches.rows, batches.offsets, order)
        return Ordered(rows, offsets, order, padding, dropped)
    steps = order.reshape(-1, world_size)
    step_block = segment_block[batches.segment[steps[:, 0]]]
    nblocks = int(segment_block.max()) + 1
    key = rng.derive_key(config.seed, epoch, PURPOSE_SHARD_BLOCKS)
    place = np.argsort(rng.raw_stream(key, nblocks), kind="stable")  # a random permutation
    rank = np.empty(nblocks, dtype=np.int64)
    rank[place] = np.arange(nblocks)
    step_rank = rank[step_block]
    keep_last = padding.shape[0] > 0
    movable = steps.shape[0] - 1 if keep_last else steps.shape[0]
    by_block = np.argsort(step_rank[:movable], kind="stable")
    if keep_last:
        by_block = np.concatenate([by_block, [steps.shape[0] - 1]])
    new_order = steps[by_block].reshape(-1)
    rows, offsets = sharding.gather_batches(batches.rows, batches.offsets, new_order)
    # the repeated batches are in the last step, which kept its place: their global ids hold
    return Ordered(rows, offsets, new_order, padding, dropped)


def sources_per_window(
    plan: EpochPlan,
    source_id: np.ndarray,
    *,
    rank: int = 0,
    worker: int = 0,
    num_workers: int = 1,
    window: int = 100,
) -> float:
    """The mean number of distinct sources (shards) that ``window`` consecutive batches of
    one DataLoader worker read, over the worker's whole windows (its batches when it has
    fewer): how many files a worker touches, the read locality ``shard_block`` improves."""
    ids = plan.worker_view(rank, worker, num_workers)
    if ids.shape[0] == 0:
        return 0.0
    counts = []
    for start in range(0, max(ids.shape[0] - window, 0) + 1, window):
        rows = np.concatenate([plan.batch(int(b)) for b in ids[start : start + window]])
        counts.append(np.unique(source_id[rows]).shape[0])
    return float(np.mean(counts))
