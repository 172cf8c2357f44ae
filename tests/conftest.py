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

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lhotse"
if not FIXTURES.is_dir():  # CI lays shared/ beside the clone; allow an override.
    FIXTURES = Path(os.environ.get("DISCOSEQ_FIXTURES", FIXTURES))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"Lhotse fixtures not found at {FIXTURES}; set DISCOSEQ_FIXTURES")
    return FIXTURES
