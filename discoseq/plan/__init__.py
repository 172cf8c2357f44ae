"""Epoch plans: the whole epoch for every rank, computed by the compiled engine in stages.

:func:`plan_epoch` turns index columns, a :class:`~discoseq.SamplerConfig` and ``(seed, epoch)``
into an :class:`EpochPlan`: every batch of the epoch for every rank, as flat CSR arrays. Every
rank computes the same global plan (the rank never enters the randomness) and takes its share.

The stages, one module each, in data-flow order (each one's exact rule is in its kernel's
docstring and in its twin in ``tests/reference_plan.py``):

1. :mod:`~discoseq.plan.select` — the rows of the epoch: columns checked, filters applied;
   for a mixture, :mod:`~discoseq.plan.quota` then takes each source's exact quota from its
   stream (the epoch's selection: a multiset of rows, planned as one corpus's rows).
2. :mod:`~discoseq.plan.group` — bucket edges (estimated or given, 1D or 2D) and rows grouped
   into segments (buckets), each shuffled with its own stream.
3. :mod:`~discoseq.plan.pack` — optional sort within pools, then greedy packing under every cap.
4. :mod:`~discoseq.plan.order` — batch order, tail padding or dropping, and the CSR gather that
   makes global batch ``s * W + r`` step ``s`` of rank ``r``.
5. :mod:`~discoseq.plan.stats` — what happened to the cuts (:class:`PlanStats`).

With ``shard_block``, :mod:`~discoseq.plan.shardblock` splits stage 2's segments by blocks of
sources and takes stage 4's place (the same order, then steps sorted by block). With a
``history`` of world-size changes (elastic resumption), :mod:`~discoseq.plan.redeal` keeps stage
3's batches that were not delivered and stage 4 orders only those.

:mod:`~discoseq.plan.planner` chains them; :mod:`~discoseq.plan.epoch_plan` holds the result.
"""

from discoseq.plan.epoch_plan import EpochPlan, PlanStats
from discoseq.plan.planner import plan_epoch
from discoseq.plan.quota import SourceLayout, SourceStats
from discoseq.plan.select import FILTER_REASONS

__all__ = ["FILTER_REASONS", "EpochPlan", "PlanStats", "SourceLayout", "SourceStats", "plan_epoch"]
