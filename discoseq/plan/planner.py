"""``plan_epoch``: the stages of :mod:`discoseq.plan` chained into one epoch plan.

Memory: besides the index columns, a boolean mask (1 B/cut, only with filters) and two int64 row
arrays at the peak (16 B/cut); the finished plan keeps one (8 B/cut; for a shard corpus, in the
memory of its duration copy, up to twice the rows it holds) plus small per-batch arrays.
A mixture also holds its selection's rows (8 B per cut taken) until its plan is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from discoseq._checks import U64_MAX, is_int
from discoseq.config import SamplerConfig
from discoseq.plan import scratch
from discoseq.plan.epoch_plan import EpochPlan
from discoseq.plan.group import empty_edges, group_rows
from discoseq.plan.order import Ordered, order_batches
from discoseq.plan.pack import Batches, pack_batches
from discoseq.plan.packrows import Packs, pack_rows, packed_offsets
from discoseq.plan.quota import SourceLayout
from discoseq.plan.redeal import (
    HistoryError,
    check_history,
    remaining_batches,
    subset_batches,
    subset_packs,
)
from discoseq.plan.select import filters_rows, select_rows
from discoseq.plan.shardblock import order_by_block, split_by_block
from discoseq.plan.stats import empty_stats, plan_stats, warn_if_empty
from discoseq.strategy import SamplingStrategy

__all__ = ["plan_epoch"]


def plan_epoch(
    columns: Mapping[str, np.ndarray],
    config: SamplerConfig,
    epoch: int,
    world_size: int,
    *,
    mask: np.ndarray | None = None,
    sources: SourceLayout | None = None,
    history: Sequence[tuple[int, int]] = (),
) -> EpochPlan:
    """Plan one epoch: select → group → pack → order/shard → statistics.

    :param columns: index columns (``duration`` always; ``num_frames``, ``num_features``,
        ``num_tokens`` when the configuration needs them); may be read-only memmaps.
    :param config: the :class:`~discoseq.SamplerConfig` (its loader fields play no part).
    :param epoch: epoch number (an integer in ``[0, 2**64)``), part of every random key.
    :param world_size: number of ranks ``W``; every rank gets ``num_batches / W`` batches.
    :param mask: optional boolean array, False for rows to leave out (counted as ``"mask"``);
        for a mixture, over the positions of the epoch's selection (its rows, source by source,
        see :class:`~discoseq.plan.quota.EpochSelection`; ``EpochPlan.selection_size`` of
        them). Kept out of the configuration so it stays small and hashable.
    :param sources: the named sources of a mixture as row ranges of the columns (the
        :class:`~discoseq.plan.quota.SourceLayout`); the config's mixture options apply. A
        layout with ``identities`` (``SourceLayout.of(index)``) goes with that index's own
        columns (``index.columns``).
    :param history: ``(world_size, steps)`` segments of the epoch already delivered in other
        world sizes, oldest first (elastic resumption, :mod:`discoseq.plan.redeal`): the plan
        then holds only the batches they left, ordered for ``world_size`` ranks, and counts
        the cuts they delivered as ``"mask"`` (``oversize`` stays the epoch's count). Memory:
        the epoch's rows and a copy of those left while copying, then as without it.
    :return: the :class:`~discoseq.plan.EpochPlan`.
    """
    if not isinstance(config, SamplerConfig):
        raise TypeError(f"config must be a SamplerConfig, got {type(config).__name__}")
    if not is_int(epoch) or not 0 <= epoch <= U64_MAX:
        raise ValueError(f"epoch={epoch!r} must be an integer in [0, 2**64)")
    if not is_int(world_size) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive integer")
    epoch, world_size = int(epoch), int(world_size)
    history = check_history(history)

    try:
        rows = _num_rows(columns)
        if (
            rows is not None
            and sources is None
            and config.strategy is SamplingStrategy.BUCKETED
            and not filters_rows(config, mask)
        ):
            scratch.reserve(rows, np.int64)  # the grouped rows, made while the columns are read
        return _plan_epoch(columns, config, epoch, world_size, mask, sources, history)
    finally:
        scratch.cancel_reserve()


def _num_rows(columns: Mapping[str, np.ndarray]) -> int | None:
    """The rows of the columns, when known without building one (a MultiIndex's are
    concatenated when read)."""
    n = getattr(columns, "num_rows", None)
    if isinstance(n, int):
        return n
    if isinstance(columns, dict) and isinstance(columns.get("duration"), np.ndarray):
        return int(columns["duration"].shape[0])
    return None


def _plan_epoch(
    columns: Mapping[str, np.ndarray],
    config: SamplerConfig,
    epoch: int,
    world_size: int,
    mask: np.ndarray | None,
    sources: SourceLayout | None,
    history: tuple[tuple[int, int], ...],
) -> EpochPlan:
    selection = select_rows(columns, config, mask, epoch, sources)
    if selection.num_rows == 0:
        if history:  # no batch: no step of a segment can have been delivered
            world, steps = history[0]
            raise HistoryError(0, world, steps, 0, epoch)
        warn_if_empty(selection, None, config, world_size)
        edges, token_edges = empty_edges(config)
        empty = np.empty(0, dtype=np.int64)
        return EpochPlan(
            batch_offsets=np.zeros(1, np.int64),
            rows=empty,
            bucket=np.empty(0, np.int32),
            cost=np.empty(0),
            duration=np.empty(0),
            padding_batches=empty.copy(),
            world_size=world_size,
            epoch=epoch,
            config=config,
            bucket_edges=edges,
            token_edges=token_edges,
            stats=empty_stats(selection, config),
            selection_size=selection.num_positions,
            pack_offsets=None if config.packing[0] is None else np.zeros(1, np.int64),
        )
    groups = group_rows(selection, config, epoch)
    scratch.cancel_reserve()  # taken by the grouping, or not needed (most rows filtered out)
    segment_block = None
    if config.shard_block is not None:  # read locality: batches within blocks of shards
        if sources is not None:
            raise ValueError(
                f"shard_block={config.shard_block} applies to one corpus, not to a mixture"
            )
        groups, segment_block = split_by_block(groups, selection, config)
    packs: Packs | None = None
    if config.packing[0] is None:
        batches = pack_batches(groups, selection, config, epoch)
    else:  # pack_duration / pack_tokens: cuts into packs, packs into batches
        batches, packs = pack_rows(groups, selection, config, epoch)
    # the grouped rows are read no more (the batches' rows may be a view of them): drop this
    # reference, so that an elastic plan frees the epoch's rows once it has copied those left
    grouped: np.ndarray | None = groups.rows
    groups = dataclasses.replace(groups, rows=np.empty(0, dtype=np.int64))

    def order(batches: Batches, world: int, into: np.ndarray | None = None) -> Ordered:
        if segment_block is None:
            return order_batches(batches, config, epoch, world, groups.segment_source, into)
        return order_by_block(batches, segment_block, config, epoch, world)

    delivered = 0
    if history:  # elastic: the batches the segments left, dealt to this world
        keep = remaining_batches(batches, history, order, epoch)
        delivered = int(batches.rows.shape[0]) - int(np.diff(batches.offsets)[keep].sum())
        grouped = None  # freed with the batches that held them (not kept: peak memory)
        batches = subset_batches(batches, keep)
        packs = None if packs is None else subset_packs(packs, keep)
    # one corpus: the durations are read no more (a mixture's statistics read them); a copy
    # of them made for this plan alone (a MultiIndex's) takes the plan's rows instead of fresh
    # memory, when they need most of it
    spare = None if selection.is_mixture else selection.take_duration_buffer()
    ordered = order(batches, world_size, spare)
    del spare
    stats = plan_stats(selection, batches, ordered, config, packs)
    # the grouped rows, gathered into the plan's order and counted: the next plan groups into
    # them instead of fresh memory (the plan holds none of them)
    scratch.give_back(grouped)
    if delivered:
        filtered = {**stats.filtered, "mask": stats.filtered.get("mask", 0) + delivered}
        stats = dataclasses.replace(stats, filtered=filtered)
    if not history or batches.num_batches:  # all delivered: an empty rest is expected
        warn_if_empty(selection, batches, config, world_size)
    segment = batches.segment[ordered.order]
    bucket = segment if groups.segment_bucket is None else groups.segment_bucket[segment]
    if selection.is_mixture:  # the selection's rows and durations: the next plan reuses them
        owned = selection.columns["duration"] if selection.owns_duration else None
        scratch.give_back(selection.rows, owned)
    return EpochPlan(
        batch_offsets=ordered.offsets,
        rows=ordered.rows,
        bucket=bucket.astype(np.int32, copy=False),
        cost=batches.cost[ordered.order],
        duration=batches.duration[ordered.order],
        padding_batches=ordered.padding,
        world_size=world_size,
        epoch=epoch,
        config=config,
        bucket_edges=groups.bucket_edges,
        token_edges=groups.token_edges,
        stats=stats,
        selection_size=selection.num_positions,
        pack_offsets=None if packs is None else packed_offsets(packs, ordered.order),
    )
