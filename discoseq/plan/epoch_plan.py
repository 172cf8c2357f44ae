"""``EpochPlan`` (every batch of one epoch, as read-only flat arrays) and ``PlanStats``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from discoseq._checks import is_int
from discoseq.config import SamplerConfig

__all__ = ["EpochPlan", "PlanStats"]


@dataclass(frozen=True)
class PlanStats:
    """What happened to the cuts of an epoch.

    :param cuts_in: rows in the columns.
    :param filtered: rows removed by each filter (first reason that applies), see FILTER_REASONS.
    :param oversize: cuts that alone exceed a cap.
    :param oversize_policy: ``"single"`` (each got a batch of its own) or ``"exclude"`` (left out).
    :param dropped_batches: batches dropped by ``drop_last``.
    :param dropped_cuts: cuts in those batches.
    :param cuts_planned: distinct cuts in the plan (each appears once, plus padding repeats).
    :param total_duration: seconds of the distinct cuts in the plan.
    :param sources: for a mixture, one :class:`~discoseq.plan.quota.SourceStats` per source
        (the quota asked, what was selected, and what the plan holds after drop/pad).
    :param packs: with ``pack_duration``/``pack_tokens``, the packs of the planned batches
        (distinct: tail repeats not counted, dropped batches left out); 0 without packing.
    :param pack_efficiency: their real cost (seconds or tokens) / (packs x the pack length),
        over the packs within the length (not the packs of one oversize cut); None without
        packing, NaN with no pack.
    """

    cuts_in: int
    filtered: Mapping[str, int]
    oversize: int
    oversize_policy: str
    dropped_batches: int
    dropped_cuts: int
    cuts_planned: int
    total_duration: float
    sources: tuple[Any, ...] = ()
    packs: int = 0
    pack_efficiency: float | None = None

    @property
    def filtered_total(self) -> int:
        return sum(self.filtered.values())

    @property
    def oversize_single(self) -> int:
        return self.oversize if self.oversize_policy == "single" else 0

    @property
    def oversize_excluded(self) -> int:
        return self.oversize if self.oversize_policy == "exclude" else 0


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """Every batch of one epoch for every rank, as read-only flat arrays.

    Batch ``i`` is ``rows[batch_offsets[i]:batch_offsets[i + 1]]``; global batch ``s * W + r`` is
    step ``s`` of rank ``r``. ``bucket``, ``cost`` (the batch's duration cost under ``limit_mode``)
    and ``duration`` (sum of its cuts' durations) are per batch. ``padding_batches`` lists the
    global ids of the batches that repeat another batch (``num_padding < world_size`` of them).
    ``config`` is the configuration that planned it (its loader fields play no part).
    For a mixture, ``rows`` are index rows of the sources' logical index (a cut the epoch
    takes twice appears twice, never in one batch), and ``selection_size`` the number of
    positions of the epoch's selection (what ``plan_epoch``'s ``mask`` is over); without one,
    ``selection_size`` is the number of index rows.
    With ``pack_duration``/``pack_tokens``, ``pack_offsets`` cuts ``rows`` into packs (pack
    ``k`` is ``rows[pack_offsets[k]:pack_offsets[k + 1]]``; every batch is whole packs, see
    :meth:`pack_bounds`); None without packing.
    """

    batch_offsets: np.ndarray
    rows: np.ndarray
    bucket: np.ndarray
    cost: np.ndarray
    duration: np.ndarray
    padding_batches: np.ndarray
    world_size: int
    epoch: int
    config: SamplerConfig
    bucket_edges: np.ndarray
    token_edges: np.ndarray
    stats: PlanStats
    selection_size: int = 0
    pack_offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("batch_offsets", "rows", "bucket", "cost", "duration", "padding_batches",
                     "bucket_edges", "token_edges", "pack_offsets"):  # fmt: skip
            if getattr(self, name) is not None:
                getattr(self, name).flags.writeable = False

    @property
    def num_batches(self) -> int:
        """Global number of batches (a multiple of world_size), padding included."""
        return int(self.batch_offsets.shape[0] - 1)

    @property
    def batches_per_rank(self) -> int:
        """Exactly how many batches every rank gets this epoch."""
        return self.num_batches // self.world_size

    @property
    def num_padding(self) -> int:
        """Number of batches that are repeats (added so every rank has as many batches)."""
        return int(self.padding_batches.shape[0])

    def __len__(self) -> int:
        return self.num_batches

    def rank_view(self, rank: int) -> np.ndarray:
        """Global batch ids of rank ``rank`` in order (``rank, rank + W, ...``)."""
        if not is_int(rank) or not 0 <= rank < self.world_size:
            raise ValueError(f"rank={rank!r} must be an integer in [0, {self.world_size})")
        return np.arange(rank, self.num_batches, self.world_size, dtype=np.int64)

    def worker_view(self, rank: int, worker: int, num_workers: int) -> np.ndarray:
        """Global batch ids of DataLoader worker ``worker`` of ``num_workers`` on ``rank``: the
        rank's batches ``worker, worker + K, ...`` (PyTorch's round-robin over workers then
        yields exactly the rank's order)."""
        check_worker(worker, num_workers)
        return self.rank_view(rank)[worker::num_workers]

    def batch(self, i: int) -> np.ndarray:
        """Row ids of global batch ``i`` (a read-only view)."""
        n = self.num_batches
        if not is_int(i) or not -n <= i < n:
            raise IndexError(f"batch {i!r} out of range for a plan of {n} batches")
        i = int(i) % n
        return self.rows[self.batch_offsets[i] : self.batch_offsets[i + 1]]

    @property
    def num_packs(self) -> int:
        """Packs in the plan (repeats included); 0 without packing."""
        return 0 if self.pack_offsets is None else int(self.pack_offsets.shape[0] - 1)

    def pack_bounds(self, i: int) -> np.ndarray:
        """The packs of global batch ``i`` as offsets into :meth:`batch` (``[0, ..., len]``:
        pack ``k`` is ``batch(i)[b[k]:b[k + 1]]``); ValueError without packing."""
        if self.pack_offsets is None:
            raise ValueError("pack_bounds: this plan has no packs (set pack_duration/pack_tokens)")
        n = self.num_batches
        if not is_int(i) or not -n <= i < n:
            raise IndexError(f"batch {i!r} out of range for a plan of {n} batches")
        i = int(i) % n
        lo, hi = int(self.batch_offsets[i]), int(self.batch_offsets[i + 1])
        a, b = np.searchsorted(self.pack_offsets, [lo, hi])
        return self.pack_offsets[a : b + 1] - lo

    def batch_sizes(self) -> np.ndarray:
        """Number of cuts of every batch."""
        return np.diff(self.batch_offsets)

    def iter_batches(
        self, rank: int = 0, worker: int = 0, num_workers: int = 1
    ) -> Iterator[np.ndarray]:
        """The row arrays of one worker of one rank, in order."""
        for i in self.worker_view(rank, worker, num_workers):
            yield self.batch(int(i))


def check_worker(worker: int, num_workers: int) -> None:
    """``worker`` of ``num_workers`` names a DataLoader worker (ValueError otherwise)."""
    if not is_int(num_workers) or num_workers < 1:
        raise ValueError(f"num_workers={num_workers!r} must be a positive integer")
    if not is_int(worker) or not 0 <= worker < num_workers:
        raise ValueError(f"worker={worker!r} must be an integer in [0, {num_workers})")
