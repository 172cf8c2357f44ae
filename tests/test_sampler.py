"""DiscoSeqSampler: sources, iteration against the plan, DataLoader integration (IterableDataset
and Sampler modes), exact length, read-ahead window, diagnostics, rank/world detection."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet
from torch.utils.data import DataLoader

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index
from discoseq.distributed import detect_rank_world
from discoseq.synth import write_manifest
from tests.plan_log import count_plans, plans_made

N = 240
CFG = SamplerConfig(max_duration=80.0, num_buckets=4, buffer_size=40)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CutIndex]:
    root = tmp_path_factory.mktemp("sampler")
    manifest = root / "cuts.jsonl.gz"
    write_manifest(manifest, N, profile="mixed", seed=3, mixed_fraction=0.1)
    return manifest, build_index(manifest, root / "index")


def ids_of(batches) -> list[tuple[str, ...]]:
    return [tuple(c.id for c in b) for b in batches]


def plan_ids(sampler: DiscoSeqSampler, index: CutIndex) -> list[tuple[str, ...]]:
    plan = sampler.plan
    return [tuple(index.cut_ids(plan.batch(i))) for i in plan.rank_view(sampler.rank)]


def test_iteration_follows_the_plan(corpus) -> None:
    _, index = corpus
    s = DiscoSeqSampler(index, CFG)
    batches = list(s)
    assert all(isinstance(b, CutSet) for b in batches)
    assert ids_of(batches) == plan_ids(s, index)
    assert len(s) == len(batches) == s.plan.batches_per_rank
    assert sorted(c for b in ids_of(batches) for c in b) == sorted(index.cut_ids(range(N)))
    rows = list(s.iter_batches_indices())
    assert [tuple(index.cut_ids(r)) for r in rows] == ids_of(batches)
    assert s.state_dict()["batches_delivered"] == len(batches)


def test_sources_agree(corpus, tmp_path: Path) -> None:
    manifest, index = corpus
    reference = ids_of(DiscoSeqSampler(index, CFG))
    assert ids_of(DiscoSeqSampler(str(index.path), CFG)) == reference
    from_manifest = DiscoSeqSampler(manifest, CFG, progress=False)
    tmpdir = str(from_manifest.index.path.parent)  # the temporary directory of the build
    assert tmpdir is not None and os.path.isdir(tmpdir)
    assert ids_of(from_manifest) == reference
    del from_manifest
    import gc

    gc.collect()
    assert not os.path.exists(tmpdir), "the temporary index is removed with the sampler"
    eager = CutSet.from_file(manifest).to_eager()
    assert ids_of(DiscoSeqSampler(eager, CFG, progress=False)) == reference
    lazy = CutSet.from_file(manifest)
    assert ids_of(DiscoSeqSampler(lazy, CFG, progress=False)) == reference


def test_cache_index_next_to_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "c.jsonl"
    write_manifest(manifest, 30, seed=1)
    s = DiscoSeqSampler(manifest, CFG, cache_index=True, progress=False)
    cached = tmp_path / "c.jsonl.discoseq-index"
    assert s.index.path == cached and (cached / "header.json").exists()
    mtime = (cached / "header.json").stat().st_mtime_ns
    again = DiscoSeqSampler(manifest, CFG, cache_index=True, progress=False)
    assert (cached / "header.json").stat().st_mtime_ns == mtime, "reused, not rebuilt"
    assert again.index.fingerprint == s.index.fingerprint
    other = tmp_path / "d.jsonl"
    write_manifest(other, 20, seed=2)
    with pytest.raises(ValueError, match="holds an index of"):
        DiscoSeqSampler(other, CFG, cache_index=cached, progress=False)
    with pytest.raises(ValueError, match="a CutSet has none"):
        DiscoSeqSampler(CutSet.from_file(manifest), CFG, cache_index=True, progress=False)


def _open_cached(manifest: Path) -> str:
    try:
        s = DiscoSeqSampler(manifest, CFG, cache_index=True, progress=False)
        return f"ok {len(s.index)}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"


@pytest.mark.slow
def test_cache_index_built_once_by_concurrent_processes(tmp_path: Path, monkeypatch) -> None:
    """Every rank of a job on one machine asks for the same cache at once: one builds, the
    others wait and open it (no rank reads a directory another is swapping into place)."""
    import multiprocessing as mp
    import time

    import discoseq.index.opener as opener_module

    manifest = tmp_path / "c.jsonl.gz"
    write_manifest(manifest, 40, seed=4)
    log = tmp_path / "builds.log"
    real_build = opener_module.build_index

    def slow_build(*args, **kwargs):  # widen the window in which the others would also build
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(opener_module, "build_index", slow_build)
    with mp.get_context("fork").Pool(4) as pool:
        results = pool.map(_open_cached, [manifest] * 4)
    assert results == ["ok 40"] * 4
    assert len(log.read_text().split()) == 1, "built once"


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest or index"):
        DiscoSeqSampler(tmp_path / "missing.jsonl", CFG)
    with pytest.raises(TypeError, match="source must be"):
        DiscoSeqSampler(42, CFG)
    with pytest.raises(TypeError, match="config must be a SamplerConfig"):
        DiscoSeqSampler(tmp_path, "max_duration=3")  # type: ignore[arg-type]


def test_real_lhotse_fixtures_resolve(fixtures_dir: Path, tmp_path: Path) -> None:
    for name in ("libri_cuts.json", "ami_cuts.json", "lsmix_cuts.000000.jsonl.gz"):
        expected = {c.id: c for c in CutSet.from_file(fixtures_dir / name)}
        s = DiscoSeqSampler(fixtures_dir / name, SamplerConfig(max_cuts=2), progress=False)
        got = [c for b in s for c in b]
        assert sorted(c.id for c in got) == sorted(expected)
        for cut in got:
            assert cut.to_dict() == expected[cut.id].to_dict()


@pytest.mark.parametrize("buffer_size", [0, 1, 17, 10_000])
def test_buffer_size_never_changes_the_batches(corpus, buffer_size: int) -> None:
    _, index = corpus
    reference = ids_of(DiscoSeqSampler(index, CFG))
    got = list(DiscoSeqSampler(index, CFG.replace(buffer_size=buffer_size)))
    assert ids_of(got) == reference
    expected = {c.id: c.to_dict() for c in index.resolve(np.arange(N))}
    assert all(c.to_dict() == expected[c.id] for b in got for c in b)


def test_dataloader_workers_split_in_order(corpus) -> None:
    _, index = corpus
    s = DiscoSeqSampler(index, CFG.replace(strategy="random", num_buckets=10))
    reference = ids_of(s)
    for workers in (0, 2):
        loader = DataLoader(s, batch_size=None, num_workers=workers)
        assert len(loader) == len(reference)
        batches = list(loader)
        assert all(isinstance(b, CutSet) for b in batches)
        assert ids_of(batches) == reference
    # a later epoch reaches the workers (they get a fresh copy per epoch)
    s.set_epoch(3)
    epoch3 = ids_of(s)
    assert epoch3 != reference
    assert ids_of(DataLoader(s, batch_size=None, num_workers=2)) == epoch3


class _IdsDataset:
    """A Lhotse-style dataset: ``dataset[cuts] -> batch``."""

    def __getitem__(self, cuts: CutSet) -> dict:
        return {"ids": [c.id for c in cuts], "duration": sum(c.duration for c in cuts)}


def test_sampler_mode_with_a_lhotse_style_dataset(corpus) -> None:
    _, index = corpus
    s = DiscoSeqSampler(index, CFG)
    reference = plan_ids(s, index)
    loader = DataLoader(_IdsDataset(), sampler=s, batch_size=None, num_workers=2)
    assert [tuple(b["ids"]) for b in loader] == reference


def test_world_split_is_disjoint_and_equal(corpus) -> None:
    _, index = corpus
    for drop_last in (True, False):
        cfg = CFG.replace(world_size=3, drop_last=drop_last)
        per_rank = [ids_of(DiscoSeqSampler(index, cfg.replace(rank=r))) for r in range(3)]
        assert len({len(b) for b in per_rank}) == 1
        cuts = [c for batches in per_rank for b in batches for c in b]
        if drop_last:
            assert len(cuts) == len(set(cuts))
        else:
            assert set(cuts) == set(index.cut_ids(range(N)))


def test_len_and_diagnostics(corpus) -> None:
    _, index = corpus
    s = DiscoSeqSampler(index, CFG.replace(world_size=4, rank=1, min_duration=1.0))
    d = s.diagnostics()
    plan = s.plan
    assert len(s) == d["batches_per_rank"] == plan.batches_per_rank
    assert d["num_batches"] == plan.num_batches and d["padding_batches"] == plan.num_padding
    assert d["cuts_in"] == N and d["filtered"]["min_duration"] > 0
    assert d["cuts_planned"] == N - d["filtered"]["min_duration"]
    assert d["rank_cuts"] == sum(len(b) for b in s.iter_batches_indices())
    assert (d["world_size"], d["rank"], d["epoch"]) == (4, 1, 0)
    assert d["total_duration"] == pytest.approx(float(index.duration[index.duration >= 1.0].sum()))


def test_set_epoch_changes_order_deterministically(corpus) -> None:
    _, index = corpus
    a, b = DiscoSeqSampler(index, CFG), DiscoSeqSampler(index, CFG)
    a.set_epoch(1)
    b.set_epoch(1)
    assert ids_of(a) == ids_of(b)
    b.set_epoch(2)
    assert ids_of(a) != ids_of(b)
    with pytest.raises(ValueError, match="epoch=-1"):
        a.set_epoch(-1)


def test_pickles_without_the_plan(corpus) -> None:
    _, index = corpus
    s = DiscoSeqSampler(index, CFG)
    _ = s.plan
    blob = pickle.dumps(s)
    assert len(blob) < 4000
    assert ids_of(pickle.loads(blob)) == ids_of(s)


def test_rank_world_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert detect_rank_world(env={}) == (0, 1)
    assert detect_rank_world(env={"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}) == (2, 4)
    assert detect_rank_world(world_size=8, rank=5, env={"RANK": "2", "WORLD_SIZE": "4"}) == (5, 8)
    assert detect_rank_world(rank=1, env={"WORLD_SIZE": "4"}) == (1, 4)
    with pytest.raises(ValueError, match="not a valid pair"):
        detect_rank_world(env={"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="RANK='x'"):
        detect_rank_world(env={"RANK": "x"})
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert detect_rank_world() == (1, 2)


def test_readme_dataloader_pattern_plans_once_in_the_main_process(corpus, tmp_path, monkeypatch):
    """``DataLoader(sampler, batch_size=None, num_workers=K)`` after ``set_epoch``: the main
    process plans the epoch before the workers fork, and the (forked) workers share that plan
    instead of each planning the whole epoch again."""
    _, index = corpus
    log = tmp_path / "plans"
    count_plans(monkeypatch, log)
    s = DiscoSeqSampler(index, CFG)
    loader = DataLoader(s, batch_size=None, num_workers=2, multiprocessing_context="fork")
    for epoch in (0, 1):
        s.set_epoch(epoch)
        got = ids_of(loader)
        assert got == plan_ids(s, index)
        assert plans_made(log) == [os.getpid()] * (epoch + 1)  # once, in this process


def test_worker_restore_reuses_the_plan_the_main_process_made(corpus, tmp_path, monkeypatch):
    """A same-world restore of the epoch already planned (as a forked worker of torchdata's
    StatefulDataLoader restores its copy) takes the cached plan instead of planning again."""
    _, index = corpus
    s = DiscoSeqSampler(index, CFG)
    s.set_epoch(2)
    it = iter(s)
    for _ in range(3):
        next(it)
    state = s.state_dict()
    log = tmp_path / "plans"
    count_plans(monkeypatch, log)
    s.set_epoch(2)  # the plan of epoch 2 is cached
    s.load_state_dict(state)
    assert plans_made(log) == []
    fresh = DiscoSeqSampler(index, CFG)
    fresh.load_state_dict(state)  # nothing cached: one plan
    assert len(plans_made(log)) == 1
    assert ids_of(s) == ids_of(fresh) == plan_ids(fresh, index)[3:]


def test_a_finished_state_loaded_after_set_epoch_of_the_next_epoch_keeps_its_plan(
    corpus, tmp_path, monkeypatch
):
    """torchdata's order: ``set_epoch(e + 1)`` (which plans it), then a state saved at the end
    of epoch ``e`` restored when iteration starts: epoch ``e`` is planned once to check the
    state, and epoch ``e + 1`` is not planned a second time."""
    _, index = corpus
    s = DiscoSeqSampler(index, CFG)
    s.set_epoch(0)
    ids_of(s)
    state = s.state_dict()
    log = tmp_path / "plans"
    count_plans(monkeypatch, log)
    fresh = DiscoSeqSampler(index, CFG)
    fresh.set_epoch(1)
    fresh.load_state_dict(state)
    got = ids_of(fresh)
    assert len(plans_made(log)) == 2  # epoch 1 by set_epoch, epoch 0 by the restore
    expected = DiscoSeqSampler(index, CFG)
    expected.set_epoch(1)
    assert got == ids_of(expected)
