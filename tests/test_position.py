"""The position always describes what was delivered: a stale iteration raises instead of moving
it, and a state that would allocate absurdly or replay past its plan is refused before any
plan is made."""

from __future__ import annotations

import pytest

from discoseq import DiscoSeqSampler, SamplerConfig, create_dataloader
from discoseq.index import CutIndex, build_index
from discoseq.synth import write_manifest

CFG = SamplerConfig(max_duration=60.0, num_buckets=3)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> CutIndex:
    root = tmp_path_factory.mktemp("position")
    write_manifest(root / "cuts.jsonl", 150, seed=9)
    return build_index(root / "cuts.jsonl", root / "index")


def test_set_epoch_during_an_iteration_makes_it_stale(index) -> None:
    s = DiscoSeqSampler(index, CFG)
    it = s.iter_batches_indices()
    next(it), next(it)
    s.set_epoch(1)
    with pytest.raises(RuntimeError, match="stale"):
        next(it)
    assert (s.state_dict()["epoch"], s.state_dict()["batches_delivered"]) == (1, 0)


def test_old_iteration_cannot_overwrite_a_restored_position(index) -> None:
    s = DiscoSeqSampler(index, CFG)
    it = s.iter_batches_indices()
    for _ in range(3):
        next(it)
    state = s.state_dict()
    other = DiscoSeqSampler(index, CFG)
    rest = other.iter_batches_indices()
    for _ in range(7):
        next(rest)
    other.load_state_dict(state)
    with pytest.raises(RuntimeError, match="stale"):
        next(rest)
    assert other.state_dict()["batches_delivered"] == 3


def test_two_iterations_do_not_share_a_counter(index) -> None:
    s = DiscoSeqSampler(index, CFG)
    first = s.iter_batches_indices()
    next(first)
    second = s.iter_batches_indices()
    next(second)
    with pytest.raises(RuntimeError, match="stale"):
        next(first)
    assert s.batches_delivered == 1


def test_loader_iteration_goes_stale_too(index) -> None:
    loader = create_dataloader(index, CFG)
    it = iter(loader)
    next(it), next(it)
    loader.dataset.set_epoch(3)
    with pytest.raises(RuntimeError, match="stale"):
        next(it)
    assert loader.state_dict()["batches_delivered"] == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"history": [[10**9, 5]]}, "history entry"),
        ({"history": [[2, 10**6]]}, "exceeds the"),
        ({"history": "x"}, "history="),
        ({"world_size": 10**12}, "world_size="),
        ({"batches_delivered": 2**70}, "batches_delivered="),
    ],
)
def test_absurd_states_are_refused_cheaply(index, change: dict, match: str) -> None:
    s = DiscoSeqSampler(index, CFG)
    state = {**s.state_dict(), **change}
    with pytest.raises(ValueError, match=match):
        s.load_state_dict(state)
    assert s.state_dict()["batches_delivered"] == 0


def test_world_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="world_size="):
        SamplerConfig(max_cuts=2, world_size=2**40)


def test_sampler_iteration_goes_stale_too(index) -> None:
    s = DiscoSeqSampler(index, CFG)
    it = iter(s)
    next(it)
    again = iter(s)
    next(again)
    with pytest.raises(RuntimeError, match="stale"):
        next(it)
    assert s.batches_delivered == 1
