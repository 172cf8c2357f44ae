"""Stage 1b, quotas: the epoch's selection of a mixture — which cuts of each source, how often.

Each source ``s`` (its cuts that pass the filters, in index order: ``n`` cuts, ``D`` microseconds)
is an endless *stream*: cycle ``c`` is a permutation of its cuts keyed by ``(seed, c, source)``
(the identity without shuffling), cycles one after another. Epoch ``e`` takes a contiguous run of
the stream, starting where epoch ``e - 1`` stopped, so a source is drawn without replacement
across epochs: an upsampled source goes through fresh permutations ("exhaust, then reshuffle"),
a downsampled one continues where it stopped, and after any number of epochs every cut has been
taken ``floor`` or ``ceil`` of its fair count. The run's length is the source's quota
(:mod:`discoseq.mixture`): a count of cuts, or an hours target whose ends are the cut boundaries
nearest to the cumulative targets (so the hours are within one cut of the target, and epochs
tile the stream). Positions are a pure function of ``(seed, epoch, config, sources)``: no cursor
is kept anywhere, and the state stays a few hundred bytes.

The selection is a multiset of rows; the later stages plan *positions* in it (a row taken twice
is two positions), and a position's *round* (0 for a row's first copy in the epoch, 1 for its
second, ...) keeps two copies of a cut out of one batch.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from discoseq._core import rng
from discoseq.config import SamplerConfig
from discoseq.mixture import Mixture, MixtureEntry, check_sources

__all__ = ["SourceLayout", "SourceStats", "select_epoch"]

PURPOSE_SOURCE = 4 << 32
US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND


@dataclass(frozen=True)
class SourceLayout:
    """Named sources as row ranges: source ``s`` holds rows ``offsets[s]:offsets[s + 1]``."""

    names: tuple[str, ...]
    offsets: np.ndarray

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.names) + 1:
            raise ValueError(f"{len(self.names)} sources need {len(self.names) + 1} offsets")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"source names {list(self.names)} repeat")


@dataclass(frozen=True)
class SourceStats:
    """One source in one epoch: ``size`` cuts (``hours``) after the filters, the quota asked
    (``unit`` ``"cuts"`` or ``"hours"``, ``asked``), what the selection holds (``selected``
    cuts, ``selected_hours``, of which ``repeats`` are second or later copies), and what the
    plan holds: ``planned`` cuts (``planned_hours``) in its batches, ``padding`` cuts repeated
    in the tail padding, ``dropped`` cuts in batches that ``drop_last`` dropped. Selected cuts
    that are not planned were excluded as oversize or delivered before an elastic resize."""

    name: str
    size: int
    hours: float
    unit: str
    asked: float
    selected: int
    selected_hours: float
    repeats: int
    planned: int = 0
    planned_hours: float = 0.0
    padding: int = 0
    dropped: int = 0

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Quota:
    unit: str  # "cuts" or "hours"
    amount: int  # cuts, or microseconds


def _source_id(name: str) -> int:
    return zlib.crc32(name.encode())


def _largest_remainder(total: int, shares: Sequence[float]) -> list[int]:
    """Integers proportional to ``shares`` that add up to ``total`` exactly."""
    exact = [total * s for s in shares]
    out = [math.floor(x) for x in exact]
    left = total - sum(out)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:left]:
        out[i] += 1
    return out


class _Quotas:
    """Per-epoch quotas of every source of a mixture over given source sizes."""

    def __init__(
        self, mixture: Mixture, config: SamplerConfig, sizes: dict[str, int], us: dict[str, int]
    ) -> None:
        self.mixture = mixture
        self.config = config
        self.sizes = sizes
        self.us = us
        self.schedule = config.schedule

    def _hours_of(self, entry: MixtureEntry) -> float:
        return sum(self.us[leaf.name] for leaf in entry.leaves() if not leaf.fixed) / US_PER_HOUR

    def _shares(
        self,
        entries: Sequence[MixtureEntry],
        temperature: float,
        weights: dict[str, float],
        share: float,
        out: dict[str, float],
    ) -> None:
        weighted = [e for e in entries if not e.fixed and any(not x.fixed for x in e.leaves())]
        raw = []
        for e in weighted:
            w = weights.get(e.name, e.weight)
            raw.append(self._hours_of(e) ** temperature if w is None else w)
        total = sum(raw)
        for e, w in zip(weighted, raw, strict=True):
            part = share * (w / total if total > 0 else 1.0 / len(weighted))
            if e.children is None:
                out[e.name] = part
            else:
                t = temperature if e.temperature is None else e.temperature
                self._shares(e.children, t, weights, part, out)

    def of_epoch(self, epoch: int) -> dict[str, _Quota]:
        cfg = self.config
        weights = {} if self.schedule is None else self.schedule.weights_at(epoch)
        quotas: dict[str, _Quota] = {}
        fixed_cuts = 0
        fixed_us = 0
        for leaf in self.mixture.leaves():
            n = self.sizes[leaf.name]
            if leaf.repeat is not None:
                count = round(leaf.repeat * n)
            elif leaf.choose is not None:
                count = leaf.choose
            else:
                continue
            quotas[leaf.name] = _Quota("cuts", count)
            fixed_cuts += count
            fixed_us += round(count * self.us[leaf.name] / n) if n else 0
        shares: dict[str, float] = {}
        self._shares(self.mixture.entries, cfg.temperature, weights, 1.0, shares)
        names = list(shares)
        if not names:
            return quotas
        if cfg.epoch_cuts is not None:
            budget = cfg.epoch_cuts - fixed_cuts
            if budget < 0:
                raise ValueError(
                    f"epoch_cuts={cfg.epoch_cuts} is smaller than the {fixed_cuts} cuts of the "
                    "repeat/choose sources: nothing is left for the weighted ones"
                )
            for name, count in zip(names, _largest_remainder(budget, list(shares.values())),
                                   strict=True):  # fmt: skip
                quotas[name] = _Quota("cuts", count)
            return quotas
        if cfg.epoch_hours is not None:
            budget = round(cfg.epoch_hours * US_PER_HOUR) - fixed_us
            if budget < 0:
                raise ValueError(
                    f"epoch_hours={cfg.epoch_hours} is less than the "
                    f"{fixed_us / US_PER_HOUR:.3f} h of the repeat/choose sources: nothing is "
                    "left for the weighted ones"
                )
        else:  # one natural pass over the weighted sources
            budget = sum(self.us[n] for n in names)
        for name, amount in zip(names, _largest_remainder(budget, list(shares.values())),
                                strict=True):  # fmt: skip
            quotas[name] = _Quota("hours", amount)
        return quotas

    def stream_start(self, name: str, epoch: int) -> int:
        """Cuts (or microseconds) of source ``name``'s stream taken by the epochs before
        ``epoch``: a sum over them, constant after the schedule's last point."""
        if self.schedule is None:
            return epoch * self.of_epoch(0)[name].amount
        last = self.schedule.points[-1][0]
        head = sum(self.of_epoch(e)[name].amount for e in range(min(epoch, last + 1)))
        return head + max(0, epoch - last - 1) * self.of_epoch(last + 1)[name].amount


class _Stream:
    """The endless stream of one source's (filtered) rows: cycle ``c`` is a keyed permutation."""

    def __init__(self, rows: np.ndarray, dur_us: np.ndarray, seed: int, name: str, shuffle: bool):
        self.rows = rows
        self.dur_us = dur_us  # of ``rows``, in microseconds (exact integer sums)
        self.n = int(rows.shape[0])
        self.total_us = int(dur_us.sum())
        self.seed = seed
        self.sid = _source_id(name)
        self.shuffle = shuffle

    def cycle(self, c: int) -> np.ndarray:
        """Positions ``c * n .. (c + 1) * n`` of the stream, as indices into ``rows``."""
        order = np.arange(self.n, dtype=np.int64)
        if self.shuffle:
            rng.shuffle(order, rng.derive_key(self.seed, c, PURPOSE_SOURCE | self.sid))
        return order

    def take(self, start: int, stop: int) -> np.ndarray:
        """The rows at stream positions ``[start, stop)``."""
        parts = []
        n = self.n
        for c in range(start // n, (stop - 1) // n + 1) if stop > start else ():
            lo, hi = max(start - c * n, 0), min(stop - c * n, n)
            if lo == 0 and hi == n:  # a whole cycle: its order is the later stages' to choose
                parts.append(self.rows)
            else:
                parts.append(self.rows[self.cycle(c)[lo:hi]])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def boundary(self, t_us: int) -> int:
        """The stream position of the cut boundary nearest to ``t_us`` microseconds into the
        stream (ties: the earlier boundary)."""
        c, r = divmod(t_us, self.total_us)
        if r == 0:
            return c * self.n
        cum = np.concatenate([[0], np.cumsum(self.dur_us[self.cycle(c)])])
        k = int(np.searchsorted(cum, r))  # cum[k-1] < r <= cum[k]
        if cum[k] - r >= r - cum[k - 1]:
            k -= 1
        return c * self.n + k


def select_epoch(
    duration: np.ndarray,
    keep: np.ndarray | None,
    layout: SourceLayout,
    config: SamplerConfig,
    epoch: int,
) -> tuple[np.ndarray, tuple[SourceStats, ...]]:
    """The rows of ``epoch`` (a multiset, in stream order source by source) and what each
    source contributed. ``keep``: the rows that passed the filters (None: all)."""
    mixture = config.mixture_spec or Mixture.natural(layout.names)
    check_sources(mixture, layout.names)
    by_name = {leaf.name: leaf for leaf in mixture.leaves()}
    us_all = np.rint(duration * US_PER_SECOND).astype(np.int64)
    streams: dict[str, _Stream] = {}
    sizes: dict[str, int] = {}
    totals: dict[str, int] = {}
    for s, name in enumerate(layout.names):
        lo, hi = int(layout.offsets[s]), int(layout.offsets[s + 1])
        rows = np.arange(lo, hi, dtype=np.int64)
        if keep is not None:
            rows = rows[keep[lo:hi]]
        stream = _Stream(rows, us_all[rows], config.seed, name, config.effective_shuffle)
        streams[name], sizes[name], totals[name] = stream, stream.n, stream.total_us
    quotas = _Quotas(mixture, config, sizes, totals)
    this_epoch = quotas.of_epoch(epoch)
    parts = []
    stats = []
    for name in layout.names:
        q, stream, leaf = this_epoch[name], streams[name], by_name[name]
        if q.amount > 0 and stream.n == 0:
            raise ValueError(
                f"mixture source {name!r} has no cuts (after the filters) but a quota of "
                f"{q.amount if q.unit == 'cuts' else q.amount / US_PER_HOUR} {q.unit}"
            )
        start = quotas.stream_start(name, epoch)
        if q.unit == "cuts":
            a, b = start, start + q.amount
        else:
            a, b = (
                (stream.boundary(start), stream.boundary(start + q.amount)) if q.amount else (0, 0)
            )
        if leaf.unique and b - a > stream.n:
            asked = q.amount if q.unit == "cuts" else f"{q.amount / US_PER_HOUR:.3f} h"
            raise ValueError(
                f"mixture source {name!r} is unique but its quota ({asked}) needs {b - a} cuts "
                f"of its {stream.n}: a cut would be taken twice in one epoch"
            )
        taken = stream.take(a, b)
        parts.append(taken)
        stats.append(
            SourceStats(
                name=name,
                size=stream.n,
                hours=stream.total_us / US_PER_HOUR,
                unit=q.unit,
                asked=float(q.amount) if q.unit == "cuts" else q.amount / US_PER_HOUR,
                selected=int(taken.shape[0]),
                selected_hours=float(us_all[taken].sum()) / US_PER_HOUR,
                repeats=int(taken.shape[0] - np.unique(taken).shape[0]),
            )
        )
    rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return rows.astype(np.int64, copy=False), tuple(stats)


def rounds_of(rows: np.ndarray) -> np.ndarray | None:
    """Each position's round: how many earlier positions hold the same row (None: no row
    repeats, every round is 0)."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    if sorted_rows.shape[0] < 2 or not (sorted_rows[1:] == sorted_rows[:-1]).any():
        return None
    starts = np.ones(sorted_rows.shape[0], dtype=bool)
    starts[1:] = sorted_rows[1:] != sorted_rows[:-1]
    idx = np.arange(sorted_rows.shape[0])
    run_start = np.maximum.accumulate(np.where(starts, idx, 0))
    rounds = np.empty(rows.shape[0], dtype=np.int64)
    rounds[order] = idx - run_start
    return rounds
