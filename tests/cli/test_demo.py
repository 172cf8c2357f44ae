"""``discoseq demo`` (README's first command) runs end to end on a small generated corpus: index,
plan for a simulated multi-rank job, iterate a rank through DataLoader workers, resume."""

import json
import pathlib

from click.testing import CliRunner

from discoseq.cli.main import main


def test_demo_runs(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--cuts", "3000"])
    assert result.exit_code == 0, result.output
    assert "38 cuts" in result.output
    assert "3,000 cuts" in result.output
    assert "verify: ok" in result.output
    assert (tmp_path / "corpus.idx" / "header.json").is_file()
    # section 3: the simulated 4-rank job, 2 workers, resume and elastic resume
    assert "simulated 4-rank job" in result.output
    assert "equal on every rank" in result.output
    assert "before + after == uninterrupted, batch by batch: yes" in result.output
    assert "none seen before: yes" in result.output
    state = json.loads((tmp_path / "sampler_state.json").read_text())
    assert state["epoch"] == 0 and state["batches_delivered"] > 0


def test_demo_other_world(tmp_path):
    args = ["demo", "--workdir", str(tmp_path), "--cuts", "800", "--world-size", "2"]
    result = CliRunner().invoke(main, [*args, "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert "simulated 2-rank job" in result.output
    assert "batch by batch: yes" in result.output
    assert f"MB in {tmp_path.resolve()}; remove them with: rm -r {tmp_path}" in result.output


def test_demo_clean_up_removes_its_files(tmp_path):
    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--cuts", "300", "--world-size", "2"]
    result = CliRunner().invoke(main, [*args, "--num-workers", "0", "--clean-up"])
    assert result.exit_code == 0, result.output
    assert f"== done. Removed {workdir} (" in result.output
    assert not workdir.exists()


def test_demo_workdir_is_git_ignored():
    ignored = (pathlib.Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()
    assert "discoseq-demo/" in ignored and "discoseq-ddp-example/" in ignored
