"""What the ``discoseq`` commands share: the output-path check, the opened source and its
temporary directory, exit codes."""

import json
import tempfile
from pathlib import Path

import pytest

from discoseq.cli.common import EXIT_BAD_INPUT, EXIT_USAGE, opened_source
from tests.cli.runner import run


def test_unwritable_output_is_a_usage_error(corpus, tmp_path):
    _, index = corpus
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"max_duration": 60}))
    for args in (
        ["analyze", index.path, "--max-duration", 10, "-o", tmp_path / "no" / "s.json"],
        ["analyze", index.path, "--max-duration", 10, "--plot", tmp_path / "no" / "s.png"],
        ["analyze", index.path, "--max-duration", 10, "-o", tmp_path],
        ["benchmark", index.path, cfg, "--no-resolve", "-o", tmp_path / "no" / "b.json"],
    ):
        r = run(*args)  # refused before planning, not a traceback (exit 1) after it
        assert r.exit_code == EXIT_USAGE, r.output
        assert "cannot write" in r.output or "is a directory" in r.output


def test_opened_source_removes_its_temporary_index(corpus, tmp_path, monkeypatch) -> None:
    manifest, index = corpus
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with opened_source(manifest, progress=False) as from_manifest:
        assert len(from_manifest) == len(index)
        assert from_manifest.path.is_relative_to(tmp_path)
    assert list(tmp_path.iterdir()) == [], "the temporary index is removed on exit"
    with opened_source(index.path) as from_index:
        assert from_index.path == index.path
    assert index.path.is_dir()


def test_opened_source_bad_input_exits_3(tmp_path: Path, monkeypatch) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    for source in (tmp_path / "missing", Path("/dev/null")):
        with pytest.raises(SystemExit) as exit_info, opened_source(source):
            pass
        assert exit_info.value.code == EXIT_BAD_INPUT
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(SystemExit) as exit_info, opened_source(bad, progress=False):
        pass
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert list(temporary.iterdir()) == [], "a failed build leaves no temporary directory"
