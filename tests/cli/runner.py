"""Run ``discoseq`` in-process as a script would (arguments as strings)."""

from __future__ import annotations

from click.testing import CliRunner, Result

from discoseq.cli.main import main


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])
