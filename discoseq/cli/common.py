"""What the ``discoseq`` commands share: exit codes and the error exit, the SOURCE argument and
the output options, config loading, and the opened source.

Heavy imports (the index, the config) happen inside the functions, so ``discoseq --help``
stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError

if TYPE_CHECKING:
    from discoseq.config import SamplerConfig
    from discoseq.index.multi import AnyIndex

EXIT_USAGE = 2
"""Usage error: an unknown option, a bad option value, an invalid combination of options."""
EXIT_BAD_INPUT = 3
"""Bad input: SOURCE or the config file missing, unreadable or invalid."""

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# -- arguments and options --------------------------------------------------------------------

source_argument = click.argument("source", type=click.Path(path_type=Path), required=False)
"""SOURCE: an index directory or a Lhotse cut manifest (see :func:`opened_source`); absent
when the config file names a mixture's ``sources``."""


def check_output_path(
    ctx: click.Context, param: click.Parameter, value: Path | None
) -> Path | None:
    """An output file option: its directory must exist and be writable (checked before the
    work, so a bad path is a usage error, not a traceback at the end)."""
    if value is None:
        return None
    parent = value.parent
    if value.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        why = "is a directory" if value.is_dir() else f"cannot write in {str(parent)!r}"
        raise click.BadParameter(f"{str(value)!r}: {why}")
    return value


def output_option(*names: str, help: str) -> Callable[[F], F]:
    """An output file option (``--output``/``-o`` unless ``names`` are given), checked by
    :func:`check_output_path`."""
    return click.option(
        *(names or ("--output", "-o")),
        type=click.Path(path_type=Path),
        callback=check_output_path,
        help=help,
    )


def quiet_option(help: str) -> Callable[[F], F]:
    """``--quiet``/``-q``."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


def floats(text: str | None) -> list[float] | None:
    """A comma-separated list of numbers (a usage error if it is not one)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def ints(text: str | None) -> list[int] | None:
    """A comma-separated list of integers (a usage error if it is not one)."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None


check_sources_option = click.option(
    "--no-check-sources",
    "no_check_sources",
    is_flag=True,
    help="Use an index directory even if its source manifests changed since the build (the "
    "columns are what was indexed; records read in place from a changed source may fail).",
)
"""``--no-check-sources``: the command-line spelling of ``CutIndex.open(check_sources=False)``."""


# -- the SamplerConfig options (analyze and benchmark) ---------------------------------------

_CONFIG_OPTIONS = (
    click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        help="A SamplerConfig JSON file to start from; the options below override its fields.",
    ),
    click.option(
        "--strategy",
        type=click.Choice(["bucketed", "random", "sequential"]),
        help="How cuts are ordered: bucketed (default), random or sequential (source order).",
    ),
    click.option(
        "--max-duration",
        type=float,
        help="Batch cap in seconds: number of cuts x the longest cut (Lhotse's meaning).",
    ),
    click.option("--max-cuts", type=int, help="Maximum number of cuts in a batch."),
    click.option("--max-frames", type=int, help="Batch cap in feature frames (cuts x longest)."),
    click.option(
        "--world-size",
        type=click.IntRange(min=1),
        help="Number of ranks of the simulated job (default: the config's, else 1).",
    ),
    click.option(
        "--num-buckets",
        type=click.IntRange(min=1),
        help="Buckets of the bucketed strategy (10).",
    ),
    click.option(
        "--bucket-method",
        type=click.Choice(["duration", "num_frames", "num_features"]),
        help="The bucketing key of the bucketed strategy (default duration).",
    ),
    click.option(
        "--bucket-edges",
        help="Explicit interior bucket edges, comma-separated and increasing (e.g. 5,10,15).",
    ),
    click.option(
        "--num-token-buckets",
        type=click.IntRange(min=1),
        help="> 1: 2D bucketing, each bucket split into this many num_tokens sub-buckets.",
    ),
    click.option(
        "--bucket-max-duration",
        help="Per-bucket duration caps, comma-separated, one per (flat) bucket.",
    ),
    click.option(
        "--bucket-max-cuts",
        help="Per-bucket cut caps, comma-separated, one per (flat) bucket.",
    ),
    click.option(
        "--quadratic-duration",
        type=float,
        help="q: a cut of d seconds costs d + d^2/q against --max-duration (e.g. 30).",
    ),
    click.option(
        "--limit-mode",
        type=click.Choice(["padded", "sum"]),
        help="padded: cuts x longest (default); sum: total duration (concatenating pipelines).",
    ),
    click.option(
        "--shuffle/--no-shuffle",
        default=None,
        help="Bucketed: shuffle within buckets and the batch order (default: on, as the config).",
    ),
    click.option("--drop-last", is_flag=True, default=None, help="Drop the last partial step."),
    click.option(
        "--oversize",
        type=click.Choice(["single", "exclude"]),
        help="A cut larger than a cap alone: a batch of its own (single, default) or left out.",
    ),
    click.option(
        "--sort-pool",
        type=click.IntRange(min=2),
        help="Sort each run of this many cuts of a bucket by duration before packing (off).",
    ),
    click.option("--min-duration", type=float, help="Leave out cuts shorter than this (s)."),
    click.option("--max-duration-per-cut", type=float, help="Leave out cuts longer than this (s)."),
    click.option(
        "--max-tokens-per-second",
        type=float,
        help="Leave out cuts with more text tokens (--token-column) per second than this.",
    ),
    click.option(
        "--max-tokens",
        type=click.IntRange(min=1),
        help="Batch cap in tokens: text tokens plus audio tokens (cuts x largest, or the sum).",
    ),
    click.option(
        "--quadratic-tokens",
        type=float,
        help="Token cost of a cut t + t^2/Q against --max-tokens (attention's quadratic cost).",
    ),
    click.option(
        "--pack-duration",
        type=float,
        help="Pack cuts into rows of at most this many seconds (padding-free batches of packs).",
    ),
    click.option(
        "--pack-tokens",
        type=click.IntRange(min=1),
        help="Pack cuts into rows of at most this many tokens (text + audio tokens).",
    ),
    click.option(
        "--audio-tokens-per-second",
        type=float,
        help="Audio tokens per second of audio added to each cut's token cost (e.g. 12.5).",
    ),
    click.option(
        "--token-column",
        help="The index column of text tokens (default num_tokens: characters).",
    ),
    click.option("--seed", type=click.IntRange(min=0), help="Random seed (default 42)."),
    click.option(
        "--shard-block",
        type=click.IntRange(min=1),
        help="Batches within blocks of this many consecutive sources (shards), visited one "
        "block at a time: fewer files per worker (off); analyze reports its padding cost.",
    ),
)
_LIST_OPTIONS = {"bucket_edges": floats, "bucket_max_duration": floats, "bucket_max_cuts": ints}
CONFIG_OPTION_NAMES = (
    "config_file",
    "strategy",
    "max_duration",
    "max_cuts",
    "max_frames",
    "world_size",
    "num_buckets",
    "bucket_method",
    "bucket_edges",
    "num_token_buckets",
    "bucket_max_duration",
    "bucket_max_cuts",
    "quadratic_duration",
    "limit_mode",
    "shuffle",
    "drop_last",
    "oversize",
    "sort_pool",
    "min_duration",
    "max_duration_per_cut",
    "max_tokens_per_second",
    "max_tokens",
    "quadratic_tokens",
    "pack_duration",
    "pack_tokens",
    "audio_tokens_per_second",
    "token_column",
    "seed",
    "shard_block",
)
"""The keyword arguments :func:`config_options` adds to a command (what
:func:`config_data` takes)."""


def config_options(f: F) -> F:
    """Add ``--config FILE`` and one option per SamplerConfig field a command line sets; the
    command receives them as :data:`CONFIG_OPTION_NAMES` and passes them to :func:`config_data`.
    ``discoseq analyze`` and ``discoseq benchmark`` both take them."""
    for option in reversed(_CONFIG_OPTIONS):
        f = option(f)
    return f


def config_data(options: dict[str, Any], config_file: Path | None = None) -> dict[str, Any]:
    """The SamplerConfig dict of the :func:`config_options` in ``options`` (removed from it):
    the ``--config`` file (or ``config_file``), then every option given. ``--world-size`` also
    drops the file's ``rank``."""
    values = {name: options.pop(name) for name in CONFIG_OPTION_NAMES}
    path = values.pop("config_file")
    if path is not None and config_file is not None:
        raise click.UsageError(
            f"give the config once: CONFIG.json {config_file} or --config {path}, not both"
        )
    path = path if path is not None else config_file
    data = load_config_file(path) if path is not None else {}
    for name, value in values.items():
        if value is None:
            continue
        data[name] = _LIST_OPTIONS[name](value) if name in _LIST_OPTIONS else value
        if name == "world_size":
            data.pop("rank", None)
    return data


# -- configuration ----------------------------------------------------------------------------


def load_config_file(path: Path) -> dict[str, Any]:
    """A SamplerConfig dict from a JSON file (exit 3 when unreadable or invalid)."""
    from discoseq.config import SamplerConfig

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"no config file at {path}")
    except IsADirectoryError:
        fail(f"{path}: a directory, not a config file (the config is a SamplerConfig JSON file)")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{path}: not a JSON document ({e})")
    if not isinstance(data, dict):
        fail(f"{path}: not a valid SamplerConfig: a JSON object is needed")
    data = dict(data)
    sources = data.pop(SOURCES_KEY, None)
    try:
        SamplerConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        fail(f"{path}: not a valid SamplerConfig: {e}")
    if sources is not None:
        if (
            not isinstance(sources, dict)
            or not sources
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items())
        ):
            fail(f"{path}: {SOURCES_KEY!r} must map source names to paths")
        # relative paths are relative to the config file
        data[SOURCES_KEY] = {k: path.parent / v for k, v in sources.items()}
    return data


SOURCES_KEY = "sources"
"""The config-file key (not a SamplerConfig field) that names a mixture's sources:
``{"sources": {"libri": "libri.idx", "cv": "cv.jsonl.gz"}, "mixture": {...}, ...}``."""


def make_config(data: dict[str, Any]) -> SamplerConfig:
    """A SamplerConfig from ``data`` (without its ``sources``); an invalid combination of
    options is a usage error."""
    from discoseq.config import SamplerConfig

    data = {k: v for k, v in data.items() if k != SOURCES_KEY}
    try:
        return SamplerConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        raise click.UsageError(f"invalid configuration: {e}") from None


# -- the source -------------------------------------------------------------------------------


def index_error_message(error: IndexFormatError) -> str:
    """The message of an index that cannot be opened, for the command line: a stale index
    names the ``--no-check-sources`` flag instead of Python's ``check_sources=False``."""
    if isinstance(error, StaleIndexError) and error.problem is not None:
        return (
            f"index {error.path} is stale: {error.problem}. Rebuild it with "
            f"`discoseq-index build ... -o {error.path} --force`, or pass --no-check-sources "
            "to use it as it is"
        )
    return str(error)


def chosen_source(source: Path | None, data: dict[str, Any]) -> Path | dict[str, Path]:
    """SOURCE, or the mixture's sources named by the config file (one of them, not both)."""
    named = data.get(SOURCES_KEY)
    if source is not None and named is not None:
        raise click.UsageError("give SOURCE or a config file that names its sources, not both")
    if source is None and named is None:
        raise click.UsageError(
            "missing SOURCE (an index directory or a manifest), or a --config file with "
            f"{SOURCES_KEY!r} naming a mixture's sources"
        )
    if source is not None:
        return source
    assert isinstance(named, dict)  # load_config_file checked it
    return named


@contextmanager
def opened_source(
    source: Path | Mapping[str, Path], progress: bool = True, check_sources: bool = True
) -> Iterator[AnyIndex]:
    """The index of SOURCE: an index directory, opened (its sources checked unless
    ``check_sources`` is False), or a manifest, indexed into a temporary directory removed on
    exit; a mapping of name -> such paths is a mixture (a named MultiIndex). Exit 3 when a
    source is missing or invalid."""
    from discoseq.index import open_source
    from discoseq.index.multi import MultiIndex

    paths = dict(source) if isinstance(source, Mapping) else {"": source}
    with ExitStack() as stack:
        indexes = []
        for name, path in paths.items():
            if not (path.is_dir() or path.is_file()):
                if isinstance(source, Mapping):  # named in a config file's "sources"
                    fail(
                        f"mixture source {name!r}: no index directory or manifest at {path} "
                        f"(a relative path in the config file's {SOURCES_KEY!r} is taken from "
                        "the config file's directory)"
                    )
                fail(f"no index directory or manifest at {path}")
            try:
                opened = open_source(path, progress=progress, check_sources=check_sources)
            except IndexFormatError as e:  # corrupted, unsupported or stale
                fail(index_error_message(e))
            except (ManifestError, FileNotFoundError) as e:
                fail(str(e))
            indexes.append(stack.enter_context(opened).index)
        if isinstance(source, Mapping):
            yield MultiIndex(indexes, list(paths))
        else:
            yield indexes[0]
