"""Stage 3 with ``pack_duration`` / ``pack_tokens``: cuts bin-packed into fixed-length *packs*
(rows of a padding-free, ``cu_seqlens`` batch), then packs packed into batches.

Per segment (the whole shuffled epoch for RANDOM, source order for SEQUENTIAL, one segment per
source with ``mix_batches="per_source"``), the cuts are packed best-fit-decreasing into packs of
at most ``L`` (seconds or tokens; :func:`~discoseq._core.binpack.best_fit_decreasing`), planned
for the whole epoch at once. The packs are then shuffled (keyed by ``(seed, epoch)``; not for
SEQUENTIAL) so the order of the epoch stays random, each pack keeps its cuts in their shuffled
order, and the packs are packed greedily into batches under the batch caps: ``max_cuts`` counts
packs, ``max_duration`` / ``max_tokens`` cap packs x the longest pack (``limit_mode="sum"``: the
sum of the packs' costs).

Costs in the kernel are integers: tokens exactly (up to ``MAX_CAPACITY`` tokens a pack; beyond,
in units of ``ceil(L / MAX_CAPACITY)`` tokens, rounded up), durations in units of 1 ms (or
coarser for packs over ``MAX_CAPACITY`` units), a cut counting one unit more than its floor, so
a pack's real cost never exceeds ``L``. A cut whose cost alone exceeds ``L`` is *oversize*: a
pack of its own (``oversize="single"``) or left out (``"exclude"``); counted either way.

Copies of a cut that a mixture takes more than once are kept apart as without packing: a pack
holding a copy is passed over for the next best fit, and a pack holding a copy of a cut already
in the open batch closes that batch (:func:`~discoseq._core.binpack.pack_batches`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discoseq._core import binpack, rng, sharding
from discoseq.config import SamplerConfig
from discoseq.plan.group import Groups
from discoseq.plan.pack import Batches, segment_caps, token_costs_of
from discoseq.plan.select import Selection

__all__ = ["PURPOSE_PACKS", "Packs", "pack_rows", "pack_units", "packed_offsets"]

PURPOSE_PACKS = 9 << 32
"""The purpose of the pack shuffle: segment ``s`` uses ``(seed, epoch, PURPOSE_PACKS | s)``."""

DURATION_UNITS_PER_SECOND = 1000.0
"""The duration resolution of the bin packing (1 ms: a cut counts at most 1 ms more than it
lasts), unless the pack length needs coarser."""


@dataclass
class Packs:
    """The packs of :class:`~discoseq.plan.pack.Batches` built by :func:`pack_rows`.

    :param sizes: cuts of each pack, in the order of the batches' rows.
    :param batch_packs: CSR of packs per batch (``num_batches + 1``).
    :param cost: each pack's cost (seconds or tokens: the sum of its cuts' costs).
    :param length: the pack length ``L`` (``pack_duration`` or ``pack_tokens``).
    """

    sizes: np.ndarray
    batch_packs: np.ndarray
    cost: np.ndarray
    length: float

    @property
    def num_packs(self) -> int:
        return int(self.sizes.shape[0])


def cut_costs(selection: Selection, config: SamplerConfig) -> np.ndarray:
    """Each row's pack cost: its duration, or its token cost (the rule of
    :func:`~discoseq.plan.pack.token_costs_of`)."""
    duration = selection.column("duration")
    if config.pack_tokens is None:
        return duration
    text = selection.column("num_tokens")
    if config.audio_tokens_per_second is None and text.shape[0] and text.max() < 0:
        raise ValueError(
            f"pack_tokens={config.pack_tokens} has no token source: the column "
            f"{config.token_column!r} holds no text for any cut and audio_tokens_per_second is "
            "not set"
        )
    return token_costs_of(text, duration, config)


def pack_units(cost: np.ndarray, length: float, integer: bool) -> tuple[np.ndarray, int]:
    """Integer costs for the bin-packing kernel and the pack capacity in the same units, such
    that a pack of units within the capacity holds at most ``length`` of real cost (see the
    module docstring and :func:`~discoseq._core.binpack.cost_units`). Costs above ``length``
    come out above the capacity."""
    return binpack.cost_units(
        np.ascontiguousarray(cost, dtype=np.float64), float(length), integer,
        DURATION_UNITS_PER_SECOND,
    )  # fmt: skip


def pack_rows(
    groups: Groups, selection: Selection, config: SamplerConfig, epoch: int = 0
) -> tuple[Batches, Packs]:
    """Pack the segments of ``groups`` into packs and the packs into batches (see the module
    docstring). ``Batches.rows`` holds the cuts pack after pack; ``Batches.oversize`` counts
    cuts above ``L``."""
    name, length = config.packing
    assert name is not None, "pack_rows needs pack_duration or pack_tokens"
    rows, seg_offsets = groups.rows, groups.seg_offsets
    nseg = seg_offsets.shape[0] - 1
    integer = config.pack_tokens is not None
    duration = selection.column("duration")
    column = np.ascontiguousarray(cut_costs(selection, config), dtype=np.float64)
    # one pass: each row's cost in plan order and in the kernel's units
    units, capacity, cost = binpack.cost_units(
        column, float(length), integer, DURATION_UNITS_PER_SECOND, rows
    )
    dur = duration[rows] if integer else cost
    over = units > capacity
    n_over = int(over.sum())
    if n_over and config.oversize == "exclude":
        seg_of = np.repeat(np.arange(nseg, dtype=np.int64), np.diff(seg_offsets))
        keep = ~over
        rows, dur, cost, units = rows[keep], dur[keep], cost[keep], units[keep]
        seg_offsets = np.zeros(nseg + 1, dtype=np.int64)
        np.cumsum(np.bincount(seg_of[keep], minlength=nseg), out=seg_offsets[1:])
    blocks = selection.blocks
    # a mixture taking cuts more than once: a row is its cut's identity (copies are equal rows)
    repeats = blocks is not None and blocks.num_rounds > 1
    pack_of, seg_packs, sizes, bin_cost, bin_dur = binpack.best_fit_decreasing(
        seg_offsets, units, capacity, cost, dur,
        identity=rows if repeats else None, num_ids=selection.cuts_in,
    )  # fmt: skip
    num_packs = int(seg_packs[-1])
    order = np.arange(num_packs, dtype=np.int64)  # the pack at each place
    if config.effective_shuffle:
        keys = np.array(
            [rng.derive_key(config.seed, epoch, PURPOSE_PACKS | s) for s in range(nseg)],
            dtype=np.uint64,
        )
        rng.shuffle_segments(order, seg_packs, keys)
    packed, pack_offsets, pack_cost, pack_dur = binpack.group_packs(
        rows, pack_of, order, sizes, bin_cost, bin_dur
    )
    # the packs into batches: one "row" per pack, the batch caps on packs
    if groups.segment_bucket is None:
        cap_d, cap_c = segment_caps(config, nseg)
    else:
        cap_d, cap_c = segment_caps(config, config.total_buckets)
        cap_d, cap_c = cap_d[groups.segment_bucket], cap_c[groups.segment_bucket]
    tokens = None
    if config.max_tokens is not None:
        tokens = np.ascontiguousarray(pack_cost.astype(np.int64))
    batch_packs, segment, bcost, bdur, seg_batches = binpack.pack_batches(
        seg_packs, pack_dur, cap_d, cap_c, config.limit_mode == "sum",
        pack_tokens=tokens, max_tokens=config.max_tokens,
        pack_offsets=pack_offsets if repeats else None,
        member_ids=packed if repeats else None,
        num_ids=selection.cuts_in,
    )  # fmt: skip
    batches = Batches(
        rows=packed,
        offsets=pack_offsets[batch_packs],
        segment=segment,
        cost=bcost,
        duration=bdur,
        seg_batch_offsets=seg_batches,
        oversize=n_over,
    )
    packs = Packs(np.diff(pack_offsets), batch_packs, pack_cost, length)
    return batches, packs


def packed_offsets(packs: Packs, order: np.ndarray) -> np.ndarray:
    """The pack offsets into the plan's rows once the batches are in global ``order`` (the
    order stage's gather, applied to pack sizes)."""
    sizes, _ = sharding.gather_batches(packs.sizes, packs.batch_packs, order)
    offsets = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def pack_efficiency(packs: Packs, planned_batches: np.ndarray) -> tuple[int, float]:
    """``(packs, efficiency)`` of the batches marked in ``planned_batches`` (a boolean per
    packed batch): efficiency = the packs' real cost / (packs x ``L``), over the packs within
    ``L`` (a pack of one oversize cut is counted as oversize, not here)."""
    mask = np.repeat(planned_batches, np.diff(packs.batch_packs))
    n = int(mask.sum())
    mask &= packs.cost <= packs.length
    within = int(mask.sum())
    if within == 0:
        return n, float("nan")
    return n, float(packs.cost[mask].sum() / (within * packs.length))
