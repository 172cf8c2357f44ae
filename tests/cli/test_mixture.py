"""``discoseq analyze`` and ``discoseq benchmark`` on a mixture named by the config file."""

from __future__ import annotations

import json
from pathlib import Path

from discoseq.synth import write_manifest
from tests.cli.runner import run


def mixture_config(tmp_path: Path, corpus) -> Path:
    _, index = corpus
    write_manifest(tmp_path / "small.jsonl.gz", 40, seed=8)
    cfg = {
        "sources": {"big": str(index.path), "small": "small.jsonl.gz"},  # relative to the file
        "mixture": {"big": {"choose": 100}, "small": {"repeat": 2}},
        "max_duration": 120.0,
        "num_buckets": 3,
        "world_size": 2,
    }
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(cfg))
    return path


def test_analyze_a_mixture(tmp_path: Path, corpus) -> None:
    cfg = mixture_config(tmp_path, corpus)
    out = tmp_path / "stats.json"
    result = run("analyze", "--config", str(cfg), "-q", "--output", str(out))
    assert result.exit_code == 0, result.output
    rows = {s["name"]: s for s in json.loads(out.read_text())["sources"]}
    assert (rows["big"]["selected"], rows["small"]["selected"]) == (100, 80)
    assert rows["small"]["repeats"] == 40
    table = run("analyze", "--config", str(cfg))
    assert table.exit_code == 0 and "sources (mixture" in table.output


def test_benchmark_a_mixture(tmp_path: Path, corpus) -> None:
    cfg = mixture_config(tmp_path, corpus)
    result = run("benchmark", "--config", str(cfg), "--epochs", "1", "--no-resolve")
    assert result.exit_code == 0, result.output
    assert "140 cuts" not in result.output and "plan_epoch" in result.output
    refused = run("benchmark", "--config", str(cfg), "--compare", "lhotse")
    assert refused.exit_code == 2 and "bench_mixture" in refused.output


def test_source_and_sources_are_one_or_the_other(tmp_path: Path, corpus) -> None:
    _, index = corpus
    cfg = mixture_config(tmp_path, corpus)
    both = run("analyze", str(index.path), "--config", str(cfg))
    assert both.exit_code == 2 and "not both" in both.output
    neither = run("analyze", "--max-duration", "60")
    assert neither.exit_code == 2 and "missing SOURCE" in neither.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sources": ["a"], "max_cuts": 3}))
    result = run("analyze", "--config", str(bad))
    assert result.exit_code == 3 and "must map source names to paths" in result.output


def test_a_missing_source_is_named_with_where_its_path_is_taken_from(
    tmp_path: Path, corpus
) -> None:
    cfg = mixture_config(tmp_path, corpus)
    data = json.loads(cfg.read_text())
    data["sources"]["small"] = "smal.jsonl.gz"
    cfg.write_text(json.dumps(data))
    result = run("analyze", "--config", str(cfg), "-q")
    assert result.exit_code == 3
    assert "mixture source 'small': no index directory or manifest at" in result.output
    assert "smal.jsonl.gz" in result.output and "config file's directory" in result.output
