"""Resolution: batches of index rows become Lhotse ``CutSet`` objects, reading records ahead.

The process that resolves batches (a DataLoader worker, or the main process without workers)
reads the records of its next batches together, a *window* of at least ``buffer_size`` cuts
rounded up to whole batches, in file order (sorted by source and byte offset), and decodes each
batch when it is yielded: one forward pass over a manifest instead of a random read per cut.
:func:`read_ahead_windows` is the one rule that cuts a sequence of batches into windows; it
never changes which batches are produced or their order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from discoseq.index.multi import AnyIndex
from discoseq.packs import pack_batch
from discoseq.plan import EpochPlan

__all__ = ["read_ahead_windows", "resolve_batches"]


def read_ahead_windows(
    plan: EpochPlan, batch_ids: Sequence[int], min_cuts: int
) -> Iterator[Sequence[int]]:
    """``batch_ids`` cut into consecutive windows, each the shortest run of batches holding at
    least ``min_cuts`` cuts (the last may hold fewer); ``min_cuts=0``: one batch per window."""
    offsets = plan.batch_offsets
    start, total = 0, 0
    for k, i in enumerate(batch_ids):
        total += int(offsets[i + 1] - offsets[i])
        if total >= min_cuts:
            yield batch_ids[start : k + 1]
            start, total = k + 1, 0
    if start < len(batch_ids):
        yield batch_ids[start:]


def window_rows(plan: EpochPlan, window: Sequence[int]) -> np.ndarray:
    """The rows of the batches of ``window``, concatenated."""
    return np.concatenate([plan.batch(i) for i in window])


def resolve_batches(
    index: AnyIndex, plan: EpochPlan, batch_ids: Sequence[int], buffer_size: int
) -> Iterator[Any]:
    """The ``CutSet`` of each batch of ``batch_ids`` in order, reading records a window ahead
    (``buffer_size`` cuts; 0 reads batch by batch); a plan with packs yields ``CutSet``s of
    packs (:func:`~discoseq.packs.pack_batch`)."""
    for window in read_ahead_windows(plan, batch_ids, buffer_size):
        if buffer_size == 0:
            yield pack_batch(plan, window[0], index.resolve(plan.batch(window[0])))
            continue
        records = index.records_in_file_order(window_rows(plan, window))
        for i in window:
            yield pack_batch(plan, i, index.resolve(plan.batch(i), records))
