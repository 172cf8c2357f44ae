"""Stage 1, selection: the columns a configuration needs, checked, and the rows that the later
stages plan (for a mixture, the epoch's selection, :mod:`discoseq.plan.quota`: a multiset of
index rows, planned as one corpus plans its kept rows).

Filters are vectorised masks applied in this order; a row is counted under the first reason
that removes it: the caller's ``mask``, ``min_duration``, ``max_duration_per_cut``,
``max_tokens_per_second`` (rows without text, ``num_tokens == -1``, are kept: there is nothing to
judge). Memory: one boolean mask (1 B/cut) and the kept row ids (8 B/cut), only when a filter is
active. For a mixture the filters remove rows before the quotas are taken, and the caller's
``mask`` then removes *positions* of the selection (places in its array of rows); the
selection's rows take 8 B per position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from discoseq._checks import close_name
from discoseq.config import SamplerConfig
from discoseq.plan import scratch
from discoseq.plan.quota import Blocks, Copies, SourceLayout, SourceStats, select_epoch
from discoseq.strategy import SamplingStrategy

__all__ = ["FILTER_REASONS", "Selection", "filters_rows", "select_rows"]

FILTER_REASONS = ("mask", "min_duration", "max_duration_per_cut", "max_tokens_per_second")


@dataclass
class Selection:
    """The epoch's rows and the columns the later stages read.

    :param columns: contiguous typed columns (float64 ``duration``, int64 others), only the
        ones the configuration needs.
    :param rows: the rows to plan: one corpus, the kept row ids in index order, or None for
        "every row" (an unfiltered plan allocates no index array for it); a mixture, the
        epoch's selection (index rows, a cut taken twice is there twice, see
        :class:`~discoseq.plan.quota.EpochSelection`) less the positions the mask removes.
    :param cuts_in: rows in the columns.
    :param filtered: rows removed per reason (see FILTER_REASONS).
    :param duration_bounds: min and max of the duration column (``(1.0, 0.0)`` when empty):
        they bracket the durations of the rows to plan.
    :param blocks: a mixture's selection in runs of one source and one round (0 for a row's
        first copy in the epoch, 1 for its second, ...), see
        :class:`~discoseq.plan.quota.Blocks`; None without a mixture.
    :param sources: what each source of a mixture contributed.
    :param copies: the rows a mixture takes more than once (None: none), see
        :class:`~discoseq.plan.quota.Copies`.
    :param source_offsets: a mixture's source row ranges (source ``s`` holds rows
        ``source_offsets[s]:source_offsets[s + 1]``).
    :param selection_size: a mixture's positions (the selection's rows before the mask).
    :param owns_duration: the ``duration`` column is a copy made for this plan alone (a shard
        corpus's, :meth:`~discoseq.index.multi.MultiIndex.columns`' ``owned_copy``): once read,
        its memory may hold the plan's rows (:meth:`take_duration_buffer`).
    """

    columns: dict[str, np.ndarray]
    rows: np.ndarray | None
    cuts_in: int
    filtered: dict[str, int]
    duration_bounds: tuple[float, float]
    blocks: Blocks | None = None
    sources: tuple[SourceStats, ...] = ()
    copies: Copies | None = None
    source_offsets: np.ndarray | None = None
    selection_size: int = 0
    owns_duration: bool = False

    @property
    def is_mixture(self) -> bool:
        return self.blocks is not None

    @property
    def num_positions(self) -> int:
        """What the caller's mask is over: index rows, or a mixture's selection."""
        return self.selection_size if self.is_mixture else self.cuts_in

    @property
    def num_rows(self) -> int:
        """Rows that remain to plan (after the mask)."""
        return self.cuts_in if self.rows is None else int(self.rows.shape[0])

    def take_duration_buffer(self) -> np.ndarray | None:
        """The buffer of the duration column when the selection owns it (else None), taken: the
        column is read no more, and the caller may write over its memory."""
        if not self.owns_duration:
            return None
        col = self.columns["duration"]
        self.columns["duration"] = np.empty(0, dtype=np.float64)
        self.owns_duration = False
        return col if col.base is None else col.base

    def column(self, name: str) -> np.ndarray:
        """A column, or an empty one when the configuration does not need it (the kernels take
        every column and read only those their options use)."""
        empty = np.empty(0, dtype=np.float64 if name == "duration" else np.int64)
        return self.columns.get(name, empty)


def needed_columns(config: SamplerConfig) -> list[str]:
    """The columns ``config`` reads, ``duration`` always."""
    needed = {"duration"}
    if config.max_frames is not None or _keyed_on_frames(config):
        needed.add("num_frames")
    if config.strategy is SamplingStrategy.BUCKETED and config.bucket_method == "num_features":
        needed.add("num_features")
    if (
        config.token_buckets > 1
        or config.max_tokens_per_second is not None
        or config.max_tokens is not None
        or config.pack_tokens is not None
    ):
        needed.add("num_tokens")  # read from the config's token_column
    if config.shard_block is not None:
        needed.add("source_id")  # the shard blocks (discoseq.plan.shardblock)
    return sorted(needed)


def _keyed_on_frames(config: SamplerConfig) -> bool:
    return config.strategy is SamplingStrategy.BUCKETED and config.bucket_method != "duration"


def select_rows(
    columns: Mapping[str, np.ndarray],
    config: SamplerConfig,
    mask: np.ndarray | None,
    epoch: int,
    sources: SourceLayout | None = None,
) -> Selection:
    """Check and type the needed columns, apply the filters (and a mixture's quotas), check the
    kept rows have the values the configuration needs."""
    # one corpus: the durations in a copy of the plan's own, when the columns are made on
    # demand (a shard corpus), so the plan can reuse its memory
    cols, bounds, owned = _prepare_columns(
        columns, config, check_duration=sources is None, reuse=sources is not None
    )
    n = int(cols["duration"].shape[0])
    if sources is not None:
        if int(sources.offsets[-1]) != n:
            raise ValueError(f"the sources hold {int(sources.offsets[-1])} rows, the columns {n}")
        return _select_mixture(cols, config, mask, epoch, sources, owned)
    config.check_one_corpus()
    keep, filtered = _apply_filters(cols, config, mask)
    _check_present(cols, keep, config)
    rows = None if keep is None else np.flatnonzero(keep).astype(np.int64, copy=False)
    return Selection(cols, rows, n, filtered, bounds, owns_duration=owned)


def _select_mixture(
    cols: dict[str, np.ndarray],
    config: SamplerConfig,
    mask: np.ndarray | None,
    epoch: int,
    sources: SourceLayout,
    owned: bool,
) -> Selection:
    n = int(cols["duration"].shape[0])
    keep, filtered = _apply_filters(cols, config, None)
    chosen = select_epoch(cols["duration"], keep, sources, config, epoch)
    rows = chosen.rows
    m = int(rows.shape[0])
    if mask is not None:
        keep_pos = np.asarray(mask)
        if keep_pos.dtype != np.bool_ or keep_pos.shape != (m,):
            raise ValueError(
                f"mask must be a boolean array over the epoch's {m} selected positions, got "
                f"{keep_pos.dtype} {keep_pos.shape}"
            )
        filtered["mask"] = int(m - np.count_nonzero(keep_pos))
        rows, whole = rows[keep_pos], rows
        scratch.give_back(whole)  # the selection's buffer: the next plan reuses it
    _check_present_rows(cols, rows, config)
    # the column's bounds bracket the selection's durations: enough for estimating edges (the
    # selection checks the column and finds them with its sources, once per process)
    return Selection(cols, rows, n, filtered, chosen.bounds, chosen.blocks, chosen.sources,
                     chosen.copies, sources.offsets, m, owned)  # fmt: skip


def _prepare_columns(
    columns: Mapping[str, np.ndarray],
    config: SamplerConfig,
    check_duration: bool = True,
    reuse: bool = False,
) -> tuple[dict[str, np.ndarray], tuple[float, float], bool]:
    """Contiguous typed columns, the bounds of the duration column (``check_duration``: also
    checked to be positive finite seconds; else ``(1.0, 0.0)``, a mixture's selection does
    both), and whether that column is a copy nobody else holds (asked of a mapping that makes
    one, its ``owned_copy``; with ``reuse``, in memory kept between plans,
    :mod:`~discoseq.plan.scratch`, which the planner hands back)."""
    if "duration" not in columns:
        raise ValueError(f"columns must hold 'duration'; got {sorted(columns)}")
    needed = needed_columns(config)
    source = {name: config.token_column if name == "num_tokens" else name for name in needed}
    if "num_tokens" in needed and config.token_column not in columns:
        close = close_name(config.token_column, columns)
        typo = f"did you mean {close!r}? Else " if close else ""
        raise ValueError(
            f"token_column={config.token_column!r} is not a column of the index (columns: "
            f"{sorted(columns)}); this configuration reads text tokens from it: {typo}add it "
            f"with `discoseq-index add-column INDEX --name {config.token_column} --tokenizer "
            "SPEC` (to every index of a mixture or of shards)"
        )
    missing = sorted(set(source.values()) - set(columns))
    if missing:
        raise ValueError(f"columns {missing} are needed by this configuration but not given")
    out: dict[str, np.ndarray] = {}
    n = None
    owned = None
    make_copy = getattr(columns, "owned_copy", None)
    rows = getattr(columns, "num_rows", None)
    if make_copy is not None and reuse and isinstance(rows, int):
        buf = scratch.empty(rows, np.float64)
        owned = make_copy("duration", buf)
        if owned is None:  # one index: read in place
            scratch.give_back(buf)
    elif make_copy is not None:
        owned = make_copy("duration")
    for name in needed:
        col = np.asarray(columns[source[name]]) if name != "duration" or owned is None else owned
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
    if not check_duration:
        return out, (1.0, 0.0), owned is not None
    lo, hi = (float(d.min()), float(d.max())) if d.shape[0] else (1.0, 0.0)
    if d.shape[0] and not (lo > 0 and hi < np.inf):
        bad = int(np.count_nonzero(~((d > 0) & (d < np.inf))))
        raise ValueError(
            f"column 'duration' has {bad} rows that are not positive finite seconds; "
            "fix or filter them (mask=...) before planning"
        )
    return out, (lo, hi), owned is not None


def filters_rows(config: SamplerConfig, mask: np.ndarray | None) -> bool:
    """Whether the selection may leave rows out (a mask or a filter of :func:`_apply_filters`)."""
    # the reasons after "mask" are the config fields of the filters
    return mask is not None or any(getattr(config, r) is not None for r in FILTER_REASONS[1:])


def _apply_filters(
    cols: dict[str, np.ndarray], config: SamplerConfig, mask: np.ndarray | None
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


def _present_names(config: SamplerConfig) -> list[str]:
    """The columns that must hold no -1 (missing) in a planned row: every needed column but
    duration; tokens only as 2D keys (the filter keeps cuts without text, the token cap counts
    them as 0)."""
    return [
        n
        for n in needed_columns(config)
        if n != "duration" and (n != "num_tokens" or config.token_buckets > 1)
    ]


def _check_present(
    cols: dict[str, np.ndarray], keep: np.ndarray | None, config: SamplerConfig
) -> None:
    """The columns that bucketing and caps read hold no -1 (missing) in a kept row."""
    for name in _present_names(config):
        col = cols[name]
        if col.shape[0] == 0 or col.min() >= 0:  # nothing missing: one reduction, no mask
            continue
        neg = col < 0
        _refuse_missing(name, int(np.count_nonzero(neg if keep is None else neg & keep)), config)


def _check_present_rows(
    cols: dict[str, np.ndarray], rows: np.ndarray, config: SamplerConfig
) -> None:
    """As :func:`_check_present`, for a mixture's selected rows (a row taken twice counts
    twice)."""
    for name in _present_names(config):
        col = cols[name]
        if col.shape[0] == 0 or col.min() >= 0:  # nothing missing: one reduction, no gather
            continue
        _refuse_missing(name, int(np.count_nonzero(np.take(col, rows) < 0)), config)


def _refuse_missing(name: str, bad: int, config: SamplerConfig) -> None:
    """ValueError when ``bad`` planned rows miss column ``name`` (-1)."""
    if not bad:
        return
    column = config.token_column if name == "num_tokens" else name
    raise ValueError(
        f"column {column!r} is -1 (missing) in {bad} rows that survive filtering, but this "
        f"configuration needs it (bucket_method={config.bucket_method!r}, "
        f"max_frames={config.max_frames!r}, token buckets={config.token_buckets}); "
        "exclude those rows with mask=... or choose another bucket_method/limit"
    )
