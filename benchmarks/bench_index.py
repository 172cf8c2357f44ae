"""Index benchmarks, each a ratio against a baseline measured in the same run.

1. Build rate on a generated 1M-cut ``.jsonl.gz`` vs Lhotse iterating the same file lazily
   (``for c in CutSet.from_file(p)``), also as CPU time (the build's threads overlap reading,
   scanning and compressing: on a busy machine its wall rate falls with the cores it gets);
   peak RSS of the build at 100k and 1M cuts (fresh process each, so the numbers are the
   build's own).
2. Opening a 10M-row index (fresh process): wall time and RSS added; id -> row lookup time.
3. Resolving random batches of 50 rows to ``CutSet``s vs Lhotse deserialising the same records
   from memory (``deserialize_cut(orjson.loads(line))``), interleaved batch by batch: ratios of
   wall time and of thread CPU time.
4. Parallel build (``jobs``): the largest manifest split into 2 ``.jsonl.gz`` shards, and 10x as
   many minimal records in 10 plain ``.jsonl`` parts (read in place), built with jobs=1, jobs=2
   and jobs=1 held to one core (fresh processes, interleaved rounds): wall speed-up, process
   scaling (one core vs two), CPU per cut, cores busy, same bytes, and how near linear: the
   CPU work of jobs=1 over k cores against the wall time of jobs=k (best and median of the
   rounds: on a shared machine they differ by a fifth from run to run).
5. Stored-record layouts: per-record zstd frames with a trained dictionary (what the index
   stores) vs without one vs blocks of K records: size against the ``.jsonl.gz`` and the cost
   of one random cut next to Lhotse building it.

Usage: ``python benchmarks/bench_index.py [--quick] [--workdir DIR]`` (generated corpora are cached
in DIR, default ``benchmarks/out``, which git ignores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    prologue = "import json, resource, time, sys\n"
    epilogue = (
        "\nRESULT['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(RESULT))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code) + epilogue],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def manifest(workdir: Path, n: int) -> Path:
    from discoseq.synth import write_manifest

    path = workdir / f"librispeech_like_{n}.jsonl.gz"
    if not path.exists():
        t = time.perf_counter()
        write_manifest(path, n, profile="librispeech", seed=0, mixed_fraction=0.01)
        print(f"  generated {path} in {time.perf_counter() - t:.1f} s")
    return path


def bench_build(workdir: Path, sizes: list[int]) -> None:
    print("== build rate and peak RSS")
    base = run_child("import discoseq.index\nRESULT = {}")
    print(f"  baseline interpreter + imports: peak RSS {base['peak_rss_mb']:.0f} MB")
    for n in sizes:
        path = manifest(workdir, n)
        out = workdir / f"idx_{n}"
        ours = run_child(
            f"""
            from discoseq.index import build_index
            c, t = time.process_time(), time.perf_counter()
            index = build_index({str(path)!r}, {str(out)!r}, force=True)
            dt = time.perf_counter() - t
            RESULT = {{"rows": len(index), "seconds": dt, "cpu": time.process_time() - c,
                       "records_mb": index.header.records["size"] / 1e6}}
            """
        )
        theirs = run_child(
            f"""
            from lhotse import CutSet
            c, t = time.process_time(), time.perf_counter()
            n = sum(1 for _ in CutSet.from_file({str(path)!r}))
            RESULT = {{"rows": n, "seconds": time.perf_counter() - t,
                       "cpu": time.process_time() - c}}
            """
        )
        assert ours["rows"] == theirs["rows"] == n, (ours, theirs)
        r_ours = n / ours["seconds"]
        r_theirs = n / theirs["seconds"]
        print(
            f"  {n:>9,} cuts ({path.stat().st_size / 1e6:.0f} MB gz): discoseq build "
            f"{r_ours:,.0f} cuts/s, Lhotse lazy iteration {r_theirs:,.0f} cuts/s -> "
            f"ratio {r_ours / r_theirs:.1f}x (target >= 8x)"
        )
        print(
            f"      CPU time: build {ours['cpu'] / n * 1e6:.1f} µs/cut "
            f"({ours['cpu'] / ours['seconds']:.2f} cores busy), Lhotse "
            f"{theirs['cpu'] / n * 1e6:.1f} µs/cut ({theirs['cpu'] / theirs['seconds']:.2f}) -> "
            f"CPU ratio {theirs['cpu'] / ours['cpu']:.1f}x; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        print(
            f"      peak RSS: build {ours['peak_rss_mb']:.0f} MB "
            f"(+{ours['peak_rss_mb'] - base['peak_rss_mb']:.0f} MB over imports), Lhotse "
            f"iteration {theirs['peak_rss_mb']:.0f} MB; records stored "
            f"{ours['records_mb']:.0f} MB ({ours['records_mb'] * 1e6 / path.stat().st_size:.1f}x "
            "the .gz)"
        )


def tiny_manifest(workdir: Path, n: int) -> Path:
    """A minimal-record ``.jsonl`` (read in place) for a large index whose columns matter."""
    path = workdir / f"tiny_{n}.jsonl"
    if path.exists():
        return path
    durations = np.round(np.random.default_rng(0).uniform(0.5, 35.0, n), 3)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        step = 1_000_000
        for s in range(0, n, step):
            f.write(
                "".join(
                    f'{{"id":"utt-{i:09d}","start":0.0,"duration":{durations[i]},'
                    f'"channel":0,"supervisions":[],"type":"MonoCut"}}\n'
                    for i in range(s, min(n, s + step))
                )
            )
    tmp.rename(path)
    return path


def bench_open(workdir: Path, n: int) -> None:
    print(f"== open a {n:,}-row index, id lookup")
    path = tiny_manifest(workdir, n)
    out = workdir / f"idx_tiny_{n}"
    if not (out / "header.json").exists():
        t = time.perf_counter()
        from discoseq.index import build_index

        build_index(path, out, force=True)
        print(f"  built {out} in {time.perf_counter() - t:.1f} s")
    res = run_child(
        f"""
        from discoseq.index import CutIndex
        import numpy as np
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096 / 2**20
        before = rss()
        t = time.perf_counter()
        index = CutIndex.open({str(out)!r})
        open_ms = (time.perf_counter() - t) * 1e3
        added = rss() - before
        rng = np.random.default_rng(1)
        ids = [index.cut_id(int(r)) for r in rng.integers(0, len(index), 10000)]
        index.row_of(ids[0])
        t = time.perf_counter()
        for cut_id in ids:
            index.row_of(cut_id)
        lookup_us = (time.perf_counter() - t) / len(ids) * 1e6
        RESULT = {{"open_ms": open_ms, "rss_added_mb": added, "lookup_us": lookup_us,
                   "rows": len(index)}}
        """
    )
    print(
        f"  open {res['open_ms']:.1f} ms (target < 50 ms), RSS added "
        f"{res['rss_added_mb']:.1f} MB (target < 50 MB); row_of "
        f"{res['lookup_us']:.2f} µs/id (target < 10 µs)"
    )


def bench_resolve(workdir: Path, n: int, rounds: int = 5) -> None:
    print("== resolve random batches of 50 rows")
    import orjson
    from lhotse.cut.set import deserialize_cut

    from discoseq.index import CutIndex

    index = CutIndex.open(workdir / f"idx_{n}")
    rng = np.random.default_rng(2)
    batches = [rng.choice(len(index), 50, replace=False) for _ in range(200)]
    lines = [index.records(b) for b in batches]  # the same records, held in memory
    for b in batches:  # map the records' pages once, outside the timed rounds
        index.resolve(b)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    ratios, cpu_ratios, ours, theirs = [], [], [], []
    for _ in range(rounds):
        # interleaved batch by batch, so both sides see the same machine load; thread CPU time
        # beside wall time: it leaves out the time the machine's other work took the core
        w_ours = w_theirs = c_ours = c_theirs = 0
        for b, batch_lines in zip(batches, lines, strict=True):
            w0, c0 = wall(), cpu()
            index.resolve(b)
            w1, c1 = wall(), cpu()
            [deserialize_cut(orjson.loads(x)) for x in batch_lines]
            w2, c2 = wall(), cpu()
            w_ours, c_ours = w_ours + w1 - w0, c_ours + c1 - c0
            w_theirs, c_theirs = w_theirs + w2 - w1, c_theirs + c2 - c1
        ours.append(50 * len(batches) / w_ours * 1e9)
        theirs.append(50 * len(batches) / w_theirs * 1e9)
        ratios.append(w_theirs / w_ours)
        cpu_ratios.append(c_theirs / c_ours)
    ratios.sort()
    cpu_ratios.sort()
    print(
        f"  discoseq resolve {np.median(ours):,.0f} cuts/s; Lhotse deserialising the same "
        f"records from memory {np.median(theirs):,.0f} cuts/s -> ratio {np.median(ratios):.2f} "
        f"(median of {rounds} rounds interleaved batch by batch; range "
        f"{ratios[0]:.2f}-{ratios[-1]:.2f}); CPU time ratio {np.median(cpu_ratios):.2f} "
        f"(range {cpu_ratios[0]:.2f}-{cpu_ratios[-1]:.2f})"
    )


def bench_layouts(workdir: Path, n: int) -> None:
    """The stored-record layouts considered: per-record zstd frames with a trained dictionary
    (what the index stores) against blocks of K records compressed together, by size against
    the ``.jsonl.gz`` and by the cost of reading one random cut, next to Lhotse building it."""
    print(f"== stored-record layouts on {n:,} cuts (one random cut: decompress its frame/block)")
    import gzip

    import orjson
    import zstandard
    from lhotse.cut.set import deserialize_cut

    from discoseq.index.records import LEVEL, take_sample, train_dictionary

    path = manifest(workdir, n)
    gz_size = path.stat().st_size
    with gzip.open(path, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f]
    dictionary = train_dictionary(take_sample(lines))
    rng = np.random.default_rng(3)
    picks = rng.integers(0, len(lines), 5000).tolist()

    def per_cut_us(fn: Callable[[int], object]) -> float:
        t = time.perf_counter()
        for i in picks:
            fn(i)
        return (time.perf_counter() - t) / len(picks) * 1e6

    lhotse_us = per_cut_us(lambda i: deserialize_cut(orjson.loads(lines[i])))
    print(f"  Lhotse deserialising one cut from memory: {lhotse_us:.1f} µs")
    for use_dict in (True, False):
        zdict = zstandard.ZstdCompressionDict(dictionary) if use_dict else None
        c = zstandard.ZstdCompressor(level=LEVEL, dict_data=zdict, write_checksum=True)
        frames = [c.compress(line) for line in lines]
        d = zstandard.ZstdDecompressor(dict_data=zdict)
        size = sum(map(len, frames)) + (len(dictionary) if use_dict else 0)
        us = per_cut_us(lambda i, d=d, frames=frames: d.decompress(frames[i]))
        print(
            f"  per-record frames{' + dictionary' if use_dict else ''}: "
            f"{size / gz_size:.2f}x the .gz, {us:.1f} µs per cut"
        )
    for k in (8, 32):
        zdict = zstandard.ZstdCompressionDict(dictionary)
        c = zstandard.ZstdCompressor(level=LEVEL, dict_data=zdict, write_checksum=True)
        blocks = [c.compress(b"\n".join(lines[i : i + k])) for i in range(0, len(lines), k)]
        d = zstandard.ZstdDecompressor(dict_data=zdict)
        size = sum(map(len, blocks)) + len(dictionary)
        us = per_cut_us(
            lambda i, d=d, blocks=blocks, k=k: d.decompress(blocks[i // k]).split(b"\n")[i % k]
        )
        print(f"  blocks of {k} + dictionary: {size / gz_size:.2f}x the .gz, {us:.1f} µs per cut")


def shards(workdir: Path, n: int, k: int) -> list[Path]:
    """The ``n``-cut manifest split into ``k`` ``.jsonl.gz`` shards of consecutive lines."""
    paths = [workdir / f"librispeech_like_{n}.shard{i}of{k}.jsonl.gz" for i in range(k)]
    if all(p.exists() for p in paths):
        return paths
    from isal import igzip

    with igzip.open(manifest(workdir, n), "rb") as f:
        lines = f.readlines()
    per = -(-len(lines) // k)
    for i, path in enumerate(paths):
        tmp = path.with_suffix(".tmp")
        with igzip.open(tmp, "wb", compresslevel=1) as out:
            out.writelines(lines[i * per : (i + 1) * per])
        tmp.rename(path)
    return paths


def tiny_parts(workdir: Path, n: int, k: int) -> list[Path]:
    """``n`` minimal records (:func:`tiny_manifest`'s) in ``k`` plain ``.jsonl`` parts, read in
    place (the inputs of ``bench_scale.py``'s shard builds)."""
    paths = [workdir / f"tiny_{n}.part{i}of{k}.jsonl" for i in range(k)]
    if all(p.exists() for p in paths):
        return paths
    durations = np.round(np.random.default_rng(0).uniform(0.5, 35.0, n), 3)
    per = -(-n // k)
    for i, path in enumerate(paths):
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(
                "".join(
                    f'{{"id":"utt-{j:09d}","start":0.0,"duration":{durations[j]},'
                    f'"channel":0,"supervisions":[],"type":"MonoCut"}}\n'
                    for j in range(i * per, min(n, (i + 1) * per))
                )
            )
        tmp.rename(path)
    return paths


JOBS_CHILD = """
    import os, resource
    from discoseq.index import build_index
    if {pin}:  # one core only: the build's threads and processes share it
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
    def cpu(who):
        a = resource.getrusage(who)
        return a.ru_utime + a.ru_stime
    c, w = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    index = build_index({paths!r}, {out!r}, force=True, jobs={jobs})
    wall = time.perf_counter() - t
    parent, workers = cpu(resource.RUSAGE_SELF) - c, cpu(resource.RUSAGE_CHILDREN) - w
    RESULT = {{"seconds": wall, "cpu": parent + workers, "parent_cpu": parent,
               "workers_cpu": workers, "rows": len(index), "load": os.getloadavg()[0]}}
"""


def bench_jobs(workdir: Path, n: int, k: int = 2, rounds: int = 3, kind: str = "gz") -> None:
    """``jobs=1`` vs ``jobs=k`` (wall: the speed-up on this machine), and ``jobs=1`` held to
    one core vs ``jobs=k`` (the process parallelism itself: on a machine of ``k`` cores where
    ``jobs=1`` already keeps more than one busy with its threads, the wall speed-up is capped
    near ``k`` / the cores ``jobs=1`` uses), fresh processes, interleaved rounds.

    Near-linear, as one number: ``jobs=1``'s CPU time spread evenly over ``k`` cores, divided
    by ``jobs=k``'s wall time (1.0: ``jobs=k`` does ``jobs=1``'s work in 1/k of its CPU time,
    nothing added and nothing serial; below it, the CPU ``jobs=k`` adds, its serial end and
    the cores the machine's other work takes)."""
    if kind == "gz":
        paths = shards(workdir, n, k)
        what = f"{n:,} cuts in {k} .jsonl.gz shards (records stored, zstd)"
    else:
        paths = tiny_parts(workdir, n, 10)
        what = f"{n:,} minimal cuts in 10 plain .jsonl parts (records read in place)"
    print(f"== parallel build: {what}, jobs=1 vs jobs={k}")
    runs = {"jobs=1": (1, False), f"jobs={k}": (k, False), "jobs=1 on one core": (1, True)}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    # one untimed build first: the inputs were just written (the first read of them, with
    # their writeback under way, took up to twice the CPU of the next ones)
    out = str(workdir / f"idx_warmup_{kind}")
    run_child(JOBS_CHILD.format(paths=[str(p) for p in paths], out=out, jobs=1, pin=False))
    shutil.rmtree(out, ignore_errors=True)
    print("  (one untimed build first, then the rounds)")
    for _ in range(rounds):  # interleaved
        for name, (jobs, pin) in runs.items():
            out = str(workdir / f"idx_jobs{jobs}_{kind}")
            shutil.rmtree(out, ignore_errors=True)  # not timed: removing the last one (--force)
            code = JOBS_CHILD.format(paths=[str(p) for p in paths], out=out, jobs=jobs, pin=pin)
            res = run_child(code)
            assert res["rows"] == n, res
            walls[name].append(res["seconds"])
            cpus[name].append(res["cpu"])
            print(
                f"  {name:>18}: {res['seconds']:5.2f} s ({n / res['seconds']:,.0f} cuts/s), "
                f"{res['cpu'] / res['seconds']:.2f} cores busy, CPU {res['cpu'] / n * 1e6:.2f} "
                f"µs/cut (building process {res['parent_cpu']:.2f} s, workers "
                f"{res['workers_cpu']:.2f} s); load average {res['load']:.2f}"
            )
    one, many = workdir / f"idx_jobs1_{kind}", workdir / f"idx_jobs{k}_{kind}"
    same = all(
        (one / name).read_bytes() == (many / name).read_bytes()
        for name in (
            *("records.bin", "record_offset.npy", "id_blob.npy", "duration.npy"),
            *("id_offsets.npy", "id_hash_sorted.npy", "id_hash_rows.npy"),
        )
        if (one / name).exists() or (many / name).exists()
    )
    best = {name: min(w) for name, w in walls.items()}
    mid = {name: float(np.median(w)) for name, w in walls.items()}
    cpu_best = {name: min(c) for name, c in cpus.items()}
    cpu_mid = {name: float(np.median(c)) for name, c in cpus.items()}
    many_k, pinned = f"jobs={k}", "jobs=1 on one core"
    print(
        f"  speed-up jobs={k} vs jobs=1: {best['jobs=1'] / best[many_k]:.2f}x wall "
        f"(best of {rounds}; median {mid['jobs=1'] / mid[many_k]:.2f}x; jobs=1 keeps "
        f"{cpu_best['jobs=1'] / best['jobs=1']:.2f} cores busy); process scaling, jobs=1 on one "
        f"core vs jobs={k} on {k}: {best[pinned] / best[many_k]:.2f}x (median "
        f"{mid[pinned] / mid[many_k]:.2f}x); CPU per cut jobs={k} / jobs=1: "
        f"{cpu_best[many_k] / cpu_best['jobs=1']:.2f} (median "
        f"{cpu_mid[many_k] / cpu_mid['jobs=1']:.2f}), / jobs=1 on one core: "
        f"{cpu_best[many_k] / cpu_best[pinned]:.2f}; same bytes: {same}"
    )
    print(
        f"  near-linear: jobs=1's CPU time over {k} cores / jobs={k}'s wall = "
        f"{cpu_best['jobs=1'] / k / best[many_k]:.2f} (median "
        f"{cpu_mid['jobs=1'] / k / mid[many_k]:.2f}; 1.00: linear)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument(
        "--only",
        choices=["build", "open", "resolve", "jobs", "layouts"],
        action="append",
        help="run only these parts (repeatable; default all)",
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    sizes = [10_000, 50_000] if args.quick else [100_000, 1_000_000]
    only = set(args.only or ["build", "open", "resolve", "jobs", "layouts"])
    if "build" in only or ("resolve" in only and not (args.workdir / f"idx_{sizes[-1]}").exists()):
        bench_build(args.workdir, sizes)
    if "open" in only:
        bench_open(args.workdir, 200_000 if args.quick else 10_000_000)
    if "resolve" in only:
        bench_resolve(args.workdir, sizes[-1])
    if "jobs" in only:
        bench_jobs(args.workdir, sizes[-1])
        bench_jobs(args.workdir, sizes[-1] * 10, kind="jsonl")
    if "layouts" in only:
        bench_layouts(args.workdir, sizes[0])


if __name__ == "__main__":
    main()
