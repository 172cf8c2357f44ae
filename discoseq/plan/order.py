"""Stage 4, order and shard: the global batch order, so global batch ``s * W + r`` is step ``s``
of rank ``r``.

Groups of ``world_size`` batches from one segment, leftovers of all segments combined into mixed
groups of neighbouring segments, the last partial group dropped (``drop_last``) or padded with
repeats and kept as the last step (repeats come only at the epoch's tail); the other groups
shuffled (BUCKETED with shuffle). A ``per_source`` mixture then interleaves its steps by source
(:func:`interleave_steps`). Worker ``k`` of ``K`` then takes a rank's batches
``k, k + K, ...``. Memory: the gathered row array (8 B/cut) replaces the packed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discoseq._core import rng, sharding
from discoseq.config import SamplerConfig
from discoseq.plan import scratch
from discoseq.plan.pack import Batches
from discoseq.strategy import SamplingStrategy

__all__ = ["Ordered", "interleave_steps", "order_batches"]

PURPOSE_INTERLEAVE = 5 << 32


@dataclass
class Ordered:
    """The batches in global order.

    :param rows: CSR rows in global order (repeats included).
    :param offsets: CSR offsets (``num_batches + 1``).
    :param order: for each global batch, its index among the packed batches.
    :param padding: global ids of the batches that repeat another.
    :param dropped: packed batches left out by ``drop_last``.
    """

    rows: np.ndarray
    offsets: np.ndarray
    order: np.ndarray
    padding: np.ndarray
    dropped: np.ndarray


def order_batches(
    batches: Batches,
    config: SamplerConfig,
    epoch: int,
    world_size: int,
    segment_source: np.ndarray | None = None,
    into: np.ndarray | None = None,
) -> Ordered:
    """Order, pad or drop, and gather ``batches`` for ``world_size`` ranks (with
    ``segment_source``, a ``per_source`` mixture: steps interleaved by source). ``into``: a
    buffer nothing else uses that the gathered rows take when they fit in it and need at least
    half of it (a plan of few rows does not keep a large buffer alive)."""
    shuffle = config.strategy is SamplingStrategy.BUCKETED and config.effective_shuffle
    order, padding, dropped = sharding.order_batches(
        batches.seg_batch_offsets,
        world_size,
        rng.derive_key(config.seed, epoch, rng.PURPOSE_TAIL),
        rng.derive_key(config.seed, epoch, rng.PURPOSE_ORDER),
        shuffle,
        config.drop_last,
    )
    if segment_source is not None and order.shape[0]:
        step_source = segment_source[batches.segment[order[::world_size]]]
        key = rng.derive_key(config.seed, epoch, PURPOSE_INTERLEAVE)
        steps = interleave_steps(step_source, key, keep_last=padding.shape[0] > 0)
        order = order.reshape(-1, world_size)[steps].reshape(-1)

    # the plan's rows: in ``into``, else memory of an earlier plan nothing refers to any more,
    # when there is one
    def alloc(n: int) -> np.ndarray:
        if into is not None and scratch.fits(8 * n, into.nbytes):
            return into.reshape(-1).view(np.uint8)[: 8 * n].view(np.int64)
        return scratch.lend(n, np.int64)

    rows, offsets = sharding.gather_batches(batches.rows, batches.offsets, order, alloc)
    return Ordered(rows, offsets, order, padding, dropped)


def interleave_steps(step_source: np.ndarray, key: int, keep_last: bool) -> np.ndarray:
    """A step order that spreads each source's steps evenly over the epoch: the ``k``-th of
    a source's ``n`` steps is due at ``(k + u) / n`` (``u`` uniform in [0, 1) per step, keyed),
    steps sorted by due time (stable), so after any prefix of the epoch each source has had
    its share of steps within one. ``keep_last``: the last step (tail padding) stays last."""
    num = step_source.shape[0]
    movable = num - 1 if keep_last else num
    src = step_source[:movable].astype(np.int64)
    u = rng.raw_stream(key, movable).astype(np.float64) / 2.0**64
    rank = np.zeros(movable, dtype=np.float64)
    due = np.empty(movable, dtype=np.float64)
    for s in np.unique(src).tolist():
        at = np.flatnonzero(src == s)
        rank[at] = np.arange(at.shape[0])
        due[at] = (rank[at] + u[at]) / at.shape[0]
    steps = np.argsort(due, kind="stable")
    if keep_last:
        steps = np.concatenate([steps, [num - 1]])
    return steps.astype(np.int64)
