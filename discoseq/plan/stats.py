"""Stage 5, statistics: what happened to the cuts of an epoch (:class:`PlanStats`), and the
warnings for an epoch that came out empty."""

from __future__ import annotations

import warnings

import numpy as np

from discoseq.config import SamplerConfig
from discoseq.plan.epoch_plan import PlanStats
from discoseq.plan.order import Ordered
from discoseq.plan.pack import Batches
from discoseq.plan.select import Selection

__all__ = ["empty_stats", "plan_stats", "warn_if_empty"]


def plan_stats(
    selection: Selection, batches: Batches, ordered: Ordered, config: SamplerConfig
) -> PlanStats:
    """Counts of the planned, filtered, oversize and dropped cuts."""
    planned = np.ones(batches.num_batches, dtype=bool)
    planned[ordered.dropped] = False
    sizes = np.diff(batches.offsets)
    dropped_cuts = int(sizes[ordered.dropped].sum())
    return PlanStats(
        cuts_in=selection.cuts_in,
        filtered=selection.filtered,
        oversize=batches.oversize,
        oversize_policy=config.oversize,
        dropped_batches=int(ordered.dropped.shape[0]),
        dropped_cuts=dropped_cuts,
        cuts_planned=int(batches.rows.shape[0]) - dropped_cuts,
        total_duration=float(batches.duration[planned].sum()),
    )


def empty_stats(selection: Selection, config: SamplerConfig) -> PlanStats:
    """The statistics of an epoch whose filters left no row."""
    return PlanStats(selection.cuts_in, selection.filtered, 0, config.oversize, 0, 0, 0, 0.0)


def warn_if_empty(
    selection: Selection, batches: Batches | None, config: SamplerConfig, world_size: int
) -> None:
    """Warn (RuntimeWarning, at the caller of ``plan_epoch``) when the epoch plan is empty."""
    if batches is None:
        message = (
            f"plan_epoch: no cuts to plan ({selection.cuts_in} in, "
            f"{sum(selection.filtered.values())} filtered out); the epoch plan is empty"
        )
    elif config.drop_last and 0 < batches.num_batches < world_size:
        message = (
            f"plan_epoch: only {batches.num_batches} batches for world_size={world_size} with "
            "drop_last=True: all are dropped and the epoch plan is empty"
        )
    elif batches.num_batches == 0:
        message = "plan_epoch: every cut was excluded as oversize; the epoch plan is empty"
    else:
        return
    warnings.warn(message, RuntimeWarning, stacklevel=3)
