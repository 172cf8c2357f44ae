"""plan_epoch == the NumPy reference, bit for bit, and the invariants of a plan."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq.config import SamplerConfig
from discoseq.plan import EpochPlan, plan_epoch
from tests import reference_plan as ref

# ------------------------------------------------------------------------------ generators


@st.composite
def columns(draw: st.DrawFn, max_size: int = 80) -> dict[str, np.ndarray]:
    n = draw(st.integers(0, max_size))
    kind = draw(st.sampled_from(["uniform", "equal", "outlier", "mixed"]))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "uniform":
        d = gen.uniform(0.2, 35.0, n)
    elif kind == "equal":
        d = np.full(n, draw(st.sampled_from([0.5, 4.0, 12.25])))
    elif kind == "outlier":
        d = gen.uniform(1.0, 20.0, n)
        if n:
            d[gen.integers(0, n, max(1, n // 20))] = draw(st.sampled_from([300.0, 1e4]))
    else:
        d = np.where(gen.random(n) < 0.7, gen.uniform(0.5, 5, n), gen.uniform(10, 30, n))
    d = np.round(d, 3) + 0.001
    frames = np.ceil(d * 100).astype(np.int64)
    return {
        "duration": d,
        "num_frames": frames,
        "num_features": np.full(n, draw(st.sampled_from([80, 128])), dtype=np.int64),
        "num_tokens": np.floor(d * gen.uniform(2, 25, n)).astype(np.int64),
    }


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    strategy = draw(st.sampled_from(["sequential", "random", "bucketed"]))
    kw: dict[str, Any] = {"strategy": strategy, "seed": draw(st.integers(0, 2**64 - 1))}
    limits = draw(
        st.sets(
            st.sampled_from(["max_duration", "max_cuts", "max_frames", "max_tokens"]), min_size=1
        )
    )
    if "max_duration" in limits:
        kw["max_duration"] = draw(st.sampled_from([5.0, 30.0, 61.5, 200.0]))
    if "max_cuts" in limits:
        kw["max_cuts"] = draw(st.integers(1, 12))
    if "max_frames" in limits:
        kw["max_frames"] = draw(st.sampled_from([800, 4000, 20000]))
    if "max_tokens" in limits:
        kw["max_tokens"] = draw(st.sampled_from([60, 400, 3000]))
        if draw(st.booleans()):
            kw["audio_tokens_per_second"] = draw(st.sampled_from([12.5, 25.0]))
    if draw(st.booleans()):
        kw["quadratic_duration"] = draw(st.sampled_from([5.0, 30.0]))
    kw["limit_mode"] = draw(st.sampled_from(["padded", "sum"]))
    kw["oversize"] = draw(st.sampled_from(["single", "exclude"]))
    kw["drop_last"] = draw(st.booleans())
    if strategy != "sequential" and draw(st.integers(0, 3)) == 0:
        kw["sort_pool"] = draw(st.sampled_from([2, 5, 17]))
    if draw(st.booleans()):
        kw["min_duration"] = draw(st.sampled_from([0.3, 1.0]))
    if draw(st.booleans()):
        kw["max_duration_per_cut"] = draw(st.sampled_from([25.0, 500.0]))
    if draw(st.booleans()):
        kw["max_tokens_per_second"] = draw(st.sampled_from([5.0, 20.0]))
    if strategy == "bucketed":
        kw["shuffle"] = draw(st.booleans())
        kw["bucket_method"] = draw(st.sampled_from(["duration", "num_frames", "num_features"]))
        if kw["bucket_method"] == "duration" and draw(st.booleans()):
            kw["bucket_edges"] = tuple(
                sorted(draw(st.sets(st.sampled_from([1.0, 2.5, 5.0, 10.0, 20.0]), max_size=4)))
            )
        else:
            kw["num_buckets"] = draw(st.integers(1, 7))
        nb = len(kw["bucket_edges"]) + 1 if "bucket_edges" in kw else kw["num_buckets"]
        if draw(st.integers(0, 3)) == 0:
            if draw(st.booleans()):
                kw["num_token_buckets"] = draw(st.integers(2, 4))
            else:
                kw["token_bucket_edges"] = tuple(
                    (20.0 * (b + 1), 60.0 * (b + 1)) for b in range(nb)
                )
        ntb = kw.get("num_token_buckets") or (3 if "token_bucket_edges" in kw else 1)
        if draw(st.integers(0, 3)) == 0:
            kw["bucket_max_duration"] = tuple(
                draw(st.sampled_from([10.0, 40.0, 100.0])) for _ in range(nb * ntb)
            )
        if draw(st.integers(0, 3)) == 0:
            kw["bucket_max_cuts"] = tuple(draw(st.integers(1, 9)) for _ in range(nb * ntb))
    # options that change how a cap counts only with a cap they act on (the config refuses them)
    duration_cap = "max_duration" in kw or "bucket_max_duration" in kw
    if not duration_cap:
        kw.pop("quadratic_duration", None)
    if not (duration_cap or "max_frames" in kw or "max_tokens" in kw):
        kw.pop("limit_mode")
        kw.pop("oversize")
    return kw


def plan_both(
    cols: dict[str, np.ndarray],
    kw: dict[str, Any],
    epoch: int,
    W: int,
    mask: np.ndarray | None = None,
) -> tuple[EpochPlan, ref.RefPlan]:
    config = SamplerConfig(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plan = plan_epoch(cols, config, epoch, W, mask=mask)
    return plan, ref.reference_plan(cols, config, epoch, W, mask)


def assert_equal(plan: EpochPlan, expect: ref.RefPlan) -> None:
    for name in ref.PLAN_ARRAYS:
        got, exp = getattr(plan, name), getattr(expect, name)
        assert got.dtype == exp.dtype or got.size == exp.size == 0, name
        assert got.tolist() == exp.tolist(), name
    s = plan.stats
    for key, value in expect.stats.items():
        assert getattr(s, key) == value, key


# ------------------------------------------------------------------------------ equality


@given(columns(), configs(), st.integers(0, 2**64 - 1), st.integers(1, 12), st.booleans())
def test_plan_equals_reference(
    cols: dict[str, np.ndarray], kw: dict[str, Any], epoch: int, W: int, use_mask: bool
) -> None:
    n = cols["duration"].size
    mask = (np.arange(n) % 5 != 2) if use_mask else None
    plan, expect = plan_both(cols, kw, epoch, W, mask)
    assert_equal(plan, expect)
    check_invariants(plan, cols, mask)


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("strategy", ["sequential", "random", "bucketed"])
def test_tiny_inputs(n: int, strategy: str) -> None:
    cols = {"duration": np.full(n, 3.0)}
    plan, expect = plan_both(cols, {"strategy": strategy, "max_duration": 10.0}, 0, 4)
    assert_equal(plan, expect)
    assert plan.num_batches == (4 if n else 0)
    assert plan.num_padding == (3 if n else 0)


def test_w_larger_than_batches() -> None:
    cols = {"duration": np.full(10, 5.0)}
    kw: dict[str, Any] = {"max_duration": 20.0, "num_buckets": 2}
    plan, expect = plan_both(cols, kw, 0, 16)
    assert_equal(plan, expect)
    assert plan.num_batches == 16 and plan.num_padding == 13
    with pytest.warns(RuntimeWarning, match="fewer|only 3 batches"):
        dropped = plan_epoch(cols, SamplerConfig(drop_last=True, **kw), 0, 16)
    assert dropped.num_batches == 0 and dropped.stats.dropped_cuts == 10


# ------------------------------------------------------------------------------ invariants


def check_invariants(plan: EpochPlan, cols: dict[str, np.ndarray], mask: np.ndarray | None) -> None:
    cfg, W = plan.config, plan.world_size
    B = plan.num_batches
    assert B % W == 0 and plan.num_padding < W
    ranks = [plan.rank_view(r) for r in range(W)]
    assert {len(r) for r in ranks} == {plan.batches_per_rank}
    assert sorted(np.concatenate(ranks).tolist()) == list(range(B))
    for r in range(W):
        for k in (1, 3):
            parts = [plan.worker_view(r, w, k) for w in range(k)]
            assert sorted(np.concatenate(parts).tolist()) == ranks[r].tolist()
    pad = set(plan.padding_batches.tolist())
    assert all(b >= B - W for b in pad)  # repeats only in the last step
    real = [plan.batch(i) for i in range(B) if i not in pad]
    seen = np.concatenate(real) if real else np.empty(0, np.int64)
    assert np.unique(seen).size == seen.size  # at most once before padding
    assert seen.size == plan.stats.cuts_planned
    for i in pad:  # a repeat is a copy of a real batch of the same step
        step = i // W
        group = [plan.batch(j).tolist() for j in range(step * W, step * W + W) if j not in pad]
        assert plan.batch(i).tolist() in group
    if not cfg.drop_last and cfg.oversize == "single":
        assert plan.stats.cuts_planned == plan.stats.cuts_in - plan.stats.filtered_total
    d = cols["duration"]
    q = cfg.quadratic_duration
    for i in range(B):
        rows = plan.batch(i)
        assert rows.size > 0
        c = d[rows] + (d[rows] ** 2 / q if q else 0.0)
        b = int(plan.bucket[i])
        cap_d = cfg.bucket_max_duration[b] if cfg.bucket_max_duration else cfg.max_duration
        cap_c = cfg.bucket_max_cuts[b] if cfg.bucket_max_cuts else cfg.max_cuts
        if rows.size == 1:
            continue  # an oversize cut may be alone
        cost = c.sum() if cfg.limit_mode == "sum" else rows.size * c.max()
        if cap_d is not None:
            assert cost <= cap_d * (1 + 1e-12)
        if cap_c is not None:
            assert rows.size <= cap_c
        if cfg.max_frames is not None:
            f = cols["num_frames"][rows]
            assert (f.sum() if cfg.limit_mode == "sum" else rows.size * f.max()) <= cfg.max_frames
    if str(cfg.strategy) == "bucketed" and plan.token_edges.shape[1] == 0 and B:
        key = {"duration": d, "num_frames": cols.get("num_frames"), "num_features": None}[
            cfg.bucket_method
        ]
        if key is not None:  # purity: every cut of a batch falls in the batch's bucket
            for i in range(B):
                ids = np.searchsorted(plan.bucket_edges, key[plan.batch(i)].astype(float), "left")
                assert (ids == plan.bucket[i]).all()


def big_columns(n: int = 3000, seed: int = 0) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    d = gen.gamma(9.0, 1.4, n) + 0.5
    return {
        "duration": d,
        "num_frames": np.ceil(d * 100).astype(np.int64),
        "num_tokens": (d * 14).astype(np.int64),
    }


def test_determinism_and_epochs() -> None:
    cols = big_columns()
    cfg = SamplerConfig(max_duration=120.0, num_buckets=8, seed=5)
    a, b = plan_epoch(cols, cfg, 3, 4), plan_epoch(cols, cfg, 3, 4)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.batch_offsets, b.batch_offsets)
    c = plan_epoch(cols, cfg, 4, 4)
    assert not np.array_equal(a.rows, c.rows)
    assert sorted(a.rows.tolist()) != [] and set(a.rows.tolist()) == set(c.rows.tolist())
    other_seed = plan_epoch(cols, SamplerConfig(max_duration=120.0, num_buckets=8, seed=6), 3, 4)
    assert not np.array_equal(a.rows, other_seed.rows)
    check_invariants(a, cols, None)


def test_world_size_does_not_change_cut_order_within_buckets() -> None:
    cols = big_columns()
    cfg = SamplerConfig(max_duration=120.0, num_buckets=8, seed=5)
    p1, p8 = plan_epoch(cols, cfg, 0, 1), plan_epoch(cols, cfg, 0, 8)
    assert set(p1.rows.tolist()) == set(p8.rows[: p8.batch_offsets[-1]].tolist())


def test_readonly_memmap_columns(tmp_path) -> None:
    cols = big_columns(500)
    mm = {}
    for k, v in cols.items():
        np.save(tmp_path / f"{k}.npy", v)
        mm[k] = np.load(tmp_path / f"{k}.npy", mmap_mode="r")
    kw = {"max_duration": 60.0, "num_buckets": 4, "num_token_buckets": 2, "max_frames": 9000}
    plan, expect = plan_both(mm, kw, 1, 3)
    assert_equal(plan, expect)
    assert not plan.rows.flags.writeable


def test_stats_and_filters() -> None:
    cols = big_columns(2000)
    cols["duration"][:5] = 500.0
    mask = np.ones(2000, dtype=bool)
    mask[10:20] = False
    cfg = SamplerConfig(
        max_duration=100.0,
        min_duration=2.0,
        max_tokens_per_second=13.5,
        oversize="exclude",
        num_buckets=4,
    )
    plan, expect = plan_both(cols, cfg.__dict__ | {}, 0, 2, mask)
    assert_equal(plan, expect)
    s = plan.stats
    assert s.filtered["mask"] == 10 and s.oversize_excluded == 5 and s.oversize_single == 0
    assert s.cuts_planned + s.filtered_total + s.oversize + s.dropped_cuts == s.cuts_in


def test_empty_after_filter_warns() -> None:
    cols = {"duration": np.array([1.0, 2.0])}
    with pytest.warns(RuntimeWarning, match="empty"):
        plan = plan_epoch(cols, SamplerConfig(max_duration=5.0, min_duration=3.0), 0, 2)
    assert plan.num_batches == 0 and plan.stats.filtered["min_duration"] == 2
    assert plan.rank_view(1).size == 0 and list(plan.iter_batches(1)) == []
