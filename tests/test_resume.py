"""Exact resumption: a state is small JSON; restoring yields exactly what an uninterrupted run
yields next; mismatches are refused naming field and both values; elastic world-size changes
deliver every remaining cut and none twice. Through real DataLoader worker processes (the
sampler as a dataset, and ``create_dataloader``), a grid over the workers' round robin and a
hypothesis state machine check every batch against the reference twin (tests/reference_plan.py)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from torch.utils.data import DataLoader

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index, create_dataloader
from discoseq.synth import write_manifest
from tests.plan_configs import engine_config
from tests.reference_plan import RefPlan, reference_plan

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
    # the config as the fields off their defaults; a state with every field loads the same
    assert state["config"] == CFG.changed_fields() and "strategy" not in state["config"]
    full = DiscoSeqSampler(index, CFG)
    full.load_state_dict({**state, "config": CFG.to_dict()})
    assert full.batches_delivered == 4


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


def test_diagnostics_after_an_elastic_restore_count_the_rest(index: CutIndex) -> None:
    """After a resize, ``diagnostics()`` describes the plan of the rest of the epoch: the cuts
    delivered before the resize, the cuts left (together: every cut) and each rank's share."""
    got, state, _ = run_ranks(index, CFG, 4, None, 3)
    delivered = sum(len(b) for b in got)
    ranks = []
    for r in range(3):
        s = DiscoSeqSampler(index, CFG.replace(world_size=3, rank=r))
        s.load_state_dict(state)
        ranks.append(s.diagnostics())
    d = ranks[0]
    assert d["history"] == [[4, 3]] and d["batches_delivered"] == 0
    assert d["cuts_delivered_before_resize"] == delivered
    assert d["cuts_planned"] + delivered == N and d["dropped_cuts"] == 0
    padded = sum(len(s.plan.batch(int(i))) for i in s.plan.padding_batches)  # repeats
    assert sum(x["rank_cuts"] for x in ranks) == d["cuts_planned"] + padded
    assert {x["batches_per_rank"] for x in ranks} == {d["num_batches"] // 3}


@pytest.mark.parametrize("history", [[], [[2, 3]]])
def test_elastic_restore_packs_the_epoch_once(
    index: CutIndex, history: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An elastic restore (also of a state already resized once) groups and packs the epoch
    once: the batches not delivered are dealt again, the cuts never re-planned."""
    import discoseq.plan.planner as planner

    calls: list[int] = []
    group_rows = planner.group_rows
    monkeypatch.setattr(planner, "group_rows", lambda *a: calls.append(1) or group_rows(*a))
    state = DiscoSeqSampler(index, CFG.replace(world_size=4)).state_dict(batches_delivered=2)
    state = {**state, "history": history}
    resumed = DiscoSeqSampler(index, CFG.replace(world_size=3, rank=1))
    resumed.load_state_dict(state)
    next(resumed.iter_batches_indices())
    assert len(calls) == 1
    assert resumed.state_dict()["history"] == [*history, [4, 2]]


# -- against the reference twin, through DataLoader workers ----------------------------------

Rows = tuple[int, ...]
PLANS: dict[tuple[str, str, int, tuple[tuple[int, int], ...], int], RefPlan] = {}


def expected_plan(
    index: CutIndex, cfg: SamplerConfig, epoch: int, history: Sequence[tuple[int, int]], world: int
) -> RefPlan:
    """The reference twin's plan of ``epoch`` for ``world`` ranks after the world-size segments
    ``history`` (``(world size, steps)`` pairs, oldest first): the epoch's batches, each
    segment ordering the batches the ones before it left and delivering its first
    ``steps * W``, and the batches left ordered for ``world``."""
    key = (index.fingerprint, cfg.to_json(), epoch, tuple(history), world)
    if key not in PLANS:
        PLANS[key] = reference_plan(
            index.columns, engine_config(cfg), epoch, world, history=tuple(history)
        )
    return PLANS[key]


def undelivered(
    index: CutIndex, cfg: SamplerConfig, epoch: int, history: Sequence[tuple[int, int]]
) -> np.ndarray | None:
    """False for every cut delivered in the segments ``history`` (None: no segment)."""
    mask = None
    for i, (world, steps) in enumerate(history):
        plan = expected_plan(index, cfg, epoch, history[:i], world)
        left = np.ones(len(index), dtype=bool) if mask is None else mask.copy()
        left[plan.rows[: plan.batch_offsets[steps * world]]] = False
        mask = left
    return mask


def rank_batches(plan: RefPlan, world: int, rank: int) -> list[Rows]:
    """Rank ``rank``'s batches of a reference plan in order: global batch ``s * W + r``."""
    offsets = plan.batch_offsets
    return [
        tuple(plan.rows[offsets[i] : offsets[i + 1]].tolist())
        for i in range(rank, len(offsets) - 1, world)
    ]


def batch_rows(index: CutIndex, batch) -> Rows:
    """Index rows of a batch: an array of rows, or a CutSet (by cut id)."""
    if isinstance(batch, np.ndarray):
        return tuple(batch.tolist())
    return tuple(index.row_of(cut.id) for cut in batch)


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("kind", ["dataset", "loader"])
def test_workers_resume_at_every_phase_of_the_round_robin(
    index: CutIndex, kind: str, workers: int
) -> None:
    """Rank 1 of 2 stops after ``s`` batches, ``s`` at every phase of the workers' round robin,
    and resumes behind ``workers`` worker processes: the rest of its reference batches, in
    order; the loader's count ends at the epoch's length. Then the same after a resize (saved
    on 3 ranks after ``workers`` steps)."""
    cfg = CFG.replace(max_duration=150.0, world_size=2, rank=1)
    for history, steps in [((), s) for s in range(workers + 2)] + [(((3, workers),), 1)]:
        main = DiscoSeqSampler(index, cfg)
        if history:
            ((old_world, old_steps),) = history
            old = DiscoSeqSampler(index, cfg.replace(world_size=old_world, rank=0))
            main.load_state_dict(old.state_dict(batches_delivered=old_steps))
        expected = rank_batches(expected_plan(index, cfg, 0, history, 2), 2, 1)
        it = main.iter_batches_indices()
        assert [batch_rows(index, next(it)) for _ in range(steps)] == expected[:steps]
        state = json.loads(json.dumps(main.state_dict()))
        config = cfg.replace(num_workers=workers)
        if kind == "loader":
            resumed = create_dataloader(index, config)
            resumed.load_state_dict(state)
            got = []
            for batch in resumed:  # the count is what the loop received, not what is prefetched
                got.append(batch_rows(index, batch))
                assert resumed.state_dict()["batches_delivered"] == steps + len(got)
        else:
            sampler = DiscoSeqSampler(index, config)
            sampler.load_state_dict(state)
            loader = DataLoader(sampler, batch_size=None, num_workers=workers)
            got = [batch_rows(index, b) for b in loader]
        assert got == expected[steps:], f"history={history}, resumed at step {steps}"


KINDS = st.sampled_from(["dataset", "loader"])
WORKERS = st.integers(0, 3)
STEPS = st.one_of(st.integers(1, 4), st.just(1000))  # 1000: to the end of the epoch


class ResumeMachine(RuleBasedStateMachine):
    """One rank of a job, iterated as ``kind``: ``"dataset"``, the sampler as the dataset of
    ``DataLoader(sampler, batch_size=None, num_workers=K)``, or ``"loader"``,
    ``create_dataloader``'s loader, with ``K`` (the config's ``num_workers``) real worker
    processes when ``K > 0``; its state taken -> JSON -> a fresh one, possibly of another kind,
    world size, rank and number of workers; ``set_epoch``; iterations dropped mid-epoch. Every
    batch is checked against the reference twin, never against another run of the sampler.

    The model: ``epoch``; ``world`` and ``rank`` (the rank observed; all ranks move in
    lockstep); ``history``, the ``(world size, steps)`` segments of the epoch before the last
    elastic restore; ``steps``, the batches each rank received since; ``pending``, the next
    iteration resumes at ``steps`` (else it is a fresh pass over the epoch). ``counted``: the
    object's ``state_dict()`` counts the position. A ``"dataset"`` with workers does not: its
    workers iterate copies, the sampler in this process stays where ``load_state_dict`` or
    ``set_epoch`` put it (``restored``, ``main_pending``), and the loop's own count goes in
    ``state_dict(batches_delivered=steps)``; the next iteration then waits for a restore or
    ``set_epoch``."""

    index: CutIndex

    @initialize(
        strategy=st.sampled_from(["bucketed", "random", "sequential"]),
        drop_last=st.booleans(),
        world=st.integers(1, 3),
        rank=st.integers(0, 2),
        kind=KINDS,
        workers=WORKERS,
        first=st.integers(0, 6),
    )
    def setup(
        self,
        strategy: str,
        drop_last: bool,
        world: int,
        rank: int,
        kind: str,
        workers: int,
        first: int,
    ) -> None:
        """A fresh object of epoch 0, and ``first`` batches of it (so that even a run of few
        rules resumes from a position inside the epoch)."""
        self.cfg = CFG.replace(
            strategy=strategy,
            num_buckets=4 if strategy == "bucketed" else 10,
            max_duration=150.0,
            drop_last=drop_last,
        )
        self.epoch, self.history, self.steps = 0, [], 0
        self.world, self.rank = world, rank % world
        self.pending, self.counted, self.main_pending = False, True, False
        self.restored: tuple[int, list[tuple[int, int]]] = (0, [])
        self.it = None
        self.open(kind, workers)
        if first:
            self.take(first)

    # -- helpers
    def plan(self, history: list[tuple[int, int]]) -> RefPlan:
        return expected_plan(self.index, self.cfg, self.epoch, history, self.world)

    def open(self, kind: str, workers: int) -> None:
        cfg = self.cfg.replace(world_size=self.world, rank=self.rank, num_workers=workers)
        self.kind, self.workers = kind, workers
        if kind == "loader":
            self.holder = create_dataloader(self.index, cfg)
        else:
            self.holder = DiscoSeqSampler(self.index, cfg)

    def state(self) -> dict:
        if self.counted:
            state = self.holder.state_dict()
        else:
            state = self.holder.state_dict(batches_delivered=self.steps)
        return json.loads(json.dumps(state))

    def set_holder_epoch(self, epoch: int) -> None:
        if self.kind == "loader":
            self.holder.dataset.set_epoch(epoch)
        else:
            self.holder.set_epoch(epoch)

    def begin(self):
        """A new iteration: at the restored position, or a fresh pass over the epoch."""
        if not self.pending:
            self.history, self.steps = [], 0
        self.pending = False
        if self.kind == "dataset" and self.workers > 0:
            self.counted = False  # the sampler here is not iterated: main_pending stays
        else:
            self.main_pending = False
        if self.kind == "loader":
            return iter(self.holder)
        return iter(DataLoader(self.holder, batch_size=None, num_workers=self.workers))

    def take(self, n: int) -> None:
        """The next ``n`` batches (fewer at the end of the epoch), checked."""
        if self.it is None:
            self.it = self.begin()
        expected = rank_batches(self.plan(self.history), self.world, self.rank)
        for _ in range(n):
            got = next(self.it, None)
            if self.steps == len(expected):
                assert got is None, f"a batch after the {len(expected)} of the epoch"
                return
            assert got is not None, f"the epoch ended after {self.steps} of {len(expected)}"
            assert batch_rows(self.index, got) == expected[self.steps], f"batch {self.steps}"
            self.steps += 1

    # -- rules
    @precondition(lambda self: self.counted or self.it is not None)
    @rule(n=STEPS)
    def next_batches(self, n: int) -> None:
        self.take(n)

    @rule(
        kind=KINDS,
        world=st.none() | st.integers(1, 3),  # None: the same world size
        rank=st.integers(0, 2),
        workers=WORKERS,
        keep=st.booleans(),
        then=st.integers(0, 3),
    )
    def save_and_restore(
        self, kind: str, world: int | None, rank: int, workers: int, keep: bool, then: int
    ) -> None:
        """Save, drop the object mid-epoch, restore a fresh one (``keep``: and call
        ``set_epoch`` with the state's epoch, which keeps the position), take ``then``
        batches from it."""
        state = self.state()
        assert (state["epoch"], state["world_size"], state["rank"]) == (
            self.epoch,
            self.world,
            self.rank,
        )
        assert state["batches_delivered"] == self.steps
        assert state["history"] == [list(h) for h in self.history]
        self.it = self.holder = None  # dropped mid-epoch, with its workers
        world = self.world if world is None else world
        if world != self.world and self.steps > 0:
            self.history = [*self.history, (self.world, self.steps)]
            self.steps = 0
        self.world, self.rank = world, rank % world
        self.open(kind, workers)
        self.holder.load_state_dict(state)
        self.pending, self.counted, self.main_pending = True, True, True
        self.restored = (self.steps, self.history)
        if keep:
            self.set_holder_epoch(self.epoch)
        if then:
            self.take(then)

    @rule(epoch=st.integers(0, 2))
    def set_epoch(self, epoch: int) -> None:
        self.set_holder_epoch(epoch)
        self.it = None
        if self.main_pending and epoch == self.epoch:  # right after a restore: kept
            self.steps, self.history = self.restored
            self.pending = True
        else:
            self.epoch, self.history, self.steps = epoch, [], 0
            self.pending = self.main_pending = False
        self.counted = True

    @precondition(lambda self: self.it is not None)
    @rule()
    def drop_iteration(self) -> None:
        self.it = None

    @rule()
    def every_rank_finishes_the_epoch(self) -> None:
        """Every rank of the current world resumes the state and finishes the epoch (in this
        process: the observed rank is the one behind workers): each gets its rank view of the
        expected plan from the position on; with the steps delivered before, every cut left
        at the last resize is delivered exactly once (more only as tail padding), and none
        delivered before the resize again."""
        state = self.state()
        plan = self.plan(self.history)
        offsets = plan.batch_offsets
        done = Counter(plan.rows[: offsets[self.steps * self.world]].tolist())
        for rank in range(self.world):
            s = DiscoSeqSampler(self.index, self.cfg.replace(world_size=self.world, rank=rank))
            s.load_state_dict(state)
            s.set_epoch(self.epoch)
            got = [batch_rows(self.index, b) for b in s.iter_batches_indices()]
            assert got == rank_batches(plan, self.world, rank)[self.steps :], f"rank {rank}"
            done.update(r for b in got for r in b)
        mask = undelivered(self.index, self.cfg, self.epoch, self.history)
        left = set(range(N)) if mask is None else set(np.flatnonzero(mask).tolist())
        assert set(done) <= left, "a cut delivered before the resize is delivered again"
        padded = {
            r
            for i in plan.padding_batches.tolist()
            for r in plan.rows[offsets[i] : offsets[i + 1]].tolist()
        }
        assert {r for r, c in done.items() if c > 1} <= padded, "repeats only as tail padding"
        if not self.cfg.drop_last:
            assert set(done) == left, "every cut left is delivered"

    @invariant()
    def position_is_counted(self) -> None:
        if not hasattr(self, "holder") or not self.counted:
            return
        state = self.holder.state_dict()
        assert (state["epoch"], state["world_size"]) == (self.epoch, self.world)
        assert state["batches_delivered"] == self.steps, (
            f"the state counts {state['batches_delivered']} batches, the loop got {self.steps}"
        )
        assert state["history"] == [list(h) for h in self.history]
        if self.it is None:  # len(): what the next iteration yields
            per_rank = len(self.plan(self.history if self.pending else []).batch_offsets) - 1
            per_rank //= self.world
            assert len(self.holder) == per_rank - (self.steps if self.pending else 0)

    def teardown(self) -> None:
        self.it = self.holder = None  # stops this example's workers


@pytest.fixture
def machine_index(index: CutIndex):
    ResumeMachine.index = index
    yield


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.filterwarnings("ignore:plan_epoch.*all are dropped:RuntimeWarning")
def test_resume_state_machine(machine_index) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    profile = settings()  # worker start-ups (~0.1 s each) are most of the time
    run_state_machine_as_test(
        ResumeMachine,
        settings=settings(
            profile, max_examples=max(20, profile.max_examples // 2), stateful_step_count=10
        ),
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
