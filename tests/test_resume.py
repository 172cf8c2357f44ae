"""Exact resumption: a state is small JSON; restoring yields exactly what an uninterrupted run
yields next; mismatches are refused naming field and both values; elastic world-size changes
deliver every remaining cut and none twice; a hypothesis state machine against the reference."""

from __future__ import annotations

import copy
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index
from discoseq.synth import write_manifest

N = 300
CFG = SamplerConfig(max_duration=70.0, num_buckets=4)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> CutIndex:
    root = tmp_path_factory.mktemp("resume")
    write_manifest(root / "cuts.jsonl", N, seed=11)
    return build_index(root / "cuts.jsonl", root / "index")


def rows_list(sampler: DiscoSeqSampler) -> list[tuple[int, ...]]:
    return [tuple(r.tolist()) for r in sampler.iter_batches_indices()]


def roundtrip(state: dict) -> dict:
    return json.loads(json.dumps(state))


def test_state_is_small_json(index: CutIndex) -> None:
    s = DiscoSeqSampler(index, CFG)
    it = s.iter_batches_indices()
    for _ in range(4):
        next(it)
    state = s.state_dict()
    assert roundtrip(state) == state
    assert len(json.dumps(state)) < 1024
    assert state["batches_delivered"] == 4 and state["epoch"] == 0 and state["history"] == []


@pytest.mark.parametrize("strategy", ["bucketed", "random", "sequential"])
def test_restore_mid_epoch_is_exact(index: CutIndex, strategy: str) -> None:
    cfg = CFG.replace(strategy=strategy, num_buckets=10 if strategy != "bucketed" else 4)
    ref = DiscoSeqSampler(index, cfg)
    ref.set_epoch(2)
    full = rows_list(ref)
    for k in (0, 1, len(full) // 2, len(full)):
        s = DiscoSeqSampler(index, cfg)
        s.set_epoch(2)
        it = s.iter_batches_indices()
        for _ in range(k):
            next(it)
        state = roundtrip(s.state_dict())
        fresh = DiscoSeqSampler(index, cfg.replace(num_workers=3))  # may differ on resume
        fresh.load_state_dict(state)
        fresh.set_epoch(2)  # keeps the position
        assert len(fresh) == len(full) - k
        assert rows_list(fresh) == full[k:]
        fresh.set_epoch(3)
        ref.set_epoch(3)
        assert rows_list(fresh) == rows_list(ref)
        ref.set_epoch(2)


def test_restore_then_iterate_cutsets(index: CutIndex) -> None:
    s = DiscoSeqSampler(index, CFG)
    it = iter(s)
    done = [next(it) for _ in range(3)]
    rest = [tuple(c.id for c in b) for b in it]
    s2 = DiscoSeqSampler(index, CFG)
    s2.load_state_dict(roundtrip({**s.state_dict(), "batches_delivered": 3}))
    assert [tuple(c.id for c in b) for b in s2] == rest
    assert len(done) == 3


def test_refusals_name_field_and_values(index: CutIndex, tmp_path) -> None:
    s = DiscoSeqSampler(index, CFG)
    state = s.state_dict()
    frozen = copy.deepcopy(state)
    with pytest.raises(ValueError, match=r"max_duration=70.0.*max_duration=71.0"):
        DiscoSeqSampler(index, CFG.replace(max_duration=71.0)).load_state_dict(state)
    with pytest.raises(ValueError, match=r"seed=42.*seed=1"):
        DiscoSeqSampler(index, CFG.replace(seed=1)).load_state_dict(state)
    with pytest.raises(ValueError, match=r"drop_last=False.*drop_last=True"):
        DiscoSeqSampler(index, CFG.replace(drop_last=True)).load_state_dict(state)
    write_manifest(tmp_path / "other.jsonl", 50, seed=99)
    other = build_index(tmp_path / "other.jsonl", tmp_path / "other")
    with pytest.raises(ValueError, match=r"another index: index_fingerprint='[0-9a-f]+'"):
        DiscoSeqSampler(other, CFG).load_state_dict(state)
    with pytest.raises(ValueError, match="format_version=99"):
        s.load_state_dict({**state, "format_version": 99})
    with pytest.raises(ValueError, match="type="):
        s.load_state_dict({**state, "type": "DynamicBucketingSampler"})
    with pytest.raises(ValueError, match="batches_delivered=100000 exceeds"):
        s.load_state_dict({**state, "batches_delivered": 100000})
    with pytest.raises(ValueError, match="epoch=-1"):
        s.load_state_dict({**state, "epoch": -1})
    with pytest.raises(ValueError, match="missing"):
        s.load_state_dict({"type": "DiscoSeqSampler", "format_version": 1})
    with pytest.raises(ValueError, match="history entry"):
        s.load_state_dict({**state, "history": [[0, 1]]})
    assert state == frozen, "load_state_dict never mutates its argument"
    # fields that may change on resume
    ok = DiscoSeqSampler(
        index, CFG.replace(world_size=1, rank=0, num_workers=2, prefetch_factor=5, pin_memory=True)
    )
    ok.load_state_dict(state)


def test_refused_state_still_joins_the_collective(index: CutIndex, monkeypatch) -> None:
    """A rank that refuses its state must still take part in the rank check: otherwise the
    ranks that accepted theirs wait in the collective until the process-group timeout."""
    import discoseq.sampler as sampler_module

    calls: list[dict] = []

    def record(what, values, world_size, rank):
        calls.append(dict(values))
        return True

    monkeypatch.setattr(sampler_module, "check_consistent", record)
    s = DiscoSeqSampler(index, CFG)
    state = s.state_dict()
    before = (s.epoch, s.state_dict())
    calls.clear()
    with pytest.raises(ValueError, match=r"seed=1.*seed=42"):
        s.load_state_dict({**state, "config": {**state["config"], "seed": 1}})
    assert len(calls) == 1 and "seed=1" in calls[0]["state error"]
    assert (s.epoch, s.state_dict()) == before, "a refused state changes nothing"
    calls.clear()
    s.load_state_dict({**state, "epoch": 3, "batches_delivered": 2})
    assert calls == [{"state error": None, "epoch": 3, "history": [], "batches_delivered": 2}]


def test_completed_epoch_state_yields_nothing_until_next_epoch(index: CutIndex) -> None:
    s = DiscoSeqSampler(index, CFG)
    rows_list(s)
    state = s.state_dict()
    fresh = DiscoSeqSampler(index, CFG)
    fresh.load_state_dict(state)
    fresh.set_epoch(0)
    assert len(fresh) == 0 and rows_list(fresh) == []
    fresh.set_epoch(1)
    ref = DiscoSeqSampler(index, CFG)
    ref.set_epoch(1)
    assert rows_list(fresh) == rows_list(ref)


# -- elastic --------------------------------------------------------------------------------


def run_ranks(
    index: CutIndex, cfg: SamplerConfig, world: int, state: dict | None, steps: int | None
):
    """Every rank of a world in lockstep; returns the rows each delivered and a saved state."""
    samplers = []
    for r in range(world):
        s = DiscoSeqSampler(index, cfg.replace(world_size=world, rank=r))
        if state is not None:
            s.load_state_dict(state)
        s.set_epoch(state["epoch"] if state is not None else 0)
        samplers.append(s)
    iters = [s.iter_batches_indices() for s in samplers]
    lengths = {len(s) for s in samplers}
    assert len(lengths) == 1, "equal batch counts on every rank"
    total = lengths.pop()
    delivered: list[np.ndarray] = []
    for _ in range(total if steps is None else min(steps, total)):
        for it in iters:
            delivered.append(next(it))
    saved = roundtrip(samplers[-1].state_dict())  # any rank's state will do
    return delivered, saved, samplers[0]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("worlds", "steps"), [((4, 3), (5,)), ((2, 5, 3), (7, 2)), ((3, 1), (0,))])
def test_elastic_resume_delivers_each_remaining_cut_once(
    index: CutIndex, drop_last: bool, worlds: tuple[int, ...], steps: tuple[int, ...]
) -> None:
    cfg = CFG.replace(drop_last=drop_last)
    before: Counter[int] = Counter()
    padded: set[int] = set()  # rows of padding batches (shuffled into the plan, not only last)
    state = None
    for world, k in zip(worlds[:-1], steps, strict=True):
        got, state, first = run_ranks(index, cfg, world, state, k)
        phase = Counter(int(r) for b in got for r in b)
        assert not set(phase) & set(before), "nothing delivered before is delivered again"
        before.update(phase)
        padded |= {int(r) for i in first.plan.padding_batches for r in first.plan.batch(int(i))}
    got, final, last = run_ranks(index, cfg, worlds[-1], state, None)
    after = Counter(int(r) for b in got for r in b)
    assert not set(after) & set(before), "nothing delivered before is delivered again"
    assert len(json.dumps(final)) < 1024
    plan = last.plan
    padded |= {int(r) for i in plan.padding_batches for r in plan.batch(int(i))}
    repeats = {r for r, c in (before + after).items() if c > 1}
    if drop_last:
        assert not repeats
    else:
        assert set(before) | set(after) == set(range(N)), "every cut is delivered"
        assert repeats <= padded, "repeats appear only as padding"
    assert final["history"] == [[w, k] for w, k in zip(worlds[:-1], steps, strict=True) if k]


def test_elastic_state_saved_after_resize_restores_on_the_same_world(index: CutIndex) -> None:
    _, state, _ = run_ranks(index, CFG, 4, None, 3)
    got, mid, _ = run_ranks(index, CFG, 3, state, 2)
    rest_direct, _, _ = run_ranks(index, CFG, 3, mid, None)
    # uninterrupted continuation on 3 ranks after the resize
    s = [DiscoSeqSampler(index, CFG.replace(world_size=3, rank=r)) for r in range(3)]
    for x in s:
        x.load_state_dict(state)
    its = [x.iter_batches_indices() for x in s]
    whole = [next(it) for _ in range(len(s[0])) for it in its]
    assert [tuple(b) for b in got + rest_direct] == [tuple(b) for b in whole]


# -- the state machine ----------------------------------------------------------------------


class ResumeMachine(RuleBasedStateMachine):
    """next / state_dict -> JSON -> fresh sampler / set_epoch / restart, against uninterrupted
    reference epochs."""

    index: CutIndex

    @initialize(strategy=st.sampled_from(["bucketed", "random", "sequential"]))
    def setup(self, strategy: str) -> None:
        self.cfg = CFG.replace(
            strategy=strategy, num_buckets=4 if strategy == "bucketed" else 10, max_duration=150.0
        )
        self.reference: dict[int, list[tuple[int, ...]]] = {}
        self.sampler = DiscoSeqSampler(self.index, self.cfg)
        self.epoch, self.pos, self.pending = 0, 0, False
        self.it = None

    def ref(self, epoch: int) -> list[tuple[int, ...]]:
        if epoch not in self.reference:
            s = DiscoSeqSampler(self.index, self.cfg)
            s.set_epoch(epoch)
            self.reference[epoch] = rows_list(s)
        return self.reference[epoch]

    @rule()
    def next_batch(self) -> None:
        if self.it is None:
            self.it = self.sampler.iter_batches_indices()
            if not self.pending:
                self.pos = 0
            self.pending = False
        expected = self.ref(self.epoch)
        got = next(self.it, None)
        if self.pos < len(expected):
            assert got is not None and tuple(got.tolist()) == expected[self.pos]
            self.pos += 1
        else:
            assert got is None

    @rule(workers=st.integers(0, 3))
    def save_and_restore(self, workers: int) -> None:
        state = json.loads(json.dumps(self.sampler.state_dict()))
        assert state["epoch"] == self.epoch and state["batches_delivered"] == self.pos
        self.sampler = DiscoSeqSampler(self.index, self.cfg.replace(num_workers=workers))
        self.sampler.load_state_dict(state)
        self.it = None
        self.pending = True

    @rule(epoch=st.integers(0, 3))
    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.it = None
        if not (self.pending and epoch == self.epoch):
            self.epoch, self.pos, self.pending = epoch, 0, False

    @precondition(lambda self: self.it is not None)
    @rule()
    def restart_iteration(self) -> None:
        self.it = None

    @invariant()
    def length_is_what_remains(self) -> None:
        if self.it is None and hasattr(self, "sampler"):
            start = self.pos if self.pending else 0
            assert len(self.sampler) == len(self.ref(self.epoch)) - start


@pytest.fixture
def machine_index(index: CutIndex):
    ResumeMachine.index = index
    yield


@pytest.mark.slow
def test_resume_state_machine(machine_index) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        ResumeMachine, settings=settings(max_examples=60, stateful_step_count=40, deadline=None)
    )


def test_source_failing_on_one_rank_still_joins_the_collective(tmp_path, monkeypatch) -> None:
    """A rank that cannot open its source takes part in the rank check before raising, with a
    value the ranks that opened theirs disagree with: every rank raises, none waits."""
    import discoseq.sampler as sampler_module

    calls: list[dict] = []

    def record(what, values, world_size, rank):
        calls.append(dict(values))
        return True

    monkeypatch.setattr(sampler_module, "check_consistent", record)
    with pytest.raises(FileNotFoundError):
        DiscoSeqSampler(tmp_path / "missing.jsonl", CFG)
    assert len(calls) == 1 and "cannot be opened (FileNotFoundError" in calls[0]["source"]
