"""Sampler benchmarks (issue 4): every number is a ratio against Lhotse measured in this run.

1. An epoch of N LibriSpeech-like cuts (BUCKETED, 30 buckets, max_duration 600 s, shuffle):
   DiscoSeqSampler to index arrays (plan included) vs Lhotse's DynamicBucketingSampler producing
   its CutSets over the same manifest (lazy ``CutSet.from_file``, Lhotse's mode for large
   corpora) and over the same cuts held in memory (eager, loading time excluded); then
   DiscoSeqSampler resolving every batch to a CutSet in 2 DataLoader workers.
2. Memory of DataLoader workers at N cuts (2 workers, fork): each worker iterates its batches
   and reports its RSS and its private memory (``Private_*`` of ``/proc/self/smaps_rollup``,
   what it does not share with the parent); the parent's RSS beside it. DiscoSeqSampler over the
   index vs Lhotse's DynamicBucketingSampler over an eager CutSet of the same minimal records.
3. Restore at 10M cuts: state size (JSON bytes), and the time of ``load_state_dict`` plus the
   first batch in a fresh sampler, same world size and elastic (8 -> 6 ranks).

Usage: ``python benchmarks/bench_sampler.py [--quick] [--workdir DIR]``. Corpora and indexes are
generated into DIR (default ``benchmarks/out``, git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import manifest, tiny_manifest  # sibling benchmark helpers

ROOT = Path(__file__).resolve().parents[1]
CAP, BUCKETS = 600.0, 30


def proc_memory() -> dict[str, float]:
    """RSS, and private memory in MB: ``private`` is ``Private_Dirty`` (pages this process
    wrote and shares with no one: its own heap, copy-on-write copies of the parent's pages),
    ``private_clean`` the clean file pages only it has mapped so far (e.g. index pages it read
    first; page cache, shared as soon as another process reads them)."""
    out: dict[str, float] = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(rest.split()[0]) / 1024
    return {
        "rss": out["Rss"],
        "private": out["Private_Dirty"],
        "private_clean": out["Private_Clean"],
    }


def open_or_build(source: Path, out: Path) -> Any:
    """The index of ``source`` cached at ``out``: built once, rebuilt when ``source`` changes."""
    from discoseq.index import open_source

    t = time.perf_counter()
    index = open_source(source, cache_index=out).index
    print(f"   (index {out.name} opened or built in {time.perf_counter() - t:.1f} s)")
    return index


def sampler_config(**kw: Any) -> Any:
    from discoseq import SamplerConfig

    return SamplerConfig(max_duration=CAP, num_buckets=BUCKETS, seed=0, **kw)


# -- 1. epoch speed -----------------------------------------------------------------------------


def lhotse_sampler(cuts: Any) -> Any:
    from lhotse.dataset import DynamicBucketingSampler

    return DynamicBucketingSampler(
        cuts, max_duration=CAP, num_buckets=BUCKETS, shuffle=True, seed=0
    )


def bench_speed(workdir: Path, n: int) -> None:
    from lhotse import CutSet
    from torch.utils.data import DataLoader

    from discoseq import DiscoSeqSampler, create_dataloader

    print(
        f"== 1. one epoch of {n:,} LibriSpeech-like cuts, {BUCKETS} buckets, max_duration {CAP:g}"
    )
    path = manifest(workdir, n)
    index = open_or_build(path, workdir / f"idx_{n}")

    sampler = DiscoSeqSampler(index, sampler_config())
    t = time.perf_counter()
    n_ours = sum(1 for _ in sampler.iter_batches_indices())
    t_ours = time.perf_counter() - t
    print(f"   discoseq, plan + every batch as index rows : {t_ours:8.3f} s  ({n_ours:,} batches)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        n_lazy = sum(1 for _ in lhotse_sampler(CutSet.from_file(path)))
        t_lazy = time.perf_counter() - t
        print(f"   Lhotse DynamicBucketingSampler, lazy file   : {t_lazy:8.2f} s  ({n_lazy:,} b.)")
        t = time.perf_counter()
        eager = CutSet.from_file(path).to_eager()
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        n_eager = sum(1 for _ in lhotse_sampler(eager))
        t_eager = time.perf_counter() - t
        print(
            f"   Lhotse DynamicBucketingSampler, eager      : {t_eager:8.2f} s  ({n_eager:,} "
            f"batches; loading the CutSet took {t_load:.1f} s more)"
        )
        del eager
        gc.collect()

    loader = DataLoader(sampler, batch_size=None, num_workers=2)
    t = time.perf_counter()
    n_cuts = sum(len(b) for b in loader)
    t_res = time.perf_counter() - t
    print(f"   discoseq, resolved to CutSets in 2 workers  : {t_res:8.2f} s  ({n_cuts:,} cuts)")
    # A training pipeline runs its Lhotse dataset in the workers and ships tensors, not cuts:
    # the CutSets then never cross the process boundary (unpickling ~45 us/cut in the parent).
    with_ds = create_dataloader(index, sampler_config(num_workers=2), dataset=Durations())
    t = time.perf_counter()
    n_ds = sum(int(b.shape[0]) for b in with_ds)
    t_ds = time.perf_counter() - t
    print(f"   discoseq, CutSets + dataset in 2 workers    : {t_ds:8.2f} s  ({n_ds:,} cuts)")
    print(f"   ratio index arrays vs Lhotse lazy : {t_lazy / t_ours:8.0f}x   (target >= 100x)")
    print(f"   ratio index arrays vs Lhotse eager: {t_eager / t_ours:8.0f}x")
    print(f"   ratio 2-worker CutSets vs Lhotse lazy : {t_lazy / t_res:6.1f}x")
    print(f"   ratio 2-worker CutSets vs Lhotse eager: {t_eager / t_res:6.1f}x")
    print(f"   ratio 2-worker dataset vs Lhotse lazy : {t_lazy / t_ds:6.1f}x")


class Durations:
    """A stand-in for a Lhotse dataset: ``dataset[cuts]`` -> a tensor (of durations)."""

    def __getitem__(self, cuts: Any) -> Any:
        import torch

        return torch.tensor([c.duration for c in cuts])


# -- 2. worker memory ---------------------------------------------------------------------------


class MemoryProbe:
    """An IterableDataset that iterates ``inner`` in the worker (up to ``limit`` batches) and
    yields the worker's memory at the end."""

    def __init__(self, inner: Any, limit: int, lhotse_split: bool) -> None:
        self.inner, self.limit, self.lhotse_split = inner, limit, lhotse_split

    def __iter__(self) -> Any:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        n = 0
        for i, batch in enumerate(self.inner):
            # Lhotse's sampler is replicated in every worker; keep every K-th batch as a worker
            # split would (the memory is the sampler's, whichever batches are kept)
            if self.lhotse_split and i % info.num_workers != info.id:
                continue
            n += len(batch)
            if n >= self.limit:
                break
        yield {"worker": info.id, "cuts": n, **proc_memory()}


def probe(dataset: Any, limit: int, lhotse_split: bool) -> list[dict]:
    from torch.utils.data import DataLoader, IterableDataset

    class _P(MemoryProbe, IterableDataset):  # type: ignore[misc]
        pass

    loader = DataLoader(
        _P(dataset, limit, lhotse_split), batch_size=None, num_workers=2,
        multiprocessing_context="fork",
    )  # fmt: skip
    out = []
    for report in loader:
        report["parent_rss"] = proc_memory()["rss"]
        out.append(report)
    return out


def bench_memory(workdir: Path, n: int, limit: int) -> None:
    from lhotse import CutSet

    from discoseq import DiscoSeqSampler

    print(f"== 2. DataLoader worker memory at {n:,} cuts (2 workers, fork; {limit:,} cuts each)")
    path = tiny_manifest(workdir, n)
    index = open_or_build(path, workdir / f"idx_tiny_{n}")
    sampler = DiscoSeqSampler(index, sampler_config())
    _ = sampler.plan
    ours = probe(sampler, limit, lhotse_split=False)
    del sampler
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        eager = CutSet.from_file(path).to_eager()
        took = time.perf_counter() - t
        print(f"   (Lhotse eager CutSet of {len(eager):,} cuts loaded in {took:.1f} s)")
        theirs = probe(lhotse_sampler(eager), limit, lhotse_split=True)
    print("   (target: discoseq < 50 MB per worker beyond what it shares with the parent)")
    for name, reports in (("discoseq", ours), ("Lhotse eager", theirs)):
        for r in sorted(reports, key=lambda r: r["worker"]):
            print(
                f"   {name:13s} worker {r['worker']}: RSS {r['rss']:7.1f} MB (parent "
                f"{r['parent_rss']:7.1f} MB, over parent {r['rss'] - r['parent_rss']:+7.1f}), "
                f"private dirty {r['private']:6.1f} MB, clean {r['private_clean']:6.1f} MB"
            )
    del eager
    gc.collect()


# -- 3. restore ---------------------------------------------------------------------------------


def bench_restore(workdir: Path, n: int) -> None:
    from discoseq import DiscoSeqSampler

    print(f"== 3. restore at {n:,} cuts (world 8, BUCKETED {BUCKETS} buckets, mid-epoch)")
    path = tiny_manifest(workdir, n)
    index = open_or_build(path, workdir / f"idx_tiny_{n}")
    cfg = sampler_config(world_size=8, rank=3)
    saver = DiscoSeqSampler(index, cfg)
    saver.set_epoch(5)
    half = len(saver) // 2
    state = json.loads(json.dumps(saver.state_dict(batches_delivered=half)))
    size = len(json.dumps(state).encode())
    del saver
    gc.collect()
    for label, world in (("same world size (8)", 8), ("elastic 8 -> 6", 6)):
        times = []
        for _ in range(3):
            fresh = DiscoSeqSampler(str(index.path), cfg.replace(world_size=world, rank=3))
            t = time.perf_counter()
            fresh.load_state_dict(state)
            fresh.set_epoch(5)
            next(iter(fresh.iter_batches_indices()))
            times.append(time.perf_counter() - t)
            del fresh
            gc.collect()
        print(
            f"   {label:20s}: load_state_dict + first batch {min(times):6.3f} s best, "
            f"{sorted(times)[1]:6.3f} s median of 3   (target < 1 s)"
        )
    print(f"   state size: {size} bytes of JSON   (target < 1 KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--only", choices=["speed", "memory", "restore"], action="append")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["speed", "memory", "restore"])
    n_speed = 20_000 if args.quick else 1_000_000
    n_mem = 50_000 if args.quick else 1_000_000
    n_restore = 200_000 if args.quick else 10_000_000
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; workdir {args.workdir}")
    if "speed" in only:
        bench_speed(args.workdir, n_speed)
    if "memory" in only:
        bench_memory(args.workdir, n_mem, limit=20_000 if args.quick else 100_000)
    if "restore" in only:
        bench_restore(args.workdir, n_restore)


if __name__ == "__main__":
    main()
