"""``discoseq benchmark``: the report, the Lhotse comparison and exit codes."""

import json

from discoseq.cli.main import EXIT_BAD_INPUT, EXIT_USAGE
from discoseq.config import SamplerConfig
from tests.cli.runner import run


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
    r = run("benchmark", index.path)  # no CONFIG.json and no option: no batch limit
    assert r.exit_code == EXIT_USAGE and "max_duration" in r.output
    r = run("benchmark", index.path, cfg, "--config", cfg)
    assert r.exit_code == EXIT_USAGE and "give the config once" in r.output


def test_benchmark_takes_the_options_of_analyze(corpus, tmp_path):
    """The same SamplerConfig options as ``analyze`` (from cli.common), without a JSON file or
    overriding one; --rank and --num-workers pick what is measured."""
    from discoseq.cli import analyze, benchmark, common

    def names(command):
        return {p.name for p in command.params}

    assert set(common.CONFIG_OPTION_NAMES) <= names(benchmark.benchmark) & names(analyze.analyze)
    _, index = corpus
    out = tmp_path / "b.json"
    args = ["--max-duration", 90, "--num-buckets", 3, "--world-size", 2, "--rank", 1]
    r = run("benchmark", index.path, *args, "--epochs", 1, "--no-resolve", "-o", out)
    assert r.exit_code == 0, r.output
    assert "rank 1 of 2" in r.output
    c = json.loads(out.read_text())["config"]
    assert (c["max_duration"], c["num_buckets"], c["world_size"], c["rank"]) == (90.0, 3, 2, 1)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"max_duration": 60, "num_buckets": 5, "seed": 7}))
    r = run("benchmark", index.path, cfg, "--num-buckets", 2, "--epochs", 1, "-o", out)
    assert r.exit_code == 0, r.output
    c = json.loads(out.read_text())["config"]
    assert (c["max_duration"], c["num_buckets"], c["seed"]) == (60.0, 2, 7)
    r = run("benchmark", index.path, "--config", cfg, "--no-resolve", "--epochs", 1, "-o", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["config"]["num_buckets"] == 5


def test_compare_lhotse_refuses_the_token_budget_and_shard_blocks(corpus, tmp_path):
    """Lhotse's samplers have no token cap nor block shuffle: ``--compare lhotse`` refuses each
    of those fields by name instead of running Lhotse without it."""
    _, index = corpus
    cfg = tmp_path / "c.json"
    for extra, name in (
        ({"max_tokens": 4000}, "max_tokens"),
        ({"max_tokens": 4000, "audio_tokens_per_second": 12.5}, "audio_tokens_per_second"),
        ({"max_tokens": 4000, "quadratic_tokens": 500.0}, "quadratic_tokens"),
        ({"shard_block": 2}, "shard_block"),
    ):
        cfg.write_text(json.dumps({"max_duration": 60, **extra}))
        r = run("benchmark", index.path, cfg, "--epochs", 1, "--no-resolve", "--compare", "lhotse")
        assert r.exit_code == EXIT_USAGE, (extra, r.output)
        assert f"{name}=" in r.output and "no Lhotse equivalent" in r.output


def test_benchmark_with_packs_counts_the_cuts_inside_the_packs(corpus, tmp_path):
    """With packing a resolved batch is a CutSet of packs: its cuts/s counts the member cuts,
    as the index-array run does, not the packs."""
    _, index = corpus
    out = tmp_path / "b.json"
    args = ["--strategy", "random", "--pack-duration", 60, "--max-cuts", 2]
    r = run("benchmark", index.path, *args, "--epochs", 1, "-q", "-o", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["cutsets"]["batches"] == rep["indices"]["batches"]
    assert rep["cutsets"]["cuts"] == rep["indices"]["cuts"] == 400
