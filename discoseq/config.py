"""``SamplerConfig``: every option of discoseq, declared and validated once, with a JSON round trip.

The fields are Lhotse's names where Lhotse has the option (``max_duration``, ``max_cuts``,
``num_buckets``, ``shuffle``, ``drop_last``, ``quadratic_duration``, ``buffer_size``, ``seed``,
``world_size``, ``rank``), the DataLoader's where the option belongs to the DataLoader
(``num_workers``, ``pin_memory``, ``prefetch_factor``), and the engine's for everything else.
The planner (:func:`~discoseq.plan.plan_epoch`) reads this same object: what it needs in resolved
form (``effective_shuffle``, ``quadratic_constant``, the bucket counts) is a property here, so a
new option is one field and its rule, written once.

A field that has no effect under the chosen options is an error when it is set to anything but
its default (e.g. ``num_buckets=20`` with ``strategy="random"``, ``prefetch_factor=4`` with
``num_workers=0``): an option is never accepted and silently ignored.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import orjson

from discoseq._checks import MAX_WORLD_SIZE, U64_MAX, close_name, is_int, is_real
from discoseq.mixture import Mixture, MixtureSchedule
from discoseq.strategy import SamplingStrategy

__all__ = [
    "DEFAULT_QUADRATIC_DURATION",
    "RESUME_MUTABLE_FIELDS",
    "BucketMethod",
    "LimitMode",
    "OversizePolicy",
    "SamplerConfig",
    "SamplingStrategy",
]

LimitMode = Literal["padded", "sum"]
BucketMethod = Literal["duration", "num_frames", "num_features"]
OversizePolicy = Literal["single", "exclude"]
MixBatches = Literal["pooled", "per_source"]

DEFAULT_QUADRATIC_DURATION = 30.0
"""The constant ``q`` that ``quadratic_duration=True`` stands for (seconds): a cut of duration
``d`` costs ``d + d**2 / q``, so a 30 s cut costs twice its length and a 5 s cut 1.17 times.
Lhotse suggests 15-40 for transformer models; 30 is the middle of that range."""

RESUME_MUTABLE_FIELDS = frozenset(
    {"world_size", "rank", "num_workers", "pin_memory", "prefetch_factor"}
)
"""Fields that may differ between the run that saved a state and the run that loads it: they
change who gets the batches or how they are loaded, not which batches the epoch holds."""

_LIMIT_FIELDS = (
    "max_duration",
    "max_cuts",
    "max_frames",
    "max_tokens",
    "bucket_max_duration",
    "bucket_max_cuts",
)
_POSITIVE_REALS = (
    "max_duration",
    "min_duration",
    "max_duration_per_cut",
    "max_tokens_per_second",
    "audio_tokens_per_second",
    "quadratic_tokens",
)
_CHOICES: dict[str, tuple[str, ...]] = {
    "limit_mode": ("padded", "sum"),
    "bucket_method": ("duration", "num_frames", "num_features"),
    "oversize": ("single", "exclude"),
    "mix_batches": ("pooled", "per_source"),
}
_BUCKET_FIELDS = (
    "num_buckets",
    "bucket_method",
    "bucket_edges",
    "num_token_buckets",
    "token_bucket_edges",
    "bucket_max_duration",
    "bucket_max_cuts",
)
_MIXTURE_FIELDS = (
    "mixture",
    "mixture_schedule",
    "epoch_hours",
    "epoch_cuts",
    "temperature",
    "mix_batches",
)
_UPPER_BOUNDS = {
    "max_cuts": 1 << 62,
    "max_frames": 1 << 62,
    "max_tokens": 1 << 62,
    "pack_tokens": 1 << 62,
    "bucket_max_cuts": 1 << 62,
    "num_buckets": 1 << 16,
    "num_token_buckets": 1 << 10,
    "sort_pool": 1 << 31,
    "buffer_size": 1 << 40,
    "num_workers": 1 << 10,
    "prefetch_factor": 1 << 16,
}
"""The largest value of each integer option: every one of them sizes an allocation or enters
the engine's int64 arithmetic, so an absurd value is refused here, never a crash there."""
_DEFAULTS: dict[str, Any] = {}  # filled after the class definition


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    ok = is_int(value) if integer else is_real(value)
    if not ok or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type,operator]
        kind = "a positive integer" if integer else "a positive finite number"
        got = "" if ok or isinstance(value, bool) else f" (got {type(value).__name__})"
        raise ValueError(f"{name}={value!r} must be {kind}{got}")


@dataclass(frozen=True)
class SamplerConfig:
    """Options of a :class:`~discoseq.DiscoSeqSampler` (validated on construction; immutable).

    Batch limits (at least one of ``max_duration``, ``max_cuts``, ``max_frames``,
    ``bucket_max_duration``, ``bucket_max_cuts``):

    :param strategy: how the cuts of an epoch are ordered: ``SamplingStrategy.BUCKETED``
        (default), ``RANDOM`` or ``SEQUENTIAL``, or their strings.
    :param max_duration: the cap of a batch in seconds, as Lhotse means it: number of cuts x the
        longest cut (``limit_mode="padded"``) or the sum of durations (``"sum"``). Checked before a
        cut joins a batch, so no batch exceeds it (a single cut longer than the cap is an
        ``oversize`` cut, see below).
    :param max_cuts: the maximum number of cuts in a batch.
    :param world_size: number of data-parallel ranks; ``None`` detects it (``torch.distributed``
        when initialised, else torchrun's ``WORLD_SIZE``, else 1).
    :param rank: this process's rank; ``None`` detects it like ``world_size`` (else 0).
    :param seed: random seed (an integer in ``[0, 2**64)``); with the epoch it keys every random
        choice, so every rank computes the same plan.
    :param shuffle: ``None`` means True for RANDOM and BUCKETED and False for SEQUENTIAL.
        SEQUENTIAL with ``shuffle=True`` and RANDOM with ``shuffle=False`` are errors (each is the
        other strategy). BUCKETED with ``shuffle=False`` keeps source order within buckets and
        the batch order fixed.
    :param drop_last: drop the last, partial step (fewer batches than ranks) so no cut is seen
        twice; when False it is padded with repeated batches so every rank gets as many batches
        (the repeats are counted in the diagnostics).
    :param bucket_method: the bucketing key of BUCKETED: ``"duration"``, ``"num_frames"`` or
        ``"num_features"`` (frames x feature dimension).
    :param num_buckets: number of buckets of BUCKETED (edges of equal total cost are estimated on
        the full column). With ``bucket_edges`` it is ``len(bucket_edges) + 1``: leave the
        default or give that number.
    :param buffer_size: the read-ahead window of resolution, in cuts. The process that turns batches
        into CutSets (the DataLoader worker, or the main process without workers) reads the
        records of its next batches together, at least ``buffer_size`` cuts' worth rounded up to
        whole batches, in file order (sorted by source and byte offset), and decodes each batch
        when it is yielded. One forward pass over the manifest instead of a random read per cut
        is what makes huge sources on slow or network storage fast; the window costs about
        ``buffer_size`` raw JSON records of memory per worker. ``0`` reads batch by batch.
        It never changes which batches are produced or their order.
    :param quadratic_duration: ``None``/``False``: off. A float ``q``: a cut of duration ``d``
        costs ``d + d**2 / q`` against ``max_duration`` (Lhotse's option, for models whose cost
        grows quadratically with length). ``True``: ``q =``
        :data:`DEFAULT_QUADRATIC_DURATION` (30 s).
    :param num_workers: DataLoader workers of :func:`~discoseq.create_dataloader`.
    :param pin_memory: passed to the DataLoader by :func:`~discoseq.create_dataloader`.
    :param prefetch_factor: batches prefetched per worker, passed to the DataLoader only when
        ``num_workers > 0`` (PyTorch refuses it otherwise); a non-default value with
        ``num_workers=0`` is an error.

    Engine options:

    :param max_frames: cap on a batch's frames (cuts x the longest frame count, or the sum in
        ``"sum"`` mode).
    :param limit_mode: ``"padded"`` (default, Lhotse's meaning) or ``"sum"`` (total cost, for
        pipelines that concatenate cuts).
    :param bucket_edges: explicit interior bucket edges (``num_buckets - 1``, strictly
        increasing); bucket ``b`` holds keys in ``(edges[b-1], edges[b]]``. Estimated from the
        full column otherwise.
    :param num_token_buckets: > 1 turns on 2D bucketing on key x ``num_tokens`` (NeMo's 2D
        buckets): each bucket is split into this many token sub-buckets.
    :param token_bucket_edges: explicit token edges per bucket: ``num_buckets`` rows of
        ``num_token_buckets - 1`` strictly increasing values. Estimated per bucket otherwise.
    :param bucket_max_duration: per-bucket duration caps, one per flat bucket (row-major
        ``bucket * token_buckets + token_bucket``); they replace ``max_duration``.
    :param bucket_max_cuts: per-bucket cut caps (as above); they replace ``max_cuts``.
    :param oversize: a cut that alone exceeds a cap: ``"single"`` (a batch of its own, default)
        or ``"exclude"`` (left out); counted either way.
    :param sort_pool: RANDOM/BUCKETED, off by default (``None``): after the shuffle, sort each
        run of this many consecutive cuts of a bucket by duration (stable) before packing, so a
        batch holds cuts of similar length (much less padding at the same fill; the batch order
        is still shuffled, but a batch's make-up is less random: fairseq's/ESPnet's
        sort-within-a-chunk idea). 10-50 batches' worth of cuts is a good start.
    :param min_duration: leave out cuts shorter than this (seconds).
    :param max_duration_per_cut: leave out cuts longer than this (seconds).
    :param max_tokens_per_second: leave out cuts with more text tokens (``token_column``) per
        second (cuts without text are kept).

    Token budgets (speech-LLMs budget what the model sees: text tokens plus audio tokens):

    :param token_column: the index column of text tokens that every token feature reads: 2D
        bucketing, ``max_tokens_per_second``, ``max_tokens``, ``pack_tokens`` (set without
        one of them it is an error: it would be ignored). Default ``"num_tokens"``
        (characters of the supervision text, Lhotse's joined texts).
    :param max_tokens: a hard cap on a batch's token cost, checked before a cut joins like
        every cap: cuts x the largest cost (``limit_mode="padded"``) or the sum (``"sum"``). A
        cut's token cost is its text tokens (0 without text) plus, with
        ``audio_tokens_per_second``, ``ceil(duration x rate)``.
    :param audio_tokens_per_second: the audio encoder's token rate (e.g. 12.5 for 80 ms
        frames): adds each cut's audio tokens to its token cost (needs ``max_tokens``).
    :param quadratic_tokens: ``None``: off. A number ``q``: a cut of token cost ``t`` (text +
        audio tokens, as above) costs ``t + t**2 / q`` against ``max_tokens``, the rule of
        ``quadratic_duration`` (and of Lhotse's ``quadratic_length``) for models whose cost
        grows quadratically with the sequence (needs ``max_tokens``).

    Packing (whole-epoch bin packing of cuts into fixed-length rows for padding-free, THD /
    ``cu_seqlens`` batches; see :mod:`discoseq.plan.packrows` and :mod:`discoseq.packs`):

    :param pack_duration: seconds per pack: the cuts of an epoch are bin-packed
        (best-fit-decreasing over the whole shuffled epoch) into *packs* of at most this many
        seconds, and a batch is a number of packs under the batch caps: ``max_cuts`` counts
        packs, ``max_duration`` (at least ``pack_duration``) caps packs x the longest pack
        (``limit_mode="sum"``: the sum). A batch resolves to a ``CutSet`` of packs, each one
        Lhotse cut of its members appended. A cut longer than a pack is ``oversize``.
        Needs ``strategy="random"`` or ``"sequential"``; not with ``pack_tokens``.
    :param pack_tokens: the same in tokens: a pack holds cuts of at most this token cost in
        total (a cut's cost as for ``max_tokens``: text tokens of ``token_column`` plus
        ``audio_tokens_per_second`` audio tokens); ``max_tokens`` (at least ``pack_tokens``)
        then caps a batch's packs.

    Mixtures (the sampler's source is a mapping of name -> source; see
    :mod:`discoseq.mixture` for the exact rules):

    :param mixture: per source (or group of sources) its quota: ``{"repeat": r}``,
        ``{"choose": n}``, ``{"weight": w}`` or ``{}`` (weight from hours ** ``temperature``);
        groups ``{"group": {...}, "weight": w, "temperature": t}``. ``None``: every source
        ``{}`` (one natural pass at temperature 1).
    :param mixture_schedule: ``[[epoch, {name: weight}], ...]``: weights of weighted entries
        over epochs, linear in between.
    :param epoch_hours: the weighted sources' budget per epoch in hours (with the repeat/choose
        sources' expected hours subtracted); a short value makes "virtual epochs".
    :param epoch_cuts: the same budget in cuts (not with ``epoch_hours``). Without either, one
        natural pass over the weighted sources.
    :param temperature: the exponent of derived weights, ``hours ** temperature`` (1: natural
        shares, 0: uniform); a group's ``temperature`` overrides it for its children.
    :param mix_batches: ``"pooled"`` (default: the selected cuts of all sources are bucketed and
        packed together, so padding stays as low as for one corpus) or ``"per_source"`` (every
        batch from one source, and the W batches of a step too; steps interleaved so each
        source's steps are spread evenly over the epoch, following its quota).

    Read locality (:mod:`discoseq.plan.shardblock`):

    :param shard_block: ``None`` (default): every batch is drawn from the whole corpus. ``k``:
        the sources (a Lhotse Shar corpus's cut shards, an index's manifests) are taken in
        blocks of ``k`` consecutive ones; every batch holds cuts of one bucket and one block,
        and the epoch visits the blocks one at a time in a random order (keyed by seed and
        epoch), its batches shuffled, so a worker's reads stay within a few shards (MosaicML's
        ``py1b`` shuffle). Bucket edges and caps are unchanged; the cost is a partial batch per
        bucket and block, reported by ``discoseq analyze``. Needs a shuffled, unpacked plan of
        one corpus.
    """

    strategy: SamplingStrategy | str = SamplingStrategy.BUCKETED
    max_duration: float | None = None
    max_cuts: int | None = None
    world_size: int | None = None
    rank: int | None = None
    seed: int = 42
    shuffle: bool | None = None
    drop_last: bool = False
    bucket_method: BucketMethod = "duration"
    num_buckets: int = 10
    buffer_size: int = 10000
    quadratic_duration: float | bool | None = False
    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2
    # -- engine options --------------------------------------------------------------------
    max_frames: int | None = None
    limit_mode: LimitMode = "padded"
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
    # -- token budgets -----------------------------------------------------------------------
    token_column: str = "num_tokens"
    max_tokens: int | None = None
    audio_tokens_per_second: float | None = None
    quadratic_tokens: float | None = None
    # -- packing ---------------------------------------------------------------------------
    pack_duration: float | None = None
    pack_tokens: int | None = None
    # -- mixtures --------------------------------------------------------------------------
    mixture: Mixture | Mapping[str, Any] | None = None
    mixture_schedule: MixtureSchedule | Sequence[Any] | None = None
    epoch_hours: float | None = None
    epoch_cuts: int | None = None
    temperature: float = 1.0
    mix_batches: MixBatches = "pooled"
    # -- read locality ---------------------------------------------------------------------
    shard_block: int | None = None

    def __post_init__(self) -> None:
        self._normalise()
        self._check_scalars()
        self._check_strategy()
        self._check_buckets()
        self._check_mixture()
        self._check_shard_block()
        self._check_packing()
        self._check_token_column()
        if all(getattr(self, name) is None for name in _LIMIT_FIELDS):
            raise ValueError(f"no batch limit: set at least one of {', '.join(_LIMIT_FIELDS)}")
        self._check_cap_modes()

    # -- validation (the one home of every rule) ----------------------------------------------
    def _normalise(self) -> None:
        """Strings to the strategy, sequences to tuples (the config stays hashable)."""
        set_ = object.__setattr__
        try:
            set_(self, "strategy", SamplingStrategy(self.strategy))
        except ValueError:
            choices = [s.value for s in SamplingStrategy]
            raise ValueError(f"strategy={self.strategy!r} must be one of {choices}") from None
        for name in ("bucket_edges", "bucket_max_duration", "bucket_max_cuts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | bytes):
                if not isinstance(value, Sequence):
                    raise ValueError(f"{name}={value!r} must be a list of numbers")
                set_(self, name, tuple(value))
        rows = self.token_bucket_edges
        if rows is not None:
            if (
                isinstance(rows, str | bytes)
                or not isinstance(rows, Sequence)
                or not all(isinstance(r, Sequence) and not isinstance(r, str | bytes) for r in rows)
            ):
                raise ValueError(
                    f"token_bucket_edges={rows!r} must be a list of rows (one list of token "
                    "edges per bucket)"
                )
            set_(self, "token_bucket_edges", tuple(tuple(r) for r in rows))

    def _check_scalars(self) -> None:
        """Each field on its own: type and range."""
        w = self.world_size
        if w is not None and (not is_int(w) or not 1 <= w <= MAX_WORLD_SIZE):
            raise ValueError(
                f"world_size={w!r} must be an integer in [1, {MAX_WORLD_SIZE}] or None (detect)"
            )
        if self.rank is not None and (not is_int(self.rank) or self.rank < 0):
            raise ValueError(f"rank={self.rank!r} must be a non-negative integer or None (detect)")
        if self.rank is not None and self.world_size is not None and self.rank >= self.world_size:
            raise ValueError(f"rank={self.rank} must be smaller than world_size={self.world_size}")
        if not is_int(self.seed) or not 0 <= self.seed <= U64_MAX:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2**64)")
        if self.shuffle is not None and not isinstance(self.shuffle, bool):
            raise ValueError(f"shuffle={self.shuffle!r} must be True, False or None (auto)")
        for name in ("drop_last", "pin_memory"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a bool")
        for name in _POSITIVE_REALS:
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in ("max_cuts", "max_frames", "max_tokens"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), integer=True)
        if not isinstance(self.token_column, str) or not self.token_column:
            raise ValueError(f"token_column={self.token_column!r} must be a column name")
        if (
            self.audio_tokens_per_second is not None
            and self.max_tokens is None
            and self.pack_tokens is None
        ):
            raise ValueError(
                f"audio_tokens_per_second={self.audio_tokens_per_second} counts audio tokens "
                "against max_tokens or pack_tokens: set one of them too"
            )
        if self.quadratic_tokens is not None and self.max_tokens is None:
            raise ValueError(
                f"quadratic_tokens={self.quadratic_tokens} weighs token costs against max_tokens: "
                "set max_tokens too"
            )
        _positive("num_buckets", self.num_buckets, integer=True)
        if self.num_token_buckets is not None:
            _positive("num_token_buckets", self.num_token_buckets, integer=True)
        if not is_int(self.buffer_size) or self.buffer_size < 0:
            raise ValueError(
                f"buffer_size={self.buffer_size!r} must be a non-negative integer (cuts; 0 "
                "resolves batch by batch)"
            )
        q = self.quadratic_duration
        if (
            q is not None
            and not isinstance(q, bool)
            and (not is_real(q) or not (math.isfinite(q) and q > 0))
        ):
            raise ValueError(
                f"quadratic_duration={q!r} must be None/False (off), True (the default "
                f"constant {DEFAULT_QUADRATIC_DURATION}) or a positive number of seconds"
            )
        if self.sort_pool is not None and (not is_int(self.sort_pool) or self.sort_pool < 2):
            raise ValueError(f"sort_pool={self.sort_pool!r} must be an integer >= 2 (or None)")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                listed = " or ".join(repr(c) for c in choices)
                raise ValueError(f"{name}={getattr(self, name)!r} must be {listed}")
        if not is_int(self.num_workers) or self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers!r} must be a non-negative integer")
        if not is_int(self.prefetch_factor) or self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor={self.prefetch_factor!r} must be a positive integer")
        for name, high in _UPPER_BOUNDS.items():
            values = getattr(self, name)
            for v in values if isinstance(values, tuple) else (values,):
                if v is not None and v > high:
                    raise ValueError(
                        f"{name}={v!r} is larger than {high:,} (sizes feed allocations and "
                        "64-bit arithmetic of the planner; no real run needs more)"
                    )

    def _check_strategy(self) -> None:
        """Fields against each other: what the strategy and the loader make meaningless."""
        if self.num_workers == 0 and self.prefetch_factor != _DEFAULTS["prefetch_factor"]:
            raise ValueError(
                f"prefetch_factor={self.prefetch_factor} has no effect with num_workers=0 "
                "(PyTorch prefetches only in workers): set num_workers > 0 or leave it at "
                f"{_DEFAULTS['prefetch_factor']}"
            )
        if self.strategy is SamplingStrategy.SEQUENTIAL and self.shuffle:
            raise ValueError(
                "shuffle=True with strategy='sequential': SEQUENTIAL means source order; use "
                "strategy='random' for a global shuffle or 'bucketed' for shuffled buckets"
            )
        if self.strategy is SamplingStrategy.RANDOM and self.shuffle is False:
            raise ValueError(
                "shuffle=False with strategy='random': RANDOM is a shuffle; use "
                "strategy='sequential' for source order"
            )
        if self.strategy is SamplingStrategy.SEQUENTIAL and self.sort_pool is not None:
            raise ValueError(
                f"sort_pool={self.sort_pool} would reorder strategy='sequential' (source order)"
            )
        if (
            self.min_duration is not None
            and self.max_duration_per_cut is not None
            and self.min_duration > self.max_duration_per_cut
        ):
            raise ValueError(
                f"min_duration={self.min_duration} is larger than "
                f"max_duration_per_cut={self.max_duration_per_cut}: every cut would be dropped"
            )
        if self.strategy is not SamplingStrategy.BUCKETED:
            for name in _BUCKET_FIELDS:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} is only used by strategy='bucketed' "
                        f"(strategy={SamplingStrategy(self.strategy).value!r})"
                    )

    def _check_mixture(self) -> None:
        """The mixture options, each on its own and against each other."""
        set_ = object.__setattr__
        if self.mixture is not None:
            set_(self, "mixture", Mixture.parse(self.mixture))
        if self.mixture_schedule is not None:
            schedule = MixtureSchedule.parse(self.mixture_schedule)
            set_(self, "mixture_schedule", schedule)
            if not isinstance(self.mixture, Mixture):
                raise ValueError(
                    "mixture_schedule moves the weights of mixture entries: give mixture= with "
                    f"a weight for {list(schedule.names)}"
                )
            schedule.check_against(self.mixture)
        if self.epoch_hours is not None:
            _positive("epoch_hours", self.epoch_hours)
        if self.epoch_cuts is not None:
            _positive("epoch_cuts", self.epoch_cuts, integer=True)
            if self.epoch_cuts > 1 << 62:
                raise ValueError(f"epoch_cuts={self.epoch_cuts} is larger than {1 << 62:,}")
        if self.epoch_hours is not None and self.epoch_cuts is not None:
            raise ValueError(
                f"epoch_hours={self.epoch_hours} and epoch_cuts={self.epoch_cuts}: give one "
                "budget (hours or cuts)"
            )
        t = self.temperature
        if not is_real(t) or not math.isfinite(t) or t < 0:
            raise ValueError(f"temperature={t!r} must be a finite number >= 0")
        mixture = self.mixture_spec
        if t != _DEFAULTS["temperature"] and mixture is not None and mixture.derived_top == 0:
            raise ValueError(
                f"temperature={t} has no effect: no top-level entry of the mixture takes a weight "
                "from its hours (give {} entries, or a group its own temperature)"
            )

    def _check_packing(self) -> None:
        """``pack_duration`` / ``pack_tokens``: one of them, and only with the options that keep
        a meaning for a batch of packs."""
        if self.pack_duration is not None:
            _positive("pack_duration", self.pack_duration)
        if self.pack_tokens is not None:
            _positive("pack_tokens", self.pack_tokens, integer=True)
        name, length = self.packing
        if name is None:
            return
        if self.pack_duration is not None and self.pack_tokens is not None:
            raise ValueError(
                f"pack_duration={self.pack_duration} and pack_tokens={self.pack_tokens}: packs "
                "have one length, give one of them"
            )
        if self.strategy is SamplingStrategy.BUCKETED:
            raise ValueError(
                f"{name}={length} packs cuts of every length into rows of one length, so "
                "buckets of cut lengths have nothing to do (and packing inside one would waste "
                "room): set strategy='random' (or 'sequential')"
            )
        for other in ("quadratic_duration", "quadratic_tokens", "sort_pool", "max_frames"):
            if hasattr(self, other) and getattr(self, other) not in (None, False):
                raise ValueError(
                    f"{other}={getattr(self, other)!r} has no meaning for a batch of packs "
                    f"({name}={length}): leave it unset"
                )
        cross = "max_tokens" if name == "pack_duration" else "max_duration"
        if getattr(self, cross) is not None:
            raise ValueError(
                f"{cross}={getattr(self, cross)} with {name}={length}: a batch of packs is "
                f"capped by max_cuts (packs per batch) and "
                f"{'max_duration' if name == 'pack_duration' else 'max_tokens'} only"
            )
        cap_name = "max_duration" if name == "pack_duration" else "max_tokens"
        cap = getattr(self, cap_name)
        if cap is not None and cap < length:
            raise ValueError(
                f"{cap_name}={cap} is smaller than {name}={length}: no batch could hold one "
                "full pack"
            )

    def _check_cap_modes(self) -> None:
        """The options that change how a cap counts need a cap they act on: a cut count alone
        has no cost to square or sum and no cut exceeds it alone."""
        duration_cap = self.max_duration is not None or self.bucket_max_duration is not None
        cost_caps = duration_cap or self.max_frames is not None or self.max_tokens is not None
        if self.quadratic_duration not in (None, False) and not duration_cap:
            raise ValueError(
                f"quadratic_duration={self.quadratic_duration!r} has no effect: it weighs "
                "durations against max_duration/bucket_max_duration, and neither is set"
            )
        if self.limit_mode == "sum" and not cost_caps:
            raise ValueError(
                "limit_mode='sum' has no effect: it changes how max_duration, "
                "bucket_max_duration, max_frames and max_tokens count a batch, and none is set"
            )
        if self.oversize == "exclude" and not cost_caps and self.packing[0] is None:
            raise ValueError(
                "oversize='exclude' has no effect: no cut alone can exceed a cut count; it "
                "applies to max_duration, bucket_max_duration, max_frames, max_tokens and "
                "pack_duration/pack_tokens"
            )

    def _check_token_column(self) -> None:
        """``token_column`` only where a token feature reads it."""
        if self.token_column == _DEFAULTS["token_column"]:
            return
        if (
            self.token_buckets == 1
            and self.max_tokens_per_second is None
            and self.max_tokens is None
            and self.pack_tokens is None
        ):
            raise ValueError(
                f"token_column={self.token_column!r} has no effect: no token feature reads it "
                "(num_token_buckets/token_bucket_edges, max_tokens_per_second, max_tokens, "
                "pack_tokens)"
            )

    @property
    def packing(self) -> tuple[str | None, float]:
        """``("pack_duration", seconds)``, ``("pack_tokens", tokens)`` or ``(None, 0.0)``."""
        if self.pack_duration is not None:
            return "pack_duration", float(self.pack_duration)
        if self.pack_tokens is not None:
            return "pack_tokens", float(self.pack_tokens)
        return None, 0.0

    @property
    def mixture_spec(self) -> Mixture | None:
        """``mixture`` as the validated :class:`~discoseq.mixture.Mixture` it became."""
        return self.mixture if isinstance(self.mixture, Mixture) else None

    @property
    def schedule(self) -> MixtureSchedule | None:
        """``mixture_schedule`` as the validated schedule it became."""
        s = self.mixture_schedule
        return s if isinstance(s, MixtureSchedule) else None

    def _check_shard_block(self) -> None:
        """``shard_block``: a block size, only where batches are shuffled and not packed."""
        k = self.shard_block
        if k is None:
            return
        if not is_int(k) or not 1 <= k <= 1 << 31:
            raise ValueError(f"shard_block={k!r} must be an integer in [1, 2**31] (or None)")
        if self.strategy is SamplingStrategy.SEQUENTIAL or not self.effective_shuffle:
            raise ValueError(
                f"shard_block={k} shuffles by blocks of sources, but this plan is not shuffled "
                "(strategy='sequential' or shuffle=False already reads the sources in order)"
            )
        if self.pack_duration is not None or self.pack_tokens is not None:
            raise ValueError(
                f"shard_block={k} does not apply to packed plans (pack_duration, pack_tokens)"
            )
        if self.mixture is not None or self.mix_batches != _DEFAULTS["mix_batches"]:
            raise ValueError(
                f"shard_block={k} applies to one corpus: a mixture takes its cuts by quotas, "
                "not by blocks of shards"
            )

    def check_one_corpus(self) -> None:
        """Raise if a mixture option is set: those need named sources (a mapping)."""
        changed = [n for n in _MIXTURE_FIELDS if getattr(self, n) != _DEFAULTS[n]]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} only apply to a mixture: give the sampler a mapping of "
                "name -> source (and mixture=...), or leave them out for one corpus"
            )

    def _check_buckets(self) -> None:
        """Bucket edges and per-bucket caps agree with the bucket counts."""
        if self.bucket_edges is not None:
            e = self.bucket_edges
            if not all(is_real(x) and math.isfinite(x) for x in e):
                raise ValueError(f"bucket_edges={e!r} must hold finite numbers")
            if any(b <= a for a, b in itertools.pairwise(e)):
                raise ValueError(f"bucket_edges={e!r} must be strictly increasing")
            implied = len(e) + 1
            if self.num_buckets == _DEFAULTS["num_buckets"] and implied != self.num_buckets:
                object.__setattr__(self, "num_buckets", implied)  # the default yields to edges
            elif self.num_buckets != implied:
                raise ValueError(
                    f"num_buckets={self.num_buckets} disagrees with bucket_edges "
                    f"({len(e)} edges make {implied} buckets)"
                )
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
                if not all(is_real(x) and math.isfinite(x) for x in r) or any(
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

    # -- derived values ----------------------------------------------------------------------
    @property
    def effective_shuffle(self) -> bool:
        """``shuffle`` with ``None`` resolved (True unless SEQUENTIAL)."""
        if self.shuffle is None:
            return self.strategy is not SamplingStrategy.SEQUENTIAL
        return self.shuffle

    @property
    def quadratic_constant(self) -> float | None:
        """The ``q`` of ``d + d**2 / q``, or None when quadratic_duration is off."""
        q = self.quadratic_duration
        if q is None or q is False:
            return None
        if q is True:
            return DEFAULT_QUADRATIC_DURATION
        return float(q)

    @property
    def duration_buckets(self) -> int:
        """Number of (first-dimension) buckets: ``num_buckets`` for BUCKETED, else 1."""
        return self.num_buckets if self.strategy is SamplingStrategy.BUCKETED else 1

    @property
    def token_buckets(self) -> int:
        """Number of token sub-buckets per bucket (1: no 2D bucketing)."""
        if self.token_bucket_edges is not None:
            return len(self.token_bucket_edges[0]) + 1
        return self.num_token_buckets if self.num_token_buckets is not None else 1

    @property
    def total_buckets(self) -> int:
        """Number of flat buckets (``bucket * token_buckets + token_bucket``)."""
        return self.duration_buckets * self.token_buckets

    def replace(self, **changes: Any) -> SamplerConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (tuples become lists, the strategy its string)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}

    def changed_fields(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that hold their default: what a saved state keeps
        (a few hundred bytes however many options exist; :meth:`from_dict` restores the rest)."""
        return {k: v for k, v in self.to_dict().items() if v != _DEFAULT_DICT[k]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplerConfig:
        """Build from :meth:`to_dict` output (missing fields take their defaults).

        :raises ValueError: on an unknown key (named) or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a SamplerConfig dict must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            guesses = {u: close_name(str(u), known) for u in unknown}
            hint = "; ".join(f"{u!r}: did you mean {g!r}?" for u, g in guesses.items() if g)
            raise ValueError(
                f"unknown SamplerConfig field(s) {unknown}{' (' + hint + ')' if hint else ''}; "
                f"known fields are {sorted(known)}"
            )
        return cls(**dict(data))

    def to_json(self) -> str:
        """The config as a JSON string (see :meth:`to_dict`)."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> SamplerConfig:
        """Parse :meth:`to_json` output."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a SamplerConfig JSON document: {exc}") from None
        return cls.from_dict(data)

    def differences(
        self, other: SamplerConfig, ignore: frozenset[str] = frozenset()
    ) -> list[tuple[str, Any, Any]]:
        """``(field, self's value, other's value)`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [(k, mine[k], theirs[k]) for k in mine if k not in ignore and mine[k] != theirs[k]]


_DEFAULTS.update({f.name: f.default for f in fields(SamplerConfig)})


def _json_value(value: Any) -> Any:
    """A field's value as :meth:`SamplerConfig.to_dict` writes it."""
    if isinstance(value, SamplingStrategy):
        return value.value
    if isinstance(value, Mixture):
        return value.to_dict()
    if isinstance(value, MixtureSchedule):
        return value.to_list()
    if isinstance(value, tuple):
        return [list(v) if isinstance(v, tuple) else v for v in value]
    return value


_DEFAULT_DICT: dict[str, Any] = {name: _json_value(v) for name, v in _DEFAULTS.items()}
