"""``discoseq-index``: build, inspect and verify cut indexes, and add token columns to them.

Exit codes: 0 success; 1 verification found problems; 2 usage error; 3 bad input (manifest
error, existing output, stale or corrupted index).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from discoseq._version import __version__
from discoseq.cli.common import EXIT_BAD_INPUT, EXIT_USAGE, fail, index_error_message, quiet_option
from discoseq.errors import IndexFormatError, IndexWriteError, ManifestError
from discoseq.index import CutIndex
from discoseq.index.builder import WorkerDiedError

__all__ = ["EXIT_BAD_INPUT", "EXIT_PROBLEMS", "main"]

EXIT_PROBLEMS = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="discoseq-index")
def main() -> None:
    """Build, inspect and verify discoseq cut indexes (memory-mapped columns of Lhotse cuts)."""


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Index directory to create (written to a temporary sibling, renamed when complete).",
)
@click.option("--force", is_flag=True, help="Replace an existing index at OUTPUT.")
@click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="'raise' stops at the first bad record (naming file and line); 'skip' skips bad "
    "records and reports how many. Duplicate ids and empty manifests are errors either way.",
)
@click.option(
    "--store-records",
    is_flag=True,
    help="Copy .jsonl records into the index instead of reading them in place, so the index "
    "survives moving or deleting the manifests (compressed and .json inputs are always copied).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Index the input files in this many processes (each a run of consecutive files of "
    "about equal size); the index is byte-identical to --jobs 1. Helps from two input files on.",
)
@quiet_option("No progress bar.")
def build(
    manifests: tuple[Path, ...],
    out: Path,
    force: bool,
    on_error: str,
    store_records: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Compile Lhotse cut MANIFESTS (.jsonl, .jsonl.gz, .json; rows in the order given) into an
    index directory. A Lhotse Shar directory (cuts.NNNNNN.jsonl.gz + field .tar/.jsonl.gz
    shards) given alone is indexed by its tar headers; its fields are read at resolution."""
    from discoseq.index import build_index

    try:
        index = build_index(
            list(manifests),
            out,
            force=force,
            on_error=on_error,
            store_records=store_records,
            progress=not quiet,
            jobs=jobs,
        )
    except (ManifestError, FileExistsError, FileNotFoundError, IndexWriteError) as e:
        fail(str(e))
    except WorkerDiedError as e:  # killed (out of memory): not bad input
        fail(str(e), EXIT_PROBLEMS)
    build_info = index.header.build
    shar = index.header.raw.get("shar")
    if shar is not None:
        names = ", ".join(f["name"] for f in shar["fields"]) or "none"
        click.echo(
            f"indexed {len(index)} cuts from {len(index.header.sources)} Lhotse Shar shard(s) "
            f"(fields: {names}) into {out}"
        )
    else:
        click.echo(f"indexed {len(index)} cuts from {len(manifests)} manifest(s) into {out}")
    if build_info.get("skipped"):
        click.echo(f"skipped {build_info['skipped']} bad record(s); first ones:")
        for message in build_info.get("skipped_examples", [])[:5]:
            click.echo(f"  {message}")


def _open(path: Path, check_sources: bool = True) -> CutIndex:
    """Open an index; a corrupted, unsupported or stale one (StaleIndexError is an
    IndexFormatError) is bad input, exit 3."""
    try:
        return CutIndex.open(path, check_sources=check_sources)
    except IndexFormatError as e:
        fail(index_error_message(e))


def _summary(name: str, values: np.ndarray) -> str:
    v = np.asarray(values)
    present = v[v >= 0] if v.dtype.kind in "iu" else v
    missing = int(v.size - present.size)
    if present.size == 0:
        return f"  {name:<17} all missing ({missing})"
    text = (
        f"  {name:<17} min {present.min():>10.4g}  mean {present.mean():>10.4g}  "
        f"max {present.max():>10.4g}  sum {present.sum():>12.6g}"
    )
    return text + (f"  missing {missing}" if missing else "")


def _build_lines(b: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The build options of a header, one readable line (and the first skipped records); where
    plain ``.jsonl`` records are, whether ``--store-records`` copied them (the option changes
    nothing for other inputs, whose records are always stored)."""
    line = (
        f"build        --on-error {b.get('on_error', '?')}: {b.get('skipped', 0)} bad records "
        "skipped"
    )
    if any(s.get("format") == "jsonl" for s in sources):
        if b.get("store_records"):
            line += "; .jsonl records copied into the index (--store-records)"
        else:
            line += "; .jsonl records read in place (no --store-records)"
    lines = [line]
    lines += [f"             skipped: {m}" for m in b.get("skipped_examples", [])[:5]]
    return lines


@main.command()
@click.argument("index_path", type=click.Path(path_type=Path))
@click.option("--no-check-sources", is_flag=True, help="Do not check that sources are unchanged.")
def info(index_path: Path, no_check_sources: bool) -> None:
    """Print the header and a summary of every column of an index."""
    from discoseq.index.format import CUT_TYPES, VALUE_COLUMNS

    index = _open(index_path, check_sources=not no_check_sources)
    h = index.header
    click.echo(f"index        {index.path}")
    click.echo(
        f"format       {h.raw['magic']} v{h.raw['format_version']} "
        f"(built by discoseq {h.discoseq_version} at {h.created})"
    )
    click.echo(f"rows         {len(index)}")
    click.echo(f"fingerprint  {index.fingerprint}")
    for line in _build_lines(h.build, h.sources):
        click.echo(line)
    click.echo(
        f"records      {h.records['file']}: {h.records['size']} bytes (codec {h.records['codec']})"
    )
    click.echo("sources")
    for i, s in enumerate(h.sources):
        click.echo(
            f"  [{i}] {s['path']} ({s['format']}, records {s['records']}, "
            f"{s['rows']} cuts, {s['size']} bytes, {s['fingerprint']})"
        )
    for field in h.raw.get("shar", {}).get("fields", []):  # a Lhotse Shar corpus's fields
        files = field["files"]
        held = ""
        if field["kind"] == "tar":  # a jsonl field has a line for every cut
            n = int(np.count_nonzero(index.column(f"shar_{field['name']}_offset") >= 0))
            held = f"; {n} of {len(index)} cuts have data"
        click.echo(
            f"shar field   {field['name']} ({field['kind']}, {len(files)} files, "
            f"{sum(f['size'] for f in files)} bytes{held})"
        )
    click.echo("columns")
    for name in VALUE_COLUMNS:
        click.echo(_summary(name, index.column(name)))
    counts = np.bincount(np.asarray(index.column("cut_type")), minlength=len(CUT_TYPES))
    types = ", ".join(f"{t} {int(c)}" for t, c in zip(CUT_TYPES, counts, strict=False) if c)
    click.echo(f"  cut_type          {types}")
    click.echo(f"  total duration    {float(np.sum(index.duration)) / 3600:.3f} h")
    if h.extra_columns:
        from discoseq.index.columns import describe

        click.echo("added columns (add-column)")
        for name, meta in h.extra_columns.items():
            click.echo(_summary(name, index.column(name)))
            click.echo(f"  {'':<17} {describe(meta)}")


@main.command()
@click.argument("index_path", type=click.Path(path_type=Path))
@click.option(
    "--recount",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Count this many rows (evenly spread) of every added token column again with its "
    "tokenizer (0: check their values and the tokenizer files' fingerprints only).",
)
def verify(index_path: Path, recount: int) -> None:
    """Recheck an index: source fingerprints, every column's invariants, and every cut's
    columns recomputed from its record. Exit code 1 when a problem is found."""
    from discoseq.index import verify_index

    _open(index_path, check_sources=False)
    if recount:
        _import_from_cwd()
    report = verify_index(index_path, recount=recount)
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.ok:
        click.echo(f"ok: {report.rows} rows verified in {index_path}")
        return
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    click.echo(f"FAILED: {len(report.problems)} problem(s) in {index_path}", err=True)
    sys.exit(EXIT_PROBLEMS)


def _import_from_cwd() -> None:
    """A ``module:function`` tokenizer is imported from the current directory too, as
    ``python -m`` would (a console script's own ``sys.path`` does not hold it)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


@main.command("add-column")
@click.argument("index_path", type=click.Path(path_type=Path))
@click.option(
    "--name",
    required=True,
    help="The column's name (an identifier, not a built-in column's); SamplerConfig("
    "token_column=NAME) selects it.",
)
@click.option(
    "--tokenizer",
    "spec",
    required=True,
    help="A SentencePiece model (*.model), a Hugging Face tokenizers file (*.json), or "
    "module:function (a callable text -> int or text -> list, importable from the current "
    "directory or PYTHONPATH).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes that count (each loads the tokenizer once); the column is the same for any.",
)
@click.option("--force", is_flag=True, help="Replace an added column of that name.")
@quiet_option("No progress bar.")
def add_column(index_path: Path, name: str, spec: str, jobs: int, force: bool, quiet: bool) -> None:
    """Add a column NAME of token counts (-1: no text) of each cut's supervision texts, joined
    as Lhotse joins them, to a built index, without rebuilding it (atomically: an interrupted
    run leaves the index as it was)."""
    from discoseq.index.columns import TokenizerError, add_column, check_column_name

    try:
        check_column_name(name)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    _open(index_path)
    _import_from_cwd()
    try:
        index = add_column(index_path, name, spec, jobs=jobs, force=force, progress=not quiet)
    except IndexFormatError as e:
        fail(index_error_message(e))
    except (TokenizerError, FileExistsError, OSError) as e:
        fail(str(e))
    except WorkerDiedError as e:  # killed (out of memory): not bad input
        fail(str(e), EXIT_PROBLEMS)
    col = np.asarray(index.column(name))
    text = col[col >= 0]
    used = index.header.extra_columns[name]["tokenizer"]
    click.echo(
        f"added column {name} to {index_path}: {len(col)} cuts, {int(text.sum())} tokens, "
        f"{len(col) - len(text)} without text (tokenizer {used})"
    )


if __name__ == "__main__":
    main()
