"""Shared test setup: hypothesis profiles, and a hard check that the compiled core is in use."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Lhotse's own test fixtures (Apache-2.0), inside the repository: tests/data/lhotse/README.md.
FIXTURES = Path(__file__).resolve().parent / "data" / "lhotse"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The directory of Lhotse's test manifests, inside the repository (never beside it)."""
    return FIXTURES
