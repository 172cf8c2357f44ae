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
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from discoseq._core import rng
from discoseq.config import SamplerConfig
from discoseq.index.multi import MultiIndex
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

    @classmethod
    def of(cls, index: object) -> SourceLayout | None:
        """The named sources of a mixture's index (a named ``MultiIndex``), else None."""
        if isinstance(index, MultiIndex) and index.names is not None:
            return cls(index.names, index.offsets)
        return None

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets)
        if len(offsets) != len(self.names) + 1:
            raise ValueError(f"{len(self.names)} sources need {len(self.names) + 1} offsets")
        if len(set(self.names)) != len(self.names) or not all(
            isinstance(n, str) and n for n in self.names
        ):
            raise ValueError(f"source names {list(self.names)} must be distinct non-empty strings")
        if offsets.dtype.kind not in "iu" or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError(
                f"source offsets {offsets.tolist()} must be integers from 0, never decreasing"
            )


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


def _largest_remainder_rows(total: int, shares: np.ndarray) -> np.ndarray:
    """Per row of ``shares`` (epochs x sources), integers proportional to it that add up to
    ``total`` exactly: floors, then one more to the largest remainders (ties: lower index)."""
    exact = total * shares
    base = np.floor(exact)
    frac = exact - base
    out = base.astype(np.int64)
    left = total - out.sum(axis=1)
    order = np.argsort(-frac, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(shares.shape[1])[None, :].repeat(len(order), 0), 1)
    return out + (rank < left[:, None])


class _Quotas:
    """Per-epoch quotas of every source of a mixture over given source sizes, computed for
    many epochs at once (arrays over epochs), so a stream's start after ``e`` epochs of a
    schedule costs a few array operations per 65,536 epochs, not a loop."""

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
        weights: dict[str, np.ndarray],
        share: np.ndarray,
        out: dict[str, np.ndarray],
        epochs: np.ndarray,
    ) -> None:
        weighted = [e for e in entries if not e.fixed and any(not x.fixed for x in e.leaves())]
        if not weighted:
            return
        raw = []
        for e in weighted:
            w = weights.get(e.name)
            if w is None:
                w = np.full(share.shape, self._hours_of(e) ** temperature if e.weight is None
                            else e.weight)  # fmt: skip
            raw.append(w)
        total = raw[0]
        for w in raw[1:]:  # left to right, as sum() would
            total = total + w
        if (total <= 0).any():
            at = int(epochs[np.flatnonzero(total <= 0)[0]])
            raise ValueError(
                f"mixture: at epoch {at} the weights of {[e.name for e in weighted]} are all 0 "
                "(mixture_schedule): nothing would be drawn from them"
            )
        for e, w in zip(weighted, raw, strict=True):
            part = share * (w / total)
            if e.children is None:
                out[e.name] = part
            else:
                t = temperature if e.temperature is None else e.temperature
                self._shares(e.children, t, weights, part, out, epochs)

    def amounts(self, epochs: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
        """Per source: its unit (``"cuts"`` or ``"hours"``: microseconds) and its amount in
        each of ``epochs``."""
        cfg = self.config
        weights = {} if self.schedule is None else self.schedule.weights_over(epochs)
        quotas: dict[str, tuple[str, np.ndarray]] = {}
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
            quotas[leaf.name] = ("cuts", np.full(epochs.shape, count, dtype=np.int64))
            fixed_cuts += count
            fixed_us += round(count * self.us[leaf.name] / n) if n else 0
        shares: dict[str, np.ndarray] = {}
        self._shares(self.mixture.entries, cfg.temperature, weights,
                     np.ones(epochs.shape), shares, epochs)  # fmt: skip
        names = list(shares)
        if not names:
            return quotas
        unit = "hours"
        if cfg.epoch_cuts is not None:
            unit, budget = "cuts", cfg.epoch_cuts - fixed_cuts
            if budget < 0:
                raise ValueError(
                    f"epoch_cuts={cfg.epoch_cuts} is smaller than the {fixed_cuts} cuts of the "
                    "repeat/choose sources: nothing is left for the weighted ones"
                )
        elif cfg.epoch_hours is not None:
            budget = round(cfg.epoch_hours * US_PER_HOUR) - fixed_us
            if budget < 0:
                raise ValueError(
                    f"epoch_hours={cfg.epoch_hours} is less than the "
                    f"{fixed_us / US_PER_HOUR:.3f} h of the repeat/choose sources: nothing is "
                    "left for the weighted ones"
                )
        else:  # one natural pass over the weighted sources
            budget = sum(self.us[n] for n in names)
        split = _largest_remainder_rows(budget, np.stack([shares[n] for n in names], axis=1))
        for j, name in enumerate(names):
            quotas[name] = (unit, split[:, j])
        return quotas

    def of_epoch(self, epoch: int) -> dict[str, _Quota]:
        return {
            name: _Quota(unit, int(a[0]))
            for name, (unit, a) in self.amounts(np.array([epoch], dtype=np.uint64)).items()
        }

    def stream_starts(self, epoch: int) -> dict[str, int]:
        """Per source, the cuts (or microseconds) of its stream taken by the epochs before
        ``epoch``: a sum over them, constant per epoch after the schedule's last point."""
        if self.schedule is None:
            return {name: epoch * q.amount for name, q in self.of_epoch(0).items()}
        last = self.schedule.points[-1][0]
        head = min(epoch, last + 1)
        starts = dict.fromkeys(self.sizes, 0)
        chunk = 1 << 16
        for lo in range(0, head, chunk):
            epochs = np.arange(lo, min(head, lo + chunk), dtype=np.uint64)
            for name, (_, a) in self.amounts(epochs).items():
                starts[name] += int(a.sum())
        if epoch > last + 1:
            for name, q in self.of_epoch(last + 1).items():
                starts[name] += (epoch - last - 1) * q.amount
        return starts


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
        self._cycles: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.contiguous = _contiguous(rows)

    def cycle(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Cycle ``c``: its rows in stream order, and their durations (microseconds)."""
        got = self._cycles.get(c)
        if got is None:
            if not self.shuffle:
                got = (self.rows, self.dur_us)
            else:
                order = np.arange(self.n, dtype=np.int64)
                rng.shuffle(order, rng.derive_key(self.seed, c, PURPOSE_SOURCE | self.sid))
                if self.contiguous:  # no filter removed a row: the row is an offset
                    rows = order + int(self.rows[0]) if self.n else order
                else:
                    rows = self.rows[order]
                got = (rows, self.dur_us[order])
            self._cycles[c] = got
        return got

    def take(self, start: int, stop: int) -> tuple[list[np.ndarray], int]:
        """The rows at stream positions ``[start, stop)`` as one array per round (round ``r``:
        the rows the run takes for the ``r + 1``-th time), and their total microseconds."""
        n = self.n
        parts: list[tuple[bool, np.ndarray]] = []
        total = 0
        for c in range(start // n, (stop - 1) // n + 1) if stop > start else range(0):
            lo, hi = max(start - c * n, 0), min(stop - c * n, n)
            if (lo, hi) == (0, n):  # a whole cycle: its order is the later stages' to choose
                parts.append((True, self.rows))
                total += self.total_us
            else:
                rows, dur = self.cycle(c)
                parts.append((False, rows[lo:hi]))
                total += int(dur[lo:hi].sum())
        if len(parts) <= 1:  # one cycle holds each row once: one round
            return [parts[0][1] if parts else np.empty(0, dtype=np.int64)], total
        by_round: list[list[np.ndarray]] = []
        seen = np.zeros(n, dtype=np.int32)  # how often the run took each row so far
        base, contiguous = int(self.rows[0]), self.contiguous
        for whole, rows in parts:
            if whole:
                r = seen.copy()
                seen += 1
            else:
                idx = rows - base if contiguous else np.searchsorted(self.rows, rows)
                r = seen[idx]
                seen[idx] += 1  # a cycle holds each row once: no clash in the update
            low, high = int(r.min()), int(r.max())
            for k in range(low, high + 1):
                while len(by_round) <= k:
                    by_round.append([])
                by_round[k].append(rows if low == high else rows[r == k])
        return [np.concatenate(p) for p in by_round], total

    def boundary(self, t_us: int) -> int:
        """The stream position of the cut boundary nearest to ``t_us`` microseconds into the
        stream (ties: the earlier boundary)."""
        c, r = divmod(t_us, self.total_us)
        if r == 0:
            return c * self.n
        cum = np.cumsum(self.cycle(c)[1])
        k = int(np.searchsorted(cum, r))  # cum[k-1] < r <= cum[k] (cum[-1] = 0)
        below = int(cum[k - 1]) if k else 0
        if int(cum[k]) - r >= r - below:
            return c * self.n + k
        return c * self.n + k + 1


def _contiguous(rows: np.ndarray) -> bool:
    """Rows ``lo, lo + 1, ...`` (no filter removed any): a row's index is ``row - lo``."""
    return bool(rows.shape[0] == 0 or int(rows[-1]) - int(rows[0]) == rows.shape[0] - 1)


@dataclass(frozen=True)
class Blocks:
    """The selection in blocks of one source and one round: block ``k`` holds positions
    ``starts[k]:starts[k + 1]``, of source ``source[k]`` and round ``round[k]``."""

    starts: np.ndarray
    source: np.ndarray
    round: np.ndarray

    @property
    def num_rounds(self) -> int:
        return int(self.round.max()) + 1 if self.round.size else 1


def select_epoch(
    duration: np.ndarray,
    keep: np.ndarray | None,
    layout: SourceLayout,
    config: SamplerConfig,
    epoch: int,
) -> tuple[np.ndarray, Blocks, tuple[SourceStats, ...]]:
    """The rows of ``epoch`` (a multiset: source by source, round by round, in stream order
    within), its blocks, and what each source contributed. ``keep``: the rows that passed the
    filters (None: all)."""
    mixture = config.mixture_spec or Mixture.natural(layout.names)
    check_sources(mixture, layout.names)
    by_name = {leaf.name: leaf for leaf in mixture.leaves()}
    streams: dict[str, _Stream] = {}
    sizes: dict[str, int] = {}
    totals: dict[str, int] = {}
    for s, name in enumerate(layout.names):
        lo, hi = int(layout.offsets[s]), int(layout.offsets[s + 1])
        rows = np.arange(lo, hi, dtype=np.int64)
        if keep is not None:
            rows = rows[keep[lo:hi]]
        dur_us = np.rint(duration[rows] * US_PER_SECOND).astype(np.int64)  # exact sums
        stream = _Stream(rows, dur_us, config.seed, name, config.effective_shuffle)
        streams[name], sizes[name], totals[name] = stream, stream.n, stream.total_us
    empty = [name for name in layout.names if sizes[name] == 0]
    if empty:
        raise ValueError(
            f"mixture sources {empty} have no cuts"
            + (" after the filters (min_duration, max_duration_per_cut, max_tokens_per_second)"
               if keep is not None else "")
            + ": remove them from the sources and the mixture"
        )  # fmt: skip
    quotas = _Quotas(mixture, config, sizes, totals)
    this_epoch = quotas.of_epoch(epoch)
    begin = quotas.stream_starts(epoch)
    parts: list[np.ndarray] = []
    starts, block_source, block_round = [0], [], []
    stats = []
    for s, name in enumerate(layout.names):
        q, stream, leaf = this_epoch[name], streams[name], by_name[name]
        if q.amount > 0 and stream.n == 0:
            raise ValueError(
                f"mixture source {name!r} has no cuts (after the filters) but a quota of "
                f"{q.amount if q.unit == 'cuts' else q.amount / US_PER_HOUR} {q.unit}"
            )
        start = begin[name]
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
        by_round, total_us = stream.take(a, b)
        for r, part in enumerate(by_round):
            parts.append(part)
            starts.append(starts[-1] + int(part.shape[0]))
            block_source.append(s)
            block_round.append(r)
        stats.append(
            SourceStats(
                name=name,
                size=stream.n,
                hours=stream.total_us / US_PER_HOUR,
                unit=q.unit,
                asked=float(q.amount) if q.unit == "cuts" else q.amount / US_PER_HOUR,
                selected=b - a,
                selected_hours=total_us / US_PER_HOUR,
                repeats=sum(int(p.shape[0]) for p in by_round[1:]),
            )
        )
    rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    blocks = Blocks(
        np.array(starts, dtype=np.int64),
        np.array(block_source, dtype=np.int64),
        np.array(block_round, dtype=np.int64),
    )
    return rows.astype(np.int64, copy=False), blocks, tuple(stats)
