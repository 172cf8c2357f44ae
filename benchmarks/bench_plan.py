"""Engine benchmarks: every number is a ratio measured in this one run (the machine is shared).

    python benchmarks/bench_plan.py            # full: 10M-cut plan, 1M-cut Lhotse epoch, ...
    python benchmarks/bench_plan.py --quick    # small smoke run
    python benchmarks/bench_plan.py --plan-only  # part 1 only (plan times and variants)

1. Plan time for N cuts (BUCKETED, 30 buckets, shuffle, W=8, max_duration=600 s) vs a
   straightforward NumPy implementation (sort/cumsum edges, searchsorted buckets, argsort
   shuffle, fixed-size batches per bucket, permutation of groups). Then the same plan with
   2D buckets, the other bucketing methods and token caps against the 1D plan, timed in
   interleaved rounds (one plan of each per round) so a burst of load on a shared machine hits
   them alike: the best time of each against the best 1D time, and the median over the rounds
   of each round's ratio to that round's 1D plan.
2. Time to produce every batch of an epoch vs Lhotse's DynamicBucketingSampler (same
   max_duration and num_buckets) on the same corpus of in-memory MonoCuts.
3. Plan memory in bytes per cut: the finished plan's arrays, and tracemalloc's peak during
   planning. tracemalloc sees NumPy's allocations, not the kernels' C scratch (1 B/cut of bucket
   ids while grouping, a histogram, the packer's per-batch buffers); the peak is at the final
   gather (two int64 row arrays), when that scratch has already been freed.
4. Padding efficiency (sum of durations / sum over batches of n x longest) and mean batch fill
   (padded cost / cap) vs DynamicBucketingSampler with 10/30/100 buckets, on a LibriSpeech-like
   and a mixed short/long duration profile.

Durations are generated with NumPy (nothing is written to disk).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np

from discoseq.config import SamplerConfig
from discoseq.plan import plan_epoch, scratch


def librispeech_like(n: int, seed: int = 0) -> np.ndarray:
    """Most utterances 10–17 s, a tail of short ones, a few long ones up to 35 s; mean ≈ 12.3 s."""
    g = np.random.default_rng(seed)
    u = g.random(n)
    main = np.clip(g.normal(14.0, 1.8, n), 10.0, 17.0)
    short = g.uniform(1.0, 10.0, n)
    long = g.uniform(17.0, 35.0, n)
    return np.round(np.where(u < 0.70, main, np.where(u < 0.96, short, long)), 2)


def mixed(n: int, seed: int = 0) -> np.ndarray:
    """About 70% 0.5–5 s and 30% 10–30 s."""
    g = np.random.default_rng(seed)
    return np.round(np.where(g.random(n) < 0.7, g.uniform(0.5, 5, n), g.uniform(10, 30, n)), 2)


def numpy_plan(
    d: np.ndarray, num_buckets: int, max_duration: float, W: int, seed: int, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """An honest vectorised NumPy plan: equal-duration edges from the sorted column, bucket ids by
    searchsorted, shuffle within buckets by argsort of (bucket + uniform), fixed-size batches per
    bucket (cap // longest cut of the bucket, so the cap holds), groups of W batches of one bucket
    shuffled, tail padded. Returns (rows, batch_offsets)."""
    gen = np.random.default_rng([seed, epoch])
    s = np.sort(d)
    cs = np.cumsum(s)
    targets = cs[-1] * np.arange(1, num_buckets) / num_buckets
    edges = s[np.searchsorted(cs, targets)]
    b = np.searchsorted(edges, d, side="left")
    order = np.argsort(b + gen.random(d.size), kind="stable")
    counts = np.bincount(b, minlength=num_buckets)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    longest = np.maximum.reduceat(d[order], starts) if d.size else np.zeros(0)
    per_batch = np.maximum(1, (max_duration // np.where(counts > 0, longest, 1)).astype(np.int64))
    nb = -(-counts // per_batch)
    # batch starts per bucket: start + k * per_batch
    bucket_of_batch = np.repeat(np.arange(num_buckets), nb)
    k = np.arange(nb.sum()) - np.repeat(np.cumsum(nb) - nb, nb)
    bstart = starts[bucket_of_batch] + k * per_batch[bucket_of_batch]
    bend = np.minimum(bstart + per_batch[bucket_of_batch], (starts + counts)[bucket_of_batch])
    ngroups = -(-bstart.size // W)
    pad = ngroups * W - bstart.size
    gidx = np.concatenate([np.arange(bstart.size), np.arange(pad) % max(bstart.size, 1)])
    perm = gen.permutation(ngroups)
    gidx = gidx.reshape(ngroups, W)[perm].reshape(-1)
    lens = bend[gidx] - bstart[gidx]
    offsets = np.concatenate([[0], np.cumsum(lens)])
    idx = np.repeat(bstart[gidx] - offsets[:-1], lens) + np.arange(offsets[-1])
    return order[idx], offsets


def timeit(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) wall time of ``repeat`` calls: the best is the least disturbed by the other
    jobs on a shared machine, the median shows the disturbance."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def padding_stats(
    rows_of_batches: list[np.ndarray] | None,
    d: np.ndarray,
    cap: float,
    offsets: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(padding efficiency, mean batch fill, mean cuts per batch)."""
    if offsets is not None and rows is not None:
        x = d[rows]
        sizes = np.diff(offsets)
        longest = np.maximum.reduceat(x, offsets[:-1])
        total = x.sum()
    else:
        assert rows_of_batches is not None
        sizes = np.array([r.size for r in rows_of_batches])
        longest = np.array([d[r].max() for r in rows_of_batches])
        total = sum(d[r].sum() for r in rows_of_batches)
    padded = sizes * longest
    return float(total / padded.sum()), float((padded / cap).mean()), float(sizes.mean())


def lhotse_cuts(d: np.ndarray):
    from lhotse import CutSet, MonoCut

    return CutSet.from_cuts(
        MonoCut(id=str(i), start=0.0, duration=float(x), channel=0) for i, x in enumerate(d)
    )


def lhotse_epoch(cuts, num_buckets: int, max_duration: float) -> list[np.ndarray]:
    from lhotse.dataset import DynamicBucketingSampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = DynamicBucketingSampler(
            cuts, max_duration=max_duration, num_buckets=num_buckets, shuffle=True, seed=0
        )
        return [np.fromiter((int(c.id) for c in batch), dtype=np.int64) for batch in sampler]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument(
        "--plan-only",
        action="store_true",
        help="only part 1: plan time vs NumPy and the bucketing/token-cap variants vs 1D",
    )
    args = ap.parse_args()
    n_plan = 200_000 if args.quick else 10_000_000
    n_lhotse = 20_000 if args.quick else 1_000_000
    n_pad = 20_000 if args.quick else 200_000
    repeat = 3 if args.quick else 5
    W, B, cap = 8, 30, 600.0

    print(
        f"== 1. plan time: {n_plan:,} LibriSpeech-like cuts, BUCKETED, {B} buckets, shuffle, "
        f"W={W}, max_duration={cap:g}"
    )
    d = librispeech_like(n_plan)
    print(
        f"   durations: mean {d.mean():.2f} s, min {d.min():.2f}, max {d.max():.2f}, "
        f"10–17 s: {np.mean((d >= 10) & (d <= 17)):.0%}"
    )
    cols = {"duration": d}
    cfg = SamplerConfig(max_duration=cap, num_buckets=B, shuffle=True, seed=1)
    plan = plan_epoch(cols, cfg, 0, W)  # warm-up (first touch of pages)
    ep = iter(range(1, 1000))
    t_plan, t_plan_med = timeit(lambda: plan_epoch(cols, cfg, next(ep), W), repeat)
    numpy_plan(d, B, cap, W, 1, 0)
    t_np, t_np_med = timeit(lambda: numpy_plan(d, B, cap, W, 1, 0), repeat)
    print(
        f"   discoseq plan_epoch: best {t_plan * 1e3:7.1f} ms, median {t_plan_med * 1e3:7.1f} ms "
        f"of {repeat} -> {plan.num_batches:,} batches, {plan.batches_per_rank:,} per rank"
    )
    print(f"   NumPy baseline     : best {t_np * 1e3:7.1f} ms, median {t_np_med * 1e3:7.1f} ms")
    print(
        f"   speed-up vs NumPy  : {t_np / t_plan:5.1f}x best/best, {t_np_med / t_plan_med:5.1f}x "
        "median/median   (targets: >= 5x; plan <= 0.5 s for 10M cuts)"
    )
    # every bucketing method and the token cap, against the 1D plan just measured
    frames = np.ceil(d * 100).astype(np.int64)
    full = {
        "duration": d,
        "num_frames": frames,
        "num_features": np.full(n_plan, 80, dtype=np.int64),
        "num_tokens": (d * 14).astype(np.int64),  # ~14 characters per second
    }
    token_cap = cfg.replace(max_tokens=12000, audio_tokens_per_second=12.5)
    variants = {
        "1D duration (baseline)": cfg,
        "2D duration x tokens (3)": cfg.replace(num_token_buckets=3),
        "bucket_method=num_frames": cfg.replace(bucket_method="num_frames"),
        "bucket_method=num_features": cfg.replace(bucket_method="num_features"),
        "max_tokens + audio tokens": token_cap,
        "  + quadratic_tokens=2000": token_cap.replace(quadratic_tokens=2000.0),
    }
    for variant in variants.values():
        plan_epoch(full, variant, 0, W)  # warm-up
    rounds = repeat + 2
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            t = time.perf_counter()
            plan_epoch(full, variant, next(ep), W)
            times[name].append(time.perf_counter() - t)
    base = times["1D duration (baseline)"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"   every bucketing method and token cap, {rounds} interleaved rounds (goal <= 1.2x; "
        f"load average {load} on {os.cpu_count()} cores):"
    )
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base, strict=True))
        best, median = min(ts) * 1e3, statistics.median(ts) * 1e3
        print(
            f"   {name:<27}: best {best:7.1f} ms, median {median:7.1f} ms = "
            f"{min(ts) / min(base):4.2f}x best/best, {ratio:4.2f}x median of the rounds' ratios"
        )
    if args.plan_only:
        return

    print("== 3. plan memory")
    plan_bytes = sum(
        a.nbytes
        for a in (
            plan.rows,
            plan.batch_offsets,
            plan.bucket,
            plan.cost,
            plan.duration,
            plan.padding_batches,
        )
    )
    del plan
    # a cold plan (nothing kept from earlier plans), then the next one, which reuses the memory
    # the first handed back (scratch: the grouped rows; a dropped plan's rows)
    scratch.release()
    peaks = []
    for epoch in (0, 1):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        plan_epoch(cols, cfg, epoch, W)  # dropped at once, as a run drops the last epoch's plan
        peaks.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
    kept = scratch.kept_bytes()
    print(
        f"   finished plan: {plan_bytes / n_plan:5.1f} B/cut; peak while planning: "
        f"{peaks[0] / n_plan:5.1f} B/cut (target <= ~24), of new memory in the next plan "
        f"{peaks[1] / n_plan:5.1f} B/cut; kept between plans {kept / n_plan:5.1f} B/cut"
    )

    print(
        f"== 2. vs Lhotse DynamicBucketingSampler: {n_lhotse:,} cuts, {B} buckets, "
        f"max_duration={cap:g}, one epoch, all batches"
    )
    dl = librispeech_like(n_lhotse, seed=1)
    cuts = lhotse_cuts(dl)
    t = time.perf_counter()
    lb = lhotse_epoch(cuts, B, cap)
    t_lh = time.perf_counter() - t
    cols_l = {"duration": dl}
    cfg1 = SamplerConfig(max_duration=cap, num_buckets=B, seed=1)
    t_ours, _ = timeit(lambda: [b for b in plan_epoch(cols_l, cfg1, 0, 1).iter_batches()], 3)
    print(f"   Lhotse: {t_lh:8.2f} s for {len(lb):,} batches")
    print(f"   discoseq plan + iterate every batch: {t_ours * 1e3:8.1f} ms (best of 3)")
    print(f"   ratio: {t_lh / t_ours:8.0f}x")
    del cuts, lb

    print(
        f"== 4. padding efficiency / mean batch fill / cuts per batch, {n_pad:,} cuts, "
        f"max_duration={cap:g}, W=1"
    )
    print("   (eff = sum of durations / sum of n x longest; fill = mean of n x longest / cap)")
    print(
        "   profile          buckets | discoseq eff  fill cuts/b | Lhotse eff  fill cuts/b"
        " | discoseq sort_pool=1000 eff  fill"
    )
    for name, gen in (("librispeech-like", librispeech_like), ("mixed", mixed)):
        dp = gen(n_pad, seed=2)
        cuts = lhotse_cuts(dp)
        for nb in (10, 30, 100):
            p = plan_epoch(
                {"duration": dp}, SamplerConfig(max_duration=cap, num_buckets=nb, seed=0), 0, 1
            )
            ours = padding_stats(None, dp, cap, p.batch_offsets, p.rows)
            sp = SamplerConfig(max_duration=cap, num_buckets=nb, sort_pool=1000, seed=0)
            p = plan_epoch({"duration": dp}, sp, 0, 1)
            pooled = padding_stats(None, dp, cap, p.batch_offsets, p.rows)
            theirs = padding_stats(lhotse_epoch(cuts, nb, cap), dp, cap)
            print(
                f"   {name:16s} {nb:7d} | {ours[0]:12.3f} {ours[1]:5.3f} {ours[2]:6.1f} | "
                f"{theirs[0]:10.3f} {theirs[1]:5.3f} {theirs[2]:6.1f} | "
                f"{pooled[0]:27.3f} {pooled[1]:5.3f}"
            )
        del cuts
    cfg_pool = SamplerConfig(max_duration=cap, num_buckets=B, sort_pool=1000, seed=0)
    plan_epoch(cols, cfg_pool, 0, W)
    t_pool, _ = timeit(lambda: plan_epoch(cols, cfg_pool, 1, W), max(2, repeat // 2))
    print(
        f"   plan time with sort_pool=1000 on the {n_plan:,} cuts of part 1: "
        f"{t_pool * 1e3:.1f} ms ({t_pool / t_plan:.1f}x the default plan)"
    )


if __name__ == "__main__":
    main()
