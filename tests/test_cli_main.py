"""``discoseq analyze`` and ``discoseq benchmark``: output, JSON schema and exit codes."""

import json

import pytest
from click.testing import CliRunner

from discoseq.analysis import SCHEMA, analyze
from discoseq.cli.main import EXIT_BAD_INPUT, EXIT_USAGE, main
from discoseq.config import SamplerConfig
from discoseq.index import build_index
from discoseq.synth import write_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    manifest = write_manifest(d / "cuts.jsonl.gz", 400, seed=5)
    index = build_index(manifest, d / "cuts.idx")
    return manifest, index


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


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


def test_unwritable_output_is_a_usage_error(corpus, tmp_path):
    _, index = corpus
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"max_duration": 60}))
    for args in (
        ["analyze", index.path, "--max-duration", 10, "-o", tmp_path / "no" / "s.json"],
        ["analyze", index.path, "--max-duration", 10, "--plot", tmp_path / "no" / "s.png"],
        ["analyze", index.path, "--max-duration", 10, "-o", tmp_path],
        ["benchmark", index.path, cfg, "--no-resolve", "-o", tmp_path / "no" / "b.json"],
    ):
        r = run(*args)  # refused before planning, not a traceback (exit 1) after it
        assert r.exit_code == EXIT_USAGE, r.output
        assert "cannot write" in r.output or "is a directory" in r.output


def test_benchmark_with_lhotse(corpus, tmp_path):
    _, index = corpus
    cfg = tmp_path / "c.json"
    cfg.write_text(SamplerConfig(max_duration=120.0, num_buckets=4, world_size=2).to_json())
    out = tmp_path / "b.json"
    r = run("benchmark", index.path, cfg, "--epochs", 2, "--compare", "lhotse", "-o", out)
    assert r.exit_code == 0, r.output
    assert "ratio" in r.output and "DynamicBucketingSampler" in r.output
    rep = json.loads(out.read_text())
    assert rep["cuts"] == 400 and rep["epochs"] == 2
    assert rep["plan"]["batches_per_rank"] > 0
    for key in ("indices", "cutsets", "lhotse"):
        run_ = rep[key]
        assert run_["batches"] > 0 and run_["cuts_per_s"] > 0 and "peak_mb" in run_
    # rank 0 of 2, two epochs: about half the cuts twice
    assert rep["indices"]["cuts"] == rep["cutsets"]["cuts"]
    assert 300 <= rep["indices"]["cuts"] <= 500
    assert rep["lhotse"]["sampler"] == "DynamicBucketingSampler"
    assert set(rep["lhotse"]["ratios"]) == {
        "index_arrays_vs_lhotse_time",
        "cutsets_vs_lhotse_time",
        "cutsets_cuts_per_s",
    }


def test_benchmark_manifest_random_no_resolve(corpus, tmp_path):
    manifest, _ = corpus
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"strategy": "random", "max_cuts": 16}))
    r = run(
        "benchmark",
        manifest,
        cfg,
        "--epochs",
        1,
        "--no-resolve",
        "-q",
        "--compare",
        "lhotse",
        "-o",
        tmp_path / "b.json",
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "b.json").read_text())
    assert "cutsets" not in rep and rep["lhotse"]["sampler"] == "DynamicCutSampler"
    assert rep["indices"]["cuts"] == 400


def test_benchmark_errors(corpus, tmp_path):
    _, index = corpus
    r = run("benchmark", index.path, tmp_path / "none.json")
    assert r.exit_code == EXIT_BAD_INPUT and "no config file" in r.output
    cfg = tmp_path / "c.json"
    cfg.write_text("not json")
    assert run("benchmark", index.path, cfg).exit_code == EXIT_BAD_INPUT
    cfg.write_text(json.dumps({"max_duration": 60, "max_frames": 1000}))
    r = run("benchmark", index.path, cfg, "--compare", "lhotse")
    assert r.exit_code == EXIT_USAGE and "max_frames" in r.output
    r = run("benchmark", index.path, cfg, "--compare", "nemo")
    assert r.exit_code == EXIT_USAGE
    assert run("benchmark", index.path).exit_code == EXIT_USAGE  # missing CONFIG.json


def test_help_documents_every_option():
    for cmd in ("analyze", "benchmark", "demo"):
        r = run(cmd, "--help")
        assert r.exit_code == 0
        from discoseq.cli import main as cli_module

        command = getattr(cli_module, cmd)
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{cmd} {param.name} has no help"
    r = run("--help")
    assert "Exit codes" in r.output
