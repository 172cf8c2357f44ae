"""Advanced usage: 2D bucketing (duration x transcript length), per-bucket limits, quadratic
duration, and the analysis of what each configuration does to the batches.

    python examples/advanced_usage.py [--num-cuts N] [--plot stats.png]

Each configuration is planned and analysed without loading a single cut (the plan reads the
index columns only), so trying settings on a million-cut corpus takes seconds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from discoseq import SamplerConfig, build_index
from discoseq.analysis import analyze, format_table, plot_analysis
from discoseq.synth import write_manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-cuts", type=int, default=50_000, help="cuts in the generated corpus")
    ap.add_argument(
        "--workdir",
        type=Path,
        help="where the corpus and its index go (kept); default: a temporary directory, "
        "removed at the end",
    )
    ap.add_argument("--plot", type=Path, help="draw the last analysis here (needs matplotlib)")
    args = ap.parse_args(argv)
    if args.workdir is not None:
        run(args, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="discoseq-advanced-") as tmp:
        run(args, Path(tmp))  # the corpus and its index are removed at the end


def run(args: argparse.Namespace, workdir: Path) -> None:
    # A command-and-dictation mix: 70 % short (0.5-5 s), 30 % long (10-30 s) utterances.
    manifest = write_manifest(workdir / "mixed.jsonl.gz", args.num_cuts, profile="mixed", seed=1)
    index = build_index(manifest, workdir / "mixed.idx", force=True, progress=False)
    W = 8  # a simulated 8-rank job: analysis needs no processes

    configs = {
        # 1D: 10 duration buckets, one cap
        "1D buckets": SamplerConfig(max_duration=400.0, num_buckets=10, world_size=W),
        # 2D: each duration bucket split in 3 by transcript length (NeMo's 2D bucketing), so
        # a batch holds cuts of similar duration AND similar label length (less label padding)
        "2D buckets": SamplerConfig(
            max_duration=400.0, num_buckets=5, num_token_buckets=3, world_size=W
        ),
        # per-bucket limits: short cuts get a larger duration budget (cheap to pad) and a cut
        # cap (many tiny utterances make a big batch of labels); long cuts a smaller budget
        "per-bucket caps": SamplerConfig(
            num_buckets=6,
            bucket_max_duration=(600.0, 550.0, 500.0, 400.0, 350.0, 300.0),
            bucket_max_cuts=(200, 150, 100, 40, 30, 20),
            world_size=W,
        ),
        # quadratic duration: a cut of d seconds costs d + d^2/30 (attention grows with d^2),
        # so batches of long cuts hold fewer of them
        "quadratic": SamplerConfig(
            max_duration=400.0, num_buckets=10, quadratic_duration=30.0, world_size=W
        ),
    }
    print(f"{len(index):,} cuts, {index.duration.sum() / 3600:.1f} h, {W} ranks\n")
    print(
        f"{'config':<16} {'batches/rank':>12} {'cuts/batch':>10} {'pad eff':>8} {'fill':>6}"
        f" {'rank max/min':>12} {'step bal':>8}"
    )
    results = {}
    for name, config in configs.items():
        stats = analyze(index, config)
        results[name] = stats
        bal = stats["ranks"]["balance"]
        print(
            f"{name:<16} {stats['totals']['batches_per_rank']:>12,} "
            f"{stats['batch_cuts']['mean']:>10.1f} {stats['padding']['efficiency']:>8.3f} "
            f"{stats['fill']['mean']:>6.3f} {bal['duration_max_over_min']:>12.3f} "
            f"{bal['step_balance']:>8.3f}"
        )
        assert bal["equal_batch_counts"]
        assert stats["totals"]["cuts_planned"] == len(index)

    two_d = results["2D buckets"]
    assert len(two_d["buckets"]["items"]) == 15 and len(two_d["buckets"]["token_edges"]) == 5
    caps = results["per-bucket caps"]
    for item in caps["buckets"]["items"]:  # no batch exceeds its bucket's caps
        assert item["cap_duration"] == (600.0, 550.0, 500.0, 400.0, 350.0, 300.0)[item["bucket"]]
    assert caps["batch_cuts"]["max"] <= 200
    quad = results["quadratic"]
    assert quad["batch_duration"]["mean"] < results["1D buckets"]["batch_duration"]["mean"]

    print("\nthe 2D configuration in detail:\n")
    print(format_table(two_d))
    if args.plot is not None:
        plot_analysis(two_d, args.plot)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
