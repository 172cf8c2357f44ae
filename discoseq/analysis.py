"""Statistics of an epoch plan: what a configuration does to a corpus, before any training.

:func:`analyze_plan` turns an :class:`~discoseq.plan.EpochPlan` and the duration column into a
JSON-safe dict (schema below); :func:`analyze` plans an epoch of an index (or of columns) under a
:class:`~discoseq.SamplerConfig` first. :func:`format_table`
renders the dict for a terminal and :func:`plot_analysis` draws it (matplotlib, the optional
``plot`` extra). ``discoseq analyze`` is the command-line front end. Neither torch nor Lhotse is
imported here.

Definitions
-----------
For batch ``i`` with ``n_i`` cuts of durations ``d_ij``, longest ``m_i = max_j d_ij``:

* **padding efficiency** = ``sum_ij d_ij / sum_i n_i * m_i``: the share of a padded batch tensor
  that is speech (1.0: no padding at all). Computed on durations, also with quadratic_duration.
* **batch fill** = the batch's duration cost (``n_i x`` the longest cut's cost, or the sum with
  ``limit_mode="sum"``; each cut's cost is ``d + d**2/q`` with quadratic_duration) divided by
  its duration cap (``bucket_max_duration`` of its bucket, else ``max_duration``); ``null`` when
  no duration cap is set. **Cuts fill** = ``n_i / max_cuts`` likewise.
* With ``pack_duration``/``pack_tokens`` a batch's rows are its packs: ``n_i`` counts packs and
  ``m_i`` is the longest pack (a ``[packs, longest]`` tensor); the ``packing`` entry has the
  efficiency of the packs themselves.
* **step balance** = mean over steps ``s`` of ``mean_r(n m) / max_r(n m)`` of the ``W`` batches
  ``s*W .. s*W+W-1`` (one per rank): the share of a synchronous DDP step that ranks are not
  waiting for the slowest one, with padded duration as the proxy of work (1.0: equal).

Every statistic over *batches* (the histograms, padding efficiency, fill, ranks, step balance)
includes the repeated tail batches (``repeats``), since those are trained on too. The *bucket*
table counts distinct cuts (repeats excluded), so its cuts and durations add up to
``totals.cuts_planned`` and ``totals.duration``.

Schema (``schema == "discoseq.analysis/1"``)
----------------------------------------------
``epoch``, ``world_size``, ``config`` (the :class:`~discoseq.SamplerConfig`, ``to_dict()``);
``totals``: ``cuts_in``, ``cuts_planned``, ``duration`` (s, distinct planned cuts),
``num_batches`` (global, repeats included), ``batches_per_rank``; ``filtered``: cuts removed by
each filter (``mask``, ``min_duration``, ``max_duration_per_cut``, ``max_tokens_per_second``) and
``total``; ``oversize``: ``cuts`` (that alone exceed a cap) and ``policy`` (``single``/
``exclude``); ``repeats``: ``batches``, ``cuts``, ``duration`` of the padding of the last step;
``drops``: ``batches``, ``cuts`` removed by ``drop_last``; ``batch_cuts`` and ``batch_duration``
(sum of a batch's durations, s): ``min``, ``mean``, ``median``, ``max`` and ``histogram``
(``edges``, ``counts``); ``padding``: ``efficiency``, ``duration``, ``padded_duration``;
``fill``: ``cap`` (the global cap or ``null``), ``mean``, ``min``, ``max``, ``histogram`` (or
``null`` without a duration cap); ``cuts_fill``: ``cap``, ``mean`` (or ``null`` without
max_cuts/bucket_max_cuts); ``buckets``: ``method``, ``edges``, ``token_edges`` and ``items`` (one
per flat bucket ``bucket * T + token_bucket``: ``bucket``, ``token_bucket``, ``low``/``high``
(key range ``(low, high]``, ``null`` when open), ``token_low``/``token_high``, ``batches``,
``cuts``, ``duration``, ``padding_efficiency``, ``mean_fill``, ``cap_duration``, ``cap_cuts``);
``ranks``: per-rank lists ``batches``, ``cuts``, ``duration``, ``padded_duration`` and
``balance``: ``equal_batch_counts``, ``duration_max_over_min``, ``duration_spread`` ((max - min)
/ mean), ``step_balance``; ``tokens`` (with ``max_tokens``, else ``null``): ``cap``,
``fill_mean``/``fill_min``/``fill_max`` (a batch's real tokens / the cap) and
``padding_efficiency`` (real tokens / cuts x the largest cost; with packs, packs x the largest
pack's cost); ``packing`` (with
``pack_duration``/``pack_tokens``, else ``null``): ``field``, ``length``, ``packs`` (of the
planned batches), ``efficiency`` (their real seconds or tokens / packs x length, packs of one
oversize cut left out), ``packs_per_batch`` (mean); ``sources`` (a mixture's,
else empty): per source ``name``,
``size``/``hours`` (after filters), ``unit``/``asked`` (its quota), ``selected``,
``selected_hours``, ``repeats``, ``planned``, ``planned_hours``, ``padding``, ``dropped``,
``cuts_share``/``hours_share`` (of the planned cuts/hours), ``coverage`` (distinct cuts
selected / size). Floats that are undefined (an empty plan) are ``null``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from discoseq.config import SamplerConfig
from discoseq.plan import EpochPlan, plan_epoch
from discoseq.plan.pack import token_costs_of
from discoseq.plan.quota import SourceLayout
from discoseq.plan.shardblock import sources_per_window

__all__ = ["SCHEMA", "analyze", "analyze_plan", "format_table", "plot_analysis"]

SCHEMA = "discoseq.analysis/1"
"""The ``schema`` value of :func:`analyze_plan`'s dict (changes when a key changes meaning)."""


def _f(x: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf)."""
    v = float(x)
    return v if math.isfinite(v) else None


def _ratio(num: float, den: float) -> float | None:
    return _f(num / den) if den else None


def _histogram(values: np.ndarray, bins: int, integer: bool) -> dict[str, list[Any]]:
    if values.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = float(values.min()), float(values.max())
    if integer:  # integer-aligned bins centred on whole numbers
        width = max(1, math.ceil((hi - lo + 1) / bins))
        nb = math.ceil((hi - lo + 1) / width)
        edges = lo - 0.5 + width * np.arange(nb + 1)
    else:
        edges = np.histogram_bin_edges(values, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    counts, edges = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _summary(values: np.ndarray, bins: int, integer: bool = False) -> dict[str, Any]:
    if values.size == 0:
        empty: dict[str, list[Any]] = {"edges": [], "counts": []}
        return {"min": None, "mean": None, "median": None, "max": None, "histogram": empty}
    return {
        "min": _f(values.min()),
        "mean": _f(values.mean()),
        "median": _f(np.median(values)),
        "max": _f(values.max()),
        "histogram": _histogram(values, bins, integer),
    }


def analyze_plan(
    plan: EpochPlan, duration: np.ndarray, *, bins: int = 20, tokens: np.ndarray | None = None
) -> dict[str, Any]:
    """Statistics of ``plan`` (see the module docstring for the definitions and the schema).

    :param plan: an epoch plan from :func:`~discoseq.plan.plan_epoch`.
    :param duration: the duration column the plan was made from (seconds per row).
    :param bins: number of histogram bins.
    :param tokens: each row's token cost (with ``max_tokens``; see
        :func:`~discoseq.plan.pack.token_costs_of`), for the ``tokens`` statistics.
    :return: a JSON-safe dict.
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins={bins!r} must be a positive integer")
    d = np.asarray(duration, dtype=np.float64)
    cfg = plan.config
    W = plan.world_size
    nb = plan.num_batches
    offsets = plan.batch_offsets
    sizes = np.diff(offsets).astype(np.int64)
    x = d[plan.rows]
    if nb:
        longest = np.maximum.reduceat(x, offsets[:-1])
        batch_dur = np.add.reduceat(x, offsets[:-1])
    else:
        longest = np.zeros(0)
        batch_dur = np.zeros(0)
    rows_per_batch = sizes  # what max_cuts counts: cuts, or packs with packing
    if plan.pack_offsets is not None and nb:  # a batch of packs is padded to its longest pack
        po = plan.pack_offsets
        pack_dur = np.add.reduceat(x, po[:-1]) if po.shape[0] > 1 else np.zeros(0)
        first = np.searchsorted(po, offsets)
        rows_per_batch = np.diff(first).astype(np.int64)
        longest = np.maximum.reduceat(pack_dur, first[:-1])
    padded = rows_per_batch * longest
    bucket = np.asarray(plan.bucket, dtype=np.int64)
    is_repeat = np.zeros(nb, dtype=bool)
    is_repeat[plan.padding_batches] = True
    stats = plan.stats

    # caps per batch (from the batch's bucket)
    T = cfg.token_buckets
    n_buckets = cfg.total_buckets
    cap_d = np.full(n_buckets, np.nan if cfg.max_duration is None else float(cfg.max_duration))
    if cfg.bucket_max_duration is not None:
        cap_d[:] = cfg.bucket_max_duration
    cap_c = np.full(n_buckets, np.nan if cfg.max_cuts is None else float(cfg.max_cuts))
    if cfg.bucket_max_cuts is not None:
        cap_c[:] = cfg.bucket_max_cuts
    fill_stats: dict[str, Any] | None = None
    fill = np.full(nb, np.nan)
    if not np.isnan(cap_d).all():
        fill = plan.cost / cap_d[bucket]
        fill_stats = {
            "cap": None if cfg.bucket_max_duration is not None else _f(cfg.max_duration),
            **{k: v for k, v in _summary(fill, bins).items() if k != "median"},
        }
    cuts_fill: dict[str, Any] | None = None
    if not np.isnan(cap_c).all():
        cf = rows_per_batch / cap_c[bucket]
        cuts_fill = {
            "cap": None if cfg.bucket_max_cuts is not None else cfg.max_cuts,
            "mean": _f(cf.mean()) if nb else None,
        }

    # buckets: distinct cuts (repeats excluded)
    own = ~is_repeat
    b_batches = np.bincount(bucket[own], minlength=n_buckets)
    b_cuts = np.bincount(bucket[own], weights=sizes[own], minlength=n_buckets)
    b_dur = np.bincount(bucket[own], weights=batch_dur[own], minlength=n_buckets)
    b_pad = np.bincount(bucket[own], weights=padded[own], minlength=n_buckets)
    b_fill = np.bincount(bucket[own], weights=np.nan_to_num(fill[own]), minlength=n_buckets)
    edges = [float(e) for e in plan.bucket_edges]
    token_edges = [[float(e) for e in row] for row in np.asarray(plan.token_edges)]
    items = []
    for flat in range(n_buckets):
        b, t = divmod(flat, T)
        te = token_edges[b] if T > 1 and b < len(token_edges) else []
        items.append(
            {
                "bucket": b,
                "token_bucket": t,
                "low": edges[b - 1] if b > 0 and edges else None,
                "high": edges[b] if b < len(edges) else None,
                "token_low": te[t - 1] if t > 0 and te else None,
                "token_high": te[t] if t < len(te) else None,
                "batches": int(b_batches[flat]),
                "cuts": int(b_cuts[flat]),
                "duration": float(b_dur[flat]),
                "padding_efficiency": _ratio(b_dur[flat], b_pad[flat]),
                "mean_fill": (
                    _ratio(b_fill[flat], b_batches[flat]) if fill_stats is not None else None
                ),
                "cap_duration": _f(cap_d[flat]),
                "cap_cuts": None if np.isnan(cap_c[flat]) else int(cap_c[flat]),
            }
        )

    # ranks: batch s*W + r is step s of rank r
    rank_of = np.arange(nb) % W
    r_batches = np.bincount(rank_of, minlength=W)
    r_cuts = np.bincount(rank_of, weights=sizes, minlength=W)
    r_dur = np.bincount(rank_of, weights=batch_dur, minlength=W)
    r_pad = np.bincount(rank_of, weights=padded, minlength=W)
    if nb:
        steps = padded.reshape(-1, W)
        mx = steps.max(axis=1)
        step_balance = _f(np.mean(steps.mean(axis=1) / mx))
    else:
        step_balance = None
    rep = plan.padding_batches
    return {
        "schema": SCHEMA,
        "epoch": plan.epoch,
        "world_size": W,
        "config": cfg.to_dict(),
        "totals": {
            "cuts_in": stats.cuts_in,
            "cuts_planned": stats.cuts_planned,
            "duration": float(stats.total_duration),
            "num_batches": nb,
            "batches_per_rank": plan.batches_per_rank,
        },
        "filtered": {
            **{k: int(v) for k, v in stats.filtered.items()},
            "total": stats.filtered_total,
        },
        "oversize": {"cuts": stats.oversize, "policy": stats.oversize_policy},
        "repeats": {
            "batches": int(rep.shape[0]),
            "cuts": int(sizes[rep].sum()),
            "duration": float(batch_dur[rep].sum()),
        },
        "drops": {"batches": stats.dropped_batches, "cuts": stats.dropped_cuts},
        "batch_cuts": _summary(sizes, bins, integer=True),
        "batch_duration": _summary(batch_dur, bins),
        "padding": {
            "efficiency": _ratio(batch_dur.sum(), padded.sum()),
            "duration": float(batch_dur.sum()),
            "padded_duration": float(padded.sum()),
        },
        "fill": fill_stats,
        "cuts_fill": cuts_fill,
        "tokens": _token_stats(plan, tokens, sizes),
        "packing": _packing_stats(plan),
        "buckets": {
            "method": cfg.bucket_method if T * cfg.duration_buckets > 1 else None,
            "edges": edges,
            "token_edges": token_edges if T > 1 else [],
            "items": items,
        },
        "ranks": {
            "batches": [int(v) for v in r_batches],
            "cuts": [int(v) for v in r_cuts],
            "duration": [float(v) for v in r_dur],
            "padded_duration": [float(v) for v in r_pad],
            "balance": {
                "equal_batch_counts": bool((r_batches == r_batches[0]).all()),
                "duration_max_over_min": _ratio(r_dur.max(), r_dur.min()),
                "duration_spread": _ratio(r_dur.max() - r_dur.min(), r_dur.mean()),
                "step_balance": step_balance,
            },
        },
        "sources": source_table(plan),
    }


def _packing_stats(plan: EpochPlan) -> dict[str, Any] | None:
    """The packs of a plan with ``pack_duration``/``pack_tokens`` (None without)."""
    field, length = plan.config.packing
    if field is None:
        return None
    return {
        "field": field,
        "length": length,
        "packs": plan.stats.packs,
        "efficiency": _f(plan.stats.pack_efficiency),
        "packs_per_batch": _ratio(plan.num_packs, plan.num_batches),
    }


def _token_stats(
    plan: EpochPlan, tokens: np.ndarray | None, sizes: np.ndarray
) -> dict[str, Any] | None:
    """Real tokens per batch against the budget: ``fill`` = a batch's tokens / ``max_tokens``
    (its share of the budget holding real tokens), and the padding efficiency of tokens."""
    cap = plan.config.max_tokens
    if cap is None or tokens is None:
        return None
    t = np.asarray(tokens, dtype=np.float64)[plan.rows]  # quadratic_tokens costs are fractional
    if plan.num_batches == 0:
        return {"cap": cap, "fill_mean": None, "fill_min": None, "fill_max": None,
                "padding_efficiency": None}  # fmt: skip
    starts = plan.batch_offsets[:-1]
    real = np.add.reduceat(t, starts)
    if plan.pack_offsets is None:
        padded = sizes * np.maximum.reduceat(t, starts)
    else:  # a batch of packs is padded to its largest pack, as its duration is
        po = plan.pack_offsets
        pack_cost = np.add.reduceat(t, po[:-1])
        first = np.searchsorted(po, plan.batch_offsets)
        padded = np.diff(first) * np.maximum.reduceat(pack_cost, first[:-1])
    fill = real / cap
    return {
        "cap": cap,
        "fill_mean": _f(fill.mean()),
        "fill_min": _f(fill.min()),
        "fill_max": _f(fill.max()),
        "padding_efficiency": _ratio(real.sum(), float(padded.sum())),
    }


def source_table(plan: EpochPlan) -> list[dict[str, Any]]:
    """Per source of a mixture (empty otherwise): the quota asked, what was selected and
    planned, shares of the planned cuts and hours, repeats, and the epoch's coverage of the
    source (distinct cuts selected / its size)."""
    sources = plan.stats.sources
    if not sources:
        return []
    cuts = sum(s.planned for s in sources)
    hours = sum(s.planned_hours for s in sources)
    return [
        {
            **s.to_dict(),
            "cuts_share": _ratio(s.planned, cuts),
            "hours_share": _ratio(s.planned_hours, hours),
            "coverage": _ratio(s.selected - s.repeats, s.size),
        }
        for s in sources
    ]


def analyze(
    source: Any,
    config: SamplerConfig,
    *,
    epoch: int = 0,
    world_size: int | None = None,
    bins: int = 20,
) -> dict[str, Any]:
    """Plan one epoch of ``source`` under ``config`` and return :func:`analyze_plan`'s dict.

    :param source: a :class:`~discoseq.CutIndex`, a :class:`~discoseq.index.multi.MultiIndex`
        (named: a mixture) or a mapping of columns (``duration``, and what the configuration
        needs: ``num_frames``, ``num_features``, ``num_tokens``).
    :param config: the :class:`~discoseq.SamplerConfig`.
    :param epoch: the epoch to plan.
    :param world_size: ranks of the simulated job; default the config's ``world_size`` when
        set, else 1. Nothing is detected from the environment.
    :param bins: number of histogram bins.
    """
    columns: Mapping[str, np.ndarray] = source if isinstance(source, Mapping) else source.columns
    layout = SourceLayout.of(source)
    world = world_size or config.world_size or 1
    plan = plan_epoch(columns, config, epoch, world, sources=layout)
    tokens = None
    if config.max_tokens is not None:
        tokens = token_costs_of(columns[config.token_column], columns["duration"], config)
    stats = analyze_plan(plan, columns["duration"], bins=bins, tokens=tokens)
    if config.shard_block is not None:
        stats["shard_block"] = shard_block_cost(columns, config, epoch, world, plan, stats)
    return stats


def shard_block_cost(
    columns: Mapping[str, np.ndarray],
    config: SamplerConfig,
    epoch: int,
    world: int,
    plan: EpochPlan,
    stats: Mapping[str, Any],
) -> dict[str, Any]:
    """What ``shard_block`` costs and buys: batches, mean fill and padding efficiency with and
    without it (the same epoch planned again without), and the distinct sources that 100
    consecutive batches of worker 0 of rank 0 read (``num_workers`` of the config, at least 1)."""
    base_config = dataclasses.replace(config, shard_block=None)
    base = plan_epoch(columns, base_config, epoch, world)
    base_stats = analyze_plan(base, columns["duration"])
    workers = max(config.num_workers, 1)
    src = np.asarray(columns["source_id"])

    def fill(s: Mapping[str, Any]) -> float | None:
        return None if s["fill"] is None else s["fill"]["mean"]

    return {
        "shard_block": config.shard_block,
        "num_batches": plan.num_batches,
        "num_batches_without": base.num_batches,
        "extra_batches": plan.num_batches - base.num_batches,
        "mean_fill": fill(stats),
        "mean_fill_without": fill(base_stats),
        "padding_efficiency": stats["padding"]["efficiency"],
        "padding_efficiency_without": base_stats["padding"]["efficiency"],
        "sources_per_100_batches": sources_per_window(plan, src, num_workers=workers),
        "sources_per_100_batches_without": sources_per_window(base, src, num_workers=workers),
    }


# -- terminal ---------------------------------------------------------------------------------


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.2f} h" if seconds >= 3600 else f"{seconds:,.1f} s"


def _options(cfg: Mapping[str, Any]) -> str:
    """The options of a plan's config that differ from the defaults (the limits first), short:
    what the report's first line says the plan was made with."""
    from discoseq.config import _DEFAULTS

    first = ("max_duration", "max_cuts", "max_frames", "max_tokens")
    skip = {"strategy", "world_size", "rank", "num_workers", "prefetch_factor", "drop_last"}
    keys = [k for k in first if k in cfg] + [k for k in cfg if k not in first]
    out = []
    for k in keys:
        v = cfg[k]
        if k in skip or k not in _DEFAULTS or v == _DEFAULTS[k] or v is None:
            continue
        text = repr(v) if isinstance(v, str) else str(v)
        out.append(f"{k}={text if len(text) <= 40 else text[:37] + '...'}")
    return ", ".join(out) if out else "defaults"


def format_table(stats: Mapping[str, Any], max_buckets: int = 40) -> str:
    """A readable plain-text report of :func:`analyze_plan`'s dict."""
    t, cfg = stats["totals"], stats["config"]
    W = stats["world_size"]
    lines: list[str] = []
    add = lines.append
    options = _options(cfg)
    add(f"plan of epoch {stats['epoch']}: strategy={cfg['strategy']}, {options}, world_size={W}")
    rows = [
        ("cuts in / planned", f"{t['cuts_in']:,} / {t['cuts_planned']:,}"),
        ("duration planned", _hours(t["duration"])),
        ("batches (global)", f"{t['num_batches']:,}"),
        (
            "batches per rank",
            f"{t['batches_per_rank']:,} on every rank"
            if stats["ranks"]["balance"]["equal_batch_counts"]
            else "UNEQUAL",
        ),
        ("padding efficiency", _fmt(stats["padding"]["efficiency"])),
    ]
    if stats["fill"] is not None:
        rows.append(("mean batch fill", f"{_fmt(stats['fill']['mean'])} of the duration cap"))
    if stats["cuts_fill"] is not None:
        rows.append(("mean cuts fill", f"{_fmt(stats['cuts_fill']['mean'])} of max_cuts"))
    if stats.get("tokens") is not None:
        tk = stats["tokens"]
        rows.append(
            (
                "token fill",
                f"mean {_fmt(tk['fill_mean'])} (min {_fmt(tk['fill_min'])}) of max_tokens="
                f"{tk['cap']:,}; token padding efficiency {_fmt(tk['padding_efficiency'])}",
            )
        )
    if stats.get("packing") is not None:
        pk = stats["packing"]
        rows.append(
            (
                "packing",
                f"{pk['packs']:,} packs of {pk['field']}={pk['length']:g}, efficiency "
                f"{_fmt(pk['efficiency'])}, {_fmt(pk['packs_per_batch'])} packs per batch",
            )
        )
    bc, bd = stats["batch_cuts"], stats["batch_duration"]
    rows += [
        (
            "cuts per batch",
            f"min {_fmt(bc['min'], '.0f')}  mean {_fmt(bc['mean'], '.1f')}  "
            f"median {_fmt(bc['median'], '.0f')}  max {_fmt(bc['max'], '.0f')}",
        ),
        (
            "batch duration (s)",
            f"min {_fmt(bd['min'], '.1f')}  mean {_fmt(bd['mean'], '.1f')}  "
            f"median {_fmt(bd['median'], '.1f')}  max {_fmt(bd['max'], '.1f')}",
        ),
        (
            "tail padding (batches again)",
            f"{stats['repeats']['batches']} batches, "
            f"{stats['repeats']['cuts']:,} cuts, {_hours(stats['repeats']['duration'])}",
        ),
        (
            "drops (drop_last)",
            f"{stats['drops']['batches']} batches, {stats['drops']['cuts']:,} cuts",
        ),
        ("oversize cuts", f"{stats['oversize']['cuts']:,} ({stats['oversize']['policy']})"),
    ]
    if stats.get("shard_block") is not None:  # the option's padding cost and what it buys
        sb = stats["shard_block"]
        rows.append(
            (
                f"shard_block={sb['shard_block']}",
                f"{sb['num_batches']:,} batches vs {sb['num_batches_without']:,} without "
                f"(+{sb['extra_batches']:,}); mean fill {_fmt(sb['mean_fill'])} vs "
                f"{_fmt(sb['mean_fill_without'])}; padding efficiency "
                f"{_fmt(sb['padding_efficiency'])} vs {_fmt(sb['padding_efficiency_without'])}; "
                f"sources per 100 batches of a worker {sb['sources_per_100_batches']:.1f} vs "
                f"{sb['sources_per_100_batches_without']:.1f}",
            )
        )
    rows += [
        ("filtered", ", ".join(f"{k} {v:,}" for k, v in stats["filtered"].items() if v) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]

    bal = stats["ranks"]["balance"]
    add("")
    add(
        f"ranks: duration max/min {_fmt(bal['duration_max_over_min'])}, spread "
        f"{_fmt(bal['duration_spread'], '.2%') if bal['duration_spread'] is not None else '-'}, "
        f"step balance {_fmt(bal['step_balance'])} (mean/max padded work per step)"
    )
    r = stats["ranks"]
    add(f"  {'rank':>4}  {'batches':>8}  {'cuts':>10}  {'duration':>12}  {'padded':>12}")
    shown = range(W) if W <= 16 else [*range(8), *range(W - 8, W)]
    for i in shown:
        add(
            f"  {i:>4}  {r['batches'][i]:>8,}  {r['cuts'][i]:>10,}  "
            f"{r['duration'][i]:>11,.1f}s  {r['padded_duration'][i]:>11,.1f}s"
        )

    items = [it for it in stats["buckets"]["items"] if it["batches"]] or []
    if len(stats["buckets"]["items"]) > 1:
        add("")
        method = stats["buckets"]["method"]
        two_d = bool(stats["buckets"]["token_edges"])
        add(f"buckets ({method}{' x num_tokens' if two_d else ''}; key range (low, high]):")
        head = f"  {'bucket':>7}  {'range':>17}"
        if two_d:
            head += f"  {'tokens':>15}"
        add(head + f"  {'batches':>8}  {'cuts':>9}  {'duration':>11}  {'pad eff':>7}  {'fill':>5}")
        for it in items[:max_buckets]:
            rng = f"{_fmt(it['low'], '.2f')}..{_fmt(it['high'], '.2f')}"
            label = f"{it['bucket']}" + (f".{it['token_bucket']}" if two_d else "")
            line = f"  {label:>7}  {rng:>17}"
            if two_d:
                line += (
                    f"  {_fmt(it['token_low'], '.0f') + '..' + _fmt(it['token_high'], '.0f'):>15}"
                )
            line += (
                f"  {it['batches']:>8,}  {it['cuts']:>9,}  {it['duration']:>10,.0f}s  "
                f"{_fmt(it['padding_efficiency']):>7}  {_fmt(it['mean_fill'], '.2f'):>5}"
            )
            add(line)
        if len(items) > max_buckets:
            add(f"  ... {len(items) - max_buckets} more buckets in the JSON")
    if stats.get("sources"):
        add("")
        add("sources (mixture; asked = the quota in its unit; copies = the cuts taken more than")
        add("  once in the epoch, the JSON's repeats):")
        add(
            f"  {'source':>12}  {'asked':>12}  {'selected':>9}  {'planned':>9}  {'hours':>9}  "
            f"{'cut share':>9}  {'h share':>7}  {'copies':>8}  {'coverage':>8}"
        )
        for s in stats["sources"]:
            asked = f"{s['asked']:,.0f} cuts" if s["unit"] == "cuts" else f"{s['asked']:,.2f} h"
            add(
                f"  {s['name']:>12}  {asked:>12}  {s['selected']:>9,}  {s['planned']:>9,}  "
                f"{s['planned_hours']:>8,.2f}h  {_fmt(s['cuts_share'], '.2%'):>9}  "
                f"{_fmt(s['hours_share'], '.2%'):>7}  {s['repeats']:>8,}  "
                f"{_fmt(s['coverage'], '.2f'):>8}"
            )
    return "\n".join(lines)


# -- figure -----------------------------------------------------------------------------------


def _bar_hist(ax: Any, hist: Mapping[str, Sequence[float]], color: str) -> None:
    e = np.asarray(hist["edges"])
    c = np.asarray(hist["counts"])
    if c.size:
        ax.bar(e[:-1], c, width=np.diff(e), align="edge", color=color, edgecolor="white", lw=0.5)


def _bucket_labels(items: Sequence[Mapping[str, Any]], two_d: bool) -> list[str]:
    """Tick labels of flat buckets: their upper edge (``>low`` for the last), or ``b.t`` in 2D."""
    labels = []
    for it in items:
        if two_d:
            labels.append(f"{it['bucket']}.{it['token_bucket']}")
        elif it["high"] is not None:
            labels.append(f"≤{it['high']:.3g}")
        elif it["low"] is not None:
            labels.append(f">{it['low']:.3g}")
        else:
            labels.append("all")
    return labels


def plot_analysis(stats: Mapping[str, Any], path: str | Path, *, dpi: int = 110) -> Path:
    """Draw :func:`analyze_plan`'s dict as one figure, in the format the suffix of ``path``
    names (``.png``, ``.svg``, ``.pdf``, ...): what a configuration does, to choose one.

    * padding per bucket (share of the padded audio that is padding; the epoch's as a line),
    * cuts per batch per bucket (mean; the cut caps where set; the epoch's range in a note),
    * batch fill (cost / cap, log scale, so the few under-filled batches show),
    * per-rank balance (speech and padded duration per rank, as % off the mean over ranks).

    Without buckets (random, sequential) the first two become the cuts-per-batch histogram;
    without a duration cap the fill panel shows speech per batch.

    :raises ImportError: when matplotlib is missing (``pip install "discoseq[plot]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            'plotting needs matplotlib: pip install "discoseq[plot]" (or pip install matplotlib)'
        ) from exc

    path = Path(path)
    t, cfg = stats["totals"], stats["config"]
    W = stats["world_size"]
    blue, orange, grey, green = "#3b75af", "#ef8636", "#7f7f7f", "#519e3e"
    sources = stats.get("sources") or []
    fig = plt.figure(figsize=(13, 12.5 if sources else 8.5), constrained_layout=True)
    grid = fig.add_gridspec(3 if sources else 2, 2)
    ax_pad, ax_cuts = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_fill, ax_ranks = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    if sources:
        _plot_sources(fig.add_subplot(grid[2, :]), sources, blue, orange)
    limits = ", ".join(
        f"{k}={cfg[k]:g}"
        for k in ("max_duration", "max_cuts", "max_frames", "quadratic_duration")
        if cfg.get(k) not in (None, False)
    )
    if cfg.get("bucket_max_duration") or cfg.get("bucket_max_cuts"):
        limits += (", " if limits else "") + "per-bucket caps"
    eff = stats["padding"]["efficiency"]
    fill_mean = stats["fill"]["mean"] if stats["fill"] else None
    fig.suptitle(
        f"{cfg['strategy']} plan, epoch {stats['epoch']}: {t['cuts_planned']:,} cuts "
        f"({_hours(t['duration'])}) in {t['num_batches']:,} batches, "
        f"{t['batches_per_rank']:,} per rank x {W} ranks ({limits})\n"
        f"padding efficiency {_fmt(eff)}   mean batch fill {_fmt(fill_mean)}   "
        f"tail padding {stats['repeats']['batches']}   drops {stats['drops']['batches']}   "
        f"oversize {stats['oversize']['cuts']}   filtered {stats['filtered']['total']}",
        fontsize=11,
    )

    items = stats["buckets"]["items"]
    bc = stats["batch_cuts"]
    cuts_note = (
        f"all batches: min {_fmt(bc['min'], '.0f')}, median {_fmt(bc['median'], '.0f')}, "
        f"mean {_fmt(bc['mean'], '.1f')}, max {_fmt(bc['max'], '.0f')}"
        if bc["mean"] is not None
        else "no batches"
    )
    if len(items) > 1:
        two_d = bool(stats["buckets"]["token_edges"])
        labels = _bucket_labels(items, two_d)
        x = np.arange(len(items))
        step = max(1, len(items) // 16)
        unit = {"duration": "s", "num_frames": "frames", "num_features": "elements"}.get(
            stats["buckets"]["method"] or "duration", ""
        )
        xlabel = "bucket (duration.token bucket)" if two_d else f"bucket (upper edge, {unit})"

        waste = [
            np.nan if it["padding_efficiency"] is None else 100 * (1 - it["padding_efficiency"])
            for it in items
        ]
        ax_pad.bar(x, waste, color=orange, label="padding in the bucket's batches")
        if eff is not None:
            ax_pad.axhline(
                100 * (1 - eff),
                color="black",
                ls="--",
                lw=1,
                label=f"whole epoch: {100 * (1 - eff):.1f} %",
            )
        ax_pad.set_title("Padding per bucket (lower is better: more buckets or sort_pool lower it)")
        ax_pad.set_ylabel("padding, % of the padded audio")
        ax_pad.set_xlabel(xlabel)
        ax_pad.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=8)
        ax_pad.legend(loc="upper center", fontsize=8)

        mean_cuts = [it["cuts"] / it["batches"] if it["batches"] else np.nan for it in items]
        ax_cuts.bar(x, mean_cuts, color=blue, label="mean cuts per batch")
        caps = [np.nan if it["cap_cuts"] is None else it["cap_cuts"] for it in items]
        if not np.isnan(caps).all():
            ax_cuts.plot(x, caps, "_", color="black", ms=12, mew=2, label="cut cap")
        top = np.nanmax([*mean_cuts, *caps, 1.0])
        ax_cuts.set_ylim(0, 1.2 * top)  # room for the legend above the bars and caps
        ax_cuts.set_title(f"Cuts per batch, per bucket ({cuts_note})", fontsize=10)
        ax_cuts.set_ylabel("cuts per batch")
        ax_cuts.set_xlabel(xlabel)
        ax_cuts.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=8)
        ax_cuts.legend(loc="upper right", fontsize=8)
    else:
        ax_pad.axis("off")
        ax_pad.text(
            0.5,
            0.5,
            f"one bucket ({cfg['strategy']}): padding efficiency {_fmt(eff)}\n"
            "(the bucketed strategy batches cuts of similar length, which pads less)",
            ha="center",
            va="center",
        )
        _bar_hist(ax_cuts, bc["histogram"], blue)
        if bc["mean"] is not None:
            ax_cuts.axvline(
                bc["mean"], color="black", ls="--", lw=1, label=f"mean {bc['mean']:.1f}"
            )
            ax_cuts.legend(loc="upper right", fontsize=8)
        ax_cuts.set_title(f"Cuts per batch ({cuts_note})", fontsize=10)
        ax_cuts.set_xlabel("cuts per batch")
        ax_cuts.set_ylabel("batches")

    f = stats["fill"]
    if f is not None:
        _bar_hist(ax_fill, f["histogram"], green)
        ax_fill.axvline(1.0, color="black", lw=1, label="the cap (fill 1)")
        if f["mean"] is not None:
            ax_fill.axvline(
                f["mean"],
                color="black",
                ls="--",
                lw=1,
                label=f"mean {f['mean']:.3f} (min {f['min']:.3f}, max {f['max']:.3f})",
            )
        ax_fill.set_title("How full batches are (log scale: the few under-filled ones show)")
        ax_fill.set_xlabel("batch fill = the batch's duration cost / its cap")
        ax_fill.set_xlim(0, 1.05)
    else:
        bd = stats["batch_duration"]
        _bar_hist(ax_fill, bd["histogram"], green)
        if bd["mean"] is not None:
            ax_fill.axvline(
                bd["mean"], color="black", ls="--", lw=1, label=f"mean {bd['mean']:.1f} s"
            )
        ax_fill.set_title("Speech per batch (no duration cap set; log scale)")
        ax_fill.set_xlabel("seconds of speech in a batch")
    ax_fill.set_yscale("log")
    ax_fill.set_ylabel("batches (log scale)")
    if ax_fill.get_legend_handles_labels()[0]:
        ax_fill.legend(loc="upper left", fontsize=8)

    r = stats["ranks"]
    bal = r["balance"]
    counts = "equal" if bal["equal_batch_counts"] else "UNEQUAL"
    ax_ranks.set_title(
        f"Per-rank balance: {r['batches'][0] if W else 0:,} batches each ({counts}); speech "
        f"max/min {_fmt(bal['duration_max_over_min'])},\nstep balance "
        f"{_fmt(bal['step_balance'])} (share of a step no rank waits for the slowest; 1 = none)",
        fontsize=10,
    )
    dur = np.array(r["duration"], dtype=float) / 3600
    pad = np.array(r["padded_duration"], dtype=float) / 3600
    if W and dur.mean() > 0:
        xr = np.arange(W)
        width = 0.4
        ax_ranks.bar(
            xr - width / 2,
            100 * (dur / dur.mean() - 1),
            width,
            color=blue,
            label=f"speech (mean {dur.mean():.2f} h per rank)",
        )
        ax_ranks.bar(
            xr + width / 2,
            100 * (pad / pad.mean() - 1),
            width,
            color=grey,
            label=f"padded = work (mean {pad.mean():.2f} h per rank)",
        )
        ax_ranks.axhline(0, color="black", lw=1)
        if W <= 32:
            ax_ranks.set_xticks(xr)
        ax_ranks.legend(loc="best", fontsize=8)
    ax_ranks.set_xlabel("rank")
    ax_ranks.set_ylabel("% above (below) the mean over ranks")

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _plot_sources(ax: Any, sources: Sequence[Mapping[str, Any]], asked: str, got: str) -> None:
    """A mixture's sources: the hours share asked (a cut quota at the source's mean cut
    duration) next to the share planned, with each source's repeats and coverage."""
    names = [s["name"] for s in sources]
    asked_h = [
        s["asked"] if s["unit"] == "hours" else s["asked"] * s["hours"] / max(s["size"], 1)
        for s in sources
    ]
    total = sum(asked_h) or 1.0
    x = np.arange(len(names))
    width = 0.4
    ax.bar(x - width / 2, [100 * h / total for h in asked_h], width, color=asked,
           label="asked (hours share)")  # fmt: skip
    ax.bar(x + width / 2, [100 * (s["hours_share"] or 0) for s in sources], width, color=got,
           label="planned (hours share)")  # fmt: skip
    for i, s in enumerate(sources):
        ax.annotate(
            f"{s['planned']:,} cuts, {s['planned_hours']:,.1f} h\ncopies {s['repeats']:,}, "
            f"coverage {_fmt(s['coverage'], '.2f')}",
            (x[i], 0),
            xytext=(0, -34),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(x, names)
    ax.set_ylabel("% of the epoch's hours")
    ax.set_title(
        "Mixture: each source's share of the epoch, asked vs planned (coverage: distinct cuts "
        "of the source in the epoch / its size)",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8)
