"""A 100M-cut run on one machine: ten 10M-cut shard indexes used as one corpus.

1. Build: generate ``--shards`` shard manifests of ``--rows`` cuts each (every shard split in
   ``--parts`` plain ``.jsonl`` files of minimal records, read in place: no stored copy), and
   build each shard's index from its parts (``jobs=--jobs`` when ``build_index`` takes it) in
   a fresh process: time, cuts/s, peak RSS. Shards are distinct corpora: ids ``sKK-NNNNNNNNN``,
   durations drawn from the LibriSpeech-like profile of :mod:`discoseq.synth` with seed ``KK``.
2. Open the list of shard indexes as one logical index (``open_index([...])``), fresh process:
   wall time and RSS added; one shard opened the same way is the baseline of the same run.
3. Plan epoch 0 of the logical index (BUCKETED, 30 buckets, max_duration 600, W=8) in a rank
   process: time (and per planner stage), peak RSS and peak anonymous (private) memory added
   by planning (sampled every 5 ms from ``/proc/self/status``); one shard planned the same way,
   alternated with it, is the baseline. ``--repeat`` fresh processes each; medians.
4. Restore mid-epoch (epoch 5, rank 3, half the epoch delivered): in a fresh process (Lhotse
   already imported, as by a training script), sampler construction (opening the shards) +
   ``load_state_dict`` + ``set_epoch`` + the first batch as a ``CutSet``, same world size (8)
   and elastic (8 -> 6), ``--repeat`` times each; state size.
5. DataLoader worker memory: 2 workers (fork) resolve rank 0's batches; each reports its RSS
   and its private memory (``Private_Clean`` + ``Private_Dirty`` of ``/proc/self/smaps``),
   split into anonymous memory (its own heap and copy-on-write copies) and file pages only it
   has mapped so far (index pages it read first: page cache, shared once another process reads
   them). Once with the rank planning before the workers start, once without.

Everything is generated into a fresh directory under ``--workdir`` (default
``benchmarks/out``, git-ignored) and deleted at the end, also after a failure or Ctrl-C
(``--keep`` keeps it; ``--reuse DIR`` measures what a ``--keep`` run left). Disk: about 210
bytes per cut (manifest ~100, index ~110), 21 GB for the full run, checked before starting.

Usage: ``python benchmarks/bench_scale.py`` (10 x 10M; about 20 minutes here) or
``python benchmarks/bench_scale.py --quick`` (10 x 1M).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAP, BUCKETS, WORLD = 600.0, 30, 8
BYTES_PER_CUT = 210  # manifest + index, measured at 1M (checked against the disk before starting)
GOALS = {
    "open_ms": 100.0,
    "plan_s": 6.0,
    "restore_s": 7.0,
    "worker_private_mb": 50.0,
    "worker_private_all_mb": 50.0,
}

# -- child processes ----------------------------------------------------------------------------

PROLOGUE = '''
import json, os, resource, sys, threading, time
def status():
    """Resident memory now, in MB: all of it, and the anonymous (private) part."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(rest.split()[0]) / 1024
    return out["VmRSS"], out["RssAnon"]
class Peak:
    """Samples status() every 5 ms in a thread; .rss / .anon are the peaks seen."""
    def __enter__(self):
        self.rss, self.anon = status()
        self._stop = threading.Event()
        def run():
            while not self._stop.wait(0.005):
                r, a = status()
                self.rss, self.anon = max(self.rss, r), max(self.anon, a)
        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()
        return self
    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        r, a = status()
        self.rss, self.anon = max(self.rss, r), max(self.anon, a)
'''


def run_child(code: str, timeout: float = 3600) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (it sets ``RESULT``); its peak RSS is added."""
    epilogue = (
        "\nRESULT['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print('RESULT ' + json.dumps(RESULT))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROLOGUE + textwrap.dedent(code) + epilogue],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return dict(json.loads(lines[-1][len("RESULT ") :]))


# -- 1. shards ----------------------------------------------------------------------------------


def write_shard_manifests(folder: Path, shard: int, rows: int, parts: int) -> list[Path]:
    """``parts`` ``.jsonl`` files holding ``rows`` minimal MonoCut records of shard ``shard``."""
    from discoseq.synth import generate_durations

    folder.mkdir(parents=True, exist_ok=True)
    durations = generate_durations(rows, "librispeech", seed=shard)
    bounds = np.linspace(0, rows, parts + 1).astype(np.int64)
    paths = []
    for j in range(parts):
        path = folder / f"part{j:02d}.jsonl"
        with open(path, "w") as f:
            step = 500_000
            for s in range(int(bounds[j]), int(bounds[j + 1]), step):
                e = min(s + step, int(bounds[j + 1]))
                f.write(
                    "".join(
                        f'{{"id":"s{shard:02d}-{i:09d}","start":0.0,"duration":{d!r},'
                        f'"channel":0,"supervisions":[],"type":"MonoCut"}}\n'
                        for i, d in zip(range(s, e), durations[s:e].tolist(), strict=True)
                    )
                )
        paths.append(path)
    return paths


def build_jobs_supported() -> bool:
    from discoseq.index import build_index

    return "jobs" in inspect.signature(build_index).parameters


def build_shard(parts: list[Path], out: Path, jobs: int) -> dict[str, Any]:
    jobs_arg = f", jobs={jobs}" if build_jobs_supported() else ""
    return run_child(
        f"""
        from discoseq.index import build_index
        t = time.perf_counter()
        index = build_index({[str(p) for p in parts]!r}, {str(out)!r}{jobs_arg})
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        RESULT = {{"seconds": time.perf_counter() - t, "rows": len(index),
                   "worker_peak_rss_mb": children}}
        """
    )


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- 2. open ------------------------------------------------------------------------------------


def bench_open(paths: list[str]) -> dict[str, Any]:
    return run_child(
        f"""
        import numpy as np
        from discoseq import open_index
        paths = {paths!r}
        source = paths if len(paths) > 1 else paths[0]
        rss0, anon0 = status()
        t = time.perf_counter()
        index = open_index(source)
        first_ms = (time.perf_counter() - t) * 1e3
        rss1, anon1 = status()
        again = []
        for _ in range(3):
            t = time.perf_counter()
            open_index(source)
            again.append((time.perf_counter() - t) * 1e3)
        RESULT = {{"open_ms": first_ms, "open_ms_warm": min(again), "rows": len(index),
                   "rss_added_mb": rss1 - rss0, "anon_added_mb": anon1 - anon0}}
        """
    )


# -- 3. plan ------------------------------------------------------------------------------------

CONFIG = f"dict(max_duration={CAP}, num_buckets={BUCKETS}, seed=0, strategy='bucketed')"


def bench_plan(paths: list[str]) -> dict[str, Any]:
    return run_child(
        f"""
        import numpy as np
        from discoseq import DiscoSeqSampler, SamplerConfig
        paths = {paths!r}
        source = paths if len(paths) > 1 else paths[0]
        import discoseq.plan.planner as planner
        sys.path.insert(0, "benchmarks")
        from bench_stages import STAGES, StageClock
        clock = StageClock()  # the planner's stage functions, timed where the planner calls them
        for name in STAGES:
            setattr(planner, name, clock.wrap(name, getattr(planner, name)))
        sampler = DiscoSeqSampler(source, SamplerConfig(**{CONFIG}, world_size={WORLD}, rank=0))
        with Peak() as peak:
            rss0, anon0 = peak.rss, peak.anon
            t = time.perf_counter()
            plan = sampler.plan
            seconds = time.perf_counter() - t
        rss1, anon1 = status()
        index = sampler.index
        t = time.perf_counter()
        if len(paths) > 1:
            col = np.concatenate([ix.duration for ix in index.indexes])
        else:
            col = np.array(index.duration)
        concat_s = time.perf_counter() - t
        RESULT = {{"plan_s": seconds, "rows": len(index), "batches": plan.num_batches,
                   "peak_rss_added_mb": peak.rss - rss0, "peak_anon_added_mb": peak.anon - anon0,
                   "rss_after_mb": rss1 - rss0, "anon_after_mb": anon1 - anon0,
                   "duration_copy_s": concat_s,
                   "stages": {{name: clock.totals[name][0] for name in STAGES}}}}
        """
    )


# -- 4. restore ---------------------------------------------------------------------------------


def save_state(paths: list[str]) -> dict[str, Any]:
    return run_child(
        f"""
        from discoseq import DiscoSeqSampler, SamplerConfig
        sampler = DiscoSeqSampler({paths!r}, SamplerConfig(**{CONFIG}, world_size={WORLD}, rank=3))
        sampler.set_epoch(5)
        half = len(sampler) // 2
        state = json.loads(json.dumps(sampler.state_dict(batches_delivered=half)))
        RESULT = {{"state": state, "size": len(json.dumps(state).encode())}}
        """
    )


def bench_restore(paths: list[str], state: dict[str, Any], world: int) -> dict[str, Any]:
    return run_child(
        f"""
        import lhotse  # imported by the training script before it restores (not timed)
        from discoseq import DiscoSeqSampler, SamplerConfig
        state = json.loads({json.dumps(json.dumps(state))})
        t0 = time.perf_counter()
        sampler = DiscoSeqSampler({paths!r}, SamplerConfig(**{CONFIG}, world_size={world}, rank=3))
        t1 = time.perf_counter()
        with Peak() as peak:
            rss0, anon0 = peak.rss, peak.anon
            sampler.load_state_dict(state)
            sampler.set_epoch(5)
            batch = next(iter(sampler))
        t2 = time.perf_counter()
        RESULT = {{"total_s": t2 - t0, "open_s": t1 - t0, "restore_s": t2 - t1,
                   "cuts": len(batch), "left": len(sampler),
                   "peak_rss_added_mb": peak.rss - rss0, "peak_anon_added_mb": peak.anon - anon0}}
        """
    )


# -- 5. workers ---------------------------------------------------------------------------------


def bench_workers(paths: list[str], limit: int, plan_first: bool) -> dict[str, Any]:
    return run_child(
        f"""
        import lhotse  # a training script imports it (its dataset) before the workers fork
        from torch.utils.data import DataLoader, IterableDataset, get_worker_info
        from discoseq import DiscoSeqSampler, SamplerConfig

        def private():
            \"\"\"Private_Clean + Private_Dirty in MB: of anonymous memory (the worker's own
            heap and copy-on-write copies) and of file pages only this process has mapped.\"\"\"
            anon = files = 0
            with open("/proc/self/smaps") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if "-" in key and " " in key:  # a mapping's header line
                        fields = line.split()
                        is_anon = len(fields) < 6 or fields[5].startswith("[")
                    elif key in ("Private_Clean", "Private_Dirty"):
                        kb = int(rest.split()[0])
                        anon, files = (anon + kb, files) if is_anon else (anon, files + kb)
            return anon / 1024, files / 1024

        def rss():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

        class Probe(IterableDataset):
            def __init__(self, inner, limit):
                self.inner, self.limit = inner, limit
            def __iter__(self):
                info = get_worker_info()
                before = private()
                n = 0
                for batch in self.inner:
                    n += len(batch)
                    if n >= self.limit:
                        break
                anon, files = private()
                yield {{"worker": info.id, "cuts": n, "rss": rss(), "anon_start": before[0],
                        "anon": anon, "files": files}}

        sampler = DiscoSeqSampler({paths!r}, SamplerConfig(**{CONFIG}, world_size={WORLD}, rank=0))
        if {plan_first}:
            _ = len(sampler)  # the rank plans in its own process before the workers start
        loader = DataLoader(Probe(sampler, {limit}), batch_size=None, num_workers=2,
                            multiprocessing_context="fork")
        reports = []
        for r in loader:
            r["parent_rss"] = rss()
            reports.append(r)
        RESULT = {{"workers": reports}}
        """
    )


# -- driver -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 shards of 1M cuts")
    ap.add_argument("--shards", type=int, default=10, help="shard indexes (default 10)")
    ap.add_argument("--rows", type=int, default=None, help="cuts per shard (default 10M; 1M quick)")
    ap.add_argument("--parts", type=int, default=10, help="manifest files per shard (default 10)")
    ap.add_argument("--jobs", type=int, default=2, help="build processes per shard (default 2)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--keep", action="store_true", help="keep the generated shards")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each plan and restore (default 3)"
    )
    ap.add_argument(
        "--reuse",
        type=Path,
        help="measure the shards a --keep run left in this directory (not built, not deleted)",
    )
    args = ap.parse_args()
    if args.reuse is not None:
        paths = sorted(str(p) for p in args.reuse.glob("shard*.idx"))
        if not paths:
            sys.exit(f"no shard*.idx in {args.reuse}")
        from discoseq import CutIndex

        rows = len(CutIndex.open(paths[0]))
        print(f"reusing {len(paths)} shards of {rows:,} cuts in {args.reuse}")
        measure(paths, rows, args.quick, args.repeat)
        return
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    total = rows * args.shards
    args.workdir.mkdir(parents=True, exist_ok=True)
    need = total * BYTES_PER_CUT
    free = shutil.disk_usage(args.workdir).free
    if need > 0.8 * free:
        sys.exit(f"need about {need / 1e9:.1f} GB in {args.workdir}, {free / 1e9:.1f} GB free")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.shards} shards x {rows:,} cuts = {total:,}"
    )
    if not build_jobs_supported():
        print(
            f"   NOTE: build_index takes no jobs= yet (the parallel build is not in this "
            f"checkout): each shard is built by one process, not --jobs {args.jobs}"
        )
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    try:
        paths = build(work, args.shards, rows, args.parts, args.jobs)
        measure(paths, rows, args.quick, args.repeat)
    finally:
        if args.keep:
            print(f"kept {work} ({du(work) / 1e9:.1f} GB)")
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"removed {work}")


def build(work: Path, shards: int, rows: int, parts: int, jobs: int) -> list[str]:
    """Generate and build the shards; their index paths."""
    print(f"== 1. build {shards} shard indexes of {rows:,} cuts, each from {parts} .jsonl parts")
    paths: list[str] = []
    gen_s, builds = 0.0, []
    for k in range(shards):
        t = time.perf_counter()
        manifests = write_shard_manifests(work / f"shard{k:02d}", k, rows, parts)
        gen_s += time.perf_counter() - t
        out = work / f"shard{k:02d}.idx"
        if k == 0 and jobs > 1 and build_jobs_supported():  # the baseline, in the same run
            one = build_shard(manifests, work / "baseline.idx", 1)
            shutil.rmtree(work / "baseline.idx")
            print(
                f"   shard 0 with one process (baseline): {one['seconds']:6.1f} s "
                f"({rows / one['seconds'] / 1e3:5.0f}k cuts/s), peak RSS "
                f"{one['peak_rss_mb']:5.0f} MB"
            )
        b = build_shard(manifests, out, jobs)
        builds.append(b)
        paths.append(str(out))
        print(
            f"   shard {k}: built in {b['seconds']:6.1f} s ({rows / b['seconds'] / 1e3:5.0f}k "
            f"cuts/s), peak RSS {b['peak_rss_mb']:5.0f} MB (its worker processes "
            f"{b['worker_peak_rss_mb']:5.0f} MB)"
        )
        if k == 0 and jobs > 1 and build_jobs_supported():
            speedup = one["seconds"] / b["seconds"]
            print(f"   speed-up of jobs={jobs} over one process: {speedup:.2f}x")
    secs = [b["seconds"] for b in builds]
    print(
        f"   generated the manifests in {gen_s:.0f} s; builds {min(secs):.1f}-{max(secs):.1f} s "
        f"per {rows:,}-cut shard (median {float(np.median(secs)):.1f} s), {sum(secs):.0f} s "
        "in all; "
        f"on disk {du(work) / 1e9:.1f} GB (indexes {sum(du(Path(p)) for p in paths) / 1e9:.1f} GB)"
    )
    # Write the new files back now: until then their page-cache pages count as the private
    # dirty memory of whichever process maps them first (not memory that process owns).
    os.sync()
    return paths


def median(values: list[float]) -> float:
    return float(np.median(values))


def measure(paths: list[str], rows: int, quick: bool, repeat: int) -> None:
    measured: dict[str, float] = {}
    shards = len(paths)
    total = shards * rows

    print(f"== 2. open: one shard vs the {shards} shards as one index (fresh processes)")
    one, many = bench_open(paths[:1]), bench_open(paths)
    labels = (f"1 shard ({rows:,} rows)", f"{shards} shards ({total:,} rows)")
    for label, r in zip(labels, (one, many), strict=True):
        print(
            f"   {label:28s}: open {r['open_ms']:6.1f} ms (warm {r['open_ms_warm']:5.1f} ms), "
            f"RSS added {r['rss_added_mb']:5.1f} MB"
        )
    measured["open_ms"] = many["open_ms"]

    print(f"== 3. plan epoch 0, BUCKETED {BUCKETS} buckets, max_duration {CAP:g}, W={WORLD}")
    ones, manys = [], []
    for _ in range(repeat):  # alternated, so both see the same phases of the machine's load
        ones.append(bench_plan(paths[:1]))
        manys.append(bench_plan(paths))
    for label, runs in zip(labels, (ones, manys), strict=True):
        r, times = runs[0], [x["plan_s"] for x in runs]
        stages = ", ".join(
            f"{k.split('_')[0]} {float(np.median([x['stages'][k] for x in runs])):.2f}"
            for k in r["stages"]
        )
        print(
            f"   {label:28s}: plan {median(times):6.2f} s median of {len(times)} "
            f"({', '.join(f'{t:.2f}' for t in times)}; stages, median s: {stages}), "
            f"{r['batches']:,} batches"
        )
        print(
            f"   {'':28s}  peak RSS +{r['peak_rss_added_mb']:5.0f} MB (anonymous "
            f"+{r['peak_anon_added_mb']:5.0f} MB), after +{r['rss_after_mb']:5.0f} MB (anonymous "
            f"+{r['anon_after_mb']:5.0f} MB); process peak {r['peak_rss_mb']:5.0f} MB"
        )
    t1, tn = median([x["plan_s"] for x in ones]), median([x["plan_s"] for x in manys])
    pn = manys[0]
    print(
        f"   ratio {shards} shards / 1 shard: time {tn / t1:.1f}x, peak anonymous memory "
        f"{pn['peak_anon_added_mb'] / max(ones[0]['peak_anon_added_mb'], 1):.1f}x (rows "
        f"{shards}x); one copy of the {shards} duration columns takes "
        f"{median([x['duration_copy_s'] for x in manys]):.2f} s"
    )
    measured["plan_s"] = tn

    print("== 4. restore mid-epoch (epoch 5, rank 3, half the epoch delivered), fresh processes")
    saved = save_state(paths)
    worst = 0.0
    for label, world in (("same world (8)", WORLD), ("elastic 8 -> 6", 6)):
        runs = [bench_restore(paths, saved["state"], world) for _ in range(repeat)]
        r, totals = runs[0], [x["total_s"] for x in runs]
        print(
            f"   {label:16s}: {median(totals):6.2f} s median of {len(totals)} "
            f"({', '.join(f'{t:.2f}' for t in totals)}): open the shards "
            f"{median([x['open_s'] for x in runs]):.2f} s + load_state_dict + first batch "
            f"{median([x['restore_s'] for x in runs]):.2f} s ({r['cuts']} cuts; "
            f"{r['left']:,} batches left); peak anonymous +{r['peak_anon_added_mb']:5.0f} MB"
        )
        worst = max(worst, median(totals))
    print(f"   state size: {saved['size']} bytes of JSON")
    measured["restore_s"] = worst

    limit = 20_000 if quick else 100_000
    print(f"== 5. DataLoader workers (2, fork) of rank 0, {limit:,} cuts each")
    for plan_first in (True, False):
        w = bench_workers(paths, limit, plan_first)
        print(
            "   the rank planned before the workers started (len(sampler); create_dataloader does)"
            if plan_first
            else "   the rank did not plan first: each worker plans"
        )
        for r in sorted(w["workers"], key=lambda r: r["worker"]):
            print(
                f"   worker {r['worker']}: RSS {r['rss']:7.1f} MB (parent {r['parent_rss']:7.1f}); "
                f"private: anonymous {r['anon']:7.1f} MB ({r['anon_start']:5.1f} MB before its "
                f"first batch), file pages only it has mapped so far {r['files']:6.1f} MB"
            )
        if plan_first:
            measured["worker_private_mb"] = max(r["anon"] for r in w["workers"])
            measured["worker_private_all_mb"] = max(r["anon"] + r["files"] for r in w["workers"])

    print(f"== goals at {total:,} cuts (measured above)")
    rows_out = (
        ("open", "open_ms", "ms"),
        ("plan (median)", "plan_s", "s"),
        ("restore (worse median of the two)", "restore_s", "s"),
        ("worker private memory, anonymous", "worker_private_mb", "MB"),
        ("  same + private file pages", "worker_private_all_mb", "MB"),
    )
    for label, key, unit in rows_out:
        ok = "met" if measured[key] < GOALS[key] else "NOT met"
        print(f"   {label:32s}: {measured[key]:8.2f} {unit:2s}  goal < {GOALS[key]:g} {unit}  {ok}")


if __name__ == "__main__":
    main()
