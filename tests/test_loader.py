"""create_dataloader: DataLoader options from the config, a dataset run in the workers, and the
count of batches delivered to the training loop (not the prefetched ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lhotse import CutSet

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index, create_dataloader
from discoseq.loader import DiscoSeqDataLoader, ResolvingDataset
from discoseq.synth import write_manifest

N = 200
CFG = SamplerConfig(max_duration=60.0, num_buckets=3)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> CutIndex:
    root = tmp_path_factory.mktemp("loader")
    write_manifest(root / "cuts.jsonl", N, seed=5)
    return build_index(root / "cuts.jsonl", root / "index")


def ids_of(batches) -> list[tuple[str, ...]]:
    return [tuple(c.id for c in b) for b in batches]


class _Lengths:
    """A Lhotse-style dataset (``dataset[cuts] -> batch``) run in the DataLoader workers."""

    def __getitem__(self, cuts: CutSet) -> dict:
        import os

        return {"ids": [c.id for c in cuts], "pid": os.getpid()}


def test_loader_yields_cutsets_in_sampler_order(index: CutIndex) -> None:
    reference = ids_of(DiscoSeqSampler(index, CFG))
    for workers in (0, 2):
        loader = create_dataloader(index, CFG.replace(num_workers=workers))
        assert isinstance(loader, DiscoSeqDataLoader)
        assert isinstance(loader.dataset, ResolvingDataset)
        assert len(loader) == len(reference)
        batches = list(loader)
        assert all(isinstance(b, CutSet) for b in batches)
        assert ids_of(batches) == reference
        assert loader.state_dict()["batches_delivered"] == len(reference)


def test_options_reach_the_dataloader(index: CutIndex) -> None:
    loader = create_dataloader(
        index, CFG.replace(num_workers=2, prefetch_factor=3, pin_memory=True), timeout=30
    )
    assert (loader.num_workers, loader.prefetch_factor, loader.pin_memory) == (2, 3, True)
    assert loader.persistent_workers and loader.timeout == 30
    single = create_dataloader(index, CFG)
    assert single.num_workers == 0 and not single.persistent_workers
    for bad in ("batch_size", "shuffle", "sampler", "num_workers"):
        with pytest.raises(ValueError, match=f"{bad}="):
            create_dataloader(index, CFG, **{bad: 1})
    with pytest.raises(ValueError, match="config is required"):
        create_dataloader(index)


def test_dataset_runs_in_workers_and_set_epoch_reaches_persistent_workers(index: CutIndex) -> None:
    import os

    sampler = DiscoSeqSampler(index, CFG)
    loader = create_dataloader(sampler, dataset=_Lengths())
    assert loader.discoseq_sampler is sampler
    assert [tuple(b["ids"]) for b in loader] == ids_of(DiscoSeqSampler(index, CFG))
    par = create_dataloader(index, CFG.replace(num_workers=2), dataset=_Lengths())
    for epoch in (0, 1):
        par.dataset.set_epoch(epoch)
        expected = DiscoSeqSampler(index, CFG)
        expected.set_epoch(epoch)
        batches = list(par)
        assert [tuple(b["ids"]) for b in batches] == ids_of(expected)
        assert all(b["pid"] != os.getpid() for b in batches)


def test_counts_delivered_not_prefetched(index: CutIndex) -> None:
    loader = create_dataloader(index, CFG.replace(num_workers=2, prefetch_factor=4))
    it = iter(loader)
    first = [next(it) for _ in range(3)]
    assert loader.state_dict()["batches_delivered"] == 3
    assert loader.discoseq_sampler.state_dict()["batches_delivered"] == 3
    state = json.loads(json.dumps(loader.state_dict()))
    rest = list(it)
    reference = ids_of(DiscoSeqSampler(index, CFG))
    assert ids_of(first + rest) == reference
    # restore with another number of workers: exactly the remaining batches
    for workers in (0, 1, 2):
        other = create_dataloader(index, CFG.replace(num_workers=workers))
        other.load_state_dict(state)
        other.dataset.set_epoch(0)  # keeps the restored position
        assert len(other) == len(reference) - 3
        assert ids_of(other) == reference[3:]
        assert other.state_dict()["batches_delivered"] == len(reference)


def test_state_before_the_first_batch_is_the_epoch_start(index: CutIndex) -> None:
    loader = create_dataloader(index, CFG.replace(num_workers=1))
    list(loader)
    loader.dataset.set_epoch(1)
    it = iter(loader)
    assert loader.state_dict()["batches_delivered"] == 0
    next(it)
    state = loader.state_dict()
    assert (state["epoch"], state["batches_delivered"]) == (1, 1)


def test_broken_loop_then_new_epoch(index: CutIndex) -> None:
    loader = create_dataloader(index, CFG)
    for i, _ in enumerate(loader):
        if i == 4:
            break
    assert loader.state_dict()["batches_delivered"] == 5
    loader.dataset.set_epoch(1)
    expected = DiscoSeqSampler(index, CFG)
    expected.set_epoch(1)
    assert ids_of(loader) == ids_of(expected)


def test_sampler_config_must_match(index: CutIndex, tmp_path: Path) -> None:
    sampler = DiscoSeqSampler(index, CFG)
    with pytest.raises(ValueError, match="differs"):
        create_dataloader(sampler, CFG.replace(seed=1))


@pytest.mark.parametrize("workers", [0, 2])
def test_read_ahead_windows_never_change_batches(index: CutIndex, workers: int) -> None:
    reference = ids_of(DiscoSeqSampler(index, CFG))
    for size in (0, 1, 25, 10_000):
        loader = create_dataloader(index, CFG.replace(buffer_size=size, num_workers=workers))
        batches = list(loader)
        assert ids_of(batches) == reference
        by_id = {c.id: c for c in index.resolve(range(N))}
        assert all(c.to_dict() == by_id[c.id].to_dict() for b in batches[:5] for c in b)


def test_windows_follow_the_round_robin(index: CutIndex) -> None:
    from discoseq.loader import _RowSampler

    sampler = DiscoSeqSampler(index, CFG.replace(buffer_size=20))
    rows_sampler = _RowSampler(sampler, 3)
    rows_sampler.view = sampler.begin_epoch()
    items = list(rows_sampler)
    assert sampler.batches_delivered == 0, "the row sampler never moves the position"
    for w in range(3):
        window: set[int] = set()
        for rows, ahead in items[w::3]:
            if ahead is not None:
                window = set(ahead.tolist())
                assert len(window) >= min(20, len(window))
            assert set(rows.tolist()) <= window
