"""Stage 5, statistics: what happened to the cuts of an epoch (:class:`PlanStats`), and the
warnings for an epoch that came out empty."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from discoseq._core import sources
from discoseq.config import SamplerConfig
from discoseq.plan.epoch_plan import PlanStats
from discoseq.plan.order import Ordered
from discoseq.plan.pack import Batches
from discoseq.plan.packrows import Packs, pack_efficiency
from discoseq.plan.select import Selection

__all__ = ["empty_stats", "plan_stats", "warn_if_empty"]


def plan_stats(
    selection: Selection,
    batches: Batches,
    ordered: Ordered,
    config: SamplerConfig,
    packs: Packs | None = None,
) -> PlanStats:
    """Counts of the planned, filtered, oversize and dropped cuts (and, with ``packs``, the
    planned packs and their efficiency)."""
    planned = np.ones(batches.num_batches, dtype=bool)
    planned[ordered.dropped] = False
    num_packs, efficiency = (0, None) if packs is None else pack_efficiency(packs, planned)
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
        sources=_source_stats(selection, batches, ordered),
        packs=num_packs,
        pack_efficiency=efficiency,
    )


def _source_stats(selection: Selection, batches: Batches, ordered: Ordered) -> tuple[Any, ...]:
    """Each mixture source's planned, padding and dropped cuts (empty without a mixture)."""
    if selection.source_offsets is None:
        return ()
    num = len(selection.sources)
    dur = selection.columns["duration"]
    # source s holds index rows [offsets[s], offsets[s + 1])
    ends = np.ascontiguousarray(selection.source_offsets[1:], dtype=np.int64)

    def source_of(rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(ends, rows, side="right")

    planned: np.ndarray
    hours: np.ndarray
    if batches.rows.shape[0] == selection.selection_size:  # every selected cut packed
        planned = np.array([s.selected for s in selection.sources], dtype=np.int64)
        hours = np.array([s.selected_hours * 3600.0 for s in selection.sources])
    else:  # some were excluded (oversize) or masked: count what was packed (one pass)
        planned, hours = sources.source_totals(batches.rows, ends, dur)
    drops = np.zeros(num, dtype=np.int64)
    for b in ordered.dropped.tolist():  # fewer than world_size batches
        part = batches.rows[batches.offsets[b] : batches.offsets[b + 1]]
        drops += np.bincount(source_of(part), minlength=num)
        hours -= np.bincount(source_of(part), weights=dur[part], minlength=num)
    planned = planned - drops
    hours = hours / 3600.0
    pads = np.zeros(num, dtype=np.int64)
    for b in ordered.padding.tolist():  # fewer than world_size batches
        part = ordered.rows[ordered.offsets[b] : ordered.offsets[b + 1]]
        pads += np.bincount(source_of(part), minlength=num)
    return tuple(
        dataclasses.replace(
            s,
            planned=int(planned[i]),
            planned_hours=float(hours[i]),
            padding=int(pads[i]),
            dropped=int(drops[i]),
        )
        for i, s in enumerate(selection.sources)
    )


def empty_stats(selection: Selection, config: SamplerConfig) -> PlanStats:
    """The statistics of an epoch whose filters left no row."""
    return PlanStats(
        selection.cuts_in,
        selection.filtered,
        0,
        config.oversize,
        0,
        0,
        0,
        0.0,
        selection.sources,
        pack_efficiency=None if config.packing[0] is None else float("nan"),
    )


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
