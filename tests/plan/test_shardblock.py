"""``shard_block``: batches within blocks of consecutive sources, blocks visited one at a time,
bucketing and caps as without it; its cost and its locality reported by ``analyze``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from discoseq.analysis import analyze
from discoseq.config import SamplerConfig
from discoseq.plan import plan_epoch
from discoseq.plan.shardblock import sources_per_window


def corpus(n: int = 20000, shards: int = 100) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "duration": rng.uniform(0.5, 20.0, n),
        "source_id": np.repeat(np.arange(shards), n // shards).astype(np.int32),
    }


def config(**kw) -> SamplerConfig:
    return SamplerConfig(**{"max_duration": 120.0, "num_buckets": 6, "shard_block": 5, **kw})


@pytest.mark.parametrize("world", [1, 4])
@pytest.mark.parametrize("strategy", ["bucketed", "random"])
def test_batches_stay_in_one_bucket_and_one_block(world, strategy):
    cols = corpus()
    cfg = config(strategy=strategy, **({} if strategy == "bucketed" else {"num_buckets": 10}))
    plan = plan_epoch(cols, cfg, 0, world)
    base = plan_epoch(cols, dataclasses.replace(cfg, shard_block=None), 0, world)
    n = cols["duration"].shape[0]
    # every cut once (tail repeats aside), the same bucket edges as without the option
    planned = np.delete(plan.rows, _repeat_rows(plan))
    assert np.array_equal(np.sort(planned), np.arange(n))
    np.testing.assert_array_equal(plan.bucket_edges, base.bucket_edges)
    edges = np.concatenate([[-np.inf], plan.bucket_edges, [np.inf]])
    block = cols["source_id"] // 5
    step_blocks = []
    for i in range(plan.num_batches):
        rows = plan.batch(i)
        d = cols["duration"][rows]
        assert np.unique(block[rows]).shape[0] == 1, f"batch {i} spans blocks"
        assert d.shape[0] * d.max() <= 120.0 or d.shape[0] == 1  # the cap, padded
        if strategy == "bucketed":
            b = int(plan.bucket[i])
            assert ((d > edges[b]) & (d <= edges[b + 1])).all()
        if i % world == 0:
            step_blocks.append(int(block[rows[0]]))
    # the epoch visits one block at a time: each block's steps are one run
    runs = [b for k, b in enumerate(step_blocks) if k == 0 or b != step_blocks[k - 1]]
    movable = runs[:-1] if plan.num_padding else runs
    assert len(movable) == len(set(movable))
    assert plan.num_batches >= base.num_batches  # at most a partial batch more per bucket+block


def _repeat_rows(plan):
    idx = [
        np.arange(plan.batch_offsets[b], plan.batch_offsets[b + 1]) for b in plan.padding_batches
    ]
    return np.concatenate(idx) if idx else np.empty(0, np.int64)


def test_block_order_is_keyed_by_seed_and_epoch():
    cols = corpus()
    cfg = config()

    def blocks(epoch: int, c: SamplerConfig = cfg) -> list[int]:
        plan = plan_epoch(cols, c, epoch, 1)
        seq = [int(cols["source_id"][plan.batch(i)[0]] // 5) for i in range(plan.num_batches)]
        return [b for k, b in enumerate(seq) if k == 0 or b != seq[k - 1]]

    assert blocks(0) == blocks(0)
    assert blocks(0) != blocks(1)
    assert blocks(0) != blocks(0, dataclasses.replace(cfg, seed=7))
    assert sorted(blocks(0)) == list(range(20))


def test_a_worker_reads_fewer_sources():
    cols = corpus(n=60000, shards=300)
    cfg = config(num_workers=2)
    plan = plan_epoch(cols, cfg, 0, 2)
    base = plan_epoch(cols, dataclasses.replace(cfg, shard_block=None), 0, 2)
    src = cols["source_id"]
    with_blocks = sources_per_window(plan, src, num_workers=2)
    without = sources_per_window(base, src, num_workers=2)
    assert without > 250  # batches from the whole corpus: nearly every shard in 100 batches
    assert with_blocks < without / 5


def test_analyze_reports_the_cost():
    cols = corpus()
    cfg = config(world_size=2)
    stats = analyze(cols, cfg)["shard_block"]
    base = plan_epoch(cols, dataclasses.replace(cfg, shard_block=None), 0, 2)
    assert stats["num_batches_without"] == base.num_batches
    assert stats["extra_batches"] == stats["num_batches"] - base.num_batches >= 0
    assert stats["sources_per_100_batches"] < stats["sources_per_100_batches_without"]
    assert 0 < stats["mean_fill"] <= 1 and 0 < stats["padding_efficiency"] <= 1
    assert "shard_block" not in analyze(cols, dataclasses.replace(cfg, shard_block=None))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"shard_block": 0}, "must be an integer"),
        ({"shard_block": 2.5}, "must be an integer"),
        ({"strategy": "sequential", "num_buckets": 10}, "not shuffled"),
        ({"shuffle": False}, "not shuffled"),
        ({"mix_batches": "per_source"}, "one corpus"),
    ],
)
def test_config_rules(kw, match):
    with pytest.raises(ValueError, match=match):
        config(**kw)


def test_a_mixture_is_refused():
    from discoseq.plan.quota import SourceLayout

    cols = corpus()
    layout = SourceLayout(("a", "b"), np.array([0, 10000, 20000]))
    with pytest.raises(ValueError, match="one corpus"):
        plan_epoch(cols, config(), 0, 1, sources=layout)


def test_blocks_of_a_corpus_in_shard_indexes(tmp_path):
    """A list of shard indexes numbers its sources across the shards, as one index of all
    their manifests does, so blocks are the same and so is the plan."""
    from discoseq.index import build_index, open_index
    from discoseq.synth import write_manifest

    lines = write_manifest(tmp_path / "all.jsonl", 1200).read_text().splitlines(keepends=True)
    paths = []
    for k in range(4):  # four manifests of distinct cuts
        paths.append(tmp_path / f"m{k}.jsonl")
        paths[-1].write_text("".join(lines[300 * k : 300 * (k + 1)]))
    build_index(paths[:2], tmp_path / "a.idx")
    build_index(paths[2:], tmp_path / "b.idx")
    whole = build_index(paths, tmp_path / "whole.idx")
    shards = open_index([tmp_path / "a.idx", tmp_path / "b.idx"])
    np.testing.assert_array_equal(shards.columns["source_id"], whole.column("source_id"))
    cfg = SamplerConfig(max_duration=60.0, num_buckets=4, shard_block=1)
    ours = plan_epoch(shards.columns, cfg, 0, 2)
    ref = plan_epoch(whole.columns, cfg, 0, 2)
    np.testing.assert_array_equal(ours.rows, ref.rows)
    np.testing.assert_array_equal(ours.batch_offsets, ref.batch_offsets)
