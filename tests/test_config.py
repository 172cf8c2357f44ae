"""SamplerConfig: defaults, validation (each error names the field and value), JSON round trip,
the resolved values the planner reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq import SamplerConfig, SamplingStrategy
from discoseq.config import DEFAULT_QUADRATIC_DURATION, RESUME_MUTABLE_FIELDS
from discoseq.plan import plan_epoch


def test_defaults_are_the_published_ones() -> None:
    c = SamplerConfig(max_duration=30.0)
    assert c.strategy is SamplingStrategy.BUCKETED
    assert (c.max_cuts, c.world_size, c.rank) == (None, None, None)
    assert (c.seed, c.shuffle, c.drop_last) == (42, None, False)
    assert (c.bucket_method, c.num_buckets, c.buffer_size) == ("duration", 10, 10000)
    assert c.quadratic_duration is False
    assert (c.num_workers, c.pin_memory, c.prefetch_factor) == (0, False, 2)
    assert c.effective_shuffle is True


def test_strategy_accepts_strings_and_resolves_shuffle() -> None:
    assert SamplerConfig(strategy="RANDOM", max_cuts=3).strategy is SamplingStrategy.RANDOM
    seq = SamplerConfig(strategy="sequential", max_cuts=3)
    assert seq.effective_shuffle is False
    assert SamplerConfig(max_cuts=3, shuffle=False).effective_shuffle is False


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "no batch limit"),
        ({"max_duration": 3, "strategy": "sequential", "shuffle": True}, "shuffle=True"),
        ({"max_duration": 3, "strategy": "random", "shuffle": False}, "shuffle=False"),
        ({"max_duration": 3, "strategy": "nope"}, "strategy='nope'"),
        ({"max_duration": -1.0}, "max_duration=-1.0"),
        ({"max_duration": float("nan")}, "max_duration=nan"),
        ({"max_cuts": 0}, "max_cuts=0"),
        ({"max_cuts": 2.5}, "max_cuts=2.5"),
        ({"max_cuts": 2, "world_size": 0}, "world_size=0"),
        ({"max_cuts": 2, "rank": -1}, "rank=-1"),
        ({"max_cuts": 2, "rank": 2, "world_size": 2}, "rank=2"),
        ({"max_cuts": 2, "seed": -1}, "seed=-1"),
        ({"max_cuts": 2, "seed": 2**64}, "seed="),
        ({"max_cuts": 2, "shuffle": "yes"}, "shuffle='yes'"),
        ({"max_cuts": 2, "drop_last": 1}, "drop_last=1"),
        ({"max_cuts": 2, "pin_memory": None}, "pin_memory=None"),
        ({"max_cuts": 2, "bucket_method": "pitch"}, "bucket_method='pitch'"),
        ({"max_cuts": 2, "num_buckets": 0}, "num_buckets=0"),
        ({"max_cuts": 2, "buffer_size": -1}, "buffer_size=-1"),
        ({"max_cuts": 2, "quadratic_duration": 0}, "quadratic_duration=0"),
        ({"max_cuts": 2, "quadratic_duration": "big"}, "quadratic_duration='big'"),
        ({"max_cuts": 2, "num_workers": -1}, "num_workers=-1"),
        ({"max_cuts": 2, "num_workers": 2, "prefetch_factor": 0}, "prefetch_factor=0"),
        ({"max_cuts": 2, "prefetch_factor": 4}, "prefetch_factor=4 has no effect"),
        ({"max_cuts": 2, "strategy": "random", "num_buckets": 5}, "num_buckets=5"),
        ({"max_cuts": 2, "strategy": "random", "bucket_method": "num_frames"}, "bucket_method"),
        ({"max_cuts": 2, "strategy": "random", "bucket_edges": [1.0]}, "bucket_edges"),
        ({"max_cuts": 2, "num_buckets": 3, "bucket_edges": [1.0]}, "num_buckets=3"),
        ({"max_cuts": 2, "bucket_edges": [2.0, 1.0]}, "strictly increasing"),
        ({"max_cuts": 2, "limit_mode": "max"}, "limit_mode='max'"),
        ({"max_cuts": 2, "oversize": "drop"}, "oversize='drop'"),
        ({"max_cuts": 2, "bucket_max_cuts": [1, 2]}, "bucket_max_cuts has 2 values"),
        ({"max_cuts": 2, "min_duration": 5.0, "max_duration_per_cut": 1.0}, "min_duration=5.0"),
        ({"max_cuts": 2, "token_column": "bpe"}, "token_column='bpe' has no effect"),
        ({"max_cuts": 2, "bucket_edges": 5}, "bucket_edges=5 must be a list"),
        ({"max_cuts": 2, "bucket_max_cuts": 3}, "bucket_max_cuts=3 must be a list"),
        ({"max_cuts": 2, "token_bucket_edges": [1, 2]}, "token_bucket_edges=[1, 2] must be"),
        ({"max_cuts": 2, "token_bucket_edges": "ab"}, "token_bucket_edges='ab' must be"),
        (
            {"strategy": "random", "pack_duration": 30.0, "max_cuts": 2, "token_column": "bpe"},
            "token_column='bpe' has no effect",
        ),
    ],
)
def test_invalid_values_fail_naming_the_field(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        SamplerConfig(**kwargs)
    assert needle in str(info.value)


def test_quadratic_duration_forms() -> None:
    assert SamplerConfig(max_cuts=2).quadratic_constant is None
    assert SamplerConfig(max_cuts=2, quadratic_duration=None).quadratic_constant is None
    c = SamplerConfig(max_duration=60.0, quadratic_duration=True)
    assert c.quadratic_constant == DEFAULT_QUADRATIC_DURATION
    assert SamplerConfig(max_duration=60.0, quadratic_duration=15).quadratic_constant == 15.0
    per_bucket = SamplerConfig(max_cuts=2, num_buckets=2, bucket_max_duration=[30.0, 60.0],
                               quadratic_duration=15)  # fmt: skip
    assert per_bucket.quadratic_constant == 15.0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_cuts": 2, "quadratic_duration": True}, "quadratic_duration=True has no effect"),
        ({"max_cuts": 2, "limit_mode": "sum"}, "limit_mode='sum' has no effect"),
        ({"max_cuts": 2, "oversize": "exclude"}, "oversize='exclude' has no effect"),
        ({"max_tokens": 90, "quadratic_duration": 15.0}, "quadratic_duration=15.0 has no"),
    ],
)
def test_cap_modes_without_a_cap_they_act_on_are_refused(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplerConfig(**kw)
    # each is accepted beside a cap it changes
    for cap in ({"max_frames": 900}, {"max_tokens": 90}, {"max_duration": 30.0}):
        if "quadratic_duration" in kw and "max_duration" not in cap:
            continue
        assert SamplerConfig(**{**kw, **cap})
    assert SamplerConfig(max_cuts=3, pack_duration=20.0, strategy="random", oversize="exclude")


def test_bucket_edges_set_the_bucket_count() -> None:
    c = SamplerConfig(max_duration=60.0, bucket_edges=[2.0, 5.0, 10.0])
    assert c.num_buckets == 4 and c.bucket_edges == (2.0, 5.0, 10.0)
    assert SamplerConfig(max_duration=60.0, num_buckets=4, bucket_edges=[2.0, 5.0, 10.0]) == c


def test_the_planner_reads_the_one_config() -> None:
    c = SamplerConfig(max_duration=60.0, num_buckets=2, num_token_buckets=2, sort_pool=64,
                      bucket_max_duration=[30.0, 40.0, 50.0, 60.0], seed=7)  # fmt: skip
    assert (c.duration_buckets, c.token_buckets, c.total_buckets) == (2, 2, 4)
    assert SamplerConfig(strategy="random", max_cuts=2).duration_buckets == 1
    cols = {"duration": np.linspace(1.0, 9.0, 40), "num_tokens": np.arange(40, dtype=np.int64)}
    plan = plan_epoch(cols, c, 0, 2)
    assert plan.config is c and plan.bucket_edges.shape == (1,) and plan.token_edges.shape == (2, 1)
    with pytest.raises(TypeError, match="SamplerConfig"):
        plan_epoch(cols, c.to_dict(), 0, 2)  # type: ignore[arg-type]


def test_json_round_trip_and_unknown_keys() -> None:
    c = SamplerConfig(
        strategy="random", max_duration=20.0, world_size=4, rank=3, quadratic_duration=True
    )
    assert SamplerConfig.from_json(c.to_json()) == c
    assert SamplerConfig.from_dict(c.to_dict()) == c
    c2 = SamplerConfig(max_cuts=3, num_buckets=2, num_token_buckets=2,
                       token_bucket_edges=[[10.0], [20.0]])  # fmt: skip
    assert SamplerConfig.from_json(c2.to_json()) == c2
    with pytest.raises(ValueError, match=r"unknown SamplerConfig field.*'max_durations'"):
        SamplerConfig.from_dict({"max_durations": 3})
    with pytest.raises(ValueError, match="not a SamplerConfig JSON"):
        SamplerConfig.from_json("{nope")


def test_frozen_and_replace_validates() -> None:
    c = SamplerConfig(max_cuts=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.max_cuts = 4  # type: ignore[misc]
    assert c.replace(max_cuts=4).max_cuts == 4
    with pytest.raises(ValueError, match="max_cuts=0"):
        c.replace(max_cuts=0)


def test_differences_and_mutable_fields() -> None:
    a = SamplerConfig(max_cuts=3, world_size=2, rank=1, num_workers=2, prefetch_factor=4)
    b = SamplerConfig(max_cuts=3, seed=1)
    assert a.differences(b, ignore=RESUME_MUTABLE_FIELDS) == [("seed", 42, 1)]


@given(
    strategy=st.sampled_from(list(SamplingStrategy)),
    max_duration=st.none() | st.floats(0.5, 1e4),
    max_cuts=st.none() | st.integers(1, 10_000),
    seed=st.integers(0, 2**64 - 1),
    drop_last=st.booleans(),
    buffer_size=st.integers(0, 10**6),
    quadratic=st.sampled_from([None, False, True, 12.5]),
    workers=st.integers(0, 8),
)
def test_round_trip_property(
    strategy, max_duration, max_cuts, seed, drop_last, buffer_size, quadratic, workers
) -> None:
    if max_duration is None and max_cuts is None:
        max_cuts = 5
    if max_duration is None and quadratic not in (None, False):
        max_duration = 30.0  # quadratic_duration weighs durations against max_duration
    c = SamplerConfig(
        strategy=strategy,
        max_duration=max_duration,
        max_cuts=max_cuts,
        seed=seed,
        drop_last=drop_last,
        buffer_size=buffer_size,
        quadratic_duration=quadratic,
        num_workers=workers,
    )
    assert SamplerConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"max_cuts": 2**63}, "max_cuts"),
        ({"max_duration": 10.0, "sort_pool": 2**59}, "sort_pool"),
        ({"max_duration": 10.0, "sort_pool": 2**60}, "sort_pool"),
        ({"max_frames": 2**63 - 1}, "max_frames"),
        ({"max_cuts": 3, "num_buckets": 2**20}, "num_buckets"),
        ({"max_cuts": 3, "num_buckets": 2, "bucket_max_cuts": [1, 2**63]}, "bucket_max_cuts"),
        ({"max_cuts": 3, "buffer_size": 2**50}, "buffer_size"),
    ],
)
def test_sizes_that_feed_allocations_are_bounded(kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}=.* is larger than"):
        SamplerConfig(**kw)


def test_analyze_config_json_with_huge_sort_pool_is_a_usage_error(tmp_path) -> None:
    from tests.cli.runner import run

    cfg = tmp_path / "c.json"
    cfg.write_text('{"max_duration": 10.0, "sort_pool": 1152921504606846976}')
    manifest = tmp_path / "c.jsonl"
    from discoseq.synth import write_manifest

    write_manifest(manifest, 20, seed=1)
    result = run("analyze", manifest, "--config", cfg, "-q")
    assert result.exit_code == 3 and "sort_pool" in result.output


def test_mistyped_fields_and_values_are_named() -> None:
    """A first hour's slips: a misspelt field gets a "did you mean", a number given as a string
    says it is a string, and a mixture weight given as a string is named with its entry."""
    with pytest.raises(ValueError, match="'max_duraton': did you mean 'max_duration'"):
        SamplerConfig.from_dict({"max_duraton": 600})
    with pytest.raises(ValueError, match=r"max_duration='200' must be .* \(got str\)"):
        SamplerConfig(max_duration="200")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mixture\['a'\]: weight='0.5' .* \(got str\)"):
        SamplerConfig(max_duration=600, mixture={"a": {"weight": "0.5"}, "b": {"weight": 1}})
    with pytest.raises(ValueError, match=r"to leave a source out: remove it, or give it"):
        SamplerConfig(max_duration=600, mixture={"a": {"weight": 0}, "b": {"weight": 1}})
    with pytest.raises(ValueError, match=r"epoch 5 names \['a', 'c'\].*differ: \['b', 'c'\]"):
        SamplerConfig(
            max_duration=600,
            mixture={"a": {"weight": 1}, "b": {"weight": 1}},
            mixture_schedule=[[0, {"a": 1, "b": 1}], [5, {"a": 1, "c": 1}]],
        )
