"""What the ``discoseq`` commands share: exit codes and the error exit, the SOURCE argument and
the output options, config loading, and the opened source.

Heavy imports (the index, the config) happen inside the functions, so ``discoseq --help``
stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError

if TYPE_CHECKING:
    from discoseq.config import SamplerConfig
    from discoseq.index import CutIndex

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

source_argument = click.argument("source", type=click.Path(path_type=Path))
"""SOURCE: an index directory or a Lhotse cut manifest (see :func:`opened_source`)."""


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


# -- configuration ----------------------------------------------------------------------------


def load_config_file(path: Path) -> dict[str, Any]:
    """A SamplerConfig dict from a JSON file (exit 3 when unreadable or invalid)."""
    from discoseq.config import SamplerConfig

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"no config file at {path}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{path}: not a JSON document ({e})")
    try:
        SamplerConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        fail(f"{path}: not a valid SamplerConfig: {e}")
    return dict(data)


def make_config(data: dict[str, Any]) -> SamplerConfig:
    """A SamplerConfig from ``data``; an invalid combination of options is a usage error."""
    from discoseq.config import SamplerConfig

    try:
        return SamplerConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        raise click.UsageError(f"invalid configuration: {e}") from None


# -- the source -------------------------------------------------------------------------------


@contextmanager
def opened_source(source: Path, progress: bool = True) -> Iterator[CutIndex]:
    """The CutIndex of SOURCE: an index directory, opened, or a manifest, indexed into a
    temporary directory removed on exit (exit 3 when SOURCE is missing or invalid)."""
    from discoseq.index import open_source

    if not (source.is_dir() or source.is_file()):
        fail(f"no index directory or manifest at {source}")
    try:
        opened = open_source(source, progress=progress)
    except (IndexFormatError, StaleIndexError, ManifestError, FileNotFoundError) as e:
        fail(str(e))
    with opened:
        yield opened.index
