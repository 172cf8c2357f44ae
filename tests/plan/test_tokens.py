"""Token budgets: max_tokens caps a batch's token cost (text tokens of token_column + audio
tokens, optionally + their square / quadratic_tokens), checked before a cut joins, padded or
summed; the token column is chosen by name."""

from __future__ import annotations

import numpy as np
import pytest

from discoseq.config import SamplerConfig
from discoseq.plan import plan_epoch
from discoseq.plan.pack import token_costs_of
from tests import reference_plan as ref


def columns(n: int = 600, seed: int = 3) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    d = np.round(gen.uniform(0.5, 20.0, n), 3)
    chars = np.floor(d * gen.uniform(5, 20, n)).astype(np.int64)
    chars[::17] = -1  # no text
    return {"duration": d, "num_tokens": chars, "bpe": (chars // 4).astype(np.int64)}


def costs(cols: dict[str, np.ndarray], column: str, rate: float | None) -> np.ndarray:
    c = np.maximum(cols[column], 0)
    if rate is not None:
        c = c + np.ceil(cols["duration"] * rate - 1e-9).astype(np.int64)
    return c


@pytest.mark.parametrize("mode", ["padded", "sum"])
@pytest.mark.parametrize(("column", "rate"), [("num_tokens", None), ("bpe", 12.5), ("bpe", None)])
def test_no_batch_exceeds_the_token_cap(mode: str, column: str, rate: float | None) -> None:
    cols = columns()
    cap = 900
    cfg = SamplerConfig(max_tokens=cap, audio_tokens_per_second=rate, token_column=column,
                        limit_mode=mode, num_buckets=4, seed=1)  # fmt: skip
    plan = plan_epoch(cols, cfg, 0, 2)
    cost = costs(cols, column, rate)
    singles = 0
    for i in range(plan.num_batches):
        c = cost[plan.batch(i)]
        total = int(c.sum()) if mode == "sum" else len(c) * int(c.max())
        if total > cap:
            assert len(c) == 1 and c[0] > cap  # an oversize cut, alone and counted
            singles += 1
    assert singles <= plan.stats.oversize
    assert plan.stats.cuts_planned == 600


def test_audio_tokens_round_up_exactly() -> None:
    d = np.array([0.08, 0.24, 1.0, 0.081])
    cols = {"duration": d, "num_tokens": np.array([-1, -1, 3, 0])}
    cfg = SamplerConfig(max_tokens=4, audio_tokens_per_second=12.5, limit_mode="sum",
                        strategy="sequential")  # fmt: skip
    plan = plan_epoch(cols, cfg, 0, 1)
    # costs 1, 3, 3 + 13 = 16 (alone, oversize), 2
    assert [plan.batch(i).tolist() for i in range(plan.num_batches)] == [[0, 1], [2], [3]]
    assert plan.stats.oversize == 1


def test_token_column_feeds_every_token_feature() -> None:
    cols = columns()
    two_d = SamplerConfig(max_duration=200.0, num_buckets=2, num_token_buckets=2,
                          token_column="bpe", max_tokens_per_second=3.0, seed=2)  # fmt: skip
    renamed = {"duration": cols["duration"], "num_tokens": cols["bpe"]}
    text = cols["bpe"] >= 0  # 2D buckets need text
    same = plan_epoch(renamed, two_d.replace(token_column="num_tokens"), 0, 1, mask=text)
    plan = plan_epoch(cols, two_d, 0, 1, mask=text)
    with pytest.raises(ValueError, match="column 'bpe' is -1"):
        plan_epoch(cols, two_d, 0, 1)
    assert plan.rows.tolist() == same.rows.tolist()
    assert plan.token_edges.tolist() == same.token_edges.tolist()


@pytest.mark.parametrize(
    ("kw", "cols_kind", "match"),
    [
        ({"max_tokens": 10, "token_column": "spm"}, "full", "token_column='spm' is not a column"),
        ({"max_tokens": 10}, "no_text", "no token source"),
        ({"max_tokens": 0}, "full", "max_tokens=0"),
        ({"max_cuts": 3, "audio_tokens_per_second": 12.5}, "full", "counts audio tokens"),
        ({"max_tokens": 10, "audio_tokens_per_second": -1.0}, "full", "audio_tokens_per_second"),
        ({"max_tokens": 10, "token_column": ""}, "full", "token_column=''"),
        ({"max_cuts": 3, "quadratic_tokens": 50.0}, "full", "quadratic_tokens=50.0 .*max_tokens"),
        ({"max_tokens": 10, "quadratic_tokens": 0.0}, "full", "quadratic_tokens=0.0"),
        ({"max_tokens": 10, "quadratic_tokens": -5}, "full", "quadratic_tokens=-5"),
        ({"max_tokens": 10, "quadratic_tokens": float("inf")}, "full", "quadratic_tokens=inf"),
    ],
)
def test_token_errors(kw: dict, cols_kind: str, match: str) -> None:
    cols = columns()
    if cols_kind == "no_text":
        cols["num_tokens"] = np.full(600, -1, dtype=np.int64)
    with pytest.raises(ValueError, match=match):
        plan_epoch(cols, SamplerConfig(**kw), 0, 1)


def test_analysis_shows_token_fill() -> None:
    from discoseq.analysis import analyze, format_table

    cols = columns()
    cfg = SamplerConfig(max_tokens=900, audio_tokens_per_second=12.5, token_column="bpe",
                        num_buckets=4, seed=1)  # fmt: skip
    stats = analyze(cols, cfg)
    tk = stats["tokens"]
    assert tk["cap"] == 900 and 0 < tk["fill_min"] <= tk["fill_mean"] <= tk["fill_max"]
    assert tk["fill_max"] <= 1.0 or stats["oversize"]["cuts"] > 0
    assert 0 < tk["padding_efficiency"] <= 1.0
    assert "token fill" in format_table(stats)
    assert analyze(cols, SamplerConfig(max_cuts=4))["tokens"] is None


@pytest.mark.parametrize("mode", ["padded", "sum"])
@pytest.mark.parametrize("rate", [None, 12.5])
def test_quadratic_tokens_cap_no_batch(mode: str, rate: float | None) -> None:
    """With quadratic_tokens=q a cut of token count t costs t + t*t/q: no batch exceeds the cap
    in those costs, and long cuts get smaller batches than without the term."""
    cols = columns()
    cap, q = 3000, 200.0
    cfg = SamplerConfig(max_tokens=cap, audio_tokens_per_second=rate, token_column="num_tokens",
                        quadratic_tokens=q, limit_mode=mode, num_buckets=4, seed=1)  # fmt: skip
    plan = plan_epoch(cols, cfg, 0, 2)
    t = costs(cols, "num_tokens", rate).astype(np.float64)
    cost = t + t * t / q
    assert np.array_equal(token_costs_of(cols["num_tokens"], cols["duration"], cfg), cost)
    for i in range(plan.num_batches):
        c = cost[plan.batch(i)]
        total = c.sum() if mode == "sum" else len(c) * c.max()
        assert total <= cap or (len(c) == 1 and c[0] > cap)
    linear = plan_epoch(cols, cfg.replace(quadratic_tokens=None), 0, 2)
    assert plan.num_batches > linear.num_batches
    assert plan.stats.cuts_planned == linear.stats.cuts_planned == 600


def test_quadratic_tokens_exact_costs() -> None:
    """Tokens 10, 10, 20, 30 with q = 10 cost 20, 20, 60, 120: under a summed cap of 60 the
    first two share a batch, 60 fits alone exactly, 120 is oversize."""
    cols = {"duration": np.ones(4), "num_tokens": np.array([10, 10, 20, 30])}
    cfg = SamplerConfig(max_tokens=60, quadratic_tokens=10.0, limit_mode="sum",
                        strategy="sequential")  # fmt: skip
    plan = plan_epoch(cols, cfg, 0, 1)
    assert [plan.batch(i).tolist() for i in range(plan.num_batches)] == [[0, 1], [2], [3]]
    assert plan.stats.oversize == 1
    padded = plan_epoch(cols, cfg.replace(limit_mode="padded", max_tokens=40), 0, 1)
    assert [padded.batch(i).tolist() for i in range(padded.num_batches)] == [[0, 1], [2], [3]]
    assert padded.stats.oversize == 2


@pytest.mark.parametrize("seed", range(6))
def test_quadratic_tokens_equal_the_reference(seed: int) -> None:
    """The plan with quadratic token costs equals the pure-Python twin's, bit for bit."""
    gen = np.random.default_rng(seed)
    cols = columns(n=int(gen.integers(50, 400)), seed=seed)
    cols["num_tokens"] = cols["bpe"]
    strategy = ["bucketed", "random", "sequential"][seed % 3]
    cfg = SamplerConfig(
        strategy=strategy,
        max_tokens=int(gen.choice([60, 400, 3000])),
        quadratic_tokens=float(gen.choice([3.0, 50.0, 1000.0])),
        audio_tokens_per_second=[None, 12.5][seed % 2],
        max_duration=[None, 120.0][seed // 3],
        limit_mode=["padded", "sum"][(seed // 2) % 2],
        oversize=["single", "exclude"][seed % 2],
        num_buckets=3 if strategy == "bucketed" else 10,
        seed=seed,
    )
    plan = plan_epoch(cols, cfg, seed, 2)
    expect = ref.reference_plan(cols, cfg, seed, 2)
    for name in ("batch_offsets", "rows", "bucket", "cost", "duration", "padding_batches"):
        assert getattr(plan, name).tolist() == getattr(expect, name).tolist(), name
    assert plan.stats.oversize == expect.stats["oversize"]


def test_kept_layout_is_reused_and_never_changes_a_plan() -> None:
    """The token cap's side-by-side layout is scratch kept between plans (no fresh huge pages
    each epoch); reusing it, a larger corpus after a smaller one and a freed one give the same
    plans, and threads planning at once never share one."""
    import threading

    from discoseq.plan import scratch

    cfg = SamplerConfig(max_tokens=900, audio_tokens_per_second=12.5, token_column="bpe",
                        num_buckets=4, seed=1)  # fmt: skip
    small, large = columns(600), columns(2000, seed=5)
    scratch.release()
    first = plan_epoch(small, cfg, 0, 2).rows.copy()
    # given back: the layout (16 B per row) and the grouped rows (8 B per row)
    assert sorted(buf.nbytes for buf in scratch._KEPT) == [8 * 600, 16 * 600]
    assert scratch.kept_bytes() >= 24 * 600  # and the dropped plan's rows, watched (lent)
    kept = list(scratch._KEPT)
    assert np.array_equal(plan_epoch(small, cfg, 0, 2).rows, first)
    assert sorted(map(id, scratch._KEPT)) == sorted(map(id, kept))  # the same buffers again
    big = plan_epoch(large, cfg, 1, 2).rows.copy()  # larger ones are made and kept too
    assert 16 * 2000 in [buf.nbytes for buf in scratch._KEPT]
    scratch.release()
    plan_epoch(large, cfg, 1, 2)  # leaves buffers of 2000 rows, dirty
    assert np.array_equal(plan_epoch(small, cfg, 0, 2).rows, first)  # larger, dirty buffers
    scratch.release()
    assert scratch._KEPT == [] and scratch.kept_bytes() == 0
    assert np.array_equal(plan_epoch(large, cfg, 1, 2).rows, big)
    out: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        for _ in range(5):
            rows = plan_epoch(large if k % 2 else small, cfg, k % 2, 2).rows
            assert np.array_equal(rows, big if k % 2 else first)
        out[k] = rows

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [0, 1, 2, 3]


def test_pack_refuses_a_short_layout() -> None:
    from discoseq._core import packing

    d = np.array([1.0, 2.0, 3.0])
    args = (np.arange(3), np.array([0, 3]), d, np.empty(0, np.int64), np.array([10.0]),
            np.array([5]), None, None, False, False)  # fmt: skip
    tokens = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="layout needs 6 int64"):
        packing.pack(*args, tokens=tokens, max_tokens=10, layout=np.empty(5, np.int64))
    for layout in (None, np.empty(6, np.int64)):  # None: the kernel makes one for the call
        assert packing.pack(*args, tokens=tokens, max_tokens=10, layout=layout)[0] == 3
