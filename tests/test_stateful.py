"""torchdata's StatefulDataLoader over a DiscoSeqSampler (as its sampler, or as its dataset with
workers): its state_dict -> JSON -> a fresh loader resumes exactly; sampler_state turns its
state into a plain sampler position; a DataLoader that batches the batches again is refused."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import pytest
from lhotse import CutSet
from torch.utils.data import DataLoader

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index, create_dataloader
from discoseq.stateful import BatchIterator, resume_epoch, sampler_state
from discoseq.synth import write_manifest
from tests.plan_log import count_plans, plans_made

torchdata = pytest.importorskip("torchdata.stateful_dataloader")
StatefulDataLoader = torchdata.StatefulDataLoader

# torchdata 0.11 calls torch.set_vital, deprecated in recent torch: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")

N = 200
CFG = SamplerConfig(max_duration=60.0, num_buckets=3)
MODES = [("sampler", 0), ("sampler", 2), ("dataset", 0), ("dataset", 2)]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> CutIndex:
    root = tmp_path_factory.mktemp("stateful")
    write_manifest(root / "cuts.jsonl", N, seed=5)
    return build_index(root / "cuts.jsonl", root / "index")


def ids_of(batches) -> list[tuple[str, ...]]:
    return [tuple(c.id for c in b) for b in batches]


def reference(index: CutIndex, epoch: int) -> list[tuple[str, ...]]:
    sampler = DiscoSeqSampler(index, CFG)
    sampler.set_epoch(epoch)
    return ids_of(sampler)


class _Cuts:
    """A Lhotse-style dataset in front of the sampler: ``dataset[cuts] -> batch``."""

    def __getitem__(self, cuts: CutSet) -> CutSet:
        return cuts


Make = Callable[[], tuple[StatefulDataLoader, DiscoSeqSampler]]


def maker(index: CutIndex, mode: str, workers: int, **kwargs) -> Make:
    """A fresh sampler and StatefulDataLoader per call (a new process would build the same)."""

    def make() -> tuple[StatefulDataLoader, DiscoSeqSampler]:
        sampler = DiscoSeqSampler(index, CFG, progress=False)
        if mode == "sampler":
            loader = StatefulDataLoader(
                _Cuts(), sampler=sampler, batch_size=None, num_workers=workers, **kwargs
            )
        else:
            loader = StatefulDataLoader(sampler, batch_size=None, num_workers=workers, **kwargs)
        return loader, sampler

    return make


def take(loader: StatefulDataLoader, n: int) -> tuple[list[tuple[str, ...]], dict]:
    """The first ``n`` batches of a pass, and the loader's state (through JSON) after them."""
    it = iter(loader)
    got = [next(it) for _ in range(n)]
    state = json.loads(json.dumps(loader.state_dict()))
    del it
    return ids_of(got), state


@pytest.mark.parametrize(("mode", "workers"), MODES)
def test_resumes_exactly(index: CutIndex, mode: str, workers: int) -> None:
    make = maker(index, mode, workers)
    expected = reference(index, 1)
    for stop in (0, 1, 5, len(expected)):
        loader, sampler = make()
        sampler.set_epoch(1)
        head, state = take(loader, stop)
        assert head == expected[:stop]
        position = sampler_state(state)
        assert (position["epoch"], position["batches_delivered"]) == (1, stop)

        resumed, sampler = make()
        resumed.load_state_dict(state)
        sampler.set_epoch(1)  # the loop's epoch start: keeps the restored position
        assert ids_of(resumed) == expected[stop:], f"stopped after {stop}"


@pytest.mark.parametrize(("mode", "workers"), MODES)
def test_resume_twice_then_next_epoch(index: CutIndex, mode: str, workers: int) -> None:
    make = maker(index, mode, workers)
    epoch0, epoch1 = reference(index, 0), reference(index, 1)
    loader, _ = make()
    first, state = take(loader, 4)
    loader, _ = make()
    loader.load_state_dict(state)
    second, state = take(loader, 3)  # counted from the epoch start, not from the resume
    assert sampler_state(state)["batches_delivered"] == 7
    loader, sampler = make()
    loader.load_state_dict(state)
    assert first + second + ids_of(loader) == epoch0
    sampler.set_epoch(1)
    assert ids_of(loader) == epoch1


@pytest.mark.parametrize(("mode", "workers"), MODES)
@pytest.mark.parametrize("pass_ended", [False, True])
def test_state_at_the_end_of_an_epoch(
    index: CutIndex, mode: str, workers: int, pass_ended: bool
) -> None:
    """A state saved after the last batch, inside the loop or after it (the pass ended): the
    loop that resumes at resume_epoch(state) delivers what an uninterrupted one would."""
    make = maker(index, mode, workers)
    epoch0, epoch1 = reference(index, 0), reference(index, 1)
    loader, _ = make()
    it = iter(loader)
    for _ in epoch0:
        next(it)
    if pass_ended:
        with pytest.raises(StopIteration):
            next(it)
    state = json.loads(json.dumps(loader.state_dict()))
    del it
    assert resume_epoch(state) == (1 if pass_ended else 0)

    loader, sampler = make()
    loader.load_state_dict(state)
    got = []
    for epoch in range(resume_epoch(state), 2):
        sampler.set_epoch(epoch)
        got.append(ids_of(loader))
    assert got == ([epoch1] if pass_ended else [[], epoch1])
    if workers == 0:  # Lightning's order: iter() (which restores), then set_epoch(next epoch)
        loader, sampler = make()
        loader.load_state_dict(state)
        it = iter(loader)
        sampler.set_epoch(1)
        assert ids_of(it) == epoch1


def test_snapshots_every_n_steps(index: CutIndex) -> None:
    make = maker(index, "dataset", 2, snapshot_every_n_steps=3)
    expected = reference(index, 0)
    loader, _ = make()
    head, state = take(loader, 7)  # a snapshot at 6, one step since
    assert sampler_state(state)["batches_delivered"] == 7
    loader, _ = make()
    loader.load_state_dict(state)
    assert head + ids_of(loader) == expected


def test_sampler_state_resumes_with_other_workers_and_world(index: CutIndex) -> None:
    loader, _ = maker(index, "dataset", 2)()
    head, state = take(loader, 5)
    position = sampler_state(state)
    expected = reference(index, 0)
    other = create_dataloader(index, CFG)  # another loader and number of workers
    other.load_state_dict(position)
    assert head + ids_of(other) == expected
    # elastic: the rest of the epoch on 2 ranks, every cut not yet delivered exactly once
    rest = []
    for rank in (0, 1):
        ranked = DiscoSeqSampler(index, CFG.replace(world_size=2, rank=rank))
        ranked.load_state_dict(position)
        rest += [c for b in ids_of(ranked) for c in b]
    seen = {c for b in head for c in b}
    assert set(rest) == {c for b in expected for c in b} - seen
    with pytest.raises(ValueError, match="no DiscoSeqSampler state"):
        sampler_state({"_num_yielded": 0})


def test_iterator_state_is_checked(index: CutIndex) -> None:
    sampler = DiscoSeqSampler(index, CFG)
    it = iter(sampler)
    assert isinstance(it, BatchIterator)
    assert it.state_dict() == {
        "type": "DiscoSeqSampler.iterator",
        "worker_id": None,
        "num_workers": 0,
        "batches_yielded": 0,
    }
    worker_state = {**it.state_dict(), "worker_id": 1, "num_workers": 2, "batches_yielded": 3}
    with pytest.raises(ValueError, match="same num_workers"):
        it.load_state_dict(worker_state)
    for bad in ({}, {**it.state_dict(), "batches_yielded": -1}):
        with pytest.raises(ValueError):
            it.load_state_dict(bad)
    next(it)
    assert it.state_dict()["batches_yielded"] == 1 == sampler.batches_delivered
    with pytest.raises(ValueError, match="before next"):
        it.load_state_dict(it.state_dict())


def test_end_of_epoch_state_loaded_after_a_later_set_epoch(index: CutIndex) -> None:
    sampler = DiscoSeqSampler(index, CFG)
    list(sampler)
    done = sampler.state_dict()
    mid = {**done, "batches_delivered": 3}
    fresh = DiscoSeqSampler(index, CFG)
    fresh.set_epoch(1)
    fresh.load_state_dict(done)  # epoch 0 is over and epoch 1 is selected: epoch 1 starts
    assert ids_of(fresh) == reference(index, 1)
    fresh.set_epoch(1)
    fresh.load_state_dict(mid)  # an unfinished epoch: the state wins
    assert ids_of(fresh) == reference(index, 0)[3:]
    fresh.load_state_dict(done)  # nothing selected after the last pass: epoch 0 is over
    assert ids_of(fresh) == []


def test_a_dataloader_that_batches_again_is_refused(index: CutIndex) -> None:
    sampler = DiscoSeqSampler(index, CFG)
    cases = [
        (DataLoader(sampler), r"batches of 1: pass batch_size=None, as in DataLoader\(sampler,"),
        (DataLoader(sampler, batch_size=4), "batches of 4"),
        (DataLoader(_Cuts(), sampler=sampler), r"DataLoader\(dataset, sampler=sampler, batch_size"),
        (DataLoader(_Cuts(), sampler=sampler, batch_size=2, drop_last=True), "batches of 2"),
        (StatefulDataLoader(sampler), "batch_size=None"),
        (StatefulDataLoader(_Cuts(), sampler=sampler), "batch_size=None"),
    ]
    for loader, message in cases:
        with pytest.raises(ValueError, match=message) as caught:
            next(iter(loader))
        assert "whole batches (CutSets)" in str(caught.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ids_of(DataLoader(sampler, batch_size=None)) == reference(index, 0)


@pytest.mark.slow  # torch waits 5 s for a worker that raised to stop
def test_a_dataloader_that_batches_again_is_refused_in_a_worker(index: CutIndex) -> None:
    sampler = DiscoSeqSampler(index, CFG)
    loader = DataLoader(sampler, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(ValueError, match="pass batch_size=None"):
        next(iter(loader))


def test_dataset_form_with_workers_plans_once_in_the_main_process(
    index: CutIndex, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming ``StatefulDataLoader(sampler, batch_size=None, num_workers=2)``: ``set_epoch``
    plans the epoch in the main process, and each forked worker restores its share from that
    plan instead of planning the whole epoch again."""
    import os

    make = maker(index, "dataset", 2, multiprocessing_context="fork")
    expected = reference(index, 1)
    loader, sampler = make()
    sampler.set_epoch(1)
    _, state = take(loader, 5)

    log = tmp_path / "plans"
    count_plans(monkeypatch, log)
    resumed, sampler = make()
    resumed.load_state_dict(state)
    sampler.set_epoch(resume_epoch(state))
    assert ids_of(resumed) == expected[5:]
    assert plans_made(log) == [os.getpid()]
