"""Mixture benchmarks: every number is measured in this one run (the machine is shared).

    python benchmarks/bench_mixture.py            # 10M-cut plans, 3 sources vs Lhotse's mux
    python benchmarks/bench_mixture.py --quick    # small smoke run
    python benchmarks/bench_mixture.py --plan-only  # part 1 only (plan times)

1. Plan time of a 3-source mixture totalling N cuts (6/10, 3/10, 1/10 of N; weights by hours
   with an hours budget, so every source is cut at a stream boundary and the small one is
   upsampled) vs the plan of the same N cuts as one corpus (BUCKETED, 30 buckets, W=8,
   max_duration=600 s), consecutive epochs as in training, timed in interleaved rounds (one
   plan of each per round). Goal: at most 1.3x. Wall time, and the process's CPU time (user +
   system: less disturbed by other jobs on a shared machine) with the load average beside it.
   Also the selection stage alone (quotas and the rows they take), warm and cold (a fresh
   process). Twice: (a) over in-memory columns, (b) through index files, as the sampler plans
   them (the N cuts written as minimal manifests and indexed, as one index and as three, in a
   temporary directory removed at the end: about 3 GB at N = 10M); (c) as (b) with natural
   weights (each source's share of the hours), the common case of a mixture taken once an
   epoch, where hours quotas repeat only a few cuts.
2. Delivered hours shares vs the asked weights after 1, 10 and 100 batches and after one epoch:
   discoseq (pooled and per_source) vs Lhotse's ``CutSet.mux`` and ``CutSet.infinite_mux`` with the
   same weights under ``DynamicBucketingSampler`` (same max_duration, 30 buckets), over the same
   cuts (written as manifests in a temporary directory, removed at the end). One epoch of the
   Lhotse runs is the same number of hours as discoseq's epoch.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_plan import librispeech_like, timeit

from discoseq import DiscoSeqSampler, SamplerConfig
from discoseq.plan import plan_epoch
from discoseq.plan.quota import SourceLayout, forget_streams
from discoseq.plan.select import select_rows

SHARES = {"big": 0.6, "mid": 0.3, "small": 0.1}  # of the cuts
WEIGHTS = {"big": 0.5, "mid": 0.3, "small": 0.2}  # asked, of the hours


def interleaved(
    fns: list[Callable[[], object]], rounds: int
) -> list[tuple[list[float], list[float]]]:
    """Per function, the wall and CPU (user + system) seconds of each round's call; every
    round calls each once, so a burst of load hits them alike."""
    out: list[tuple[list[float], list[float]]] = [([], []) for _ in fns]
    for _ in range(rounds):
        for fn, (wall, cpu) in zip(fns, out, strict=True):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            fn()
            wall.append(time.perf_counter() - t)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return out


def compare(
    what: str,
    one: Mapping[str, np.ndarray],
    mixed: Mapping[str, np.ndarray],
    layout: SourceLayout,
    base: SamplerConfig,
    mix: SamplerConfig,
    repeat: int,
    W: int,
) -> None:
    """The interleaved rounds of one comparison: a plan of the one corpus and of the mixture
    per round, consecutive epochs of each; then the mixture's selection stage alone."""
    # warm-up: each plan's epoch 0 (the mixture's first plan in a process computes its sources'
    # cycles afresh: the cold selection below)
    plan_epoch(one, base, 0, W)
    plan_epoch(mixed, mix, 0, W, sources=layout)
    # each plan its own epochs 1, 2, ...: a mixture's stream moves one epoch per plan, as in
    # training (one shared counter would skip every other epoch of each)
    ep1, ep3 = iter(range(1, 10_000)), iter(range(1, 10_000))
    load = os.getloadavg()
    (w1, c1), (w3, c3) = interleaved(
        [
            lambda: plan_epoch(one, base, next(ep1), W),
            lambda: plan_epoch(mixed, mix, next(ep3), W, sources=layout),
        ],
        repeat,
    )
    t1, m1, t3, m3 = min(w1), statistics.median(w1), min(w3), statistics.median(w3)
    ts, ms = timeit(lambda: select_rows(mixed, mix, None, next(ep3), layout), repeat)
    cold, _ = timeit(
        lambda: (forget_streams(), select_rows(mixed, mix, None, next(ep3), layout)), 1
    )
    p = plan_epoch(mixed, mix, 3, W, sources=layout)
    print(f" {what}")
    print(f"   one corpus        : best {t1 * 1e3:8.1f} ms, median {m1 * 1e3:8.1f} ms")
    print(f"   3-source mixture  : best {t3 * 1e3:8.1f} ms, median {m3 * 1e3:8.1f} ms")
    print(f"   ratio             : {t3 / t1:.2f}x best/best, {m3 / m1:.2f}x median (goal <= 1.3x)")
    print(f"   CPU ratio         : {min(c3) / min(c1):.2f}x best/best, "
          f"{statistics.median(c3) / statistics.median(c1):.2f}x median (one corpus best "
          f"{min(c1) * 1e3:.1f} ms, mixture {min(c3) * 1e3:.1f} ms of CPU); load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print(f"   of which selection: best {ts * 1e3:8.1f} ms, median {ms * 1e3:8.1f} ms "
          f"({ts / t1:.2f}x the one-corpus plan; the next epochs of a run)")  # fmt: skip
    print(f"   selection, cold   : {cold * 1e3:8.1f} ms (a new process or a resume: the source's "
          "cycles computed afresh)")  # fmt: skip
    sel = ", ".join(f"{s.name} {s.selected:,} ({s.planned_hours:,.0f} h)" for s in p.stats.sources)
    print(f"   mixture epoch selects: {sel}")


def write_durations(path: Path, prefix: str, durations: np.ndarray) -> None:
    """Minimal cuts of these durations as a plain ``.jsonl`` manifest (ids ``prefix-000000001``)."""
    with open(path, "w") as f:
        for start in range(0, len(durations), 1 << 20):
            f.write(
                "".join(
                    f'{{"id":"{prefix}-{start + j:09d}","start":0.0,"duration":{x},'
                    '"channel":0,"supervisions":[],"type":"MonoCut"}\n'
                    for j, x in enumerate(durations[start : start + (1 << 20)].tolist())
                )
            )


def plan_time(n: int, repeat: int) -> None:
    from discoseq.index import build_index, open_index

    sizes = [int(n * s) for s in SHARES.values()]
    per_source = [librispeech_like(k, seed=i) for i, k in enumerate(sizes)]
    d = np.concatenate(per_source)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    hours = d.sum() / 3600
    base = SamplerConfig(max_duration=600.0, num_buckets=30, seed=1)
    mix = base.replace(mixture={k: {"weight": w} for k, w in WEIGHTS.items()}, epoch_hours=hours)
    W = 8
    parts = ", ".join(f"{k} {s:,}" for k, s in zip(SHARES, sizes, strict=True))
    print(f"== 1. plan time, {n:,} cuts ({parts}), W={W}")
    cols = {"duration": d}
    compare(
        "a. in-memory columns (plan_epoch over a dict; the selection hashes each source's "
        "durations on every plan: a column in memory may change)",
        cols, cols, SourceLayout(tuple(SHARES), offsets), base, mix, repeat, W,
    )  # fmt: skip
    forget_streams()
    root = Path(tempfile.mkdtemp(prefix="discoseq-bench-mixture-plan-"))
    try:
        manifests = {}
        for name, durations in zip(SHARES, per_source, strict=True):
            manifests[name] = root / f"{name}.jsonl"
            write_durations(manifests[name], name, durations)
        one = build_index(list(manifests.values()), root / "all.idx", jobs=2, progress=False)
        mixed = open_index({name: build_index(m, root / f"{name}.idx", jobs=2,
                                              progress=False).path
                            for name, m in manifests.items()})  # fmt: skip
        layout = SourceLayout.of(mixed)
        assert layout is not None
        compare(
            f"b. index files, as the sampler plans them (one index of the {n:,} cuts vs three "
            "indexes of the sources: a named MultiIndex, each source named by its index's "
            "fingerprint)",
            one.columns, mixed.columns, layout, base, mix, repeat, W,
        )  # fmt: skip
        natural = {k: float(x.sum()) for k, x in zip(SHARES, per_source, strict=True)}
        compare(
            "c. as b, with natural weights (each source's share of the hours: every source "
            "taken about once an epoch, the few cuts twice that whole-cut hours quotas make)",
            one.columns, mixed.columns, layout, base,
            mix.replace(mixture={k: {"weight": w} for k, w in natural.items()}), repeat, W,
        )  # fmt: skip
        del one, mixed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_sources(root: Path, n: int) -> dict[str, Path]:
    from lhotse import CutSet

    from discoseq.synth import write_manifest

    out = {}
    for i, (name, share) in enumerate(SHARES.items()):
        raw = write_manifest(root / f"raw-{name}.jsonl.gz", int(n * share), seed=i + 1)
        cuts = CutSet.from_file(raw).modify_ids(lambda cid, name=name: f"{name}/{cid}")
        out[name] = root / f"{name}.jsonl.gz"
        cuts.to_file(out[name])
    return out


def shares(batches: Iterable[list[tuple[str, float]]], checkpoints: list[int], epoch_h: float):
    """Hours shares per source after each checkpoint (batches) and after ``epoch_h`` hours."""
    got: dict[str, float] = dict.fromkeys(SHARES, 0.0)
    out = {}
    total = 0.0
    for k, batch in enumerate(batches, 1):
        for src, dur in batch:
            got[src] += dur
            total += dur
        if k in checkpoints:
            out[k] = {s: v / total for s, v in got.items()}
        if total >= epoch_h * 3600:
            break
    out["epoch"] = {s: v / total for s, v in got.items()}
    return out


def error(s: dict[str, float]) -> float:
    """Largest absolute difference between delivered and asked hours shares."""
    return max(abs(s[k] - WEIGHTS[k]) for k in WEIGHTS)


def share_errors(n: int) -> None:
    from lhotse import CutSet
    from lhotse.dataset import DynamicBucketingSampler

    root = Path(tempfile.mkdtemp(prefix="discoseq-bench-mixture-"))
    try:
        paths = write_sources(root, n)
        cfg = SamplerConfig(max_duration=600.0, num_buckets=30, world_size=1, rank=0, seed=3,
                            mixture={k: {"weight": w} for k, w in WEIGHTS.items()})  # fmt: skip
        checkpoints = [1, 10, 100]
        print(f"== 2. delivered hours shares vs asked {WEIGHTS}, {n:,} cuts, max_duration=600")
        rows = []
        for mode in ("pooled", "per_source"):
            s = DiscoSeqSampler({k: str(p) for k, p in paths.items()},
                                cfg.replace(mix_batches=mode), progress=False)  # fmt: skip
            epoch_h = sum(x.planned_hours for x in s.plan.stats.sources)
            res = shares(([(c.source, c.duration) for c in b] for b in s), checkpoints, epoch_h)
            rows.append((f"discoseq {mode}", res))
        for how in ("mux", "infinite_mux"):
            sets = [CutSet.from_file(p) for p in paths.values()]
            mux = getattr(CutSet, how)(*sets, weights=list(WEIGHTS.values()), seed=3)
            sampler = DynamicBucketingSampler(mux, max_duration=600.0, num_buckets=30, seed=3,
                                              shuffle=True, buffer_size=5000)  # fmt: skip
            res = shares(
                ([(c.id.split("/")[0], c.duration) for c in b] for b in sampler),
                checkpoints,
                epoch_h,
            )
            rows.append((f"Lhotse CutSet.{how}", res))
        head = "   max |share - asked| after"
        print(
            f"{head:<32}"
            + "".join(f"{str(k) + ' batches':>14}" for k in checkpoints)
            + f"{'one epoch':>12}"
        )
        for name, res in rows:
            cells = "".join(
                f"{error(res[k]):>14.4f}" if k in res else f"{'-':>14}" for k in checkpoints
            )
            print(f"   {name:<29}{cells}{error(res['epoch']):>12.5f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--plan-only", action="store_true", help="part 1 only (plan times)")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    plan_time(300_000 if args.quick else 10_000_000, 3 if args.quick else 5)
    if not args.plan_only:
        share_errors(6_000 if args.quick else 40_000)


if __name__ == "__main__":
    main()
