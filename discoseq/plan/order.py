"""Stage 4, order and shard: the global batch order, so global batch ``s * W + r`` is step ``s``
of rank ``r``.

Groups of ``world_size`` batches from one segment, leftovers of all segments combined into mixed
groups of neighbouring segments, the last partial group dropped (``drop_last``) or padded with
repeats and kept as the last step (repeats come only at the epoch's tail); the other groups
shuffled (BUCKETED with shuffle). Worker ``k`` of ``K`` then takes a rank's batches
``k, k + K, ...``. Memory: the gathered row array (8 B/cut) replaces the packed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discoseq._core import rng, sharding
from discoseq.config import SamplerConfig
from discoseq.plan.pack import Batches
from discoseq.strategy import SamplingStrategy

__all__ = ["Ordered", "order_batches"]


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


def order_batches(batches: Batches, config: SamplerConfig, epoch: int, world_size: int) -> Ordered:
    """Order, pad or drop, and gather ``batches`` for ``world_size`` ranks."""
    shuffle = config.strategy is SamplingStrategy.BUCKETED and config.effective_shuffle
    order, padding, dropped = sharding.order_batches(
        batches.seg_batch_offsets,
        world_size,
        rng.derive_key(config.seed, epoch, rng.PURPOSE_TAIL),
        rng.derive_key(config.seed, epoch, rng.PURPOSE_ORDER),
        shuffle,
        config.drop_last,
    )
    rows, offsets = sharding.gather_batches(batches.rows, batches.offsets, order)
    return Ordered(rows, offsets, order, padding, dropped)
