"""Golden plans: a fixed corpus and a handful of configurations hash to recorded values.

The hashes were recorded before the planner was reshaped into stages; a change of any of them is a
change of the plans users get (and of every saved resume position), so it must be a decision, not
an accident of a refactor. The corpus is generated with integer arithmetic only (no NumPy random
generator, whose streams may change between versions).
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import pytest

from discoseq.plan import EpochPlan, plan_epoch
from tests.plan_configs import make_config
from tests.reference_plan import PLAN_ARRAYS

_M64 = (1 << 64) - 1


def _splitmix(n: int, seed: int) -> np.ndarray:
    """``n`` uniform floats in [0, 1) from splitmix64, computed in Python integers."""
    out = np.empty(n, dtype=np.float64)
    z = seed & _M64
    for i in range(n):
        z = (z + 0x9E3779B97F4A7C15) & _M64
        x = z
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
        x ^= x >> 31
        out[i] = (x >> 11) / float(1 << 53)
    return out


def golden_columns(n: int = 4000) -> dict[str, np.ndarray]:
    u, v, w = _splitmix(n, 1), _splitmix(n, 2), _splitmix(n, 3)
    # mostly short utterances, a long tail, a few very long ones (oversize under small caps)
    d = np.where(u < 0.7, 0.5 + 9.5 * v, 10.0 + 25.0 * v)
    d = np.where(w > 0.995, 60.0 + 100.0 * v, d)
    d = np.round(d, 3)
    frames = np.ceil(d * 100).astype(np.int64)
    return {
        "duration": d,
        "num_frames": frames,
        "num_features": frames * 80,
        "num_tokens": np.floor(d * (3.0 + 20.0 * w)).astype(np.int64),
    }


GOLDEN: list[tuple[str, dict[str, Any], int, int, str | None, str]] = [
    # (name, config, epoch, world_size, mask, hash)
    ("sequential", {"strategy": "sequential", "max_cuts": 7, "seed": 3}, 0, 1, None,
     "3fc2414fce8f15c0e1245a59"),
    ("random", {"strategy": "random", "max_duration": 95.5, "seed": 11}, 2, 3, None,
     "c881cb423deb073185dab9b1"),
    ("bucketed", {"max_duration": 200.0, "num_buckets": 12, "seed": 5}, 1, 8, None,
     "d55fb06c2c18d633d263f731"),
    ("bucketed-2d-quadratic-sum",
     {"max_duration": 150.0, "num_buckets": 6, "num_token_buckets": 3,
      "quadratic_duration": 20.0, "limit_mode": "sum", "seed": 2**63 + 7}, 5, 4, None,
     "0b5769ab36bfdb6aafa756e0"),
    ("bucketed-edges-caps",
     {"bucket_edges": (2.0, 5.0, 9.0, 20.0), "bucket_max_duration": (40.0, 60, 90, 120, 240),
      "bucket_max_cuts": (30, 20, 12, 8, 4), "seed": 9}, 0, 5, None,
     "60c13d2bc6d9544a549be955"),
    ("bucketed-token-edges",
     {"max_duration": 120.0, "num_buckets": 3,
      "token_bucket_edges": ((20.0, 50.0), (60.0, 150.0), (200.0, 500.0)), "seed": 4}, 3, 2,
     None, "5565971d335095f88ae936b5"),
    ("filters-pool-exclude-droplast",
     {"max_duration": 60.0, "num_buckets": 5, "sort_pool": 64, "oversize": "exclude",
      "drop_last": True, "min_duration": 1.0, "max_duration_per_cut": 100.0,
      "max_tokens_per_second": 18.0, "seed": 21}, 7, 6, None, "446aeb8394c06c8a05a3abd8"),
    ("frames-noshuffle",
     {"bucket_method": "num_frames", "max_frames": 20000, "num_buckets": 4, "shuffle": False,
      "seed": 1}, 0, 3, None, "e739275fb7c4eb5b8692b66a"),
    ("features-mask",
     {"bucket_method": "num_features", "max_cuts": 16, "max_duration": 300.0, "num_buckets": 7,
      "seed": 12}, 4, 7, "every-third", "83f98730718ad36d929ba045"),
    ("random-pool-mask",
     {"strategy": "random", "max_duration": 80.0, "sort_pool": 100, "seed": 8}, 1, 2,
     "first-half", "01884f32eca0aa2520b87106"),
]  # fmt: skip


def _mask(kind: str | None, n: int) -> np.ndarray | None:
    if kind is None:
        return None
    if kind == "every-third":
        return np.arange(n) % 3 != 0
    if kind == "first-half":
        return np.arange(n) >= n // 2
    raise AssertionError(kind)


def plan_hash(plan: EpochPlan) -> str:
    h = hashlib.blake2b(digest_size=12)
    for name in PLAN_ARRAYS:
        a = np.ascontiguousarray(getattr(plan, name))
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    s = plan.stats
    stats = (
        s.cuts_in,
        sorted(s.filtered.items()),
        s.oversize,
        s.oversize_policy,
        s.dropped_batches,
        s.dropped_cuts,
        s.cuts_planned,
        s.total_duration.hex(),
    )
    h.update(repr(stats).encode())
    h.update(f"{plan.world_size}:{plan.epoch}".encode())
    return h.hexdigest()


COLUMNS = golden_columns()


@pytest.mark.parametrize(
    ("config", "epoch", "world", "mask", "expected"),
    [pytest.param(*g[1:], id=g[0]) for g in GOLDEN],
)
def test_golden_plan(
    config: dict[str, Any], epoch: int, world: int, mask: str | None, expected: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plan = plan_epoch(
            COLUMNS, make_config(config), epoch, world, mask=_mask(mask, len(COLUMNS["duration"]))
        )
    assert plan.num_batches > 0
    assert plan_hash(plan) == expected
