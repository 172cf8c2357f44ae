"""Plan stages at scale: wall, user and system time and minor page faults of each stage of
``plan_epoch`` (select, group, pack, order, the rest) for consecutive epochs of an in-memory
LibriSpeech-like duration column (no corpus on disk: 8 B/cut of RAM, 800 MB at 100M cuts).

    python benchmarks/bench_stages.py --cuts 100000000 --epochs 3
    python benchmarks/bench_stages.py --cuts 10000000 --epochs 5

BUCKETED, 30 buckets, shuffle, max_duration 600 s, W=8 (the plan of bench_plan and the README's
Scale section). Each stage is timed by wrapping the stage function that ``plan_epoch`` calls, so
the plan itself is unchanged; the "rest" is the plan's wall time minus the stages. Times vary
with the machine's load: compare stages within one run, and runs of two commits interleaved.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_plan import librispeech_like

from discoseq.config import SamplerConfig
from discoseq.plan import planner

STAGES = ("select_rows", "group_rows", "pack_batches", "order_batches")


class StageClock:
    """Totals per stage of wall / user / sys seconds and minor faults."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                row = [
                    t1 - t0,
                    r1.ru_utime - r0.ru_utime,
                    r1.ru_stime - r0.ru_stime,
                    float(r1.ru_minflt - r0.ru_minflt),
                ]
                acc = self.totals.setdefault(name, [0.0, 0.0, 0.0, 0.0])
                for k in range(4):
                    acc[k] += row[k]

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuts", type=int, default=100_000_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--first-epoch", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    d = librispeech_like(args.cuts)
    print(f"{args.cuts:,} cuts generated in {time.perf_counter() - t0:.1f} s", flush=True)
    config = SamplerConfig(max_duration=600.0, num_buckets=30, shuffle=True, seed=1)
    originals = {name: getattr(planner, name) for name in STAGES}
    try:
        for e in range(args.first_epoch, args.first_epoch + args.epochs):
            clock = StageClock()
            for name in STAGES:
                setattr(planner, name, clock.wrap(name, originals[name]))
            total = clock.wrap("plan", planner.plan_epoch)
            plan = total({"duration": d}, config, e, 8)
            del plan
            w = clock.totals["plan"]
            rest = [w[k] - sum(clock.totals[s][k] for s in STAGES) for k in range(4)]
            parts = [(s.split("_")[0], clock.totals[s]) for s in STAGES] + [("rest", rest)]
            line = "  ".join(
                f"{n} {v[0]:.2f}s (usr {v[1]:.2f} sys {v[2]:.2f} flt {v[3] / 1e3:.0f}k)"
                for n, v in parts
            )
            load = os.getloadavg()[0]
            print(f"epoch {e}: plan {w[0]:.2f}s  {line}  load {load:.2f}", flush=True)
    finally:
        for name, fn in originals.items():
            setattr(planner, name, fn)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak:.2f} GB")


if __name__ == "__main__":
    main()
