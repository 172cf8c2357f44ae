"""``discoseq.analysis``: every number against a brute-force loop over the plan's batches, and
hand-computed values on a tiny plan."""

import itertools
import json
import math

import numpy as np
import pytest

from discoseq.analysis import SCHEMA, analyze, analyze_plan, format_table, plot_analysis
from discoseq.config import SamplerConfig
from discoseq.plan import plan_epoch


def _brute(plan, d):
    batches = [plan.batch(i) for i in range(plan.num_batches)]
    sizes = [len(b) for b in batches]
    longest = [max(d[r] for r in b) for b in batches]
    total = [sum(d[r] for r in b) for b in batches]
    return batches, sizes, longest, total


def test_tiny_plan_by_hand():
    # sequential, max_duration=10 (padded): [4, 4] (8), [5] (next would make 3x5 = 15 > 10:
    # [5, 2] is 2x5 = 10 ok), ...
    d = np.array([4.0, 4.0, 5.0, 2.0, 9.0, 1.0])
    cfg = SamplerConfig(strategy="sequential", max_duration=10.0, shuffle=False)
    plan = plan_epoch({"duration": d}, cfg, 0, 1)
    got = [plan.batch(i).tolist() for i in range(plan.num_batches)]
    assert got == [[0, 1], [2, 3], [4], [5]]
    s = analyze_plan(plan, d)
    assert s["schema"] == SCHEMA
    assert s["totals"]["num_batches"] == 4
    assert s["totals"]["cuts_planned"] == 6
    assert s["totals"]["duration"] == pytest.approx(25.0)
    # padded: 2*4 + 2*5 + 9 + 1 = 28
    assert s["padding"]["padded_duration"] == pytest.approx(28.0)
    assert s["padding"]["efficiency"] == pytest.approx(25.0 / 28.0)
    # fill: 8/10, 10/10, 9/10, 1/10
    assert s["fill"]["mean"] == pytest.approx((0.8 + 1.0 + 0.9 + 0.1) / 4)
    assert s["fill"]["min"] == pytest.approx(0.1)
    assert s["fill"]["cap"] == 10.0
    assert s["cuts_fill"] is None
    assert s["batch_cuts"]["min"] == 1 and s["batch_cuts"]["max"] == 2
    assert s["batch_cuts"]["mean"] == pytest.approx(1.5)
    assert sum(s["batch_cuts"]["histogram"]["counts"]) == 4
    assert s["batch_duration"]["max"] == pytest.approx(9.0)
    assert s["ranks"]["batches"] == [4]
    assert s["ranks"]["balance"]["step_balance"] == pytest.approx(1.0)
    assert s["repeats"] == {"batches": 0, "cuts": 0, "duration": 0.0}
    assert len(s["buckets"]["items"]) == 1
    json.dumps(s, allow_nan=False)


def test_ranks_repeats_and_step_balance_by_hand():
    # 5 batches of one cut each on 2 ranks: one repeat pads the last step.
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    cfg = SamplerConfig(strategy="sequential", max_cuts=1, shuffle=False)
    plan = plan_epoch({"duration": d}, cfg, 0, 2)
    assert plan.num_batches == 6 and plan.num_padding == 1
    s = analyze_plan(plan, d)
    assert s["repeats"]["batches"] == 1
    rep = int(plan.padding_batches[0])
    assert s["repeats"]["cuts"] == 1
    assert s["repeats"]["duration"] == pytest.approx(float(d[plan.batch(rep)].sum()))
    assert s["ranks"]["batches"] == [3, 3]
    assert s["ranks"]["balance"]["equal_batch_counts"] is True
    steps = [[d[plan.batch(2 * k + r)[0]] for r in range(2)] for k in range(3)]
    expected = np.mean([np.mean(st) / max(st) for st in steps])
    assert s["ranks"]["balance"]["step_balance"] == pytest.approx(expected)
    assert s["cuts_fill"] == {"cap": 1, "mean": 1.0}
    assert s["fill"] is None
    # the bucket table counts distinct cuts: repeats excluded
    assert s["buckets"]["items"][0]["cuts"] == 5
    assert s["totals"]["cuts_planned"] == 5


@pytest.mark.parametrize("world_size", [1, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_against_brute_force(world_size, drop_last):
    g = np.random.default_rng(7)
    n = 3000
    d = np.round(g.uniform(0.5, 30.0, n), 2)
    tokens = (d * g.uniform(8, 20, n)).astype(np.int64)
    cfg = SamplerConfig(
        max_duration=120.0,
        num_buckets=4,
        num_token_buckets=2,
        quadratic_duration=25.0,
        bucket_max_cuts=(30, 30, 20, 20, 10, 10, 6, 6),
        min_duration=1.0,
        drop_last=drop_last,
        seed=3,
    )
    cols = {"duration": d, "num_tokens": tokens}
    plan = plan_epoch(cols, cfg, 2, world_size)
    s = analyze_plan(plan, d, bins=7)
    json.dumps(s, allow_nan=False)
    _, sizes, longest, total = _brute(plan, d)
    nb = plan.num_batches
    assert s["epoch"] == 2 and s["world_size"] == world_size
    assert s["totals"]["num_batches"] == nb
    assert s["totals"]["batches_per_rank"] * world_size == nb
    assert s["filtered"]["min_duration"] == int((d < 1.0).sum())
    assert s["filtered"]["total"] == int((d < 1.0).sum())
    assert s["padding"]["efficiency"] == pytest.approx(
        sum(total) / sum(n_ * m for n_, m in zip(sizes, longest, strict=True))
    )
    # fill = cost / cap, cost = n x max(d + d^2/q)
    fills = [
        len(b) * max(d[r] + d[r] ** 2 / 25.0 for r in b) / 120.0
        for b in (plan.batch(i) for i in range(nb))
    ]
    assert s["fill"]["mean"] == pytest.approx(np.mean(fills))
    assert s["fill"]["max"] <= 1.0 + 1e-9 or s["oversize"]["cuts"] > 0
    assert s["batch_cuts"]["mean"] == pytest.approx(np.mean(sizes))
    assert s["batch_cuts"]["median"] == pytest.approx(np.median(sizes))
    assert s["batch_duration"]["mean"] == pytest.approx(np.mean(total))
    for key in ("batch_cuts", "batch_duration", "fill"):
        h = s[key]["histogram"]
        assert sum(h["counts"]) == nb
        assert len(h["edges"]) == len(h["counts"]) + 1
    caps = np.array(cfg.bucket_max_cuts, dtype=float)
    assert s["cuts_fill"]["cap"] is None
    assert s["cuts_fill"]["mean"] == pytest.approx(
        np.mean([sizes[i] / caps[plan.bucket[i]] for i in range(nb)])
    )
    # ranks
    for r in range(world_size):
        ids = list(range(r, nb, world_size))
        assert s["ranks"]["batches"][r] == len(ids)
        assert s["ranks"]["cuts"][r] == sum(sizes[i] for i in ids)
        assert s["ranks"]["duration"][r] == pytest.approx(sum(total[i] for i in ids))
        assert s["ranks"]["padded_duration"][r] == pytest.approx(
            sum(sizes[i] * longest[i] for i in ids)
        )
    # buckets: distinct cuts, adding up to the totals
    items = s["buckets"]["items"]
    assert len(items) == 8
    assert sum(it["cuts"] for it in items) == s["totals"]["cuts_planned"]
    assert sum(it["duration"] for it in items) == pytest.approx(s["totals"]["duration"])
    repeats = set(plan.padding_batches.tolist())
    for flat, it in enumerate(items):
        own = [i for i in range(nb) if plan.bucket[i] == flat and i not in repeats]
        assert it["bucket"] * 2 + it["token_bucket"] == flat
        assert it["batches"] == len(own)
        assert it["cuts"] == sum(sizes[i] for i in own)
        if own:
            assert it["padding_efficiency"] == pytest.approx(
                sum(total[i] for i in own) / sum(sizes[i] * longest[i] for i in own)
            )
            assert it["mean_fill"] == pytest.approx(np.mean([fills[i] for i in own]))
        assert it["cap_cuts"] == cfg.bucket_max_cuts[flat]
        assert it["cap_duration"] == 120.0
    edges = s["buckets"]["edges"]
    assert edges == plan.bucket_edges.tolist()
    assert items[0]["low"] is None and items[-1]["high"] is None
    assert items[2]["low"] == edges[0] and items[2]["high"] == edges[1]
    assert s["drops"]["batches"] == plan.stats.dropped_batches
    assert s["repeats"]["batches"] == plan.num_padding
    if drop_last:
        assert s["repeats"]["batches"] == 0


def test_oversize_and_empty():
    d = np.array([1.0, 50.0, 2.0])
    cfg = SamplerConfig(strategy="sequential", max_duration=10.0, shuffle=False, oversize="exclude")
    s = analyze_plan(plan_epoch({"duration": d}, cfg, 0, 1), d)
    assert s["oversize"] == {"cuts": 1, "policy": "exclude"}
    assert s["totals"]["cuts_planned"] == 2
    cfg = SamplerConfig(strategy="sequential", max_duration=10.0, shuffle=False, min_duration=100.0)
    with pytest.warns(RuntimeWarning):
        plan = plan_epoch({"duration": d}, cfg, 0, 2)
    s = analyze_plan(plan, d)
    json.dumps(s, allow_nan=False)
    assert s["totals"]["num_batches"] == 0
    assert s["padding"]["efficiency"] is None
    assert s["filtered"]["min_duration"] == 3
    assert "0 / 0" not in format_table(s)  # renders without error


def test_analyze_sampler_config_and_index(tmp_path):
    from discoseq.index import build_index
    from discoseq.synth import write_manifest

    manifest = write_manifest(tmp_path / "c.jsonl.gz", 500, seed=2)
    index = build_index(manifest, tmp_path / "c.idx")
    cfg = SamplerConfig(max_duration=100.0, world_size=4, rank=0, num_buckets=5)
    s = analyze(index, cfg)
    plan = plan_epoch(index.columns, cfg, 0, 4)
    assert s == analyze_plan(plan, index.duration)
    assert s["world_size"] == 4
    assert analyze(index, cfg, world_size=2)["world_size"] == 2
    assert analyze(index.columns, cfg.replace(world_size=None, rank=None))["world_size"] == 1
    table = format_table(s)
    assert "padding efficiency" in table and "rank" in table and "bucket" in table
    out = plot_analysis(s, tmp_path / "s.png")
    assert out.stat().st_size > 10_000


def test_bins_validated():
    d = np.ones(3)
    plan = plan_epoch({"duration": d}, SamplerConfig(max_cuts=2), 0, 1)
    with pytest.raises(ValueError, match="bins"):
        analyze_plan(plan, d, bins=0)
    s = analyze_plan(plan, d, bins=1)
    assert not math.isnan(s["padding"]["efficiency"])


def _drawn_figure(stats, path, monkeypatch):
    """Draw ``stats`` and return the matplotlib figure that was saved."""
    from matplotlib.figure import Figure

    saved = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot_analysis(stats, path, dpi=30)  # a small image: the test reads the figure, not pixels
    assert path.stat().st_size > 5_000
    return saved[0]


@pytest.mark.parametrize(
    "cfg",
    [
        SamplerConfig(max_duration=60.0, num_buckets=8, max_cuts=12, world_size=3),
        SamplerConfig(max_duration=60.0, num_buckets=3, num_token_buckets=2, world_size=2),
        SamplerConfig(strategy="random", max_cuts=7, world_size=2),
    ],
)
def test_figure_shows_padding_per_bucket_cuts_per_batch_and_rank_balance(
    tmp_path, monkeypatch, cfg
):
    """What a user needs to choose a config, every panel titled, both axes and every series
    labelled: padding per bucket, cuts per batch per bucket, batch fill, per-rank balance."""
    rng = np.random.default_rng(0)
    d = np.round(rng.uniform(0.5, 20.0, 600), 2)
    tokens = rng.integers(5, 300, 600)
    plan = plan_epoch({"duration": d, "num_tokens": tokens}, cfg, 0, cfg.world_size)
    stats = analyze_plan(plan, d)
    fig = _drawn_figure(stats, tmp_path / "s.png", monkeypatch)
    pad, cuts, fill, ranks = fig.axes
    for ax in (cuts, fill, ranks) if cfg.strategy.value == "random" else fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax
        assert ax.get_legend() is not None, ax.get_title()
        for handle_label in ax.get_legend_handles_labels()[1]:
            assert handle_label and not handle_label.startswith("_")
    items = stats["buckets"]["items"]
    if cfg.strategy.value == "random":
        assert not pad.axison and "one bucket" in pad.texts[0].get_text()
        return
    heights = [bar.get_height() for bar in pad.patches]
    assert heights == pytest.approx([100 * (1 - it["padding_efficiency"]) for it in items])
    means = [bar.get_height() for bar in cuts.patches]
    assert means == pytest.approx([it["cuts"] / it["batches"] for it in items])
    speech = np.array(stats["ranks"]["duration"])
    rank_bars = [bar.get_height() for bar in ranks.patches][: cfg.world_size]
    assert rank_bars == pytest.approx(list(100 * (speech / speech.mean() - 1)))
    assert fill.get_yscale() == "log"


@pytest.mark.parametrize("mode", ["padded", "sum"])
def test_token_stats_keep_the_fractional_costs_of_quadratic_tokens(mode):
    """With ``quadratic_tokens`` a cut's token cost is ``t + t*t/q``, a float: the token fill and
    padding efficiency are computed from those costs, not from them truncated to integers."""
    from discoseq.plan.pack import token_costs_of

    rng = np.random.default_rng(4)
    n = 400
    d = np.round(rng.uniform(0.5, 12.0, n), 2)
    text = rng.integers(1, 9, n)  # small counts: t*t/q is mostly a fraction
    cols = {"duration": d, "num_tokens": text}
    cfg = SamplerConfig(strategy="random", max_tokens=60, quadratic_tokens=7.0, limit_mode=mode)
    cost = token_costs_of(text, d, cfg)
    assert not np.array_equal(cost, np.floor(cost))  # the fractions matter here
    plan = plan_epoch(cols, cfg, 0, 1)
    batches = [cost[plan.batch(i)] for i in range(plan.num_batches)]
    real = np.array([b.sum() for b in batches])
    padded = np.array([len(b) * b.max() for b in batches])
    tk = analyze(cols, cfg)["tokens"]
    assert tk["fill_mean"] == pytest.approx(float(np.mean(real / 60)))
    assert tk["fill_min"] == pytest.approx(float(np.min(real / 60)))
    assert tk["fill_max"] == pytest.approx(float(np.max(real / 60)))
    assert tk["padding_efficiency"] == pytest.approx(float(real.sum() / padded.sum()))


def test_token_padding_of_packs_is_packs_times_the_largest_pack():
    """With ``pack_tokens`` a batch is padded to its largest pack, as the duration padding of
    packs is: the token padding efficiency is real tokens / (packs x the largest pack's cost),
    not / (cuts x the largest cut's cost)."""
    rng = np.random.default_rng(5)
    n = 300
    d = np.round(rng.uniform(0.5, 10.0, n), 2)
    text = rng.integers(5, 60, n)
    cols = {"duration": d, "num_tokens": text}
    cfg = SamplerConfig(strategy="random", pack_tokens=150, max_tokens=450, world_size=2)
    plan = plan_epoch(cols, cfg, 0, 2)
    real, padded = [], []
    for i in range(plan.num_batches):
        rows, bounds = plan.batch(i), plan.pack_bounds(i)
        packs = [int(text[rows[a:b]].sum()) for a, b in itertools.pairwise(bounds)]
        real.append(sum(packs))
        padded.append(len(packs) * max(packs))
    tk = analyze(cols, cfg)["tokens"]
    assert tk["padding_efficiency"] == pytest.approx(sum(real) / sum(padded))
    assert tk["fill_mean"] == pytest.approx(np.mean(np.array(real) / 450))
