"""The process that ``test_fuzz.py`` runs the compiled paths in: it reads index directories,
one per line on stdin, and for each runs open, info, verify, row_of, resolve and plan, printing
one JSON line of outcomes. A crash of the compiled core ends this process by a signal, which the
test sees; every other outcome is an exception type (or an exit code) the test checks."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from discoseq import SamplerConfig
from discoseq.cli.index_cli import main as index_cli
from discoseq.index import CutIndex, verify_index
from discoseq.plan import plan_epoch


def outcome(fn: Any) -> str:
    try:
        fn()
    except Exception as e:  # the test decides which are acceptable
        return f"{type(e).__name__}: {str(e)[:300]}"
    return "ok"


def check(path: Path, ids: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    runner = CliRunner()
    for command in ("info", "verify"):
        r = runner.invoke(index_cli, [command, str(path)])
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            result[command] = f"{type(r.exception).__name__}: {r.exception}"[:300]
        else:
            result[command] = f"exit {r.exit_code}"
    result["verify_index"] = outcome(lambda: verify_index(path))
    try:
        index = CutIndex.open(path, check_sources=False)
    except Exception as e:
        result["open"] = f"{type(e).__name__}: {str(e)[:300]}"
        return result
    result["open"] = "ok"
    n = len(index)
    for name, cut_id in (("row_of", ids[len(ids) // 2]), ("row_of_absent", "no-such-cut")):
        result[name] = outcome(lambda cut_id=cut_id: cut_id in index and index.row_of(cut_id))
    result["cut_ids"] = outcome(lambda: index.cut_ids(range(n)))
    result["resolve"] = outcome(lambda: index.resolve(range(n)))
    result["records_in_file_order"] = outcome(lambda: index.records_in_file_order(range(n)))
    config = SamplerConfig(max_duration=60.0, num_buckets=2, seed=1)
    result["plan"] = outcome(lambda: plan_epoch(index.columns, config, 0, 2))
    return result


def main() -> None:
    warnings.simplefilter("ignore")
    ids = json.loads(sys.stdin.readline())
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(check(Path(line.strip()), ids)), flush=True)


if __name__ == "__main__":
    main()
