"""``discoseq analyze``: output, JSON schema, options and exit codes."""

import json

import pytest

from discoseq.analysis import SCHEMA, analyze
from discoseq.cli.main import EXIT_BAD_INPUT, EXIT_USAGE
from discoseq.config import SamplerConfig
from tests.cli.runner import run


def test_analyze_index_json_and_table(corpus, tmp_path):
    _, index = corpus
    out = tmp_path / "stats.json"
    r = run("analyze", index.path, "--max-duration", 120, "--world-size", 3, "-o", out)
    assert r.exit_code == 0, r.output
    assert "padding efficiency" in r.output and "batches per rank" in r.output
    stats = json.loads(out.read_text())
    assert stats["schema"] == SCHEMA
    expected = analyze(index, SamplerConfig(max_duration=120.0, world_size=3))
    assert stats == json.loads(json.dumps(expected))
    for key in (
        "totals",
        "filtered",
        "oversize",
        "repeats",
        "drops",
        "batch_cuts",
        "batch_duration",
        "padding",
        "fill",
        "cuts_fill",
        "buckets",
        "ranks",
    ):
        assert key in stats
    assert len(stats["ranks"]["batches"]) == 3
    assert len(stats["buckets"]["items"]) == 10


def test_analyze_manifest_options_and_plot(corpus, tmp_path):
    manifest, _ = corpus
    cfg = tmp_path / "c.json"
    cfg.write_text(SamplerConfig(max_duration=60.0, num_buckets=4).to_json())
    png = tmp_path / "s.png"
    r = run(
        "analyze",
        manifest,
        "--config",
        cfg,
        "--num-token-buckets",
        2,
        "--quadratic-duration",
        30,
        "--max-cuts",
        8,
        "--min-duration",
        2.0,
        "--seed",
        3,
        "--epoch",
        1,
        "--plot",
        png,
        "-q",
        "-o",
        tmp_path / "s.json",
    )
    assert r.exit_code == 0, r.output
    assert "padding efficiency" not in r.output  # --quiet
    stats = json.loads((tmp_path / "s.json").read_text())
    c = stats["config"]
    assert (c["max_duration"], c["num_token_buckets"], c["max_cuts"]) == (60.0, 2, 8)
    assert c["quadratic_duration"] == 30.0 and c["seed"] == 3 and stats["epoch"] == 1
    assert len(stats["buckets"]["items"]) == 8
    assert stats["filtered"]["min_duration"] > 0
    assert png.stat().st_size > 10_000
    r = run(
        "analyze",
        manifest,
        "--strategy",
        "sequential",
        "--max-cuts",
        5,
        "--bucket-edges",
        "5,10",
        "-q",
    )
    assert r.exit_code == EXIT_USAGE  # edges only with bucketed
    r = run(
        "analyze",
        manifest,
        "--bucket-edges",
        "5,10",
        "--max-duration",
        60,
        "--bucket-max-duration",
        "30,60,90",
        "-q",
        "-o",
        tmp_path / "e.json",
    )
    assert r.exit_code == 0, r.output
    items = json.loads((tmp_path / "e.json").read_text())["buckets"]["items"]
    assert [it["cap_duration"] for it in items] == [30.0, 60.0, 90.0]
    assert items[1]["low"] == 5.0 and items[1]["high"] == 10.0


@pytest.mark.parametrize(
    "args",
    [
        ["--strategy", "random", "--num-buckets", "5", "--max-duration", "10"],
        ["--strategy", "sequential", "--shuffle", "--max-duration", "10"],
        ["--max-duration", "-3"],
        ["--strategy", "nope", "--max-duration", "10"],
        ["--bucket-edges", "a,b", "--max-duration", "10"],
        [],  # no batch limit
    ],
)
def test_analyze_usage_errors(corpus, args):
    _, index = corpus
    r = run("analyze", index.path, *args)
    assert r.exit_code == EXIT_USAGE, r.output


def test_analyze_bad_input(corpus, tmp_path):
    _, index = corpus
    r = run("analyze", tmp_path / "missing", "--max-duration", 10)
    assert r.exit_code == EXIT_BAD_INPUT and "no index directory or manifest" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = run("analyze", bad, "--max-duration", 10, "-q")
    assert r.exit_code == EXIT_BAD_INPUT and "bad.jsonl" in r.output
    cfg = tmp_path / "c.json"
    cfg.write_text('{"max_duration": 10, "nonsense": 1}')
    r = run("analyze", index.path, "--config", cfg)
    assert r.exit_code == EXIT_BAD_INPUT and "nonsense" in r.output
    corrupt = tmp_path / "corrupt.idx"
    corrupt.mkdir()
    (corrupt / "header.json").write_text("{}")
    r = run("analyze", corrupt, "--max-duration", 10)
    assert r.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize(
    ("name", "says"),
    [("stats.txt", "ends in .txt, not an image format"), ("stats", "has no extension")],
)
def test_plot_path_must_name_an_image_format(corpus, tmp_path, name, says):
    """Refused before the work, as a usage error naming the formats (not matplotlib's
    traceback after it, nor a file written under another name than the one printed)."""
    _, index = corpus
    r = run("analyze", index.path, "--max-duration", 60, "-q", "--plot", tmp_path / name)
    assert r.exit_code == EXIT_USAGE, r.output
    assert says in r.output and ".png" in r.output and ".svg" in r.output
    assert list(tmp_path.iterdir()) == []


def test_plot_prints_the_path_it_wrote(corpus, tmp_path):
    _, index = corpus
    r = run("analyze", index.path, "--max-duration", 60, "-q", "--plot", tmp_path / "s.svg")
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote {tmp_path / 's.svg'}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.svg"]


def test_analyze_packing_options(corpus, tmp_path):
    """--pack-duration / --pack-tokens / --quadratic-tokens reach the config analyze plans."""
    _, index = corpus
    out = tmp_path / "stats.json"
    args = ("--strategy", "random", "--max-duration", 120, "--pack-duration", 20, "-o", out)
    r = run("analyze", index.path, *args)
    assert r.exit_code == 0, r.output
    assert "packing" in r.output
    stats = json.loads(out.read_text())
    cfg = SamplerConfig(strategy="random", max_duration=120.0, pack_duration=20.0)
    assert stats == json.loads(json.dumps(analyze(index, cfg)))
    assert 0.5 < stats["packing"]["efficiency"] <= 1.0  # a small corpus: the last packs part-full
    r = run("analyze", index.path, "--strategy", "random", "--max-tokens", 4000,
            "--pack-tokens", 800, "--quadratic-tokens", 5000)  # fmt: skip
    assert r.exit_code != 0 and "quadratic_tokens" in r.output  # packs have no quadratic term
    r = run("analyze", index.path, "--max-tokens", 4000, "--quadratic-tokens", 5000, "-o", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["config"]["quadratic_tokens"] == 5000
