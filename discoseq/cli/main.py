"""``discoseq``: the main command (one module per subcommand; this one only groups them).

* ``discoseq analyze SOURCE [options] [--output stats.json] [--plot stats.png]``: plan one epoch
  and report its statistics (:mod:`discoseq.cli.analyze`).
* ``discoseq benchmark SOURCE config.json [--epochs 3] [--compare lhotse]``: plan time, batches/s
  and cuts/s with and without resolution to CutSets, peak memory, and Lhotse's matching sampler
  on the same data in the same run (:mod:`discoseq.cli.benchmark`).
* ``discoseq demo``: the main job end to end on data it makes (:mod:`discoseq.cli.demo`).

SOURCE is an index directory (``discoseq-index build``) or a Lhotse cut manifest (``.jsonl``,
``.jsonl.gz``, ``.json``), indexed into a temporary directory for the run.

Exit codes (a script can rely on them; :mod:`discoseq.cli.common` defines them):

* 0: success.
* 2: usage error: an unknown option, a bad option value, or options that make an invalid
  configuration (the message names the field), e.g. ``--num-buckets`` with ``--strategy random``.
* 3: bad input: SOURCE or the config file is missing, unreadable or invalid (a malformed
  manifest, a corrupted or stale index, a config JSON that is not a valid SamplerConfig), or
  the plot was asked for without matplotlib installed.
"""

from __future__ import annotations

import click

from discoseq._version import __version__
from discoseq.cli.analyze import analyze
from discoseq.cli.benchmark import benchmark
from discoseq.cli.common import EXIT_BAD_INPUT, EXIT_USAGE
from discoseq.cli.demo import demo

__all__ = ["EXIT_BAD_INPUT", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="discoseq")
def main() -> None:
    """discoseq: deterministic, index-backed batch sampling for Lhotse speech corpora.

    Exit codes: 0 ok, 2 usage error, 3 bad input (see each command's --help).
    """


main.add_command(analyze)
main.add_command(benchmark)
main.add_command(demo)


if __name__ == "__main__":
    main()
