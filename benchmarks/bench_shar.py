"""Lhotse Shar corpora: build rate and read locality, each against a baseline of the same run.

1. Build: ``build_index(SHAR_DIR)`` (cut shards + tar headers only) vs Lhotse iterating the same
   Shar set (``CutSet.from_shar(in_dir=...)``, which reads every member) -> ratio of rates.
2. Read locality: one DataLoader worker (rank 0, worker 0 of ``--workers``, ``--world`` ranks)
   resolves its batches of an epoch; every ``os.pread`` is counted with its file. Printed per 100
   batches of that worker: reads, distinct files and distinct Shar field tars, with the default
   whole-epoch plan and with ``shard_block`` (and the option's padding cost: extra batches, mean
   fill, as ``discoseq analyze`` reports it).

The corpus is generated (``--shards`` x ``--cuts-per-shard`` cuts of librispeech-like durations,
one ``recording`` field of small real WAV members) into ``--workdir`` (default
``benchmarks/out``, which git ignores). Usage::

    python benchmarks/bench_shar.py [--quick] [--shard-block K] [--windows N]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import io
import json
import os
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(directory: Path, shards: int, per_shard: int) -> Path:
    """A Shar directory as ``CutSet.to_shar(fields={"recording": "wav"})`` lays it out: cut
    shards with placeholder recordings, and per shard a tar of ``<id>.wav`` + ``<id>.json``."""
    import soundfile as sf

    from discoseq.synth import generate_durations

    out = directory / f"shar_{shards}x{per_shard}"
    done = directory / f"{out.name}.done"  # beside it: a Shar directory holds only shards
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    durations = generate_durations(shards * per_shard, seed=0)
    wav = io.BytesIO()  # a real WAV member (the same tiny one for every cut: reads are counted)
    sf.write(wav, np.zeros(160, np.int16), 16000, format="WAV")
    wav_bytes = wav.getvalue()
    for s in range(shards):
        lines = []
        with tarfile.open(out / f"recording.{s:06d}.tar", "w") as tar:
            for i in range(per_shard):
                k = s * per_shard + i
                cut_id, d = f"cut-{k:08d}", float(durations[k])
                num_samples = round(d * 16000)
                rec = {
                    "id": f"rec-{k:08d}",
                    "sources": [{"type": "shar", "channels": [0], "source": ""}],
                    "sampling_rate": 16000,
                    "num_samples": num_samples,
                    "duration": d,
                    "channel_ids": [0],
                }
                sup = {"id": cut_id, "recording_id": rec["id"], "start": 0.0, "duration": d,
                       "channel": 0, "text": "a few words of text"}  # fmt: skip
                lines.append(
                    json.dumps({"id": cut_id, "start": 0, "duration": d, "channel": 0,
                                "supervisions": [sup], "recording": rec, "type": "MonoCut"})
                )  # fmt: skip
                meta = (json.dumps(rec) + "\n").encode()
                for name, data in ((f"{cut_id}.wav", wav_bytes), (f"{cut_id}.json", meta)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        with gzip.open(out / f"cuts.{s:06d}.jsonl.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
    done.write_text("")
    dt = time.perf_counter() - t
    print(f"  generated {shards * per_shard:,} cuts in {shards} shards in {dt:.1f} s")
    return out


def bench_build(shar: Path, workdir: Path) -> None:
    from lhotse import CutSet

    from discoseq.index import build_index

    print("== build: tar headers only vs Lhotse iterating the Shar set")
    t = time.perf_counter()
    index = build_index(shar, workdir / "shar.idx", force=True)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    n = sum(1 for _ in CutSet.from_shar(in_dir=shar))
    theirs = time.perf_counter() - t
    assert n == len(index)
    print(
        f"  {n:,} cuts: discoseq build {n / ours:,.0f} cuts/s ({ours:.1f} s), Lhotse "
        f"from_shar iteration {n / theirs:,.0f} cuts/s ({theirs:.1f} s) -> ratio "
        f"{theirs / ours:.2f}x"
    )


def worker_reads(index, plan, workers: int, windows: int) -> tuple[float, float, float, int]:
    """Resolve worker 0's first ``windows`` x 100 batches, counting every pread by file;
    returns (reads, distinct files, distinct field tars) per 100 batches, and batches read."""
    ids = plan.worker_view(0, 0, workers)[: 100 * windows]
    real = os.pread
    current: Counter[str] = Counter()

    def counting(fd: int, size: int, offset: int) -> bytes:
        current[os.readlink(f"/proc/self/fd/{fd}")] += 1
        return real(fd, size, offset)

    reads, files, tars = [], [], []
    os.pread = counting  # type: ignore[assignment]
    try:
        for w in range(0, ids.shape[0], 100):
            current.clear()
            for b in ids[w : w + 100]:
                index.resolve(plan.batch(int(b)))
            reads.append(sum(current.values()))
            files.append(len(current))
            tars.append(sum(1 for p in current if p.endswith(".tar")))
    finally:
        os.pread = real  # type: ignore[assignment]
    return float(np.mean(reads)), float(np.mean(files)), float(np.mean(tars)), int(ids.shape[0])


def bench_locality(workdir: Path, shard_block: int, world: int, workers: int, windows: int) -> None:
    from discoseq.analysis import analyze
    from discoseq.config import SamplerConfig
    from discoseq.index import CutIndex
    from discoseq.plan import plan_epoch

    index = CutIndex.open(workdir / "shar.idx")
    shards = len(index.header.sources)
    config = SamplerConfig(max_duration=200.0, num_buckets=10, world_size=world,
                           num_workers=workers, shard_block=shard_block)  # fmt: skip
    base = dataclasses.replace(config, shard_block=None)
    print(
        f"== read locality: worker 0 of {workers} on rank 0 of {world}, {shards} shards, "
        f"per 100 batches of that worker"
    )
    for name, cfg in (
        ("whole-epoch plan (baseline)", base),
        (f"shard_block={shard_block}", config),
    ):
        plan = plan_epoch(index.columns, cfg, 0, world)
        reads, files, tars, n = worker_reads(index, plan, workers, windows)
        print(
            f"  {name:<28} reads {reads:8,.0f}  distinct files {files:6.1f}  distinct field "
            f"tars {tars:6.1f}   ({n} batches resolved)"
        )
        if cfg is base:
            base_tars = tars
    print(
        f"  -> field tars touched per 100 batches: {base_tars / tars:.1f}x fewer with shard_block"
    )
    cost = analyze(index, config)["shard_block"]
    print(
        f"  cost (discoseq analyze): {cost['num_batches']:,} batches vs "
        f"{cost['num_batches_without']:,} "
        f"(+{cost['extra_batches'] / cost['num_batches_without']:.2%}); "
        f"mean fill {cost['mean_fill']:.3f} vs {cost['mean_fill_without']:.3f}; padding "
        f"efficiency {cost['padding_efficiency']:.3f} vs {cost['padding_efficiency_without']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small corpus, a smoke run (a worker has fewer than 100 batches: no locality)",
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--shard-block", type=int, default=8)
    parser.add_argument("--world", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--windows", type=int, default=3, help="100-batch windows resolved")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    shards, per_shard = (50, 200) if args.quick else (500, 1000)
    shar = write_corpus(args.workdir, shards, per_shard)
    bench_build(shar, args.workdir)
    bench_locality(args.workdir, args.shard_block, args.world, args.workers, args.windows)


if __name__ == "__main__":
    main()
