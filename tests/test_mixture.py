"""Mixtures of named sources: exact quotas (cuts and hours), streams without replacement across
epochs, no cut twice in a batch, schedules, temperature, groups, tags, elastic resume, errors."""

from __future__ import annotations

import collections
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discoseq import DiscoSeqSampler, SamplerConfig
from discoseq.index import CutIndex, build_index
from discoseq.index.multi import MultiIndex
from discoseq.mixture import Mixture, MixtureSchedule
from discoseq.plan import EpochPlan, plan_epoch
from discoseq.plan.quota import US_PER_HOUR, SourceLayout
from discoseq.synth import write_manifest

SIZES = {"a": 300, "b": 60, "c": 25}
BASE = {"max_duration": 120.0, "num_buckets": 4, "world_size": 2, "rank": 0}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CutIndex]:
    root = tmp_path_factory.mktemp("mixture")
    out = {}
    for seed, (name, n) in enumerate(SIZES.items(), 1):
        manifest = write_manifest(root / f"{name}.jsonl.gz", n, seed=seed)
        out[name] = build_index(manifest, root / f"{name}.idx", progress=False)
    return out


def layout(sources: dict[str, CutIndex]) -> tuple[MultiIndex, SourceLayout]:
    multi = MultiIndex(list(sources.values()), list(sources))
    return multi, SourceLayout(tuple(sources), multi.offsets)


def plan(sources: dict[str, CutIndex], epoch: int = 0, world: int = 2, **kw: Any) -> EpochPlan:
    multi, lay = layout(sources)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return plan_epoch(multi.columns, SamplerConfig(**{**BASE, **kw}), epoch, world, sources=lay)


def by_source(p: EpochPlan) -> dict[str, Any]:
    return {s.name: s for s in p.stats.sources}


def rows_per_source(p: EpochPlan, offsets: np.ndarray) -> dict[int, np.ndarray]:
    planned = p.rows[: p.batch_offsets[p.num_batches - p.num_padding]]
    src = np.searchsorted(offsets, planned, side="right") - 1
    return {s: planned[src == s] for s in range(len(offsets) - 1)}


def test_natural_mixture_is_every_cut_once(sources) -> None:
    p = plan(sources)
    stats = by_source(p)
    for name, n in SIZES.items():
        assert (stats[name].selected, stats[name].repeats, stats[name].planned) == (n, 0, n)
    assert sorted(p.rows[: p.batch_offsets[p.num_batches - p.num_padding]].tolist()) == list(
        range(sum(SIZES.values()))
    )


def test_cut_quotas_are_exact_on_every_world_size(sources) -> None:
    mixture = {"a": {"weight": 3}, "b": {"weight": 1}, "c": {"repeat": 2.5}}
    for world in (1, 2, 3, 8):
        for drop_last in (False, True):
            p = plan(sources, world=world, mixture=mixture, epoch_cuts=401, drop_last=drop_last)
            s = by_source(p)
            assert s["c"].selected == round(2.5 * 25) == 62
            assert s["a"].selected + s["b"].selected == 401 - 62
            assert s["a"].selected == 254 and s["b"].selected == 85  # 339 * 3/4, remainder
            for x in s.values():  # drop/pad reported per source; all selected planned else
                assert x.planned + x.dropped == x.selected
            assert sum(x.padding for x in s.values()) == sum(
                len(p.batch(int(b))) for b in p.padding_batches
            )


def test_hours_quotas_within_one_cut(sources) -> None:
    multi, _ = layout(sources)
    dur = multi.duration
    mixture = {"a": {"weight": 1}, "b": {"weight": 2}, "c": {"choose": 10}}
    for epoch in range(4):
        p = plan(sources, epoch, mixture=mixture, epoch_hours=1.5)
        s = by_source(p)
        assert s["c"].selected == 10
        c_expected_hours = 10 * (dur[multi.offsets[2] :].sum() / 25) / 3600
        left = 1.5 - c_expected_hours
        for name, share, lo, hi in (("a", 1 / 3, 0, 300), ("b", 2 / 3, 300, 360)):
            assert s[name].unit == "hours"
            assert s[name].asked == pytest.approx(left * share, abs=1e-9)
            longest = dur[lo:hi].max() / 3600
            assert abs(s[name].selected_hours - s[name].asked) <= longest / 2 + 1e-9


def test_streams_draw_without_replacement_across_epochs(sources) -> None:
    multi, _ = layout(sources)
    mixture = {"a": {"choose": 70}, "b": {"repeat": 1.7}, "c": {"repeat": 0.4}}
    counts = collections.Counter()
    epochs = 9
    for e in range(epochs):
        p = plan(sources, e, world=1, mixture=mixture)
        counts.update(p.rows.tolist())
    for s, (per_epoch, n) in enumerate(((70, 300), (round(1.7 * 60), 60), (round(0.4 * 25), 25))):
        lo, hi = multi.offsets[s], multi.offsets[s + 1]
        seen = np.array([counts[r] for r in range(lo, hi)])
        fair = per_epoch * epochs / n
        assert seen.sum() == per_epoch * epochs
        assert seen.min() >= np.floor(fair) and seen.max() <= np.ceil(fair), (s, seen)


def test_no_cut_twice_in_a_batch(sources) -> None:
    p = plan(sources, world=3, mixture={"a": {"repeat": 1}, "b": {"repeat": 4}, "c": {"repeat": 9}})
    assert by_source(p)["c"].repeats == 8 * 25
    for i in range(p.num_batches):
        rows = p.batch(i)
        assert len(set(rows.tolist())) == rows.shape[0], i


def test_temperature_and_groups(sources) -> None:
    uniform = by_source(plan(sources, temperature=0.0, epoch_cuts=300))
    assert [uniform[n].selected for n in "abc"] == [100, 100, 100]
    nested = {
        "a": {"weight": 1},
        "rest": {"weight": 1, "temperature": 0, "group": {"b": {}, "c": {}}},
    }
    s = by_source(plan(sources, mixture=nested, epoch_cuts=400))
    assert (s["a"].selected, s["b"].selected, s["c"].selected) == (200, 100, 100)


def test_schedule_interpolates(sources) -> None:
    kw = {
        "mixture": {"a": {"weight": 1}, "b": {"weight": 1}, "c": {"weight": 1}},
        "mixture_schedule": [[0, {"a": 1, "b": 1, "c": 0.000001}], [10, {"a": 1, "b": 1, "c": 2}]],
        "epoch_cuts": 400,
    }
    s0, s5, s20 = (by_source(plan(sources, e, **kw)) for e in (0, 5, 20))
    assert s0["c"].selected == 0 and s0["a"].selected == 200
    assert (s5["a"].selected, s5["b"].selected, s5["c"].selected) == (133, 133, 134)
    assert s20["c"].selected == 200 and s20["a"].selected == 100
    sched = MixtureSchedule.parse(kw["mixture_schedule"])
    assert sched.weights_at(5)["c"] == pytest.approx(1.0000005)


def test_sampler_tags_cuts_and_resumes_elastically(sources) -> None:
    mixture = {"a": {"weight": 1}, "b": {"weight": 1}, "c": {"repeat": 3}}
    cfg = SamplerConfig(**{**BASE, "world_size": 2}, mixture=mixture, epoch_cuts=200)
    old = [DiscoSeqSampler(sources, cfg.replace(rank=r)) for r in range(2)]
    delivered = collections.Counter()
    for s in old:
        it = iter(s)
        for _ in range(3):
            batch = next(it)
            assert all(c.source in SIZES for c in batch)
            delivered.update((c.source, c.id) for c in batch)
    state = orjson.loads(orjson.dumps(old[0].state_dict()))
    new = [DiscoSeqSampler(sources, cfg.replace(world_size=3, rank=r)) for r in range(3)]
    for s in new:
        s.load_state_dict(state)
        for batch in s:
            delivered.update((c.source, c.id) for c in batch)
    full = old[0].plan
    expected = collections.Counter()
    for c in sources_cuts(sources, full):
        expected[c] += 1
    pad = sum(len(new[0].plan.batch(int(b))) for b in new[0].plan.padding_batches)
    assert sum(delivered.values()) == sum(expected.values()) + pad
    assert set(delivered) == set(expected)
    assert all(delivered[k] >= v for k, v in expected.items())


def sources_cuts(sources: dict[str, CutIndex], p: EpochPlan) -> list[tuple[str, str]]:
    multi, _ = layout(sources)
    rows = p.rows[: p.batch_offsets[p.num_batches - p.num_padding]]
    src = multi.source_of(rows)
    return [(multi.names[s], cid) for s, cid in zip(src.tolist(), multi.cut_ids(rows), strict=True)]


def test_state_is_small_and_refuses_another_mixture(sources) -> None:
    with pytest.raises(ValueError, match="within one level"):
        SamplerConfig(**BASE, mixture={"a": {"weight": 1}, "b": {}, "c": {}})
    cfg = SamplerConfig(**BASE, mixture={"a": {}, "b": {}, "c": {}}, temperature=0.5)
    s = DiscoSeqSampler(sources, cfg)
    state = s.state_dict()
    assert len(orjson.dumps(state)) < 2000
    other = DiscoSeqSampler(sources, cfg.replace(temperature=0.7))
    with pytest.raises(ValueError, match="temperature"):
        other.load_state_dict(state)
    shuffled = DiscoSeqSampler({k: sources[k] for k in ("b", "a", "c")}, cfg)
    with pytest.raises(ValueError, match="another mixture: sources in another order"):
        shuffled.load_state_dict(state)


def test_shards_are_one_corpus(sources) -> None:
    s = DiscoSeqSampler([sources["a"], sources["b"]], SamplerConfig(**BASE))
    assert len(s.index) == 360
    rows = sorted(r for b in s.iter_batches_indices() for r in b.tolist())
    assert len(rows) >= 180
    assert all(c.custom is None or "source" not in c.custom for c in next(iter(s)))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"mixture": {"a": {"weight": 1, "repeat": 2}, "b": {}, "c": {}}}, "one of repeat"),
        ({"mixture": {"a": {"weight": 0}, "b": {"weight": 1}, "c": {"weight": 1}}}, "weight=0"),
        ({"mixture": {"a": {"weight": float("nan")}}}, "weight=nan"),
        ({"mixture": {"a": {"repeat": -1}}}, "repeat=-1"),
        ({"mixture": {"a": {"choose": 1.5}}}, "choose=1.5"),
        ({"mixture": {"a": {"speed": 1}}}, "unknown keys"),
        ({"mixture": {"a": {}, "g": {"group": {"a": {}}}}}, "more than once"),
        ({"mixture": {}}, "non-empty"),
        ({"epoch_hours": 1.0, "epoch_cuts": 5}, "give one budget"),
        ({"temperature": -1}, "temperature=-1"),
        ({"mixture_schedule": [[0, {"a": 1}]]}, "give mixture="),
        (
            {"mixture": {"a": {"weight": 1}}, "mixture_schedule": [[0, {"z": 1}]]},
            "not mixture entries",
        ),
        ({"mixture": {"a": {"weight": 1}}, "mixture_schedule": {"0": {"a": 1}}}, "list of"),
        (  # a derived weight cannot be scheduled: the message says which entries can
            {"mixture": {"a": {}, "b": {}}, "mixture_schedule": [[0, {"a": 1}]]},
            r'moves the weights of entries written \{"weight": w\}',
        ),
    ],
)
def test_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplerConfig(max_cuts=4, **kw)


def test_sampler_errors(sources, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"names \['z'\], which are not sources"):
        DiscoSeqSampler(
            sources, SamplerConfig(**BASE, mixture={"a": {}, "b": {}, "c": {}, "z": {}})
        )
    with pytest.raises(ValueError, match=r"leaves out the sources \['c'\]"):
        DiscoSeqSampler(sources, SamplerConfig(**BASE, mixture={"a": {}, "b": {}}))
    with pytest.raises(ValueError, match=r"did you mean 'c' for 'cc'\?"):  # a typo
        DiscoSeqSampler(sources, SamplerConfig(**BASE, mixture={"a": {}, "b": {}, "cc": {}}))
    with pytest.raises(ValueError, match="mapping of name -> source"):
        DiscoSeqSampler(sources["a"], SamplerConfig(**BASE, epoch_hours=1.0))
    with pytest.raises(ValueError, match="unique"):
        plan(sources, mixture={"a": {}, "b": {}, "c": {"choose": 30, "unique": True}})
    with pytest.raises(ValueError, match=r"\['a', 'b', 'c'\] have no cuts after the filters"):
        plan(sources, mixture={"a": {}, "b": {}, "c": {"choose": 3}}, min_duration=1000.0)
    with pytest.raises(ValueError, match="epoch_cuts=10 is smaller"):
        plan(sources, mixture={"a": {}, "b": {}, "c": {"choose": 20}}, epoch_cuts=10)


def test_mixture_round_trips_as_json() -> None:
    spec = {"en": {"weight": 2, "temperature": 0.3, "group": {"libri": {}, "cv": {}}},
            "sw": {"repeat": 3.0, "unique": False}, "yo": {"choose": 7}}  # fmt: skip
    m = Mixture.parse(spec)
    assert Mixture.parse(m.to_dict()) == m
    assert m.source_names() == ["libri", "cv", "sw", "yo"]
    cfg = SamplerConfig(max_cuts=3, mixture=spec, epoch_hours=10.0)
    assert SamplerConfig.from_json(cfg.to_json()) == cfg
    assert hash(cfg) == hash(SamplerConfig.from_dict(cfg.to_dict()))
    assert US_PER_HOUR == 3_600_000_000


def test_dataloader_workers_resolve_mixtures(sources) -> None:
    from discoseq import create_dataloader

    cfg = SamplerConfig(**BASE, mixture={"a": {}, "b": {}, "c": {"repeat": 2}}, num_workers=2,
                        buffer_size=50)  # fmt: skip
    direct = [[(c.source, c.id) for c in b] for b in DiscoSeqSampler(sources, cfg)]
    loader = create_dataloader(sources, cfg)
    through = [[(c.source, c.id) for c in b] for b in loader]
    assert through == direct and len(direct) == len(loader)
    assert loader.state_dict()["batches_delivered"] == len(direct)


def test_per_source_batches_and_even_interleave(sources) -> None:
    mixture = {"a": {"weight": 2}, "b": {"weight": 1}, "c": {"repeat": 4}}
    world = 2
    p = plan(sources, world=world, mixture=mixture, epoch_cuts=500, mix_batches="per_source")
    multi, _ = layout(sources)
    batch_source = [set(multi.source_of(p.batch(i)).tolist()) for i in range(p.num_batches)]
    assert all(len(s) == 1 for s in batch_source), "every batch from one source"
    step_sources = [
        set().union(*batch_source[s * world : (s + 1) * world]) for s in range(p.batches_per_rank)
    ]
    mixed = [i for i, s in enumerate(step_sources) if len(s) > 1]
    assert len(mixed) <= len(SIZES) - 1, "only leftover steps may mix sources"
    pure = [next(iter(s)) for s in step_sources if len(s) == 1]
    totals = collections.Counter(pure)
    seen: collections.Counter[int] = collections.Counter()
    for k, s in enumerate(pure, 1):
        seen[s] += 1
        for src, total in totals.items():
            assert abs(seen[src] - total * k / len(pure)) <= 2, (k, src)
    pooled = plan(sources, world=world, mixture=mixture, epoch_cuts=500)
    assert by_source(pooled)["a"].selected == by_source(p)["a"].selected


def test_mix_batches_needs_named_sources(sources) -> None:
    with pytest.raises(ValueError, match="mix_batches only apply to a mixture"):
        DiscoSeqSampler(sources["a"], SamplerConfig(**BASE, mix_batches="per_source"))
    with pytest.raises(ValueError, match="mix_batches='x'"):
        SamplerConfig(**BASE, mix_batches="x")


def test_analysis_reports_sources(sources) -> None:
    from discoseq.analysis import analyze, format_table

    multi, _ = layout(sources)
    mixture = {"a": {"weight": 1}, "b": {"weight": 1}, "c": {"repeat": 2}}
    cfg = SamplerConfig(**BASE, mixture=mixture, epoch_hours=1.0)
    stats = analyze(multi, cfg)
    rows = {s["name"]: s for s in stats["sources"]}
    assert (
        rows["c"]["selected"] == 50 and rows["c"]["repeats"] == 25 and rows["c"]["coverage"] == 1.0
    )
    assert sum(s["planned"] for s in rows.values()) == stats["totals"]["cuts_planned"]
    assert abs(sum(s["hours_share"] for s in rows.values()) - 1.0) < 1e-9
    assert "sources (mixture" in format_table(stats)
    assert analyze(sources["a"], SamplerConfig(**BASE))["sources"] == []


@settings(max_examples=40)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    kinds=st.lists(
        st.sampled_from(["weight", "derived", "repeat", "choose"]), min_size=3, max_size=3
    ),
    budget=st.sampled_from(["natural", "cuts", "hours"]),
    epoch=st.integers(0, 14),
    seed=st.integers(0, 2**64 - 1),
    shuffle=st.booleans(),
    use_filter=st.booleans(),
    data=st.data(),
)
def test_selection_equals_reference(sizes, kinds, budget, epoch, seed, shuffle, use_filter, data):
    from discoseq.plan.quota import select_epoch
    from tests import reference_plan as ref

    names = [f"s{i}" for i in range(len(sizes))]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    gen = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    duration = np.round(gen.uniform(0.5, 20.0, n), 3)
    keep = gen.random(n) < 0.8 if use_filter else None
    if keep is not None:  # every source keeps at least one row
        keep[offsets[:-1]] = True
    kinds = kinds[: len(names)]
    if all(k in ("repeat", "choose") for k in kinds):
        kinds[0] = "derived"
    if "weight" in kinds:  # one level: all weighted entries explicit, or none
        kinds = ["weight" if k == "derived" else k for k in kinds]
    entries: dict[str, dict] = {}
    for name, kind in zip(names, kinds, strict=True):
        if kind == "weight":
            entries[name] = {"weight": data.draw(st.sampled_from([0.5, 1.0, 3.0]))}
        elif kind == "repeat":
            entries[name] = {"repeat": data.draw(st.sampled_from([0.3, 1.0, 2.5]))}
        elif kind == "choose":
            entries[name] = {"choose": data.draw(st.integers(0, 20))}
        else:
            entries[name] = {}
    fixed = sum(
        round(e["repeat"] * sizes[i]) if "repeat" in e else e.get("choose", 0)
        for i, e in enumerate(entries.values())
    )
    kw: dict = {}
    if budget == "cuts":
        kw["epoch_cuts"] = fixed + data.draw(st.integers(1, 30))
    elif budget == "hours":
        kw["epoch_hours"] = fixed * 25 / 3600 + data.draw(st.sampled_from([0.01, 0.05, 0.2]))
    temperature = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    if not any(not e for e in entries.values()):  # no derived weight: temperature unused
        temperature = 1.0
    cfg = SamplerConfig(max_cuts=4, seed=seed, mixture=entries, temperature=temperature,
                        strategy="bucketed" if shuffle else "sequential", **kw)  # fmt: skip
    layout = SourceLayout(tuple(names), offsets)
    try:
        got = select_epoch(duration, keep, layout, cfg, epoch)
        rows, blocks, stats = got.rows, got.blocks, got.sources
    except ValueError as e:  # a budget the fixed sources already exceed (hours: expected)
        assert "is less than" in str(e) or "is smaller than" in str(e)
        return
    expect = ref.reference_select(duration, keep, names, list(offsets), entries, seed, epoch,
                                  shuffle, temperature=temperature, **kw)  # fmt: skip
    for k in range(blocks.source.shape[0]):
        name = names[int(blocks.source[k])]
        got = sorted(rows[blocks.starts[k] : blocks.starts[k + 1]].tolist())
        want = sorted(r for r, rnd in expect[name] if rnd == int(blocks.round[k]))
        assert got == want, (name, int(blocks.round[k]))
    for s, name in enumerate(names):
        assert stats[s].selected == len(expect[name])
        assert stats[s].repeats == sum(1 for _, rnd in expect[name] if rnd > 0)


def test_plot_has_a_source_panel(sources, tmp_path: Path, monkeypatch) -> None:
    import matplotlib.figure

    from discoseq.analysis import analyze, plot_analysis

    titles: list[str] = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        titles.extend(ax.get_title() for ax in fig.axes)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    multi, _ = layout(sources)
    stats = analyze(multi, SamplerConfig(**BASE, mixture={"a": {}, "b": {}, "c": {"repeat": 2}}))
    out = plot_analysis(stats, tmp_path / "mix.png")
    assert out.stat().st_size > 0
    assert any(t.startswith("Mixture: each source's share") for t in titles)


def test_copies_are_spread_and_crowding_is_said(sources) -> None:
    """Copies of an upsampled cut are spread over its bucket (batches stay full); a cut taken
    more often than half its bucket's batches is reported."""
    p = plan(sources, world=1, mixture={"a": {}, "b": {}, "c": {"repeat": 4}})
    sizes = np.diff(p.batch_offsets)
    natural = plan(sources, world=1)
    assert p.num_batches <= natural.num_batches * 1.35  # 100 more cuts, no flood of batches
    assert (sizes <= 2).sum() <= (np.diff(natural.batch_offsets) <= 2).sum() + 3
    multi, lay = layout(sources)
    crowd = {
        **BASE,
        "num_buckets": 1,
        "max_duration": 3000.0,
        "mixture": {"a": {}, "b": {}, "c": {"choose": 200}},
    }
    with pytest.warns(RuntimeWarning, match="takes one cut .* times"):
        plan_epoch(multi.columns, SamplerConfig(**crowd), 0, 1, sources=lay)


def test_schedules_reach_far_epochs_and_may_start_at_zero(sources) -> None:
    import time

    kw = {
        "mixture": {"a": {"weight": 1}, "b": {"weight": 1}, "c": {"weight": 1}},
        "mixture_schedule": [[0, {"a": 1, "b": 1, "c": 0}], [200_000, {"a": 1, "b": 1, "c": 2}]],
        "epoch_cuts": 300,
    }
    assert by_source(plan(sources, 0, **kw))["c"].selected == 0
    start = time.perf_counter()
    far = by_source(plan(sources, 10**6, **kw))
    assert time.perf_counter() - start < 5.0  # a sum over epochs in arrays, not a loop
    assert (far["a"].selected, far["c"].selected) == (75, 150)
    zero = {**kw, "mixture_schedule": [[0, {"a": 0, "b": 0, "c": 0}]]}
    with pytest.raises(ValueError, match=r"at epoch 0 the weights .* are all 0"):
        plan(sources, 0, **zero)


def test_layouts_and_temperature_are_checked(sources) -> None:
    multi, _ = layout(sources)
    for offsets in ([0, 80, 60, 385], [30, 60, 80, 385]):
        with pytest.raises(ValueError, match=r"never decreasing|from 0"):
            SourceLayout(("a", "b", "c"), np.array(offsets))
    with pytest.raises(ValueError, match="have no cuts"):
        plan_epoch(multi.columns, SamplerConfig(**BASE), 0, 1,
                   sources=SourceLayout(("a", "b", "c"), np.array([0, 300, 300, 385])))  # fmt: skip
    with pytest.raises(ValueError, match=r"temperature=0.5 has no effect"):
        SamplerConfig(**BASE, mixture={"a": {"weight": 1}, "b": {"weight": 2}}, temperature=0.5)
    SamplerConfig(**BASE, mixture={"a": {}, "b": {}}, temperature=0.5)  # derived: fine


def test_a_changed_source_is_named(sources, tmp_path: Path) -> None:
    cfg = SamplerConfig(**BASE)
    state = DiscoSeqSampler(sources, cfg).state_dict()
    other = build_index(write_manifest(tmp_path / "b2.jsonl.gz", 61, seed=7), tmp_path / "b2.idx",
                        progress=False)  # fmt: skip
    changed = DiscoSeqSampler({"a": sources["a"], "b": other, "c": sources["c"]}, cfg)
    with pytest.raises(ValueError, match=r"another mixture: sources changed: \['b'\]"):
        changed.load_state_dict(state)
    renamed = DiscoSeqSampler({"a": sources["a"], "bb": sources["b"], "c": sources["c"]},
                              SamplerConfig(**BASE))  # fmt: skip
    with pytest.raises(ValueError, match=r"only in the state: \['b'\]; new: \['bb'\]"):
        renamed.load_state_dict(state)


@pytest.mark.parametrize(
    ("extra", "restore_world"),
    [
        ({"strategy": "random"}, 3),
        ({"mix_batches": "per_source"}, 3),
        ({"drop_last": True}, 1),
        ({"mix_batches": "per_source", "drop_last": True}, 3),
    ],
)
def test_elastic_resume_delivers_each_position_once(sources, extra: dict, restore_world: int):
    """Save a mixture mid-epoch on 2 ranks, resume on another world size: every position of the
    epoch's selection not yet delivered is delivered exactly once (plus tail padding), none
    delivered before is delivered again; the index rows match the selection's multiset."""
    base = {k: v for k, v in BASE.items() if not (k == "num_buckets" and "strategy" in extra)}
    cfg = SamplerConfig(
        **base,
        **extra,
        mixture={"a": {"weight": 1}, "b": {"weight": 1}, "c": {"repeat": 3}},
        epoch_cuts=260,
    )
    old = [DiscoSeqSampler(sources, cfg.replace(world_size=2, rank=r)) for r in range(2)]
    full = old[0].plan
    steps = 4
    delivered = collections.Counter()
    for s in old:
        for _, rows in zip(range(steps), s.iter_batches_indices(), strict=False):
            delivered.update(rows.tolist())
    state = orjson.loads(orjson.dumps(old[0].state_dict(batches_delivered=steps)))
    new = [
        DiscoSeqSampler(sources, cfg.replace(world_size=restore_world, rank=r))
        for r in range(restore_world)
    ]
    rest = collections.Counter()
    for s in new:
        s.load_state_dict(state)
        for rows in s.iter_batches_indices():
            rest.update(rows.tolist())
    plan = new[0].plan
    pad = collections.Counter(
        r for b in plan.padding_batches.tolist() for r in plan.batch(b).tolist()
    )
    # the epoch's selection (it does not depend on drop_last or the world size)
    whole = DiscoSeqSampler(sources, cfg.replace(drop_last=False, world_size=1, rank=0)).plan
    selected = collections.Counter(whole.rows.tolist())
    total = delivered + rest - pad
    assert all(total[r] <= selected[r] for r in total), "no cut beyond its copies"
    # every position not yet delivered is delivered after the resize, except what the new
    # plan's drop_last drops (the old plan's dropped positions were never delivered: re-planned)
    assert sum(total.values()) + plan.stats.dropped_cuts == sum(selected.values())
    if not cfg.drop_last:
        assert total == selected
    assert full.num_batches > 0


def _selections(sizes: list[int], epochs: int, seed: int = 5, **kw: Any):
    """Per epoch, the rows select_epoch takes of every source (durations 0.5..20 s)."""
    from discoseq.plan.quota import select_epoch

    names = tuple(f"s{i}" for i in range(len(sizes)))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    duration = np.round(np.random.default_rng(seed).uniform(0.5, 20.0, int(offsets[-1])), 3)
    cfg = SamplerConfig(max_cuts=4, seed=seed, **kw)
    lay = SourceLayout(names, offsets)
    for e in range(epochs):
        got = select_epoch(duration, None, lay, cfg, e)
        rows, blocks, stats = got.rows, got.blocks, got.sources
        yield e, offsets, rows, blocks, stats


@pytest.mark.parametrize(
    "kw",
    [
        {"mixture": {"s0": {"choose": 61}, "s1": {"repeat": 0.9}, "s2": {"choose": 50}}},
        {"mixture": {"s0": {"repeat": 0.55}, "s1": {"choose": 99}, "s2": {"repeat": 1.0}}},
        {"mixture": {"s0": {"weight": 3}, "s1": {"weight": 2}, "s2": {"weight": 1}},
         "epoch_hours": 0.3},
        {"mixture": {"s0": {"weight": 1}, "s1": {"weight": 1}, "s2": {"weight": 1}},
         "mixture_schedule": [[0, {"s0": 1, "s1": 3, "s2": 1}], [9, {"s0": 3, "s1": 1, "s2": 2}]],
         "epoch_hours": 0.35},
        {"mixture": {"s0": {"weight": 1}, "s1": {"weight": 1}, "s2": {"weight": 1}},
         "mixture_schedule": [[2, {"s0": 1, "s1": 4, "s2": 1}], [11, {"s0": 2, "s1": 1, "s2": 1}]],
         "epoch_cuts": 130},
    ],
)  # fmt: skip
def test_no_cut_twice_in_an_epoch_whose_quota_fits(kw: dict) -> None:
    """A quota of at most the source's size never takes a cut twice in one epoch, also when
    the epoch crosses from one permutation into the next (every quota here <= size, most
    epochs cross); after every epoch each cut has been taken floor or ceil of its fair count."""
    sizes = [70, 110, 57]
    counts = [np.zeros(n, dtype=np.int64) for n in sizes]
    taken = [0, 0, 0]
    crossing = 0
    for e, offsets, rows, blocks, stats in _selections(sizes, 40, **kw):
        assert blocks.num_rounds == 1, e
        for s, st_ in enumerate(stats):
            assert st_.selected <= sizes[s] and st_.repeats == 0, (e, st_)
            mine = rows[(rows >= offsets[s]) & (rows < offsets[s + 1])] - offsets[s]
            assert len(np.unique(mine)) == mine.shape[0] == st_.selected, (e, s)
            crossing += (taken[s] // sizes[s]) != ((taken[s] + st_.selected - 1) // sizes[s])
            taken[s] += st_.selected
            np.add.at(counts[s], mine, 1)
            fair = taken[s] / sizes[s]
            assert counts[s].min() >= np.floor(fair) and counts[s].max() <= np.ceil(fair), (e, s)
    assert crossing >= 20  # the epochs do cross cycle boundaries


def test_far_epochs_match_a_walk_from_epoch_zero() -> None:
    """An epoch's selection is a pure function of the epoch: planning epoch 23 alone (a chain of
    epochs each crossing into the next cycle, reordered heads) gives what the walk gives."""
    from discoseq.plan.quota import select_epoch

    kw = {"mixture": {"s0": {"repeat": 0.85}, "s1": {"weight": 1}}, "epoch_hours": 0.6}
    walk = {e: rows.copy() for e, _, rows, _, _ in _selections([90, 40], 24, **kw)}
    offsets = np.array([0, 90, 130])
    duration = np.round(np.random.default_rng(5).uniform(0.5, 20.0, 130), 3)
    lay = SourceLayout(("s0", "s1"), offsets)
    for e in (23, 17, 4):
        rows = select_epoch(duration, None, lay, SamplerConfig(max_cuts=4, seed=5, **kw), e).rows
        assert np.array_equal(rows, walk[e]), e


def test_upsampled_sources_still_cycle_and_never_share_a_batch(sources) -> None:
    """Above the source's size copies are due (reported as repeats), floor/ceil still holds."""
    counts = collections.Counter()
    for e in range(5):
        p = plan(sources, e, world=1, mixture={"a": {"choose": 100}, "b": {"repeat": 1.5},
                                                 "c": {"repeat": 2.3}})  # fmt: skip
        s = by_source(p)
        assert s["b"].repeats == 90 - 60 and s["c"].repeats == round(2.3 * 25) - 25
        counts.update(p.rows.tolist())
        for i in range(p.num_batches):
            rows = p.batch(i)
            assert len(set(rows.tolist())) == rows.shape[0]


@pytest.mark.parametrize(
    "kw",
    [
        {"mixture": {"s0": {"repeat": 2.3}, "s1": {"repeat": 1.02}, "s2": {"choose": 5}}},
        # hours: s1 asked a little over its hours, s0 over twice its own; a schedule moves them
        {
            "mixture": {"s0": {"weight": 5}, "s1": {"weight": 2.05}, "s2": {"weight": 1}},
            "epoch_hours": 0.75,
        },
        {
            "mixture": {"s0": {"weight": 1}, "s1": {"weight": 1}, "s2": {"weight": 1}},
            "mixture_schedule": [
                [0, {"s0": 6, "s1": 2, "s2": 1}],
                [7, {"s0": 2, "s1": 6, "s2": 1}],
            ],
            "epoch_hours": 0.8,
        },
    ],
)
def test_an_upsampled_source_takes_every_cut_in_each_epoch(kw: dict) -> None:
    """A quota of ``k`` whole sources and a rest takes every cut ``k`` times and the rest's
    cuts once more, in each epoch alone (each cut ``floor`` or ``ceil`` of the epoch's fair
    count: no cut of a small source missing while another is taken twice), and its rests
    still tile the source's stream, so over the epochs too each cut is taken ``floor`` or
    ``ceil`` of its fair count. (An hours rest within half a cut of a whole pass may take a
    cut once more; these quotas stay clear of that band.)"""
    sizes = [20, 30, 40]
    total = collections.Counter()
    asked = collections.defaultdict(float)
    for e, offsets, rows, _, stats in _selections(sizes, 12, seed=3, **kw):
        got = collections.Counter(rows.tolist())
        total.update(got)
        for s, n in enumerate(sizes):
            counts = np.array([got[r] for r in range(offsets[s], offsets[s + 1])])
            k = stats[s].selected // n
            assert counts.min() >= k and counts.max() <= k + 1, (e, s, counts)
            assert stats[s].repeats == stats[s].selected - np.count_nonzero(counts), (e, s)
            asked[s] += stats[s].selected / n
    for s in range(len(sizes)):
        seen = np.array([total[r] for r in range(offsets[s], offsets[s + 1])])
        fair = asked[s]
        assert seen.min() >= np.floor(fair - 1e-9) and seen.max() <= np.ceil(fair + 1e-9), s


def test_an_hours_quota_up_to_half_a_cut_below_the_source_never_repeats() -> None:
    """The hours form of the guarantee: a quota of at most the source's hours less half its
    longest cut (here right at that bound) takes no cut twice in an epoch."""
    sizes = [40, 60]
    duration = np.round(np.random.default_rng(9).uniform(0.5, 20.0, 100), 3)
    us = np.rint(duration * 1e6).astype(np.int64)
    bound = int(us[:40].sum()) - int(us[:40].max()) // 2 - 2
    other = int(us[40:].sum()) // 3
    kw = {"mixture": {"s0": {"weight": bound}, "s1": {"weight": other}},
          "epoch_hours": (bound + other) / 3.6e9}  # fmt: skip
    for e, offsets, rows, _, stats in _selections(sizes, 30, seed=9, **kw):
        assert abs(stats[0].asked * 3.6e9 - bound) <= 2
        mine = rows[rows < offsets[1]]
        assert len(np.unique(mine)) == mine.shape[0] == stats[0].selected, e


@pytest.mark.parametrize(
    ("entries", "kw"),
    [
        ({"s0": {"repeat": 0.85}, "s1": {"choose": 7}, "s2": {"repeat": 0.6}}, {}),
        ({"s0": {"weight": 5}, "s1": {"weight": 3}, "s2": {"weight": 2}}, {"epoch_hours": 0.09}),
        ({"s0": {"weight": 1}, "s1": {"weight": 1}, "s2": {"weight": 1}}, {"epoch_cuts": 26}),
        ({"s0": {}, "s1": {}, "s2": {}}, {"epoch_hours": 0.1}),
    ],
)
def test_chains_of_crossing_epochs_equal_the_reference(entries: dict, kw: dict) -> None:
    """Quotas above half the source make every epoch cross into the next cycle; the selection
    (which follows such chains back only as far as they matter, and keeps cycles between
    calls) equals the reference's walk from epoch 0, epoch by epoch and planned alone."""
    from discoseq.plan.quota import forget_streams, select_epoch
    from tests import reference_plan as ref

    sizes = [12, 9, 11]
    names = ["s0", "s1", "s2"]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    duration = np.round(np.random.default_rng(4).uniform(0.5, 20.0, int(offsets[-1])), 3)
    cfg = SamplerConfig(max_cuts=4, seed=11, mixture=entries, **kw)
    lay = SourceLayout(tuple(names), offsets)
    for e in [*range(26), 19, 3]:
        if e in (19, 3):
            forget_streams()
        got = select_epoch(duration, None, lay, cfg, e)
        rows, blocks = got.rows, got.blocks
        want = ref.reference_select(duration, None, names, list(offsets), entries, 11, e, True,
                                    **kw)  # fmt: skip
        for k in range(blocks.source.shape[0]):
            name = names[int(blocks.source[k])]
            got = sorted(rows[blocks.starts[k] : blocks.starts[k + 1]].tolist())
            assert got == sorted(r for r, rnd in want[name] if rnd == int(blocks.round[k])), (e, k)


def test_kept_streams_follow_the_durations_and_hold_no_column() -> None:
    """The cycles a process keeps are found by the source's content: a changed duration is a
    different stream (the same selection as a cold start), and no column is kept alive."""
    import gc
    import weakref

    from discoseq.plan.quota import forget_streams, select_epoch

    offsets = np.array([0, 40, 70])
    lay = SourceLayout(("s0", "s1"), offsets)
    cfg = SamplerConfig(max_cuts=4, seed=3, epoch_hours=0.1,
                        mixture={"s0": {"weight": 3}, "s1": {"weight": 1}})  # fmt: skip
    duration = np.round(np.random.default_rng(3).uniform(0.5, 20.0, 70), 3)
    for e in range(4):
        select_epoch(duration, None, lay, cfg, e)
    changed = duration.copy()
    changed[5] += 1.0
    warm = select_epoch(changed, None, lay, cfg, 4).rows
    forget_streams()
    assert np.array_equal(warm, select_epoch(changed, None, lay, cfg, 4).rows)
    ref = weakref.ref(changed)
    del changed, warm
    gc.collect()
    assert ref() is None


def test_unique_refuses_an_hours_quota_that_would_repeat() -> None:
    """Just above the hours bound (half a cut below the source's hours) an epoch may cross
    into the next cycle with a repeat while taking no more cuts than the source: ``unique``
    refuses it, naming the epoch. (From the source's hours on, an epoch takes every cut once
    and the rest again: more cuts than the source, refused before any is taken.)"""
    from discoseq.plan.quota import select_epoch

    sizes, offsets = [40, 60], np.array([0, 40, 100])
    duration = np.round(np.random.default_rng(9).uniform(0.5, 20.0, 100), 3)
    total = int(np.rint(duration[:40] * 1e6).astype(np.int64).sum())
    other = int(np.rint(duration[40:] * 1e6).astype(np.int64).sum()) // 3
    lay = SourceLayout(("s0", "s1"), offsets)
    refused = 0
    for extra in range(0, 40):  # quotas from a fraction of a cut below the source's hours
        amount = total - extra * 50_000
        mix = {"s0": {"weight": amount}, "s1": {"weight": other}}
        hours = (amount + other) / 3.6e9
        plain = SamplerConfig(max_cuts=4, seed=9, mixture=mix, epoch_hours=hours)
        strict = plain.replace(mixture={**mix, "s0": {"weight": amount, "unique": True}})
        for e in range(6):
            stats = select_epoch(duration, None, lay, plain, e).sources
            if stats[0].repeats and stats[0].selected <= sizes[0]:
                with pytest.raises(ValueError, match=rf"unique .* in epoch {e} a cut would"):
                    select_epoch(duration, None, lay, strict, e)
                refused += 1
            elif not stats[0].repeats:
                select_epoch(duration, None, lay, strict, e)  # no repeat: accepted
    assert refused > 0


def test_exact_resume_in_a_fresh_process_mid_chain(sources) -> None:
    """Epochs that each cross into the next cycle (reordered heads, kept cycles): a state saved
    mid-epoch and loaded where nothing is kept (a fresh process) delivers exactly the rest."""
    from discoseq.plan.quota import forget_streams

    cfg = SamplerConfig(**BASE, mixture={"a": {"repeat": 0.8}, "b": {"repeat": 0.7},
                                          "c": {"choose": 20}})  # fmt: skip
    run = DiscoSeqSampler(sources, cfg)
    for e in range(5):  # walk epochs 0..4 (each source's epochs cross cycle boundaries)
        run.set_epoch(e)
        whole = [b.tolist() for b in run.iter_batches_indices()]
    assert by_source(run.plan)["a"].repeats == 0 and by_source(run.plan)["b"].repeats == 0
    state = orjson.loads(orjson.dumps(run.state_dict(batches_delivered=3)))
    forget_streams()
    fresh = DiscoSeqSampler(sources, cfg)
    fresh.load_state_dict(state)
    assert [b.tolist() for b in fresh.iter_batches_indices()] == whole[3:]


def test_kernel_microseconds_round_as_numpy() -> None:
    """The quota kernels' microseconds are NumPy's rint(duration x 1e6), halves to even and
    beyond 2**52 us included."""
    from discoseq._core import quota as quota_core

    d = np.array([0.5e-6, 1.5e-6, 2.5e-6, 1.0000005, 3.25, 12.3456785, 7e9, 4.6e9, 1e300 / 1e290])
    want = np.rint(d * 1e6).astype(np.int64)
    none = np.empty(0, np.uint8)
    count, total, longest, shortest_s, longest_s, bad = quota_core.column_totals(d, none)
    assert (shortest_s, longest_s, bad) == (d.min(), d.max(), 0)
    assert (count, total, longest) == (d.shape[0], int(want.sum()), int(want.max()))
    shift = quota_core.bin_shift(d.shape[0], False)
    _, us, _, _ = quota_core.histogram(d, none, none, 0, 0, False, 0, 0, none, shift)
    assert int(us.sum()) == int(want.sum())


def test_copies_flag_exactly_the_rows_taken_twice() -> None:
    """The selection's copy bits (one per id, row - lo) flag every row the epoch takes more
    than once, and only those; the ids lie in [0, size)."""
    from discoseq.plan.quota import select_epoch

    rng = np.random.default_rng(4)
    duration = np.round(rng.uniform(0.5, 20.0, 130), 3)
    lay = SourceLayout(("a", "b", "c"), np.array([0, 50, 110, 130]))
    weights = {"a": {"weight": 0.2}, "b": {"weight": 0.3}, "c": {"weight": 0.5}}
    cfg = SamplerConfig(max_cuts=4, seed=2, epoch_cuts=150, mixture=weights)
    for e in range(4):
        got = select_epoch(duration, None, lay, cfg, e)
        counts = np.bincount(got.rows, minlength=130)
        assert (counts > 1).any() and got.copies is not None
        lo, size = got.copies.lo, got.copies.size
        flagged = np.zeros(130, bool)
        flagged[lo : lo + size] = np.unpackbits(got.copies.bits, bitorder="little")[:size]
        assert np.array_equal(flagged, counts > 1), e


def test_scratch_buffers_are_reused_and_never_shared() -> None:
    """A mixture's plan hands its arrays of rows back and the next plan reuses them; a plan
    the caller keeps is not touched by later plans; foreign arrays are never kept."""
    from discoseq.plan import scratch

    rng = np.random.default_rng(8)
    duration = np.round(rng.uniform(0.5, 20.0, 3000), 2)
    lay = SourceLayout(("a", "b"), np.array([0, 2500, 3000]))
    cfg = SamplerConfig(max_duration=60.0, num_buckets=4, seed=3, epoch_cuts=3000,
                        mixture={"a": {"weight": 0.5}, "b": {"weight": 0.5}})  # fmt: skip
    cols = {"duration": duration}
    scratch.release()
    first = plan_epoch(cols, cfg, 1, 2, sources=lay)
    kept = [buf for buf in scratch._KEPT]
    assert len(kept) == 2  # the selection's rows, the grouped rows
    want = np.array(first.rows)
    second = plan_epoch(cols, cfg, 2, 2, sources=lay)  # reuses those buffers
    # each is kept again, or holds the rows of the plan still held (lent to it)
    assert all(any(buf is k for k in scratch._KEPT + scratch._LENT) for buf in kept)
    assert np.array_equal(first.rows, want)
    # the first plan's rows come back once nothing refers to them; never before
    lent = id(first.rows.base)  # no reference of the test's own
    assert lent in map(id, scratch._LENT)
    view = first.rows[5:9]
    del first
    scratch.empty(1, np.int64)  # a later call looks at the lent buffers
    assert lent not in map(id, scratch._KEPT)  # a view of it is still held
    del view
    scratch.empty(1, np.int64)
    assert lent in map(id, scratch._KEPT)
    scratch.release()
    assert np.array_equal(plan_epoch(cols, cfg, 2, 2, sources=lay).rows, second.rows)
    before = list(scratch._KEPT)
    scratch.give_back(np.zeros(80, np.uint8).view(np.float64), duration)  # not made by it
    # two kept; the third holds the dropped plan's rows until a later call takes it back
    assert len(scratch._KEPT) == len(before) == 2 and len(scratch._LENT) == 1
    assert all(a is b for a, b in zip(scratch._KEPT, before, strict=True))


def _keys(key: int, n: int) -> np.ndarray:
    from tests.reference_plan import GOLDEN, mix64

    return np.array([mix64((key + (i + 1) * GOLDEN) % (1 << 64)) for i in range(n)], np.uint64)


def test_coded_kernels_agree_with_hashing_every_key() -> None:
    """A cycle's codes are its keys' top bytes; every kernel given them finds the same
    histograms, bin members and runs as it does hashing each key (ties at the thresholds'
    codes included: thresholds are taken at cuts' own keys)."""
    from discoseq._core import quota as quota_core

    rng = np.random.default_rng(11)
    n, key = 3000, 0x1234_5678_9ABC_DEF0
    d = np.round(rng.uniform(0.5, 20.0, n), 3)
    keep = (rng.random(n) < 0.9).astype(np.uint8)
    excl = (rng.random(n) < 0.3).astype(np.uint8)
    none = np.empty(0, np.uint8)
    u = _keys(key, n)
    codes = np.empty(n, np.uint8)
    quota_core.key_codes(key, codes)
    assert np.array_equal(codes, (u >> np.uint64(56)).astype(np.uint8))
    shift = quota_core.bin_shift(n, True)
    plain = quota_core.histogram(d, keep, none, 0, key, True, 0, 0, none, shift)
    codes2 = np.empty(n, np.uint8)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(quota_core.key_histogram(d, keep, key, codes2), plain[:2], strict=True)
    )
    assert np.array_equal(codes2, codes)
    order = np.lexsort((np.arange(n), u))
    for mode in (0, 1, 2):
        t = order[n // 3]  # mode 2's own threshold: a cut's key
        spec = (keep, excl if mode else none, mode, key, True, int(u[t]), int(t))
        hashed = quota_core.histogram(d, *spec, none, shift)
        coded = quota_core.histogram(d, *spec, codes, shift)
        assert all(np.array_equal(a, b) for a, b in zip(hashed, coded, strict=True))
        for b in (0, int(codes[t]), 255):
            count = int(coded[0][b])
            got = quota_core.bin_members(d, *spec, codes, shift, b, count)
            want = quota_core.bin_members(d, *spec, none, shift, b, count)
            assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))
        for lo, hi in ((0, n), (5, 900), (n // 2, n - 7), (17, 18)):
            lo_t = (int(u[order[lo]]), int(order[lo]))
            hi_t = (int(u[order[hi]]), int(order[hi])) if hi < n else ((1 << 64) - 1, n)
            out = [np.full(n, -1, np.int64) for _ in range(2)]
            got = quota_core.collect_rows(n, *spec, codes, *lo_t, *hi_t, 10, out[0])
            want = quota_core.collect_rows(n, *spec, none, *lo_t, *hi_t, 10, out[1])
            assert got == want and np.array_equal(out[0][:got], out[1][:want])
            inside = np.array([lo_t <= (int(u[i]), i) < hi_t for i in range(n)])
            member = keep.astype(bool)
            if mode == 1:
                member &= excl == 0
            elif mode == 2:
                member &= (excl != 0) | ~np.array([(int(u[i]), i) < (int(u[t]), int(t))
                                                   for i in range(n)])  # fmt: skip
            assert np.array_equal(out[0][:got], np.flatnonzero(inside & member) + 10)


def test_code_histograms_stay_exact_with_durations_out_of_the_fast_range() -> None:
    """The coded passes sum a block's microseconds as doubles only when that is exact; a block
    with a duration out of range (zero-long, negative, a year-long cut) is summed as integers,
    so the histograms equal the general kernel's to the microsecond."""
    from discoseq._core import quota as quota_core

    rng = np.random.default_rng(3)
    n, key = 7000, 0xC0DE
    d = rng.uniform(0.5, 20.0, n) + 1e-7  # sub-microsecond parts: rounding matters
    d[2500], d[2600], d[2700] = 0.0, -1.5, 3.2e7  # in block 1 only (blocks of 2048)
    d[6999] = 4.5e6  # at the end: 4.5e12 us, past the doubles' exact range
    none = np.empty(0, np.uint8)
    for keep in (none, (rng.random(n) < 0.8).astype(np.uint8)):
        want = quota_core.histogram(d, keep, none, 0, key, True, 0, 0, none, 56)[:2]
        codes = np.empty(n, np.uint8)
        got = quota_core.key_histogram(d, keep, key, codes)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
        # a crossing whose tail (the first half of the cycle before, by key) spans the blocks
        prev_key, prev_codes = 0xFACE, np.empty(n, np.uint8)
        quota_core.key_codes(prev_key, prev_codes)
        half = (1 << 63, 0)
        tail_rows = np.empty(n, np.int64)
        m = quota_core.collect_rows(n, keep, none, 0, prev_key, True, 0, 0, prev_codes,
                                    0, 0, *half, 0, tail_rows)  # fmt: skip
        want_tail = quota_core.rows_histogram(d, tail_rows[:m], True, codes, 56,
                                              np.zeros(n, np.uint8))  # fmt: skip
        mask, rows = np.empty(n, np.uint8), np.empty(m, np.int64)
        crossed = quota_core.cross_pass(d, keep, key, np.empty(n, np.uint8), none, 0, prev_key,
                                        0, 0, prev_codes, 0, 0, *half, rows, mask)  # fmt: skip
        assert np.array_equal(rows, tail_rows[:m])
        for a, b in zip(crossed, (*want, *want_tail), strict=True):
            assert np.array_equal(a, b)


def test_cross_pass_is_the_passes_it_fuses() -> None:
    """The crossing pass finds the new cycle's codes and histogram, the tail's rows, flags and
    histogram as the separate kernels do."""
    from discoseq._core import quota as quota_core

    rng = np.random.default_rng(12)
    n, prev_key, key = 4000, 0xFEED, 0xBEEF
    d = np.round(rng.uniform(0.5, 20.0, n), 3)
    keep = (rng.random(n) < 0.9).astype(np.uint8)
    excl = (rng.random(n) < 0.2).astype(np.uint8)
    prev_codes = np.empty(n, np.uint8)
    quota_core.key_codes(prev_key, prev_codes)
    u = _keys(prev_key, n)
    order = np.lexsort((np.arange(n), u))
    tu, ti = int(u[order[n // 2]]), int(order[n // 2])  # the rest: flagged or from here
    lo = (int(u[order[n // 5]]), int(order[n // 5]))
    spec = (excl, 2, prev_key, True, tu, ti, prev_codes)
    want_rows = np.empty(n, np.int64)
    m = quota_core.collect_rows(n, keep, *spec, *lo, (1 << 64) - 1, n, 0, want_rows)
    rows, mask, codes = np.empty(m, np.int64), np.empty(n, np.uint8), np.empty(n, np.uint8)
    got = quota_core.cross_pass(d, keep, key, codes, excl, 2, prev_key, tu, ti, prev_codes,
                                *lo, (1 << 64) - 1, n, rows, mask)  # fmt: skip
    want_codes = np.empty(n, np.uint8)
    plain = quota_core.key_histogram(d, keep, key, want_codes)
    want_mask = np.zeros(n, np.uint8)
    tail = quota_core.rows_histogram(d, want_rows[:m], True, want_codes, 56, want_mask)
    assert np.array_equal(codes, want_codes) and np.array_equal(rows, want_rows[:m])
    assert np.array_equal(mask, want_mask)
    assert all(np.array_equal(a, b) for a, b in zip(got, (*plain, *tail), strict=True))
    with pytest.raises(ValueError, match="the tail holds"):
        quota_core.cross_pass(d, keep, key, codes, excl, 2, prev_key, tu, ti, prev_codes,
                              *lo, (1 << 64) - 1, n, rows[:-1], mask)  # fmt: skip


@pytest.mark.parametrize(
    ("n", "spans", "whole", "coded"),
    [
        (500, [(100, None), (0, 250)], True, True),
        # groups of few cuts (under 1 in 32 of the source) are written in one pass together
        (20_000, [(40, None), (0, 30)], True, True),
        (20_000, [(15_900, None), (0, 15_850)], True, True),
        # only the first piece large (a cycle's tail and a few cuts of the next ones), with
        # and without the codes
        (20_000, [(40, None), (0, 30)], False, True),
        (20_000, [(300, 15_000), (0, 200), (0, 150)], False, True),
        (20_000, [(300, 15_000), (0, 200), (0, 150)], False, False),
        (20_000, [(0, None), (0, 0), (0, 100)], False, True),
    ],
)
def test_emit_runs_writes_rounds_runs_and_copy_bits(
    n: int, spans: list[tuple[int, int | None]], whole: bool, coded: bool
) -> None:
    """One source's runs written at once: round by round, each round in index order, and
    exactly the cuts taken more than once flagged (a bit per index row)."""
    from discoseq._core import quota as quota_core

    rng = np.random.default_rng(5)
    base = 13
    keep = (rng.random(n) < 0.8).astype(np.uint8)
    none = np.empty(0, np.uint8)
    keys = [0xABCDEF, 0x123456789, 0x5EED][: len(spans)]
    us = [_keys(k, n) for k in keys]
    codes = []
    for k in keys:
        c = np.empty(n, np.uint8)
        quota_core.key_codes(k, c)
        codes.append(c)
    kept = np.flatnonzero(keep)
    runs, pieces = [], []
    runs_asked = [(c, lo, len(kept) if hi is None else hi) for c, (lo, hi) in enumerate(spans)]
    for (c, lo, hi), u in zip(runs_asked, us, strict=True):
        order = kept[np.lexsort((kept, u[kept]))]
        runs.append(np.sort(order[lo:hi]))
        bounds = (int(u[order[lo]]), int(order[lo]), *((int(u[order[hi]]), int(order[hi]))
                  if hi < len(kept) else ((1 << 64) - 1, n)))  # fmt: skip
        pieces.append((hi - lo, none, 0, keys[c], True, 0, 0, codes[c] if coded else none,
                       *bounds))  # fmt: skip
    if whole:
        runs.append(kept)  # a whole cycle: no key asked
        pieces.append((len(kept), None))
    seen: collections.Counter[int] = collections.Counter()
    by_round: dict[int, list[list[int]]] = {}
    for k, run in enumerate(runs):
        for i in run.tolist():
            by_round.setdefault(seen[i], [[] for _ in runs])[k].append(i)
            seen[i] += 1
    # round by round, each in index order (a round's runs merged)
    want = [base + i for r in sorted(by_round) for i in sorted(i for p in by_round[r] for i in p)]
    out = np.empty(len(want), np.int64)
    again = np.zeros((base + n + 7) // 8 + 1, np.uint8)
    counts = quota_core.emit_runs(n, keep, pieces, base, out, again)
    assert out.tolist() == want
    if len(by_round) == 1:  # runs that share no cut: their union in one pass, the same rows
        union = np.empty(len(want), np.int64)
        assert quota_core.collect_union(n, keep, pieces, base, union) == len(want)
        assert union.tolist() == want
    assert counts == [sum(len(p) for p in by_round[r]) for r in sorted(by_round)]
    flagged = np.unpackbits(again, bitorder="little")[base : base + n]
    assert np.array_equal(flagged, np.array([seen[i] > 1 for i in range(n)], np.uint8))
    with pytest.raises(ValueError, match="piece 0 holds"):
        quota_core.emit_runs(n, keep, [(pieces[0][0] + 1, *pieces[0][1:])], base,
                             np.empty(pieces[0][0] + 1, np.int64), again)  # fmt: skip
    with pytest.raises(ValueError, match="must be at least 0"):  # its bits would precede again
        quota_core.emit_runs(n, keep, pieces, -8 * len(again), out, again)
    with pytest.raises(ValueError, match="one bit per row"):
        quota_core.emit_runs(n, keep, pieces, base, out, again[: (base + n) // 8 - 1])


def test_collect_union_writes_disjoint_runs_in_index_order() -> None:
    """Runs of one cycle that share no cut (an epoch's tail of a cycle and head of the next,
    or here three rank ranges of one key, coded or not) are written as their union in index
    order, in one pass; a wrong size is refused."""
    from discoseq._core import quota as quota_core

    rng = np.random.default_rng(8)
    n, base, key = 9000, 21, 0xC0FFEE
    keep = (rng.random(n) < 0.9).astype(np.uint8)
    none = np.empty(0, np.uint8)
    codes = np.empty(n, np.uint8)
    quota_core.key_codes(key, codes)
    u = _keys(key, n)
    kept = np.flatnonzero(keep)
    order = kept[np.lexsort((kept, u[kept]))]
    cuts = [(0, 700), (2000, 5100), (7000, len(kept))]

    def bound(r: int) -> tuple[int, int]:
        return (int(u[order[r]]), int(order[r])) if r < len(kept) else ((1 << 64) - 1, n)

    want = np.sort(np.concatenate([order[lo:hi] for lo, hi in cuts])) + base
    for c in (codes, none):
        pieces = [(hi - lo, none, 0, key, True, 0, 0, c, *bound(lo), *bound(hi))
                  for lo, hi in cuts]  # fmt: skip
        out = np.empty(want.shape[0], np.int64)
        assert quota_core.collect_union(n, keep, pieces, base, out) == want.shape[0]
        assert np.array_equal(out, want)
    with pytest.raises(ValueError, match="more than"):
        quota_core.collect_union(n, keep, pieces, base, out[:-1].copy())


def test_each_round_of_a_source_is_in_index_order() -> None:
    """A source's rows in one round are in index order, whatever runs of its cycles the epoch
    takes (the later stages read the column in one sweep per round)."""
    kw = {"mixture": {"s0": {"repeat": 0.85}, "s1": {"weight": 2.3}, "s2": {"weight": 1}},
          "epoch_hours": 0.3}  # fmt: skip
    for e, _, rows, blocks, _ in _selections([60, 40, 50], 12, seed=2, **kw):
        for k in range(blocks.source.shape[0]):
            block = rows[blocks.starts[k] : blocks.starts[k + 1]]
            assert (np.diff(block) > 0).all(), (e, k)


def test_source_fingerprint_sees_every_duration_and_filter_flag() -> None:
    """The hash the sources' streams are kept under changes with any duration (a removed
    cut's too: the column's bounds are kept with it), its place, or a filter flag."""
    from discoseq._core import quota as quota_core

    rng = np.random.default_rng(2)
    d = np.round(rng.uniform(0.5, 20.0, 1000), 2)
    keep = np.ones(1000, np.uint8)
    keep[::7] = 0
    base = quota_core.fingerprint(d, keep)
    assert base == quota_core.fingerprint(d.copy(), keep.copy())
    swapped = d.copy()
    swapped[[3, 500]] = swapped[[500, 3]]
    dropped_changed = d.copy()
    dropped_changed[7] += 1.0  # a cut the filters removed
    flipped = keep.copy()
    flipped[10] = 0
    prints = {
        base,
        quota_core.fingerprint(swapped, keep),
        quota_core.fingerprint(dropped_changed, keep),
        quota_core.fingerprint(d, flipped),
        quota_core.fingerprint(d, np.empty(0, np.uint8)),
        quota_core.fingerprint(d[:-1], keep[:-1]),
    }
    assert len(prints) == 6
    # a removed cut is hashed under other keys, not as other bits: no duration it could have
    # (the old marker's flip of a kept one's bits among them) hashes as that cut kept
    kept = quota_core.fingerprint(d, keep)
    for y in (
        d[10],
        *rng.uniform(0.5, 20.0, 20),
        (d[10:11].view(np.uint64) ^ np.uint64(0x7FF4D15C0DE0DEAD)).view(np.float64)[0],
    ):
        other = d.copy()
        other[10] = y
        assert quota_core.fingerprint(other, flipped) != kept


def test_sources_named_by_identity_are_not_hashed_and_select_the_same(
    sources: dict[str, CutIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixture's index names each source by its index's fingerprint: the selection keeps the
    sources' cycles under it without hashing their durations, and selects what a selection
    that hashes them selects (warm or cold), also when a filter changes its kept cuts."""
    from discoseq._core import quota as quota_core
    from discoseq.plan.quota import forget_streams
    from discoseq.plan.select import select_rows

    multi, plain = layout(sources)
    named = SourceLayout.of(multi)
    assert named is not None and named.identities == multi.fingerprints
    cfg = SamplerConfig(max_cuts=4, seed=3, epoch_cuts=500,
                        mixture={"a": {"weight": 0.5}, "b": {"weight": 0.3},
                                 "c": {"weight": 0.2}})  # fmt: skip
    filtered = cfg.replace(min_duration=5.0)
    expected = {}
    for config in (cfg, filtered):
        forget_streams()
        for epoch in range(4):
            expected[config, epoch] = select_rows(multi.columns, config, None, epoch, plain).rows
    hash_durations = quota_core.fingerprint

    def refuse(*args: Any) -> int:
        raise AssertionError("the durations of a source named by an identity were hashed")

    monkeypatch.setattr(quota_core, "fingerprint", refuse)
    for cold in (True, False):
        for config in (cfg, filtered, cfg):  # the filter's flags change under one identity
            if cold:
                forget_streams()
            for epoch in range(4):
                got = select_rows(multi.columns, config, None, epoch, named).rows
                assert np.array_equal(got, expected[config, epoch])
    monkeypatch.setattr(quota_core, "fingerprint", hash_durations)
    with pytest.raises(ValueError, match="one non-empty string per source"):
        SourceLayout(plain.names, plain.offsets, ("x", "y"))


def test_a_source_named_by_identity_is_keyed_by_its_exact_flags_and_sampled_durations() -> None:
    """Under one identity, filter flags that differ anywhere (two kept cuts swapped for two
    removed ones at the same distance apart, which a word-wise hash of the flags confused)
    and columns that are not the index's own (scaled durations) each get their own stream:
    the selection (an hours quota: the durations place its ends) equals the hashed one, after
    the other was warm."""
    from discoseq.plan.quota import forget_streams, select_epoch

    rng = np.random.default_rng(11)
    d = np.round(rng.uniform(0.5, 20.0, 3000), 2)
    offsets = np.array([0, 2000, 3000])
    named = SourceLayout(("a", "b"), offsets, ("index-a", "index-b"))
    plain = SourceLayout(("a", "b"), offsets)
    cfg = SamplerConfig(max_cuts=4, seed=5, epoch_hours=7.0,
                        mixture={"a": {"weight": 0.7}, "b": {"weight": 0.3}})  # fmt: skip
    keep = d >= 3.0
    kept, removed = np.flatnonzero(keep[:2000]), np.flatnonzero(~keep[:2000])
    masks = [keep]
    for shift in (8, 16, 64):  # flags moved by whole words of eight
        other = keep.copy()
        i = int(kept[(kept + shift < 2000) & ~keep[np.minimum(kept + shift, 2999)]][0])
        j = int(removed[(removed + shift < 2000) & keep[np.minimum(removed + shift, 2999)]][0])
        other[[i, i + shift, j, j + shift]] = other[[i + shift, i, j + shift, j]]
        masks.append(other)
    columns = [(d, m) for m in masks] + [(d * 0.5, keep), (d + 0.01, keep)]
    expected = []
    for dur, mask in columns:
        forget_streams()
        expected.append([select_epoch(dur, mask, plain, cfg, e).rows for e in range(4)])
    forget_streams()
    for _ in range(2):  # every stream warm the second time
        for (dur, mask), want in zip(columns, expected, strict=True):
            for e in range(4):
                assert np.array_equal(select_epoch(dur, mask, named, cfg, e).rows, want[e])


def test_mixture_refuses_durations_that_are_not_positive_finite() -> None:
    """A mixture's selection checks the column as one corpus's plan does, also after a good
    epoch (a changed column is a new source, checked again), and finds its bounds."""
    from discoseq.plan.quota import forget_streams
    from discoseq.plan.select import select_rows

    rng = np.random.default_rng(9)
    d = np.round(rng.uniform(0.5, 20.0, 300), 2)
    lay = SourceLayout(("a", "b"), np.array([0, 200, 300]))
    cfg = SamplerConfig(max_cuts=4, seed=1, epoch_cuts=250,
                        mixture={"a": {"weight": 0.5}, "b": {"weight": 0.5}})  # fmt: skip
    forget_streams()
    got = select_rows({"duration": d}, cfg, None, 0, lay)
    assert got.duration_bounds == (float(d.min()), float(d.max()))
    bad = d.copy()
    bad[[3, 250]] = [np.nan, -1.0]
    with pytest.raises(ValueError, match="has 2 rows that are not positive finite seconds"):
        select_rows({"duration": bad}, cfg, None, 1, lay)
    with pytest.raises(ValueError, match="has 2 rows that are not positive finite seconds"):
        select_rows({"duration": bad}, cfg, None, 1, lay)  # its sources are known: again


@pytest.mark.parametrize("mix_batches", ["pooled", "per_source"])
def test_the_next_plan_of_a_mixture_takes_no_new_buffer(
    mix_batches: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every array of rows a mixture's plan makes (its selection, the grouped rows, a
    per_source plan's rows split by source, the plan's rows) comes from memory the plan
    before it handed back, once that plan is dropped."""
    from discoseq.plan import scratch

    rng = np.random.default_rng(9)
    duration = np.round(rng.uniform(0.5, 20.0, 3000), 2)
    lay = SourceLayout(("a", "b"), np.array([0, 2500, 3000]))
    cfg = SamplerConfig(max_duration=60.0, num_buckets=4, seed=3, epoch_cuts=3000,
                        mix_batches=mix_batches,
                        mixture={"a": {"weight": 0.5}, "b": {"weight": 0.5}})  # fmt: skip
    cols = {"duration": duration}
    scratch.release()
    first = plan_epoch(cols, cfg, 1, 2, sources=lay)
    want = np.array(first.rows)
    del first
    made = []
    real = scratch._rounded
    monkeypatch.setattr(scratch, "_rounded", lambda n: made.append(n) or real(n))
    second = plan_epoch(cols, cfg, 1, 2, sources=lay)
    assert made == []
    assert np.array_equal(second.rows, want)
    scratch.release()


def test_a_mixture_of_indexes_reads_its_durations_into_kept_memory(
    sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through index files the sources' durations are concatenated for each plan: into memory
    the plan before it handed back (no fresh pages), with the same plan as a fresh copy."""
    from discoseq.plan import scratch

    multi, lay = layout(sources)
    cfg = SamplerConfig(**BASE, mixture={"a": {"repeat": 1.5}, "b": {}, "c": {}})
    scratch.release()
    want = plan_epoch(dict(multi.columns.items()), cfg, 2, 2, sources=lay)  # no owned copy
    cols = multi.columns
    into = []
    real_copy = cols.owned_copy
    monkeypatch.setattr(cols, "owned_copy", lambda name, out=None: into.append(out) or
                        real_copy(name, out))  # fmt: skip
    plan_epoch(cols, cfg, 1, 2, sources=lay)
    made = []
    real = scratch._rounded
    monkeypatch.setattr(scratch, "_rounded", lambda n: made.append(n) or real(n))
    got = plan_epoch(cols, cfg, 2, 2, sources=lay)
    assert made == [] and len(into) == 2 and all(b is not None for b in into)
    # memory the scratch pool made before this plan, handed back and taken again
    assert scratch._MADE.get(id(into[1].base)) is into[1].base
    assert np.array_equal(got.rows, want.rows)
    assert np.array_equal(got.batch_offsets, want.batch_offsets)
    scratch.release()


@pytest.mark.parametrize("drop_last", [False, True])
def test_per_source_stats_of_a_masked_plan_count_its_rows(drop_last: bool) -> None:
    """With positions masked and oversize cuts left out, each source's planned cuts and hours
    are those of the plan's rows (its padding repeats not counted; dropped batches not
    planned), and its padding counts the repeats."""
    rng = np.random.default_rng(11)
    duration = np.round(rng.uniform(0.5, 25.0, 4000), 2)
    duration[::97] = 75.0  # oversize
    lay = SourceLayout(("a", "b", "c"), np.array([0, 2500, 3500, 4000]))
    cfg = SamplerConfig(max_duration=60.0, num_buckets=5, seed=4, epoch_cuts=4000,
                        oversize="exclude", max_duration_per_cut=None, drop_last=drop_last,
                        mixture={"a": {"weight": 0.5}, "b": {"weight": 0.3},
                                 "c": {"weight": 0.2}})  # fmt: skip
    cols = {"duration": duration}
    m = plan_epoch(cols, cfg, 2, 3, sources=lay).selection_size
    mask = rng.random(m) > 0.2
    plan = plan_epoch(cols, cfg, 2, 3, sources=lay, mask=mask)
    assert plan.stats.oversize > 0 and plan.stats.filtered["mask"] == m - mask.sum()
    pad = np.zeros(plan.num_batches, dtype=bool)
    pad[plan.padding_batches] = True
    sizes = np.diff(plan.batch_offsets)
    rows = plan.rows[np.repeat(~pad, sizes)]
    repeats = plan.rows[np.repeat(pad, sizes)]
    of = np.searchsorted(lay.offsets[1:], rows, side="right")
    for s, st_ in enumerate(plan.stats.sources):
        assert st_.planned == int((of == s).sum())
        assert st_.planned_hours == pytest.approx(duration[rows[of == s]].sum() / 3600, rel=1e-12)
        pads = np.searchsorted(lay.offsets[1:], repeats, side="right") == s
        assert st_.padding == int(pads.sum())
