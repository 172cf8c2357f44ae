"""``discoseq demo`` (README's first command) runs end to end on a small generated corpus."""

from click.testing import CliRunner

from discoseq.cli.main import main


def test_demo_runs(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--cuts", "3000"])
    assert result.exit_code == 0, result.output
    assert "38 cuts" in result.output
    assert "3,000 cuts" in result.output
    assert "verify: ok" in result.output
    assert (tmp_path / "corpus.idx" / "header.json").is_file()
