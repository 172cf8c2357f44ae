"""``discoseq analyze SOURCE [options] [--output stats.json] [--plot stats.png]``: plan one
epoch and report its statistics (:mod:`discoseq.analysis`; the JSON is documented in README)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from discoseq.cli.common import (
    fail,
    floats,
    load_config_file,
    make_config,
    opened_source,
    output_option,
    quiet_option,
    source_argument,
)


@click.command()
@source_argument
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="A SamplerConfig JSON file to start from; the options below override its fields.",
)
@click.option(
    "--strategy",
    type=click.Choice(["bucketed", "random", "sequential"]),
    help="How cuts are ordered: bucketed (default), random or sequential (source order).",
)
@click.option(
    "--max-duration",
    type=float,
    help="Batch cap in seconds: number of cuts x the longest cut (Lhotse's meaning).",
)
@click.option("--max-cuts", type=int, help="Maximum number of cuts in a batch.")
@click.option("--max-frames", type=int, help="Batch cap in feature frames (cuts x longest).")
@click.option(
    "--world-size",
    type=click.IntRange(min=1),
    help="Number of ranks of the simulated job (default: the config's, else 1).",
)
@click.option(
    "--num-buckets", type=click.IntRange(min=1), help="Buckets of the bucketed strategy (10)."
)
@click.option(
    "--bucket-method",
    type=click.Choice(["duration", "num_frames", "num_features"]),
    help="The bucketing key of the bucketed strategy (default duration).",
)
@click.option(
    "--bucket-edges",
    help="Explicit interior bucket edges, comma-separated and increasing (e.g. 5,10,15).",
)
@click.option(
    "--num-token-buckets",
    type=click.IntRange(min=1),
    help="> 1: 2D bucketing, each bucket split into this many num_tokens sub-buckets.",
)
@click.option(
    "--bucket-max-duration",
    help="Per-bucket duration caps, comma-separated, one per (flat) bucket.",
)
@click.option(
    "--quadratic-duration",
    type=float,
    help="q: a cut of d seconds costs d + d^2/q against --max-duration (e.g. 30).",
)
@click.option(
    "--limit-mode",
    type=click.Choice(["padded", "sum"]),
    help="padded: cuts x longest (default); sum: total duration (concatenating pipelines).",
)
@click.option(
    "--shuffle/--no-shuffle",
    default=None,
    help="Bucketed: shuffle within buckets and the batch order (default: on, as the config).",
)
@click.option("--drop-last", is_flag=True, default=None, help="Drop the last partial step.")
@click.option(
    "--oversize",
    type=click.Choice(["single", "exclude"]),
    help="A cut larger than a cap alone: a batch of its own (single, default) or left out.",
)
@click.option(
    "--sort-pool",
    type=click.IntRange(min=2),
    help="Sort each run of this many cuts of a bucket by duration before packing (off).",
)
@click.option("--min-duration", type=float, help="Leave out cuts shorter than this (s).")
@click.option("--max-duration-per-cut", type=float, help="Leave out cuts longer than this (s).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default 42).")
@click.option(
    "--epoch", type=click.IntRange(min=0), default=0, show_default=True, help="Epoch to plan."
)
@click.option(
    "--bins", type=click.IntRange(min=1), default=20, show_default=True, help="Histogram bins."
)
@output_option(help="Write the statistics as JSON here (schema in README, 'discoseq analyze').")
@output_option(
    "--plot",
    help="Draw the statistics to this image (.png, .svg, .pdf; needs matplotlib: the 'plot' "
    "extra).",
)
@quiet_option("No progress bar and no table.")
def analyze(
    source: Path,
    config_file: Path | None,
    world_size: int | None,
    epoch: int,
    bins: int,
    output: Path | None,
    plot: Path | None,
    quiet: bool,
    bucket_edges: str | None,
    bucket_max_duration: str | None,
    **options: Any,
) -> None:
    """Plan one epoch of SOURCE and report its statistics: batches per rank, cuts and duration
    per batch, padding efficiency, batch fill, buckets, per-rank balance, repeats and drops,
    oversize and filtered cuts.

    SOURCE is an index directory or a Lhotse cut manifest (indexed into a temporary directory).
    Without --config and limits, --max-duration is required.
    """
    from discoseq.analysis import analyze as run_analysis
    from discoseq.analysis import format_table, plot_analysis

    data = load_config_file(config_file) if config_file is not None else {}
    data.update({k: v for k, v in options.items() if v is not None})
    if bucket_edges is not None:
        data["bucket_edges"] = floats(bucket_edges)
    if bucket_max_duration is not None:
        data["bucket_max_duration"] = floats(bucket_max_duration)
    if world_size is not None:
        data["world_size"] = world_size
        data.pop("rank", None)
    config = make_config(data)
    if plot is not None:  # fail before the work, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            fail('--plot needs matplotlib: pip install "discoseq[plot]"')
    with opened_source(source, progress=not quiet) as index:
        start = time.perf_counter()
        try:
            stats = run_analysis(index, config, epoch=epoch, bins=bins)
        except ValueError as e:  # e.g. a column the configuration needs is missing
            fail(str(e))
        elapsed = time.perf_counter() - start
    if not quiet:
        click.echo(format_table(stats))
        click.echo(f"\nplanned and analysed in {elapsed * 1e3:.1f} ms")
    if output is not None:
        output.write_text(json.dumps(stats, indent=2, allow_nan=False) + "\n")
        click.echo(f"wrote {output}")
    if plot is not None:
        plot_analysis(stats, plot)
        click.echo(f"wrote {plot}")
