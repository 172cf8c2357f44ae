"""How the tests turn a dict of engine options into the configuration ``plan_epoch`` takes."""

from __future__ import annotations

from typing import Any

from discoseq.plan import PlanConfig


def make_config(kw: dict[str, Any]) -> Any:
    return PlanConfig(**kw)
