"""The Lhotse fixtures the tests read live inside the repository, with their attribution."""

from pathlib import Path

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]


def test_fixtures_are_inside_the_repository(fixtures_dir: Path) -> None:
    assert fixtures_dir == FIXTURES
    assert fixtures_dir.is_relative_to(ROOT)
    assert any(fixtures_dir.glob("*.json"))


def test_every_fixture_is_attributed(fixtures_dir: Path) -> None:
    readme = (fixtures_dir / "README.md").read_text()
    assert "Apache License" in (fixtures_dir / "LICENSE").read_text()
    assert "Lhotse" in (fixtures_dir / "NOTICE").read_text()
    manifests = {p.name for p in fixtures_dir.iterdir()} - {"README.md", "LICENSE", "NOTICE"}
    assert manifests
    for name in manifests:
        assert f"| `{name}` | `test/fixtures/" in readme, name
