"""Plain Python/NumPy reference of the epoch plan: the readable specification of ``discoseq._core``.

Same RNG, same rules, no shortcuts: sort instead of histograms, Python loops instead of kernels.
``tests/plan/test_reference.py`` asserts that :func:`discoseq.plan.plan_epoch` equals
:func:`reference_plan` bit for bit. Only the validation of inputs is left to the real code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
PURPOSE_CUTS = 1 << 32
PURPOSE_TAIL = 2 << 32
PURPOSE_ORDER = 3 << 32
FILTER_REASONS = ("mask", "min_duration", "max_duration_per_cut", "max_tokens_per_second")


# ---------------------------------------------------------------------------------------- RNG


def mix64(z: int) -> int:
    """SplitMix64's finaliser."""
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def derive_key(seed: int, epoch: int, purpose: int) -> int:
    k = mix64(seed ^ 0x6A09E667F3BCC908)
    k = mix64(k ^ mix64(epoch ^ 0xBB67AE8584CAA73B))
    return mix64(k ^ mix64(purpose ^ 0x3C6EF372FE94F82B))


class Stream:
    """SplitMix64 from a key."""

    def __init__(self, key: int) -> None:
        self.state = key & M64

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & M64
        return mix64(self.state)

    def bounded(self, n: int) -> int:
        """Lemire: unbiased integer in [0, n)."""
        m = self.next() * n
        low = m & M64
        if low < n:
            t = ((1 << 64) - n) % n
            while low < t:
                m = self.next() * n
                low = m & M64
        return m >> 64


def shuffle(seq: list[int], key: int) -> list[int]:
    """Forward Fisher–Yates: for i = 1..n-1 swap a[i], a[bounded(i + 1)]."""
    a = list(seq)
    s = Stream(key)
    for i in range(1, len(a)):
        j = s.bounded(i + 1)
        a[i], a[j] = a[j], a[i]
    return a


# ------------------------------------------------------------------------------------ buckets


def keys_of(cols: dict[str, np.ndarray], method: str, rows: np.ndarray) -> np.ndarray:
    if method == "duration":
        return cols["duration"][rows].astype(np.float64)
    if method == "num_frames":
        return cols["num_frames"][rows].astype(np.float64)
    if method == "num_features":
        return (cols["num_frames"][rows] * cols["num_features"][rows]).astype(np.float64)
    return cols["num_tokens"][rows].astype(np.float64)


def weights_of(keys: np.ndarray, method: str) -> np.ndarray:
    if method == "duration":
        return (keys * 1000.0 + 0.5).astype(np.int64)
    return keys.astype(np.int64)


def estimate_edges(keys: np.ndarray, method: str, num_buckets: int) -> np.ndarray:
    """Edge k = the smallest sorted key x(i) with B * S(i) >= k * T (S: prefix sums of integer
    weights, T: their total)."""
    if num_buckets == 1 or keys.size == 0:
        return np.zeros(max(num_buckets - 1, 0))
    xs = np.sort(keys)
    prefix = np.cumsum(weights_of(xs, method))
    total = int(prefix[-1])
    scaled = num_buckets * prefix
    return np.array(
        [xs[int(np.searchsorted(scaled, k * total, side="left"))] for k in range(1, num_buckets)]
    )


def bucket_ids(
    keys: np.ndarray, tokens: np.ndarray | None, edges: np.ndarray, token_edges: np.ndarray, T: int
) -> np.ndarray:
    """Bucket b holds keys in (edges[b-1], edges[b]]; 2D: b * T + token sub-bucket."""
    b = np.searchsorted(edges, keys, side="left").astype(np.int64)
    if T <= 1:
        return b
    assert tokens is not None
    j = np.array(
        [
            np.searchsorted(token_edges[bi], float(t), side="left")
            for bi, t in zip(b, tokens, strict=True)
        ],
        dtype=np.int64,
    )
    return b * T + j


# ------------------------------------------------------------------------------------ packing


def pack(
    segments: list[list[int]],
    dur: np.ndarray,
    frames: np.ndarray | None,
    cap_d: list[float],
    cap_c: list[int],
    max_frames: int | None,
    q: float | None,
    sum_mode: bool,
    exclude: bool,
    tokens: np.ndarray | None = None,
    max_tokens: int | None = None,
    identity: np.ndarray | None = None,
) -> tuple[list[list[int]], list[int], list[float], list[float], int]:
    """Greedy, in order, within each segment; caps checked before a cut joins; with
    ``identity``, a row whose id is already in the batch closes it first."""
    batches: list[list[int]] = []
    bseg: list[int] = []
    bcost: list[float] = []
    bdur: list[float] = []
    n_over = 0
    maxf = max_frames if max_frames is not None else (1 << 63) - 1
    maxt = max_tokens if max_tokens is not None else (1 << 63) - 1
    for s, seg in enumerate(segments):
        cur: list[int] = []
        m = sm = dsum = 0.0
        mf = sf = mt = st = 0

        for row in seg:
            d = float(dur[row])
            c = d if q is None else d + d * d / q
            f = int(frames[row]) if (max_frames is not None and frames is not None) else 0
            # a token cost: an int, or a float with quadratic_tokens
            t = tokens[row].item() if (max_tokens is not None and tokens is not None) else 0
            if c > cap_d[s] or f > maxf or t > maxt:
                n_over += 1
                if exclude:
                    continue
                if cur:
                    batches.append(cur)
                    bseg.append(s)
                    bcost.append(sm if sum_mode else float(len(cur)) * m)
                    bdur.append(dsum)
                    cur, m, sm, dsum, mf, sf, mt, st = [], 0.0, 0.0, 0.0, 0, 0, 0, 0
                batches.append([row])
                bseg.append(s)
                bcost.append(c)
                bdur.append(d)
                continue
            if cur:
                n = len(cur)
                if sum_mode:
                    nd, nf, nt = sm + c, sf + f, st + t
                else:
                    nd, nf = float(n + 1) * max(m, c), (n + 1) * max(mf, f)
                    nt = (n + 1) * max(mt, t)
                dup = identity is not None and int(identity[row]) in {int(identity[r]) for r in cur}
                if n + 1 > cap_c[s] or nd > cap_d[s] or nf > maxf or nt > maxt or dup:
                    batches.append(cur)
                    bseg.append(s)
                    bcost.append(sm if sum_mode else float(len(cur)) * m)
                    bdur.append(dsum)
                    cur, m, sm, dsum, mf, sf, mt, st = [], 0.0, 0.0, 0.0, 0, 0, 0, 0
            cur.append(row)
            m = max(m, c)
            sm = sm + c
            dsum = dsum + d
            mf = max(mf, f)
            sf += f
            mt = max(mt, t)
            st += t
        if cur:
            batches.append(cur)
            bseg.append(s)
            bcost.append(sm if sum_mode else float(len(cur)) * m)
            bdur.append(dsum)
    return batches, bseg, bcost, bdur, n_over


def token_costs(cols: dict[str, np.ndarray], config: Any) -> np.ndarray:
    """Text tokens (0 without text) + ceil(duration x audio rate), one cut at a time; with
    ``quadratic_tokens = q`` that count ``t`` costs ``t + t * t / q`` (a float)."""
    import math

    out = []
    for d, t in zip(cols["duration"].tolist(), cols["num_tokens"].tolist(), strict=True):
        cost = max(int(t), 0)
        if config.audio_tokens_per_second is not None:
            cost += math.ceil(d * config.audio_tokens_per_second - 1e-9)
        out.append(cost)
    q = config.quadratic_tokens
    if q is not None:
        return np.array([float(c) + float(c) * float(c) / q for c in out], dtype=np.float64)
    return np.array(out, dtype=np.int64)


def sort_pools(segments: list[list[int]], dur: np.ndarray, pool: int) -> list[list[int]]:
    """Each run of ``pool`` rows of a segment sorted by duration, stably."""
    out = []
    for seg in segments:
        runs = [
            sorted(seg[a : a + pool], key=lambda r: float(dur[r])) for a in range(0, len(seg), pool)
        ]
        out.append([r for run in runs for r in run])
    return out


# ------------------------------------------------------------------------------- batch order


def order_batches(
    seg_counts: list[int], W: int, seed: int, epoch: int, shuffle_order: bool, drop_last: bool
) -> tuple[list[int], list[int], list[int]]:
    """Full groups of W per segment; leftovers of all segments in segment order, rotated, cut
    into mixed groups; last partial group dropped or padded cyclically (and kept last); the
    other groups shuffled."""
    groups: list[list[int]] = []
    left: list[int] = []
    start = 0
    for nb in seg_counts:
        full = nb // W
        for g in range(full):
            groups.append(list(range(start + g * W, start + (g + 1) * W)))
        left.extend(range(start + full * W, start + nb))
        start += nb
    L = len(left)
    if shuffle_order and L > 0:
        rot = Stream(derive_key(seed, epoch, PURPOSE_TAIL)).bounded(L)
        left = left[rot:] + left[:rot]
    nmixed, p = divmod(L, W)
    for g in range(nmixed):
        groups.append(left[g * W : (g + 1) * W])
    partial = left[nmixed * W :]
    dropped: list[int] = []
    padded_group = None
    if p:
        if drop_last:
            dropped = partial
        else:
            padded_group = partial + [partial[j % p] for j in range(W - p)]
            groups.append(padded_group)
    # The padded group stays the last step: repeats only at the tail of the epoch.
    shuffled = len(groups) - (padded_group is not None)
    ids = list(range(shuffled))
    if shuffle_order and shuffled > 1:
        ids = shuffle(ids, derive_key(seed, epoch, PURPOSE_ORDER))
    ids += list(range(shuffled, len(groups)))
    order = [b for g in ids for b in groups[g]]
    padding: list[int] = []
    if padded_group is not None:
        at = len(groups) - 1
        padding = list(range(at * W + p, (at + 1) * W))
    return order, padding, dropped


# ---------------------------------------------------------------------------------- the plan


PLAN_ARRAYS = (
    "batch_offsets",
    "rows",
    "bucket",
    "cost",
    "duration",
    "padding_batches",
    "bucket_edges",
    "token_edges",
)
"""The arrays of an ``EpochPlan`` the twin reproduces (the golden hashes cover the same)."""


@dataclass
class RefPlan:
    batch_offsets: np.ndarray
    rows: np.ndarray
    bucket: np.ndarray
    cost: np.ndarray
    duration: np.ndarray
    padding_batches: np.ndarray
    bucket_edges: np.ndarray
    token_edges: np.ndarray
    stats: dict[str, Any]


def reference_plan(
    cols: dict[str, np.ndarray],
    config: Any,
    epoch: int,
    world_size: int,
    mask: np.ndarray | None = None,
    history: tuple[tuple[int, int], ...] = (),
) -> RefPlan:
    """The plan of ``discoseq.plan.plan_epoch``, computed the slow, obvious way.

    ``history``: ``(world size, steps)`` segments delivered before (elastic resumption). The
    batches are packed as without it; each segment orders the batches the ones before it left
    (the same order rule, for its world size) and delivers its first ``steps * W`` global
    batches; the batches left after the last segment are ordered for ``world_size``."""
    dur = np.asarray(cols["duration"], dtype=np.float64)
    n = dur.shape[0]
    strategy = str(config.strategy)
    # filters, first reason wins
    keep = np.ones(n, dtype=bool)
    filtered = dict.fromkeys(FILTER_REASONS, 0)
    tests: list[tuple[str, np.ndarray]] = []
    if mask is not None:
        tests.append(("mask", np.asarray(mask, dtype=bool)))
    if config.min_duration is not None:
        tests.append(("min_duration", dur >= config.min_duration))
    if config.max_duration_per_cut is not None:
        tests.append(("max_duration_per_cut", dur <= config.max_duration_per_cut))
    if config.max_tokens_per_second is not None:
        t = cols["num_tokens"]
        tests.append(("max_tokens_per_second", (t < 0) | (t <= config.max_tokens_per_second * dur)))
    for reason, passes in tests:
        filtered[reason] = int(np.count_nonzero(keep & ~passes))
        keep &= passes
    rows = np.flatnonzero(keep)

    B, T = config.duration_buckets, config.token_buckets
    edges = np.empty(0)
    token_edges = np.zeros((B, max(T - 1, 0)))
    if strategy == "bucketed" and rows.size:
        keys = keys_of(cols, config.bucket_method, rows)
        edges = (
            np.asarray(config.bucket_edges, dtype=np.float64)
            if config.bucket_edges is not None
            else estimate_edges(keys, config.bucket_method, B)
        )
        tokens = cols["num_tokens"][rows] if T > 1 else None
        if T > 1:
            if config.token_bucket_edges is not None:
                token_edges = np.asarray(config.token_bucket_edges, dtype=np.float64)
            else:
                b1 = np.searchsorted(edges, keys, side="left")
                for b in range(B):
                    tk = cols["num_tokens"][rows[b1 == b]].astype(np.float64)
                    token_edges[b] = estimate_edges(tk, "num_tokens", T)
        ids = bucket_ids(keys, tokens, edges, token_edges, T)
        segments = [rows[ids == s].tolist() for s in range(B * T)]  # stable: index order
        if config.effective_shuffle:
            segments = [
                shuffle(seg, derive_key(config.seed, epoch, PURPOSE_CUTS | s))
                for s, seg in enumerate(segments)
            ]
    elif strategy == "random":
        segments = [shuffle(rows.tolist(), derive_key(config.seed, epoch, PURPOSE_CUTS))]
    else:
        segments = [rows.tolist()]
    if config.sort_pool is not None:
        segments = sort_pools(segments, dur, config.sort_pool)
    nseg = len(segments)

    if not rows.size:
        if history:
            raise ValueError(f"history entry {list(history[0])} exceeds the 0 batches per rank")
        return RefPlan(
            np.zeros(1, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.int32),
            np.empty(0),
            np.empty(0),
            np.empty(0, np.int64),
            edges,
            token_edges,
            dict(
                cuts_in=n,
                filtered=filtered,
                oversize=0,
                dropped_batches=0,
                dropped_cuts=0,
                cuts_planned=0,
                total_duration=0.0,
            ),
        )

    cap_d = [float(config.max_duration) if config.max_duration is not None else np.inf] * nseg
    if config.bucket_max_duration is not None:
        cap_d = [float(x) for x in config.bucket_max_duration]
    cap_c = [config.max_cuts if config.max_cuts is not None else (1 << 63) - 1] * nseg
    if config.bucket_max_cuts is not None:
        cap_c = list(config.bucket_max_cuts)
    batches, bseg, bcost, bdur, n_over = pack(
        segments,
        dur,
        cols.get("num_frames"),
        cap_d,
        cap_c,
        config.max_frames,
        config.quadratic_constant,
        config.limit_mode == "sum",
        config.oversize == "exclude",
        token_costs(cols, config) if config.max_tokens is not None else None,
        config.max_tokens,
    )
    shuffle_order = strategy == "bucketed" and config.effective_shuffle
    left = list(range(len(batches)))  # batch ids, in packing order (so by segment)
    for world, steps in history:
        counts = [sum(1 for b in left if bseg[b] == s) for s in range(nseg)]
        seen, _, _ = order_batches(
            counts, world, config.seed, epoch, shuffle_order, config.drop_last
        )
        if steps * world > len(seen):
            raise ValueError(f"history entry {[world, steps]} exceeds the batches per rank")
        delivered = {left[i] for i in seen[: steps * world]}
        left = [b for b in left if b not in delivered]
    if history:
        gone = set(range(len(batches))) - set(left)
        filtered["mask"] += sum(len(batches[b]) for b in gone)
        batches = [batches[b] for b in left]
        bseg = [bseg[b] for b in left]
        bcost = [bcost[b] for b in left]
        bdur = [bdur[b] for b in left]
    seg_counts = [bseg.count(s) for s in range(nseg)]
    order, padding, dropped = order_batches(
        seg_counts, world_size, config.seed, epoch, shuffle_order, config.drop_last
    )
    out_rows = [r for b in order for r in batches[b]]
    offsets = np.cumsum([0] + [len(batches[b]) for b in order]).astype(np.int64)
    planned = np.ones(len(batches), dtype=bool)
    planned[dropped] = False
    dropped_cuts = sum(len(batches[b]) for b in dropped)
    bdur_arr = np.array(bdur, dtype=np.float64)
    stats = dict(
        cuts_in=n,
        filtered=filtered,
        oversize=n_over,
        dropped_batches=len(dropped),
        dropped_cuts=dropped_cuts,
        cuts_planned=sum(len(b) for b in batches) - dropped_cuts,
        total_duration=float(bdur_arr[planned].sum()),
    )
    return RefPlan(
        batch_offsets=offsets,
        rows=np.array(out_rows, dtype=np.int64),
        bucket=np.array([bseg[b] for b in order], dtype=np.int32),
        cost=np.array([bcost[b] for b in order], dtype=np.float64),
        duration=np.array([bdur[b] for b in order], dtype=np.float64),
        padding_batches=np.array(padding, dtype=np.int64),
        bucket_edges=edges,
        token_edges=token_edges,
        stats=stats,
    )


# ---------------------------------------------------------------------------- mixture quotas

PURPOSE_SOURCE = 4 << 32
US_PER_HOUR = 3_600_000_000


def reference_select(
    duration: np.ndarray,
    keep: np.ndarray | None,
    names: list[str],
    offsets: list[int],
    entries: dict[str, dict[str, Any]],
    seed: int,
    epoch: int,
    shuffle_streams: bool,
    epoch_cuts: int | None = None,
    epoch_hours: float | None = None,
    temperature: float = 1.0,
) -> dict[str, list[tuple[int, int]]]:
    """The (row, round) pairs each source of a flat mixture puts in ``epoch``, the slow way:
    every stream position spelled out, every boundary found by scanning. A quota of ``k``
    times the source and a rest takes every cut ``k`` times (whole passes, rounds ``0 ..
    k - 1``) and the rest from the source's stream, which only the rests move along."""
    import zlib

    streams = {}
    for s, name in enumerate(names):
        rows = [r for r in range(offsets[s], offsets[s + 1]) if keep is None or keep[r]]
        us = {r: int(np.rint(duration[r] * 1_000_000)) for r in rows}
        streams[name] = (rows, us)

    def plain(name: str, c: int) -> list[int]:
        """Cycle ``c`` by key: each cut's key is output ``i`` of the SplitMix64 stream of the
        cycle's key (``i``: its offset in the source), ties by ``i``; unshuffled: index order."""
        rows = streams[name][0]
        if not shuffle_streams:
            return list(rows)
        base = int(offsets[names.index(name)])
        key = derive_key(seed, c, PURPOSE_SOURCE | zlib.crc32(name.encode()))
        u = {r: mix64(key + (r - base + 1) * GOLDEN) for r in rows}
        return sorted(rows, key=lambda r: (u[r], r))

    def nearest(us: list[int], r: int) -> int:
        """The boundary (count of leading cuts) whose microseconds are nearest ``r`` (ties:
        the earlier), scanning."""
        p, acc = 0, 0
        while p < len(us):
            nxt = acc + us[p]
            if nxt >= r:
                return p if r - acc <= nxt - r else p + 1
            acc, p = nxt, p + 1
        return p

    def quotas() -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        fixed_cuts = fixed_us = 0
        for name, spec in entries.items():
            rows, us = streams[name]
            if "repeat" in spec or "choose" in spec:
                count = round(spec["repeat"] * len(rows)) if "repeat" in spec else spec["choose"]
                out[name] = ("cuts", count)
                fixed_cuts += count
                fixed_us += round(count * sum(us.values()) / len(rows)) if rows else 0
        weighted = [n for n, spec in entries.items() if n not in out]
        raw = [
            entries[n]["weight"]
            if "weight" in entries[n]
            else (sum(streams[n][1].values()) / US_PER_HOUR) ** temperature
            for n in weighted
        ]
        shares = [w / sum(raw) for w in raw]
        if epoch_cuts is not None:
            unit, budget = "cuts", epoch_cuts - fixed_cuts
        elif epoch_hours is not None:
            unit, budget = "hours", round(epoch_hours * US_PER_HOUR) - fixed_us
        else:
            unit, budget = "hours", sum(sum(streams[n][1].values()) for n in weighted)
        exact = [budget * sh for sh in shares]
        amounts = [int(np.floor(x)) for x in exact]
        for i in sorted(range(len(exact)), key=lambda i: (-(exact[i] - amounts[i]), i))[
            : budget - sum(amounts)
        ]:
            amounts[i] += 1
        for n, a in zip(weighted, amounts, strict=True):
            out[n] = (unit, a)
        return out

    q = quotas()
    result = {}
    for name in names:
        unit, asked = q[name]
        rows, us = streams[name]
        n = len(rows)
        span = n if unit == "cuts" else sum(us.values())
        # whole passes over the source, then the rest from its stream of cycles
        passes, amount = divmod(asked, span)
        cycles: list[list[int]] = []
        ends: list[int] = []  # per cycle: the axis end of the epoch crossing into it (or -1)

        heads: list[int] = []
        a = 0  # every epoch from 0 in turn: epoch e spans [e * amount, (e + 1) * amount)
        taken: list[int] = []
        for e in range(epoch + 1):
            x0, x1 = e * amount, (e + 1) * amount
            if amount == 0:
                a = b = 0
            else:
                # enter every cycle the epoch reaches; the last one may be reordered
                last = (x1 - 1) // span
                for c in range(len(cycles), last + 1):
                    order, h, end = plain(name, c), 0, -1
                    cross = c >= 1 and x0 < c * span < x1 and x0 > (c - 1) * span
                    t = c * n - a if cross else 0
                    if cross and 0 < t < n:
                        tail = set(cycles[c - 1][n - t :])
                        rest = [row for row in order if row not in tail]
                        r = x1 - c * span
                        if unit == "cuts":
                            fits, h = r <= len(rest), r
                        else:
                            rest_us = [us[row] for row in rest]
                            fits = r <= sum(rest_us)
                            h = nearest(rest_us, r) if fits else 0
                        if fits:  # else the epoch asks more than the source: copies are due
                            head = rest[:h]
                            order = head + [row for row in order if row not in set(head)]
                            end = x1  # the epoch's end is position h (0: the cycle's start)
                    cycles.append(order)
                    heads.append(h)
                    ends.append(end)
                cb, r = divmod(x1, span)
                if r == 0:
                    b = cb * n
                elif unit == "cuts":
                    b = x1
                elif x1 == ends[cb]:
                    b = cb * n + heads[cb]
                else:
                    b = cb * n + nearest([us[row] for row in cycles[cb]], r)
            if e == epoch:
                taken = list(rows) * passes + [cycles[p // n][p % n] for p in range(a, b)]
            a = b
        seen: dict[int, int] = {}
        pairs = []
        for r in taken:
            pairs.append((r, seen.get(r, 0)))
            seen[r] = seen.get(r, 0) + 1
        result[name] = pairs
    return result
