"""README's test command is exactly what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in ci if line.startswith("python3 -m venv")]
    assert len(commands) == 1
    assert f"```bash\n{commands[0]}\n```" in readme
    assert commands[0].endswith("python -m pytest")
