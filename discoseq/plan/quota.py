"""Stage 1b, quotas: the epoch's selection of a mixture — which cuts of each source, how often.

Each source ``s`` (its cuts that pass the filters: ``n`` cuts, ``D`` microseconds) is an endless
*stream*: cycle ``c`` holds every cut once, ordered by a key per cut derived from
``(seed, c, source)`` (index order without shuffling; :mod:`discoseq._core.quota`), cycles one
after another. The source's quota in epoch ``e`` (:mod:`discoseq.mixture`: a count of cuts, or
an hours target) is ``k`` whole passes over the source and a rest below one: the passes take
every cut ``k`` times, and the rest is a contiguous run of the stream, starting where the rest
of epoch ``e - 1`` stopped. So a source is drawn without replacement across epochs: an
upsampled source goes through fresh orders ("exhaust, then reshuffle"), a downsampled one
continues where it stopped; after any number of epochs every cut has been taken ``floor`` or
``ceil`` of its fair count, and within one epoch ``k`` or ``k + 1`` times (an hours rest within
half a cut of a whole pass may take one cut a second time, as ``unique`` says). An hours rest's ends
are the cut boundaries nearest to the cumulative targets (so the hours are within one cut of
the target, and epochs tile the stream).

No cut twice in an epoch whose rest fits the source (at most ``n`` cuts): when such an epoch
takes the tail of cycle ``c - 1`` and the head of cycle ``c``, cycle ``c`` starts with the cuts
*not* in that tail (by key), the tail's cuts following right after the head (a cycle is still
every cut once, so the floor/ceil counts hold). When consecutive epochs each cross into the
next cycle, a cycle's order depends on the one before; such a chain is followed back to a
cycle whose order does not matter to it (see ``_Source._needs_prev``).

Positions are a pure function of ``(seed, epoch, config, sources)``: no cursor is kept in the
state, which stays a few hundred bytes. A process keeps each source's recent cycles across
epochs (only speed: a resume elsewhere computes the same ones).

The selection is a multiset of index rows (a row taken twice is there twice), which the later
stages plan as one corpus plans its kept rows; the rows taken more than once are flagged
(:class:`Copies`), so packing keeps two copies of a cut out of one batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from discoseq._core import quota as quota_core
from discoseq._core import rng
from discoseq.config import SamplerConfig
from discoseq.index.multi import MultiIndex
from discoseq.mixture import Mixture, MixtureEntry, check_sources
from discoseq.plan import scratch

__all__ = [
    "Copies",
    "EpochSelection",
    "SourceLayout",
    "SourceStats",
    "forget_streams",
    "select_epoch",
]

PURPOSE_SOURCE = 4 << 32
US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
U64_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class SourceLayout:
    """Named sources as row ranges: source ``s`` holds rows ``offsets[s]:offsets[s + 1]``.

    ``identities`` (optional, one string per source) name each source's durations for good: a
    built index's fingerprint (of its manifests' content, rows and format), given by
    :meth:`of` for the columns of that index (``index.columns``) and only for them. A process
    then keeps a source's cycles across epochs under that name (with a digest of the filter
    flags and a few of the durations), instead of hashing the source's whole duration column
    on every plan (8 B a cut: 21 ms a plan of a 10M-cut mixture). Without them, the columns
    are hashed: an in-memory column may change between plans."""

    names: tuple[str, ...]
    offsets: np.ndarray
    identities: tuple[str, ...] | None = None

    @classmethod
    def of(cls, index: object) -> SourceLayout | None:
        """The named sources of a mixture's index (a named ``MultiIndex``, each source named
        by its index's fingerprint), else None."""
        if isinstance(index, MultiIndex) and index.names is not None:
            return cls(index.names, index.offsets, index.fingerprints)
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
        ids = self.identities
        if ids is not None and (
            len(ids) != len(self.names) or not all(isinstance(i, str) and i for i in ids)
        ):
            raise ValueError(
                f"identities {ids!r} must be one non-empty string per source ({len(self.names)})"
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


def _split(amount: Any, span: int) -> tuple[Any, Any]:
    """Quota ``amount`` (an int, or an array over epochs) as whole passes of ``span`` and the
    rest (a source of no span: no pass, all rest)."""
    return divmod(amount, span) if span else (amount * 0, amount)


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
        self._starts: dict[int, dict[str, int]] = {}

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

    def span(self, name: str, unit: str) -> int:
        """One pass over the source on its stream axis: its cuts, or its microseconds."""
        return self.sizes[name] if unit == "cuts" else self.us[name]

    def split(self, name: str, q: _Quota) -> tuple[int, int]:
        """An epoch's quota as whole passes over the source (those take every cut, and move
        no stream) and the rest, which its stream gives."""
        return _split(q.amount, self.span(name, q.unit))

    def rest(self, name: str, q: _Quota) -> int:
        """What an epoch's quota takes from the source's stream (see :meth:`split`)."""
        return self.split(name, q)[1]

    def stream_starts(self, epoch: int) -> dict[str, int]:
        """Per source, the cuts (or microseconds) of its stream taken by the epochs before
        ``epoch`` (the rests of their quotas): a sum over them, constant per epoch after the
        schedule's last point."""
        if self.schedule is None:
            return {name: epoch * self.rest(name, q) for name, q in self.of_epoch(0).items()}
        last = self.schedule.points[-1][0]
        head = min(epoch, last + 1)
        starts = dict.fromkeys(self.sizes, 0)
        chunk = 1 << 16
        for lo in range(0, head, chunk):
            epochs = np.arange(lo, min(head, lo + chunk), dtype=np.uint64)
            for name, (unit, a) in self.amounts(epochs).items():
                starts[name] += int(_split(a, self.span(name, unit))[1].sum())
        if epoch > last + 1:
            for name, q in self.of_epoch(last + 1).items():
                starts[name] += (epoch - last - 1) * self.rest(name, q)
        return starts

    def start(self, name: str, epoch: int) -> int:
        """Where ``epoch`` starts on ``name``'s stream axis (cuts or microseconds)."""
        got = self._starts.get(epoch)
        if got is None:
            got = self._starts[epoch] = self.stream_starts(epoch)
        return got[name]

    def epoch_before(self, name: str, x: int) -> int:
        """The last epoch that starts before axis point ``x > 0`` of ``name``'s stream (the
        first epoch past every schedule point when no epoch reaches ``x``)."""
        if self.schedule is None:
            step = self.rest(name, self.of_epoch(0)[name])
            return (x - 1) // step if step else 0
        lo, hi = 0, 1
        while self.start(name, hi) < x:
            if hi > U64_MAX // 2:
                return hi
            lo, hi = hi, hi * 2
        while hi - lo > 1:  # start(lo) < x <= start(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.start(name, mid) < x else (lo, mid)
        return lo


_EMPTY = np.empty(0, dtype=np.uint8)
_CODES_KEPT = 3  # per source: the cycles whose keys' codes are kept


class _Keyed:
    """A set of one source's cuts in the order of one cycle's key (:mod:`discoseq._core.quota`:
    the source's kept cuts, ``mode`` 1: minus those flagged in ``excl``, ``mode`` 2: those
    flagged or at keys from ``(tu, ti)``); ranks and microsecond sums from a histogram of the
    keys (one bin per code), exact within a bin by sorting its members."""

    def __init__(self, src: _Source, key: int, excl: np.ndarray = _EMPTY, mode: int = 0,
                 tu: int = 0, ti: int = 0) -> None:  # fmt: skip
        self.src, self.key = src, key
        self._set = (excl, mode, key, src.shuffled, tu, ti)
        self._hist: tuple[np.ndarray, np.ndarray] | None = None
        self._bins: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._runs: dict[tuple[int, int], np.ndarray] = {}

    @property
    def spec(self) -> tuple[np.ndarray, np.ndarray, int, int, bool, int, int, np.ndarray]:
        """The set as the kernels take it (the source's kept cuts of this call, the codes of
        its key)."""
        return (self.src.keep, *self._set, self.src.codes(self.key))

    @property
    def whole(self) -> bool:
        """The set is every kept cut of the source (a cycle by its key)."""
        return self._set[1] == 0 and self._set[0].shape[0] == 0

    def set_hist(self, counts: np.ndarray, us: np.ndarray) -> None:
        self._hist = (counts, us)
        self.cum_counts = np.cumsum(counts)
        self.cum_us = np.cumsum(us)
        self.size = int(self.cum_counts[-1])
        self.total_us = int(self.cum_us[-1])

    def hist(self) -> tuple[np.ndarray, np.ndarray]:
        if self._hist is None:
            src = self.src
            if self.whole and src.shuffled and not src.has_codes(self.key):
                counts, us = src.new_codes(self.key)  # one pass: the codes and the histogram
            else:
                counts, us, _, _ = quota_core.histogram(src.dur, *self.spec, src.shift)
            self.set_hist(counts, us)
        assert self._hist is not None
        return self._hist

    def _bin(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = self._bins.get(b)
        if got is None:
            count = int(self.hist()[0][b])
            got = quota_core.bin_members(self.src.dur, *self.spec, self.src.shift, b, count)
            self._bins[b] = got
        return got

    def _locate(self, rank: int) -> tuple[int, int]:
        """The bin of the cut at ``rank`` and its index in the sorted bin."""
        counts = self.hist()[0]
        b = int(np.searchsorted(self.cum_counts, rank, side="right"))
        return b, rank - int(self.cum_counts[b] - counts[b])

    def threshold(self, rank: int) -> tuple[int, int]:
        """``(u, i)`` of the cut at ``rank``: the cuts below it are the first ``rank``."""
        self.hist()
        if rank <= 0:
            return 0, 0
        if rank >= self.size:
            return U64_MAX, self.src.n_all
        b, j = self._locate(rank)
        ids, keys, _ = self._bin(b)
        return int(keys[j]), int(ids[j])

    def prefix_us(self, rank: int) -> int:
        """Microseconds of the first ``rank`` cuts."""
        us = self.hist()[1]
        if rank <= 0:
            return 0
        if rank >= self.size:
            return self.total_us
        b, j = self._locate(rank)
        return int(self.cum_us[b] - us[b]) + int(self._bin(b)[2][:j].sum())

    def prefix_hist(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """The histogram of the first ``rank`` cuts."""
        counts, us = self.hist()
        if rank >= self.size:
            return counts, us
        b, j = self._locate(rank)
        c, u = counts.copy(), us.copy()
        c[b + 1 :] = 0
        u[b + 1 :] = 0
        c[b] = j
        u[b] = int(self._bin(b)[2][:j].sum())
        return c, u

    def nearest(self, r: int) -> int:
        """The rank whose prefix microseconds are nearest ``r`` (ties: the lower rank)."""
        counts, us = self.hist()
        if r <= 0:
            return 0
        if r >= self.total_us:
            return self.size
        b = int(np.searchsorted(self.cum_us, r, side="left"))
        first = int(self.cum_counts[b] - counts[b])
        below_bin = int(self.cum_us[b] - us[b])
        cum = below_bin + np.cumsum(self._bin(b)[2])
        k = int(np.searchsorted(cum, r, side="left"))  # cum[k - 1] < r <= cum[k]
        below = int(cum[k - 1]) if k else below_bin
        return first + k if int(cum[k]) - r >= r - below else first + k + 1

    def bounds(self, lo: int, hi: int) -> tuple[int, int, int, int]:
        return (*self.threshold(lo), *self.threshold(hi))

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """The cuts at ranks ``[lo, hi)`` as offsets in the source, in index order (the last
        two runs asked are kept: an epoch's tail of a cycle is asked twice)."""
        got = self._runs.get((lo, hi))
        if got is None:
            got = np.empty(max(hi - lo, 0), dtype=np.int64)
            self.write_rows(lo, hi, got, 0)
            self.remember(lo, hi, got)
        return got

    def write_rows(self, lo: int, hi: int, out: np.ndarray, base: int) -> None:
        """The cuts at ranks ``[lo, hi)`` as index rows (``base`` + offset), in index order,
        written to ``out`` (``hi - lo`` slots): a run kept from earlier in this call is copied,
        else the run is collected straight into ``out`` (no array of its own)."""
        if hi <= lo:
            return
        got = self._runs.get((lo, hi))
        src = self.src
        if got is not None:
            np.add(got, base, out=out)
        elif (lo, hi) == (0, src.n) and self.whole:  # a whole cycle: every kept cut
            if src.keep.shape[0] == 0:
                out[:] = np.arange(base, base + src.n_all, dtype=np.int64)
            else:
                np.add(np.flatnonzero(src.keep), base, out=out)
        else:
            n = quota_core.collect_rows(src.n_all, *self.spec, *self.bounds(lo, hi), base, out)
            assert n == hi - lo

    def forget_runs(self) -> None:
        self._runs.clear()

    def remember(self, lo: int, hi: int, rows: np.ndarray) -> None:
        if len(self._runs) >= 2:
            del self._runs[next(iter(self._runs))]
        self._runs[(lo, hi)] = rows


@dataclass
class _Cycle:
    """Cycle ``c`` of a source's stream: its cuts by key (``plain``), unless the epoch that
    crosses into it from cycle ``c - 1`` took a tail of that cycle and asks at most the
    source's size: then its first ``h`` cuts are the first ``h`` by key of the cuts *not* in
    that tail (``head``), and the rest follow by key (``rest``) — the tail's cuts moved from the
    head to just after it, so that epoch holds no cut twice. ``end``: that epoch's end on the
    stream axis (its position is ``h`` by definition)."""

    plain: _Keyed
    head: _Keyed | None = None
    h: int = 0
    rest: _Keyed | None = None
    head_us: int = 0
    end: int = -1

    def parts(self, lo: int, hi: int) -> list[tuple[_Keyed, int, int]]:
        """Positions ``[lo, hi)`` of the cycle as rank ranges of its keyed sets."""
        if self.head is None or self.rest is None:
            return [(self.plain, lo, hi)]
        out = []
        if lo < self.h:
            out.append((self.head, lo, min(hi, self.h)))
        if hi > self.h:
            out.append((self.rest, max(lo, self.h) - self.h, hi - self.h))
        return out

    def nearest(self, r: int) -> int:
        if self.head is None or self.rest is None:
            return self.plain.nearest(r)
        if r <= self.head_us:
            return self.head.nearest(r)
        return self.h + self.rest.nearest(r - self.head_us)

    def prefix_us(self, k: int) -> int:
        if self.head is None or self.rest is None:
            return self.plain.prefix_us(k)
        if k <= self.h:
            return self.head.prefix_us(k)
        return self.head_us + self.rest.prefix_us(k - self.h)


class _Source:
    """One source's endless stream of cycles and where the epochs cut it.

    The stream axis is positions (a quota in cuts) or microseconds (hours); one cycle spans
    ``span`` of it. Epoch ``e`` spans ``[start(e), start(e + 1))`` of the axis, and its
    positions are the cut boundaries there (hours: nearest, see :meth:`position`)."""

    def __init__(self, base: int, name: str, config: SamplerConfig,
                 totals: tuple[int, int, int, float, float, int], n_all: int) -> None:  # fmt: skip
        self.dur = np.empty(0)
        self.keep = _EMPTY
        self.base = base
        self.name = name
        self.n_all = n_all
        self.shuffled = config.effective_shuffle
        self.shift = quota_core.bin_shift(self.n_all, self.shuffled)
        self.seed = config.seed
        self.sid = _source_id(name)
        self._keyed: dict[int, _Keyed] = {}
        self._cycles: dict[int, _Cycle] = {}
        self._codes: dict[int, np.ndarray] = {}
        # kept cuts, their microseconds, the longest one's; over all cuts the shortest and
        # longest seconds and how many are not positive finite (the column's check)
        self.n, self.total_us, self.longest_us, self.shortest_s, self.longest_s, self.bad = totals
        self.quotas: _Quotas | None = None
        self.signature: object = None
        self.unit = "cuts"
        self.span = self.margin = 0

    def bind(self, duration: np.ndarray, keep: np.ndarray) -> None:
        """This call's columns of the source (the same content: its identity or fingerprint
        matched)."""
        self.dur, self.keep = duration, keep

    def release(self) -> None:
        """Let go of the call's columns (a mixture's concatenated column is not kept alive)
        and of the runs kept within the call (only the cycles' orders are worth keeping)."""
        self.dur, self.keep = np.empty(0), _EMPTY
        for keyed in self._keyed.values():
            keyed.forget_runs()
        for cyc in self._cycles.values():
            for part in (cyc.plain, cyc.head, cyc.rest):
                if part is not None:
                    part.forget_runs()

    def set_quota(self, quotas: _Quotas, unit: str, signature: object) -> None:
        """The epochs' quotas and their unit (the stream axis is cuts or microseconds); the
        cycles reordered for other quotas are forgotten."""
        if signature != self.signature:
            self._cycles.clear()
        self.quotas, self.unit, self.signature = quotas, unit, signature
        self.span = self.n if unit == "cuts" else self.total_us
        self.margin = 0 if unit == "cuts" else 2 * self.longest_us + 1

    def forget_before(self, c: int) -> None:
        """Drop the cycles (and keyed orders) before cycle ``c``: epochs move forward."""
        for d in (self._cycles, self._keyed):
            for k in [k for k in d if k < c]:
                del d[k]

    def key(self, c: int) -> int:
        return rng.derive_key(self.seed, c, PURPOSE_SOURCE | self.sid) if self.shuffled else 0

    def codes(self, key: int) -> np.ndarray:
        """The codes of every cut under a cycle's ``key`` (:func:`~discoseq._core.quota.key_codes`:
        the one pass that hashes the cycle; unshuffled: none). The last few keys' are kept
        (a crossing reads two cycles, a chain one more), least recently asked first out, its
        memory reused (a kernel call asks at most two keys, so never one it holds)."""
        if not self.shuffled:
            return _EMPTY
        got = self._codes.pop(key, None)
        if got is None:
            got = self._codes_buffer()
            quota_core.key_codes(key, got)
        self._codes[key] = got  # the most recently asked
        return got

    def has_codes(self, key: int) -> bool:
        return key in self._codes

    def new_codes(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        """Hash the cycle of ``key`` into its codes and return its histogram (one pass)."""
        got = self._codes_buffer()
        counts, us = quota_core.key_histogram(self.dur, self.keep, key, got)
        self._codes[key] = got
        return counts, us

    def _codes_buffer(self) -> np.ndarray:
        if len(self._codes) >= _CODES_KEPT:
            return self._codes.pop(next(iter(self._codes)))
        return np.empty(self.n_all, dtype=np.uint8)

    def keyed(self, c: int) -> _Keyed:
        """Cycle ``c`` by key (unshuffled: every cycle is the index order)."""
        k = c if self.shuffled else 0
        got = self._keyed.get(k)
        if got is None:
            got = self._keyed[k] = _Keyed(self, self.key(c))
        return got

    def start(self, e: int) -> int:
        assert self.quotas is not None
        return self.quotas.start(self.name, e)

    def crossing(self, c: int) -> tuple[int, int] | None:
        """The axis span of the epoch that crosses into cycle ``c`` from cycle ``c - 1`` (it
        starts inside cycle ``c - 1`` and ends inside cycle ``c``), else None."""
        if c <= 0:
            return None
        x = c * self.span
        assert self.quotas is not None
        e = self.quotas.epoch_before(self.name, x)
        s0, s1 = self.start(e), self.start(e + 1)
        if s1 <= x or s0 <= x - self.span:
            return None
        return s0, s1

    def _needs_prev(self, c: int) -> bool:
        """Cycle ``c``'s order depends on cycle ``c - 1``'s reordered head: the epoch crossing
        into ``c`` starts before the end of what cycle ``c - 1``'s reordering may move (within
        the cuts of the epoch crossing into it; hours: plus a margin of two longest cuts)."""
        cross = self.crossing(c)
        prev = self.crossing(c - 1) if cross is not None else None
        if cross is None or prev is None or prev[1] - prev[0] > self.span + self.margin:
            return False  # cycle c - 1 is not reordered (no crossing, or one too long to fit)
        return cross[0] - (c - 1) * self.span < prev[1] - prev[0] + self.margin

    def cycle(self, c: int) -> _Cycle:
        got = self._cycles.get(c)
        if got is not None:
            return got
        first = c
        while first > 0 and first - 1 not in self._cycles and self._needs_prev(first):
            first -= 1  # a chain of epochs that each cross into the next cycle
        for j in range(first, c + 1):
            self._cycles[j] = self._make(j)
            if j - 1 >= first and j - 1 != c:
                del self._cycles[j - 1]  # a chain needs one cycle at a time
                self._keyed.pop(j - 1, None)
        return self._cycles[c]

    def _make(self, c: int) -> _Cycle:
        plain = self.keyed(c)
        cross = self.crossing(c)
        if cross is None:
            return _Cycle(plain)
        s0, s1 = cross
        prev = self._cycles[c - 1] if self._needs_prev(c) else _Cycle(self.keyed(c - 1))
        a = self._in_cycle(prev, s0 - (c - 1) * self.span, s0)
        t = self.n - a  # the tail of cycle c - 1 the crossing epoch takes
        if not 0 < t < self.n:
            return _Cycle(plain)
        r = s1 - c * self.span
        # the cuts not in the tail hold the first a cuts' microseconds: does the epoch fit?
        fits = r <= (a if self.unit == "cuts" else prev.prefix_us(a))
        if not fits:
            return _Cycle(plain)  # the epoch asks more than the source: copies are due
        parts = prev.parts(a, self.n)
        if len(parts) == 1 and self.shuffled and not self.has_codes(plain.key):
            # one pass: the cycle's codes and histogram, the tail's rows (kept for the
            # epoch's take) and the tail's histogram under the cycle's key
            keyed, lo, hi = parts[0]
            rows = np.empty(hi - lo, dtype=np.int64)
            tail = np.empty(self.n_all, dtype=np.uint8)
            codes = self._codes_buffer()
            _, excl, mode, _, _, tu, ti, tail_codes = keyed.spec
            counts, us, c_tail, us_tail = quota_core.cross_pass(
                self.dur, self.keep, plain.key, codes, excl, mode, keyed.key, tu, ti,
                tail_codes, *keyed.bounds(lo, hi), rows, tail,
            )  # fmt: skip
            self._codes[plain.key] = codes
            keyed.remember(lo, hi, rows)
            plain.set_hist(counts, us)
            counts_head, us_head = counts - c_tail, us - us_tail
        else:
            counts, us = plain.hist()
            counts_head, us_head = counts.copy(), us.copy()
            tail = np.zeros(self.n_all, dtype=np.uint8)
            codes = self.codes(plain.key)
            for keyed, lo, hi in parts:  # the tail's rows: the epoch takes them
                c_tail, us_tail = quota_core.rows_histogram(
                    self.dur, keyed.rows(lo, hi), self.shuffled, codes, self.shift, tail
                )
                counts_head -= c_tail
                us_head -= us_tail
        head = _Keyed(self, plain.key, tail, 1)  # the cycle's cuts not in the tail
        head.set_hist(counts_head, us_head)
        h = r if self.unit == "cuts" else head.nearest(r)
        # the rest: the cuts not among the head's first h (flagged, or at keys from its h-th)
        rest = _Keyed(self, plain.key, tail, 2, *head.threshold(h))
        first_c, first_us = head.prefix_hist(h)
        rest.set_hist(counts - first_c, us - first_us)
        return _Cycle(plain, head, h, rest, head.prefix_us(h), s1)

    def _in_cycle(self, cyc: _Cycle, r: int, x: int) -> int:
        """The position in cycle ``cyc`` of axis point ``x`` (``r`` into the cycle)."""
        if self.unit == "cuts":
            return r
        if x == cyc.end:
            return cyc.h
        return cyc.nearest(r)

    def position(self, x: int) -> int:
        """The stream position of axis point ``x``: itself for cuts; for hours the cut
        boundary nearest to ``x`` microseconds (ties: the earlier)."""
        c, r = divmod(x, self.span)
        if r == 0:
            return c * self.n
        return c * self.n + self._in_cycle(self.cycle(c), r, x)

    def cum_us(self, p: int) -> int:
        """Microseconds of the stream before position ``p``."""
        c, k = divmod(p, self.n)
        return c * self.total_us + (self.cycle(c).prefix_us(k) if k else 0)

    def write_passes(self, out: np.ndarray, passes: int) -> None:
        """Every kept cut of the source as index rows, in index order, ``passes`` times one
        after another into ``out`` (the first written, the others copied from it)."""
        if passes == 0:
            return
        n = self.n
        quota_core.kept_rows(self.keep, self.n_all, self.base, out[:n])
        for k in range(1, passes):
            out[k * n : (k + 1) * n] = out[:n]

    def flag_again(self, rows: np.ndarray | None, again: np.ndarray) -> None:
        """Set the bit in ``again`` of the index ``rows`` (None: of every kept cut), by whole
        bytes: the source's flags shifted to its first row's bit, then packed (a scattered
        bit-or per row costs ten times more)."""
        pad = self.base & 7
        flags = np.zeros(pad + self.n_all, dtype=bool)
        if rows is not None:
            flags[rows - (self.base - pad)] = True
        elif self.keep.shape[0]:
            flags[pad:] = self.keep.view(bool)
        else:
            flags[pad:] = True
        packed = np.packbits(flags, bitorder="little")
        first = self.base >> 3
        again[first : first + packed.shape[0]] |= packed

    def take(self, a: int, b: int, out: np.ndarray, again: np.ndarray) -> list[int]:
        """Write the cuts at stream positions ``[a, b)`` to ``out`` (``b - a`` slots) as index
        rows (``base`` + offset), round by round (round ``r``: the cuts the run takes for the
        ``r + 1``-th time), each round in index order (the later stages then read the column
        in one sweep per round, not one per run); set the bit in ``again`` (one per index row)
        of each cut taken more than once. Returns the number of cuts of each round."""
        n = self.n
        pieces: list[tuple[_Keyed, int, int]] = []
        for c in range(a // n, (b - 1) // n + 1) if b > a else range(0):
            lo, hi = max(a - c * n, 0), min(b - c * n, n)
            if (lo, hi) == (0, n):
                pieces.append((self.keyed(c), 0, n))
            else:
                pieces.extend(self.cycle(c).parts(lo, hi))
        pieces = [(keyed, lo, hi) for keyed, lo, hi in pieces if hi > lo]
        last = (b - 1) // n if b > a else 0
        # no copies in one cycle's run, nor across a crossing whose cycle was reordered for it
        fits = b - a <= n and last == a // n + 1 and self.cycle(last).head is not None
        if len(pieces) <= 1:  # one run straight into its place
            for keyed, lo, hi in pieces:
                keyed.write_rows(lo, hi, out, self.base)
            return [b - a]
        if len(pieces) > quota_core.EMIT_PIECES:  # a rest spans two cycles, two parts each
            raise RuntimeError(f"the run of {self.name!r} has {len(pieces)} pieces")
        specs: list[tuple[object, ...]] = [
            (n, None) if (lo, hi) == (0, n) and keyed.whole  # every kept cut: no key asked
            else (hi - lo, *keyed.spec[1:], *keyed.bounds(lo, hi))
            for keyed, lo, hi in pieces
        ]  # fmt: skip
        if fits:  # one round of runs that share no cut: their union, in one pass
            got = quota_core.collect_union(self.n_all, self.keep, specs, self.base, out)
            if got != b - a:  # (runs that share a cut: slots left unwritten)
                raise RuntimeError(f"the runs of {self.name!r} hold {got} cuts, not {b - a}")
            return [got]
        # one pass finds every cut's runs, one writes
        return quota_core.emit_runs(self.n_all, self.keep, specs, self.base, out, again)


_SPOT_CHECKS = 257  # durations of a source named by an identity that its key holds too
_SOURCES: dict[tuple[object, ...], _Source] = {}
_SOURCES_KEPT = 64  # sources (a multilingual mixture may have many; each keeps a few cycles)
_LOCK = threading.Lock()  # a kept stream changes as epochs move: one selection at a time


def forget_streams() -> None:
    """Forget the sources' streams kept across epochs (the next selection starts cold)."""
    with _LOCK:
        _SOURCES.clear()


def _source(duration: np.ndarray, keep: np.ndarray | None, lo: int, hi: int, name: str,
            config: SamplerConfig, identity: str | None = None) -> _Source:  # fmt: skip
    """The source's stream, reused across the epochs of a process (its cycles are a function
    of the seed, the durations and the filters, so keeping them is only speed), found by the
    ``identity`` of its durations (see :class:`SourceLayout`) and a hash of its filter flags,
    or without one by a fingerprint of its durations and flags (one pass at memory speed: a
    mixture's column may be a new copy on every call, and is not kept alive by this); its
    totals and duration bounds are computed once, on the first call."""
    dur = np.ascontiguousarray(duration[lo:hi])
    member = _EMPTY if keep is None else np.ascontiguousarray(keep[lo:hi]).view(np.uint8)
    if identity is None:
        content: object = quota_core.fingerprint(dur, member)
    else:
        # the filter flags may change under one identity (other filter settings, a token
        # column added again): keyed exactly, by a digest of their bits; a few durations,
        # evenly spread, tell columns that are not the index's own from its
        spread = np.linspace(0, max(hi - lo - 1, 0), min(hi - lo, _SPOT_CHECKS)).astype(np.int64)
        flags = hashlib.blake2b(np.packbits(member).tobytes(), digest_size=16).digest()
        content = (identity, flags, dur[spread].tobytes())
    key = (name, lo, hi, config.seed, config.effective_shuffle, content)
    src = _SOURCES.get(key)
    if src is None:
        src = _Source(lo, name, config, quota_core.column_totals(dur, member), hi - lo)
        while len(_SOURCES) >= _SOURCES_KEPT:
            del _SOURCES[next(iter(_SOURCES))]
        _SOURCES[key] = src
    src.bind(dur, member)
    return src


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


@dataclass(frozen=True)
class Copies:
    """The cuts the epoch takes more than once: bit ``k`` of ``bits`` (bit ``k % 8`` of byte
    ``k // 8``) is set for the cut at index row ``lo + k``, ``k`` in ``[0, size)`` (the span of
    the sources that repeat cuts; a row outside it is taken once). Packing keeps two copies of
    a flagged cut out of one batch."""

    bits: np.ndarray
    lo: int
    size: int


@dataclass(frozen=True)
class EpochSelection:
    """A mixture's epoch: ``rows``, the index rows it takes (a multiset: source by source,
    round by round, each round in index order (the whole passes first, then the rest's); its
    *positions* are the places in this array), the ``copies`` to check (None: no cut twice),
    the ``blocks``, what each source contributed, and the shortest and longest duration of
    the column (``(1.0, 0.0)`` when empty)."""

    rows: np.ndarray
    copies: Copies | None
    blocks: Blocks
    sources: tuple[SourceStats, ...]
    bounds: tuple[float, float] = (1.0, 0.0)


def select_epoch(
    duration: np.ndarray,
    keep: np.ndarray | None,
    layout: SourceLayout,
    config: SamplerConfig,
    epoch: int,
) -> EpochSelection:
    """The selection of ``epoch`` (see :class:`EpochSelection`). ``keep``: the rows that
    passed the filters (None: all)."""
    with _LOCK:
        return _select_epoch(duration, keep, layout, config, epoch)


def _select_epoch(
    duration: np.ndarray,
    keep: np.ndarray | None,
    layout: SourceLayout,
    config: SamplerConfig,
    epoch: int,
) -> EpochSelection:
    mixture = config.mixture_spec or Mixture.natural(layout.names)
    check_sources(mixture, layout.names)
    by_name = {leaf.name: leaf for leaf in mixture.leaves()}
    d = np.ascontiguousarray(duration, dtype=np.float64)
    spans = [(int(layout.offsets[s]), int(layout.offsets[s + 1])) for s in range(len(layout.names))]
    ids = layout.identities or (None,) * len(spans)
    streams = {
        name: _source(d, keep, lo, hi, name, config, identity)
        for name, (lo, hi), identity in zip(layout.names, spans, ids, strict=True)
    }
    bad = sum(st.bad for st in streams.values())
    if bad:
        raise ValueError(
            f"column 'duration' has {bad} rows that are not positive finite seconds; "
            "fix or filter them (mask=...) before planning"
        )
    lo_s = min(st.shortest_s for st in streams.values())
    hi_s = max(st.longest_s for st in streams.values())
    bounds = (lo_s, hi_s) if d.shape[0] else (1.0, 0.0)
    sizes = {name: st.n for name, st in streams.items()}
    totals = {name: st.total_us for name, st in streams.items()}
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
    signature = (mixture, config.schedule, config.epoch_cuts, config.epoch_hours,
                 config.temperature, tuple(sizes.items()), tuple(totals.items()))  # fmt: skip
    # per source: its stream, quota, whole passes over the source and stream positions [a, b)
    spans_taken = []
    for name in layout.names:
        q, leaf = this_epoch[name], by_name[name]
        stream = streams[name]
        stream.set_quota(quotas, q.unit, signature)
        passes, rest = quotas.split(name, q)
        x = quotas.start(name, epoch)
        a, b = (stream.position(x), stream.position(x + rest)) if rest else (0, 0)
        needs = passes * stream.n + b - a
        if leaf.unique and needs > stream.n:
            asked = q.amount if q.unit == "cuts" else f"{q.amount / US_PER_HOUR:.3f} h"
            raise ValueError(
                f"mixture source {name!r} is unique but its quota ({asked}) needs {needs} cuts "
                f"of its {stream.n}: a cut would be taken twice in one epoch"
            )
        spans_taken.append((stream, q, passes, a, b))
    m = sum(k * st.n + b - a for st, _, k, a, b in spans_taken)
    rows = scratch.empty(m, np.int64)  # the planner hands it back when its plan is built
    again = np.zeros((int(layout.offsets[-1]) + 7) // 8, dtype=np.uint8)  # a bit per row
    repeating: list[_Source] = []  # the sources that take a cut more than once
    starts, block_source, block_round = [0], [], []
    stats = []
    for s, (name, (stream, q, passes, a, b)) in enumerate(
        zip(layout.names, spans_taken, strict=True)
    ):
        leaf = by_name[name]
        at = starts[-1]
        whole = stream.n * passes
        stream.write_passes(rows[at : at + whole], passes)  # rounds 0 .. passes - 1
        rest_rows = rows[at + whole : at + whole + b - a]
        counts = stream.take(a, b, rest_rows, again)
        if passes:  # the rest's rounds follow the passes', and its cuts are taken again
            counts = [stream.n] * passes + (counts if b > a else [])
            stream.flag_again(rest_rows if passes == 1 else None, again)
        if leaf.unique and len(counts) > 1:  # an hours quota within half a cut of the source
            raise ValueError(
                f"mixture source {name!r} is unique but its quota "
                f"({q.amount / US_PER_HOUR:.3f} h) is within half a cut of its "
                f"{stream.total_us / US_PER_HOUR:.3f} h: in epoch {epoch} a cut would be taken "
                "twice (lower its share below its hours less half its longest cut)"
            )
        total_us = passes * stream.total_us + (stream.cum_us(b) - stream.cum_us(a) if b > a else 0)
        stream.forget_before(a // stream.n - 1 if stream.n else 0)
        stream.release()
        if len(counts) > 1:  # its cuts taken again are flagged: packing checks their copies
            repeating.append(stream)
        for r, count in enumerate(counts):
            starts.append(starts[-1] + count)
            block_source.append(s)
            block_round.append(r)
        stats.append(
            SourceStats(
                name=name,
                size=stream.n,
                hours=stream.total_us / US_PER_HOUR,
                unit=q.unit,
                asked=float(q.amount) if q.unit == "cuts" else q.amount / US_PER_HOUR,
                selected=whole + b - a,
                selected_hours=total_us / US_PER_HOUR,
                repeats=sum(counts[1:]),
            )
        )
    copies = None
    if repeating:  # one bit per row of the repeating sources' span (from a whole byte)
        first = min(st.base for st in repeating) // 8 * 8
        end = max(st.base + st.n_all for st in repeating)
        copies = Copies(again[first // 8 : (end + 7) // 8], first, end - first)
    blocks = Blocks(
        np.array(starts, dtype=np.int64),
        np.array(block_source, dtype=np.int64),
        np.array(block_round, dtype=np.int64),
    )
    return EpochSelection(rows, copies, blocks, tuple(stats), bounds)
