"""Packing benchmark: whole-epoch packing (``pack_duration``) against two ways of packing the
same cuts, every number measured in this one run (the machine is shared: read the ratios).

    python benchmarks/bench_packing.py            # 50k-cut corpus, 10M-cut plan timing
    python benchmarks/bench_packing.py --quick    # small smoke run

1. Packing efficiency (real seconds / (packs x L), L = ``--length`` s, 30 by default) and time
   on a synthetic LibriSpeech-like corpus (``discoseq.synth``, written to a temporary
   directory and indexed), all three on the same cuts in the same shuffled order:

   * discoseq: ``SamplerConfig(strategy="random", pack_duration=L, max_cuts=16)``, the plan of
     one epoch (best-fit-decreasing over the whole epoch);
   * pool best-fit: the method of NeMo's ``PackedSequenceDynamicCutSampler`` reimplemented
     here: cuts read in order into a pool of 128, each pool packed best-fit-decreasing into
     packs of L, the pool's packs emitted (packs do not outlive their pool);
   * Lhotse ``CutConcatenate(gap=0, max_duration=L)`` (Lhotse's own transform) applied to each
     run of 128 cuts of the same order, as a dataset applies it to the cuts it is given.

   A cut longer than L is a pack of its own in the pool method and in Lhotse (which cannot
   split it either); those packs are left out of every efficiency (discoseq counts them as
   oversize).
2. Plan time of a 10M-cut epoch (``--plan-cuts``) with ``pack_duration=30`` against the same
   epoch planned without packing (``strategy="random"``, ``max_duration=600``), interleaved
   rounds, best of each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from discoseq import SamplerConfig, build_index
from discoseq.plan import plan_epoch
from discoseq.synth import generate_durations, write_manifest

POOL = 128


def pool_best_fit(durations: np.ndarray, length: float, pool: int = POOL) -> list[float]:
    """Pack loads of the pool method: each run of ``pool`` cuts packed best-fit-decreasing."""
    loads: list[float] = []
    for lo in range(0, durations.shape[0], pool):
        rooms: list[float] = []
        for d in sorted(durations[lo : lo + pool].tolist(), reverse=True):
            best = -1
            for b, r in enumerate(rooms):
                if d <= r and (best < 0 or r < rooms[best]):
                    best = b
            if best < 0:
                rooms.append(length)
                best = len(rooms) - 1
            rooms[best] -= d
        loads.extend(length - r for r in rooms)
    return loads


def lhotse_concatenate(cuts: list, length: float, pool: int = POOL) -> list[float]:
    """Pack durations of Lhotse's CutConcatenate over each run of ``pool`` cuts."""
    from lhotse import CutSet
    from lhotse.dataset import CutConcatenate

    concat = CutConcatenate(gap=0.0, max_duration=length)
    out: list[float] = []
    for lo in range(0, len(cuts), pool):
        out.extend(c.duration for c in concat(CutSet.from_cuts(cuts[lo : lo + pool])))
    return out


def efficiency(loads: np.ndarray, length: float) -> tuple[float, int]:
    within = loads[loads <= length + 1e-9]
    return float(within.sum() / (within.shape[0] * length)), int(within.shape[0])


def part1(n: int, length: float, seed: int) -> None:
    print(f"1. packing efficiency, {n:,} LibriSpeech-like cuts, L = {length:g} s")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_manifest(Path(tmp) / "cuts.jsonl.gz", n, seed=seed)
        index = build_index(manifest, Path(tmp) / "index")
        columns = {"duration": np.asarray(index.duration, dtype=np.float64)}
        cfg = SamplerConfig(strategy="random", pack_duration=length, max_cuts=16, seed=seed)
        t = time.perf_counter()
        plan = plan_epoch(columns, cfg, 0, 1)
        t_ours = time.perf_counter() - t
        assert plan.pack_offsets is not None
        dur = columns["duration"]
        ours = np.add.reduceat(dur[plan.rows], plan.pack_offsets[:-1])
        order = plan.rows  # the same cuts in the same (shuffled) order for the other two
        t = time.perf_counter()
        pool = np.array(pool_best_fit(dur[order], length))
        t_pool = time.perf_counter() - t
        cuts = list(index.resolve(order))  # Lhotse cuts, in that order
        t = time.perf_counter()
        lhotse = np.array(lhotse_concatenate(cuts, length))
        t_lhotse = time.perf_counter() - t
    rows = [
        ("discoseq (whole epoch, BFD)", ours, t_ours),
        (f"pool best-fit ({POOL} cuts)", pool, t_pool),
        (f"Lhotse CutConcatenate (per {POOL} cuts)", lhotse, t_lhotse),
    ]
    ref_eff, _ = efficiency(ours, length)
    print(f"   {'method':<40} {'efficiency':>10} {'packs':>8} {'time':>9}")
    for name, loads, secs in rows:
        eff, packs = efficiency(loads, length)
        print(f"   {name:<40} {eff:>10.4f} {packs:>8,} {secs:>8.3f}s")
    for name, loads, secs in rows[1:]:
        eff, packs = efficiency(loads, length)
        print(
            f"   discoseq vs {name}: efficiency {ref_eff:.4f} vs {eff:.4f} "
            f"({ref_eff - eff:+.4f}), {packs / max(efficiency(ours, length)[1], 1):.3f}x the "
            f"packs, time {secs / t_ours:.1f}x discoseq's"
        )
    print(f"   goal: discoseq >= 0.98 ({'met' if ref_eff >= 0.98 else 'NOT met'})")


def part2(n: int, rounds: int) -> None:
    print(f"2. plan time, {n:,} cuts (W=8): pack_duration=30 vs no packing (random, 600 s)")
    columns = {"duration": generate_durations(n, "librispeech", seed=1)}
    plain = SamplerConfig(strategy="random", max_duration=600.0)
    packed = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=20)
    best = {"plain": float("inf"), "packed": float("inf")}
    for _ in range(rounds):
        for name, cfg in (("plain", plain), ("packed", packed)):
            t = time.perf_counter()
            plan = plan_epoch(columns, cfg, 0, 8)
            best[name] = min(best[name], time.perf_counter() - t)
            del plan
    print(
        f"   no packing {best['plain']:.3f} s, packing {best['packed']:.3f} s: "
        f"{best['packed'] / best['plain']:.2f}x (best of {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=50_000)
    parser.add_argument("--plan-cuts", type=int, default=10_000_000)
    parser.add_argument("--length", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2k cuts, a 200k-cut plan")
    args = parser.parse_args()
    if args.quick:
        args.cuts, args.plan_cuts, args.rounds = 2000, 200_000, 1
    part1(args.cuts, args.length, args.seed)
    part2(args.plan_cuts, args.rounds)


if __name__ == "__main__":
    main()
