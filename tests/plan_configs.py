"""How the tests turn engine options into the configuration ``plan_epoch`` and the reference take."""

from __future__ import annotations

from typing import Any

from discoseq.config import SamplerConfig
from discoseq.plan import PlanConfig


def make_config(kw: dict[str, Any]) -> Any:
    """The configuration of ``plan_epoch`` from a dict of engine options."""
    return PlanConfig(**kw)


def engine_config(config: SamplerConfig) -> Any:
    """What ``plan_epoch`` and ``tests.reference_plan.reference_plan`` take for ``config``."""
    return config.to_plan_config()
