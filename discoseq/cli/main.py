"""``discoseq``: the main command. ``discoseq demo`` shows the main job end to end on data it makes.

Exit codes: 0 success; 2 usage error; 3 bad input.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import click
import numpy as np


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """discoseq: deterministic, index-backed batch sampling for Lhotse speech corpora."""


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


@main.command()
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
def demo(workdir: Path, cuts: int, seed: int) -> None:
    """Index the shipped example data and a generated LibriSpeech-like corpus, then inspect,
    look up, resolve and verify them — with Lhotse's own reader timed beside ours."""
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
    click.echo(f"== done. Inspect it yourself: discoseq-index info {reopened.path}")


if __name__ == "__main__":
    main()
