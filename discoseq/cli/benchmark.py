"""``discoseq benchmark SOURCE config.json [--epochs 3] [--compare lhotse]``: plan time,
batches/s and cuts/s with and without resolution to CutSets, peak memory, and Lhotse's matching
sampler on the same data in the same run."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from discoseq.cli.common import (
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


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process peak
        return _rss_bytes_peak()


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
    "pack_duration": (None, "Lhotse's samplers do not pack cuts (bench_packing.py compares)"),
    "pack_tokens": (None, "Lhotse's samplers do not pack cuts (bench_packing.py compares)"),
    "max_tokens": (None, "Lhotse's dynamic samplers have no token cap"),
    "audio_tokens_per_second": (None, "Lhotse's dynamic samplers have no token cap"),
    "quadratic_tokens": (None, "Lhotse's dynamic samplers have no token cap"),
    "shard_block": (None, "Lhotse's samplers do not shuffle by blocks of shards"),
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


@click.command()
@source_argument
@click.argument(
    "config_json", metavar="[CONFIG.json]", required=False, type=click.Path(path_type=Path)
)
@config_options
@click.option(
    "--rank",
    type=click.IntRange(min=0),
    help="The rank of the simulated job to measure (default: the config's, else 0).",
)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    help="Resolve CutSets in this many DataLoader workers (default: the config's, else 0).",
)
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
@output_option(help="Write the measurements as JSON here.")
@check_sources_option
@quiet_option("No progress bar while indexing a manifest.")
def benchmark(
    source: Path | None,
    config_json: Path | None,
    rank: int | None,
    num_workers: int | None,
    epochs: int,
    compare: str | None,
    resolve: bool,
    output: Path | None,
    no_check_sources: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Measure discoseq on SOURCE with a SamplerConfig: plan time, batches/s and cuts/s with
    and without resolution to CutSets, and peak memory (RSS above the start of each
    measurement, sampled every 5 ms); with --compare lhotse, Lhotse's matching sampler on the
    same data in the same run, and the ratios.

    The SamplerConfig is a JSON file (CONFIG.json or --config) and/or the same options as
    ``discoseq analyze`` (an option overrides the file's field). SOURCE is an index directory
    or a Lhotse cut manifest. The job is simulated as rank --rank (default 0) of --world-size
    (default 1); nothing is detected from the environment. With --num-workers > 0, resolution
    runs in that many DataLoader workers (create_dataloader).
    """
    from discoseq.index.multi import MultiIndex
    from discoseq.loader import create_dataloader
    from discoseq.packs import pack_members
    from discoseq.plan import plan_epoch
    from discoseq.plan.quota import SourceLayout
    from discoseq.sampler import DiscoSeqSampler

    data = config_data(options, config_json)
    data["world_size"] = data.get("world_size") or 1
    data["rank"] = rank if rank is not None else data.get("rank") or 0
    if num_workers is not None:
        data["num_workers"] = num_workers
    chosen = chosen_source(source, data)
    config = make_config(data)
    world, rank = config.world_size or 1, config.rank or 0  # set just above
    if not isinstance(chosen, Path) and compare is not None:
        raise click.UsageError(
            "--compare lhotse takes one SOURCE; for mixtures against CutSet.mux run "
            "benchmarks/bench_mixture.py"
        )
    if compare == "lhotse":
        unmatched = [
            f"{name}={getattr(config, name)!r} ({why})"
            for name, (default, why) in _LHOTSE_UNMATCHED.items()
            if getattr(config, name) != default
        ]
        if unmatched:
            raise click.UsageError(
                f"--compare lhotse: {'; '.join(unmatched)}: no Lhotse equivalent; leave "
                f"{'it' if len(unmatched) == 1 else 'them'} at the default to compare"
            )
    report: dict[str, Any] = {"config": config.to_dict(), "epochs": epochs}
    with opened_source(chosen, progress=not quiet, check_sources=not no_check_sources) as index:
        report["cuts"] = len(index)
        layout = SourceLayout.of(index)
        if isinstance(index, MultiIndex):
            manifests = []
        else:
            manifests = [Path(s["path"]) for s in index.header.sources]
        click.echo(
            f"{len(index):,} cuts, {float(np.sum(index.duration)) / 3600:.1f} h; "
            f"strategy={config.strategy}, rank {rank} of {world}, {epochs} epoch(s)"
        )
        columns = index.columns
        plan_epoch(columns, config, 0, world, sources=layout)  # warm-up: first touch of pages
        times = []
        plan = None
        for e in range(epochs):
            start = time.perf_counter()
            plan = plan_epoch(columns, config, e, world, sources=layout)
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

            packed = config.packing[0] is not None

            def resolved_epoch(e: int) -> tuple[int, int]:
                sampler.set_epoch(e)
                b = c = 0
                for cuts in loader:
                    b += 1  # a batch of packs counts its packs' member cuts
                    c += sum(len(pack_members(p)) for p in cuts) if packed else len(cuts)
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
    """The process's peak RSS (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
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
        fail(f"--compare lhotse reads the index's source manifests, which are gone: {missing}")
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
