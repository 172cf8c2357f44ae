"""``discoseq demo``: the main job end to end on data it makes (index, look up, resolve,
verify; plan for a simulated multi-rank job, iterate one rank with workers, stop, resume)."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click
import numpy as np


def _lhotse_lazy_rate(path: Path, limit: int) -> float:
    """Cuts/s at which Lhotse iterates ``path`` lazily (the first ``limit`` cuts)."""
    from lhotse import CutSet

    start = time.perf_counter()
    n = 0
    for _ in CutSet.from_file(path):
        n += 1
        if n >= limit:
            break
    return n / (time.perf_counter() - start)


@click.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("discoseq-demo"),
    show_default=True,
    help="Where the generated corpus and the indexes are written.",
)
@click.option(
    "--cuts",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Number of cuts in the generated LibriSpeech-like corpus.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the generated corpus."
)
@click.option(
    "--world-size",
    type=click.IntRange(min=2),
    default=4,
    show_default=True,
    help="Ranks of the simulated distributed job.",
)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="DataLoader workers of the simulated rank.",
)
@click.option(
    "--clean-up",
    is_flag=True,
    help="Remove WORKDIR at the end (by default it is kept, to inspect; it takes about 0.5 kB "
    "per generated cut).",
)
def demo(
    workdir: Path, cuts: int, seed: int, world_size: int, num_workers: int, clean_up: bool
) -> None:
    """Index the shipped example data and a generated LibriSpeech-like corpus (inspect, look
    up, resolve, verify, with Lhotse's own reader timed beside ours), then plan an epoch for a
    simulated multi-rank job, iterate one rank through a DataLoader with workers, stop
    mid-epoch, resume in a fresh sampler and check the resumed batches equal the uninterrupted
    ones."""
    from discoseq.index import build_index, verify_index
    from discoseq.synth import write_manifest

    workdir.mkdir(parents=True, exist_ok=True)
    click.echo("== 1. the shipped example: 38 real Mini LibriSpeech cuts")
    example = resources.files("discoseq") / "data" / "mini_librispeech_cuts.jsonl.gz"
    with resources.as_file(example) as example_path:
        index = build_index(example_path, workdir / "mini.idx", force=True)
    click.echo(
        f"   {len(index)} cuts, {float(np.sum(index.duration)):.1f} s of speech, "
        f"{int(np.sum(index.num_tokens))} transcript characters"
    )
    batch = index.resolve([3, 0, 17])
    for cut in batch:
        click.echo(
            f"   resolved {cut.id}: {cut.duration:.2f} s, '{cut.supervisions[0].text[:40]}...'"
        )

    click.echo(f"== 2. a generated LibriSpeech-like corpus of {cuts:,} cuts (1 % MixedCut)")
    manifest = workdir / f"librispeech_like_{cuts}.jsonl.gz"
    start = time.perf_counter()
    write_manifest(manifest, cuts, profile="librispeech", seed=seed, mixed_fraction=0.01)
    click.echo(
        f"   wrote {manifest} ({manifest.stat().st_size / 1e6:.1f} MB) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    index = build_index(manifest, workdir / "corpus.idx", force=True, progress=True)
    build_s = time.perf_counter() - start
    ours = len(index) / build_s
    theirs = _lhotse_lazy_rate(manifest, min(cuts, 20_000))
    click.echo(
        f"   discoseq-index build: {build_s:.2f} s, {ours:,.0f} cuts/s; Lhotse lazy "
        f"iteration of the same file: {theirs:,.0f} cuts/s -> {ours / theirs:.1f}x"
    )
    d = np.asarray(index.duration)
    click.echo(
        f"   {len(index):,} cuts, {d.sum() / 3600:.1f} h; duration min {d.min():.2f} s, "
        f"mean {d.mean():.2f} s, max {d.max():.2f} s; records stored "
        f"{index.header.records['size'] / 1e6:.1f} MB"
    )
    start = time.perf_counter()
    reopened = type(index).open(index.path)
    open_ms = (time.perf_counter() - start) * 1e3
    probes = [reopened.cut_id(int(r)) for r in np.linspace(0, len(reopened) - 1, 1000)]
    row = reopened.row_of(probes[500])
    start = time.perf_counter()
    for probe in probes:
        reopened.row_of(probe)
    lookup_us = (time.perf_counter() - start) * 1e6 / len(probes)
    click.echo(
        f"   open: {open_ms:.1f} ms; row_of({probes[500]!r}) = {row}; {lookup_us:.1f} µs per lookup"
    )
    rows = np.random.default_rng(seed).choice(len(reopened), size=50, replace=False)
    start = time.perf_counter()
    batch = reopened.resolve(rows)
    click.echo(
        f"   resolved a random batch of {len(batch)} cuts to a lhotse CutSet in "
        f"{(time.perf_counter() - start) * 1e3:.1f} ms "
        f"(total {sum(c.duration for c in batch):.1f} s of audio)"
    )
    report = verify_index(reopened.path)
    click.echo(f"   verify: {'ok' if report.ok else report.problems}")

    _demo_job(reopened, workdir, world_size, num_workers)
    size = _tree_bytes(workdir)
    if clean_up:
        shutil.rmtree(workdir)
        click.echo(f"== done. Removed {workdir} ({size / 1e6:,.0f} MB).")
        return
    click.echo(f"== done. Inspect it yourself: discoseq-index info {reopened.path}")
    click.echo(
        f"   and: discoseq analyze {reopened.path} --max-duration 600 --world-size "
        f"{world_size} --plot stats.png"
    )
    click.echo(
        f"   The demo's files take {size / 1e6:,.0f} MB in {workdir.resolve()}; remove them "
        f"with: rm -r {shlex.quote(str(workdir))} (or run the demo with --clean-up)"
    )


def _tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _set_epoch(loader: Any, epoch: int) -> None:
    loader.dataset.set_epoch(epoch)  # as the training loop of the README does


def _demo_job(index: Any, workdir: Path, world_size: int, num_workers: int) -> None:
    """Section 3 of the demo: plan, iterate one rank with workers, stop, resume, compare."""
    from discoseq.analysis import analyze_plan
    from discoseq.config import SamplerConfig
    from discoseq.loader import create_dataloader
    from discoseq.plan import plan_epoch
    from discoseq.sampler import DiscoSeqSampler

    rank = 1
    config = SamplerConfig(
        strategy="bucketed",
        max_duration=600.0,
        num_buckets=10,
        world_size=world_size,
        rank=rank,
        num_workers=num_workers,
        seed=42,
    )
    click.echo(
        f"== 3. a simulated {world_size}-rank job: bucketed, max_duration=600 s, 10 buckets; "
        f"rank {rank} through a DataLoader with {num_workers} workers"
    )
    start = time.perf_counter()
    plan = plan_epoch(index.columns, config, 0, world_size)
    plan_ms = (time.perf_counter() - start) * 1e3
    stats = analyze_plan(plan, index.duration)
    r = stats["ranks"]
    click.echo(
        f"   planned epoch 0 for all {world_size} ranks in {plan_ms:.1f} ms: "
        f"{plan.num_batches:,} batches, {plan.batches_per_rank:,} per rank "
        f"({'equal on every rank' if stats['ranks']['balance']['equal_batch_counts'] else '?'}), "
        f"{stats['repeats']['batches']} repeated to pad the last step"
    )
    click.echo(
        f"   padding efficiency {stats['padding']['efficiency']:.3f}, mean batch fill "
        f"{stats['fill']['mean']:.3f}; speech per rank "
        + ", ".join(f"{h / 3600:.2f} h" for h in r["duration"])
        + f" (max/min {r['balance']['duration_max_over_min']:.3f})"
    )

    def ids_of(batches: list[Any]) -> list[tuple[str, ...]]:
        return [tuple(c.id for c in b) for b in batches]

    start = time.perf_counter()
    loader = create_dataloader(index, config)
    _set_epoch(loader, 0)
    full = ids_of(list(loader))
    full_s = time.perf_counter() - start
    n_cuts = sum(len(b) for b in full)
    click.echo(
        f"   uninterrupted: rank {rank} received {len(full):,} CutSets ({n_cuts:,} cuts) in "
        f"{full_s:.1f} s ({n_cuts / full_s:,.0f} cuts/s)"
    )
    del loader

    stop = len(full) // 2
    loader = create_dataloader(index, config)
    _set_epoch(loader, 0)
    first: list[Any] = []
    for b in loader:
        first.append(b)
        if len(first) == stop:
            break
    state_path = workdir / "sampler_state.json"
    state_path.write_text(json.dumps(loader.state_dict()))
    del loader  # the "crash": workers and their prefetched batches are gone
    click.echo(
        f"   interrupted after {stop:,} batches; saved the state to {state_path} "
        f"({state_path.stat().st_size} bytes)"
    )

    fresh = DiscoSeqSampler(index.path, config, progress=False)
    loader = create_dataloader(fresh)
    loader.load_state_dict(json.loads(state_path.read_text()))
    _set_epoch(loader, 0)  # what a training loop does at the epoch start: keeps the position
    remaining = len(fresh)
    rest = ids_of(list(loader))
    resumed = ids_of(first) + rest
    same = resumed == full
    click.echo(
        f"   resumed in a fresh sampler: {remaining:,} batches left, received {len(rest):,}; "
        f"before + after == uninterrupted, batch by batch: {'yes' if same else 'NO'}"
    )
    if not same:
        raise click.ClickException("the resumed batches differ from the uninterrupted run")

    # elastic: the same state on a smaller world, index arrays only
    new_world = world_size - 1
    delivered = set(plan.rows[: plan.batch_offsets[stop * world_size]].tolist())
    seen: list[int] = []
    for new_rank in range(new_world):
        s = DiscoSeqSampler(
            index, config.replace(world_size=new_world, rank=new_rank, num_workers=0)
        )
        s.load_state_dict(json.loads(state_path.read_text()))
        for rows in s.iter_batches_indices():
            seen.extend(rows.tolist())
    planned = set(plan.rows.tolist())
    ok = set(seen) == planned - delivered
    click.echo(
        f"   elastic: the same state on {new_world} ranks delivers the "
        f"{len(planned - delivered):,} cuts not yet seen, none seen before: "
        f"{'yes' if ok else 'NO'} "
        f"({len(seen) - len(set(seen))} repeats pad the new world's last step)"
    )
    if not ok:
        raise click.ClickException("elastic resumption lost or repeated cuts")
