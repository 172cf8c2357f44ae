"""Stage 3, packing: segments of rows into batches under every active cap.

Optionally (``sort_pool``) each run of that many rows of a segment is first sorted by duration
(stable). Then greedy, in that order, within a segment: a cut joins the open batch only if no cap
(``max_duration`` or the bucket's ``bucket_max_duration`` as cuts x longest cost or the sum, with
``quadratic_duration``; ``max_cuts`` or ``bucket_max_cuts``; ``max_frames``; ``max_tokens`` on
token costs, with ``quadratic_tokens``) would be exceeded. A cut that alone exceeds a cap is
*oversize*: a batch of its own or left out (``oversize``). A mixture's rows are a multiset (a
cut it takes twice is there twice): packing keeps a cut's copies out of one batch. Memory: with
``max_tokens`` the kernel holds each row's duration and token count side by side while packing
(16 B/cut), scratch reused by the next plan (:mod:`discoseq.plan.scratch`: no fresh huge pages
each epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discoseq._core import packing
from discoseq.config import SamplerConfig
from discoseq.plan import scratch
from discoseq.plan.group import Groups, spread_copies
from discoseq.plan.select import Selection

__all__ = ["Batches", "pack_batches"]

_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class Batches:
    """Batches in packing order: batch ``i`` is ``rows[offsets[i]:offsets[i + 1]]``.

    :param segment: the segment (flat bucket) of each batch.
    :param cost: each batch's duration cost (as the cap counts it).
    :param duration: each batch's total duration.
    :param seg_batch_offsets: batches of segment ``s`` are ``seg_batch_offsets[s]:[s + 1]``.
    :param oversize: cuts that alone exceed a cap.
    """

    rows: np.ndarray
    offsets: np.ndarray
    segment: np.ndarray
    cost: np.ndarray
    duration: np.ndarray
    seg_batch_offsets: np.ndarray
    oversize: int

    @property
    def num_batches(self) -> int:
        return int(self.offsets.shape[0] - 1)


def segment_caps(config: SamplerConfig, num_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Duration and cut caps per segment (per-bucket caps replace the global ones)."""
    cap_d = np.full(
        num_segments, np.inf if config.max_duration is None else float(config.max_duration)
    )
    if config.bucket_max_duration is not None:
        cap_d[:] = config.bucket_max_duration
    cap_c = np.full(
        num_segments, _INT64_MAX if config.max_cuts is None else config.max_cuts, np.int64
    )
    if config.bucket_max_cuts is not None:
        cap_c[:] = config.bucket_max_cuts
    return cap_d, cap_c


def text_tokens(selection: Selection, config: SamplerConfig) -> np.ndarray:
    """The text tokens the packing kernel turns into token costs (the rule of
    :func:`token_costs_of`, computed per cut in the kernel: no array of costs); refuses a cap
    with no token source at all."""
    text = np.ascontiguousarray(selection.column("num_tokens"), dtype=np.int64)
    _check_token_source(text, config)
    return text


def _check_token_source(text: np.ndarray, config: SamplerConfig) -> None:
    """A token cap needs text on some cut, or audio tokens."""
    if config.audio_tokens_per_second is None and text.shape[0] and text.max() < 0:
        raise ValueError(
            f"max_tokens={config.max_tokens} has no token source: the column "
            f"{config.token_column!r} holds no text for any cut and audio_tokens_per_second is "
            "not set"
        )


def token_costs_of(text: np.ndarray, duration: np.ndarray, config: SamplerConfig) -> np.ndarray:
    """Each row's token cost: its text tokens (``token_column``; 0 without text) plus, with
    ``audio_tokens_per_second``, ``ceil(duration x rate)`` (a hair below an integer counts as
    it, so ``0.08 s x 12.5`` is 1 token, not 2); int64. With ``quadratic_tokens = q`` that
    count ``t`` costs ``t + t * t / q`` (float64)."""
    text = np.asarray(text)
    _check_token_source(text, config)
    rate = config.audio_tokens_per_second
    if rate is None and text.shape[0] and text.min() >= 0:  # every cut has text: the column
        cost = np.ascontiguousarray(text, dtype=np.int64)
    else:
        cost = np.maximum(text, 0).astype(np.int64, copy=False)
        if rate is not None:
            cost = cost + np.ceil(np.asarray(duration) * rate - 1e-9).astype(np.int64)
    q = config.quadratic_tokens
    if q is None:
        return np.ascontiguousarray(cost, dtype=np.int64)
    t = cost.astype(np.float64)
    return t + t * t / float(q)


def pack_batches(
    groups: Groups, selection: Selection, config: SamplerConfig, epoch: int = 0
) -> Batches:
    """Pack ``groups`` (their row array is sorted in place by ``sort_pool``).

    A mixture that takes a cut more than once keeps its copies out of one batch (a copy closes
    the open batch that holds its cut). When that would cost more than a few batches (pairs of
    copies per batch above 1% of the batches; likely only for sources upsampled many times
    over few batches), the copies are first spread over their buckets
    (:func:`~discoseq.plan.group.spread_copies`) and the epoch packed again."""
    blocks = selection.blocks
    repeats = blocks is not None and blocks.num_rounds > 1
    # spreading reorders a random order; packing leaves the rows as they were unless it
    # excludes oversize cuts (then keep a copy to spread and pack again)
    spreadable = repeats and config.effective_shuffle and config.sort_pool is None
    before = None
    if spreadable and config.oversize == "exclude":  # in memory an earlier plan handed back
        before = scratch.empty(groups.rows.shape[0], np.int64)
        before[:] = groups.rows
    batches = _pack(groups, selection, config)
    if repeats and blocks is not None:
        pairs = int((blocks.round * np.diff(blocks.starts)).sum())  # sum of c(c-1)/2 per cut
        n = max(batches.num_batches, 1)
        if spreadable and pairs / n > max(1.0, 0.01 * n):
            if before is not None:
                groups.rows[:] = before
            spread_copies(groups, config, epoch)
            batches = _pack(groups, selection, config)
        warn_if_copies_crowd(groups, batches, selection)
    scratch.give_back(before)
    return batches


def _pack(groups: Groups, selection: Selection, config: SamplerConfig) -> Batches:
    rows, seg_offsets = groups.rows, groups.seg_offsets
    copies = selection.copies  # a mixture's cuts taken more than once: kept out of one batch
    dur = selection.column("duration")
    layout = scratch.empty(2 * dur.shape[0], np.int64) if config.max_tokens is not None else None
    if config.sort_pool is not None:
        packing.sort_pools(rows, seg_offsets, dur, config.sort_pool)
    if groups.segment_bucket is None:
        cap_d, cap_c = segment_caps(config, seg_offsets.shape[0] - 1)
    else:
        cap_d, cap_c = segment_caps(config, config.total_buckets)
        cap_d, cap_c = cap_d[groups.segment_bucket], cap_c[groups.segment_bucket]
    kept, offsets, segment, cost, duration, seg_batch, n_over = packing.pack(
        rows,
        seg_offsets,
        dur,
        selection.column("num_frames"),
        cap_d,
        cap_c,
        config.max_frames,
        config.quadratic_constant,
        config.limit_mode == "sum",
        config.oversize == "exclude",
        tokens=None if config.max_tokens is None else text_tokens(selection, config),
        max_tokens=config.max_tokens,
        audio_rate=config.audio_tokens_per_second,
        quadratic_tokens=config.quadratic_tokens,
        copies=None if copies is None else copies.bits,
        id_lo=0 if copies is None else copies.lo,
        num_ids=0 if copies is None else copies.size,
        layout=layout,
    )
    scratch.give_back(layout)
    return Batches(rows[:kept], offsets, segment, cost, duration, seg_batch, int(n_over))


def warn_if_copies_crowd(groups: Groups, batches: Batches, selection: Selection) -> None:
    """Warn (RuntimeWarning) when a mixture takes a cut so often that its copies, which never
    share a batch, force batches beyond what the caps need: a cut with more copies than half the
    batches of its bucket."""
    blocks = selection.blocks
    assert blocks is not None
    per_seg = np.diff(batches.seg_batch_offsets)
    nseg = per_seg.shape[0]
    most = np.zeros(nseg, dtype=np.int64)  # the most copies of one cut, per segment
    # only a segment with fewer than 2 x (the most copies of any cut) batches can be crowded
    for s in np.flatnonzero(2 * blocks.num_rounds > per_seg).tolist():
        lo = batches.offsets[batches.seg_batch_offsets[s]]
        hi = batches.offsets[batches.seg_batch_offsets[s + 1]]
        if hi > lo:
            most[s] = int(np.unique(batches.rows[lo:hi], return_counts=True)[1].max())
    crowded = np.flatnonzero((most > 1) & (2 * most > per_seg))
    if crowded.size:
        import warnings

        s = int(crowded[np.argmax(most[crowded])])
        warnings.warn(
            f"plan_epoch: a mixture takes one cut {int(most[s])} times in this epoch, in a "
            f"bucket of {int(per_seg[s])} batches: its copies never share a batch, so they "
            "force extra, smaller batches; lower that source's repeat/weight (or use fewer "
            "buckets)",
            RuntimeWarning,
            stacklevel=4,
        )
