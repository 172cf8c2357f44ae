"""``discoseq analyze SOURCE [options] [--output stats.json] [--plot stats.png]``: plan one
epoch and report its statistics (:mod:`discoseq.analysis`; the JSON is documented in README)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from discoseq.cli.common import (
    check_output_path,
    check_sources_option,
    chosen_source,
    config_data,
    config_options,
    fail,
    make_config,
    opened_source,
    output_option,
    quiet_option,
    source_argument,
)


def plot_formats() -> list[str] | None:
    """The image formats matplotlib writes (by file extension), or None without matplotlib."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return None
    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_plot_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``--plot``: a writable path whose extension names a format matplotlib writes (checked
    before the work: a usage error, not a traceback after it). Without matplotlib the command
    exits 3 instead, saying how to install it."""
    value = check_output_path(ctx, param, value)
    if value is None:
        return None
    formats = plot_formats()
    if formats is None:
        return value
    suffix = value.suffix.lower().removeprefix(".")
    if suffix not in formats:
        what = (
            "has no extension to name the image format"
            if not suffix
            else f"ends in .{suffix}, not an image format matplotlib writes"
        )
        example = value.with_suffix(".png") if suffix else f"{value}.png"
        raise click.BadParameter(
            f"{str(value)!r} {what}; use one of "
            + ", ".join(f".{f}" for f in formats)
            + f" (e.g. {example})"
        )
    return value


@click.command()
@source_argument
@config_options
@click.option(
    "--epoch", type=click.IntRange(min=0), default=0, show_default=True, help="Epoch to plan."
)
@click.option(
    "--bins", type=click.IntRange(min=1), default=20, show_default=True, help="Histogram bins."
)
@output_option(help="Write the statistics as JSON here (schema in README, 'discoseq analyze').")
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    callback=check_plot_path,
    help="Draw the statistics to this image; its extension names the format (.png, .svg, "
    ".pdf, ...; needs matplotlib: the 'plot' extra).",
)
@check_sources_option
@quiet_option("No progress bar and no table.")
def analyze(
    source: Path | None,
    epoch: int,
    bins: int,
    output: Path | None,
    plot: Path | None,
    no_check_sources: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Plan one epoch of SOURCE and report its statistics: batches per rank, cuts and duration
    per batch, padding efficiency, batch fill, buckets, per-rank balance, repeats and drops,
    oversize and filtered cuts.

    SOURCE is an index directory or a Lhotse cut manifest (indexed into a temporary directory).
    A mixture: no SOURCE, and a --config file with "sources" (name -> path, relative to the
    file) and the mixture options; the report then has a row per source. Without --config and
    limits, --max-duration is required.
    """
    from discoseq.analysis import analyze as run_analysis
    from discoseq.analysis import format_table, plot_analysis

    data = config_data(options)
    chosen = chosen_source(source, data)
    config = make_config(data)
    if plot is not None:  # fail before the work, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            fail('--plot needs matplotlib: pip install "discoseq[plot]"')
    with opened_source(chosen, progress=not quiet, check_sources=not no_check_sources) as index:
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
        click.echo(f"wrote {plot_analysis(stats, plot)}")
