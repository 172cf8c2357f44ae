"""Epoch plans: the thin Python layer over the compiled engine (``discoseq._core``).

:func:`plan_epoch` turns the index columns, a :class:`PlanConfig` and ``(seed, epoch)`` into an
:class:`EpochPlan`: every batch of the epoch for every rank, as flat CSR arrays. Every rank computes
the same global plan (the rank never enters the randomness) and takes its share by slicing.

Pipeline (each step's exact rule is in the named kernel's docstring and in its twin in
``tests/reference_plan.py``):

1. **Filters** (vectorised masks, in this order; a row is counted under the first reason that
   removes it): the user ``mask``, ``min_duration``, ``max_duration_per_cut``,
   ``max_tokens_per_second`` (rows without text, ``num_tokens == -1``, are kept: there is nothing
   to judge).
2. **Order** (``rng``): SEQUENTIAL keeps index order; RANDOM shuffles all rows with the stream of
   ``(seed, epoch, PURPOSE_CUTS | 0)``; BUCKETED groups rows by bucket (``bucketing``: edges of
   equal total cost estimated on the full column, or given; 2D duration x tokens as NeMo) and,
   with ``shuffle``, shuffles each bucket ``b`` with the stream of
   ``(seed, epoch, PURPOSE_CUTS | b)``.
3. **Packing** (``packing``): optionally (``sort_pool``) each run of that many cuts of a bucket is
   first sorted by duration (stable); then greedy in that order, within a bucket, under every
   active cap, checked before a cut joins; oversize cuts go alone or are excluded, and are
   counted.
4. **Batch order and sharding** (``sharding``): groups of ``world_size`` batches from one bucket,
   leftovers of all buckets combined into mixed groups of neighbouring buckets, the last partial
   group dropped (``drop_last``) or padded with repeats and kept as the last step (repeats come
   only at the epoch's tail); the other groups shuffled (BUCKETED with shuffle).
   Global batch ``s * W + r`` is step ``s`` of rank ``r``; worker ``k`` of ``K`` takes the rank's
   batches ``k, k + K, ...``.

Memory: besides the index columns, the engine holds a boolean mask (1 B/cut, only with filters)
and two int64 row arrays at its peak (16 B/cut); the finished plan keeps one (8 B/cut) plus small
per-batch arrays.
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from discoseq._core import bucketing, packing, rng, sharding
from discoseq.strategy import SamplingStrategy

__all__ = [
    "FILTER_REASONS",
    "EpochPlan",
    "PlanConfig",
    "PlanStats",
    "SamplingStrategy",
    "plan_epoch",
]

FILTER_REASONS = ("mask", "min_duration", "max_duration_per_cut", "max_tokens_per_second")
_INT64_MAX = np.iinfo(np.int64).max
_U64_MAX = (1 << 64) - 1

LimitMode = Literal["padded", "sum"]
BucketMethod = Literal["duration", "num_frames", "num_features"]
OversizePolicy = Literal["single", "exclude"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    ok = _is_int(value) if integer else _is_real(value)
    if not ok or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type,operator]
        kind = "a positive integer" if integer else "a positive finite number"
        raise ValueError(f"{name}={value!r} must be {kind}")


@dataclass(frozen=True)
class PlanConfig:
    """Engine-level options of an epoch plan (validated on construction).

    :param strategy: ``sequential``, ``random`` or ``bucketed`` (:class:`SamplingStrategy`).
    :param max_duration: cap on a batch's duration cost: number of cuts x the longest cut's cost
        (``limit_mode="padded"``, Lhotse's meaning) or the sum of costs (``"sum"``).
    :param max_cuts: cap on the number of cuts in a batch.
    :param max_frames: cap on a batch's frames (cuts x longest, or the sum in ``"sum"`` mode).
    :param quadratic_duration: when set to ``q``, a cut's duration cost is ``d + d**2 / q``
        (Lhotse's option, for models whose cost grows quadratically with length).
    :param limit_mode: ``"padded"`` (default) or ``"sum"`` (for pipelines that concatenate cuts).
    :param bucket_method: the bucketing key: ``duration``, ``num_frames`` or ``num_features``
        (frames x feature dimension, the feature-matrix element count).
    :param num_buckets: number of (duration) buckets for BUCKETED; default 10, or
        ``len(bucket_edges) + 1`` when edges are given.
    :param bucket_edges: explicit interior edges (``num_buckets - 1``, strictly increasing); bucket
        ``b`` holds keys in ``(edges[b-1], edges[b]]``. Estimated from the full column otherwise.
    :param num_token_buckets: > 1 turns on 2D bucketing on key x ``num_tokens`` (NeMo's 2D
        buckets): each bucket is split into this many token sub-buckets.
    :param token_bucket_edges: explicit token edges per bucket: ``num_buckets`` tuples of
        ``num_token_buckets - 1`` strictly increasing values. Estimated per bucket otherwise.
    :param bucket_max_duration: per-bucket duration caps (one per flat bucket, row-major
        ``bucket * num_token_buckets + token_bucket``); override ``max_duration``.
    :param bucket_max_cuts: per-bucket cut caps (as above); override ``max_cuts``.
    :param oversize: what happens to a cut that alone exceeds a cap: ``"single"`` (a batch of its
        own) or ``"exclude"`` (left out). Counted either way.
    :param sort_pool: RANDOM/BUCKETED, off by default: after the shuffle, sort each run of this
        many consecutive cuts of a bucket by duration before packing, so a batch holds cuts of
        similar length (much less padding; batch order is still shuffled, but a batch's make-up
        is less random: fairseq's/ESPnet's sort-within-a-chunk idea). Around 10-50 batches' worth
        of cuts is a good start.
    :param min_duration: drop cuts shorter than this (seconds).
    :param max_duration_per_cut: drop cuts longer than this (seconds).
    :param max_tokens_per_second: drop cuts with more supervision characters per second.
    :param shuffle: BUCKETED only: shuffle within buckets and the order of batch groups. RANDOM
        always shuffles (``shuffle=False`` with RANDOM is an error); SEQUENTIAL never does.
    :param drop_last: drop the last partial step (fewer batches than ranks) instead of padding it
        with repeated batches.
    :param seed: random seed, an integer in ``[0, 2**64)``.
    """

    strategy: SamplingStrategy = SamplingStrategy.BUCKETED
    max_duration: float | None = None
    max_cuts: int | None = None
    max_frames: int | None = None
    quadratic_duration: float | None = None
    limit_mode: LimitMode = "padded"
    bucket_method: BucketMethod = "duration"
    num_buckets: int | None = None
    bucket_edges: tuple[float, ...] | None = None
    num_token_buckets: int | None = None
    token_bucket_edges: tuple[tuple[float, ...], ...] | None = None
    bucket_max_duration: tuple[float, ...] | None = None
    bucket_max_cuts: tuple[int, ...] | None = None
    oversize: OversizePolicy = "single"
    sort_pool: int | None = None
    min_duration: float | None = None
    max_duration_per_cut: float | None = None
    max_tokens_per_second: float | None = None
    shuffle: bool = True
    drop_last: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "strategy", SamplingStrategy(self.strategy))
        except ValueError:
            choices = [s.value for s in SamplingStrategy]
            raise ValueError(f"strategy={self.strategy!r} must be one of {choices}") from None
        for name in ("bucket_edges", "bucket_max_duration", "bucket_max_cuts"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, tuple(value))
        if self.token_bucket_edges is not None:
            set_(self, "token_bucket_edges", tuple(tuple(r) for r in self.token_bucket_edges))

        for name in (
            "max_duration",
            "quadratic_duration",
            "min_duration",
            "max_duration_per_cut",
            "max_tokens_per_second",
        ):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in ("max_cuts", "max_frames"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), integer=True)
        if self.sort_pool is not None:
            if not _is_int(self.sort_pool) or self.sort_pool < 2:
                raise ValueError(f"sort_pool={self.sort_pool!r} must be an integer >= 2 (or None)")
            if self.strategy is SamplingStrategy.SEQUENTIAL:
                raise ValueError(
                    f"sort_pool={self.sort_pool} would reorder strategy='sequential' (source order)"
                )
        if self.limit_mode not in ("padded", "sum"):
            raise ValueError(f"limit_mode={self.limit_mode!r} must be 'padded' or 'sum'")
        if self.bucket_method not in ("duration", "num_frames", "num_features"):
            raise ValueError(
                f"bucket_method={self.bucket_method!r} must be 'duration', 'num_frames' or "
                "'num_features'"
            )
        if self.oversize not in ("single", "exclude"):
            raise ValueError(f"oversize={self.oversize!r} must be 'single' or 'exclude'")
        if not isinstance(self.shuffle, bool):
            raise ValueError(f"shuffle={self.shuffle!r} must be a bool")
        if not isinstance(self.drop_last, bool):
            raise ValueError(f"drop_last={self.drop_last!r} must be a bool")
        if not _is_int(self.seed) or not 0 <= self.seed <= _U64_MAX:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2**64)")
        if (
            self.min_duration is not None
            and self.max_duration_per_cut is not None
            and self.min_duration > self.max_duration_per_cut
        ):
            raise ValueError(
                f"min_duration={self.min_duration} is larger than "
                f"max_duration_per_cut={self.max_duration_per_cut}: every cut would be dropped"
            )
        if self.strategy is SamplingStrategy.RANDOM and not self.shuffle:
            raise ValueError(
                "shuffle=False with strategy='random': use strategy='sequential' for source order"
            )
        self._validate_buckets()
        if (
            self.max_duration is None
            and self.max_cuts is None
            and self.max_frames is None
            and self.bucket_max_duration is None
            and self.bucket_max_cuts is None
        ):
            raise ValueError(
                "no batch limit: set at least one of max_duration, max_cuts, max_frames, "
                "bucket_max_duration, bucket_max_cuts"
            )

    def _validate_buckets(self) -> None:
        bucket_fields = (
            "num_buckets",
            "bucket_edges",
            "num_token_buckets",
            "token_bucket_edges",
            "bucket_max_duration",
            "bucket_max_cuts",
        )
        if self.strategy is not SamplingStrategy.BUCKETED:
            for name in bucket_fields:
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} is only valid with strategy='bucketed' "
                        f"(strategy={self.strategy.value!r})"
                    )
            if self.bucket_method != "duration":
                raise ValueError(
                    f"bucket_method={self.bucket_method!r} is only valid with strategy='bucketed'"
                )
            return
        if self.num_buckets is not None:
            _positive("num_buckets", self.num_buckets, integer=True)
        if self.bucket_edges is not None:
            e = self.bucket_edges
            if not all(_is_real(x) and math.isfinite(x) for x in e):
                raise ValueError(f"bucket_edges={e!r} must hold finite numbers")
            if any(b <= a for a, b in itertools.pairwise(e)):
                raise ValueError(f"bucket_edges={e!r} must be strictly increasing")
            if self.num_buckets is not None and self.num_buckets != len(e) + 1:
                raise ValueError(
                    f"num_buckets={self.num_buckets} disagrees with bucket_edges "
                    f"({len(e)} edges make {len(e) + 1} buckets)"
                )
        if self.num_token_buckets is not None:
            _positive("num_token_buckets", self.num_token_buckets, integer=True)
        if self.token_bucket_edges is not None:
            rows = self.token_bucket_edges
            if len(rows) != self.duration_buckets:
                raise ValueError(
                    f"token_bucket_edges has {len(rows)} rows, expected one per bucket "
                    f"({self.duration_buckets})"
                )
            lengths = {len(r) for r in rows}
            if len(lengths) != 1:
                raise ValueError(
                    f"token_bucket_edges rows must all have the same length, got {sorted(lengths)}"
                )
            for r in rows:
                if not all(_is_real(x) and math.isfinite(x) for x in r) or any(
                    b <= a for a, b in itertools.pairwise(r)
                ):
                    raise ValueError(
                        f"token_bucket_edges row {r!r} must be strictly increasing finite numbers"
                    )
            n = lengths.pop() + 1
            if self.num_token_buckets is not None and self.num_token_buckets != n:
                raise ValueError(
                    f"num_token_buckets={self.num_token_buckets} disagrees with "
                    f"token_bucket_edges ({n - 1} edges per row make {n} token buckets)"
                )
        total = self.total_buckets
        for name in ("bucket_max_duration", "bucket_max_cuts"):
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) != total:
                raise ValueError(
                    f"{name} has {len(value)} values, expected one per bucket ({total} = "
                    f"{self.duration_buckets} x {self.token_buckets})"
                )
            for i, v in enumerate(value):
                _positive(f"{name}[{i}]", v, integer=name == "bucket_max_cuts")

    @property
    def duration_buckets(self) -> int:
        """Number of (first-dimension) buckets; 1 unless BUCKETED."""
        if self.strategy is not SamplingStrategy.BUCKETED:
            return 1
        if self.bucket_edges is not None:
            return len(self.bucket_edges) + 1
        return self.num_buckets if self.num_buckets is not None else 10

    @property
    def token_buckets(self) -> int:
        """Number of token sub-buckets per bucket (1 means 1D bucketing)."""
        if self.token_bucket_edges is not None:
            return len(self.token_bucket_edges[0]) + 1
        return self.num_token_buckets if self.num_token_buckets is not None else 1

    @property
    def total_buckets(self) -> int:
        return self.duration_buckets * self.token_buckets


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
    """

    cuts_in: int
    filtered: Mapping[str, int]
    oversize: int
    oversize_policy: str
    dropped_batches: int
    dropped_cuts: int
    cuts_planned: int
    total_duration: float

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
    """

    batch_offsets: np.ndarray
    rows: np.ndarray
    bucket: np.ndarray
    cost: np.ndarray
    duration: np.ndarray
    padding_batches: np.ndarray
    world_size: int
    epoch: int
    config: PlanConfig
    bucket_edges: np.ndarray
    token_edges: np.ndarray
    stats: PlanStats

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

    def _check_rank(self, rank: int) -> None:
        if not _is_int(rank) or not 0 <= rank < self.world_size:
            raise ValueError(f"rank={rank!r} must be an integer in [0, {self.world_size})")

    def rank_view(self, rank: int) -> np.ndarray:
        """Global batch ids of rank ``rank`` in order (``rank, rank + W, ...``)."""
        self._check_rank(rank)
        return np.arange(rank, self.num_batches, self.world_size, dtype=np.int64)

    def worker_view(self, rank: int, worker: int, num_workers: int) -> np.ndarray:
        """Global batch ids of DataLoader worker ``worker`` of ``num_workers`` on ``rank``: the
        rank's batches ``worker, worker + K, ...`` (PyTorch's round-robin over workers then
        yields exactly the rank's order)."""
        if not _is_int(num_workers) or num_workers < 1:
            raise ValueError(f"num_workers={num_workers!r} must be a positive integer")
        if not _is_int(worker) or not 0 <= worker < num_workers:
            raise ValueError(f"worker={worker!r} must be an integer in [0, {num_workers})")
        return self.rank_view(rank)[worker::num_workers]

    def batch(self, i: int) -> np.ndarray:
        """Row ids of global batch ``i`` (a read-only view)."""
        n = self.num_batches
        if not _is_int(i) or not -n <= i < n:
            raise IndexError(f"batch {i!r} out of range for a plan of {n} batches")
        i = int(i) % n
        return self.rows[self.batch_offsets[i] : self.batch_offsets[i + 1]]

    def batch_sizes(self) -> np.ndarray:
        """Number of cuts of every batch."""
        return np.diff(self.batch_offsets)

    def iter_batches(
        self, rank: int = 0, worker: int = 0, num_workers: int = 1
    ) -> Iterator[np.ndarray]:
        """The row arrays of one worker of one rank, in order."""
        for i in self.worker_view(rank, worker, num_workers):
            yield self.batch(int(i))


# --------------------------------------------------------------------------------------------
# columns and filters


def _prepare_columns(
    columns: Mapping[str, np.ndarray], config: PlanConfig
) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Contiguous typed columns, and the bounds of the duration column."""
    if "duration" not in columns:
        raise ValueError(f"columns must hold 'duration'; got {sorted(columns)}")
    needed = {"duration"}
    bucketed = config.strategy is SamplingStrategy.BUCKETED
    if config.max_frames is not None or (bucketed and config.bucket_method != "duration"):
        needed.add("num_frames")
    if bucketed and config.bucket_method == "num_features":
        needed.add("num_features")
    if config.token_buckets > 1 or config.max_tokens_per_second is not None:
        needed.add("num_tokens")
    missing = sorted(needed - set(columns))
    if missing:
        raise ValueError(f"columns {missing} are needed by this configuration but not given")
    out: dict[str, np.ndarray] = {}
    n = None
    for name in sorted(needed):
        col = np.asarray(columns[name])
        if col.ndim != 1:
            raise ValueError(f"column {name!r} must be one-dimensional, got shape {col.shape}")
        if n is None:
            n = col.shape[0]
        elif col.shape[0] != n:
            raise ValueError(f"column {name!r} has {col.shape[0]} rows but others have {n}")
        dtype = np.float64 if name == "duration" else np.int64
        if name != "duration" and col.dtype.kind not in "iu":
            raise ValueError(f"column {name!r} must hold integers, got dtype {col.dtype}")
        out[name] = np.ascontiguousarray(col, dtype=dtype)
    d = out["duration"]
    lo, hi = (float(d.min()), float(d.max())) if d.shape[0] else (1.0, 0.0)
    if d.shape[0] and not (lo > 0 and hi < np.inf):
        bad = int(np.count_nonzero(~((d > 0) & (d < np.inf))))
        raise ValueError(
            f"column 'duration' has {bad} rows that are not positive finite seconds; "
            "fix or filter them (mask=...) before planning"
        )
    return out, (lo, hi)


def _apply_filters(
    cols: dict[str, np.ndarray], config: PlanConfig, mask: np.ndarray | None
) -> tuple[np.ndarray | None, dict[str, int]]:
    """The keep-mask (None when nothing is filtered) and the per-reason counts."""
    d = cols["duration"]
    n = d.shape[0]
    filtered = dict.fromkeys(FILTER_REASONS, 0)
    keep: np.ndarray | None = None

    def apply(reason: str, passes: np.ndarray) -> None:
        nonlocal keep
        if keep is None:
            filtered[reason] = int(n - np.count_nonzero(passes))
            keep = passes
        else:
            before = int(np.count_nonzero(keep))
            keep &= passes
            filtered[reason] = before - int(np.count_nonzero(keep))

    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != (n,):
            raise ValueError(
                f"mask must be a boolean array of shape ({n},), got {m.dtype} {m.shape}"
            )
        apply("mask", m.copy())
    if config.min_duration is not None:
        apply("min_duration", d >= config.min_duration)
    if config.max_duration_per_cut is not None:
        apply("max_duration_per_cut", d <= config.max_duration_per_cut)
    if config.max_tokens_per_second is not None:
        t = cols["num_tokens"]
        apply("max_tokens_per_second", (t < 0) | (t <= config.max_tokens_per_second * d))
    return keep, filtered


def _check_present(
    cols: dict[str, np.ndarray], keep: np.ndarray | None, config: PlanConfig
) -> None:
    names = []
    bucketed = config.strategy is SamplingStrategy.BUCKETED
    if config.max_frames is not None or (bucketed and config.bucket_method != "duration"):
        names.append("num_frames")
    if bucketed and config.bucket_method == "num_features":
        names.append("num_features")
    if config.token_buckets > 1:
        names.append("num_tokens")
    for name in names:
        neg = cols[name] < 0
        bad = int(np.count_nonzero(neg if keep is None else neg & keep))
        if bad:
            raise ValueError(
                f"column {name!r} is -1 (missing) in {bad} rows that survive filtering, but this "
                f"configuration needs it (bucket_method={config.bucket_method!r}, "
                f"max_frames={config.max_frames!r}, token buckets={config.token_buckets}); "
                "exclude those rows with mask=... or choose another bucket_method/limit"
            )


# --------------------------------------------------------------------------------------------
# the plan


def plan_epoch(
    columns: Mapping[str, np.ndarray],
    config: PlanConfig,
    epoch: int,
    world_size: int,
    *,
    mask: np.ndarray | None = None,
) -> EpochPlan:
    """Plan one epoch.

    :param columns: index columns (``duration`` always; ``num_frames``, ``num_features``,
        ``num_tokens`` when the configuration needs them); may be read-only memmaps.
    :param config: the engine configuration.
    :param epoch: epoch number (an integer in ``[0, 2**64)``), part of every random key.
    :param world_size: number of ranks ``W``; every rank gets ``num_batches / W`` batches.
    :param mask: optional boolean array, False for rows to leave out (counted as ``"mask"``).
        Kept out of :class:`PlanConfig` so the configuration stays small and hashable.
    :return: the :class:`EpochPlan`.
    """
    if not isinstance(config, PlanConfig):
        raise TypeError(f"config must be a PlanConfig, got {type(config).__name__}")
    if not _is_int(epoch) or not 0 <= epoch <= _U64_MAX:
        raise ValueError(f"epoch={epoch!r} must be an integer in [0, 2**64)")
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive integer")
    epoch, world_size = int(epoch), int(world_size)
    cols, dur_bounds = _prepare_columns(columns, config)
    n_in = int(cols["duration"].shape[0])
    keep, filtered = _apply_filters(cols, config, mask)
    _check_present(cols, keep, config)
    # rows=None stands for "every row" so an unfiltered plan allocates no index array for it.
    rows: np.ndarray | None = None
    if keep is not None:
        rows = np.flatnonzero(keep).astype(np.int64, copy=False)
    del keep
    n_rows = n_in if rows is None else int(rows.shape[0])

    empty = np.empty(0, dtype=np.int64)
    dur = cols["duration"]
    frames = cols.get("num_frames", empty)
    feats = cols.get("num_features", empty)
    tokens = cols.get("num_tokens", empty)
    B, T = config.duration_buckets, config.token_buckets
    edges = np.empty(0, dtype=np.float64)
    token_edges = np.zeros((B, max(T - 1, 0)), dtype=np.float64)
    bucketed = config.strategy is SamplingStrategy.BUCKETED

    if n_rows == 0:
        warnings.warn(
            f"plan_epoch: no cuts to plan ({n_in} in, {sum(filtered.values())} filtered out); "
            "the epoch plan is empty",
            RuntimeWarning,
            stacklevel=2,
        )
        stats = PlanStats(n_in, filtered, 0, config.oversize, 0, 0, 0, 0.0)
        return _finish(
            empty,
            np.zeros(1, np.int64),
            np.empty(0, np.int32),
            np.empty(0),
            np.empty(0),
            empty,
            world_size,
            epoch,
            config,
            edges,
            token_edges,
            stats,
        )

    if bucketed:
        kind = bucketing.KEY_KINDS[config.bucket_method]
        if config.bucket_edges is not None:
            edges = np.asarray(config.bucket_edges, dtype=np.float64)
        else:
            # the duration column's bounds (known from validation) bracket every key: one pass less
            lo, hi = dur_bounds if config.bucket_method == "duration" else (1.0, 0.0)
            edges = bucketing.estimate_edges(rows, kind, dur, frames, feats, tokens, B, lo, hi)
        if T > 1:
            if config.token_bucket_edges is not None:
                token_edges = np.asarray(config.token_bucket_edges, dtype=np.float64)
            else:
                # Token edges per duration bucket: group once, then estimate each bucket's edges
                # on a contiguous copy of its tokens (one gather instead of three strided passes).
                # The final grouping below starts again from `rows` (index order): reading the
                # columns through the grouped rows would be a strided, cache-unfriendly pass.
                g1, off1 = bucketing.group_by_bucket(
                    rows, kind, dur, frames, feats, tokens, edges, empty.astype(np.float64), 1
                )
                t_kind = bucketing.KEY_KINDS["num_tokens"]
                for b in range(B):
                    sub = tokens[g1[off1[b] : off1[b + 1]]]
                    if sub.size == 0:
                        continue  # an empty bucket keeps zero edges (as the reference)
                    token_edges[b] = bucketing.estimate_edges(
                        None, t_kind, dur, empty, empty, sub, T
                    )
                del g1
        rows, seg_offsets = bucketing.group_by_bucket(
            rows, kind, dur, frames, feats, tokens, edges, token_edges.reshape(-1), T
        )
        if config.shuffle:  # each bucket with its own stream
            keys = np.array(
                [rng.derive_key(config.seed, epoch, rng.PURPOSE_CUTS | s) for s in range(B * T)],
                dtype=np.uint64,
            )
            rng.shuffle_segments(rows, seg_offsets, keys)
    else:
        if rows is None:
            rows = np.arange(n_in, dtype=np.int64)
        if config.strategy is SamplingStrategy.RANDOM:
            rng.shuffle(rows, rng.derive_key(config.seed, epoch, rng.PURPOSE_CUTS))
        seg_offsets = np.array([0, rows.shape[0]], dtype=np.int64)
    assert rows is not None  # for mypy: every branch above produced the row array

    if config.sort_pool is not None:
        packing.sort_pools(rows, seg_offsets, dur, config.sort_pool)
    nseg = seg_offsets.shape[0] - 1
    cap_d = np.full(nseg, np.inf if config.max_duration is None else float(config.max_duration))
    if config.bucket_max_duration is not None:
        cap_d[:] = config.bucket_max_duration
    cap_c = np.full(nseg, _INT64_MAX if config.max_cuts is None else config.max_cuts, np.int64)
    if config.bucket_max_cuts is not None:
        cap_c[:] = config.bucket_max_cuts
    kept, boff, bseg, bcost, bdur, seg_batch, n_over = packing.pack(
        rows,
        seg_offsets,
        dur,
        frames,
        cap_d,
        cap_c,
        config.max_frames,
        config.quadratic_duration,
        config.limit_mode == "sum",
        config.oversize == "exclude",
    )
    rows = rows[:kept]
    n_batches = int(boff.shape[0] - 1)
    shuffle_order = bucketed and config.shuffle
    order, pad_pos, dropped = sharding.order_batches(
        seg_batch,
        world_size,
        rng.derive_key(config.seed, epoch, rng.PURPOSE_TAIL),
        rng.derive_key(config.seed, epoch, rng.PURPOSE_ORDER),
        shuffle_order,
        config.drop_last,
    )
    out_rows, out_off = sharding.gather_batches(rows, boff, order)
    del rows
    planned = np.ones(n_batches, dtype=bool)
    planned[dropped] = False
    sizes = np.diff(boff)
    dropped_cuts = int(sizes[dropped].sum())
    stats = PlanStats(
        cuts_in=n_in,
        filtered=filtered,
        oversize=int(n_over),
        oversize_policy=config.oversize,
        dropped_batches=int(dropped.shape[0]),
        dropped_cuts=dropped_cuts,
        cuts_planned=int(kept) - dropped_cuts,
        total_duration=float(bdur[planned].sum()),
    )
    if config.drop_last and 0 < n_batches < world_size:
        warnings.warn(
            f"plan_epoch: only {n_batches} batches for world_size={world_size} with "
            f"drop_last=True: all are dropped and the epoch plan is empty",
            RuntimeWarning,
            stacklevel=2,
        )
    elif n_batches == 0:
        warnings.warn(
            "plan_epoch: every cut was excluded as oversize; the epoch plan is empty",
            RuntimeWarning,
            stacklevel=2,
        )
    return _finish(
        out_rows,
        out_off,
        bseg[order],
        bcost[order],
        bdur[order],
        pad_pos,
        world_size,
        epoch,
        config,
        edges,
        token_edges,
        stats,
    )


def _finish(
    rows: np.ndarray,
    offsets: np.ndarray,
    bucket: np.ndarray,
    cost: np.ndarray,
    duration: np.ndarray,
    padding: np.ndarray,
    world_size: int,
    epoch: int,
    config: PlanConfig,
    edges: np.ndarray,
    token_edges: np.ndarray,
    stats: PlanStats,
) -> EpochPlan:
    arrays = [rows, offsets, bucket, cost, duration, padding, edges, token_edges]
    for a in arrays:
        a.flags.writeable = False
    return EpochPlan(
        batch_offsets=offsets,
        rows=rows,
        bucket=bucket,
        cost=cost,
        duration=duration,
        padding_batches=padding,
        world_size=world_size,
        epoch=epoch,
        config=config,
        bucket_edges=edges,
        token_edges=token_edges,
        stats=stats,
    )
