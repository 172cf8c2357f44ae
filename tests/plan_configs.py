"""The configuration that ``plan_epoch`` and the reference twin take, as the tests build it."""

from __future__ import annotations

from typing import Any

from discoseq.config import SamplerConfig


def make_config(kw: dict[str, Any]) -> SamplerConfig:
    """The configuration of ``plan_epoch`` from a dict of engine options."""
    return SamplerConfig(**kw)


def engine_config(config: SamplerConfig) -> SamplerConfig:
    """What ``plan_epoch`` and ``tests.reference_plan.reference_plan`` take for ``config``:
    the config itself (the planner reads the one configuration)."""
    return config
