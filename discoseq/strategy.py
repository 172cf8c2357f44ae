"""The sampling strategies of an epoch plan."""

from __future__ import annotations

from enum import Enum

__all__ = ["SamplingStrategy"]


class SamplingStrategy(str, Enum):
    """How the cuts of an epoch are ordered before packing.

    * ``SEQUENTIAL``: source (index) order; never shuffled.
    * ``RANDOM``: one global shuffle of the cuts per epoch; batches keep their packed order.
    * ``BUCKETED``: cuts grouped into buckets of similar cost, shuffled within each bucket,
      batches drawn from one bucket and their order shuffled in groups of ``world_size``.

    Accepts its string values: ``SamplingStrategy("bucketed") is SamplingStrategy.BUCKETED``.
    """

    SEQUENTIAL = "sequential"
    RANDOM = "random"
    BUCKETED = "bucketed"

    @classmethod
    def _missing_(cls, value: object) -> SamplingStrategy | None:
        if isinstance(value, str):
            lowered = value.lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return None

    def __str__(self) -> str:
        return self.value
