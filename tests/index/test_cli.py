"""``discoseq-index build|info|verify`` as a script sees them: output and exit codes."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from discoseq.cli.index_cli import EXIT_BAD_INPUT, main
from discoseq.cli.main import main as discoseq_main


def test_build_info_verify(tmp_path, fixtures_dir):
    runner = CliRunner()
    out = tmp_path / "idx"
    inputs = [str(fixtures_dir / "ljspeech_cuts.json"), str(fixtures_dir / "libri_cuts.json")]
    result = runner.invoke(main, ["build", *inputs, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "indexed 3 cuts from 2 manifest(s)" in result.output
    result = runner.invoke(main, ["build", *inputs, "-o", str(out), "--quiet"])
    assert result.exit_code == 3 and "already exists" in result.output
    result = runner.invoke(main, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows         3" in result.output and "duration" in result.output
    assert "MonoCut 3" in result.output
    result = runner.invoke(main, ["verify", str(out)])
    assert result.exit_code == 0 and "ok: 3 rows verified" in result.output


def test_bad_input_exit_codes(tmp_path, fixtures_dir):
    runner = CliRunner()
    result = runner.invoke(
        main, ["build", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "i")]
    )
    assert result.exit_code == 3 and "no such file" in result.output
    rec = fixtures_dir / "mini_librispeech_lhotse_recordings.jsonl.gz"
    result = runner.invoke(main, ["build", str(rec), "-o", str(tmp_path / "i"), "--quiet"])
    assert result.exit_code == 3 and "recording manifest" in result.output
    result = runner.invoke(main, ["info", str(tmp_path / "nothere")])
    assert result.exit_code == 3 and "not an index directory" in result.output
    result = runner.invoke(main, ["build", "-o", str(tmp_path / "i")])
    assert result.exit_code == 2


def test_verify_reports_problems_with_exit_1(tmp_path, fixtures_dir):
    runner = CliRunner()
    src = tmp_path / "a.jsonl"
    cuts = json.loads((fixtures_dir / "ljspeech_cuts.json").read_text())
    src.write_text("".join(json.dumps(c) + "\n" for c in cuts))
    out = tmp_path / "idx"
    assert runner.invoke(main, ["build", str(src), "-o", str(out), "--quiet"]).exit_code == 0
    st = src.stat()
    src.write_text(src.read_text().replace("LJ002", "LJ00X"))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = runner.invoke(main, ["verify", str(out)])
    assert result.exit_code == 1
    assert "content changed" in result.output


@pytest.fixture
def index_of_jsonl(tmp_path, fixtures_dir):
    """An index that reads its records in place from ``a.jsonl``; returns (source, index dir)."""
    src = tmp_path / "a.jsonl"
    cuts = json.loads((fixtures_dir / "ljspeech_cuts.json").read_text())
    src.write_text("".join(json.dumps(c) + "\n" for c in cuts))
    out = tmp_path / "idx"
    assert CliRunner().invoke(main, ["build", str(src), "-o", str(out), "--quiet"]).exit_code == 0
    return src, out


# README: "3 bad input (missing, malformed, corrupted or stale SOURCE ...)", for both commands.
COMMANDS = {
    "discoseq-index info": (main, ["info"]),
    "discoseq-index verify": (main, ["verify"]),
    "discoseq analyze": (discoseq_main, ["analyze", "--max-duration", "10"]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_stale_and_corrupted_index_exit_3(index_of_jsonl, command):
    src, out = index_of_jsonl
    cli, args = COMMANDS[command]
    runner = CliRunner()

    def run():
        name, *options = args
        return runner.invoke(cli, [name, str(out), *options])

    assert run().exit_code == 0
    src.write_text(src.read_text() + "\n")  # changed size: stale
    result = run()
    if command == "discoseq-index verify":  # verify checks sources by content: a problem, exit 1
        assert result.exit_code == 1 and "content changed" in result.output
    else:
        assert result.exit_code == EXIT_BAD_INPUT == 3, result.output
        assert "is stale" in result.output and "discoseq-index build" in result.output
    (out / "duration.npy").write_bytes((out / "duration.npy").read_bytes()[:-3])  # corrupted
    result = run()
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "truncated or corrupted" in result.output


def test_info_can_skip_the_source_check(index_of_jsonl):
    src, out = index_of_jsonl
    src.write_text(src.read_text() + "\n")
    assert CliRunner().invoke(main, ["info", str(out)]).exit_code == EXIT_BAD_INPUT
    result = CliRunner().invoke(main, ["info", str(out), "--no-check-sources"])
    assert result.exit_code == 0, result.output


def test_info_of_a_manifest_says_how_to_index_it(fixtures_dir):
    manifest = fixtures_dir / "libri_cuts.json"
    result = CliRunner().invoke(main, ["info", str(manifest)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "is a file, not an index directory" in result.output
    assert f"discoseq-index build {manifest} -o" in result.output
    assert "does not exist" not in result.output


def test_build_over_a_directory_that_is_not_an_index(tmp_path, fixtures_dir):
    """The first message is the right one: --force would not help, so it is not suggested."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    src = str(fixtures_dir / "libri_cuts.json")
    for force in ([], ["--force"]):
        result = CliRunner().invoke(main, ["build", src, "-o", str(precious), "-q", *force])
        assert result.exit_code == EXIT_BAD_INPUT
        assert "is not a discoseq index" in result.output
        assert "choose another output path" in result.output
        assert "pass force=True" not in result.output
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]


def test_info_prints_the_build_options_readably(index_of_jsonl):
    _, out = index_of_jsonl
    result = CliRunner().invoke(main, ["info", str(out)])
    assert result.exit_code == 0, result.output
    build = next(line for line in result.output.splitlines() if line.startswith("build"))
    assert build == (
        "build        --on-error raise: 0 bad records skipped; .jsonl records read in place "
        "(no --store-records)"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_stale_index_points_to_the_command_line_flag(index_of_jsonl, command):
    """The command line names its own --no-check-sources (which every one of them takes),
    not Python's check_sources=False; and the flag works."""
    src, out = index_of_jsonl
    cli, (name, *options) = COMMANDS[command]
    src.write_text(src.read_text() + "\n")
    result = CliRunner().invoke(cli, [name, str(out), *options])
    if command == "discoseq-index verify":  # checks content itself: no opt-out to offer
        assert "check_sources" not in result.output
        return
    assert result.exit_code == EXIT_BAD_INPUT
    assert "pass --no-check-sources to use it as it is" in result.output
    assert "check_sources=False" not in result.output
    result = CliRunner().invoke(cli, [name, str(out), *options, "--no-check-sources"])
    assert result.exit_code == 0, result.output
