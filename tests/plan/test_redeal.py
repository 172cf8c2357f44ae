"""Elastic plans (``plan_epoch(..., history=...)``): equal to the reference twin, bit for bit;
the epoch's batches dealt again, never re-packed: every batch not delivered comes once more,
none delivered before comes again, with packs, mixtures, shard blocks and drop_last; one
packing per elastic restore; history errors name the entry."""

from __future__ import annotations

import warnings
from collections import Counter
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq.config import SamplerConfig
from discoseq.plan import EpochPlan, SourceLayout, plan_epoch
from tests import reference_plan as ref
from tests.plan.test_reference import assert_equal, columns, configs

Batch = tuple[int, ...]


def quiet_plan(cols: dict[str, np.ndarray], config: SamplerConfig, W: int, **kw: Any) -> EpochPlan:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return plan_epoch(cols, config, 3, W, **kw)


def batches_of(plan: EpochPlan, ids: Any = None) -> list[Batch]:
    """The batches ``ids`` of ``plan`` (all by default) as tuples of rows."""
    ids = range(plan.num_batches) if ids is None else ids
    rows, off = plan.rows, plan.batch_offsets
    return [tuple(rows[off[i] : off[i + 1]].tolist()) for i in ids]


def delivered_and_rest(plan: EpochPlan, steps: int) -> tuple[list[Batch], list[Batch]]:
    """The batches of the first ``steps`` steps, and the distinct batches after them."""
    cut = steps * plan.world_size
    padding = set(plan.padding_batches.tolist())
    rest = [i for i in range(cut, plan.num_batches) if i not in padding]
    done = [i for i in range(cut) if i not in padding]
    return batches_of(plan, done), batches_of(plan, rest)


def check_chain(
    cols: dict[str, np.ndarray],
    config: SamplerConfig,
    chain: list[tuple[int, float]],
    world: int,
    **kw: Any,
) -> EpochPlan:
    """Plan every segment of ``chain`` (world size, fraction of its steps delivered) over the
    history before it, check that the batches left are dealt again whole and once, and return
    the plan after the last segment for ``world``."""
    epoch_batches = Counter(batches_of(quiet_plan(cols, config.replace(drop_last=False), 1, **kw)))
    # distinct batches (a mixture's copies of a cut lie in different batches, with other cuts:
    # the batches of these epochs are distinct all the same), so a batch names itself
    assert max(epoch_batches.values(), default=1) == 1
    history: list[tuple[int, int]] = []
    delivered: list[Batch] = []
    plan = quiet_plan(cols, config, chain[0][0] if chain else world, **kw)
    for i, (w, fraction) in enumerate(chain):
        if plan.batches_per_rank == 0:
            break
        steps = max(1, int(np.ceil(fraction * plan.batches_per_rank)))
        done, _ = delivered_and_rest(plan, steps)
        delivered += done
        history.append((w, steps))
        nxt = chain[i + 1][0] if i + 1 < len(chain) else world
        plan = quiet_plan(cols, config, nxt, history=history, **kw)
    # what was delivered, and what the plan holds (once each, repeats only as padding)
    _, rest = delivered_and_rest(plan, 0)
    assert not set(rest) & set(delivered), "a batch delivered before is planned again"
    assert Counter(rest) + Counter(delivered) <= epoch_batches, "batches are the epoch's"
    missing = set(epoch_batches) - set(rest) - set(delivered)
    if config.drop_last:  # only the new plan's own partial step is dropped
        assert len(missing) == plan.stats.dropped_batches < plan.world_size
    else:
        assert not missing, "every batch not delivered is planned"
        assert plan.stats.dropped_batches == 0
    assert plan.num_batches % plan.world_size == 0
    assert plan.stats.filtered["mask"] == sum(len(b) for b in delivered)
    return plan


chains = st.lists(st.tuples(st.integers(1, 9), st.floats(0.0, 1.0)), min_size=1, max_size=3)


@given(columns(), configs(), chains, st.integers(1, 9), st.booleans())
def test_elastic_plan_equals_reference(
    cols: dict[str, np.ndarray],
    kw: dict[str, Any],
    chain: list[tuple[int, float]],
    W: int,
    use_mask: bool,
) -> None:
    config = SamplerConfig(**kw)
    mask = (np.arange(cols["duration"].size) % 7 != 3) if use_mask else None
    plan = quiet_plan(cols, config, chain[0][0], mask=mask)
    history: list[tuple[int, int]] = []
    for i, (w, fraction) in enumerate(chain):
        if plan.batches_per_rank == 0:
            break
        history.append((w, max(1, int(np.ceil(fraction * plan.batches_per_rank)))))
        nxt = chain[i + 1][0] if i + 1 < len(chain) else W
        plan = quiet_plan(cols, config, nxt, history=history, mask=mask)
        expect = ref.reference_plan(cols, config, 3, nxt, mask, history=tuple(history))
        assert_equal(plan, expect)
    if mask is None:
        check_chain(cols, config, chain, W)


def durations(n: int, seed: int = 5) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    d = np.round(gen.uniform(0.5, 20.0, n), 3)
    return {"duration": d, "num_tokens": np.floor(d * 6).astype(np.int64)}


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("chain", [[(8, 0.5)], [(4, 0.3), (7, 0.6)], [(3, 1.0)], [(5, 0.9)]])
def test_redeal_keeps_the_epochs_batches(drop_last: bool, chain: list[tuple[int, float]]) -> None:
    cfg = SamplerConfig(max_duration=60.0, num_buckets=4, drop_last=drop_last)
    check_chain(durations(900), cfg, chain, 3)


@pytest.mark.parametrize("key", ["pack_duration", "pack_tokens"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_packs_are_dealt_whole(key: str, drop_last: bool) -> None:
    """With packing the packs are the epoch's too: each pack of the plan after a resize is a
    pack of the epoch (same members, same order), none of those delivered before."""
    cfg = SamplerConfig(strategy="random", max_cuts=4, drop_last=drop_last, **{key: 30})
    cols = durations(700)
    whole = quiet_plan(cols, cfg.replace(drop_last=False), 1)

    def packs(plan: EpochPlan, ids: range) -> list[Batch]:
        assert plan.pack_offsets is not None
        out = []
        for i in ids:
            bounds, rows = plan.pack_bounds(i), plan.batch(i)
            out += [tuple(rows[a:b].tolist()) for a, b in pairwise(bounds.tolist())]
        return out

    epoch_packs = set(packs(whole, range(whole.num_batches)))
    first = quiet_plan(cols, cfg, 6)
    plan = check_chain(cols, cfg, [(6, 0.4)], 4)
    steps = max(1, int(np.ceil(0.4 * first.batches_per_rank)))
    before = set(packs(first, range(steps * 6)))
    after = packs(plan, range(plan.num_batches - plan.num_padding))
    assert set(after) <= epoch_packs and not set(after) & before
    assert plan.stats.packs == len(after) == len(set(after))


def test_mixture_sources_count_the_rest() -> None:
    """A mixture (one source taken twice over): its batches are dealt again as one corpus's;
    per source, what the plan holds plus what was delivered is the source's selection."""
    cols = durations(500)
    layout = SourceLayout(("a", "b"), np.array([0, 400, 500]))
    cfg = SamplerConfig(max_duration=60.0, num_buckets=3, mixture={"a": {}, "b": {"repeat": 2.0}})
    plan = check_chain(cols, cfg, [(5, 0.5), (2, 0.3)], 3, sources=layout)
    first = quiet_plan(cols, cfg, 5, sources=layout)
    assert [s.selected for s in plan.stats.sources] == [s.selected for s in first.stats.sources]
    delivered_positions = plan.stats.filtered["mask"]
    planned = sum(s.planned for s in plan.stats.sources)
    assert planned + delivered_positions == sum(s.selected for s in first.stats.sources)
    per_source = quiet_plan(
        cols, cfg.replace(mix_batches="per_source"), 2, sources=layout, history=[(5, 4)]
    )
    for i in range(per_source.num_batches):  # a per_source batch still holds one source
        assert len({int(r) >= 400 for r in per_source.batch(i)}) == 1


def test_shard_block_steps_stay_in_block_order() -> None:
    """With ``shard_block`` the batches dealt again are still one block's each, and the new
    plan visits the blocks one at a time (its steps sorted by the block permutation)."""
    cols = durations(800)
    cols["source_id"] = np.arange(800, dtype=np.int64) // 40  # 20 shards
    cfg = SamplerConfig(max_duration=90.0, num_buckets=3, shard_block=5)
    plan = check_chain(cols, cfg, [(4, 0.5)], 3)
    blocks = [{int(s) // 5 for s in cols["source_id"][plan.batch(i)]} for i in range(len(plan))]
    assert all(len(b) == 1 for b in blocks)
    step_block = [next(iter(blocks[s * 3])) for s in range(plan.batches_per_rank)]
    movable = step_block[:-1] if plan.num_padding else step_block
    runs = [b for k, b in enumerate(movable) if k == 0 or b != movable[k - 1]]
    assert len(runs) == len(set(runs)), "each block in one run of steps"


def test_drop_last_batches_are_dealt_to_the_new_world() -> None:
    """``drop_last`` drops a partial step only to align to its world: after the whole epoch on
    W ranks, the batches it dropped (never delivered) make the plan for 1 rank."""
    cols = durations(600)
    cfg = SamplerConfig(max_duration=60.0, num_buckets=4, drop_last=True)
    W = next(w for w in range(8, 40) if quiet_plan(cols, cfg, w).stats.dropped_batches > 1)
    old = quiet_plan(cols, cfg, W)
    rest = quiet_plan(cols, cfg, 1, history=[(W, old.batches_per_rank)])
    assert rest.num_batches == old.stats.dropped_batches
    assert rest.stats.cuts_planned == old.stats.dropped_cuts
    assert rest.stats.filtered["mask"] == old.stats.cuts_planned
    done = set(old.rows.tolist())
    assert not done & set(rest.rows.tolist())
    assert done | set(rest.rows.tolist()) == set(range(600))


def test_everything_delivered_is_an_empty_plan_without_warning() -> None:
    cols = durations(300)
    cfg = SamplerConfig(max_duration=60.0, num_buckets=4)
    old = plan_epoch(cols, cfg, 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rest = plan_epoch(cols, cfg, 0, 3, history=[(4, old.batches_per_rank)])
    assert rest.num_batches == 0 and rest.stats.cuts_planned == 0


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ([(0, 1)], r"history entry \(0, 1\) must be"),
        ([(2, 0)], r"history entry \(2, 0\) must be"),
        ([[2, 1.5]], r"history entry \[2, 1.5\] must be"),
        ("x", "history='x' must be a sequence"),
        ([(4, 10**6)], r"history entry \[4, 1000000\] exceeds the \d+ batches per rank"),
        ([(4, 2), (3, 10**6)], r"history entry \[3, 1000000\] exceeds the"),
    ],
)
def test_history_errors_name_the_entry(history: Any, match: str) -> None:
    cols = durations(300)
    with pytest.raises(ValueError, match=match):
        plan_epoch(cols, SamplerConfig(max_duration=60.0), 0, 2, history=history)


def test_history_of_an_empty_epoch_is_refused() -> None:
    cols = durations(10)
    cfg = SamplerConfig(max_duration=60.0, min_duration=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=r"history entry \[2, 1\] exceeds the 0 batches"):
            plan_epoch(cols, cfg, 0, 2, history=[(2, 1)])
