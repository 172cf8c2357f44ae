"""Elastic resumption inside one epoch: the batches not yet delivered, dealt again to a new world.

The batches of an epoch (stages 1-3: selection, grouping, packing) do not depend on the world
size; only their order (stage 4) does. A plan after the world-size segments ``history`` (pairs
``(world_size, steps)``, oldest first) therefore keeps the epoch's batches and re-deals the ones
not delivered: segment ``i`` orders the batches that the segments before it left, for its
``world_size`` ranks, and delivers the first ``steps * world_size`` of that order (ranks move in
lockstep; tail padding repeats only batches of its own step). What is left after the last
segment (dropped ``drop_last`` batches included: they were never delivered) is ordered for the
new world by the same order stage, with its own tail padding or dropping. Packing is never
redone, so one plan of an elastic restore costs the same stages as any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from discoseq._checks import MAX_WORLD_SIZE, U64_MAX, is_int
from discoseq._core import sharding
from discoseq.plan.order import Ordered
from discoseq.plan.pack import Batches
from discoseq.plan.packrows import Packs

__all__ = ["HistoryError", "check_history", "remaining_batches", "subset_batches", "subset_packs"]

OrderFn = Callable[[Batches, int], Ordered]
"""The epoch's order stage: ``(batches, world_size) -> Ordered``."""


class HistoryError(ValueError):
    """A history segment delivers more steps than its plan has per rank.

    :param entry: the segment's place in the history.
    :param world: its world size.
    :param steps: its steps.
    :param per_rank: the batches per rank of its plan.
    """

    def __init__(self, entry: int, world: int, steps: int, per_rank: int, epoch: int) -> None:
        super().__init__(
            f"history entry [{world}, {steps}] exceeds the {per_rank} batches per rank of that "
            f"segment of epoch {epoch}"
        )
        self.entry, self.world, self.steps, self.per_rank = entry, world, steps, per_rank


def check_history(history: object, name: str = "history") -> tuple[tuple[int, int], ...]:
    """``history`` as a tuple of ``(world_size, steps)`` pairs (ValueError naming the entry;
    ``name`` says where it came from, e.g. ``"state history"``)."""
    if not isinstance(history, Sequence) or isinstance(history, str | bytes):
        raise ValueError(f"{name}={history!r} must be a sequence of (world_size, steps) pairs")
    out = []
    for item in history:
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or len(item) != 2
            or not all(is_int(v) for v in item)
            or not 1 <= item[0] <= MAX_WORLD_SIZE
            or not 1 <= item[1] <= U64_MAX
        ):
            raise ValueError(
                f"{name} entry {item!r} must be (world_size in [1, {MAX_WORLD_SIZE}], steps >= 1)"
            )
        out.append((int(item[0]), int(item[1])))
    return tuple(out)


def remaining_batches(
    batches: Batches, history: Sequence[tuple[int, int]], order: OrderFn, epoch: int
) -> np.ndarray:
    """Ids (ascending) of the batches not delivered in the ``history`` segments, each segment
    ordered by ``order`` over what the ones before it left.

    :raises HistoryError: for a segment with more steps than its plan has per rank.
    """
    keep = np.arange(batches.num_batches, dtype=np.int64)
    for entry, (world, steps) in enumerate(history):
        ordered = order(subset_batches(batches, keep, with_rows=False), world)
        per_rank = int(ordered.order.shape[0]) // world
        if steps > per_rank:
            raise HistoryError(entry, world, steps, per_rank, epoch)
        left = np.ones(keep.shape[0], dtype=bool)
        left[ordered.order[: steps * world]] = False  # padding repeats its own step's batches
        keep = keep[left]
    return keep


def subset_batches(batches: Batches, keep: np.ndarray, *, with_rows: bool = True) -> Batches:
    """The batches ``keep`` (ascending ids) of ``batches``, in that order, each segment's still
    together (segment ids unchanged). ``with_rows=False``: no rows (every batch empty), for an
    order of batch ids alone (the order stage reads only the segments)."""
    if with_rows:
        rows, offsets = sharding.gather_batches(batches.rows, batches.offsets, keep)
    else:
        rows, offsets = np.empty(0, np.int64), np.zeros(keep.shape[0] + 1, np.int64)
    return Batches(
        rows=rows,
        offsets=offsets,
        segment=batches.segment[keep],
        cost=batches.cost[keep],
        duration=batches.duration[keep],
        seg_batch_offsets=np.searchsorted(keep, batches.seg_batch_offsets).astype(np.int64),
        oversize=batches.oversize,
    )


def subset_packs(packs: Packs, keep: np.ndarray) -> Packs:
    """The packs of the batches ``keep`` (ascending ids), as :func:`subset_batches` keeps them."""
    every = np.arange(packs.num_packs, dtype=np.int64)
    ids, batch_packs = sharding.gather_batches(every, packs.batch_packs, keep)
    return Packs(packs.sizes[ids], batch_packs, packs.cost[ids], packs.length)
