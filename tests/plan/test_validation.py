"""Engine rules of SamplerConfig and plan_epoch's input checks: each bad input is a ValueError
naming the field and its value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from discoseq._core import bucketing
from discoseq.config import SamplerConfig
from discoseq.plan import plan_epoch
from discoseq.strategy import SamplingStrategy


def test_strategy_accepts_strings() -> None:
    assert SamplingStrategy("bucketed") is SamplingStrategy.BUCKETED
    assert SamplingStrategy("RANDOM") is SamplingStrategy.RANDOM
    assert SamplerConfig(strategy="sequential", max_cuts=2).strategy is SamplingStrategy.SEQUENTIAL  # type: ignore[arg-type]
    assert str(SamplingStrategy.SEQUENTIAL) == "sequential"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({}, "no batch limit"),
        ({"max_duration": -1.0}, "max_duration=-1.0"),
        ({"max_duration": float("nan")}, "max_duration=nan"),
        ({"max_cuts": 0}, "max_cuts=0"),
        ({"max_cuts": 2.5}, "max_cuts=2.5"),
        ({"max_frames": True}, "max_frames=True"),
        ({"max_cuts": 2, "strategy": "shuffled"}, "strategy='shuffled'"),
        ({"max_cuts": 2, "limit_mode": "max"}, "limit_mode='max'"),
        ({"max_cuts": 2, "bucket_method": "tokens"}, "bucket_method='tokens'"),
        ({"max_cuts": 2, "oversize": "drop"}, "oversize='drop'"),
        ({"max_cuts": 2, "seed": -3}, "seed=-3"),
        ({"max_cuts": 2, "seed": 2**64}, "seed="),
        ({"max_cuts": 2, "min_duration": 5.0, "max_duration_per_cut": 2.0}, "min_duration=5.0"),
        ({"max_cuts": 2, "strategy": "random", "shuffle": False}, "shuffle=False"),
        ({"max_cuts": 2, "strategy": "random", "num_buckets": 3}, "num_buckets=3"),
        ({"max_cuts": 2, "bucket_edges": (2.0, 1.0)}, "strictly increasing"),
        ({"max_cuts": 2, "bucket_edges": (1.0, 2.0), "num_buckets": 5}, "num_buckets=5"),
        ({"max_cuts": 2, "num_buckets": 2, "token_bucket_edges": ((1.0,),)}, "2\\)"),
        ({"max_cuts": 2, "num_buckets": 2, "bucket_max_cuts": (1, 2, 3)}, "bucket_max_cuts"),
        ({"num_buckets": 2, "bucket_max_duration": (1.0, -2.0)}, "bucket_max_duration\\[1\\]"),
        ({"max_cuts": 2, "num_token_buckets": 0}, "num_token_buckets=0"),
        ({"max_cuts": 2, "sort_pool": 1}, "sort_pool=1"),
        ({"max_cuts": 2, "sort_pool": 8, "strategy": "sequential"}, "sort_pool=8"),
    ],
)
def test_config_errors_name_field_and_value(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplerConfig(**kw)


def test_config_is_hashable_and_normalises_sequences() -> None:
    cfg = SamplerConfig(max_cuts=3, bucket_edges=[1.0, 2.0], bucket_max_cuts=[1, 2, 3])  # type: ignore[arg-type]
    assert cfg.bucket_edges == (1.0, 2.0) and cfg.duration_buckets == 3
    assert hash(cfg) == hash(
        SamplerConfig(max_cuts=3, bucket_edges=(1.0, 2.0), bucket_max_cuts=(1, 2, 3))
    )


def cols(n: int = 10) -> dict[str, np.ndarray]:
    d = np.linspace(1.0, 10.0, n)
    return {
        "duration": d,
        "num_frames": (d * 100).astype(np.int64),
        "num_features": np.full(n, 80, dtype=np.int64),
        "num_tokens": (d * 10).astype(np.int64),
    }


def test_missing_values_in_needed_columns() -> None:
    c = cols()
    c["num_frames"][[1, 4]] = -1
    with pytest.raises(ValueError, match="'num_frames' is -1 \\(missing\\) in 2 rows"):
        plan_epoch(c, SamplerConfig(max_duration=50.0, bucket_method="num_frames"), 0, 1)
    mask = np.ones(10, dtype=bool)
    mask[[1, 4]] = False  # filtered rows may be missing
    for method in ("num_frames", "num_features"):
        cfg = SamplerConfig(max_duration=50.0, bucket_method=method, num_buckets=3)
        got = plan_epoch(c, cfg, 0, 1, mask=mask)
        # the same plan as with valid values there (their -1 only keeps the edges' estimate
        # from taking the column's bounds)
        valid = {k: v.copy() for k, v in c.items()}
        valid["num_frames"][[1, 4]] = 500
        want = plan_epoch(valid, cfg, 0, 1, mask=mask)
        assert np.array_equal(got.bucket_edges, want.bucket_edges)
        assert np.array_equal(got.rows, want.rows)
    plan_epoch(c, SamplerConfig(max_duration=50.0), 0, 1)  # num_frames not needed
    c["num_tokens"][0] = -1
    with pytest.raises(ValueError, match="'num_tokens' is -1 \\(missing\\) in 1 rows"):
        plan_epoch(c, SamplerConfig(max_duration=50.0, num_token_buckets=2), 0, 1)
    # without text the tokens-per-second filter keeps the cut
    p = plan_epoch(c, SamplerConfig(max_duration=50.0, max_tokens_per_second=5.0), 0, 1)
    assert p.stats.filtered["max_tokens_per_second"] == 9


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({}, "'duration'"),
        ({"duration": np.array([1.0, 0.0, -1.0])}, "2 rows that are not positive"),
        ({"duration": np.array([1.0, np.nan])}, "1 rows that are not positive"),
        ({"duration": np.ones((2, 2))}, "one-dimensional"),
    ],
)
def test_bad_columns(columns: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_epoch(columns, SamplerConfig(max_cuts=2), 0, 1)


def test_bad_call_arguments() -> None:
    c = cols()
    with pytest.raises(ValueError, match="world_size=0"):
        plan_epoch(c, SamplerConfig(max_cuts=2), 0, 0)
    with pytest.raises(ValueError, match="epoch=-1"):
        plan_epoch(c, SamplerConfig(max_cuts=2), -1, 1)
    with pytest.raises(ValueError, match="mask must be a boolean"):
        plan_epoch(c, SamplerConfig(max_cuts=2), 0, 1, mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="token_column='num_tokens' is not a column"):
        plan_epoch(
            {"duration": c["duration"]}, SamplerConfig(max_cuts=2, num_token_buckets=2), 0, 1
        )
    with pytest.raises(ValueError, match="has 3 rows"):
        plan_epoch(
            {"duration": c["duration"], "num_frames": np.ones(3, np.int64)},
            SamplerConfig(max_frames=5),
            0,
            1,
        )
    plan = plan_epoch(c, SamplerConfig(max_cuts=2), 0, 2)
    with pytest.raises(ValueError, match="rank=2"):
        plan.rank_view(2)
    with pytest.raises(ValueError, match="worker=3"):
        plan.worker_view(0, 3, 2)
    with pytest.raises(IndexError):
        plan.batch(plan.num_batches)


def test_edge_estimation_overflow_is_reported() -> None:
    huge = np.full(4, 2**61, dtype=np.int64)
    empty = np.empty(0, np.int64)
    with pytest.raises(ValueError, match="overflows"):
        bucketing.estimate_edges(None, 1, np.empty(0), huge, empty, empty, 8)


def test_edge_estimation_rejects_wrong_bounds() -> None:
    d = np.array([1.0, 2.0, 50.0])
    empty = np.empty(0, np.int64)
    good = bucketing.estimate_edges(None, 0, d, empty, empty, empty, 3)
    assert bucketing.estimate_edges(None, 0, d, empty, empty, empty, 3, 1.0, 50.0).tolist() == (
        good.tolist()
    )
    with pytest.raises(ValueError, match="outside the given bounds"):
        bucketing.estimate_edges(None, 0, d, empty, empty, empty, 3, 1.0, 10.0)
