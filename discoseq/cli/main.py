"""``discoseq``: the main command.

* ``discoseq analyze SOURCE [options] [--output stats.json] [--plot stats.png]``: plan one epoch
  and report its statistics (:mod:`discoseq.analysis`; the JSON is documented in README).
* ``discoseq benchmark SOURCE config.json [--epochs 3] [--compare lhotse]``: plan time, batches/s
  and cuts/s with and without resolution to CutSets, peak memory, and Lhotse's matching sampler
  on the same data in the same run.
* ``discoseq demo``: the main job end to end on data it makes.

SOURCE is an index directory (``discoseq-index build``) or a Lhotse cut manifest (``.jsonl``,
``.jsonl.gz``, ``.json``), indexed into a temporary directory for the run.

Exit codes (a script can rely on them):

* 0: success.
* 2: usage error: an unknown option, a bad option value, or options that make an invalid
  configuration (the message names the field), e.g. ``--num-buckets`` with ``--strategy random``.
* 3: bad input: SOURCE or the config file is missing, unreadable or invalid (a malformed
  manifest, a corrupted or stale index, a config JSON that is not a valid SamplerConfig), or
  the plot was asked for without matplotlib installed.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import click
import numpy as np

from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError

EXIT_USAGE = 2
EXIT_BAD_INPUT = 3

_SOURCE_HELP = "an index directory or a Lhotse cut manifest (.jsonl, .jsonl.gz, .json)"


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """discoseq: deterministic, index-backed batch sampling for Lhotse speech corpora.

    Exit codes: 0 ok, 2 usage error, 3 bad input (see each command's --help).
    """


# -- shared helpers ---------------------------------------------------------------------------


@contextmanager
def _opened(source: Path, progress: bool = True) -> Iterator[Any]:
    """The CutIndex of SOURCE (an index, or a manifest indexed into a temporary directory)."""
    from discoseq.index import CutIndex, build_index

    tmp: str | None = None
    try:
        if source.is_dir():
            index = CutIndex.open(source)
        elif source.is_file():
            tmp = tempfile.mkdtemp(prefix="discoseq-cli-")
            index = build_index(source, Path(tmp) / "index", progress=progress)
        else:
            _fail(f"no index directory or manifest at {source}")
    except (IndexFormatError, StaleIndexError, ManifestError, FileNotFoundError) as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _fail(str(e))
    try:
        yield index
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _load_config_file(path: Path) -> dict[str, Any]:
    """A SamplerConfig dict from a JSON file (exit 3 when unreadable or invalid)."""
    from discoseq.config import SamplerConfig

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        _fail(f"no config file at {path}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(f"{path}: not a JSON document ({e})")
    try:
        SamplerConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        _fail(f"{path}: not a valid SamplerConfig: {e}")
    return dict(data)


def _config(data: dict[str, Any]) -> Any:
    """A SamplerConfig from ``data``; an invalid combination of options is a usage error."""
    from discoseq.config import SamplerConfig

    try:
        return SamplerConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        raise click.UsageError(f"invalid configuration: {e}") from None


# -- analyze ----------------------------------------------------------------------------------


def _output_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """An output file option: its directory must exist and be writable (checked before the
    work, so a bad path is a usage error, not a traceback at the end)."""
    if value is None:
        return None
    parent = value.parent
    if value.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        why = "is a directory" if value.is_dir() else f"cannot write in {str(parent)!r}"
        raise click.BadParameter(f"{str(value)!r}: {why}")
    return value


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
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
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    callback=_output_path,
    help="Write the statistics as JSON here (schema in README, 'discoseq analyze').",
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    callback=_output_path,
    help="Draw the statistics to this image (.png, .svg, .pdf; needs matplotlib: the 'plot' "
    "extra).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no table.")
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

    data = _load_config_file(config_file) if config_file is not None else {}
    data.update({k: v for k, v in options.items() if v is not None})
    if bucket_edges is not None:
        data["bucket_edges"] = _floats(bucket_edges)
    if bucket_max_duration is not None:
        data["bucket_max_duration"] = _floats(bucket_max_duration)
    if world_size is not None:
        data["world_size"] = world_size
        data.pop("rank", None)
    config = _config(data)
    if plot is not None:  # fail before the work, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail('--plot needs matplotlib: pip install "discoseq[plot]"')
    with _opened(source, progress=not quiet) as index:
        start = time.perf_counter()
        try:
            stats = run_analysis(index, config, epoch=epoch, bins=bins)
        except ValueError as e:  # e.g. a column the configuration needs is missing
            _fail(str(e))
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


# -- benchmark --------------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process peak (ru_maxrss, KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@contextmanager
def _peak_rss(result: dict[str, Any]) -> Iterator[None]:
    """Sample this process's RSS every 5 ms; ``result['peak_mb']`` is the peak above the start."""
    base = _rss_bytes()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.005):
            peak = max(peak, _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        peak = max(peak, _rss_bytes())
        result["peak_mb"] = (peak - base) / 1e6


def _timed_epochs(epochs: int, run_epoch: Callable[[int], tuple[int, int]]) -> dict[str, Any]:
    """Run ``run_epoch(e) -> (batches, cuts)`` for each epoch; totals, rates and peak memory."""
    out: dict[str, Any] = {}
    batches = cuts = 0
    with _peak_rss(out):
        start = time.perf_counter()
        for e in range(epochs):
            b, c = run_epoch(e)
            batches += b
            cuts += c
        seconds = time.perf_counter() - start
    out.update(
        seconds=seconds,
        batches=batches,
        cuts=cuts,
        batches_per_s=batches / seconds if seconds else float("inf"),
        cuts_per_s=cuts / seconds if seconds else float("inf"),
    )
    return out


_LHOTSE_UNMATCHED = {  # field: (default, why Lhotse's samplers cannot match it)
    "max_frames": (None, "Lhotse's dynamic samplers have no frame cap"),
    "limit_mode": ("padded", "Lhotse's max_duration is always cuts x longest"),
    "bucket_method": ("duration", "Lhotse buckets on duration only"),
    "num_token_buckets": (None, "2D bucketing is not in Lhotse's DynamicBucketingSampler"),
    "token_bucket_edges": (None, "2D bucketing is not in Lhotse's DynamicBucketingSampler"),
    "bucket_max_duration": (None, "per-bucket caps are not in Lhotse's samplers"),
    "bucket_max_cuts": (None, "per-bucket caps are not in Lhotse's samplers"),
    "oversize": ("single", "Lhotse always yields an oversize cut alone"),
    "sort_pool": (None, "Lhotse's samplers do not sort within pools"),
    "min_duration": (None, "filter the CutSet before comparing"),
    "max_duration_per_cut": (None, "filter the CutSet before comparing"),
    "max_tokens_per_second": (None, "filter the CutSet before comparing"),
}


def _lhotse_sampler(cuts: Any, config: Any, world: int, rank: int) -> Any:
    from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler

    common: dict[str, Any] = {
        "max_duration": config.max_duration,
        "max_cuts": config.max_cuts,
        "drop_last": config.drop_last,
        "quadratic_duration": config.quadratic_constant,
        "world_size": world,
        "rank": rank,
        "seed": config.seed,
    }
    if config.strategy.value == "bucketed":
        extra: dict[str, Any] = {
            "num_buckets": config.num_buckets,
            "shuffle": config.effective_shuffle,
        }
        if config.bucket_edges is not None:
            extra["duration_bins"] = list(config.bucket_edges)
        return DynamicBucketingSampler(cuts, **common, **extra)
    return DynamicCutSampler(cuts, **common, shuffle=config.effective_shuffle)


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("config_file", metavar="CONFIG.json", type=click.Path(path_type=Path))
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Epochs to iterate in each measurement (epochs 0, 1, ...).",
)
@click.option(
    "--compare",
    type=click.Choice(["lhotse"]),
    help="Also run Lhotse's matching sampler (DynamicBucketingSampler for bucketed, "
    "DynamicCutSampler otherwise) on the same data in this run and print the ratios.",
)
@click.option(
    "--resolve/--no-resolve",
    default=True,
    show_default=True,
    help="Also measure iteration with resolution of every batch to a lhotse CutSet.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    callback=_output_path,
    help="Write the measurements as JSON here.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar while indexing a manifest.")
def benchmark(
    source: Path,
    config_file: Path,
    epochs: int,
    compare: str | None,
    resolve: bool,
    output: Path | None,
    quiet: bool,
) -> None:
    """Measure discoseq on SOURCE with the SamplerConfig in CONFIG.json: plan time, batches/s
    and cuts/s with and without resolution to CutSets, and peak memory (RSS above the start of
    each measurement, sampled every 5 ms); with --compare lhotse, Lhotse's matching sampler on
    the same data in the same run, and the ratios.

    SOURCE is an index directory or a Lhotse cut manifest. The job is simulated as rank
    config.rank (default 0) of config.world_size (default 1); nothing is detected from the
    environment. With num_workers > 0 in the config, resolution runs in that many DataLoader
    workers (create_dataloader).
    """
    from discoseq.loader import create_dataloader
    from discoseq.plan import plan_epoch
    from discoseq.sampler import DiscoSeqSampler

    data = _load_config_file(config_file)
    data["world_size"] = data.get("world_size") or 1
    data["rank"] = data.get("rank") or 0
    config = _config(data)
    world, rank = config.world_size, config.rank
    if compare == "lhotse":
        for name, (default, why) in _LHOTSE_UNMATCHED.items():
            if getattr(config, name) != default:
                raise click.UsageError(
                    f"--compare lhotse: {name}={getattr(config, name)!r} has no Lhotse "
                    f"equivalent ({why}); remove it from {config_file} to compare"
                )
    report: dict[str, Any] = {"config": config.to_dict(), "epochs": epochs}
    with _opened(source, progress=not quiet) as index:
        report["cuts"] = len(index)
        manifests = [Path(s["path"]) for s in index.header.sources]
        click.echo(
            f"{len(index):,} cuts, {float(np.sum(index.duration)) / 3600:.1f} h; "
            f"strategy={config.strategy}, rank {rank} of {world}, {epochs} epoch(s)"
        )
        plan_config = config.to_plan_config()
        columns = index.columns
        plan_epoch(columns, plan_config, 0, world)  # warm-up: first touch of the pages
        times = []
        plan = None
        for e in range(epochs):
            start = time.perf_counter()
            plan = plan_epoch(columns, plan_config, e, world)
            times.append(time.perf_counter() - start)
        assert plan is not None
        report["plan"] = {
            "seconds_mean": statistics.fmean(times),
            "seconds_min": min(times),
            "batches_per_rank": plan.batches_per_rank,
            "num_batches": plan.num_batches,
        }
        click.echo(
            f"plan_epoch: {statistics.fmean(times) * 1e3:.1f} ms per epoch (min "
            f"{min(times) * 1e3:.1f}), {plan.num_batches:,} batches, "
            f"{plan.batches_per_rank:,} per rank"
        )
        sampler = DiscoSeqSampler(index, config, progress=False)

        def indices_epoch(e: int) -> tuple[int, int]:
            sampler.set_epoch(e)
            b = c = 0
            for rows in sampler.iter_batches_indices():
                b += 1
                c += rows.shape[0]
            return b, c

        rows_run = _timed_epochs(epochs, indices_epoch)
        report["indices"] = rows_run
        click.echo(_rate_line("batches as index arrays (plan + iterate)", rows_run))
        if resolve:
            loader: Any = sampler
            if config.num_workers > 0:
                loader = create_dataloader(sampler)

            def resolved_epoch(e: int) -> tuple[int, int]:
                sampler.set_epoch(e)
                b = c = 0
                for cuts in loader:
                    b += 1
                    c += len(cuts)
                return b, c

            cut_run = _timed_epochs(epochs, resolved_epoch)
            report["cutsets"] = {**cut_run, "num_workers": config.num_workers}
            where = f"{config.num_workers} workers" if config.num_workers else "main process"
            click.echo(_rate_line(f"batches as lhotse CutSets ({where})", cut_run))
    if compare == "lhotse":
        report["lhotse"] = _compare_lhotse(manifests, config, world, rank, epochs, report)
    report["peak_rss_mb"] = _rss_bytes_peak() / 1e6
    click.echo(f"process peak RSS: {report['peak_rss_mb']:.0f} MB")
    if output is not None:
        output.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(f"wrote {output}")


def _rss_bytes_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _rate_line(what: str, run: dict[str, Any]) -> str:
    return (
        f"{what}: {run['seconds']:.2f} s, {run['batches']:,} batches, "
        f"{run['batches_per_s']:,.0f} batches/s, {run['cuts_per_s']:,.0f} cuts/s, "
        f"peak +{run['peak_mb']:.0f} MB"
    )


def _compare_lhotse(
    manifests: list[Path], config: Any, world: int, rank: int, epochs: int, report: dict[str, Any]
) -> dict[str, Any]:
    import warnings

    from lhotse import CutSet

    missing = [str(p) for p in manifests if not p.is_file()]
    if missing:
        _fail(f"--compare lhotse reads the index's source manifests, which are gone: {missing}")
    cuts = CutSet.from_files([str(p) for p in manifests]) if len(manifests) > 1 else None
    if cuts is None:
        cuts = CutSet.from_file(manifests[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = _lhotse_sampler(cuts, config, world, rank)

        def lhotse_epoch(e: int) -> tuple[int, int]:
            sampler.set_epoch(e)
            b = c = 0
            for batch in sampler:
                b += 1
                c += len(batch)
            return b, c

        run = _timed_epochs(epochs, lhotse_epoch)
    run["sampler"] = type(sampler).__name__
    click.echo(_rate_line(f"Lhotse {run['sampler']} (lazy CutSet, CutSets)", run))
    ratios: dict[str, float] = {
        "index_arrays_vs_lhotse_time": run["seconds"] / report["indices"]["seconds"],
    }
    click.echo(
        f"ratio, Lhotse time / discoseq time: index arrays "
        f"{ratios['index_arrays_vs_lhotse_time']:,.1f}x"
        + (
            f", CutSets {run['seconds'] / report['cutsets']['seconds']:,.2f}x"
            if "cutsets" in report
            else ""
        )
    )
    if "cutsets" in report:
        ratios["cutsets_vs_lhotse_time"] = run["seconds"] / report["cutsets"]["seconds"]
        ratios["cutsets_cuts_per_s"] = report["cutsets"]["cuts_per_s"] / run["cuts_per_s"]
    run["ratios"] = ratios
    return run


# -- demo -------------------------------------------------------------------------------------


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
def demo(workdir: Path, cuts: int, seed: int, world_size: int, num_workers: int) -> None:
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
    click.echo(f"== done. Inspect it yourself: discoseq-index info {reopened.path}")
    click.echo(
        f"   and: discoseq analyze {reopened.path} --max-duration 600 --world-size "
        f"{world_size} --plot stats.png"
    )


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
    plan = plan_epoch(index.columns, config.to_plan_config(), 0, world_size)
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


if __name__ == "__main__":
    main()
