"""Whole-epoch packing into fixed-length rows (``pack_duration`` / ``pack_tokens``): the
best-fit-decreasing kernel against a plain-Python twin, packs within their length, every cut
once in exactly one pack, batches of whole packs under the batch caps, oversize cuts counted,
efficiency, packs as Lhotse cuts, exact and elastic resume, mixtures."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index
from discoseq._core import binpack
from discoseq.packs import cu_seqlens, pack_members
from discoseq.plan import EpochPlan, plan_epoch
from discoseq.plan.pack import token_costs_of
from discoseq.plan.packrows import DURATION_UNITS_PER_SECOND, PURPOSE_PACKS, pack_units
from discoseq.synth import generate_durations, write_manifest
from tests import reference_plan as ref

# -- the kernel and its twin -----------------------------------------------------------------


def reference_bfd(
    seg_offsets: list[int], units: list[int], capacity: int, ids: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """The rule of ``binpack.best_fit_decreasing`` in plain Python: per segment, positions by
    decreasing cost (stable); a cost above the capacity alone; else the open pack with the
    smallest room that holds it (ties: the one that reached that room last) and, with ``ids``,
    no position of the same id, else a new one."""
    pack_of = [-1] * len(units)
    seg_packs = [0]
    total = 0
    for s in range(len(seg_offsets) - 1):
        lo, hi = seg_offsets[s], seg_offsets[s + 1]
        order = sorted(range(lo, hi), key=lambda i: -min(units[i], capacity + 1))
        rooms: list[int] = []  # per local pack; None-like -1 for "alone"
        stamp: list[int] = []  # when the pack reached its room
        held: list[set[int]] = []  # the ids in each pack
        clock = 0
        for i in order:
            u = units[i]
            if u > capacity:
                pack_of[i] = total + len(rooms)
                rooms.append(-1)
                stamp.append(-1)
                held.append({ids[i]} if ids is not None else set())
                continue
            best = -1
            for b, r in enumerate(rooms):
                if ids is not None and ids[i] in held[b]:
                    continue
                if r >= u and (
                    best < 0 or r < rooms[best] or (r == rooms[best] and stamp[b] > stamp[best])
                ):
                    best = b
            if best < 0:
                best = len(rooms)
                rooms.append(capacity)
                stamp.append(-1)
                held.append(set())
            if ids is not None:
                held[best].add(ids[i])
            rooms[best] -= u
            clock += 1
            stamp[best] = clock
            pack_of[i] = total + best
        total += len(rooms)
        seg_packs.append(total)
    return pack_of, seg_packs


@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    capacity = int(rng.choice([1, 7, 64, 200, 5000]))
    n = int(rng.integers(0, 300))
    units = rng.integers(0, capacity + 3, n).astype(np.int64)
    if seed % 2:
        units[rng.random(n) < 0.3] = 0  # free cuts (no tokens) join any pack
    cuts = np.sort(rng.integers(0, n + 1, int(rng.integers(0, 4))))
    seg_offsets = np.concatenate([[0], cuts, [n]]).astype(np.int64)
    cost = rng.random(n)
    pack_of, seg_packs, sizes, sums, durs = binpack.best_fit_decreasing(
        seg_offsets, units, capacity, cost, 2 * cost
    )
    ref_of, ref_seg = reference_bfd(seg_offsets.tolist(), units.tolist(), capacity)
    assert pack_of.tolist() == ref_of
    assert seg_packs.tolist() == ref_seg
    npk = int(seg_packs[-1])
    assert sizes.tolist() == np.bincount(pack_of, minlength=npk).tolist()
    np.testing.assert_allclose(sums, np.bincount(pack_of, weights=cost, minlength=npk))
    np.testing.assert_allclose(durs, 2 * sums)
    # every pack within the capacity, unless it holds one cut above it
    loads = np.bincount(pack_of, weights=units, minlength=int(seg_packs[-1]))
    sizes = np.bincount(pack_of, minlength=int(seg_packs[-1]))
    assert np.all((loads <= capacity) | (sizes == 1))


@pytest.mark.parametrize("seed", range(4))
def test_kernel_keeps_copies_apart_like_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    capacity = int(rng.choice([10, 100, 3000]))
    n = int(rng.integers(1, 300))
    ids = rng.integers(0, max(1, n // 3), n).astype(np.int64)  # about 3 copies of each id
    units = rng.integers(0, capacity + 2, n).astype(np.int64)
    units = units[ids] if seed % 2 else units  # copies of one cut cost the same (usually)
    offsets = np.array([0, n // 2, n], np.int64)
    got, seg, *_ = binpack.best_fit_decreasing(
        offsets, units, capacity, identity=ids, num_ids=int(ids.max()) + 1
    )
    want, want_seg = reference_bfd(offsets.tolist(), units.tolist(), capacity, ids.tolist())
    assert got.tolist() == want and seg.tolist() == want_seg
    pairs = set(zip(got.tolist(), ids.tolist(), strict=True))
    assert len(pairs) == n  # no pack holds an id twice


def test_pack_batches_keeps_ids_apart() -> None:
    # packs 0..3 of one segment; packs 0 and 2 share id 7
    seg = np.array([0, 4], np.int64)
    cost = np.array([1.0, 1.0, 1.0, 1.0])
    offsets = np.array([0, 2, 3, 5, 6], np.int64)
    members = np.array([7, 1, 2, 7, 3, 4], np.int64)
    plain = binpack.pack_batches(seg, cost, np.array([np.inf]), np.array([4]), False)
    assert plain[0].tolist() == [0, 4]
    kept = binpack.pack_batches(seg, cost, np.array([np.inf]), np.array([4]), False,
                                pack_offsets=offsets, member_ids=members, num_ids=8)  # fmt: skip
    assert kept[0].tolist() == [0, 2, 4]  # pack 2 holds id 7 again: it closes the batch


def test_kernel_large_capacity_crosses_bitset_levels() -> None:
    """Rooms far apart (the search climbs to the top level of the bitset) and the same twin."""
    capacity = binpack.MAX_CAPACITY
    units = np.array([capacity - 5, capacity - 70_000, 3, 69_990, 5, 2, capacity], np.int64)
    offsets = np.array([0, units.shape[0]], np.int64)
    pack_of, seg, *_ = binpack.best_fit_decreasing(offsets, units, capacity)
    ref_of, ref_seg = reference_bfd(offsets.tolist(), units.tolist(), capacity)
    assert pack_of.tolist() == ref_of and seg.tolist() == ref_seg


def test_group_packs_orders_packs_by_rank_and_members_stably() -> None:
    rows = np.array([10, 11, 12, 13, 14, 15], np.int64)
    pack_of = np.array([2, 0, 2, 1, 0, 2], np.int64)
    cost = np.array([0.5, 1.5, 2.5])
    out, off, c, d = binpack.group_packs(
        rows, pack_of, np.array([2, 0, 1]), np.array([2, 1, 3]), cost, 2 * cost
    )
    assert off.tolist() == [0, 3, 5, 6]
    assert out.tolist() == [10, 12, 15, 11, 14, 13]
    assert c.tolist() == [2.5, 0.5, 1.5] and d.tolist() == [5.0, 1.0, 3.0]


def test_kernel_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="capacity"):
        binpack.best_fit_decreasing(np.array([0, 1]), np.array([1]), binpack.MAX_CAPACITY + 1)
    with pytest.raises(ValueError, match="negative"):
        binpack.best_fit_decreasing(np.array([0, 1]), np.array([-1]), 5)
    with pytest.raises(ValueError, match="seg_offsets"):
        binpack.best_fit_decreasing(np.array([0, 2]), np.array([1]), 5)
    two, z = np.array([0, 1]), np.zeros(2)
    with pytest.raises(ValueError, match="permutation"):
        binpack.group_packs(two, two, np.array([1, 1]), np.array([1, 1]), z, z)
    with pytest.raises(ValueError, match="add up to 3"):
        binpack.group_packs(two, two, np.array([1, 0]), np.array([1, 2]), z, z)


def test_units_never_overfill_a_pack() -> None:
    """Rounded costs within the capacity mean real costs within the length."""
    rng = np.random.default_rng(3)
    for length in (30.0, 7.77, 1e5):
        cost = rng.random(2000) * length * 0.6
        units, capacity = pack_units(cost, length, integer=False)
        pack_of, *_ = binpack.best_fit_decreasing(np.array([0, 2000]), units, capacity)
        real = np.bincount(pack_of, weights=cost)
        assert real.max() <= length
    cost = np.array([5, 8 << 22, (8 << 22) + 1], np.int64)
    units, capacity = pack_units(cost, float(8 << 22), integer=True)
    assert capacity <= binpack.MAX_CAPACITY and units[0] == 1
    assert units[1] <= capacity < units[2]


# -- plans ------------------------------------------------------------------------------------

N = 4000
DUR = generate_durations(N, "librispeech", seed=5)


def plan_of(config: SamplerConfig, world: int = 1, epoch: int = 0, **columns: np.ndarray):
    return plan_epoch({"duration": DUR, **columns}, config, epoch, world)


def pack_costs(plan: EpochPlan, cost: np.ndarray) -> np.ndarray:
    assert plan.pack_offsets is not None
    return np.add.reduceat(cost[plan.rows], plan.pack_offsets[:-1])


def distinct_part(plan: EpochPlan) -> np.ndarray:
    """The plan's rows without the tail's repeated batches."""
    keep = np.ones(plan.num_batches, bool)
    keep[plan.padding_batches] = False
    return np.concatenate([plan.batch(i) for i in np.flatnonzero(keep)])


@pytest.mark.parametrize("world", [1, 3, 8])
@pytest.mark.parametrize("strategy", ["random", "sequential"])
def test_every_cut_once_in_exactly_one_pack(world: int, strategy: str) -> None:
    cfg = SamplerConfig(strategy=strategy, pack_duration=30.0, max_cuts=6)
    plan = plan_of(cfg, world)
    assert plan.pack_offsets is not None
    assert np.all(np.diff(plan.pack_offsets) > 0)
    assert plan.pack_offsets[-1] == plan.rows.shape[0]
    rows = distinct_part(plan)
    assert sorted(rows.tolist()) == list(range(N))  # every cut once
    # batches are whole packs, at most max_cuts packs each, equal counts on every rank
    for i in range(plan.num_batches):
        bounds = plan.pack_bounds(i)
        assert bounds[0] == 0 and bounds[-1] == plan.batch(i).shape[0]
        assert set(bounds.tolist()) <= set((plan.pack_offsets - plan.batch_offsets[i]).tolist())
        assert 1 <= bounds.shape[0] - 1 <= 6
    assert plan.num_batches % world == 0
    costs = pack_costs(plan, DUR)
    sizes = np.diff(plan.pack_offsets)
    assert np.all((costs <= 30.0) | (sizes == 1))
    assert plan.stats.oversize == int((DUR > 30.0).sum())


def test_efficiency_is_high_and_reported() -> None:
    plan = plan_of(SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=8))
    costs = pack_costs(plan, DUR)
    within = costs <= 30.0
    expected = costs[within].sum() / (within.sum() * 30.0)
    assert plan.stats.packs == plan.num_packs
    assert plan.stats.pack_efficiency == pytest.approx(expected)
    assert plan.stats.pack_efficiency >= 0.98
    # a greedy pass in the shuffled order (the pool-free baseline) packs clearly worse
    greedy, load = 0, 31.0
    for d in DUR[DUR <= 30.0]:
        if load + d > 30.0:
            greedy, load = greedy + 1, 0.0
        load += d
    assert within.sum() < greedy


def test_pack_order_is_shuffled_and_keyed() -> None:
    cfg = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=4)
    a, b, c = plan_of(cfg), plan_of(cfg), plan_of(cfg, epoch=1)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.pack_offsets, b.pack_offsets)
    assert not np.array_equal(a.rows, c.rows)
    # best-fit-decreasing opens packs from the longest cut down; the shuffle spreads them
    first = DUR[a.rows[a.pack_offsets[:-1]]]
    half = first.shape[0] // 2
    assert abs(first[:half].mean() - first[half:].mean()) < 1.0


def test_batch_duration_cap_counts_packs() -> None:
    for mode in ("padded", "sum"):
        cfg = SamplerConfig(strategy="random", pack_duration=20.0, max_duration=65.0,
                            limit_mode=mode, oversize="exclude")  # fmt: skip
        plan = plan_of(cfg)
        for i in range(plan.num_batches):
            b = plan.pack_bounds(i)
            costs = np.add.reduceat(DUR[plan.batch(i)], b[:-1])
            cost = costs.sum() if mode == "sum" else (b.shape[0] - 1) * costs.max()
            assert cost <= 65.0
        assert plan.cost.max() <= 65.0


def test_oversize_single_and_exclude_are_counted() -> None:
    long = int((DUR > 15.0).sum())
    assert long > 0
    single = plan_of(SamplerConfig(strategy="random", pack_duration=15.0, max_cuts=4))
    assert single.stats.oversize == long and single.stats.oversize_policy == "single"
    assert sorted(distinct_part(single).tolist()) == list(range(N))
    costs, sizes = pack_costs(single, DUR), np.diff(single.pack_offsets)
    assert np.all(sizes[costs > 15.0] == 1) and int((costs > 15.0).sum()) == long
    excl = plan_of(
        SamplerConfig(strategy="random", pack_duration=15.0, max_cuts=4, oversize="exclude")
    )
    assert excl.stats.oversize == long and excl.stats.oversize_excluded == long
    kept = distinct_part(excl)
    assert kept.shape[0] == N - long and DUR[kept].max() <= 15.0
    assert excl.stats.cuts_planned == N - long


def test_pack_tokens_with_audio_tokens() -> None:
    rng = np.random.default_rng(1)
    text = rng.integers(-1, 300, N).astype(np.int64)  # -1: a cut without text
    cfg = SamplerConfig(strategy="random", pack_tokens=2048, audio_tokens_per_second=12.5,
                        max_tokens=8192, max_cuts=64)  # fmt: skip
    plan = plan_of(cfg, num_tokens=text)
    cost = np.maximum(text, 0) + np.ceil(DUR * 12.5 - 1e-9).astype(np.int64)
    costs = pack_costs(plan, cost.astype(np.float64))
    assert costs.max() <= 2048
    assert sorted(distinct_part(plan).tolist()) == list(range(N))
    for i in range(plan.num_batches):
        b = plan.pack_bounds(i)
        per_pack = np.add.reduceat(cost[plan.batch(i)], b[:-1])
        assert (b.shape[0] - 1) * per_pack.max() <= 8192
    assert plan.stats.pack_efficiency > 0.97


def test_pack_tokens_without_token_source_is_refused() -> None:
    cfg = SamplerConfig(strategy="random", pack_tokens=100, max_cuts=4)
    with pytest.raises(ValueError, match="pack_tokens=100 has no token source"):
        plan_of(cfg, num_tokens=np.full(N, -1, np.int64))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pack_duration": 30.0, "max_cuts": 4}, "strategy='random'"),
        ({"strategy": "random", "pack_duration": 30.0, "pack_tokens": 10, "max_cuts": 4},
         "give one of them"),
        ({"strategy": "random", "pack_duration": 30.0, "max_duration": 20.0},
         "max_duration=20.0 is smaller than pack_duration=30.0"),
        ({"strategy": "random", "pack_tokens": 100, "max_tokens": 50}, "max_tokens=50 is smaller"),
        ({"strategy": "random", "pack_tokens": 100, "max_duration": 50.0}, "max_duration=50.0"),
        ({"strategy": "random", "pack_duration": 30.0, "max_tokens": 50}, "max_tokens=50"),
        ({"strategy": "random", "pack_duration": 30.0, "max_cuts": 4, "sort_pool": 10},
         "sort_pool=10"),
        ({"strategy": "random", "pack_duration": 30.0, "max_cuts": 4,
          "quadratic_duration": True}, "quadratic_duration"),
        ({"strategy": "random", "pack_duration": 30.0, "max_frames": 100}, "max_frames"),
        ({"strategy": "random", "pack_duration": -1.0, "max_cuts": 4}, "pack_duration=-1.0"),
        ({"strategy": "random", "pack_tokens": 1.5, "max_cuts": 4}, "pack_tokens=1.5"),
        ({"strategy": "random", "pack_duration": 30.0}, "no batch limit"),
    ],
)  # fmt: skip
def test_config_rules(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        SamplerConfig(**kwargs)


def test_config_round_trip() -> None:
    cfg = SamplerConfig(strategy="random", pack_tokens=4096, audio_tokens_per_second=12.5,
                        max_cuts=8)  # fmt: skip
    assert SamplerConfig.from_json(cfg.to_json()) == cfg
    assert cfg.packing == ("pack_tokens", 4096.0)


# -- the whole plan against a plain-Python twin ---------------------------------------------


def reference_units(cost: list[float], length: float, integer: bool) -> tuple[list[int], int]:
    """The rule of ``binpack.cost_units``."""
    cap_max = binpack.MAX_CAPACITY
    if integer:
        f = max(1, -(-int(length) // cap_max))
        capacity = int(length) // f
        units = [-(-int(c) // f) for c in cost]
    else:
        scale = min(DURATION_UNITS_PER_SECOND, cap_max / length)
        capacity = math.floor(length * scale)
        units = [math.floor(c * scale) + 1 for c in cost]
    pairs = zip(cost, units, strict=True)
    return [capacity + 1 if c > length else min(u, capacity) for c, u in pairs], capacity


def reference_packed_plan(cost: np.ndarray, dur: np.ndarray, cfg: SamplerConfig, world: int):
    """A RANDOM plan with packing, from the twins: shuffle, oversize, best-fit-decreasing
    (:func:`reference_bfd`), the keyed pack shuffle, greedy packing of packs into batches and
    the batch order (``tests/reference_plan.py``). Returns the rows, pack and batch offsets."""
    name, length = cfg.packing
    rows = ref.shuffle(list(range(cost.shape[0])), ref.derive_key(cfg.seed, 0, ref.PURPOSE_CUTS))
    if cfg.oversize == "exclude":
        rows = [r for r in rows if cost[r] <= length]
    units, capacity = reference_units([float(cost[r]) for r in rows], length, name == "pack_tokens")
    pack_of, seg = reference_bfd([0, len(rows)], units, capacity)
    npk = seg[-1]
    order = ref.shuffle(list(range(npk)), ref.derive_key(cfg.seed, 0, PURPOSE_PACKS))
    members: list[list[int]] = [[] for _ in range(npk)]
    for pos, r in enumerate(rows):
        members[pack_of[pos]].append(r)
    # each pack's sums in packing order (decreasing units, then position), as the kernel adds
    sums = np.zeros(npk)
    durs = np.zeros(npk)
    for pos in sorted(range(len(rows)), key=lambda i: -min(units[i], capacity + 1)):
        sums[pack_of[pos]] += cost[rows[pos]]
        durs[pack_of[pos]] += dur[rows[pos]]
    packs = [members[p] for p in order]
    cap_d = [np.inf if cfg.max_duration is None else cfg.max_duration]
    cap_c = [(1 << 63) - 1 if cfg.max_cuts is None else cfg.max_cuts]
    tokens = None if cfg.max_tokens is None else sums[order].astype(np.int64)
    batches, *_ = ref.pack(
        [list(range(npk))], durs[order], None, cap_d, cap_c, None, None,
        cfg.limit_mode == "sum", False, tokens, cfg.max_tokens,
    )  # fmt: skip
    border, _, _ = ref.order_batches([len(batches)], world, cfg.seed, 0, False, cfg.drop_last)
    out_rows: list[int] = []
    pack_offsets, batch_offsets = [0], [0]
    for b in border:
        for p in batches[b]:
            out_rows += packs[p]
            pack_offsets.append(len(out_rows))
        batch_offsets.append(len(out_rows))
    return out_rows, pack_offsets, batch_offsets


@pytest.mark.parametrize(
    ("kwargs", "world"),
    [
        ({"pack_duration": 30.0, "max_cuts": 5}, 1),
        ({"pack_duration": 20.0, "max_cuts": 3, "oversize": "exclude"}, 3),
        ({"pack_duration": 30.0, "max_duration": 95.0, "drop_last": True}, 4),
        ({"pack_duration": 45.0, "max_duration": 200.0, "limit_mode": "sum", "seed": 3}, 2),
        ({"pack_tokens": 700, "max_tokens": 2000, "audio_tokens_per_second": 12.5}, 3),
        ({"pack_tokens": 500, "max_cuts": 4, "oversize": "exclude"}, 1),
    ],
)
def test_plan_matches_the_reference(kwargs: dict, world: int) -> None:
    cfg = SamplerConfig(strategy="random", **kwargs)
    n = 600
    dur = DUR[:n]
    text = np.random.default_rng(9).integers(-1, 200, n).astype(np.int64)
    cols = {"duration": dur, "num_tokens": text}
    cost = dur
    if cfg.pack_tokens is not None:
        cost = token_costs_of(text, dur, cfg).astype(np.float64)
    plan = plan_epoch(cols, cfg, 0, world)
    rows, pack_offsets, batch_offsets = reference_packed_plan(cost, dur, cfg, world)
    assert plan.rows.tolist() == rows
    assert plan.pack_offsets is not None and plan.pack_offsets.tolist() == pack_offsets
    assert plan.batch_offsets.tolist() == batch_offsets


# -- through the sampler: packs as Lhotse cuts, resume ------------------------------------------

CFG = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=3)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> CutIndex:
    root = tmp_path_factory.mktemp("packs")
    write_manifest(root / "cuts.jsonl", 400, seed=21, mixed_fraction=0.05)
    return build_index(root / "cuts.jsonl", root / "index")


def test_batches_are_cutsets_of_lhotse_packs(index: CutIndex) -> None:
    sampler = DiscoSeqSampler(index, CFG)
    plan = sampler.begin_epoch().plan
    seen: Counter[str] = Counter()
    for i, batch in enumerate(sampler):
        rows = plan.batch(i)
        members = index.resolve(rows)
        assert len(batch) == plan.pack_bounds(i).shape[0] - 1
        ids = [m["id"] for pack in batch for m in pack_members(pack)]
        assert ids == [c.id for c in members]  # packs hold the batch's cuts in plan order
        seen.update(ids)
        for pack in batch:
            ms = pack_members(pack)
            assert pack.id.startswith("pack-0-")
            assert pack.duration == pytest.approx(sum(m["duration"] for m in ms))
            assert pack.duration <= 30.0 + 1e-9 or len(ms) == 1
            offsets = np.cumsum([0.0] + [m["duration"] for m in ms[:-1]])
            assert [m["offset"] for m in ms] == pytest.approx(offsets.tolist())
            # Lhotse's supervisions of the pack are the members', moved by their offsets
            by_id = {c.id: c for c in members}
            expected = sorted(
                round(m["offset"] + s.start, 6) for m in ms for s in by_id[m["id"]].supervisions
            )
            assert sorted(round(s.start, 6) for s in pack.supervisions) == expected
        lengths = cu_seqlens(batch)
        assert lengths[0] == 0 and lengths.shape[0] == len(ids) + 1
        assert np.all(np.diff(lengths) >= 0)
    assert sorted(seen.values()) == [1] * len(index)  # every cut once in the epoch


def test_exact_resume_with_packs(index: CutIndex) -> None:
    ref = DiscoSeqSampler(index, CFG)
    ref.set_epoch(1)
    full = [tuple(r.tolist()) for r in ref.iter_batches_indices()]
    run = DiscoSeqSampler(index, CFG)
    run.set_epoch(1)
    it = run.iter_batches_indices()
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(run.state_dict()))
    again = DiscoSeqSampler(index, CFG)
    again.load_state_dict(state)
    again.set_epoch(1)
    rest = [tuple(r.tolist()) for r in again.iter_batches_indices()]
    assert rest == full[7:]
    # and the packs of the resumed batches are the uninterrupted plan's
    fresh = DiscoSeqSampler(index, CFG)
    fresh.set_epoch(1)
    p1 = fresh.begin_epoch().plan
    resumed = DiscoSeqSampler(index, CFG)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    view = resumed.begin_epoch()
    assert view.batch_ids.tolist() == list(range(7, p1.num_batches))
    assert [view.plan.pack_bounds(int(i)).tolist() for i in view.batch_ids] == [
        p1.pack_bounds(i).tolist() for i in range(7, p1.num_batches)
    ]


@pytest.mark.parametrize("drop_last", [False, True])
def test_elastic_resume_with_packs(index: CutIndex, drop_last: bool) -> None:
    cfg = CFG.replace(drop_last=drop_last)
    delivered: list[np.ndarray] = []
    state = None
    for world, steps in ((4, 5), (3, None)):
        samplers = []
        for r in range(world):
            s = DiscoSeqSampler(index, cfg.replace(world_size=world, rank=r))
            if state is not None:
                s.load_state_dict(state)
            s.set_epoch(0)
            samplers.append(s)
        assert len({len(s) for s in samplers}) == 1  # equal batch counts
        total = len(samplers[0])
        probe = DiscoSeqSampler(index, cfg.replace(world_size=world, rank=0))
        if state is not None:
            probe.load_state_dict(state)
        probe.set_epoch(0)
        plan = probe.begin_epoch().plan
        assert plan.pack_offsets is not None
        iters = [s.iter_batches_indices() for s in samplers]
        for _ in range(total if steps is None else steps):
            for it in iters:
                delivered.append(next(it))
        state = json.loads(json.dumps(samplers[0].state_dict()))
    counts = Counter(np.concatenate(delivered).tolist())
    if drop_last:
        assert max(counts.values()) == 1
    else:  # repeats only as the tail padding of the last world
        assert set(counts) == set(range(len(index)))
        assert sum(c - 1 for c in counts.values()) <= sum(
            len(plan.batch(int(b))) for b in plan.padding_batches
        )


def test_upsampled_copies_share_no_pack_and_no_batch(tmp_path: Path) -> None:
    write_manifest(tmp_path / "a.jsonl", 300, seed=1)
    write_manifest(tmp_path / "b.jsonl", 40, seed=2)
    cfg = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=6,
                        mixture={"a": {}, "b": {"repeat": 4.0}})  # fmt: skip
    sampler = DiscoSeqSampler({"a": tmp_path / "a.jsonl", "b": tmp_path / "b.jsonl"}, cfg)
    plan = sampler.begin_epoch().plan
    assert plan.pack_offsets is not None
    copies = Counter(plan.rows.tolist())
    assert max(copies.values()) == 4  # the upsampled source's cuts, 4 times each
    po = plan.pack_offsets
    for k in range(plan.num_packs):
        pack = plan.rows[po[k] : po[k + 1]]
        assert np.unique(pack).shape[0] == pack.shape[0]
    for i in range(plan.num_batches):
        batch = plan.batch(i)
        assert np.unique(batch).shape[0] == batch.shape[0]
    assert plan.stats.pack_efficiency > 0.95


def test_mixture_quotas_hold_with_packing(tmp_path: Path) -> None:
    write_manifest(tmp_path / "a.jsonl", 300, seed=1)
    write_manifest(tmp_path / "b.jsonl", 100, seed=2)
    cfg = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=4,
                        mixture={"a": {"choose": 150}, "b": {"repeat": 2.0}})  # fmt: skip
    sampler = DiscoSeqSampler({"a": tmp_path / "a.jsonl", "b": tmp_path / "b.jsonl"}, cfg)
    plan = sampler.begin_epoch().plan
    assert plan.pack_offsets is not None and plan.selection_size == 350
    keep = np.ones(plan.num_batches, bool)
    keep[plan.padding_batches] = False
    offs = plan.batch_offsets
    got = np.concatenate([plan.rows[offs[i] : offs[i + 1]] for i in np.flatnonzero(keep)])
    taken = Counter(got.tolist())  # a: 150 of its 300 cuts once each; b: its 100 cuts twice
    assert sorted(Counter(r < 300 for r in got.tolist()).items()) == [(False, 200), (True, 150)]
    assert all(taken[r] == (1 if r < 300 else 2) for r in taken)
    assert all(taken[r] == 2 for r in range(300, 400))
    assert {s.name: s.selected for s in plan.stats.sources} == {"a": 150, "b": 200}
    assert {s.name: s.planned for s in plan.stats.sources} == {"a": 150, "b": 200}
    delivered = Counter(m["id"] for b in sampler for p in b for m in pack_members(p))
    assert sum(delivered.values()) == 350 + sum(
        len(plan.batch(int(b))) for b in plan.padding_batches
    )


def test_create_dataloader_with_workers_delivers_packs(index: CutIndex) -> None:
    from discoseq import create_dataloader

    cfg = CFG.replace(num_workers=2, buffer_size=20)
    loader = create_dataloader(index, cfg)
    got = [[pack_members(p) for p in batch] for batch in loader]
    sampler = DiscoSeqSampler(index, CFG)
    want = [[pack_members(p) for p in batch] for batch in sampler]
    assert got == want and len(got) == len(sampler)


def test_analyze_reports_packing() -> None:
    from discoseq.analysis import analyze_plan, format_table

    plan = plan_of(SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=8), world=2)
    stats = analyze_plan(plan, DUR)
    pk = stats["packing"]
    assert pk["field"] == "pack_duration" and pk["length"] == 30.0
    assert pk["packs"] == plan.stats.packs
    assert pk["efficiency"] == pytest.approx(plan.stats.pack_efficiency)
    assert pk["packs_per_batch"] == pytest.approx(plan.num_packs / plan.num_batches)
    json.dumps(stats, allow_nan=False)
    assert "packs of pack_duration=30, efficiency" in format_table(stats)
    plain = analyze_plan(plan_of(SamplerConfig(strategy="random", max_cuts=8)), DUR)
    assert plain["packing"] is None


def test_empty_plans_with_packing() -> None:
    from discoseq.analysis import analyze_plan

    cfg = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=4, min_duration=1e4)
    with pytest.warns(RuntimeWarning, match="no cuts to plan"):
        plan = plan_of(cfg)
    assert plan.num_batches == 0 and plan.pack_offsets is not None and plan.num_packs == 0
    assert analyze_plan(plan, DUR)["packing"]["efficiency"] is None
    excl = SamplerConfig(strategy="random", pack_duration=0.1, max_cuts=4, oversize="exclude")
    with pytest.warns(RuntimeWarning, match="excluded as oversize"):
        plan = plan_of(excl)
    assert plan.num_batches == 0 and plan.stats.oversize == N and plan.num_packs == 0


def test_per_source_mixture_packs_within_a_source(tmp_path: Path) -> None:
    write_manifest(tmp_path / "a.jsonl", 200, seed=1)
    write_manifest(tmp_path / "b.jsonl", 120, seed=2)
    cfg = SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=4,
                        mix_batches="per_source")  # fmt: skip
    sampler = DiscoSeqSampler({"a": tmp_path / "a.jsonl", "b": tmp_path / "b.jsonl"}, cfg)
    seen = set()
    for batch in sampler:
        sources = set()
        for pack in batch:
            cuts = [t.cut for t in pack.tracks] if hasattr(pack, "tracks") else [pack]
            sources |= {c.custom["source"] for c in cuts if c.custom and "source" in c.custom}
        assert len(sources) == 1  # every pack, and every batch, from one source
        seen |= sources
    assert seen == {"a", "b"}


def test_analyze_counts_packs_as_the_rows_of_a_batch() -> None:
    from discoseq.analysis import analyze_plan

    plan = plan_of(SamplerConfig(strategy="random", pack_duration=30.0, max_cuts=8))
    stats = analyze_plan(plan, DUR)
    packs = np.add.reduceat(DUR[plan.rows], plan.pack_offsets[:-1])
    padded = 0.0
    per_batch = []
    for i in range(plan.num_batches):
        b = plan.pack_bounds(i)
        k = int(np.searchsorted(plan.pack_offsets, plan.batch_offsets[i]))
        n = b.shape[0] - 1
        padded += n * packs[k : k + n].max()
        per_batch.append(n / 8)
    assert stats["padding"]["efficiency"] == pytest.approx(DUR.sum() / padded)
    assert stats["cuts_fill"]["mean"] == pytest.approx(np.mean(per_batch))


def test_pack_ids_stay_unique_in_an_epoch_across_an_elastic_restore(index: CutIndex) -> None:
    """A pack's id names one pack of the epoch: the packs planned after a change of world size
    do not take the ids of packs delivered before it (``pack-<epoch>-<k>`` restarts ``k``)."""
    cfg = CFG.replace(drop_last=True)
    members: dict[str, tuple[str, ...]] = {}
    state = None
    for world, steps in ((1, 4), (2, 3), (3, None)):
        for r in range(world):
            s = DiscoSeqSampler(index, cfg.replace(world_size=world, rank=r))
            if state is not None:
                s.load_state_dict(state)
            s.set_epoch(0)
            it = iter(s)
            for _ in range(len(s) if steps is None else steps):
                for pack in next(it):
                    ids = tuple(m["id"] for m in pack_members(pack))
                    assert members.setdefault(pack.id, ids) == ids, pack.id
            if r == 0:
                next_state = json.loads(json.dumps(s.state_dict()))
        state = next_state
    assert len({m for ms in members.values() for m in ms}) == sum(map(len, members.values()))
