"""A list of index paths is one corpus: rows numbered across the shards, the fingerprint the
shards' fingerprints in order, the same plans as one index of the same rows, exact and elastic
resume, and ``open_index`` as the way to open it."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from discoseq import (
    CutIndex,
    DiscoSeqSampler,
    IndexFormatError,
    MultiIndex,
    SamplerConfig,
    build_index,
    create_dataloader,
    open_index,
)
from discoseq.plan import plan_epoch
from discoseq.synth import write_manifest

SIZES = (120, 200, 80)
CFG = SamplerConfig(max_duration=90.0, num_buckets=4, world_size=3, rank=0, seed=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One 400-cut manifest split into three shard manifests (as a corpus is cut into shards),
    an index per shard, and one index of the three manifests together (the reference)."""
    root = tmp_path_factory.mktemp("shards")
    whole = write_manifest(root / "whole.jsonl", sum(SIZES), seed=3)
    lines = Path(whole).read_bytes().splitlines(keepends=True)
    manifests, paths, start = [], [], 0
    for k, n in enumerate(SIZES):
        manifest = root / f"part{k}.jsonl"
        manifest.write_bytes(b"".join(lines[start : start + n]))
        start += n
        build_index(manifest, root / f"shard{k}.idx")
        manifests.append(manifest)
        paths.append(str(root / f"shard{k}.idx"))
    reference = build_index(manifests, root / "together.idx")
    return {"root": root, "paths": paths, "manifests": manifests, "reference": reference}


def batches(sampler: DiscoSeqSampler) -> list[list[int]]:
    return [b.tolist() for b in sampler.iter_batches_indices()]


def test_open_index_of_a_list_is_one_corpus(corpus) -> None:
    paths, reference = corpus["paths"], corpus["reference"]
    multi = open_index(paths)
    assert isinstance(multi, MultiIndex) and multi.names is None
    assert len(multi) == sum(SIZES) == len(reference)
    assert multi.offsets.tolist() == [0, 120, 320, 400]
    rows = np.arange(len(multi))
    # rows numbered across the shards in the order given: global row r is the reference's row r
    assert multi.cut_ids(rows) == reference.cut_ids(rows)
    for name in ("duration", "num_frames", "num_tokens"):
        assert np.array_equal(multi.column(name), reference.column(name))
        assert not multi.column(name).flags.writeable
    assert multi.row_of(reference.cut_id(250)) == 250
    picked = [399, 0, 121, 119, 320]
    got = multi.resolve(picked)
    assert [c.id for c in got] == reference.cut_ids(picked)
    assert [c.to_dict() for c in got] == [c.to_dict() for c in reference.resolve(picked)]
    assert multi.source_of(picked).tolist() == [2, 0, 1, 0, 2]
    # one path is one index; one shard in a list reads that shard's own columns (no copy)
    assert isinstance(open_index(paths[0]), CutIndex)
    single = open_index(paths[:1])
    assert np.shares_memory(single.column("duration"), single.indexes[0].duration)


def test_fingerprint_is_the_shards_fingerprints_in_order(corpus, tmp_path) -> None:
    paths = corpus["paths"]
    multi = open_index(paths)
    shards = [CutIndex.open(p) for p in paths]
    assert multi.fingerprints == tuple(ix.fingerprint for ix in shards)
    content = {"names": None, "indexes": [ix.fingerprint for ix in shards]}
    expected = hashlib.blake2b(orjson.dumps(content), digest_size=8).hexdigest()
    assert multi.fingerprint == expected
    assert open_index(paths).fingerprint == expected  # reopened: the same
    assert open_index(paths[::-1]).fingerprint != expected  # another order: another corpus
    assert open_index(paths[:2]).fingerprint != expected
    # a shard built again elsewhere (another machine, another path) from the same manifest
    again = build_index(corpus["manifests"][1], tmp_path / "elsewhere.idx")
    assert open_index([paths[0], str(again.path), paths[2]]).fingerprint == expected
    # the same rows as one index are not the same shards
    assert corpus["reference"].fingerprint != expected
    # a pickled MultiIndex (how a DataLoader worker gets it) maps the same shards again
    copy = pickle.loads(pickle.dumps(multi))
    assert copy.fingerprint == expected and copy.cut_ids([5, 300]) == multi.cut_ids([5, 300])


def test_plans_equal_one_index_of_the_same_rows(corpus) -> None:
    multi, reference = open_index(corpus["paths"]), corpus["reference"]
    for cfg in (CFG, CFG.replace(strategy="random", num_buckets=10), CFG.replace(world_size=2)):
        for epoch in (0, 3):
            ours = plan_epoch(multi.columns, cfg, epoch, cfg.world_size)
            theirs = plan_epoch(reference.columns, cfg, epoch, cfg.world_size)
            assert np.array_equal(ours.rows, theirs.rows)
            assert np.array_equal(ours.batch_offsets, theirs.batch_offsets)


def test_a_plan_writes_its_rows_into_a_column_copy_of_its_own(corpus) -> None:
    multi, reference = open_index(corpus["paths"]), corpus["reference"]
    theirs = plan_epoch(reference.columns, CFG, 1, 3)
    held = multi.columns["duration"]  # a caller's (cached) column: never written over
    ours = plan_epoch(multi.columns, CFG, 1, 3)
    # the plan's rows took the buffer of the duration copy made for it alone
    assert ours.rows.base is not None and ours.rows.base.dtype == np.float64
    assert ours.rows.base.shape[0] > len(multi) and not np.shares_memory(ours.rows, held)
    assert np.array_equal(held, reference.duration) and not held.flags.writeable
    assert np.array_equal(ours.rows, theirs.rows)
    assert np.array_equal(ours.batch_offsets, theirs.batch_offsets)
    assert np.array_equal(multi.columns["duration"], reference.duration)
    # a plan of few rows (a mask keeping 5%) does not keep the whole copy's memory alive
    mask = np.zeros(len(multi), dtype=bool)
    mask[::20] = True
    few = plan_epoch(multi.columns, CFG, 1, 3, mask=mask)
    assert few.rows.base is None or few.rows.base.nbytes < 16 * few.rows.shape[0] + (1 << 22)
    assert np.array_equal(few.rows, plan_epoch(reference.columns, CFG, 1, 3, mask=mask).rows)


def test_exact_resume_over_shards(corpus) -> None:
    paths = corpus["paths"]
    for rank in range(3):
        cfg = CFG.replace(rank=rank)
        whole = DiscoSeqSampler(paths, cfg)
        whole.set_epoch(2)
        expected = batches(whole)
        first = DiscoSeqSampler(paths, cfg)
        first.set_epoch(2)
        it = first.iter_batches_indices()
        for _ in range(4):
            next(it)
        state = json.loads(json.dumps(first.state_dict()))
        resumed = DiscoSeqSampler(list(paths), cfg)  # a fresh process opens the same list
        resumed.load_state_dict(state)
        resumed.set_epoch(2)
        assert expected[:4] + batches(resumed) == expected


def test_elastic_resume_over_shards_delivers_each_remaining_cut_once(corpus) -> None:
    paths = corpus["paths"]
    old = [DiscoSeqSampler(paths, CFG.replace(rank=r)) for r in range(3)]
    steps = len(old[0]) // 2
    delivered: Counter[int] = Counter()
    for s in old:
        s.set_epoch(1)
        for b in batches(s)[:steps]:
            delivered.update(b)
    state = old[0].state_dict(batches_delivered=steps)
    new = [DiscoSeqSampler(paths, CFG.replace(world_size=2, rank=r)) for r in range(2)]
    after: Counter[int] = Counter()
    for s in new:
        s.load_state_dict(state)
        s.set_epoch(1)
        for b in batches(s):
            after.update(b)
    plan = new[0].plan
    padding = Counter(r for b in plan.padding_batches.tolist() for r in plan.batch(b).tolist())
    assert set(delivered) | set(after) == set(range(sum(SIZES)))
    assert not set(delivered) & set(after)  # nothing delivered before is delivered again
    assert all(after[r] == 1 + padding[r] for r in after)  # once, plus the tail padding


def test_state_of_other_shards_is_refused(corpus) -> None:
    paths = corpus["paths"]
    s = DiscoSeqSampler(paths, CFG)
    next(s.iter_batches_indices())
    state = s.state_dict()
    for other in (paths[::-1], paths[:2], [corpus["reference"].path]):
        with pytest.raises(ValueError, match="another index"):
            DiscoSeqSampler(other, CFG).load_state_dict(state)


def test_workers_resolve_across_shards(corpus) -> None:
    paths = corpus["paths"]
    cfg = CFG.replace(num_workers=2)
    loader = create_dataloader(paths, cfg, dataset=None)
    got = [[c.id for c in cuts] for cuts in loader]
    plan_sampler = DiscoSeqSampler(paths, CFG)
    multi = plan_sampler.index
    assert got == [multi.cut_ids(b) for b in plan_sampler.iter_batches_indices()]


def test_a_shard_listed_twice_is_refused(corpus, tmp_path) -> None:
    """Two shards of the same content hold the same cut ids: every cut of the shard would be
    planned twice an epoch (one index of the same manifests refuses duplicate ids)."""
    paths = corpus["paths"]
    again = build_index(corpus["manifests"][1], tmp_path / "again.idx").path  # a copy elsewhere
    for listed in ([paths[0], paths[1], paths[1]], [paths[0], paths[1], str(again)]):
        with pytest.raises(ValueError, match=r"shards 1 and 2 .* same cuts") as err:
            open_index(listed)
        assert listed[1] in str(err.value) and listed[2] in str(err.value)
    with pytest.raises(ValueError, match="same cuts"):
        DiscoSeqSampler([paths[0], paths[0]], CFG)
    # a mixture may name one index twice (two sources, each with its weight)
    assert len(open_index({"a": paths[0], "b": paths[0]})) == 2 * SIZES[0]


def test_open_index_errors_name_the_shard(corpus, tmp_path) -> None:
    paths = corpus["paths"]
    with pytest.raises(ValueError, match="no index paths"):
        open_index([])
    with pytest.raises(TypeError, match="entry 1 is a int"):
        open_index([paths[0], 7])
    with pytest.raises(TypeError, match="got int"):
        open_index(7)  # type: ignore[arg-type]
    missing = tmp_path / "gone.idx"
    with pytest.raises(IndexFormatError, match=str(missing)):
        open_index([paths[0], str(missing)])
    with pytest.raises(TypeError, match="a list of index paths"):
        MultiIndex.open(paths[0])
    # a mapping of names is a mixture's sources
    named = open_index({"a": paths[0], "b": paths[1]})
    assert isinstance(named, MultiIndex) and named.names == ("a", "b")
